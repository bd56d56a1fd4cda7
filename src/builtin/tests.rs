//! The built-in skills run on real tasks: scripts, pipes, output files, limits.
use super::*;
use crate::executor::{LogLine, MemoryView};
use indexmap::IndexMap;
use serde_json::json;
use shell::*;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::mpsc;

fn task(skill: &str, inputs: Value) -> StageTask {
  StageTask {
    run: "run-1".into(),
    stage: "build".into(),
    attempt: 1,
    idempotency_key: "run-1/build".into(),
    skill: skill.into(),
    inputs: Arc::new(inputs),
    timeout_ms: 60_000,
    permissions: Vec::new(),
    env: IndexMap::new(),
    memory: MemoryView::default(),
    text_outputs: Vec::new(),
  }
}

async fn run(task: StageTask) -> StageResult {
  Builtins::new().execute(task, TaskIo::discard()).await
}

fn outputs(result: StageResult) -> Map<String, Value> {
  match result {
    StageResult::Completed { outputs, .. } => outputs,
    StageResult::Failed { error } => panic!("expected success, got failure: {error}"),
  }
}

fn error(result: StageResult) -> String {
  match result {
    StageResult::Failed { error } => error,
    StageResult::Completed { outputs, .. } => panic!("expected failure, got {outputs:?}"),
  }
}

#[tokio::test]
async fn http_refuses_a_fail_on_error_that_is_not_true_or_false() {
  let task = task(
    "http",
    json!({"url": "http://127.0.0.1:9/", "fail_on_error": "yes"}),
  );
  assert_eq!(
    error(run(task).await),
    "http: `fail_on_error` must be true or false, got \"yes\""
  );
}

/// A fresh directory for one test.
fn scratch(name: &str) -> PathBuf {
  let dir = std::env::temp_dir().join(format!("swdl-builtin-test-{name}-{}", std::process::id()));
  let _ = std::fs::remove_dir_all(&dir);
  std::fs::create_dir_all(&dir).unwrap();
  dir
}

/// Whether `pid` is a live process. A zombie counts as gone: once its parent is dead it
/// waits for init to reap it, which a container's init may never do.
fn alive(pid: libc::pid_t) -> bool {
  // SAFETY: signal 0 only checks that the process exists.
  if unsafe { libc::kill(pid, 0) } != 0 {
    return false;
  }
  let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
  let state = stat
    .rsplit(')')
    .next()
    .and_then(|rest| rest.trim().chars().next());
  !matches!(state, None | Some('Z' | 'X'))
}

