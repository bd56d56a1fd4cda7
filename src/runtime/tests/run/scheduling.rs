//! Scheduling, retries, failure policies, contracts, gates, stopping and steering.
use super::*;

#[test]
fn diamond_runs_in_dependency_order() {
  let ran = run(
    "name: t\nstages:\n  - { id: a, uses: work }\n  - { id: b, uses: work, depends_on: a, with: { ms: 20 } }\n  - { id: c, uses: work, depends_on: a }\n  - { id: d, uses: work, depends_on: [b, c] }\n",
  );
  assert_eq!(ran.outcome.state.status, RunStatus::Completed);
  assert_eq!(exit_code(&ran.outcome), 0);
  assert!(ran.position("stage_completed", "a") < ran.position("stage_started", "b"));
  assert!(ran.position("stage_completed", "a") < ran.position("stage_started", "c"));
  assert!(ran.position("stage_completed", "b") < ran.position("stage_started", "d"));
  assert!(ran.position("stage_completed", "c") < ran.position("stage_started", "d"));
}

#[test]
fn a_stage_starts_when_its_own_dependencies_are_done_not_its_level() {
  let ran = run(
    "name: t\nstages:\n  - { id: quick, uses: work }\n  - { id: slow, uses: work, with: { ms: 300 } }\n  - { id: next, uses: work, depends_on: quick }\n",
  );
  assert!(ran.position("stage_started", "next") < ran.position("stage_completed", "slow"));
}

#[test]
fn concurrency_reaches_but_never_exceeds_max_parallel() {
  let mut text = String::from("name: t\nconfig: { max_parallel: 3 }\nstages:\n");
  for i in 0..12 {
    text.push_str(&format!(
      "  - {{ id: s{i}, uses: work, with: {{ ms: 30 }} }}\n"
    ));
  }
  let ran = run(&text);
  assert_eq!(ran.script.peak.load(Ordering::SeqCst), 3);
  let ran = run_with(&text, |o| o.max_parallel = 12, drop);
  assert_eq!(ran.script.peak.load(Ordering::SeqCst), 12);
}

#[test]
fn retries_back_off_then_succeed() {
  let started = Instant::now();
  let ran = run(
    "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail_times: 2 }\n    retry: { max_attempts: 3, backoff: linear, delay: 40ms }\n",
  );
  assert_eq!(ran.status("a"), StageStatus::Completed);
  assert_eq!(ran.count("stage_started", "a"), 3);
  assert_eq!(ran.count("stage_failed", "a"), 2);
  assert_eq!(ran.count("stage_retrying", "a"), 2);
  let delays: Vec<u64> = ran
    .events
    .iter()
    .filter_map(|r| match &r.event {
      Event::StageRetrying { delay_ms, .. } => Some(*delay_ms),
      _ => None,
    })
    .collect();
  assert_eq!(delays, vec![40, 80]);
  assert!(started.elapsed() >= Duration::from_millis(120));
  assert_eq!(ran.outcome.state.stage("a").map(|s| s.attempts), Some(3));
}

#[test]
fn retry_on_selects_which_failures_are_retried() {
  let ran = run(
    "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail: true }\n    retry: { max_attempts: 3, delay: 1ms, on: [timeout] }\n",
  );
  assert_eq!(ran.count("stage_started", "a"), 1);
  assert_eq!(ran.status("a"), StageStatus::Failed);
  assert_eq!(exit_code(&ran.outcome), 1);
}

#[test]
fn timeouts_end_the_attempt_and_can_be_retried() {
  let ran = run(
    "name: t\nstages:\n  - id: a\n    uses: work\n    with: { ms: 5000 }\n    timeout: 50ms\n    retry: { max_attempts: 2, delay: 1ms }\n",
  );
  assert_eq!(ran.count("stage_timed_out", "a"), 2);
  assert_eq!(ran.status("a"), StageStatus::TimedOut);
  assert_eq!(ran.outcome.state.status, RunStatus::Failed);
}

