//! The tokio driver's behaviour, end to end: scheduling, retries, gates, stopping, durability
//! and hooks, through `execute` with scripted executors.
use super::recovery::RECOVERY_ATTEMPTS;
use super::*;
use crate::{
  event::{Event, EventRecord, EventSink, RunStatus, StageStatus},
  executor::{self, StageExecutor, StageResult, StageTask, TaskIo},
  mask::Masker,
  workflow::Workflow,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod run {
  use super::*;
  use crate::executor::BoxFuture;
  use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
  };

  /// A scripted executor: `work` sleeps `ms`, fails its first `fail_times` attempts (or always
  /// with `fail: true`), returns `outputs` (default: its inputs); `undo` records compensations.
  #[derive(Default)]
  struct Script {
    current: AtomicUsize,
    peak: AtomicUsize,
    undone: Mutex<Vec<String>>,
  }

  impl StageExecutor for Arc<Script> {
    fn execute(&self, task: StageTask, io: TaskIo) -> BoxFuture<StageResult> {
      let script = Arc::clone(self);
      Box::pin(async move {
        let input = |k: &str| task.inputs.get(k).cloned().unwrap_or_default();
        match task.skill.as_str() {
          "undo" => {
            if let Ok(mut undone) = script.undone.lock() {
              undone.push(task.stage.clone());
            }
            if input("fail").as_bool() == Some(true) {
              return StageResult::failed("undo failed");
            }
            StageResult::outputs(serde_json::Map::new())
          }
          "work" | "backup" => {
            let now = script.current.fetch_add(1, Ordering::SeqCst) + 1;
            script.peak.fetch_max(now, Ordering::SeqCst);
            io.log(
              executor::LogStream::Log,
              format!("attempt {}", task.attempt),
            );
            tokio::time::sleep(Duration::from_millis(input("ms").as_u64().unwrap_or(0))).await;
            script.current.fetch_sub(1, Ordering::SeqCst);
            let fail_times = input("fail_times").as_u64().unwrap_or(0);
            if input("fail").as_bool() == Some(true) || u64::from(task.attempt) <= fail_times {
              return StageResult::failed(format!(
                "{} failed on attempt {}",
                task.stage, task.attempt
              ));
            }
            match input("outputs") {
              serde_json::Value::Object(map) => StageResult::outputs(map),
              _ => StageResult::outputs(task.inputs.as_object().cloned().unwrap_or_default()),
            }
          }
          other => StageResult::failed(format!("no skill {other}")),
        }
      })
    }
  }

  #[derive(Clone, Default)]
  struct Recorder(Arc<Mutex<Vec<EventRecord>>>);

  impl EventSink for Recorder {
    fn emit(&mut self, record: &EventRecord) {
      if let Ok(mut events) = self.0.lock() {
        events.push(record.clone());
      }
    }
  }

  struct Ran {
    outcome: RunOutcome,
    events: Vec<EventRecord>,
    script: Arc<Script>,
  }

  impl Ran {
    fn count(&self, name: &str, stage: &str) -> usize {
      self
        .events
        .iter()
        .filter(|r| r.event.name() == name && r.event.stage() == Some(stage))
        .count()
    }

    fn status(&self, stage: &str) -> StageStatus {
      self
        .outcome
        .state
        .stage(stage)
        .map_or(StageStatus::Pending, |s| s.status)
    }

    fn position(&self, name: &str, stage: &str) -> usize {
      self
        .events
        .iter()
        .position(|r| r.event.name() == name && r.event.stage() == Some(stage))
        .unwrap_or_else(|| panic!("no {name} for {stage}"))
    }
  }

  fn options(workflow: &Workflow) -> RunOptions {
    RunOptions {
      run_id: "test".into(),
      max_parallel: workflow.config.max_parallel,
      params: IndexMap::new(),
      approve: HashSet::new(),
      reject: HashSet::new(),
      approve_all: false,
      interactive: false,
      masker: Masker::default(),
      hooks: None,
      resume: None,
      start_paused: false,
    }
  }

  fn run_with(
    text: &str,
    tweak: impl FnOnce(&mut RunOptions),
    steer: impl FnOnce(mpsc::UnboundedSender<Control>) + Send + 'static,
  ) -> Ran {
    let workflow = match compose::load_str("t.yaml", text) {
      Ok(w) => Arc::new(w),
      Err(d) => panic!("{}", d.render(false)),
    };
    let mut opts = options(&workflow);
    opts.params = params::resolve(&workflow, &[]).unwrap_or_default();
    tweak(&mut opts);
    let script = Arc::new(Script::default());
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
      .worker_threads(2)
      .enable_all()
      .build()
      .expect("runtime");
    let (tx, rx) = mpsc::unbounded_channel();
    let executor: Arc<dyn StageExecutor> = Arc::new(Arc::clone(&script));
    let sinks: Vec<Box<dyn EventSink>> = vec![Box::new(recorder.clone())];
    let outcome = runtime.block_on(async move {
      steer(tx);
      execute(workflow, opts, executor, sinks, rx).await
    });
    let events = recorder.0.lock().map(|e| e.clone()).unwrap_or_default();
    Ran {
      outcome,
      events,
      script,
    }
  }

  fn run(text: &str) -> Ran {
    run_with(text, |_| {}, drop)
  }

  fn record(event: Event) -> EventRecord {
    EventRecord {
      ts: event::now_rfc3339(),
      run: Arc::from("test"),
      event,
    }
  }

  /// The events of a run that started `a`'s first attempt and saw it fail, and nothing more.
  fn failed_first_attempt(retrying: bool) -> Vec<EventRecord> {
    let mut events = vec![
      record(Event::RunStarted {
        workflow: "t".into(),
        params: serde_json::json!({}),
        max_parallel: 4,
        stages: 2,
        seed: 1,
      }),
      record(Event::StageStarted {
        stage: "a".into(),
        attempt: 1,
        uses: "work".into(),
        inputs: Arc::new(serde_json::json!({"fail_times": 1, "outputs": {"v": 7}})),
      }),
      record(Event::StageFailed {
        stage: "a".into(),
        attempt: Some(1),
        uses: Some("work".into()),
        error: "a failed on attempt 1".into(),
        reason: "error".into(),
        duration_ms: 1,
      }),
    ];
    if retrying {
      events.push(record(Event::StageRetrying {
        stage: "a".into(),
        attempt: 1,
        delay_ms: 10,
        due: event::now_rfc3339(),
        error: "a failed on attempt 1".into(),
      }));
    }
    events
  }

  /// Runs `text` resumed from `events`.
  fn resumed(text: &str, events: Vec<EventRecord>) -> Ran {
    run_with(
      text,
      |o| {
        o.resume = Some(Resume {
          events,
          attempt: 2,
          ..Resume::default()
        });
      },
      drop,
    )
  }

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
  /// made it ready (SPEC section 5), so it checks nothing itself.
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
      ran.position("compensation_started", "second")
        < ran.position("compensation_started", "first")
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
        let _ = tx.send(Control::Decide {
          stage: "ok".into(),
          decision: GateDecision::Approve,
          by: "alice".into(),
          reason: Some("looks good".into()),
          inputs: None,
        });
      },
    );
    assert_eq!(ran.status("after"), StageStatus::Completed);
    let ran = run(
      "name: t\nstages:\n  - { id: ok, gate: { timeout: 50ms, on_timeout: approve } }\n  - { id: after, uses: work, depends_on: ok }\n",
    );
    assert_eq!(ran.status("after"), StageStatus::Completed);
    let decided = ran.events.iter().find_map(|r| match &r.event {
      Event::GateDecided { decided_by, .. } => Some(decided_by.clone()),
      _ => None,
    });
    assert_eq!(decided.as_deref(), Some("timeout"));
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
          let _ = tx.send(Control::Cancel);
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
        let _ = tx.send(Control::Break("b".into()));
        tokio::spawn(async move {
          tokio::time::sleep(Duration::from_millis(100)).await;
          let _ = tx.send(Control::Step);
          tokio::time::sleep(Duration::from_millis(100)).await;
          let _ = tx.send(Control::Resume);
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
}

mod hooks_run {
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
    let workflow = Arc::new(compose::load_str("t.yaml", text).expect("valid"));
    let hooks = Arc::new(Scripted::default());
    let events = Arc::new(Mutex::new(Vec::new()));
    struct Collect(Arc<Mutex<Vec<EventRecord>>>);
    impl EventSink for Collect {
      fn emit(&mut self, record: &EventRecord) {
        if let Ok(mut e) = self.0.lock() {
          e.push(record.clone());
        }
      }
    }
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
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
      .worker_threads(2)
      .enable_all()
      .build()
      .expect("runtime");
    let (_tx, rx) = mpsc::unbounded_channel();
    let executor: Arc<dyn StageExecutor> = Arc::new(builtin::Builtins);
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

  fn decided_by(
    events: &[EventRecord],
    id: &str,
  ) -> Option<(GateDecision, String, Option<String>)> {
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
}

/// The exit code `swdl run` gives for `outcome`.
fn exit_code(outcome: &RunOutcome) -> i32 {
  crate::exit::of_run(outcome.state.status, outcome.rejected)
}
