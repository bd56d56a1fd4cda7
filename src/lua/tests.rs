//! Tests of the Lua host: skills, the sandbox, stopping runaway code, hooks.
use {
  super::*,
  crate::executor::{LogLine, MemoryView},
  serde_json::{Value as Json, json},
  tokio::sync::mpsc,
};

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

#[tokio::test]
async fn a_skill_returns_outputs_with_summary_artifacts_and_hints_lifted_out() {
  let dir = Dir::new("outputs");
  let path = dir.file(
    "word-count.lua",
    r#"
return {
  description = "Count words in a text",
  inputs = { text = "string" },
  outputs = { words = "integer" },
  run = function(ctx, input)
    local n = select(2, input.text:gsub("%S+", ""))
    ctx.log("counted", n, "words")
    return {
      words = n,
      summary = n .. " words",
      artifacts = { "report.md" },
      hints = { "short text" },
      ctx = { ctx.run_id, ctx.stage, ctx.attempt, ctx.idempotency_key, ctx.env.GREETING,
              ctx.params.text, #ctx.memory, ctx.memory_text },
    }
  end,
}
"#,
  );
  let host = host(1);
  let (tx, mut rx) = mpsc::unbounded_channel::<LogLine>();
  let result = host
    .run_skill(
      &path,
      task(json!({"text": "one two three"})),
      TaskIo::new(4, 2, tx),
    )
    .await;
  assert_eq!(
    result,
    StageResult::Completed {
      outputs: serde_json::Map::from_iter([
        (
          "ctx".to_string(),
          json!([
            "run-1",
            "count",
            2,
            "run-1/count",
            "hello",
            "one two three",
            0,
            ""
          ])
        ),
        ("words".to_string(), json!(3)),
      ]),
      summary: Some("3 words".into()),
      artifacts: vec![json!("report.md")],
      hints: vec![json!("short text")],
    }
  );
  let line = rx.recv().await.expect("a log line");
  assert_eq!(
    (line.stage, line.attempt, line.stream),
    (4, 2, LogStream::Log)
  );
  assert_eq!(line.message, "counted 3 words");
}

#[tokio::test]
async fn an_edited_skill_is_loaded_again_only_after_a_refresh() {
  let dir = Dir::new("refresh");
  let path = dir.skill("version.lua", "return { version = 1 }");
  let host = host(1);
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(1)
  );
  // A longer body, so the file's size changes even where timestamps are coarse.
  dir.skill("version.lua", "return { version = 2, edited = true }");
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(1),
    "within one run a skill keeps the version it started with"
  );
  host.refresh_skills();
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(2)
  );
}

#[tokio::test]
async fn ctx_memory_lists_the_stages_finished_before() {
  let dir = Dir::new("memory");
  let path = dir.skill(
    "memory.lua",
    "return { first = ctx.memory[1].stage, outputs = ctx.memory[1].outputs, text = ctx.memory_text }",
  );
  let memory = executor::Memory::default();
  memory.push(MemoryEntry {
    stage: "fetch".into(),
    status: crate::event::StageStatus::Completed,
    uses: Some("fetch-pages".into()),
    summary: Some("got 3 pages".into()),
    outputs: Arc::new(json!({"pages": 3, "list": []})),
    duration_ms: 12,
  });
  let mut task = task(json!({}));
  task.memory = memory.view();
  let outputs = outputs(run(&host(1), &path, task).await);
  assert_eq!(outputs["first"], json!("fetch"));
  assert_eq!(outputs["outputs"], json!({"pages": 3, "list": []}));
  assert_eq!(outputs["text"], json!("fetch [completed] got 3 pages\n"));
}

#[tokio::test]
async fn a_lua_error_names_the_file_and_line_with_a_traceback() {
  let dir = Dir::new("error");
  let path = dir.file(
    "broken.lua",
    "local function helper()\n  error(\"boom\")\nend\nreturn { run = function() helper() end }\n",
  );
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(&message, "broken.lua:2: boom");
  assert_contains(&message, "stack traceback:");
  assert_contains(&message, "broken.lua:4:");

  // An error raised by the host's own functions still points at the skill's line.
  let path = dir.skill("native.lua", "\n\n  swdl.json.encode(function() end)");
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(
    &message,
    "native.lua:5: swdl.json.encode: a function cannot be converted",
  );

  // So does a syntax error.
  let path = dir.file("syntax.lua", "return {\n  run = function( end\n}\n");
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(&message, "syntax.lua:2:");

  let missing = dir.0.join("missing.lua");
  let message = failure(run(&host(1), &missing, task(json!({}))).await);
  assert_contains(&message, "missing.lua: No such file");
}