#[test]
fn fallbacks_run_once_retries_are_spent() {
  let ran = run(
    "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail: true, outputs: { x: 1 } }\n    retry: { max_attempts: 2, delay: 1ms }\n    fallback: [backup]\n",
  );
  // The fallback gets the same inputs; `fail: true` makes it fail too.
  let uses: Vec<String> = ran
    .events
    .iter()
    .filter_map(|r| match &r.event {
      Event::StageStarted { uses, .. } => Some(uses.clone()),
      _ => None,
    })
    .collect();
  assert_eq!(uses, vec!["work", "work", "backup"]);
  let ran = run(
    "name: t\nstages:\n  - id: a\n    uses: fail-always\n    fallback: [work]\n    with: { outputs: { x: 1 } }\n",
  );
  assert_eq!(ran.status("a"), StageStatus::Completed);
  assert_eq!(
    ran
      .outcome
      .state
      .stage("a")
      .and_then(|s| s.uses.clone())
      .as_deref(),
    Some("work")
  );
}

#[test]
fn halt_cancels_the_rest_compensates_in_reverse_and_runs_clean_up() {
  let ran = run(
    "name: t\nconfig: { max_parallel: 4 }\nstages:\n  - { id: first, uses: work, compensate: undo }\n  - { id: second, uses: work, depends_on: first, compensate: undo }\n  - { id: boom, uses: work, depends_on: second, with: { fail: true } }\n  - { id: long, uses: work, with: { ms: 5000 } }\n  - { id: after, uses: work, depends_on: boom }\n  - { id: cleanup, uses: work, depends_on: boom, if: \"$<< always() >>\" }\n  - { id: on-fail, uses: work, depends_on: boom, if: \"$<< failure() >>\" }\n",
  );
  assert_eq!(ran.status("boom"), StageStatus::Failed);
  assert_eq!(ran.status("long"), StageStatus::Cancelled);
  assert_eq!(ran.status("after"), StageStatus::Cancelled);
  assert_eq!(ran.status("cleanup"), StageStatus::Completed);
  assert_eq!(ran.status("on-fail"), StageStatus::Completed);
  let undone = ran
    .script
    .undone
    .lock()
    .map(|u| u.clone())
    .unwrap_or_default();
  assert_eq!(undone, vec!["second", "first"]);
  assert!(
    ran.position("compensation_started", "second") < ran.position("compensation_started", "first")
  );
  assert_eq!(ran.outcome.state.status, RunStatus::Failed);
  assert_eq!(exit_code(&ran.outcome), 1);
}

#[test]
fn a_failed_compensation_is_reported_and_the_others_still_run() {
  let ran = run(
    "name: t\nstages:\n  - { id: a, uses: work, compensate: undo }\n  - { id: b, uses: work, depends_on: a, compensate: { uses: undo, with: { fail: true } } }\n  - { id: c, uses: work, depends_on: b, with: { fail: true } }\n",
  );
  assert_eq!(ran.count("compensation_failed", "b"), 1);
  assert_eq!(ran.count("compensation_completed", "a"), 1);
  assert_eq!(ran.status("b"), StageStatus::Completed);
}

#[test]
fn continue_skips_dependents_and_fails_the_run_at_the_end() {
  let ran = run(
    "name: t\nstages:\n  - { id: bad, uses: work, with: { fail: true }, on_failure: continue }\n  - { id: child, uses: work, depends_on: bad }\n  - { id: grandchild, uses: work, depends_on: child }\n  - { id: rescue, uses: work, depends_on: bad, if: \"$<< failure() >>\" }\n  - { id: other, uses: work, with: { ms: 50 } }\n",
  );
  assert_eq!(ran.status("child"), StageStatus::Skipped);
  assert_eq!(ran.status("grandchild"), StageStatus::Skipped);
  assert_eq!(
    ran
      .outcome
      .state
      .stage("child")
      .and_then(|s| s.reason.clone())
      .as_deref(),
    Some("dependency")
  );
  assert_eq!(ran.status("rescue"), StageStatus::Completed);
  assert_eq!(ran.status("other"), StageStatus::Completed);
  assert_eq!(ran.outcome.state.status, RunStatus::Failed);
}

