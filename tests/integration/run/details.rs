//! More scheduling and failure details.
use super::*;

#[test]
fn retry_delays_and_waiting_gates_do_not_hold_slots() {
  let out = run_wf(
    r#"
name: slots
config: { max_parallel: 1 }
stages:
  - id: flaky
    uses: fail
    with: { times: 1 }
    retry: { max_attempts: 2, delay: 600ms }
  - id: gate
    gate: { timeout: 400ms, on_timeout: approve }
  - id: other
    uses: sleep
    with: { ms: 50 }
  - id: other2
    uses: echo
"#,
  )
  .args(["--wait"])
  .stdout("")
  .stderr("run [..] waits at gate: [..]\n")
  .status(0)
  .run();
  let retry = out.index("stage_retrying", "flaky");
  let second_start = out
    .events
    .iter()
    .position(|e| e["event"] == "stage_started" && e["stage"] == "flaky" && e["attempt"] == 2)
    .expect("second attempt");
  let decided = out.index("gate_decided", "gate");
  for stage in ["other", "other2"] {
    let done = out.index("stage_completed", stage);
    assert!(
      retry < done && done < second_start,
      "{stage} waited for the retry: {}",
      out.dump()
    );
    assert!(
      done < decided,
      "{stage} waited for the gate: {}",
      out.dump()
    );
  }
  assert_eq!(peak_overlap(&out.events), 1);
}