#[tokio::test]
async fn bad_return_values_fail_clearly() {
  let dir = Dir::new("returns");
  let host = host(1);
  let cases = [
    (
      "string.lua",
      "return 'done'",
      "run must return a table of outputs (or nothing), got a string \"done\"",
    ),
    ("list.lua", "return { 1, 2 }", "run returned a list"),
    (
      "function.lua",
      "return { f = print }",
      "`result.f`: a function cannot be converted to JSON",
    ),
    (
      "nested.lua",
      "return { a = { b = { coroutine.create(print) } } }",
      "`result.a.b[1]`: a thread",
    ),
    (
      "cycle.lua",
      "local t = {} t.t = t return { t = t }",
      "nested more than 100 levels",
    ),
    (
      "nan.lua",
      "return { x = 0/0 }",
      "cannot be represented in JSON",
    ),
    (
      "summary.lua",
      "return { summary = 3 }",
      "`summary` must be a string, got integer",
    ),
    (
      "artifacts.lua",
      "return { artifacts = 'x' }",
      "`artifacts` must be a list, got string",
    ),
  ];
  for (name, body, wanted) in cases {
    let path = dir.skill(name, body);
    let message = failure(run(&host, &path, task(json!({}))).await);
    assert_contains(&message, wanted);
    assert_contains(&message, name);
  }
  let path = dir.skill("nothing.lua", "return nil");
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await),
    serde_json::Map::new()
  );

  let not_a_skill = dir.file("number.lua", "return 42");
  let message = failure(run(&host, &not_a_skill, task(json!({}))).await);
  assert_contains(&message, "number.lua: a skill file must return a table");
  let no_run = dir.file("norun.lua", "return { description = 'x' }");
  let message = failure(run(&host, &no_run, task(json!({}))).await);
  assert_contains(
    &message,
    "norun.lua: the returned table has no `run` function",
  );
}

#[tokio::test]
async fn declared_inputs_and_outputs_are_enforced() {
  let dir = Dir::new("decls");
  let host = host(1);
  let path = dir.file(
    "typed.lua",
    r#"
return {
  inputs = { text = "string", n = "integer", tags = "array?", opts = "object?", any = "any?" },
  outputs = { words = "integer", items = "array" },
  run = function(ctx, input)
    if input.bad then return { words = "many", items = {} } end
    if input.missing then return { items = {} } end
    return { words = input.n, items = {} }
  end,
}
"#,
  );
  let ok = outputs(run(&host, &path, task(json!({"text": "x", "n": 2.0}))).await);
  // An empty table declared as an array comes back as a list.
  assert_eq!(Json::Object(ok), json!({"words": 2, "items": []}));

  let cases = [
    (
      json!({"n": 1}),
      "input `text` is missing (declared as string)",
    ),
    (json!({"text": null, "n": 1}), "input `text` is missing"),
    (
      json!({"text": 3, "n": 1}),
      "input `text` must be a string, got an integer 3",
    ),
    (
      json!({"text": "x", "n": 1.5}),
      "input `n` must be an integer, got a number 1.5",
    ),
    (
      json!({"text": "x", "n": 1, "tags": {"a": 1}}),
      "input `tags` must be an array, got an object",
    ),
    (
      json!({"text": "x", "n": 1, "bad": true}),
      "output `words` must be an integer, got a string \"many\"",
    ),
    (
      json!({"text": "x", "n": 1, "missing": true}),
      "output `words` is missing",
    ),
  ];
  for (inputs, wanted) in cases {
    let message = failure(run(&host, &path, task(inputs)).await);
    assert_contains(&message, wanted);
    assert_contains(&message, "typed.lua");
  }

  let path = dir.file(
    "badtype.lua",
    "return { inputs = { text = 'strng' }, run = print }",
  );
  let message = failure(run(&host, &path, task(json!({}))).await);
  assert_contains(
    &message,
    "`inputs.text` has unknown type `strng` (did you mean `string`?)",
  );
}