#[test]
fn ignore_counts_as_success_for_dependents_and_the_run() {
  let ran = run(
    "name: t\nstages:\n  - { id: flaky, uses: work, with: { fail: true }, on_failure: ignore }\n  - { id: child, uses: work, depends_on: flaky }\n  - { id: rescue, uses: work, depends_on: flaky, if: \"$<< failure() >>\" }\n",
  );
  assert_eq!(ran.status("flaky"), StageStatus::Failed);
  assert_eq!(ran.status("child"), StageStatus::Completed);
  assert_eq!(ran.status("rescue"), StageStatus::Skipped);
  assert_eq!(ran.outcome.state.status, RunStatus::Completed);
}

#[test]
fn a_stage_skipped_by_its_own_condition_does_not_block_dependents() {
  let ran = run(
    "name: t\nstages:\n  - { id: maybe, uses: work, if: \"$<< false >>\" }\n  - { id: next, uses: work, depends_on: maybe, with: { seen: \"$<< stages.maybe.outputs.x >>\", status: \"$<< stages.maybe.status >>\" } }\n",
  );
  assert_eq!(ran.status("maybe"), StageStatus::Skipped);
  assert_eq!(ran.status("next"), StageStatus::Completed);
  let outputs = ran
    .outcome
    .state
    .stage("next")
    .and_then(|s| s.outputs.clone());
  assert_eq!(
    outputs,
    Some(Arc::new(
      serde_json::json!({"seen": null, "status": "skipped"})
    ))
  );
}

#[test]
fn output_contracts_are_enforced() {
  let ran = run(
    "name: t\nstages:\n  - { id: a, uses: work, with: { outputs: { n: 'x' } }, outputs: { n: integer, m: { type: string } } }\n",
  );
  assert_eq!(ran.status("a"), StageStatus::Failed);
  let error = ran
    .outcome
    .state
    .stage("a")
    .and_then(|s| s.error.clone())
    .unwrap_or_default();
  assert!(
    error.contains("output `n` must be integer, got string"),
    "{error}"
  );
  assert_eq!(
    ran
      .outcome
      .state
      .stage("a")
      .and_then(|s| s.reason.clone())
      .as_deref(),
    Some("contract")
  );
}

#[test]
fn data_flows_through_with_and_workflow_outputs() {
  let ran = run(
    "name: t\nparameters:\n  who: { type: string, default: Ada }\nconfig:\n  env: { GREETING: \"hi $<< parameters.who >>\" }\nstages:\n  - { id: a, uses: work, with: { msg: \"$<< env.GREETING >>\", n: 2 } }\n  - { id: b, uses: work, depends_on: a, with: { twice: \"$<< format('{0}/{0}', stages.a.outputs.msg) >>\", attempts: \"$<< stages.a.attempts >>\" } }\noutputs:\n  final: $<< stages.b.outputs.twice >>\n  n: $<< stages.a.outputs.n >>\n",
  );
  assert_eq!(
    ran.outcome.state.outputs,
    serde_json::json!({"final": "hi Ada/hi Ada", "n": 2})
  );
  let b = ran.outcome.state.stage("b").and_then(|s| s.inputs.clone());
  assert_eq!(
    b,
    Some(Arc::new(
      serde_json::json!({"twice": "hi Ada/hi Ada", "attempts": 1})
    ))
  );
}

#[test]
fn gates_are_decided_by_flags_and_rejection_exits_3() {
  let text = "name: t\nstages:\n  - { id: ok, gate: { message: \"ship $<< parameters.v >>?\" } }\n  - { id: ship, uses: work, depends_on: ok, with: { by: \"$<< stages.ok.outputs.decided_by >>\" } }\nparameters:\n  v: { type: string, default: '1.0' }\n";
  let ran = run_with(text, |o| o.approve_all = true, drop);
  assert_eq!(ran.status("ship"), StageStatus::Completed);
  assert_eq!(ran.count("stage_started", "ok"), 0);
  let waiting = ran.events.iter().find_map(|r| match &r.event {
    Event::GateWaiting { message, .. } => message.clone(),
    _ => None,
  });
  assert_eq!(waiting.as_deref(), Some("ship 1.0?"));
  assert_eq!(
    ran
      .outcome
      .state
      .stage("ship")
      .and_then(|s| s.outputs.clone()),
    Some(Arc::new(serde_json::json!({"by": "flag"})))
  );
  let ran = run_with(
    text,
    |o| {
      o.reject.insert("ok".into());
    },
    drop,
  );
  assert_eq!(ran.status("ok"), StageStatus::Failed);
  assert_eq!(ran.status("ship"), StageStatus::Cancelled);
  assert_eq!(exit_code(&ran.outcome), 3);
}

