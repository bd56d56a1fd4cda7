//! Resuming after a crash and showing only what is durable.
use super::*;

#[test]
fn a_resume_during_a_retry_delay_retries_before_anything_downstream_runs() {
  let text = "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail_times: 1, outputs: { v: 7 } }\n    retry: { max_attempts: 3, delay: 10ms }\n  - id: b\n    uses: work\n    with: { got: \"$<< stages.a.outputs.v >>\" }\n    depends_on: [a]\n";
  for retrying in [true, false] {
    let ran = resumed(text, failed_first_attempt(retrying));
    assert_eq!(exit_code(&ran.outcome), 0, "{:?}", ran.outcome.state.error);
    assert_eq!(ran.status("a"), StageStatus::Completed);
    assert_eq!(ran.outcome.state.stage("a").map(|s| s.attempts), Some(2));
    assert!(ran.position("stage_completed", "a") < ran.position("stage_started", "b"));
    let b = ran.outcome.state.stage("b").and_then(|s| s.inputs.clone());
    assert_eq!(
      b.as_deref(),
      Some(&serde_json::json!({"got": 7})),
      "retrying: {retrying}"
    );
  }
}

#[test]
fn a_resume_keeps_an_upstream_failure_for_a_stage_still_retrying() {
  // `a` failed under `continue`; `b` (`always()`) failed once and waits to retry; then the
  // process died. `b` retries and completes, but `c`, which asks nothing, is skipped: the
  // failure upstream of `b` still counts.
  let text = "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail: true }\n    on_failure: continue\n  - id: b\n    uses: work\n    depends_on: [a]\n    if: \"$<< always() >>\"\n    with: { fail_times: 1 }\n    retry: { max_attempts: 2, delay: 10ms }\n  - id: c\n    uses: work\n    depends_on: [b]\n";
  let events = vec![
    record(Event::RunStarted {
      workflow: "t".into(),
      params: serde_json::json!({}),
      max_parallel: 3,
      stages: 3,
      seed: 1,
    }),
    record(Event::StageStarted {
      stage: "a".into(),
      attempt: 1,
      uses: "work".into(),
      inputs: Arc::new(serde_json::json!({"fail": true})),
    }),
    record(Event::StageFailed {
      stage: "a".into(),
      attempt: Some(1),
      uses: Some("work".into()),
      error: "a failed on attempt 1".into(),
      reason: "error".into(),
      duration_ms: 1,
    }),
    record(Event::StageStarted {
      stage: "b".into(),
      attempt: 1,
      uses: "work".into(),
      inputs: Arc::new(serde_json::json!({"fail_times": 1})),
    }),
    record(Event::StageFailed {
      stage: "b".into(),
      attempt: Some(1),
      uses: Some("work".into()),
      error: "b failed on attempt 1".into(),
      reason: "error".into(),
      duration_ms: 1,
    }),
    record(Event::StageRetrying {
      stage: "b".into(),
      attempt: 1,
      delay_ms: 10,
      due: event::now_rfc3339(),
      error: "b failed on attempt 1".into(),
    }),
  ];
  let ran = resumed(text, events);
  assert_eq!(ran.status("a"), StageStatus::Failed);
  assert_eq!(ran.status("b"), StageStatus::Completed);
  assert_eq!(ran.outcome.state.stage("b").map(|s| s.attempts), Some(2));
  assert_eq!(ran.status("c"), StageStatus::Skipped);
  assert_eq!(
    ran
      .outcome
      .state
      .stage("c")
      .and_then(|s| s.reason.clone())
      .as_deref(),
    Some("dependency")
  );
  assert_eq!(ran.outcome.state.status, RunStatus::Failed);
}

#[test]
fn a_resume_after_a_failed_attempt_goes_on_to_the_fallback() {
  let text = "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail_times: 1, outputs: { v: 7 } }\n    fallback: [backup]\n  - id: b\n    uses: work\n    depends_on: [a]\n";
  let ran = resumed(text, failed_first_attempt(false));
  assert_eq!(exit_code(&ran.outcome), 0, "{:?}", ran.outcome.state.error);
  let a = ran.outcome.state.stage("a");
  assert_eq!(a.and_then(|s| s.uses.clone()).as_deref(), Some("backup"));
  assert_eq!(ran.status("b"), StageStatus::Completed);
}

/// Records which stages were asked to start; `boom` fails at once, anything else never ends.
struct Starts(Arc<Mutex<Vec<String>>>);

impl StageExecutor for Starts {
  fn execute(&self, task: StageTask, _io: TaskIo) -> BoxFuture<StageResult> {
    if let Ok(mut started) = self.0.lock() {
      started.push(task.stage.clone());
    }
    let boom = task.skill == "boom";
    Box::pin(async move {
      if !boom {
        std::future::pending::<()>().await;
      }
      StageResult::failed("boom")
    })
  }
}