#[test]
fn linear_backoff_is_capped_by_max_delay() {
  let out = run_wf(
    r#"
name: linear
stages:
  - id: flaky
    uses: fail
    with: { times: 3 }
    retry: { max_attempts: 4, backoff: linear, delay: 50ms, max_delay: 120ms }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let delays: Vec<&Value> = out
    .named("stage_retrying", "flaky")
    .iter()
    .map(|e| &e["delay_ms"])
    .collect();
  assert_eq!(
    delays,
    [&json!(50), &json!(100), &json!(120)],
    "{}",
    out.dump()
  );
}

#[test]
fn timeouts_are_retried_by_default() {
  let out = run_wf(
    r#"
name: timeout-retry
stages:
  - id: slow
    uses: sleep
    with: { ms: 30000 }
    timeout: 100ms
    retry: { max_attempts: 2, delay: 10ms }
  - id: after
    depends_on: slow
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(
    out.named("stage_timed_out", "slow").len(),
    2,
    "{}",
    out.dump()
  );
  let retrying = out.named("stage_retrying", "slow");
  assert_eq!(retrying.len(), 1);
  assert_eq!(
    retrying[0]["error"], "timed out after 100ms",
    "{}",
    retrying[0]
  );
  assert_eq!(out.final_status("slow"), "timed_out");
  assert_eq!(out.final_status("after"), "cancelled");
}

#[test]
fn compensations_follow_completion_order_not_file_order() {
  let test = Test::new();
  let log = test.path().join("undo.log");
  let yaml = format!(
    r#"
name: saga-order
stages:
  - id: slow
    uses: sleep
    with: {{ ms: 400 }}
    compensate: {{ uses: shell, with: {{ run: "echo undo-slow >> {log}" }} }}
  - id: fast
    uses: sleep
    with: {{ ms: 10 }}
    compensate: {{ uses: shell, with: {{ run: "echo undo-fast >> {log}" }} }}
  - id: boom
    depends_on: [slow, fast]
    uses: fail
"#,
    log = log.display()
  );
  let out = test
    .workflow(&yaml)
    .args(RUN)
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert!(out.index("stage_completed", "fast") < out.index("stage_completed", "slow"));
  let order: Vec<&str> = out
    .events
    .iter()
    .filter(|e| e["event"] == "compensation_started")
    .filter_map(|e| e["stage"].as_str())
    .collect();
  assert_eq!(order, ["slow", "fast"], "{}", out.dump());
  assert_eq!(
    std::fs::read_to_string(&log).expect("log"),
    "undo-slow\nundo-fast\n"
  );
}

#[test]
fn parallel_gates_are_decided_independently() {
  let out = run_wf(
    r#"
name: two-gates
stages:
  - id: left
    gate: { message: left? }
  - id: right
    gate: { message: right? }
    on_failure: continue
  - id: after-left
    depends_on: left
    uses: echo
  - id: after-right
    depends_on: right
    uses: echo
"#,
  )
  .args(["--approve", "left", "--reject", "right"])
  .stdout("")
  .stderr("")
  .status(3)
  .run();
  assert_eq!(out.named("gate_decided", "left")[0]["decision"], "approve");
  assert_eq!(out.named("gate_decided", "right")[0]["decision"], "reject");
  assert_eq!(
    out.final_status("after-left"),
    "completed",
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("after-right"), "skipped");
  assert_eq!(
    out.named("stage_skipped", "after-right")[0]["reason"],
    "dependency"
  );
}

#[test]
fn a_suspended_run_finishes_other_branches_first() {
  let out = run_wf(
    r#"
name: suspend
stages:
  - id: ok
    gate: { message: "go?" }
  - id: gated
    depends_on: ok
    uses: echo
  - id: work
    uses: sleep
    with: { ms: 200 }
  - id: more
    depends_on: work
    uses: echo
"#,
  )
  .stdout("")
  .stderr(
    "
    run [..] is suspended at ok
      decide ok: `swdl approve [..] ok` or `swdl reject [..] ok`
      then continue it: `swdl resume [..]`
    ",
  )
  .status(4)
  .run();
  let completed = out.completed();
  assert_eq!(completed["status"], "waiting");
  assert_eq!(completed["stages"]["work"], "completed", "{}", out.dump());
  assert_eq!(completed["stages"]["more"], "completed");
  assert_eq!(completed["stages"]["ok"], "waiting");
  assert_eq!(completed["stages"]["gated"], "pending");
}

#[test]
fn cleanup_stages_respect_max_parallel() {
  let out = run_wf(
    r#"
name: cleanup-slots
config: { max_parallel: 1 }
stages:
  - id: boom
    uses: fail
  - { id: c1, depends_on: boom, if: "$<< always() >>", uses: sleep, with: { ms: 100 } }
  - { id: c2, depends_on: boom, if: "$<< always() >>", uses: sleep, with: { ms: 100 } }
  - { id: c3, depends_on: boom, if: "$<< failure() >>", uses: sleep, with: { ms: 100 } }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  for stage in ["c1", "c2", "c3"] {
    assert_eq!(out.final_status(stage), "completed", "{}", out.dump());
  }
  assert_eq!(peak_overlap(&out.events), 1, "{}", out.dump());
}

#[test]
fn every_log_line_of_a_chatty_shell_is_reported_in_order() {
  let out = run_wf(
    r#"
name: chatty
stages:
  - id: talk
    uses: shell
    with: { run: "seq 1 3000; seq 1 500 >&2" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let logs = out.named("log", "talk");
  let stdout: Vec<String> = logs
    .iter()
    .filter(|l| l["stream"] == "stdout")
    .filter_map(|l| l["message"].as_str().map(str::to_string))
    .collect();
  let expected: Vec<String> = (1..=3000).map(|n| n.to_string()).collect();
  assert_eq!(stdout, expected);
  assert_eq!(logs.iter().filter(|l| l["stream"] == "stderr").count(), 500);
  let end = out.index("stage_completed", "talk");
  assert!(out.events.iter().skip(end).all(|e| e["event"] != "log"));
}

#[test]
fn expression_errors_at_run_time_fail_the_stage() {
  let out = run_wf(
    r#"
name: expr-errors
stages:
  - id: bad-if
    if: "$<< fromJSON('nope') >>"
    uses: echo
    on_failure: continue
  - id: bad-inputs
    uses: echo
    with: { v: "$<< fromJSON('{') >>" }
    on_failure: continue
  - id: fine
    uses: echo
"#,
  )
  .stdout("")
  // Failures found in the file at run time are reported like load errors (runtime_errors.rs).
  .stderr(
    r#"
    wf.yaml:4:11: error: stage `bad-if`: `if` could not be evaluated: fromJSON: invalid JSON: expected ident at line 1 column 2
      |
    4 |     if: "$<< fromJSON('nope') >>"
      |           ^^^^^^^^^^^^^^^^
    wf.yaml:9:21: error: stage `bad-inputs`: inputs could not be evaluated: fromJSON: invalid JSON: EOF while parsing an object at line 1 column 1
      |
    9 |     with: { v: "$<< fromJSON('{') >>" }
      |                     ^^^^^^^^^^^^^
    "#,
  )
  .status(1)
  .run();
  let bad_if = out.named("stage_failed", "bad-if");
  assert_eq!(bad_if[0]["reason"], "condition", "{}", out.dump());
  let bad_inputs = out.named("stage_failed", "bad-inputs");
  assert_eq!(bad_inputs[0]["reason"], "inputs");
  assert!(out.named("stage_started", "bad-if").is_empty());
  assert!(out.named("stage_started", "bad-inputs").is_empty());
  assert_eq!(out.final_status("fine"), "completed");
}

#[test]
fn defaults_apply_unless_a_stage_says_otherwise() {
  let out = run_wf(
    r#"
name: defaults
defaults:
  timeout: 100ms
  retry: { max_attempts: 2, delay: 10ms }
  on_failure: continue
stages:
  - id: slow
    uses: sleep
    with: { ms: 30000 }
  - id: own
    uses: sleep
    with: { ms: 200 }
    timeout: 10s
    retry: { max_attempts: 1 }
  - id: child
    depends_on: slow
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let timed_out = out.named("stage_timed_out", "slow");
  assert_eq!(timed_out.len(), 2, "{}", out.dump());
  assert_eq!(timed_out[0]["timeout_ms"], 100);
  assert_eq!(out.final_status("own"), "completed");
  // `on_failure: continue` from the defaults: the dependent is skipped, not cancelled.
  assert_eq!(out.final_status("child"), "skipped");
}

#[test]
fn progress_never_writes_to_stdout() {
  // The default is `--progress auto`, which is plain lines when stderr is not a terminal.
  Test::new()
    .workflow(
      r#"
      name: quiet
      stages:
        - id: a
          uses: shell
          with: { run: "echo from-the-script" }
      "#,
    )
    .args(["run", "wf.yaml"])
    .stdout("")
    .stderr(
      r#"
      [..] run quiet started (1 stage, max_parallel 3)
      [..] stage a started (attempt 1, uses shell)
      [..] stage a: from-the-script
      [..] stage a completed in [..]
      [..] run completed in [..]
      completed 1/1 stages in [..]
      "#,
    )
    .status(0)
    .run();
}

#[test]
fn cleanup_stages_keep_their_retries_and_fallbacks_after_a_halt() {
  let out = run_wf(
    r#"
name: cleanup-retry
stages:
  - id: boom
    uses: fail
  - id: cleanup
    depends_on: boom
    if: "$<< always() >>"
    uses: fail
    with: { times: 1 }
    retry: { max_attempts: 2, delay: 10ms }
  - id: cleanup2
    depends_on: boom
    if: "$<< failure() >>"
    uses: fail
    fallback: [echo]
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(
    out.named("stage_retrying", "cleanup").len(),
    1,
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("cleanup"), "completed");
  assert_eq!(
    out.named("stage_started", "cleanup2").len(),
    2,
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("cleanup2"), "completed");
}
