//! Tests of the Lua host: skills, the sandbox, stopping runaway code, hooks.
use {
  super::*,
  crate::executor::{LogLine, MemoryView},
  serde_json::{Value as Json, json},
  tokio::sync::mpsc,
};

mod hooks;
mod limits;
mod sandbox;
mod skills;

/// A directory of Lua files for one test, removed afterwards.
struct Dir(PathBuf);

impl Dir {
  fn new(name: &str) -> Self {
    let dir = std::env::temp_dir().join(format!("swdl-lua-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test directory");
    Self(dir)
  }

  /// Writes `name` and returns its path.
  fn file(&self, name: &str, text: &str) -> PathBuf {
    let path = self.0.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
  }

  /// A skill whose `run` body is `body`.
  fn skill(&self, name: &str, body: &str) -> PathBuf {
    self.file(
      name,
      &format!("return {{\n  run = function(ctx, input)\n{body}\n  end,\n}}\n"),
    )
  }
}

impl Drop for Dir {
  fn drop(&mut self) {
    let _ = std::fs::remove_dir_all(&self.0);
  }
}

fn host_with(states: usize, memory_limit: usize, hooks: Vec<PathBuf>) -> LuaHost {
  match LuaHost::start(HostConfig {
    states,
    memory_limit,
    hooks,
  }) {
    Ok(host) => host,
    Err(e) => panic!("the host should start: {e}"),
  }
}

fn host(states: usize) -> LuaHost {
  host_with(states, 64 * 1024 * 1024, Vec::new())
}

fn task(inputs: Json) -> StageTask {
  StageTask {
    run: "run-1".into(),
    stage: "count".into(),
    attempt: 2,
    idempotency_key: "run-1/count".into(),
    skill: "word-count".into(),
    inputs: Arc::new(inputs),
    timeout_ms: 10_000,
    permissions: Vec::new(),
    env: IndexMap::from([("GREETING".to_string(), "hello".to_string())]),
    memory: MemoryView::default(),
    text_outputs: Vec::new(),
  }
}

fn with_timeout(mut task: StageTask, ms: u64) -> StageTask {
  task.timeout_ms = ms;
  task
}

fn with_permissions(mut task: StageTask, permissions: &[Permission]) -> StageTask {
  task.permissions = permissions.to_vec();
  task
}

async fn run(host: &LuaHost, path: &Path, task: StageTask) -> StageResult {
  host.run_skill(path, task, TaskIo::discard()).await
}

#[track_caller]
fn outputs(result: StageResult) -> serde_json::Map<String, Json> {
  match result {
    StageResult::Completed { outputs, .. } => outputs,
    StageResult::Failed { error } => panic!("expected success, got: {error}"),
  }
}

#[track_caller]
fn failure(result: StageResult) -> String {
  match result {
    StageResult::Failed { error } => error,
    StageResult::Completed { outputs, .. } => panic!("expected a failure, got {outputs:?}"),
  }
}

#[track_caller]
fn assert_contains(text: &str, wanted: &str) {
  assert!(text.contains(wanted), "expected {wanted:?} in:\n{text}");
}
