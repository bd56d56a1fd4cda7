//! The driver with scripted executors: the executors, sinks and helpers the tests share.
use super::*;
use crate::executor::BoxFuture;
use std::sync::{
  Mutex,
  atomic::{AtomicUsize, Ordering},
};

mod durability;
mod scheduling;

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
    reuse: None,
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
    item: None,
    key: None,
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
