//! Failure policies: halt, continue, ignore, compensation and cleanup stages.
use super::*;

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
    compensate: { uses: shell, with: { run: "echo undoing a; echo undone a" } }
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
  // What a compensation prints is logged, marked as the compensation's, between its start and
  // its end.
  let lines = |stage: &str| -> Vec<(usize, String, String)> {
    out
      .events
      .iter()
      .enumerate()
      .filter(|(_, e)| e["event"] == "log" && e["stage"] == stage)
      .map(|(i, e)| {
        assert_eq!(e["compensation"], true, "{e}");
        (i, e["stream"].to_string(), e["message"].to_string())
      })
      .collect()
  };
  let a = lines("a");
  assert_eq!(
    a.iter()
      .map(|(_, stream, message)| format!("{stream} {message}"))
      .collect::<Vec<_>>(),
    [r#""stdout" "undoing a""#, r#""stdout" "undone a""#],
    "{}",
    out.dump()
  );
  assert!(a[0].0 > out.index("compensation_started", "a"));
  assert!(a[1].0 < out.index("compensation_completed", "a"));
  let b = lines("b");
  assert_eq!(b.len(), 1, "{}", out.dump());
  assert_eq!(b[0].1, r#""stderr""#);
  assert!(b[0].0 < out.index("compensation_failed", "b"));
  // The run record shows them as the compensation's.
  let id = out.events[0]["run"]
    .as_str()
    .unwrap_or_default()
    .to_string();
  let detail = out.then().args(["runs", id.as_str()]).status(0).run();
  let text = &detail.stdout;
  assert!(
    text.contains("  a compensation stdout: undone a\n"),
    "{text}"
  );
  assert!(
    text.contains("  b compensation stderr: cannot undo\n"),
    "{text}"
  );
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