#[test]
fn an_undecided_gate_suspends_the_run_after_independent_work() {
  let ran = run(
    "name: t\nstages:\n  - { id: ok, gate: {} }\n  - { id: after, uses: work, depends_on: ok }\n  - { id: independent, uses: work, with: { ms: 30 } }\n",
  );
  assert_eq!(ran.status("independent"), StageStatus::Completed);
  assert_eq!(ran.status("ok"), StageStatus::Waiting);
  assert_eq!(ran.outcome.state.status, RunStatus::Waiting);
  assert_eq!(ran.outcome.waiting, vec!["ok".to_string()]);
  assert_eq!(exit_code(&ran.outcome), 4);
}

#[test]
fn gates_are_decided_through_the_control_channel_or_their_timeout() {
  let text =
    "name: t\nstages:\n  - { id: ok, gate: {} }\n  - { id: after, uses: work, depends_on: ok }\n";
  let ran = run_with(
    text,
    |o| o.interactive = true,
    |tx| {
      let _ = tx.send(Control::Steer(Steer::Decide {
        stage: "ok".into(),
        decision: GateDecision::Approve,
        by: "alice".into(),
        reason: Some("looks good".into()),
        inputs: None,
      }));
    },
  );
  assert_eq!(ran.status("after"), StageStatus::Completed);
  let timed = "name: t\nstages:\n  - { id: ok, gate: { timeout: 50ms, on_timeout: approve } }\n  - { id: after, uses: work, depends_on: ok }\n";
  // Someone may still decide (`--wait`): the timeout decides first.
  let ran = run_with(
    timed,
    |o| o.interactive = true,
    |tx| {
      tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        drop(tx);
      });
    },
  );
  assert_eq!(ran.status("after"), StageStatus::Completed);
  let decided = ran.events.iter().find_map(|r| match &r.event {
    Event::GateDecided { decided_by, .. } => Some(decided_by.clone()),
    _ => None,
  });
  assert_eq!(decided.as_deref(), Some("timeout"));
}

#[test]
fn a_gate_with_a_timeout_suspends_when_nobody_can_decide_and_records_its_deadline() {
  let before = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_millis());
  let ran = run(
    "name: t\nstages:\n  - { id: ok, gate: { timeout: 1h, on_timeout: approve } }\n  - { id: after, uses: work, depends_on: ok }\n",
  );
  assert_eq!(ran.outcome.state.status, RunStatus::Waiting);
  assert_eq!(exit_code(&ran.outcome), 4);
  let deadline = u128::from(ran.outcome.deadlines["ok"]);
  assert!(
    (before + 3_600_000..before + 3_660_000).contains(&deadline),
    "{deadline} is not an hour after {before}"
  );
}

#[test]
fn risky_stages_need_approval_before_they_start() {
  let text = "name: t\nconfig: { approval: { require_for: high } }\nstages:\n  - { id: low, uses: work, risk: medium }\n  - { id: deploy, uses: work, risk: critical }\n";
  let ran = run(text);
  assert_eq!(ran.status("low"), StageStatus::Completed);
  assert_eq!(ran.status("deploy"), StageStatus::Waiting);
  assert_eq!(exit_code(&ran.outcome), 4);
  let ran = run_with(
    text,
    |o| {
      o.approve.insert("deploy".into());
    },
    drop,
  );
  assert_eq!(ran.status("deploy"), StageStatus::Completed);
  assert!(ran.position("gate_decided", "deploy") < ran.position("stage_started", "deploy"));
}

