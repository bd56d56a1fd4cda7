//! `swdl run` scenarios: real workflow files, built-in skills, the real binary; assertions on
//! the JSON Lines event stream (docs/running.md, "Events") and the exit code ("Exit codes").
use crate::{
  common::{events_named, read_events, wait_for},
  test::{Test, line_matches},
};
use serde_json::{Value, json};
use std::{
  path::Path,
  process::Stdio,
  time::{Duration, Instant},
};

/// The arguments that run `wf.yaml` quietly, its events in `events.jsonl`.
const RUN: [&str; 6] = [
  "run",
  "wf.yaml",
  "--progress",
  "none",
  "--events",
  "events.jsonl",
];

/// A test that writes `yaml` as `wf.yaml` and runs it with [`RUN`].
fn run_wf(yaml: &str) -> Test {
  Test::new().workflow(yaml).args(RUN)
}

/// Milliseconds since the epoch of an event's RFC 3339 `ts` (`2026-11-22T14:03:07.123Z`).
#[track_caller]
fn ts_ms(event: &Value) -> i64 {
  let ts = event["ts"].as_str().expect("ts");
  let num = |range: std::ops::Range<usize>| -> i64 {
    ts.get(range)
      .and_then(|s| s.parse().ok())
      .unwrap_or_else(|| panic!("bad ts {ts}"))
  };
  let (y, m, d) = (num(0..4), num(5..7), num(8..10));
  let (hh, mm, ss, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
  // Howard Hinnant's days_from_civil.
  let y = if m <= 2 { y - 1 } else { y };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let mp = (m + 9) % 12;
  let doy = (153 * mp + 2) / 5 + d - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  let days = era * 146_097 + doe - 719_468;
  ((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000) + ms
}

/// The largest number of stages executing at once, from the order of start and end events.
fn peak_overlap(events: &[Value]) -> usize {
  let (mut now, mut peak) = (0usize, 0usize);
  for e in events {
    match e["event"].as_str() {
      Some("stage_started") => {
        now += 1;
        peak = peak.max(now);
      }
      Some("stage_completed" | "stage_failed" | "stage_timed_out")
        if e["uses"] != "gate" && !e["attempt"].is_null() =>
      {
        now -= 1;
      }
      Some("stage_cancelled") if !e["attempt"].is_null() => now -= 1,
      _ => {}
    }
  }
  peak
}

/// Whether a process is gone: no such pid, or a zombie nobody reaped yet.
fn process_gone(pid: i32) -> bool {
  // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
  let alive = unsafe { libc::kill(pid, 0) } == 0;
  if !alive {
    return true;
  }
  std::fs::read_to_string(format!("/proc/{pid}/stat"))
    .ok()
    .and_then(|stat| {
      // The state follows the parenthesised command name, which may itself hold spaces.
      let rest = &stat[stat.rfind(')')? + 1..];
      rest.split_whitespace().next().map(|s| s == "Z" || s == "X")
    })
    .unwrap_or(true)
}

// ---------------------------------------------------------------------------------------------
// Scheduling

#[test]
fn diamond_runs_in_dependency_order() {
  let out = run_wf(
    r#"
name: diamond
stages:
  - id: a
    uses: sleep
    with: { ms: 50 }
  - id: b
    depends_on: a
    uses: sleep
    with: { ms: 100 }
  - id: c
    depends_on: a
    uses: echo
    with: { v: c }
  - id: d
    depends_on: [b, c]
    uses: echo
    with: { v: d }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let a_done = out.index("stage_completed", "a");
  for mid in ["b", "c"] {
    assert!(out.index("stage_started", mid) > a_done, "{}", out.dump());
  }
  let d_start = out.index("stage_started", "d");
  assert!(
    d_start > out.index("stage_completed", "b"),
    "{}",
    out.dump()
  );
  assert!(
    d_start > out.index("stage_completed", "c"),
    "{}",
    out.dump()
  );
  assert_eq!(out.events[0]["event"], "run_started");
  assert_eq!(out.events[0]["stages"], 4);
  let completed = out.completed();
  assert_eq!(completed["status"], "completed");
  assert_eq!(
    completed["stages"],
    json!({"a": "completed", "b": "completed", "c": "completed", "d": "completed"})
  );
  // Every event names the same run and has a timestamp.
  let run_id = &out.events[0]["run"];
  assert!(
    out
      .events
      .iter()
      .all(|e| &e["run"] == run_id && e["ts"].is_string())
  );
}

#[test]
fn ready_queue_starts_a_stage_without_waiting_for_its_level() {
  // `quick2` (level 1) starts while `slow` (level 0) still runs: not level by level.
  let out = run_wf(
    r#"
name: ready
stages:
  - id: slow
    uses: sleep
    with: { ms: 400 }
  - id: quick
    uses: echo
  - id: quick2
    depends_on: quick
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert!(
    out.index("stage_started", "quick2") < out.index("stage_completed", "slow"),
    "{}",
    out.dump()
  );
}

const EIGHT_SLEEPS: &str = r#"
name: wide
config: { max_parallel: 3 }
stages:
  - { id: s1, uses: sleep, with: { ms: 300 } }
  - { id: s2, uses: sleep, with: { ms: 300 } }
  - { id: s3, uses: sleep, with: { ms: 300 } }
  - { id: s4, uses: sleep, with: { ms: 300 } }
  - { id: s5, uses: sleep, with: { ms: 300 } }
  - { id: s6, uses: sleep, with: { ms: 300 } }
  - { id: s7, uses: sleep, with: { ms: 300 } }
  - { id: s8, uses: sleep, with: { ms: 300 } }
"#;

#[test]
fn peak_concurrency_reaches_but_never_exceeds_max_parallel() {
  let out = run_wf(EIGHT_SLEEPS).stdout("").stderr("").status(0).run();
  assert_eq!(out.events[0]["max_parallel"], 3);
  assert_eq!(peak_overlap(&out.events), 3, "{}", out.dump());
  let started = out
    .events
    .iter()
    .filter(|e| e["event"] == "stage_started")
    .count();
  assert_eq!(started, 8);
  // Stages start in file order when they are all ready at once.
  let order: Vec<&str> = out
    .events
    .iter()
    .filter(|e| e["event"] == "stage_started")
    .filter_map(|e| e["stage"].as_str())
    .collect();
  assert_eq!(order, ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]);
}

#[test]
fn max_parallel_flag_overrides_the_file() {
  let out = run_wf(EIGHT_SLEEPS)
    .args(["--max-parallel", "5"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(out.events[0]["max_parallel"], 5);
  assert_eq!(peak_overlap(&out.events), 5, "{}", out.dump());
}

// ---------------------------------------------------------------------------------------------
// Retries, timeouts, fallbacks

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

// ---------------------------------------------------------------------------------------------
// Failure policies

#[test]
fn halt_compensates_in_reverse_completion_order() {
  let test = Test::new();
  let log = test.path().join("undo.log");
  let log = log.display();
  let yaml = format!(
    r#"
name: saga
stages:
  - id: first
    uses: echo
    with: {{ v: 1 }}
    compensate: {{ uses: shell, with: {{ run: "echo undo-first >> {log}" }} }}
  - id: second
    depends_on: first
    uses: shell
    with: {{ run: "true" }}
    compensate: {{ uses: shell, with: {{ run: "echo undo-second >> {log}" }} }}
  - id: boom
    depends_on: second
    uses: fail
    with: {{ message: "boom" }}
    compensate: {{ uses: shell, with: {{ run: "echo undo-boom >> {log}" }} }}
  - id: never
    depends_on: boom
    uses: echo
  - id: never2
    depends_on: never
    uses: echo
"#
  );
  let out = test
    .workflow(&yaml)
    .args(RUN)
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let compensations: Vec<&str> = out
    .events
    .iter()
    .filter(|e| e["event"] == "compensation_started")
    .filter_map(|e| e["stage"].as_str())
    .collect();
  assert_eq!(compensations, ["second", "first"], "{}", out.dump());
  assert_eq!(out.named("compensation_completed", "second").len(), 1);
  assert_eq!(out.named("compensation_completed", "first").len(), 1);
  assert_eq!(
    out.named("compensation_started", "second")[0]["uses"],
    "shell"
  );
  // Compensations come after the failure and before the end.
  assert!(out.index("compensation_started", "second") > out.index("stage_failed", "boom"));
  let text = std::fs::read_to_string(out.path().join("undo.log")).expect("log written");
  assert_eq!(text, "undo-second\nundo-first\n");
  for stage in ["never", "never2"] {
    assert!(out.named("stage_started", stage).is_empty());
    let cancelled = out.named("stage_cancelled", stage);
    assert_eq!(cancelled.len(), 1, "{}", out.dump());
    assert_eq!(cancelled[0]["reason"], "halt");
    assert_eq!(out.final_status(stage), "cancelled");
  }
  assert_eq!(out.final_status("first"), "completed");
  assert_eq!(out.final_status("second"), "completed");
  assert_eq!(out.final_status("boom"), "failed");
  assert_eq!(out.completed()["status"], "failed");
}

#[test]
fn failed_compensation_is_reported_and_the_rest_still_run() {
  let out = run_wf(
    r#"
name: saga2
stages:
  - id: a
    uses: echo
    compensate: { uses: shell, with: { run: "true" } }
  - id: b
    depends_on: a
    uses: echo
    compensate: { uses: shell, with: { run: "echo cannot undo >&2; exit 5" } }
  - id: c
    depends_on: b
    uses: fail
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let failed = out.named("compensation_failed", "b");
  assert_eq!(failed.len(), 1, "{}", out.dump());
  assert_eq!(
    failed[0]["error"], "shell exited with status 5: cannot undo",
    "{}",
    failed[0]
  );
  assert_eq!(out.named("compensation_completed", "a").len(), 1);
  // Compensations never change a stage's status.
  assert_eq!(out.final_status("b"), "completed");
}

#[test]
fn halt_cancels_stages_in_flight() {
  let started = Instant::now();
  let out = run_wf(
    r#"
name: halt
stages:
  - id: long
    uses: sleep
    with: { ms: 30000 }
  - id: boom
    uses: shell
    with: { run: "sleep 0.1; exit 1" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert!(started.elapsed() < Duration::from_secs(20), "halt waited");
  let cancelled = out.named("stage_cancelled", "long");
  assert_eq!(cancelled.len(), 1, "{}", out.dump());
  assert_eq!(cancelled[0]["reason"], "halt");
  assert_eq!(cancelled[0]["attempt"], 1);
  assert_eq!(out.final_status("long"), "cancelled");
  assert_eq!(out.final_status("boom"), "failed");
}

#[test]
fn continue_skips_dependents_and_fails_the_run() {
  let out = run_wf(
    r#"
name: cont
stages:
  - id: bad
    uses: fail
    on_failure: continue
  - id: child
    depends_on: bad
    uses: echo
  - id: grandchild
    depends_on: child
    uses: echo
  - id: independent
    uses: sleep
    with: { ms: 100 }
  - id: after-independent
    depends_on: independent
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  for stage in ["child", "grandchild"] {
    let skipped = out.named("stage_skipped", stage);
    assert_eq!(skipped.len(), 1, "{}", out.dump());
    assert_eq!(skipped[0]["reason"], "dependency");
    assert_eq!(out.final_status(stage), "skipped");
  }
  assert_eq!(out.final_status("independent"), "completed");
  assert_eq!(out.final_status("after-independent"), "completed");
  assert_eq!(out.final_status("bad"), "failed");
  assert_eq!(out.completed()["status"], "failed");
}

#[test]
fn ignore_lets_dependents_run_and_the_run_succeed() {
  let out = run_wf(
    r#"
name: ign
stages:
  - id: bad
    uses: fail
    with: { message: "ignored" }
    on_failure: ignore
  - id: child
    depends_on: bad
    uses: echo
    with: { status: "$<< stages.bad.status >>" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(out.named("stage_failed", "bad").len(), 1);
  assert_eq!(out.final_status("bad"), "failed");
  assert_eq!(out.final_status("child"), "completed");
  assert_eq!(
    out.named("stage_started", "child")[0]["inputs"]["status"],
    "failed"
  );
  assert_eq!(out.completed()["status"], "completed");
}

#[test]
fn failure_cleanup_stage_runs_after_a_failure() {
  let out = run_wf(
    r#"
name: cleanup
stages:
  - id: build
    uses: fail
    with: { message: "compile error" }
  - id: publish
    depends_on: build
    uses: echo
  - id: report
    depends_on: build
    if: "$<< failure() >>"
    uses: echo
    with: { status: "$<< stages.build.status >>" }
  - id: on-success
    depends_on: build
    if: "$<< success() >>"
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(out.final_status("report"), "completed", "{}", out.dump());
  assert_eq!(
    out.named("stage_started", "report")[0]["inputs"]["status"],
    "failed"
  );
  assert!(out.named("stage_started", "publish").is_empty());
  assert!(out.named("stage_started", "on-success").is_empty());
  assert_eq!(out.final_status("publish"), "cancelled");
  assert_ne!(out.final_status("on-success"), "completed");
  assert_eq!(out.completed()["status"], "failed");
}

#[test]
fn failure_cleanup_stage_runs_under_continue_too() {
  let out = run_wf(
    r#"
name: cleanup2
stages:
  - id: build
    uses: fail
    on_failure: continue
  - id: publish
    depends_on: build
    uses: echo
  - id: report
    depends_on: publish
    if: "$<< failure() >>"
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(out.final_status("publish"), "skipped");
  assert_eq!(out.final_status("report"), "completed", "{}", out.dump());
}

#[test]
fn always_stage_runs_on_halt_once_its_dependencies_settle() {
  let out = run_wf(
    r#"
name: always
stages:
  - id: boom
    uses: fail
  - id: next
    depends_on: boom
    uses: echo
  - id: teardown
    depends_on: next
    if: "$<< always() >>"
    uses: shell
    with: { run: "echo tearing down" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(out.final_status("next"), "cancelled");
  assert_eq!(out.final_status("teardown"), "completed", "{}", out.dump());
  assert!(out.index("stage_started", "teardown") > out.index("stage_cancelled", "next"));
  assert_eq!(out.completed()["status"], "failed");
}

// ---------------------------------------------------------------------------------------------
// Conditions and skips

#[test]
fn a_stage_skipped_by_its_own_condition_does_not_block_dependents() {
  let out = run_wf(
    r#"
name: skip
parameters:
  enabled: { type: boolean, default: false }
stages:
  - id: optional
    if: "$<< parameters.enabled >>"
    uses: echo
    with: { x: 1 }
  - id: consumer
    depends_on: optional
    uses: echo
    with: { x: "$<< stages.optional.outputs.x >>", st: "$<< stages.optional.status >>" }
  - id: last
    depends_on: consumer
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let skipped = out.named("stage_skipped", "optional");
  assert_eq!(skipped.len(), 1, "{}", out.dump());
  assert_eq!(skipped[0]["reason"], "condition");
  let inputs = &out.named("stage_started", "consumer")[0]["inputs"];
  assert_eq!(inputs["x"], Value::Null);
  assert_eq!(inputs["st"], "skipped");
  assert_eq!(out.final_status("consumer"), "completed");
  assert_eq!(out.final_status("last"), "completed");
  assert_eq!(out.completed()["status"], "completed");

  // The same workflow with the condition true runs the stage.
  let out = out
    .then()
    .args(RUN)
    .args(["--param", "enabled=true"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(out.named("stage_started", "consumer")[0]["inputs"]["x"], 1);
}

#[test]
fn a_skip_caused_by_failure_propagates_down_the_chain() {
  let out = run_wf(
    r#"
name: chain
stages:
  - id: a
    uses: fail
    on_failure: continue
  - id: b
    depends_on: a
    uses: echo
  - id: c
    depends_on: b
    if: "$<< true >>"
    uses: echo
  - id: d
    depends_on: c
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  for stage in ["b", "c", "d"] {
    let skipped = out.named("stage_skipped", stage);
    assert_eq!(skipped.len(), 1, "{stage}: {}", out.dump());
    assert_eq!(skipped[0]["reason"], "dependency", "{stage}");
    assert!(out.named("stage_started", stage).is_empty());
  }
}

// ---------------------------------------------------------------------------------------------
// Outputs, contracts, data flow

#[test]
fn contract_violation_fails_with_reason_contract_naming_the_field() {
  let out = run_wf(
    r#"
name: contract
stages:
  - id: produce
    uses: echo
    with: { count: "three" }
    outputs: { count: integer }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let failed = out.named("stage_failed", "produce");
  assert_eq!(failed.len(), 1, "{}", out.dump());
  assert_eq!(failed[0]["reason"], "contract");
  assert_eq!(
    failed[0]["error"], "output contract broken: output `count` must be integer, got string",
    "{}",
    failed[0]
  );
  assert!(out.named("stage_completed", "produce").is_empty());
  assert_eq!(out.final_status("produce"), "failed");
}

#[test]
fn missing_required_output_breaks_the_contract() {
  let out = run_wf(
    r#"
name: contract2
stages:
  - id: produce
    uses: echo
    with: { other: 1 }
    outputs: { report: { type: string, required: true } }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let failed = out.named("stage_failed", "produce");
  assert_eq!(failed[0]["reason"], "contract", "{}", out.dump());
  assert_eq!(
    failed[0]["error"],
    "output contract broken: required output `report` (string) is missing"
  );
}

#[test]
fn workflow_outputs_are_in_run_completed() {
  let out = run_wf(
    r#"
name: outs
stages:
  - id: a
    uses: echo
    with: { n: 41, list: [1, 2] }
  - id: b
    depends_on: a
    uses: echo
    with: { text: "n is $<< stages.a.outputs.n >>" }
outputs:
  n: "$<< stages.a.outputs.n >>"
  list: "$<< stages.a.outputs.list >>"
  text: "$<< stages.b.outputs.text >>"
  status: "$<< stages.b.status >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(
    out.completed()["outputs"],
    json!({"n": 41, "list": [1, 2], "text": "n is 41", "status": "completed"})
  );
  assert!(out.completed()["duration_ms"].is_u64());
}

#[test]
fn output_json_prints_only_the_run_record_on_stdout() {
  // Plain progress goes to stderr; stdout must stay pure JSON. `greet` and `bad` run at the
  // same time, so the order of their progress lines varies.
  let out = Test::new()
    .workflow(
      r#"
      name: record
      parameters:
        who: { type: string, default: world }
      stages:
        - id: greet
          uses: shell
          with: { run: "echo hello $<< parameters.who >>" }
        - id: maybe
          if: "$<< false >>"
          uses: echo
        - id: bad
          uses: fail
          on_failure: ignore
      outputs:
        greeting: "$<< stages.greet.outputs.stdout >>"
      "#,
    )
    .args(["run", "wf.yaml", "--progress", "plain", "--output", "json"])
    .stdout(
      r#"
      {
        "run": "[..]",
        "workflow": "record",
        "status": "completed",
        "started_at": "[..]",
        "finished_at": "[..]",
        "duration_ms": [..],
        "params": {
          "who": "world"
        },
        "outputs": {
          "greeting": "hello world"
        },
        "stages": {
          "greet": {
            "status": "completed",
            "attempts": 1,
            "uses": "shell",
            "inputs": {
              "run": "echo hello world"
            },
            "outputs": {
              "stdout": "hello world",
              "stderr": "",
              "exit_code": 0
            },
            "started_at": "[..]",
            "finished_at": "[..]",
            "duration_ms": [..],
            "logs": [
              "hello world"
            ]
          },
          "maybe": {
            "status": "skipped",
            "attempts": 0,
            "reason": "condition",
            "finished_at": "[..]"
          },
          "bad": {
            "status": "failed",
            "attempts": 1,
            "uses": "fail",
            "inputs": {},
            "error": "fail skill failed as asked",
            "reason": "error",
            "started_at": "[..]",
            "finished_at": "[..]",
            "duration_ms": [..]
          }
        }
      }
      "#,
    )
    .stderr(
      r#"
      [..] run record started (3 stages, max_parallel 3)
      [..] stage maybe skipped (condition)
      ...
      [..] run completed in [..]
      completed 1/3 stages, 1 failed, 1 skipped in [..]
      "#,
    )
    .status(0)
    .run();
  let record = out.json();
  assert_eq!(record["status"], "completed");
  assert_eq!(record["outputs"], json!({"greeting": "hello world"}));
  assert_eq!(record["workflow"], "record");
  for line in [
    "[..] stage greet started (attempt 1, uses shell)",
    "[..] stage greet: hello world",
    "[..] stage greet completed in [..]",
    "[..] stage bad started (attempt 1, uses fail)",
    "[..] stage bad failed: fail skill failed as asked",
  ] {
    // The two stages interleave, so each line is looked for on its own.
    assert!(
      out.stderr.lines().any(|l| line_matches(line, l)),
      "no `{line}` in\n{}",
      out.stderr
    );
  }
}

#[test]
fn events_to_stdout_are_json_lines_only() {
  // The shell's stdout and stderr lines come through two pipes, so their order varies.
  let run = Test::new()
    .workflow(
      r#"
      name: stdout-events
      stages:
        - id: a
          uses: shell
          with: { run: "echo out; echo err >&2" }
      "#,
    )
    .args(["run", "wf.yaml", "--progress", "plain", "--events", "-"])
    .stderr(
      r#"
      [..] run stdout-events started (1 stage, max_parallel 3)
      [..] stage a started (attempt 1, uses shell)
      ...
      [..] stage a completed in [..]
      [..] run completed in [..]
      completed 1/1 stages in [..]
      "#,
    )
    .status(0)
    .run();
  let events: Vec<Value> = run
    .stdout
    .lines()
    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
    .collect();
  assert_eq!(
    events.first().map(|e| &e["event"]),
    Some(&json!("run_started"))
  );
  assert_eq!(
    events.last().map(|e| &e["event"]),
    Some(&json!("run_completed"))
  );
  assert_eq!(events.len(), 6, "{}", run.stdout);
}

#[test]
fn shell_outputs_flow_into_a_later_stage() {
  let out = run_wf(
    r#"
name: flow
stages:
  - id: produce
    uses: shell
    with:
      run: |
        echo "version=1.2.3" >> "$SWDL_OUTPUT"
        printf 'notes<<EOF\nline one\nline two\nEOF\n' >> "$SWDL_OUTPUT"
  - id: consume
    depends_on: produce
    uses: echo
    with:
      tag: "v$<< stages.produce.outputs.version >>"
      notes: "$<< stages.produce.outputs.notes >>"
      code: "$<< stages.produce.outputs.exit_code >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let inputs = &out.named("stage_started", "consume")[0]["inputs"];
  assert_eq!(inputs["tag"], "v1.2.3", "{}", out.dump());
  assert_eq!(inputs["notes"], "line one\nline two");
  assert_eq!(inputs["code"], 0);
}

#[test]
fn params_reach_stages() {
  let out = run_wf(
    r#"
name: params
parameters:
  name: { type: string, required: true }
  count: { type: integer, default: 1 }
  tags: { type: array, default: [] }
  strict: { type: boolean, default: false }
stages:
  - id: show
    uses: echo
    with:
      name: "$<< parameters.name >>"
      count: "$<< parameters.count >>"
      tags: "$<< parameters.tags >>"
      strict: "$<< parameters.strict >>"
  - id: env
    uses: shell
    with:
      run: 'echo "hi $WHO"'
      env: { WHO: "$<< parameters.name >>" }
"#,
  )
  .file("params.json", r#"{"count": 2, "name": "from-file"}"#)
  .args([
    "--params",
    "params.json",
    "--param",
    "name=cli wins",
    "--param",
    r#"tags=["a","b"]"#,
    "--param",
    "strict=true",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let inputs = &out.named("stage_started", "show")[0]["inputs"];
  assert_eq!(
    inputs,
    &json!({"name": "cli wins", "count": 2, "tags": ["a", "b"], "strict": true}),
    "{}",
    out.dump()
  );
  assert_eq!(
    out.events[0]["params"],
    json!({"name": "cli wins", "count": 2, "tags": ["a", "b"], "strict": true})
  );
  let logs = out.named("log", "env");
  assert!(
    logs.iter().any(|l| l["message"] == "hi cli wins"),
    "{}",
    out.dump()
  );
}

#[test]
fn secrets_never_appear_in_events_progress_or_output() {
  const SECRET: &str = "hunter2-s3cr3t-value";
  const ENV_SECRET: &str = "env-s3cr3t-777";
  let yaml = r#"
name: secrets
parameters:
  token: { type: string, secret: true }
config:
  secrets: [SWDL_TEST_DEPLOY_KEY]
stages:
  - id: use
    uses: echo
    with: { token: "$<< parameters.token >>", header: "Bearer $<< parameters.token >>" }
  - id: ok
    gate: { message: "Deploy with $<< parameters.token >>?" }
  - id: shell
    depends_on: ok
    uses: shell
    with:
      run: 'echo "token=$TOKEN"; echo "leak=$TOKEN" >> "$SWDL_OUTPUT"; echo "$TOKEN $SWDL_TEST_DEPLOY_KEY" >&2'
      env: { TOKEN: "$<< parameters.token >>" }
  - id: fails
    depends_on: [use, shell]
    uses: fail
    with: { message: "bad token $<< parameters.token >>" }
    on_failure: ignore
outputs:
  token: "$<< parameters.token >>"
  leak: "$<< stages.shell.outputs.leak >>"
"#;
  let param = format!("token={SECRET}");
  // Stages run at the same time, so the order of the progress lines varies: the streams are
  // searched for the secrets rather than compared.
  let out = Test::new()
    .workflow(yaml)
    .args([
      "run",
      "wf.yaml",
      "--progress",
      "plain",
      "--events",
      "events.jsonl",
    ])
    .args(["--param", &param, "--approve", "ok", "--output", "json"])
    .env("SWDL_TEST_DEPLOY_KEY", ENV_SECRET)
    .status(0)
    .run();
  let events = std::fs::read_to_string(out.path().join("events.jsonl")).expect("events");
  for secret in [SECRET, ENV_SECRET] {
    assert!(!events.contains(secret), "secret in events:\n{events}");
    assert!(
      !out.stdout.contains(secret),
      "secret in --output json:\n{}",
      out.stdout
    );
    assert!(
      !out.stderr.contains(secret),
      "secret in the progress display:\n{}",
      out.stderr
    );
  }
  assert!(events.contains("***"), "nothing was masked:\n{events}");
  assert_eq!(out.json()["outputs"]["token"], "***");
  // The stage itself saw the real values; only what is reported is masked.
  let logs = out.named("log", "shell");
  assert!(
    logs.iter().any(|l| l["message"] == "token=***"),
    "{}",
    out.dump()
  );
  assert!(
    logs.iter().any(|l| l["message"] == "*** ***"),
    "{}",
    out.dump()
  );
  assert_eq!(
    out.named("gate_waiting", "ok")[0]["message"],
    "Deploy with ***?"
  );
}

#[test]
fn shell_sees_config_env_and_its_swdl_variables() {
  let test = Test::new();
  let base = test.path().to_path_buf();
  let out = test
    .workflow(
    r#"
name: shell-env
parameters:
  who: { type: string, default: bob }
config:
  env: { GREETING: "hello $<< parameters.who >>" }
stages:
  - id: s
    uses: shell
    with:
      run: 'echo "$GREETING|$SWDL_STAGE|$SWDL_ATTEMPT|$SWDL_IDEMPOTENCY_KEY|$SWDL_RUN_ID|$(pwd -P)"; test "$SWDL_ATTEMPT" -ge 2'
    retry: { max_attempts: 2, delay: 10ms }
  - id: e
    uses: echo
    with: { greeting: "$<< env.GREETING >>" }
"#,
    )
    .args(RUN)
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let run_id = out.events[0]["run"].as_str().expect("run id");
  let lines: Vec<&Value> = out
    .named("log", "s")
    .iter()
    .map(|l| &l["message"])
    .collect();
  let cwd = base.canonicalize().expect("canonical dir");
  let expect = |attempt: u32| {
    json!(format!(
      "hello bob|s|{attempt}|{run_id}/s|{run_id}|{}",
      cwd.display()
    ))
  };
  // The idempotency key stays the same across retries; the attempt number does not.
  assert_eq!(lines, [&expect(1), &expect(2)], "{}", out.dump());
  assert_eq!(
    out.named("stage_started", "e")[0]["inputs"]["greeting"],
    "hello bob"
  );
}

// ---------------------------------------------------------------------------------------------
// Shell

#[test]
fn failing_shell_reports_its_exit_status() {
  let out = run_wf(
    r#"
name: shfail
stages:
  - id: quiet
    uses: shell
    with: { run: "exit 3" }
    on_failure: continue
  - id: loud
    uses: shell
    with: { run: "echo 'disk full' >&2; exit 3" }
    on_failure: continue
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let quiet = out.named("stage_failed", "quiet");
  assert_eq!(
    quiet[0]["error"],
    "shell exited with status 3",
    "{}",
    out.dump()
  );
  assert_eq!(quiet[0]["reason"], "error");
  assert_eq!(quiet[0]["uses"], "shell");
  let loud = out.named("stage_failed", "loud");
  assert_eq!(loud[0]["error"], "shell exited with status 3: disk full");
}

#[test]
fn log_events_carry_shell_output_lines() {
  let out = run_wf(
    r#"
name: logs
stages:
  - id: talk
    uses: shell
    with: { run: "echo one; echo two; echo warn >&2; printf 'no newline'" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let logs = out.named("log", "talk");
  let stdout: Vec<&Value> = logs
    .iter()
    .filter(|l| l["stream"] == "stdout")
    .map(|l| &l["message"])
    .collect();
  assert_eq!(
    stdout,
    [&json!("one"), &json!("two"), &json!("no newline")],
    "{}",
    out.dump()
  );
  assert!(
    logs
      .iter()
      .any(|l| l["stream"] == "stderr" && l["message"] == "warn")
  );
  assert!(logs.iter().all(|l| l["attempt"] == 1));
  // Logs come between the attempt's start and its end.
  let start = out.index("stage_started", "talk");
  let end = out.index("stage_completed", "talk");
  let first_log = out.index("log", "talk");
  assert!(start < first_log && first_log < end);
  let outputs = &out.named("stage_completed", "talk")[0]["outputs"];
  assert_eq!(outputs["stdout"], "one\ntwo\nno newline");
  assert_eq!(outputs["stderr"], "warn");
  assert_eq!(outputs["exit_code"], 0);
}

// ---------------------------------------------------------------------------------------------
// Whole-run timeout and cancellation

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

// ---------------------------------------------------------------------------------------------
// Gates and approvals

const GATED: &str = r#"
name: gated
stages:
  - id: build
    uses: echo
    with: { artifact: app.tar }
  - id: ship
    depends_on: build
    gate: { message: "Ship $<< stages.build.outputs.artifact >>?" }
  - id: deploy
    depends_on: ship
    uses: echo
    with: { by: "$<< stages.ship.outputs.decided_by >>" }
"#;

#[test]
fn gate_rejected_by_flag_exits_3() {
  let out = run_wf(GATED)
    .args(["--reject", "ship"])
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let waiting = out.named("gate_waiting", "ship");
  assert_eq!(waiting.len(), 1, "{}", out.dump());
  assert_eq!(waiting[0]["message"], "Ship app.tar?");
  assert_eq!(waiting[0]["kind"], "gate");
  let decided = out.named("gate_decided", "ship");
  assert_eq!(decided.len(), 1);
  assert_eq!(decided[0]["decision"], "reject");
  assert_eq!(decided[0]["decided_by"], "flag");
  let failed = out.named("stage_failed", "ship");
  assert_eq!(failed[0]["reason"], "rejected");
  assert_eq!(out.final_status("ship"), "failed");
  // Gates never emit stage_started; the dependent never runs.
  assert!(out.named("stage_started", "ship").is_empty());
  assert!(out.named("stage_started", "deploy").is_empty());
  assert_ne!(out.final_status("deploy"), "completed");
}

#[test]
fn gate_approved_by_flag_lets_dependents_run() {
  let out = run_wf(GATED)
    .args(["--approve", "ship"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let decided = out.named("gate_decided", "ship");
  assert_eq!(decided[0]["decision"], "approve", "{}", out.dump());
  assert_eq!(decided[0]["decided_by"], "flag");
  assert!(out.named("stage_started", "ship").is_empty());
  assert_eq!(out.final_status("ship"), "completed");
  assert_eq!(
    out.named("stage_started", "deploy")[0]["inputs"]["by"],
    "flag"
  );
  assert!(out.index("stage_started", "deploy") > out.index("gate_decided", "ship"));

  run_wf(GATED)
    .args(["--approve-all"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn undecided_gate_without_a_terminal_suspends() {
  let out = run_wf(GATED)
    .stdout("")
    .stderr(
      "run [..] is suspended at ship: approve with `swdl approve [..] ship` (or `swdl reject \
       ...`), then continue it with `swdl resume [..]`\n",
    )
    .status(4)
    .run();
  assert_eq!(out.named("gate_waiting", "ship").len(), 1);
  assert!(out.named("gate_decided", "ship").is_empty());
  assert_eq!(out.final_status("build"), "completed");
  assert!(out.named("stage_started", "deploy").is_empty());
  assert_eq!(out.completed()["status"], "waiting");
}

#[test]
fn gate_timeout_applies_on_timeout() {
  let approve = r#"
name: gate-timeout
stages:
  - id: ok
    gate: { message: "go?", timeout: 200ms, on_timeout: approve }
  - id: after
    depends_on: ok
    uses: echo
"#;
  let out = run_wf(approve).stdout("").stderr("").status(0).run();
  let waiting = out.named("gate_waiting", "ok");
  assert_eq!(waiting[0]["timeout_ms"], 200, "{}", out.dump());
  let decided = out.named("gate_decided", "ok");
  assert_eq!(decided[0]["decision"], "approve");
  assert_eq!(decided[0]["decided_by"], "timeout");
  assert!(ts_ms(decided[0]) - ts_ms(waiting[0]) >= 199);
  assert_eq!(out.final_status("after"), "completed");

  // The default is to reject.
  let reject = approve.replace(", on_timeout: approve", "");
  let out = run_wf(&reject).stdout("").stderr("").status(3).run();
  assert_eq!(out.named("gate_decided", "ok")[0]["decision"], "reject");
  assert_eq!(out.final_status("ok"), "failed");
}

const RISKY: &str = r#"
name: risky
config:
  approval: { require_for: high }
stages:
  - id: check
    uses: echo
    risk: medium
  - id: deploy
    depends_on: check
    uses: echo
    risk: high
  - id: nuke
    uses: echo
    risk: critical
    on_failure: continue
"#;

#[test]
fn risky_stages_need_approval() {
  let out = run_wf(RISKY)
    .stdout("")
    .stderr(
      "run [..] is suspended at nuke, deploy: approve with `swdl approve [..] nuke`, \
       `swdl approve [..] deploy` (or `swdl reject ...`), then continue it with \
       `swdl resume [..]`\n",
    )
    .status(4)
    .run();
  assert_eq!(out.final_status("check"), "completed");
  for stage in ["deploy", "nuke"] {
    let waiting = out.named("gate_waiting", stage);
    assert_eq!(waiting.len(), 1, "{}", out.dump());
    assert_eq!(waiting[0]["kind"], "approval");
    assert!(out.named("stage_started", stage).is_empty());
  }

  let out = run_wf(RISKY)
    .args(["--approve", "deploy", "--reject", "nuke"])
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let decided = out.named("gate_decided", "deploy");
  assert_eq!(decided[0]["decision"], "approve", "{}", out.dump());
  assert!(out.index("stage_started", "deploy") > out.index("gate_decided", "deploy"));
  assert_eq!(out.final_status("deploy"), "completed");
  assert_eq!(out.named("stage_failed", "nuke")[0]["reason"], "rejected");
  assert!(out.named("stage_started", "nuke").is_empty());

  run_wf(RISKY)
    .args(["--approve-all"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
}

// ---------------------------------------------------------------------------------------------
// Invalid input

#[test]
fn invalid_param_exits_2_before_any_event() {
  let out = run_wf(
    r#"
name: bad-param
parameters:
  n: { type: integer, required: true }
stages:
  - id: a
    uses: echo
    with: { n: "$<< parameters.n >>" }
"#,
  )
  .args(["--param", "n=lots", "--output", "json"])
  .stdout("")
  // The bad value is also reported as a missing parameter.
  .stderr(
    r#"
    --param:1:3: error: parameter `n` expects integer, got `lots`
      |
    1 | n=lots
      |   ^^^^
    wf.yaml:3:3: error: missing required parameter `n`: pass --param n=VALUE
      |
    3 |   n: { type: integer, required: true }
      |   ^
    2 errors
    "#,
  )
  .status(2)
  .run();
  assert!(out.events.is_empty(), "events were written: {}", out.dump());

  // A missing required parameter too.
  let out = out
    .then()
    .args(RUN)
    .stdout("")
    .stderr(
      r#"
      wf.yaml:3:3: error: missing required parameter `n`: pass --param n=VALUE
        |
      3 |   n: { type: integer, required: true }
        |   ^
      "#,
    )
    .status(2)
    .run();
  assert!(out.events.is_empty());
}

#[test]
fn a_non_builtin_skill_exits_2_with_its_position() {
  let out = run_wf(
    "name: unknown-skill\nstages:\n  - id: a\n    uses: echo\n  - id: b\n    uses: summarise-text\n",
  )
  .stdout("")
  .stderr(
    r#"
    wf.yaml:6:11: error: unknown skill `summarise-text`: not a built-in skill, and no `NAME.lua` or `NAME/init.lua` on the skills path
      |
    6 |     uses: summarise-text
      |           ^^^^^^^^^^^^^^
    "#,
  )
  .status(2)
  .run();
  assert!(out.events.is_empty(), "{}", out.dump());
}

// ---------------------------------------------------------------------------------------------
// More scheduling and failure details

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
  .stdout("")
  .stderr("")
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
    "run [..] is suspended at ok: approve with `swdl approve [..] ok` (or `swdl reject ...`), \
     then continue it with `swdl resume [..]`\n",
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
