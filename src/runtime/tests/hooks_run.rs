//! Approval policies and recovery strategies scripted in Rust, through the driver.
use super::*;
use crate::executor::BoxFuture;
use hooks::{Failure, Hooks, PolicyDecision, PolicyStage, RecoveryAction};
use std::sync::Mutex;

/// Policies and strategies scripted in Rust: policy names are decisions, strategy names
/// are actions.
#[derive(Default)]
struct Scripted {
  failures: Mutex<Vec<Failure>>,
}

impl Hooks for Scripted {
  fn policies(&self) -> Vec<String> {
    vec!["yes".into(), "no".into(), "ask".into(), "broken".into()]
  }

  fn recoveries(&self) -> Vec<String> {
    Vec::new()
  }

  fn decide(&self, name: &str, stage: PolicyStage) -> BoxFuture<Result<PolicyDecision, String>> {
    let name = name.to_string();
    Box::pin(async move {
      let reason = Some(format!(
        "{} is {}",
        stage.id,
        stage.risk.unwrap_or_default()
      ));
      match name.as_str() {
        "yes" => Ok(PolicyDecision::Approve { reason }),
        "no" => Ok(PolicyDecision::Reject { reason }),
        "ask" => Ok(PolicyDecision::Ask { reason }),
        _ => Err("boom at hooks.lua:3".into()),
      }
    })
  }

  fn recover(&self, name: &str, failure: Failure) -> BoxFuture<Result<RecoveryAction, String>> {
    if let Ok(mut failures) = self.failures.lock() {
      failures.push(failure.clone());
    }
    let name = name.to_string();
    Box::pin(async move {
      Ok(match name.as_str() {
        // Retry once with a simpler input, then give up through a fallback.
        "simplify" if failure.attempt == 1 => RecoveryAction::Retry {
          delay: Some(Duration::from_millis(5)),
          with: Some(
            serde_json::json!({"depth": 1})
              .as_object()
              .cloned()
              .unwrap_or_default(),
          ),
        },
        "simplify" => RecoveryAction::Fallback {
          uses: "echo".into(),
        },
        "skip" => RecoveryAction::Skip,
        "abort" => RecoveryAction::Abort,
        "compensate" => RecoveryAction::Compensate,
        "forever" => RecoveryAction::Retry {
          delay: None,
          with: None,
        },
        "always-fallback" => RecoveryAction::Fallback {
          uses: "fail".into(),
        },
        _ => return Err("no such action".into()),
      })
    })
  }
}

fn run(text: &str, approve: &[&str]) -> (RunOutcome, Vec<EventRecord>, Arc<Scripted>) {
  struct Collect(Arc<Mutex<Vec<EventRecord>>>);
  impl EventSink for Collect {
    fn emit(&mut self, record: &EventRecord) {
      if let Ok(mut e) = self.0.lock() {
        e.push(record.clone());
      }
    }
  }
  let workflow = Arc::new(compose::load_str("t.yaml", text).expect("valid"));
  let hooks = Arc::new(Scripted::default());
  let events = Arc::new(Mutex::new(Vec::new()));
  let options = RunOptions {
    run_id: "t".into(),
    max_parallel: 3,
    params: IndexMap::new(),
    approve: approve.iter().map(|s| (*s).to_string()).collect(),
    reject: HashSet::new(),
    approve_all: false,
    interactive: false,
    masker: Masker::default(),
    hooks: Some(Arc::clone(&hooks) as Arc<dyn Hooks>),
    resume: None,
    start_paused: false,
    reuse: None,
  };
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .expect("runtime");
  let (_tx, rx) = mpsc::unbounded_channel();
  let executor: Arc<dyn StageExecutor> = Arc::new(builtin::Builtins::new());
  let sinks: Vec<Box<dyn EventSink>> = vec![Box::new(Collect(Arc::clone(&events)))];
  let outcome = runtime.block_on(execute(workflow, options, executor, sinks, rx));
  let events = events.lock().map(|e| e.clone()).unwrap_or_default();
  (outcome, events, hooks)
}

fn status(outcome: &RunOutcome, id: &str) -> StageStatus {
  outcome
    .state
    .stage(id)
    .map_or(StageStatus::Pending, |s| s.status)
}

fn decided_by(events: &[EventRecord], id: &str) -> Option<(GateDecision, String, Option<String>)> {
  events.iter().find_map(|r| match &r.event {
    Event::GateDecided {
      stage,
      decision,
      decided_by,
      reason,
      ..
    } if stage == id => Some((*decision, decided_by.clone(), reason.clone())),
    _ => None,
  })
}

#[test]
fn policies_decide_gates_and_approvals_with_reasons() {
  let (outcome, events, _) = run(
    "name: t\nconfig: { approval: { policy: yes, require_for: high } }\nstages:\n  - { id: g, gate: { policy: no }, on_failure: continue }\n  - { id: risky, uses: echo, risk: high }\n",
    &[],
  );
  assert_eq!(status(&outcome, "risky"), StageStatus::Completed);
  assert_eq!(
    decided_by(&events, "risky"),
    Some((
      GateDecision::Approve,
      "policy:yes".into(),
      Some("risky is high".into())
    ))
  );
  assert_eq!(status(&outcome, "g"), StageStatus::Failed);
  assert_eq!(
    decided_by(&events, "g").map(|d| d.1),
    Some("policy:no".into())
  );
  assert_eq!(exit_code(&outcome), 3);
}