#[test]
fn cancellation_stops_everything_and_exits_3() {
  let ran = run_with(
    "name: t\nstages:\n  - { id: long, uses: work, with: { ms: 5000 } }\n  - { id: after, uses: work, depends_on: long }\n  - { id: tidy, uses: work, depends_on: long, if: \"$<< cancelled() >>\" }\n",
    |_| {},
    |tx| {
      tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = tx.send(Control::Steer(Steer::Cancel));
      });
    },
  );
  assert_eq!(ran.status("long"), StageStatus::Cancelled);
  assert_eq!(ran.status("after"), StageStatus::Cancelled);
  assert_eq!(ran.status("tidy"), StageStatus::Completed);
  assert_eq!(ran.outcome.state.status, RunStatus::Cancelled);
  assert_eq!(exit_code(&ran.outcome), 3);
}

#[test]
fn the_run_timeout_times_out_what_runs_and_cancels_the_rest() {
  let ran = run(
    "name: t\nconfig: { timeout: 100ms }\nstages:\n  - { id: long, uses: work, with: { ms: 5000 } }\n  - { id: after, uses: work, depends_on: long }\n",
  );
  assert_eq!(ran.status("long"), StageStatus::TimedOut);
  assert_eq!(ran.status("after"), StageStatus::Cancelled);
  assert_eq!(ran.outcome.state.status, RunStatus::Failed);
  assert!(
    ran
      .outcome
      .state
      .error
      .as_deref()
      .is_some_and(|e| e.contains("timed out"))
  );
  assert_eq!(exit_code(&ran.outcome), 1);
}

#[test]
fn pause_step_resume_and_breakpoints_steer_the_run() {
  let ran = run_with(
    "name: t\nconfig: { max_parallel: 1 }\nstages:\n  - { id: a, uses: work }\n  - { id: b, uses: work, depends_on: a }\n  - { id: c, uses: work, depends_on: b }\n",
    |_| {},
    |tx| {
      let _ = tx.send(Control::Steer(Steer::Break("b".into())));
      tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(Control::Steer(Steer::Step));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = tx.send(Control::Steer(Steer::Resume));
      });
    },
  );
  assert_eq!(ran.outcome.state.status, RunStatus::Completed);
  let paused = ran.position("run_paused", "b");
  assert!(paused > ran.position("stage_completed", "a"));
  assert!(paused < ran.position("stage_started", "b"));
  // After the step started `b`, the run stays paused until resumed, so `c` waits.
  let resumed = ran
    .events
    .iter()
    .position(|r| r.event.name() == "run_resumed")
    .expect("resumed");
  assert!(resumed < ran.position("stage_started", "c"));
  assert!(resumed > ran.position("stage_completed", "b"));
}

#[test]
fn every_event_passes_the_masker() {
  let ran = run_with(
    "name: t\nparameters:\n  token: { type: string, secret: true, default: s3cret }\nstages:\n  - { id: a, uses: work, with: { t: \"Bearer $<< parameters.token >>\" } }\n  - { id: b, uses: work, depends_on: a, with: { again: \"$<< stages.a.outputs.t >>\" } }\noutputs:\n  t: $<< stages.b.outputs.again >>\n",
    |o| o.masker = Masker::new(["s3cret".to_string()]),
    drop,
  );
  let all = serde_json::to_string(&ran.events).unwrap_or_default();
  assert!(!all.contains("s3cret"), "{all}");
  assert!(all.contains("Bearer ***"));
  // Stages still receive the real value.
  assert_eq!(ran.status("b"), StageStatus::Completed);
}

#[test]
fn state_is_a_fold_over_the_events() {
  let text = "name: t\nstages:\n  - { id: a, uses: work, with: { fail_times: 1 }, retry: { max_attempts: 2, delay: 1ms } }\n  - { id: b, uses: work, depends_on: a }\n";
  let ran = run(text);
  let workflow = compose::load_str("t.yaml", text).expect("valid");
  let mut replayed = state::RunState::new(&workflow, "test");
  for record in &ran.events {
    replayed.apply(record);
  }
  assert_eq!(
    serde_json::to_value(&replayed).ok(),
    serde_json::to_value(&ran.outcome.state).ok()
  );
}