async fn gone_within(pid: libc::pid_t, limit: Duration) -> bool {
  let deadline = Instant::now() + limit;
  while Instant::now() < deadline {
    if !alive(pid) {
      return true;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
  }
  !alive(pid)
}

/// The two pids a test script writes, waiting up to 10 s for them.
async fn read_pids(path: &Path) -> Vec<libc::pid_t> {
  let deadline = Instant::now() + Duration::from_secs(10);
  loop {
    assert!(
      Instant::now() < deadline,
      "{} never appeared",
      path.display()
    );
    if let Ok(text) = std::fs::read_to_string(path) {
      let pids: Vec<libc::pid_t> = text
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
      if pids.len() == 2 {
        return pids;
      }
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
  }
}

#[tokio::test]
async fn builtin_echo_returns_its_inputs() {
  let inputs = json!({"b": 1, "a": [true, null], "nested": {"x": "y"}});
  let out = outputs(run(task("echo", inputs.clone())).await);
  assert_eq!(Value::Object(out), inputs);
  assert!(outputs(run(task("echo", json!("text"))).await).is_empty());
}

#[tokio::test]
async fn builtin_sleep_waits() {
  let start = Instant::now();
  let out = outputs(run(task("sleep", json!({"ms": 60}))).await);
  let elapsed = start.elapsed();
  assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
  assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
  assert_eq!(out["slept_ms"], json!(60));

  let start = Instant::now();
  let out = outputs(run(task("sleep", json!({"ms": "20ms"}))).await);
  assert!(start.elapsed() >= Duration::from_millis(20));
  assert_eq!(out["slept_ms"], json!(20));
  let out = outputs(run(task("sleep", json!({"ms": "15"}))).await);
  assert_eq!(out["slept_ms"], json!(15));
  let out = outputs(run(task("sleep", json!({"ms": 0}))).await);
  assert_eq!(out["slept_ms"], json!(0));
}

#[test]
fn a_zero_sleep_is_done_on_its_first_poll() {
  use std::future::Future as _;
  let mut future = Box::pin(run(task("sleep", json!({"ms": 0}))));
  let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
  match future.as_mut().poll(&mut cx) {
    std::task::Poll::Ready(result) => assert_eq!(outputs(result)["slept_ms"], json!(0)),
    std::task::Poll::Pending => panic!("sleep 0 waited for a timer"),
  }
}

#[tokio::test]
async fn builtin_sleep_rejects_bad_ms() {
  for inputs in [
    json!({}),
    json!({"ms": null}),
    json!({"ms": -5}),
    json!({"ms": "soon"}),
    json!({"ms": "-3s"}),
    json!({"ms": true}),
    json!({"ms": [1]}),
    json!("ms"),
  ] {
    let message = error(run(task("sleep", inputs.clone())).await);
    assert!(message.contains("`ms`"), "{inputs}: {message}");
  }
}

#[tokio::test]
async fn builtin_sleep_stops_when_dropped() {
  let start = Instant::now();
  let sleeping = run(task("sleep", json!({"ms": "10s"})));
  assert!(
    tokio::time::timeout(Duration::from_millis(30), sleeping)
      .await
      .is_err()
  );
  assert!(start.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn builtin_fail_fails_the_first_attempts() {
  for attempt in 1..=2 {
    let mut t = task("fail", json!({"message": "flaky", "times": 2}));
    t.attempt = attempt;
    assert_eq!(error(run(t).await), "flaky");
  }
  let mut t = task("fail", json!({"message": "flaky", "times": 2}));
  t.attempt = 3;
  assert_eq!(outputs(run(t).await)["attempt"], json!(3));

  let mut t = task("fail", json!({"times": "1"}));
  t.attempt = 2;
  assert_eq!(outputs(run(t).await)["attempt"], json!(2));
  assert_eq!(
    outputs(run(task("fail", json!({"times": 0}))).await)["attempt"],
    json!(1)
  );
}

#[tokio::test]
async fn builtin_fail_without_times_always_fails() {
  for attempt in [1, 5, 100] {
    let mut t = task("fail", json!({}));
    t.attempt = attempt;
    assert_eq!(error(run(t).await), "fail skill failed as asked");
  }
  for times in [json!(-1), json!(1.5), json!("twice"), json!(true)] {
    let message = error(run(task("fail", json!({"times": times}))).await);
    assert!(message.contains("`times`"), "{message}");
  }
}

#[tokio::test]
async fn builtin_unknown_skills_are_reported() {
  assert_eq!(
    error(run(task("nope", json!({}))).await),
    "skill `nope` is not available: built-in skills are echo, sleep, fail, shell, http and llm"
  );
  assert_eq!(
    error(run(task("http", json!({}))).await),
    "http: needs `url`"
  );
  assert!(error(run(task("llm", json!({}))).await).starts_with("llm: "));
}

#[tokio::test]
async fn builtin_shell_captures_output() {
  let (sender, mut receiver) = mpsc::unbounded_channel::<LogLine>();
  let script = r#"
    echo out
    echo err >&2
    echo "greeting=hi there" >> "$SWDL_OUTPUT"
    echo "count=1" >> "$SWDL_OUTPUT"
    echo "count=2" >> "$SWDL_OUTPUT"
    printf 'body<<EOF\nline 1\n\nline=3\nEOF\n' >> "$SWDL_OUTPUT"
    echo "path=$SWDL_OUTPUT" >> "$SWDL_OUTPUT"
    echo "ids=$SWDL_RUN_ID $SWDL_STAGE $SWDL_ATTEMPT $SWDL_IDEMPOTENCY_KEY" >> "$SWDL_OUTPUT"
    echo "stdout=spoofed" >> "$SWDL_OUTPUT"
  "#;
  let result = Builtins::new()
    .execute(
      task("shell", json!({"run": script})),
      TaskIo::new(0, 1, sender),
    )
    .await;
  let out = outputs(result);
  assert_eq!(out["stdout"], json!("out"));
  assert_eq!(out["stderr"], json!("err"));
  assert_eq!(out["exit_code"], json!(0));
  assert_eq!(out["greeting"], json!("hi there"));
  assert_eq!(out["count"], json!(2));
  assert_eq!(out["body"], json!("line 1\n\nline=3"));
  assert_eq!(out["ids"], json!("run-1 build 1 run-1/build"));
  let path = out["path"].as_str().unwrap();
  assert!(!Path::new(path).exists(), "{path} was not removed");

  let mut lines = Vec::new();
  while let Ok(line) = receiver.try_recv() {
    lines.push((line.stream, line.message));
  }
  assert!(
    lines.contains(&(LogStream::Stdout, "out".into())),
    "{lines:?}"
  );
  assert!(
    lines.contains(&(LogStream::Stderr, "err".into())),
    "{lines:?}"
  );
  assert!(
    lines.iter().any(|(stream, _)| *stream == LogStream::Log),
    "{lines:?}"
  );
}

#[tokio::test]
async fn builtin_shell_nonzero_exit_fails() {
  let script = "echo first >&2; echo 'it broke' >&2; echo >&2; exit 3";
  assert_eq!(
    error(run(task("shell", json!({"run": script}))).await),
    "shell exited with status 3: it broke"
  );
  assert_eq!(
    error(run(task("shell", json!({"run": "exit 1"}))).await),
    "shell exited with status 1"
  );
  assert_eq!(
    error(run(task("shell", json!({"run": "kill -TERM $$"}))).await),
    "shell was killed by signal 15"
  );
}

#[tokio::test]
async fn builtin_shell_cwd_and_env() {
  let dir = scratch("cwd");
  let mut t = task(
    "shell",
    json!({
      "run": "pwd; echo \"$GREETING $N $FLAG $FROM_CONFIG $OVERRIDDEN\"",
      "cwd": dir.to_str().unwrap(),
      "env": {"GREETING": "hi", "N": 3, "FLAG": true, "OVERRIDDEN": "by with"},
    }),
  );
  t.env.insert("FROM_CONFIG".into(), "config".into());
  t.env.insert("OVERRIDDEN".into(), "by config".into());
  let out = outputs(run(t).await);
  let expected = format!(
    "{}\nhi 3 true config by with",
    dir.canonicalize().unwrap().display()
  );
  assert_eq!(out["stdout"], json!(expected));

  let message = error(run(task("shell", json!({"run": "true", "cwd": "/no/such/dir"}))).await);
  assert!(message.contains("`cwd`"), "{message}");
  let message = error(run(task("shell", json!({"run": "true", "env": {"A": [1]}}))).await);
  assert!(message.contains("`env.A`"), "{message}");
  let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn builtin_shell_bad_inputs_fail() {
  for inputs in [json!({}), json!({"run": ""}), json!({"run": 5})] {
    let message = error(run(task("shell", inputs)).await);
    assert!(message.contains("`run`"), "{message}");
  }
  let message = error(
    run(task(
      "shell",
      json!({"run": "true", "shell": "no-such-shell-here"}),
    ))
    .await,
  );
  assert!(
    message.contains("cannot start `no-such-shell-here`"),
    "{message}"
  );
  let message = error(
    run(task(
      "shell",
      json!({"run": "echo 'not an output' >> $SWDL_OUTPUT"}),
    ))
    .await,
  );
  assert!(message.contains("$SWDL_OUTPUT line 1"), "{message}");
  let message = error(
    run(task(
      "shell",
      json!({"run": "echo 'x<<EOF' >> $SWDL_OUTPUT"}),
    ))
    .await,
  );
  assert!(message.contains("no closing `EOF`"), "{message}");
}

#[tokio::test]
async fn builtin_shell_other_shells() {
  let out = outputs(
    run(task(
      "shell",
      json!({"run": "echo ${BASH_VERSION:+bash}", "shell": "bash"}),
    ))
    .await,
  );
  assert_eq!(out["stdout"], json!("bash"));
}

#[tokio::test]
async fn builtin_shell_keeps_the_head_and_tail_of_huge_output() {
  let script = "head -c 9000000 /dev/zero | tr '\\0' a; printf 'END\\0'";
  let out = outputs(run(task("shell", json!({"run": script}))).await);
  let stdout = out["stdout"].as_str().unwrap();
  let note = format!(
    "\n[... {} bytes of stdout cut: outputs keep the first 64 KiB and the last 64 KiB ...]\n",
    9_000_004 - CAPTURE_HEAD - CAPTURE_TAIL
  );
  let expected = format!(
    "{}{note}{}END\u{fffd}",
    "a".repeat(CAPTURE_HEAD),
    "a".repeat(CAPTURE_TAIL - 4)
  );
  assert!(
    stdout == expected,
    "{}...{}",
    &stdout[..100],
    &stdout[stdout.len() - 200..]
  );
}

#[test]
fn captures_split_no_character_and_cut_at_line_breaks() {
  let mut whole = Capture::default();
  whole.push(format!("{}é{}", "a".repeat(CAPTURE_HEAD - 1), "b".repeat(10)).as_bytes());
  assert_eq!(
    whole.text("stdout"),
    format!("{}é{}", "a".repeat(CAPTURE_HEAD - 1), "b".repeat(10))
  );
  let mut long = Capture::default();
  let line = format!("{}secret-value\n", "x".repeat(50));
  for _ in 0..5_000 {
    long.push(line.as_bytes());
  }
  let text = long.text("stdout");
  // Every line kept is whole.
  assert!(
    text
      .lines()
      .all(|l| l == line.trim_end() || l.starts_with("[... ")),
    "{text}"
  );
}

#[tokio::test]
async fn builtin_shell_kills_background_jobs_when_done() {
  let dir = scratch("background");
  let pidfile = dir.join("pids");
  let script = format!(
    "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}",
    pidfile.display()
  );
  let start = Instant::now();
  let out = outputs(run(task("shell", json!({"run": script}))).await);
  assert_eq!(out["exit_code"], json!(0));
  // The background job held stdout open; the stage still ended promptly.
  assert!(
    start.elapsed() < Duration::from_secs(5),
    "{:?}",
    start.elapsed()
  );
  for pid in read_pids(&pidfile).await {
    assert!(
      gone_within(pid, Duration::from_secs(2)).await,
      "{pid} survived"
    );
  }
  let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn builtin_shell_drop_kills_the_whole_group() {
  let dir = scratch("drop");
  let pidfile = dir.join("pids");
  let script = format!(
    "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}; sleep 100",
    pidfile.display()
  );
  let (sender, _receiver) = mpsc::unbounded_channel();
  let running = Builtins::new().execute(
    task("shell", json!({"run": script})),
    TaskIo::new(0, 1, sender),
  );
  // Whichever branch loses is dropped: here, the running stage.
  let pids = tokio::select! {
    result = running => panic!("the script ended early: {result:?}"),
    pids = read_pids(&pidfile) => pids,
  };
  for pid in pids {
    assert!(
      gone_within(pid, Duration::from_secs(2)).await,
      "{pid} survived"
    );
  }

  // The same through a timeout, as the runtime does it.
  let _ = std::fs::remove_file(&pidfile);
  let script = format!(
    "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}; sleep 100",
    pidfile.display()
  );
  let running = run(task("shell", json!({"run": script})));
  assert!(
    tokio::time::timeout(Duration::from_secs(1), running)
      .await
      .is_err()
  );
  for pid in read_pids(&pidfile).await {
    assert!(
      gone_within(pid, Duration::from_secs(2)).await,
      "{pid} survived"
    );
  }
  let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn builtin_output_file_format() {
  let parsed = parse_output_file(
    "a=1\r\n\nb-c=x=y\nmulti<<END\n1\r\n2\nEND\na=3\nok=true\nxs=[1, \"b\"]\nq=\"1.10\"\nv=1.2.3\nnone=null\nempty=\nn<<END\n42\nEND\nsha=2506175\nver=1.10\n",
    &["sha".to_string(), "ver".to_string()],
  )
  .unwrap();
  let expected = [
    ("a", json!(1)),
    ("b-c", json!("x=y")),
    ("multi", json!("1\n2")),
    ("a", json!(3)),
    ("ok", json!(true)),
    ("xs", json!([1, "b"])),
    ("q", json!("1.10")),
    ("v", json!("1.2.3")),
    ("none", json!(null)),
    ("empty", json!("")),
    // A block is text even when it reads as JSON.
    ("n", json!("42")),
    // So is an output the contract declares a string, exactly as written.
    ("sha", json!("2506175")),
    ("ver", json!("1.10")),
  ];
  assert_eq!(parsed, expected.map(|(k, v)| (k.to_string(), v)).to_vec());
  assert!(parse_output_file("1a=x", &[]).is_err());
  assert!(parse_output_file("=x", &[]).is_err());
  assert!(parse_output_file("k<<", &[]).is_err());
  assert!(is_output_key("_a-1"));
  assert!(!is_output_key("a.b"));
}