#[test]
fn flags_win_over_policies_and_ask_falls_through_to_a_person() {
  let text = "name: t\nstages:\n  - { id: g, gate: { policy: ask } }\n";
  let (outcome, events, _) = run(text, &[]);
  assert_eq!(outcome.state.status, RunStatus::Waiting);
  assert!(events.iter().any(|r| matches!(&r.event, Event::Log { message, .. } if message.contains("leaves the decision to a person: g is"))));
  let (outcome, events, _) = run(
    "name: t\nstages:\n  - { id: g, gate: { policy: no } }\n",
    &["g"],
  );
  assert_eq!(status(&outcome, "g"), StageStatus::Completed);
  assert_eq!(decided_by(&events, "g").map(|d| d.1), Some("flag".into()));
}

#[test]
fn a_failing_policy_rejects() {
  let (outcome, events, _) = run(
    "name: t\nstages:\n  - { id: g, gate: { policy: broken } }\n",
    &[],
  );
  assert_eq!(status(&outcome, "g"), StageStatus::Failed);
  let reason = decided_by(&events, "g")
    .and_then(|d| d.2)
    .unwrap_or_default();
  assert!(
    reason.contains("policy `broken` failed: boom at hooks.lua:3"),
    "{reason}"
  );
}

#[test]
fn recovery_retries_with_changed_inputs_then_falls_back() {
  let (outcome, events, hooks) = run(
    "name: t\nstages:\n  - { id: a, uses: fail, recover: simplify, with: { depth: 3, times: 5 } }\n",
    &[],
  );
  assert_eq!(status(&outcome, "a"), StageStatus::Completed);
  let failures = hooks.failures.lock().map(|f| f.clone()).unwrap_or_default();
  assert_eq!(failures.len(), 2);
  assert_eq!(failures[0].inputs["depth"], 3);
  assert_eq!(
    failures[1].inputs["depth"], 1,
    "the retry ran with the simplified input"
  );
  assert_eq!(failures[0].kind, "error");
  let actions: Vec<String> = events
    .iter()
    .filter_map(|r| match &r.event {
      Event::RecoveryDecided { action, .. } => Some(action.clone()),
      _ => None,
    })
    .collect();
  assert_eq!(actions, vec!["retry", "fallback"]);
  assert_eq!(
    outcome
      .state
      .stage("a")
      .and_then(|s| s.uses.clone())
      .as_deref(),
    Some("echo")
  );
}

#[test]
fn recovery_can_skip_abort_or_compensate() {
  let (outcome, _, _) = run(
    "name: t\nstages:\n  - { id: a, uses: fail, recover: skip }\n  - { id: b, uses: echo, depends_on: a }\n",
    &[],
  );
  assert_eq!(status(&outcome, "a"), StageStatus::Skipped);
  assert_eq!(status(&outcome, "b"), StageStatus::Completed);
  assert_eq!(outcome.state.status, RunStatus::Completed);
  let compensated = |events: &[EventRecord]| {
    events
      .iter()
      .any(|r| r.event.name() == "compensation_started")
  };
  let text = |action: &str| {
    format!(
      "name: t\nstages:\n  - {{ id: done, uses: echo, compensate: echo }}\n  - {{ id: a, uses: fail, depends_on: done, recover: {action}, on_failure: continue }}\n  - {{ id: b, uses: echo, depends_on: a, if: \"$<< always() >>\" }}\n"
    )
  };
  let (outcome, events, _) = run(&text("abort"), &[]);
  assert_eq!(outcome.state.status, RunStatus::Failed);
  assert!(!compensated(&events));
  let (outcome, events, _) = run(&text("compensate"), &[]);
  assert_eq!(outcome.state.status, RunStatus::Failed);
  assert!(compensated(&events));
}

#[test]
fn recovery_errors_and_endless_retries_end_in_failure() {
  let (outcome, events, _) = run(
    "name: t\nstages:\n  - { id: a, uses: fail, recover: nonsense }\n",
    &[],
  );
  assert_eq!(status(&outcome, "a"), StageStatus::Failed);
  assert!(events.iter().any(|r| matches!(&r.event, Event::RecoveryDecided { action, error: Some(e), .. } if action == "error" && e == "no such action")));
  for strategy in ["forever", "always-fallback"] {
    let text = format!("name: t\nstages:\n  - {{ id: a, uses: fail, recover: {strategy} }}\n");
    let (outcome, _, _) = run(&text, &[]);
    assert_eq!(
      outcome.state.stage("a").map(|s| s.attempts),
      Some(RECOVERY_ATTEMPTS)
    );
    assert!(
      outcome
        .state
        .error
        .as_deref()
        .is_some_and(|e| e.contains("at most 10"))
    );
  }
}