#[tokio::test]
async fn skill_info_reads_the_declarations_without_running() {
  let dir = Dir::new("info");
  let path = dir.file(
    "info.lua",
    "return { description = 'Count', inputs = { text = 'string', max = 'integer?' },\n\
     outputs = { words = 'integer' }, run = function() error('must not run') end }",
  );
  let info = host(1).skill_info(&path).await.expect("skill info");
  assert_eq!(info.description.as_deref(), Some("Count"));
  assert_eq!(
    info.inputs,
    IndexMap::from([
      ("max".to_string(), "integer?".to_string()),
      ("text".to_string(), "string".to_string())
    ])
  );
  assert_eq!(
    info.outputs,
    IndexMap::from([("words".to_string(), "integer".to_string())])
  );
  let broken = dir.file("broken.lua", "return {");
  let error = host(1)
    .skill_info(&broken)
    .await
    .expect_err("a syntax error");
  assert_contains(&error.to_string(), "broken.lua:1:");
}

#[tokio::test]
async fn sleeping_skills_share_a_state() {
  let dir = Dir::new("sleep");
  let path = dir.skill(
    "nap.lua",
    "swdl.sleep(100) swdl.sleep('0ms') return { done = true }",
  );
  let executor = Executor::new(host(2), HashMap::from([("nap".to_string(), path)]));
  let started = Instant::now();
  let mut calls = tokio::task::JoinSet::new();
  for _ in 0..100 {
    let mut task = task(json!({}));
    task.skill = "nap".into();
    calls.spawn(executor.execute(task, TaskIo::discard()));
  }
  let mut done = 0;
  while let Some(result) = calls.join_next().await {
    let result = result.expect("the call should not panic");
    assert_eq!(outputs(result)["done"], json!(true));
    done += 1;
  }
  assert_eq!(done, 100);
  let elapsed = started.elapsed();
  assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn the_executor_runs_builtins_and_names_missing_skills() {
  let executor = Executor::new(host(1), HashMap::new());
  let mut echo = task(json!({"a": 1}));
  echo.skill = "echo".into();
  let result = executor.execute(echo, TaskIo::discard()).await;
  assert_eq!(outputs(result)["a"], json!(1));
  let mut missing = task(json!({}));
  missing.skill = "eho".into();
  let message = failure(executor.execute(missing, TaskIo::discard()).await);
  assert_contains(
    &message,
    "skill `eho` is not available (did you mean `echo`?)",
  );
}

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_timeout_and_the_state_stays_usable() {
  let dir = Dir::new("timeout");
  let host = host(1);
  let busy = [
    ("spin.lua", "while true do end"),
    (
      "pcall.lua",
      "while true do pcall(function() while true do end end) end",
    ),
    (
      "xpcall.lua",
      "while true do xpcall(function() while true do end end, print) end",
    ),
    (
      "wrap.lua",
      "coroutine.wrap(function() while true do end end)()",
    ),
    (
      "resume.lua",
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    ),
    ("recursion.lua", "local function f() return f() end f()"),
  ];
  for (name, body) in busy {
    let path = dir.skill(name, body);
    let started = Instant::now();
    let message = failure(run(&host, &path, with_timeout(task(json!({})), 200)).await);
    assert_eq!(
      message, "stopped: the stage timed out after 200ms",
      "{name}"
    );
    assert!(
      started.elapsed() < Duration::from_millis(900),
      "{name} took {:?}",
      started.elapsed()
    );
  }
  let fine = dir.skill("fine.lua", "return { ok = true }");
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
}

#[tokio::test]
async fn a_timeout_also_ends_a_skill_that_waits() {
  let dir = Dir::new("timeout-wait");
  let path = dir.skill("wait.lua", "swdl.sleep('1m')");
  let started = Instant::now();
  let message = failure(run(&host(1), &path, with_timeout(task(json!({})), 100)).await);
  assert_eq!(message, "stopped: the stage timed out after 100ms");
  assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn dropping_the_future_cancels_a_busy_loop() {
  let dir = Dir::new("cancel");
  let host = host(1);
  let spin = dir.skill("spin.lua", "while true do end");
  let call = run(&host, &spin, with_timeout(task(json!({})), 60_000));
  assert!(
    tokio::time::timeout(Duration::from_millis(100), call)
      .await
      .is_err()
  );
  // One state only: this runs once the busy loop has been stopped.
  let fine = dir.skill("fine.lua", "return { ok = true }");
  let started = Instant::now();
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
  assert!(
    started.elapsed() < Duration::from_millis(500),
    "took {:?}",
    started.elapsed()
  );
}

#[tokio::test]
async fn a_busy_skill_does_not_starve_the_others_on_its_state() {
  let dir = Dir::new("slices");
  let host = host(1);
  let spin = dir.skill("spin.lua", "while true do end");
  let nap = dir.skill("nap.lua", "swdl.sleep(20) return {}");
  let busy = run(&host, &spin, with_timeout(task(json!({})), 1500));
  let quick = async {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    outputs(run(&host, &nap, task(json!({}))).await);
    started.elapsed()
  };
  let (busy, quick) = tokio::join!(busy, quick);
  assert_contains(&failure(busy), "timed out");
  assert!(
    quick < Duration::from_millis(500),
    "the quick skill took {quick:?}"
  );
}

#[tokio::test]
async fn running_out_of_memory_fails_the_skill_not_the_state() {
  let dir = Dir::new("memory-limit");
  let host = host_with(1, 32 * 1024 * 1024, Vec::new());
  let hog = dir.skill(
    "hog.lua",
    "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end",
  );
  let message = failure(run(&host, &hog, task(json!({}))).await);
  assert_contains(
    &message,
    "hog.lua: not enough memory: the Lua memory limit of 32 MiB was reached",
  );
  let rep = dir.skill("rep.lua", "return { s = string.rep('x', 1e12) }");
  let started = Instant::now();
  let message = failure(run(&host, &rep, task(json!({}))).await);
  assert_contains(
    &message,
    "string.rep: the result would take 1000000000000 bytes",
  );
  assert_contains(&message, "rep.lua:3");
  let method = dir.skill("method.lua", "return { s = ('xy'):rep(1e10, ',') }");
  assert_contains(
    &failure(run(&host, &method, task(json!({}))).await),
    "string.rep",
  );
  assert!(started.elapsed() < Duration::from_secs(1));
  let fine = dir.skill("fine.lua", "return { s = ('ab'):rep(3, '-') }");
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["s"],
    json!("ab-ab-ab")
  );
}

#[tokio::test]
async fn a_state_stuck_in_a_pattern_match_is_replaced() {
  let dir = Dir::new("stuck");
  let host = host(1);
  // Backtracking inside one C call, out of the hook's reach: seconds in a release build,
  // about ten in a debug one (the thread is left to finish it).
  let stuck = dir.skill(
    "stuck.lua",
    "return { found = string.rep('a', 400):find('.-.-.-b') }",
  );
  let started = Instant::now();
  let message = failure(run(&host, &stuck, with_timeout(task(json!({})), 200)).await);
  assert_contains(
    &message,
    "stopped: the stage timed out after 200ms; its Lua state was stuck",
  );
  assert!(
    started.elapsed() < Duration::from_secs(3),
    "took {:?}",
    started.elapsed()
  );
  let fine = dir.skill("fine.lua", "return { ok = true }");
  let started = Instant::now();
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
  assert!(
    started.elapsed() < Duration::from_secs(1),
    "took {:?}",
    started.elapsed()
  );
}

#[tokio::test]
async fn every_sandbox_escape_is_denied_with_a_clear_message() {
  let dir = Dir::new("sandbox");
  let host = host(1);
  let cases = [
    (
      "os.execute('true')",
      "os.execute is not available in the swdl sandbox; ask for the `exec` permission and use swdl.exec",
    ),
    ("os.exit(1)", "os.exit is not available in the swdl sandbox"),
    (
      "os.getenv('HOME')",
      "os.getenv is not available in the swdl sandbox; read ctx.env",
    ),
    (
      "os.remove('/tmp/x')",
      "os.remove is not available in the swdl sandbox; ask for the `fs` permission",
    ),
    (
      "io.open('/etc/passwd')",
      "io.open is not available in the swdl sandbox; ask for the `fs` permission",
    ),
    (
      "io.popen('ls')",
      "io.popen is not available in the swdl sandbox; ask for the `exec` permission",
    ),
    (
      "io.stdout:write('x')",
      "io.stdout is not available in the swdl sandbox; use ctx.log",
    ),
    (
      "local f, err = load('\\27Lua\\x54\\0\\x19\\x93\\r\\n\\x1a\\n') assert(f, err)",
      "load: binary chunks are not allowed in the swdl sandbox",
    ),
    (
      "local f, err = load('return 1', 'x', 'b') assert(f, err)",
      "load: binary chunks are not allowed in the swdl sandbox",
    ),
    (
      "loadfile('/etc/passwd')",
      "loadfile is not available in the swdl sandbox",
    ),
    (
      "dofile('/etc/passwd')",
      "dofile is not available in the swdl sandbox",
    ),
    (
      "require 'os'",
      "module 'os' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "require 'io'",
      "module 'io' not found: only swdl and swdl.<name> modules can be required",
    ),
    ("require 'debug'", "module 'debug' not found"),
    ("require './evil'", "module './evil' not found"),
    ("require 'skills.other'", "module 'skills.other' not found"),
    (
      "require 'swdl.nope'",
      "module 'swdl.nope' not found: swdl's standard library has retry, circuit_breaker and policies",
    ),
    (
      "package.loadlib('libc.so.6', 'system')",
      "package.loadlib is not available in the swdl sandbox",
    ),
    (
      "debug.getinfo(1)",
      "debug.getinfo is not available in the swdl sandbox",
    ),
    (
      "debug.sethook()",
      "debug.sethook is not available in the swdl sandbox",
    ),
    (
      "string.dump(print)",
      "string.dump is not available in the swdl sandbox",
    ),
    (
      "local s = 'x' return { s:dump() }",
      "string.dump is not available in the swdl sandbox",
    ),
    (
      "collectgarbage('stop')",
      "collectgarbage(\"stop\") is not available in the swdl sandbox; only collectgarbage(\"count\") is",
    ),
    (
      "collectgarbage()",
      "collectgarbage(\"collect\") is not available",
    ),
    (
      "getmetatable('').__index.upper = nil",
      "the string metatable is protected in the swdl sandbox",
    ),
    (
      "getmetatable('').__index = {}",
      "the string metatable is protected in the swdl sandbox",
    ),
    (
      "getmetatable(_ENV).__index.print = nil",
      "the environment's metatable is protected in the swdl sandbox",
    ),
    (
      "setmetatable({}, { __gc = function() while true do end end })",
      "__gc metamethods are not available in the swdl sandbox",
    ),
    (
      "coroutine.resume(coroutine.running())",
      "coroutine.resume: only coroutines made with coroutine.create can be used here",
    ),
  ];
  for (i, (body, wanted)) in cases.iter().enumerate() {
    let name = format!("escape{i}.lua");
    let path = dir.skill(&name, body);
    let message = failure(run(&host, &path, task(json!({}))).await);
    assert_contains(&message, wanted);
    assert_contains(&message, &format!("{name}:3"));
  }
}

#[tokio::test]
async fn what_the_sandbox_keeps_works() {
  let dir = Dir::new("sandbox-ok");
  let path = dir.skill(
    "ok.lua",
    r#"
    local swdl2 = require "swdl"
    local retry = require "swdl.retry"
    local ok, err = pcall(error, "caught")
    local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
    local first = co(1)
    return {
      loaded = load("return 1 + 1")(),
      env_default = load("return GLOBAL_X")(),
      same = swdl2 == swdl,
      retry = type(retry),
      pcall = { ok, err },
      time = type(os.time()),
      date = os.date("!%Y", 0),
      upper = ("abc"):upper(),
      count = type(collectgarbage("count")),
      coroutine = { first, co(5) },
      g = _G == _ENV,
      utf8 = utf8.len("héllo"),
      math = math.max(1, 5),
      json = swdl.json.decode(swdl.json.encode({ a = { 1, swdl.json.null, 3 }, e = swdl.json.array() })),
    }
"#,
  );
  let host = host(1);
  let outputs = outputs(run(&host, &path, task(json!({}))).await);
  assert_eq!(
    Json::Object(outputs),
    json!({
      "loaded": 2, "same": true, "retry": "table", "pcall": [false, "caught"],
      "time": "number", "date": "1970", "upper": "ABC", "count": "number",
      "coroutine": [2, 10], "g": true, "utf8": 5, "math": 5,
      "json": {"a": [1, null, 3], "e": []},
    })
  );
}

#[tokio::test]
async fn one_skill_never_sees_another_skills_globals_or_library_changes() {
  let dir = Dir::new("isolation");
  let host = host(1);
  let a = dir.skill(
    "a.lua",
    "leaked = 42\n string.upper = nil\n rawset(table, 'concat', nil)\n swdl.json.encode = nil\n \
     math.max = nil\n return {}",
  );
  let b = dir.skill(
    "b.lua",
    "return { seen = leaked == nil, upper = string.upper('x'), method = ('y'):upper(),\n \
     concat = table.concat({'a', 'b'}), json = swdl.json.encode({1}), max = math.max(1, 2) }",
  );
  outputs(run(&host, &a, task(json!({}))).await);
  let seen = outputs(run(&host, &b, task(json!({}))).await);
  assert_eq!(
    Json::Object(seen),
    json!({"seen": true, "upper": "X", "method": "Y", "concat": "ab", "json": "[1]", "max": 2})
  );
  // The skill's own globals persist between its calls on a state, like a module's.
  let counter = dir.file(
    "counter.lua",
    "calls = 0\nreturn { run = function() calls = calls + 1 return { calls = calls } end }",
  );
  outputs(run(&host, &counter, task(json!({}))).await);
  let second = outputs(run(&host, &counter, task(json!({}))).await);
  assert_eq!(second["calls"], json!(2));
}

#[tokio::test]
async fn exec_and_fs_need_their_permissions() {
  let dir = Dir::new("permissions");
  let host = host(1);
  let exec = dir.skill(
    "exec.lua",
    "local r = swdl.exec('sh', { '-c', 'cat; echo \"$GREETING $SWDL_IDEMPOTENCY_KEY\" >&2; exit 3' }, \
     { stdin = 'in' })\n return r",
  );
  let message = failure(run(&host, &exec, task(json!({}))).await);
  assert_contains(
    &message,
    "swdl.exec needs the `exec` permission: grant it in config.permissions",
  );
  let result = outputs(
    run(
      &host,
      &exec,
      with_permissions(task(json!({})), &[Permission::Exec]),
    )
    .await,
  );
  assert_eq!(result["status"], json!(3));
  assert_eq!(result["stdout"], json!("in"));
  assert_eq!(result["stderr"], json!("hello run-1/count\n"));
  assert_eq!(result["ok"], json!(false));

  let file = dir.0.join("note.txt");
  let fs = dir.skill(
    "fs.lua",
    &format!(
      "swdl.fs.write({file:?}, 'hi there')\n return {{ text = swdl.fs.read({file:?}), list = swdl.fs.list({dir:?}) }}",
      file = file.display().to_string(),
      dir = dir.0.display().to_string(),
    ),
  );
  let message = failure(run(&host, &fs, task(json!({}))).await);
  assert_contains(
    &message,
    "swdl.fs.write needs the `fs` permission: grant it in config.permissions",
  );
  let result = outputs(
    run(
      &host,
      &fs,
      with_permissions(task(json!({})), &[Permission::Fs]),
    )
    .await,
  );
  assert_eq!(result["text"], json!("hi there"));
  assert_eq!(result["list"], json!(["exec.lua", "fs.lua", "note.txt"]));

  let http = dir.skill("http.lua", "swdl.http.get('http://example.com')");
  let message = failure(run(&host, &http, task(json!({}))).await);
  assert_contains(&message, "swdl.http needs the `net` permission");
  // With it, the request is made: a URL swdl refuses shows it got that far.
  let bad = dir.skill("bad.lua", "swdl.http.get('ftp://example.com/x')");
  let message = failure(
    run(
      &host,
      &bad,
      with_permissions(task(json!({})), &[Permission::Net]),
    )
    .await,
  );
  assert_contains(&message, "only http and https URLs are supported");
  let llm = dir.skill("llm.lua", "swdl.llm.complete('hi')");
  let message = failure(run(&host, &llm, task(json!({}))).await);
  assert_contains(&message, "swdl.llm needs the `net` permission");
}

#[tokio::test]
async fn swdl_eval_sees_the_current_call() {
  let dir = Dir::new("eval");
  let path = dir.skill(
    "eval.lua",
    "return { a = swdl.eval('inputs.text'), b = swdl.eval(\"format('{0}, {1}!', env.GREETING, parameters.text)\"),\n \
     c = swdl.eval('$<< run.attempt >> of $<< stage.id >>'), d = swdl.eval('inputs.list') }",
  );
  let result = outputs(
    run(
      &host(1),
      &path,
      task(json!({"text": "world", "list": [1, 2]})),
    )
    .await,
  );
  assert_eq!(
    Json::Object(result),
    json!({"a": "world", "b": "hello, world!", "c": "2 of count", "d": [1, 2]})
  );
  let bad = dir.skill("bad.lua", "swdl.eval('format(')");
  assert_contains(
    &failure(run(&host(1), &bad, task(json!({}))).await),
    "swdl.eval:",
  );
}

const POLICIES: &str = r#"
swdl.policy("by-risk", function(stage, ctx)
  ctx.log("deciding", stage.id)
  if stage.risk == "critical" then return "reject", "critical stages need a human" end
  if stage.risk == "high" then return "ask" end
  if stage.risk == "medium" then return "approve", #ctx.memory .. " before, run " .. ctx.run_id end
  if stage.risk == "weird" then return "maybe" end
  if stage.risk == "gate" then return "approve", swdl.eval("gate.message") end
  return "approve"
end)

swdl.recovery("retry-then-fallback", function(failure, ctx)
  local answers = {
    retry = { action = "retry", delay = "2s", with = { depth = 1 } },
    bare = "skip",
    fallback = { action = "fallback", uses = "code-reviewer" },
    skip = { action = "skip" },
    abort = { action = "abort" },
    compensate = { action = "compensate" },
    unknown = { action = "rety" },
    nouses = { action = "fallback" },
    extra = { action = "retry", dely = "2s" },
    badwith = { action = "retry", with = "x" },
    baddelay = { action = "retry", delay = "soon" },
    number = 42,
    nothing = nil,
  }
  return answers[failure.error]
end)
"#;

fn stage(risk: &str) -> PolicyStage {
  PolicyStage {
    id: "deploy".into(),
    kind: "approval".into(),
    risk: Some(risk.into()),
    uses: Some("shell".into()),
    message: Some("Ship it?".into()),
    run_id: "run-9".into(),
    params: json!({"env": "prod"}),
    memory: Vec::new(),
  }
}

fn failed(error: &str) -> Failure {
  Failure {
    stage: "review".into(),
    attempt: 1,
    kind: "timeout".into(),
    error: error.into(),
    uses: "code-review".into(),
    inputs: json!({"depth": 3}),
    run_id: "run-9".into(),
    params: json!({}),
    memory: Vec::new(),
  }
}

#[tokio::test]
async fn policies_approve_reject_or_ask_with_reasons() {
  let dir = Dir::new("policies");
  let hooks = dir.file("policies.lua", POLICIES);
  let host = host_with(2, 64 * 1024 * 1024, vec![hooks]);
  assert_eq!(host.policies(), vec!["by-risk".to_string()]);
  assert_eq!(host.recoveries(), vec!["retry-then-fallback".to_string()]);
  let decide = |risk: &'static str| {
    let host = host.clone();
    async move { host.decide("by-risk", stage(risk)).await }
  };
  assert_eq!(
    decide("critical").await,
    Ok(PolicyDecision::Reject {
      reason: Some("critical stages need a human".into())
    })
  );
  assert_eq!(
    decide("high").await,
    Ok(PolicyDecision::Ask { reason: None })
  );
  assert_eq!(
    decide("low").await,
    Ok(PolicyDecision::Approve { reason: None })
  );
  assert_eq!(
    decide("medium").await,
    Ok(PolicyDecision::Approve {
      reason: Some("0 before, run run-9".into())
    })
  );
  assert_eq!(
    decide("gate").await,
    Ok(PolicyDecision::Approve {
      reason: Some("Ship it?".into())
    })
  );
  let error = decide("weird").await.expect_err("an invalid answer");
  assert_contains(&error.to_string(), "policy `by-risk` (");
  assert_contains(
    &error.to_string(),
    "policies.lua) returned \"maybe\": return \"approve\", \"reject\" or \"ask\"",
  );
  let error = host
    .decide("by-rsik", stage("low"))
    .await
    .expect_err("unknown");
  assert_eq!(
    error.to_string(),
    "unknown policy `by-rsik` (did you mean `by-risk`?)"
  );
}