#[test]
fn an_attempt_announced_in_the_pass_that_halted_the_run_never_starts() {
  let text = "name: t\nconfig: { max_parallel: 4 }\nstages:\n  - id: check\n    uses: boom\n  - id: deploy\n    uses: slow\n";
  let workflow = match compose::load_str("t.yaml", text) {
    Ok(w) => Arc::new(w),
    Err(d) => panic!("{}", d.render(false)),
  };
  let started = Arc::new(Mutex::new(Vec::new()));
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .expect("runtime");
  let (_tx, rx) = mpsc::unbounded_channel();
  let executor: Arc<dyn StageExecutor> = Arc::new(Starts(Arc::clone(&started)));
  let outcome = runtime.block_on(execute(
    Arc::clone(&workflow),
    options(&workflow),
    executor,
    Vec::new(),
    rx,
  ));
  assert_eq!(exit_code(&outcome), 1);
  assert_eq!(
    outcome.state.stage("deploy").map(|s| s.status),
    Some(StageStatus::Cancelled)
  );
  let started = started.lock().map(|s| s.clone()).unwrap_or_default();
  assert_eq!(started, ["check"], "deploy was cancelled before it started");
}

/// A durable sink: events become `committed` on flush.
#[derive(Clone, Default)]
struct Journal {
  pending: Arc<Mutex<Vec<String>>>,
  committed: Arc<Mutex<HashSet<String>>>,
  violations: Arc<Mutex<Vec<String>>>,
}

fn key(record: &EventRecord) -> String {
  format!(
    "{}:{}",
    record.event.name(),
    record.event.stage().unwrap_or("-")
  )
}

impl Journal {
  fn is_committed(&self, key: &str) -> bool {
    self.committed.lock().is_ok_and(|c| c.contains(key))
  }

  fn violation(&self, what: String) {
    if let Ok(mut v) = self.violations.lock() {
      v.push(what);
    }
  }
}

impl EventSink for Journal {
  fn emit(&mut self, record: &EventRecord) {
    if let Ok(mut pending) = self.pending.lock() {
      pending.push(key(record));
    }
  }

  fn flush(&mut self) {
    if let (Ok(mut pending), Ok(mut committed)) = (self.pending.lock(), self.committed.lock()) {
      committed.extend(pending.drain(..));
    }
  }

  fn durable(&self) -> bool {
    true
  }
}

/// A display that must only ever see committed events.
struct Display(Journal);

impl EventSink for Display {
  fn emit(&mut self, record: &EventRecord) {
    let key = key(record);
    if !self.0.is_committed(&key) {
      self
        .0
        .violation(format!("{key} shown before it was durable"));
    }
  }
}

/// Runs nothing; `slow*` stages take a moment. An attempt may start before the commit that
/// made it ready (docs/runs.md, "Resume"), so it checks nothing itself.
struct Checked;

impl StageExecutor for Checked {
  fn execute(&self, task: StageTask, _io: TaskIo) -> BoxFuture<StageResult> {
    let slow = task.stage.starts_with("slow");
    Box::pin(async move {
      if slow {
        tokio::time::sleep(Duration::from_millis(5)).await;
      }
      StageResult::Completed {
        outputs: serde_json::Map::new(),
        summary: None,
        artifacts: Vec::new(),
        hints: Vec::new(),
      }
    })
  }
}

#[test]
fn others_see_events_only_once_they_are_durable() {
  let text = "name: d\nconfig: { max_parallel: 3 }\nstages:\n  - id: a\n    uses: echo\n  - id: slow1\n    uses: echo\n    depends_on: [a]\n  - id: b\n    uses: echo\n    depends_on: [a]\n  - id: slow2\n    uses: echo\n    depends_on: [slow1, b]\n  - id: c\n    uses: echo\n    depends_on: [slow2]\n";
  let workflow = match compose::load_str("t.yaml", text) {
    Ok(w) => Arc::new(w),
    Err(d) => panic!("{}", d.render(false)),
  };
  let journal = Journal::default();
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(2)
    .enable_all()
    .build()
    .expect("runtime");
  let (_tx, rx) = mpsc::unbounded_channel();
  let sinks: Vec<Box<dyn EventSink>> = vec![
    Box::new(journal.clone()),
    Box::new(Display(journal.clone())),
  ];
  let executor: Arc<dyn StageExecutor> = Arc::new(Checked);
  let outcome = runtime.block_on(execute(
    Arc::clone(&workflow),
    options(&workflow),
    executor,
    sinks,
    rx,
  ));
  assert_eq!(exit_code(&outcome), 0);
  assert!(journal.is_committed("run_completed:-"));
  assert!(journal.is_committed("stage_completed:c"));
  let violations = journal
    .violations
    .lock()
    .map(|v| v.clone())
    .unwrap_or_default();
  assert!(violations.is_empty(), "{violations:?}");
}
