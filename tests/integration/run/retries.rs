//! Retries, timeouts and fallbacks.
use super::*;

#[test]
fn retries_back_off_exponentially() {
  let out = run_wf(
    r#"
name: retries
stages:
  - id: flaky
    uses: fail
    with: { message: "not yet", times: 2 }
    retry: { max_attempts: 3, backoff: exponential, delay: 100ms }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let started = out.named("stage_started", "flaky");
  let retrying = out.named("stage_retrying", "flaky");
  assert_eq!(started.len(), 3, "{}", out.dump());
  assert_eq!(retrying.len(), 2, "{}", out.dump());
  assert_eq!(out.named("stage_failed", "flaky").len(), 2);
  let attempts: Vec<&Value> = started.iter().map(|e| &e["attempt"]).collect();
  assert_eq!(attempts, [&json!(1), &json!(2), &json!(3)]);
  assert_eq!(retrying[0]["delay_ms"], 100);
  assert_eq!(retrying[1]["delay_ms"], 200);
  assert_eq!(retrying[0]["attempt"], 1);
  assert_eq!(retrying[0]["error"], "not yet");
  assert!(retrying[0]["due"].is_string());
  // Attempts are spaced at least by the delays (1 ms of slack for the wall clock).
  assert!(
    ts_ms(started[1]) - ts_ms(started[0]) >= 99,
    "{}",
    out.dump()
  );
  assert!(
    ts_ms(started[2]) - ts_ms(started[1]) >= 199,
    "{}",
    out.dump()
  );
  let done = out.named("stage_completed", "flaky");
  assert_eq!(done.len(), 1);
  assert_eq!(done[0]["attempt"], 3);
  assert_eq!(done[0]["outputs"]["attempt"], 3);
  assert_eq!(out.final_status("flaky"), "completed");
}

#[test]
fn retry_jitter_keeps_delays_between_half_and_full() {
  let out = run_wf(
    r#"
name: jitter
stages:
  - id: flaky
    uses: fail
    with: { times: 3 }
    retry: { max_attempts: 4, backoff: exponential, delay: 100ms, jitter: true }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let started = out.named("stage_started", "flaky");
  let retrying = out.named("stage_retrying", "flaky");
  assert_eq!(retrying.len(), 3, "{}", out.dump());
  for (n, event) in retrying.iter().enumerate() {
    let full = 100u64 << n;
    let delay = event["delay_ms"].as_u64().expect("delay_ms");
    assert!(
      (full / 2..=full).contains(&delay),
      "retry {n}: delay {delay} outside [{}, {full}]",
      full / 2
    );
    let spacing = ts_ms(started[n + 1]) - ts_ms(started[n]);
    assert!(
      spacing >= i64::try_from(delay).unwrap_or(i64::MAX) - 1,
      "retry {n}: {spacing} ms < {delay} ms"
    );
  }
}

#[test]
fn retries_spent_fail_the_run() {
  let out = run_wf(
    r#"
name: spent
stages:
  - id: broken
    uses: fail
    with: { message: "always broken" }
    retry: { max_attempts: 2, delay: 10ms }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(out.named("stage_started", "broken").len(), 2);
  assert_eq!(out.named("stage_retrying", "broken").len(), 1);
  assert_eq!(out.final_status("broken"), "failed");
  let completed = out.completed();
  assert_eq!(completed["status"], "failed");
  assert_eq!(
    completed["error"], "stage `broken` failed: always broken",
    "{completed}"
  );
}

#[test]
fn stage_timeout_kills_the_whole_process_group() {
  let test = Test::new();
  let base = test.path().to_path_buf();
  let shell_pid = base.join("shell.pid");
  let bg_pid = base.join("bg.pid");
  let yaml = format!(
    r#"
name: timeout
stages:
  - id: stuck
    uses: shell
    with:
      run: "echo $$ > {}; sleep 100 & echo $! > {}; wait"
    timeout: 500ms
"#,
    shell_pid.display(),
    bg_pid.display()
  );
  let started = Instant::now();
  let out = test
    .workflow(&yaml)
    .args(RUN)
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert!(
    started.elapsed() < Duration::from_mins(1),
    "the run waited for `sleep 100`"
  );
  let timed_out = out.named("stage_timed_out", "stuck");
  assert_eq!(timed_out.len(), 1, "{}", out.dump());
  assert_eq!(timed_out[0]["timeout_ms"], 500);
  assert_eq!(timed_out[0]["uses"], "shell");
  assert!(
    timed_out[0]["duration_ms"]
      .as_u64()
      .is_some_and(|d| d >= 500)
  );
  assert_eq!(out.final_status("stuck"), "timed_out");
  assert_eq!(out.completed()["status"], "failed");
  for file in [&shell_pid, &bg_pid] {
    let text = std::fs::read_to_string(file)
      .unwrap_or_else(|e| panic!("{} was not written: {e}", file.display()));
    let pid: i32 = text.trim().parse().expect("a pid");
    assert!(pid > 1);
    assert!(
      wait_for(Duration::from_secs(2), || process_gone(pid)),
      "process {pid} (from {}) outlived the timed-out stage",
      file.display()
    );
  }
}

#[test]
fn timeouts_are_not_retried_when_retry_on_says_error_only() {
  let out = run_wf(
    r#"
name: retry-on
stages:
  - id: slow
    uses: sleep
    with: { ms: 5000 }
    timeout: 100ms
    retry: { max_attempts: 3, delay: 10ms, on: [error] }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(
    out.named("stage_started", "slow").len(),
    1,
    "{}",
    out.dump()
  );
  assert!(out.named("stage_retrying", "slow").is_empty());
  assert_eq!(out.final_status("slow"), "timed_out");
}

#[test]
fn fallback_attempts_name_the_fallback_skill() {
  let out = run_wf(
    r#"
name: fallback
stages:
  - id: primary
    uses: fail
    with: { message: "primary down" }
    retry: { max_attempts: 2, delay: 10ms }
    fallback: [echo]
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let started = out.named("stage_started", "primary");
  let uses: Vec<(&Value, &Value)> = started
    .iter()
    .map(|e| (&e["attempt"], &e["uses"]))
    .collect();
  assert_eq!(
    uses,
    [
      (&json!(1), &json!("fail")),
      (&json!(2), &json!("fail")),
      (&json!(3), &json!("echo")),
    ],
    "{}",
    out.dump()
  );
  let done = out.named("stage_completed", "primary");
  assert_eq!(done.len(), 1);
  assert_eq!(done[0]["uses"], "echo");
  assert_eq!(done[0]["outputs"]["message"], "primary down");
  assert_eq!(out.final_status("primary"), "completed");
}