#[tokio::test]
async fn recovery_strategies_return_actions_and_bad_ones_fail_clearly() {
  let dir = Dir::new("recovery");
  let hooks = dir.file("recovery.lua", POLICIES);
  let host = host_with(1, 64 * 1024 * 1024, vec![hooks]);
  let recover = |error: &'static str| {
    let host = host.clone();
    async move { host.recover("retry-then-fallback", failed(error)).await }
  };
  assert_eq!(
    recover("retry").await,
    Ok(RecoveryAction::Retry {
      delay: Some(Duration::from_secs(2)),
      with: Some(serde_json::Map::from_iter([(
        "depth".to_string(),
        json!(1)
      )])),
    })
  );
  assert_eq!(
    recover("fallback").await,
    Ok(RecoveryAction::Fallback {
      uses: "code-reviewer".into()
    })
  );
  assert_eq!(recover("skip").await, Ok(RecoveryAction::Skip));
  assert_eq!(recover("bare").await, Ok(RecoveryAction::Skip));
  assert_eq!(recover("abort").await, Ok(RecoveryAction::Abort));
  assert_eq!(recover("compensate").await, Ok(RecoveryAction::Compensate));
  let cases = [
    (
      "unknown",
      "returned unknown action \"rety\" (did you mean \"retry\"?)",
    ),
    ("nouses", "returned action \"fallback\" without `uses`"),
    (
      "extra",
      "returned unknown field `dely` (did you mean `delay`?): action \"retry\" takes `delay` and `with`",
    ),
    (
      "badwith",
      "returned `with` as string: it must be a table of inputs",
    ),
    (
      "baddelay",
      "returned a bad `delay`: invalid duration `soon`",
    ),
    ("number", "returned 42: return a table like"),
    ("nothing", "returned nothing: return a table like"),
  ];
  for (error, wanted) in cases {
    let message = recover(error).await.expect_err(error).to_string();
    assert_contains(&message, "recovery strategy `retry-then-fallback` (");
    assert_contains(&message, wanted);
  }
  let error = host
    .recover("nope", failed("skip"))
    .await
    .expect_err("unknown");
  assert_eq!(error.to_string(), "unknown recovery strategy `nope`");
}

