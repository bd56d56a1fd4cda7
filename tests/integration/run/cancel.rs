//! The whole-run timeout and cancellation.
use super::*;

#[test]
fn run_timeout_times_out_in_flight_stages_and_cancels_the_rest() {
  let started = Instant::now();
  let out = run_wf(
    r#"
name: run-timeout
config: { timeout: 300ms }
stages:
  - id: slow
    uses: sleep
    with: { ms: 30000 }
  - id: after
    depends_on: slow
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert!(started.elapsed() < Duration::from_secs(20));
  let timed_out = out.named("stage_timed_out", "slow");
  assert_eq!(timed_out.len(), 1, "{}", out.dump());
  assert_eq!(timed_out[0]["timeout_ms"], 300);
  let cancelled = out.named("stage_cancelled", "after");
  assert_eq!(cancelled.len(), 1, "{}", out.dump());
  assert_eq!(cancelled[0]["reason"], "timeout");
  let completed = out.completed();
  assert_eq!(completed["status"], "failed");
  assert_eq!(
    completed["stages"],
    json!({"slow": "timed_out", "after": "cancelled"})
  );
  assert_eq!(
    completed["error"], "the run timed out after 300ms",
    "{completed}"
  );
}

#[test]
fn sigint_cancels_the_run() {
  let test = Test::new()
    .workflow(
      r#"
      name: cancel
      stages:
        - id: long
          uses: sleep
          with: { ms: 30000 }
        - id: shell-long
          uses: shell
          with: { run: "echo $$ > shell.pid; sleep 30 & echo $! > bg.pid; wait" }
        - id: after
          depends_on: long
          uses: echo
      "#,
    )
    .args(RUN);
  let base = test.path().to_path_buf();
  let events_path = base.join("events.jsonl");
  let mut child = test
    .command()
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("swdl starts");
  let both_started = wait_for(Duration::from_secs(10), || {
    let events = read_events_lenient(&events_path);
    ["long", "shell-long"]
      .iter()
      .all(|s| !events_named(&events, "stage_started", s).is_empty())
      && base.join("bg.pid").exists()
  });
  if !both_started {
    let _ = child.kill();
    let _ = child.wait();
    panic!("stages never started");
  }
  // Give the signal handler a moment to be installed on a busy machine.
  std::thread::sleep(Duration::from_millis(100));
  let pid = i32::try_from(child.id()).expect("pid");
  // SAFETY: sends SIGINT to the child we spawned.
  unsafe {
    libc::kill(pid, libc::SIGINT);
  }
  let mut status = None;
  let exited = wait_for(Duration::from_secs(10), || {
    status = child.try_wait().expect("try_wait");
    status.is_some()
  });
  if !exited {
    let _ = child.kill();
    let _ = child.wait();
    panic!("swdl did not stop after SIGINT");
  }
  assert_eq!(
    status.and_then(|s| s.code()),
    Some(3),
    "exit status {status:?}"
  );
  let events = read_events(&events_path);
  let last = events.last().expect("events");
  assert_eq!(last["event"], "run_completed");
  assert_eq!(last["status"], "cancelled");
  assert_eq!(
    last["stages"],
    json!({"long": "cancelled", "shell-long": "cancelled", "after": "cancelled"})
  );
  for stage in ["long", "shell-long"] {
    let cancelled = events_named(&events, "stage_cancelled", stage);
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0]["reason"], "cancel");
    assert_eq!(cancelled[0]["attempt"], 1);
  }
  assert_eq!(
    events_named(&events, "stage_cancelled", "after")[0]["reason"],
    "cancel"
  );
  // The cancelled shell's processes are gone too.
  for name in ["shell.pid", "bg.pid"] {
    let Ok(text) = std::fs::read_to_string(base.join(name)) else {
      panic!("{name} was not written");
    };
    let pid: i32 = text.trim().parse().expect("a pid");
    assert!(
      wait_for(Duration::from_secs(2), || process_gone(pid)),
      "process {pid} ({name}) outlived the cancelled run"
    );
  }
}

/// Like [`read_events`], but ignores a line still being written.
fn read_events_lenient(path: &Path) -> Vec<Value> {
  std::fs::read_to_string(path)
    .unwrap_or_default()
    .lines()
    .filter_map(|l| serde_json::from_str(l).ok())
    .collect()
}