#[tokio::test]
async fn hook_files_that_fail_to_load_name_the_file_and_line() {
  let dir = Dir::new("hook-errors");
  let syntax = dir.file(
    "syntax.lua",
    "swdl.policy('x', function()\n  return 'approve' +\nend)\n",
  );
  let error = LuaHost::start(HostConfig {
    hooks: vec![syntax],
    ..HostConfig::default()
  })
  .expect_err("a syntax error");
  assert!(matches!(error, LuaError::Script(_)), "{error:?}");
  assert_contains(&error.to_string(), "syntax.lua:3:");

  let runtime = dir.file("runtime.lua", "local x = nil\nx.y = 1\n");
  let error = LuaHost::start(HostConfig {
    hooks: vec![runtime],
    ..HostConfig::default()
  })
  .expect_err("a runtime error");
  assert_contains(
    &error.to_string(),
    "runtime.lua:2: attempt to index a nil value",
  );

  let twice = dir.file(
    "twice.lua",
    "swdl.policy('p', print)\nswdl.policy('p', print)\n",
  );
  let error = LuaHost::start(HostConfig {
    hooks: vec![twice],
    ..HostConfig::default()
  })
  .expect_err("a duplicate");
  assert_contains(
    &error.to_string(),
    "twice.lua:2: swdl.policy: policy `p` is already defined in",
  );

  let missing = dir.0.join("missing.lua");
  let error = LuaHost::start(HostConfig {
    hooks: vec![missing],
    ..HostConfig::default()
  })
  .expect_err("a missing file");
  assert!(matches!(error, LuaError::File { .. }), "{error:?}");

  // Policies are registered from hook files only.
  let skill = dir.skill("skill.lua", "swdl.policy('p', print)");
  let message = failure(run(&host(1), &skill, task(json!({}))).await);
  assert_contains(&message, "swdl.policy can only be called from a hook file");
}

#[tokio::test]
async fn eval_keeps_its_globals_between_calls() {
  let host = host(2);
  assert_eq!(host.eval("1 + 1").await, Ok(json!(2)));
  assert_eq!(host.eval("x = 5").await, Ok(Json::Null));
  assert_eq!(host.eval("x * 2, 'y'").await, Ok(json!([10, "y"])));
  assert_eq!(
    host.eval("{ a = print ~= nil }").await,
    Ok(json!({"a": true}))
  );
  let error = host.eval("error('nope')").await.expect_err("an error");
  assert_contains(&error.to_string(), "lua:1: nope");
}
