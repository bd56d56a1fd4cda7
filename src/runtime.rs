//! The DAG executor: a ready queue on tokio that starts a stage the moment its dependencies are
//! settled and a slot is free, handles retries, timeouts, fallbacks, gates, failure policies and
//! compensation, and reports everything as events. It is driven through one control channel.
use super::*;
use crate::{
  event::{Event, EventRecord, EventSink, RunStatus, StageStatus},
  executor::{LogLine, Memory, MemoryEntry, StageExecutor, StageResult, StageTask, TaskIo},
  expr::{Context, StatusFlags, Value},
  mask::Masker,
  workflow::{GateDecision, Input, OnFailure, RetryOn, Stage, StageKind, Workflow},
};
use futures_util::{FutureExt, StreamExt, stream::FuturesUnordered};
use indexmap::IndexMap;
use std::{
  cmp::Reverse,
  collections::{BinaryHeap, HashMap, HashSet},
  future::Future,
  time::{Duration, Instant, SystemTime},
};
use tokio::sync::mpsc;

/// Commands that steer a live run: the only way anything outside the runtime changes it.
#[derive(Debug)]
pub enum Control {
  /// Stop starting stages; running ones finish.
  Pause,
  /// Start stages again.
  Resume,
  /// Stop everything: in-flight attempts are cancelled, nothing new starts.
  Cancel,
  /// While paused, start the next ready stage (one only).
  Step,
  /// Pause before this stage starts.
  Break(String),
  /// Remove a breakpoint.
  Unbreak(String),
  /// Decide a waiting gate or approval.
  Decide {
    /// Stage id.
    stage: String,
    /// Approve or reject.
    decision: GateDecision,
    /// Who decided.
    by: String,
    /// Why.
    reason: Option<String>,
    /// Values for the gate's declared inputs.
    inputs: Option<serde_json::Value>,
  },
  /// Report where the run stands, once everything sent before is handled and its events are
  /// out.
  Query(tokio::sync::oneshot::Sender<Snapshot>),
}

/// Where a live run stands (the answer to [`Control::Query`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
  /// No new stages start.
  pub paused: bool,
  /// Stages with an attempt in flight.
  pub running: Vec<String>,
  /// Gates and approvals waiting for a decision.
  pub waiting: Vec<String>,
  /// Stages that could start now but for the pause or a free slot.
  pub runnable: Vec<String>,
  /// Stages waiting out a retry delay.
  pub delayed: Vec<String>,
  /// Stages with a final status.
  pub settled: usize,
}

/// How to run, beyond what the workflow file says.
#[derive(Clone)]
pub struct RunOptions {
  /// Run id.
  pub run_id: String,
  /// Stages executing at once.
  pub max_parallel: usize,
  /// Resolved parameter values.
  pub params: IndexMap<String, serde_json::Value>,
  /// Gates and approvals approved up front.
  pub approve: HashSet<String>,
  /// Gates and approvals rejected up front.
  pub reject: HashSet<String>,
  /// Approve every gate and approval.
  pub approve_all: bool,
  /// Someone is watching `gate_waiting` events and will send `Control::Decide`; without it, an
  /// undecided gate suspends the run once nothing else can progress.
  pub interactive: bool,
  /// Hides secret values in everything emitted.
  pub masker: Masker,
  /// Approval policies and recovery strategies, when the workflow has hooks.
  pub hooks: Option<Arc<dyn hooks::Hooks>>,
  /// Continue a run from its recorded events instead of starting afresh.
  pub resume: Option<Resume>,
  /// Start paused: nothing starts before `Control::Step` or `Control::Resume` (the REPL).
  pub start_paused: bool,
}

/// What a resumed run continues from (`swdl resume`).
#[derive(Debug, Clone, Default)]
pub struct Resume {
  /// Every event recorded so far, in order.
  pub events: Vec<EventRecord>,
  /// Decisions on gates made while the run was suspended (`swdl approve|reject`), by stage.
  pub decisions: HashMap<String, PriorDecision>,
  /// How long each gate still waiting has waited already, so its timeout counts from when it
  /// first opened.
  pub waited: HashMap<String, Duration>,
  /// `run.attempt`: one more than the number of times the run was resumed before.
  pub attempt: u32,
}

/// A gate decision recorded while its run was not executing.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorDecision {
  /// Approve or reject.
  pub decision: GateDecision,
  /// Who decided (`user` for `swdl approve`).
  pub by: String,
  /// Why, if given.
  pub reason: Option<String>,
  /// Values for the gate's declared `inputs`.
  pub inputs: Option<serde_json::Value>,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
  /// The final state (the fold of every event).
  pub state: state::RunState,
  /// True when a gate or approval was rejected.
  pub rejected: bool,
  /// Gates still waiting when the run suspended.
  pub waiting: Vec<String>,
}

impl RunOutcome {
  /// The process exit code for this outcome (SPEC section 2).
  pub fn exit_code(&self) -> i32 {
    match self.state.status {
      RunStatus::Completed if !self.rejected => exit::OK,
      RunStatus::Cancelled => exit::CANCELLED,
      _ if self.rejected => exit::CANCELLED,
      RunStatus::Waiting => exit::SUSPENDED,
      _ => exit::FAILED,
    }
  }
}

/// Runs `workflow` to the end and returns its final state.
pub async fn execute(
  workflow: Arc<Workflow>,
  options: RunOptions,
  executor: Arc<dyn StageExecutor>,
  sinks: Vec<Box<dyn EventSink>>,
  control: mpsc::UnboundedReceiver<Control>,
) -> RunOutcome {
  // The engine runs as a task of its own so that the attempts it spawns are queued on a
  // worker thread's local queue rather than injected from outside the runtime.
  let handle = tokio::spawn(async move {
    let mut engine = Engine::new(workflow, options, executor, sinks);
    engine.run(control).await;
    engine
  });
  // Dropping this future (the REPL replacing its run) stops the engine and its attempts.
  let mut handle = AbortOnDrop(handle);
  let engine = match (&mut handle.0).await {
    Ok(engine) => engine,
    Err(error) => std::panic::resume_unwind(error.into_panic()),
  };
  RunOutcome {
    waiting: engine
      .waiting
      .iter()
      .map(|&i| engine.workflow.stages[i].id.clone())
      .collect(),
    rejected: engine.rejected,
    state: engine.state,
  }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
  fn drop(&mut self) {
    self.0.abort();
  }
}

/// Why the run stopped starting ordinary stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
  /// A stage failed under `on_failure: halt`.
  Halt,
  /// The user cancelled.
  Cancel,
  /// The whole-run timeout expired.
  Timeout,
}

/// Which skill the next attempt of a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
  /// The stage's own skill, with retries.
  Primary,
  /// `fallback[i]`, one attempt each.
  Fallback(usize),
  /// A skill a recovery strategy chose, one attempt.
  Chosen,
}

/// Scheduling data per stage; statuses and outputs live in the folded state.
#[derive(Debug)]
struct Slot {
  level: usize,
  dependents: Vec<usize>,
  deps: Vec<usize>,
  /// Dependencies not settled yet.
  remaining: usize,
  /// Some ancestor failed or timed out (failures under `ignore` do not count).
  upstream_failed: bool,
  /// Some ancestor was cancelled.
  upstream_cancelled: bool,
  /// Total attempts started, across the primary skill and fallbacks.
  attempts: u32,
  /// Attempts of the primary skill.
  tries: u32,
  phase: Phase,
  /// A risk approval was granted (so the stage may start).
  approved: bool,
  /// Passed its breakpoint once (so resuming does not stop at it again).
  passed_break: bool,
  /// Stage ids its expressions read, for building the `stages` namespace.
  reads: Vec<usize>,
  /// Its expressions index `stages` dynamically, so every stage must be visible.
  reads_all: bool,
  /// The value seen as `stages.<id>` once settled.
  value: Value,
  /// Real (unmasked) outputs, for later stages' inputs.
  outputs: Option<Arc<serde_json::Value>>,
  /// Failed under `on_failure: ignore`.
  ignored: bool,
  /// Inputs a recovery strategy replaced for the next attempt.
  overrides: Option<serde_json::Map<String, serde_json::Value>>,
  /// The skill a recovery strategy chose for the next attempt.
  chosen: Option<String>,
  started: Option<Instant>,
}

/// An attempt whose `stage_started` was emitted, to be started once that is durable.
struct Launch {
  stage: usize,
  attempt: u32,
  task: StageTask,
  timeout: Duration,
}

/// A running attempt.
#[derive(Debug)]
struct Running {
  attempt: u32,
  uses: String,
  started: Instant,
}

/// An attempt in flight; dropping it stops the attempt.
type AttemptFuture = std::pin::Pin<Box<dyn Future<Output = Done> + Send>>;

/// What a finished attempt reports.
#[derive(Debug)]
enum Finished {
  Result(StageResult),
  TimedOut,
}

#[derive(Debug)]
struct Done {
  stage: usize,
  attempt: u32,
  finished: Finished,
}

struct Engine {
  workflow: Arc<Workflow>,
  options: RunOptions,
  executor: Arc<dyn StageExecutor>,
  sinks: Vec<Box<dyn EventSink>>,
  state: state::RunState,
  slots: Vec<Slot>,
  /// Dependencies settled; condition not evaluated yet. Ordered by (level, file order).
  ready: BinaryHeap<Reverse<(usize, usize)>>,
  /// Condition passed; waiting for a free slot.
  runnable: BinaryHeap<Reverse<(usize, usize)>>,
  /// Waiting out a retry delay: (due, stage).
  delayed: BinaryHeap<Reverse<(Instant, usize)>>,
  /// Gates and approvals waiting for a decision, with their deadlines.
  waiting: Vec<usize>,
  deadlines: Vec<(Instant, usize)>,
  running: Vec<Option<Running>>,
  in_flight: usize,
  settled: usize,
  completion_order: Vec<usize>,
  stop: Option<Stop>,
  rejected: bool,
  paused: bool,
  steps: usize,
  breakpoints: HashSet<String>,
  memory: Memory,
  params: Value,
  env: Value,
  env_strings: IndexMap<String, String>,
  run_value: Value,
  workflow_value: Value,
  started: Instant,
  deadline: Option<Instant>,
  /// Attempts in flight, polled by the engine's own task: no task, channel or thread wake-up
  /// per attempt beyond the one that completes it.
  attempts: FuturesUnordered<AttemptFuture>,
  log_tx: mpsc::UnboundedSender<LogLine>,
  log_rx: mpsc::UnboundedReceiver<LogLine>,
  rng: u64,
  errors: Vec<String>,
  run_id: Arc<str>,
  hook_tx: mpsc::UnboundedSender<HookReply>,
  hook_rx: mpsc::UnboundedReceiver<HookReply>,
  /// Policy and recovery calls still running.
  pending_hooks: usize,
  /// A recovery strategy asked to stop without compensating.
  skip_compensation: bool,
  /// Decisions and waits carried over from before a resume.
  prior_decisions: HashMap<String, PriorDecision>,
  prior_waits: HashMap<String, Duration>,
  /// Stages compensated before a resume.
  compensated: HashSet<usize>,
  /// Attempts announced in this scheduling pass, started after the next flush.
  launches: Vec<Launch>,
  /// Events the non-durable sinks get after the durable ones flushed.
  deferred: Vec<EventRecord>,
  /// Which sinks are durable, decided once.
  durable: Vec<bool>,
  has_durable: bool,
  /// Some sink is not durable (so events are held back for it while a durable one exists).
  has_plain: bool,
}

/// A gate or approval opened and not decided yet.
#[derive(Debug, Clone)]
struct GateOpen {
  kind: String,
  message: Option<String>,
  timeout: Option<Duration>,
  opened: Instant,
}

/// The answer of a policy or recovery call made off the engine's task.
enum HookReply {
  Policy {
    stage: usize,
    policy: String,
    open: GateOpen,
    result: Result<hooks::PolicyDecision, String>,
  },
  Recovery {
    stage: usize,
    attempt: u32,
    strategy: String,
    result: Result<hooks::RecoveryAction, String>,
  },
}

impl Engine {
  fn new(
    workflow: Arc<Workflow>,
    options: RunOptions,
    executor: Arc<dyn StageExecutor>,
    sinks: Vec<Box<dyn EventSink>>,
  ) -> Self {
    let n = workflow.stages.len();
    let index = workflow.stage_index();
    let mut slots: Vec<Slot> = workflow
      .stages
      .iter()
      .map(|stage| {
        let deps: Vec<usize> = stage
          .depends_on
          .iter()
          .filter_map(|d| index.get(d.as_str()).copied())
          .collect();
        let reads = &workflow.reads()[stage.index];
        Slot {
          level: 0,
          dependents: Vec::new(),
          remaining: deps.len(),
          deps,
          upstream_failed: false,
          upstream_cancelled: false,
          attempts: 0,
          tries: 0,
          phase: Phase::Primary,
          approved: false,
          passed_break: false,
          reads: reads.stages.clone(),
          reads_all: reads.all,
          value: Value::Null,
          outputs: None,
          ignored: false,
          overrides: None,
          chosen: None,
          started: None,
        }
      })
      .collect();
    // Levels in file order work because a loaded workflow is acyclic; compute them by walking
    // stages once their dependencies have levels.
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut pending: Vec<usize> = slots.iter().map(|s| s.deps.len()).collect();
    for i in 0..n {
      for d in slots[i].deps.clone() {
        slots[d].dependents.push(i);
      }
    }
    let mut queue: std::collections::VecDeque<usize> =
      (0..n).filter(|&i| pending[i] == 0).collect();
    while let Some(i) = queue.pop_front() {
      order.push(i);
      for j in slots[i].dependents.clone() {
        slots[j].level = slots[j].level.max(slots[i].level + 1);
        pending[j] -= 1;
        if pending[j] == 0 {
          queue.push_back(j);
        }
      }
    }
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    let (hook_tx, hook_rx) = mpsc::unbounded_channel();
    let started_at = event::now_rfc3339();
    let run_value = object([
      ("id", Value::from(options.run_id.as_str())),
      ("started_at", Value::from(started_at.as_str())),
      ("attempt", Value::Number(1.0)),
    ]);
    let workflow_value = object([
      ("name", Value::from(workflow.name.as_str())),
      (
        "version",
        workflow.version.as_deref().map_or(Value::Null, Value::from),
      ),
    ]);
    let params = Value::from(serde_json::Value::Object(
      options.params.clone().into_iter().collect(),
    ));
    let seed = SystemTime::now()
      .duration_since(SystemTime::UNIX_EPOCH)
      .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
      ^ u64::from(std::process::id());
    let state = state::RunState::new(&workflow, &options.run_id);
    let deadline = workflow.config.timeout.map(|t| Instant::now() + t);
    Self {
      running: (0..n).map(|_| None).collect(),
      state,
      slots,
      ready: BinaryHeap::new(),
      runnable: BinaryHeap::new(),
      delayed: BinaryHeap::new(),
      waiting: Vec::new(),
      deadlines: Vec::new(),
      in_flight: 0,
      settled: 0,
      completion_order: Vec::new(),
      stop: None,
      rejected: false,
      paused: options.start_paused,
      steps: 0,
      breakpoints: HashSet::new(),
      memory: Memory::default(),
      params,
      env: Value::Null,
      env_strings: IndexMap::new(),
      run_value,
      workflow_value,
      started: Instant::now(),
      deadline,
      attempts: FuturesUnordered::new(),
      log_tx,
      log_rx,
      rng: seed | 1,
      errors: Vec::new(),
      run_id: Arc::from(options.run_id.as_str()),
      hook_tx,
      hook_rx,
      pending_hooks: 0,
      skip_compensation: false,
      prior_decisions: HashMap::new(),
      prior_waits: HashMap::new(),
      compensated: HashSet::new(),
      launches: Vec::new(),
      deferred: Vec::new(),
      durable: sinks.iter().map(|s| s.durable()).collect(),
      has_durable: sinks.iter().any(|s| s.durable()),
      has_plain: sinks.iter().any(|s| !s.durable()),
      workflow,
      options,
      executor,
      sinks,
    }
  }

  /// Emits an event: masks it, folds it into the state, then hands it to every sink.
  fn emit(&mut self, mut event: Event) {
    self.options.masker.mask_event(&mut event);
    let record = EventRecord {
      ts: event::now_rfc3339(),
      run: Arc::clone(&self.run_id),
      event,
    };
    for (sink, &durable) in self.sinks.iter_mut().zip(&self.durable) {
      if durable || !self.has_durable {
        sink.emit(&record);
      }
    }
    if self.has_durable && self.has_plain {
      self.deferred.push(record.clone());
    }
    self.state.apply_owned(record);
  }

  /// Makes the events so far durable, then hands them to the other sinks and flushes those.
  fn flush(&mut self) {
    self.commit();
    for sink in self.sinks.iter_mut().filter(|s| !s.durable()) {
      sink.flush();
    }
  }

  /// Makes the events so far durable (the run store), then hands them to the other sinks.
  fn commit(&mut self) {
    for sink in self.sinks.iter_mut().filter(|s| s.durable()) {
      sink.flush();
    }
    // Nothing may start on events that could not be made durable: the run stops.
    if self.stop.is_none() && self.sinks.iter().any(|s| s.durable() && !s.healthy()) {
      self
        .errors
        .push("the run store could not record the run's events; the run stopped".into());
      self.skip_compensation = true;
      self.begin_stop(Stop::Halt);
    }
    let deferred = std::mem::take(&mut self.deferred);
    for sink in self.sinks.iter_mut().filter(|s| !s.durable()) {
      for record in &deferred {
        sink.emit(record);
      }
    }
  }

  fn id(&self, i: usize) -> String {
    self.workflow.stages[i].id.clone()
  }

  fn status(&self, i: usize) -> StageStatus {
    self
      .state
      .stages
      .get_index(i)
      .map_or(StageStatus::Pending, |(_, s)| s.status)
  }

  async fn run(&mut self, mut control: mpsc::UnboundedReceiver<Control>) {
    self.resolve_env();
    if let Some(resume) = self.options.resume.take() {
      self.restore(resume);
    } else {
      self.emit(Event::RunStarted {
        workflow: self.workflow.name.clone(),
        params: serde_json::Value::Object(self.options.params.clone().into_iter().collect()),
        max_parallel: self.options.max_parallel,
        stages: self.workflow.stages.len(),
      });
      for i in 0..self.slots.len() {
        if self.slots[i].remaining == 0 {
          self.ready.push(Reverse((self.slots[i].level, i)));
        }
      }
    }
    let mut control_open = true;
    loop {
      self.schedule();
      self.flush();
      if self.settled == self.slots.len() {
        break;
      }
      if self.in_flight == 0
        && self.pending_hooks == 0
        && self.runnable.is_empty()
        && self.delayed.is_empty()
      {
        let blocked_on_gates = !self.waiting.is_empty();
        let can_wait = self.options.interactive && control_open || !self.deadlines.is_empty();
        if blocked_on_gates && !can_wait && !self.paused {
          // Nothing can progress until someone decides: suspend.
          break;
        }
        if self.paused && !control_open && !blocked_on_gates {
          break;
        }
      }
      let next_retry = self.delayed.peek().map(|Reverse((due, _))| *due);
      let next_deadline = self.deadlines.iter().map(|(d, _)| *d).min();
      let wake = [next_retry, next_deadline, self.deadline]
        .into_iter()
        .flatten()
        .min();
      tokio::select! {
        Some(done) = self.attempts.next(), if !self.attempts.is_empty() => {
          self.on_done(done);
          // Take every other attempt that finished meanwhile, so one pass (and one commit)
          // covers them all.
          while let Some(Some(done)) = self.attempts.next().now_or_never() {
            self.on_done(done);
          }
        }
        Some(line) = self.log_rx.recv() => self.on_log(line),
        Some(reply) = self.hook_rx.recv() => self.on_hook_reply(reply),
        message = control.recv(), if control_open => match message {
          Some(message) => self.on_control(message),
          None => control_open = false,
        },
        () = sleep_until(wake), if wake.is_some() => self.on_timer(),
      }
    }
    self.finish().await;
  }

  /// Continues from recorded events: the state is their fold; settled stages keep their status
  /// and outputs and release their dependents; stages that were in flight or waiting out a
  /// retry start again with their attempts counted; gates still waiting open again, decided by
  /// what was recorded meanwhile or by their timeout counted from when they first opened.
  fn restore(&mut self, resume: Resume) {
    let index = self.workflow.stage_index();
    let n = self.slots.len();
    // Per stage: where in the log it last became settled, primary attempts started, whether
    // its latest attempt never finished, the skill of its latest attempt, and how its latest
    // attempt failed when nothing was recorded after that failure (the decision that follows a
    // failed attempt, a retry, a fallback, a recovery or the end, is taken again).
    let mut settled_at: Vec<Option<usize>> = vec![None; n];
    let mut primary = vec![0u32; n];
    let mut in_flight = vec![false; n];
    let mut last_uses: Vec<Option<String>> = vec![None; n];
    let mut failed_attempt: Vec<Option<RetryOn>> = vec![None; n];
    for (position, record) in resume.events.into_iter().enumerate() {
      let stage = record.event.stage().and_then(|s| index.get(s).copied());
      if let Some(i) = stage
        && !matches!(record.event, Event::Log { .. })
      {
        failed_attempt[i] = None;
      }
      match (&record.event, stage) {
        (Event::StageStarted { uses, .. }, Some(i)) => {
          if self.workflow.stages[i]
            .skill()
            .is_some_and(|c| &c.uses == uses)
          {
            primary[i] += 1;
          }
          in_flight[i] = true;
          last_uses[i] = Some(uses.clone());
        }
        (Event::StageRetrying { .. }, Some(i)) => in_flight[i] = false,
        (
          Event::StageFailed {
            attempt: Some(_), ..
          },
          Some(i),
        ) => {
          in_flight[i] = false;
          failed_attempt[i] = Some(RetryOn::Error);
        }
        (Event::StageTimedOut { .. }, Some(i)) => {
          in_flight[i] = false;
          failed_attempt[i] = Some(RetryOn::Timeout);
        }
        (Event::GateDecided { decision, .. }, Some(i)) => match decision {
          GateDecision::Approve => self.slots[i].approved = true,
          GateDecision::Reject => self.rejected = true,
        },
        (Event::CompensationCompleted { .. } | Event::CompensationFailed { .. }, Some(i)) => {
          self.compensated.insert(i);
        }
        _ => {}
      }
      self.state.apply_owned(record);
      if let Some(i) = stage {
        if self.status(i).is_settled() {
          settled_at[i].get_or_insert(position);
        } else {
          settled_at[i] = None;
        }
      }
    }
    self.run_value = object([
      ("id", Value::from(self.options.run_id.as_str())),
      (
        "started_at",
        self
          .state
          .started_at
          .as_deref()
          .map_or(Value::Null, Value::from),
      ),
      ("attempt", Value::Number(f64::from(resume.attempt.max(1)))),
    ]);
    self.prior_decisions = resume.decisions;
    self.prior_waits = resume.waited;
    self.emit(Event::RunResumed {});
    // Every stage's counters, then the settled ones in the order they settled.
    for i in 0..n {
      let attempts = self
        .state
        .stages
        .get_index(i)
        .map_or(0, |(_, s)| s.attempts);
      let fallback = last_uses[i].as_ref().and_then(|uses| {
        self.workflow.stages[i]
          .fallback
          .iter()
          .position(|f| f == uses)
      });
      let slot = &mut self.slots[i];
      slot.attempts = attempts;
      // An attempt cut short counts as an attempt (its number is used), not as a try spent.
      slot.tries = primary[i] - u32::from(in_flight[i] && primary[i] > 0 && fallback.is_none());
      if let Some(k) = fallback {
        slot.phase = Phase::Fallback(k);
      }
    }
    let mut order: Vec<(usize, usize)> = settled_at
      .iter()
      .enumerate()
      .filter_map(|(i, at)| at.map(|at| (at, i)))
      .collect();
    order.sort_unstable();
    let mut halted = false;
    for (_, i) in order {
      let (status, outputs) = match self.state.stages.get_index(i) {
        Some((_, s)) => (s.status, s.outputs.clone()),
        None => continue,
      };
      let (mut failed, mut cancelled) = (false, false);
      for &d in &self.slots[i].deps {
        let dep = &self.slots[d];
        let dep_status = self.status(d);
        failed |= dep.upstream_failed
          || (matches!(dep_status, StageStatus::Failed | StageStatus::TimedOut) && !dep.ignored);
        cancelled |= dep.upstream_cancelled || dep_status == StageStatus::Cancelled;
      }
      let slot = &mut self.slots[i];
      slot.upstream_failed = failed;
      slot.upstream_cancelled = cancelled;
      slot.outputs = outputs;
      if let Some(kind) = failed_attempt[i] {
        // What follows a failed attempt was not recorded: decide it again.
        self.after_failure(i, kind);
        continue;
      }
      if matches!(status, StageStatus::Failed | StageStatus::TimedOut) {
        match self.workflow.stages[i].on_failure {
          OnFailure::Ignore => slot.ignored = true,
          OnFailure::Halt => halted = true,
          OnFailure::Continue => {}
        }
      }
      if status == StageStatus::Completed {
        self.completion_order.push(i);
      }
      self.settle(i);
    }
    for i in 0..n {
      // Stages with dependencies were queued when their last dependency was settled above.
      if !self.status(i).is_settled() && self.slots[i].deps.is_empty() {
        let level = self.slots[i].level;
        self.ready.push(Reverse((level, i)));
      }
    }
    if halted {
      self.begin_stop(Stop::Halt);
    }
  }

  /// Resolves `config.env` once, against parameters, run and workflow.
  fn resolve_env(&mut self) {
    let mut values: IndexMap<String, Value> = IndexMap::new();
    let mut strings = IndexMap::new();
    let workflow = Arc::clone(&self.workflow);
    for (key, input) in &workflow.config.env {
      let ctx = self.context_with(
        Value::Object(Arc::new(values.clone())),
        Value::Null,
        StatusFlags::default(),
      );
      match resolve_input(input, &ctx) {
        Ok(v) => {
          let value = Value::from(v);
          strings.insert(key.clone(), value.to_text());
          values.insert(key.clone(), value);
        }
        Err(e) => self.errors.push(format!("config.env.{key}: {e}")),
      }
    }
    self.env = Value::Object(Arc::new(values));
    self.env_strings = strings;
  }

  fn context_with(&self, env: Value, stages: Value, status: StatusFlags) -> StageContext {
    StageContext {
      params: self.params.clone(),
      env,
      run: self.run_value.clone(),
      workflow: self.workflow_value.clone(),
      stages,
      memory: None,
      memory_log: self.memory.clone(),
      status,
    }
  }

  /// The expression context of stage `i`: only the stages it reads are built into `stages`.
  fn context(&self, i: usize, status: StatusFlags) -> StageContext {
    let slot = &self.slots[i];
    let mut stages = IndexMap::new();
    let visible: Box<dyn Iterator<Item = usize>> = if slot.reads_all {
      Box::new(0..self.slots.len())
    } else {
      Box::new(slot.reads.iter().copied())
    };
    for r in visible {
      stages.insert(self.workflow.stages[r].id.clone(), self.stage_value(r));
    }
    self.context_with(self.env.clone(), Value::Object(Arc::new(stages)), status)
  }

  /// `stages.<id>` for any stage: settled ones have their cached value.
  fn stage_value(&self, i: usize) -> Value {
    if self.status(i).is_settled() {
      return self.slots[i].value.clone();
    }
    object([
      ("outputs", Value::Null),
      ("status", Value::from(self.status(i).as_str())),
      ("attempts", Value::Number(f64::from(self.slots[i].attempts))),
    ])
  }

  fn flags(&self, i: usize) -> StatusFlags {
    let slot = &self.slots[i];
    StatusFlags {
      success: !slot.upstream_failed && !slot.upstream_cancelled,
      failure: slot.upstream_failed,
      cancelled: self.stop == Some(Stop::Cancel),
    }
  }

  /// Moves work forward: evaluates ready stages, then starts runnable ones while slots are free.
  fn schedule(&mut self) {
    // Attempts that finish on their first poll settle at once, free their slots and make more
    // stages ready.
    loop {
      while let Some(Reverse((_, i))) = self.ready.pop() {
        self.evaluate(i);
      }
      self.start_runnable();
      if self.launches.is_empty() && self.ready.is_empty() {
        break;
      }
      self.launch();
    }
  }

  /// Starts the attempts announced since the last call, once their events are durable: one
  /// commit covers every attempt a scheduling pass starts.
  fn launch(&mut self) {
    if self.launches.is_empty() {
      return;
    }
    // Without a run store there is nothing to wait for: events already reached every sink.
    if self.has_durable {
      self.commit();
    }
    for Launch {
      stage: i,
      attempt,
      task,
      timeout,
    } in std::mem::take(&mut self.launches)
    {
      // An attempt started earlier in this loop may have stopped the run (halt) and with it
      // this one, which was announced but must not start now.
      if self.running[i]
        .as_ref()
        .is_none_or(|r| r.attempt != attempt)
      {
        continue;
      }
      let future = self
        .executor
        .execute(task, TaskIo::new(i, attempt, self.log_tx.clone()));
      // Taken before the timeout starts, so a timed-out attempt never reports less than its
      // limit.
      if let Some(running) = self.running[i].as_mut() {
        running.started = Instant::now();
      }
      let mut attempt_future = Box::pin(tokio::time::timeout(timeout, future));
      // Skills that finish without waiting (echo, most Lua glue) are done on the first poll:
      // handling them here saves a task, a channel message and a thread wake-up per stage.
      let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
      if let std::task::Poll::Ready(result) = attempt_future.as_mut().poll(&mut cx) {
        self.on_done(Done {
          stage: i,
          attempt,
          finished: finished(result),
        });
        continue;
      }
      self.attempts.push(Box::pin(async move {
        Done {
          stage: i,
          attempt,
          finished: finished(attempt_future.await),
        }
      }));
    }
  }

  /// Starts runnable stages while slots are free and the run is not paused.
  fn start_runnable(&mut self) {
    while let Some(&Reverse((_, i))) = self.runnable.peek() {
      if let Some(stop) = self.stop
        && !self.runs_while_stopping(i, stop)
      {
        self.runnable.pop();
        self.cancel_pending(i, stop);
        continue;
      }
      // Clean-up stages that run after a halt or cancel still take a slot each.
      if self.in_flight >= self.options.max_parallel {
        break;
      }
      if self.stop.is_none() {
        if self.paused && self.steps == 0 {
          break;
        }
        let stage = &self.workflow.stages[i];
        if self.breakpoints.contains(&stage.id)
          && !self.slots[i].passed_break
          && self.slots[i].attempts == 0
        {
          self.slots[i].passed_break = true;
          if !self.paused || self.steps == 0 {
            self.paused = true;
            let id = stage.id.clone();
            self.emit(Event::RunPaused {
              reason: "breakpoint".into(),
              stage: Some(id),
            });
            break;
          }
        }
        if self.paused {
          self.steps = self.steps.saturating_sub(1);
        }
      }
      self.runnable.pop();
      self.start_or_wait(i);
    }
  }

  /// Whether stage `i` still runs after the run stopped: clean-up stages asking for it.
  fn runs_while_stopping(&self, i: usize, stop: Stop) -> bool {
    let Some(condition) = &self.workflow.stages[i].condition else {
      return false;
    };
    let wanted: &[&str] = match stop {
      Stop::Halt => &["always", "failure"],
      Stop::Cancel => &["always", "cancelled"],
      Stop::Timeout => return false,
    };
    condition
      .template
      .exprs()
      .any(|(e, _)| calls_any(e, wanted))
  }

  /// Dependencies are settled: skip, cancel, queue for a slot, or wait at a gate.
  fn evaluate(&mut self, i: usize) {
    // Upstream flags come from direct dependencies, which carry their own ancestors' flags.
    let (mut failed, mut cancelled) = (false, false);
    for &d in &self.slots[i].deps {
      let slot = &self.slots[d];
      let status = self.status(d);
      failed |= slot.upstream_failed
        || (matches!(status, StageStatus::Failed | StageStatus::TimedOut) && !slot.ignored);
      cancelled |= slot.upstream_cancelled || status == StageStatus::Cancelled;
    }
    self.slots[i].upstream_failed = failed;
    self.slots[i].upstream_cancelled = cancelled;
    if let Some(stop) = self.stop
      && !self.runs_while_stopping(i, stop)
    {
      self.cancel_pending(i, stop);
      return;
    }
    let flags = self.flags(i);
    let stage = &self.workflow.stages[i];
    let run = match &stage.condition {
      None => Ok(flags.success),
      Some(condition) => {
        let ctx = self.context(i, flags);
        let explicit = condition
          .template
          .exprs()
          .any(|(e, _)| e.uses_status_function());
        match condition.template.single() {
          Some(e) => e
            .eval(&ctx)
            .map(|v| v.is_truthy() && (explicit || flags.success)),
          None => condition
            .template
            .eval(&ctx)
            .map(|v| v.is_truthy() && (explicit || flags.success)),
        }
      }
    };
    match run {
      Err(error) => {
        let message = format!("`if` could not be evaluated: {}", error.kind);
        self.fail_without_attempt(i, message, "condition");
      }
      Ok(false) => {
        let reason = if flags.success {
          "condition"
        } else {
          "dependency"
        };
        let id = self.id(i);
        self.emit(Event::StageSkipped {
          stage: id,
          reason: reason.into(),
        });
        self.settle(i);
      }
      Ok(true) => match &stage.kind {
        StageKind::Gate(_) => self.open_gate(i, "gate"),
        StageKind::Skill(_) if self.needs_approval(i) => self.open_gate(i, "approval"),
        StageKind::Skill(_) => self.runnable.push(Reverse((self.slots[i].level, i))),
      },
    }
  }

  fn needs_approval(&self, i: usize) -> bool {
    let stage = &self.workflow.stages[i];
    let Some(require) = self
      .workflow
      .config
      .approval
      .as_ref()
      .and_then(|a| a.require_for)
    else {
      return false;
    };
    !self.slots[i].approved && stage.risk.is_some_and(|r| r >= require)
  }

  fn open_gate(&mut self, i: usize, kind: &str) {
    let stage = &self.workflow.stages[i];
    let id = stage.id.clone();
    let gate = stage.gate();
    let message = gate.and_then(|g| g.message.as_ref()).map(|m| {
      let ctx = self.context(i, self.flags(i));
      m.template
        .eval(&ctx)
        .map_or_else(|_| m.text.clone(), |v| v.to_text())
    });
    let message = message.or_else(|| {
      (kind == "approval").then(|| {
        format!(
          "Stage `{id}` has risk {} and needs approval",
          stage.risk.map_or("?", risk_name)
        )
      })
    });
    let timeout = gate.and_then(|g| g.timeout);
    let now = Instant::now();
    let opened = self
      .prior_waits
      .remove(&id)
      .and_then(|waited| now.checked_sub(waited))
      .unwrap_or(now);
    if let Some(prior) = self.prior_decisions.remove(&id) {
      let waiting = GateOpen {
        kind: kind.to_string(),
        message,
        timeout,
        opened,
      };
      self.announce_gate(i, &waiting);
      self.decide(i, prior.decision, prior.by, prior.reason, prior.inputs);
      return;
    }
    let up_front = if self.options.reject.contains(&id) {
      Some(GateDecision::Reject)
    } else if self.options.approve_all || self.options.approve.contains(&id) {
      Some(GateDecision::Approve)
    } else {
      None
    };
    let waiting = GateOpen {
      kind: kind.to_string(),
      message,
      timeout,
      opened,
    };
    if let Some(decision) = up_front {
      self.announce_gate(i, &waiting);
      self.decide(i, decision, "flag".into(), None, None);
      return;
    }
    // Then an approval policy, if the gate names one (or the workflow has a default policy).
    let policy = gate.and_then(|g| g.policy.clone()).or_else(|| {
      self
        .workflow
        .config
        .approval
        .as_ref()
        .and_then(|a| a.policy.clone())
    });
    if let (Some(name), Some(hooks)) = (policy, self.options.hooks.clone()) {
      let request = hooks::PolicyStage {
        id: id.clone(),
        kind: kind.to_string(),
        risk: stage.risk.map(risk_name).map(str::to_string),
        uses: stage.skill().map(|c| c.uses.clone()),
        message: waiting.message.clone(),
        run_id: self.options.run_id.clone(),
        params: masked_params(&self.options),
        memory: self.memory.view().entries(),
      };
      let reply = self.hook_tx.clone();
      self.pending_hooks += 1;
      tokio::spawn(async move {
        let result = hooks.decide(&name, request).await;
        let _ = reply.send(HookReply::Policy {
          stage: i,
          policy: name,
          open: waiting,
          result,
        });
      });
      return;
    }
    self.announce_gate(i, &waiting);
    self.wait_for_person(i, &waiting);
  }

  /// Emits `gate_waiting` for a gate or approval.
  fn announce_gate(&mut self, i: usize, open: &GateOpen) {
    let id = self.id(i);
    self.emit(Event::GateWaiting {
      stage: id,
      message: open.message.clone(),
      kind: open.kind.clone(),
      timeout_ms: open.timeout.map(millis),
    });
  }

  /// Leaves the decision to a person (a prompt, `Control::Decide`, or the gate's timeout).
  fn wait_for_person(&mut self, i: usize, open: &GateOpen) {
    self.waiting.push(i);
    if let Some(t) = open.timeout {
      self.deadlines.push((open.opened + t, i));
    }
  }

  fn on_hook_reply(&mut self, reply: HookReply) {
    self.pending_hooks -= 1;
    match reply {
      HookReply::Policy {
        stage: i,
        policy,
        open,
        result,
      } => {
        // The run may have stopped while the policy was thinking.
        if self.status(i).is_settled() {
          return;
        }
        if let Some(stop) = self.stop {
          self.cancel_pending(i, stop);
          return;
        }
        self.announce_gate(i, &open);
        let by = format!("policy:{policy}");
        match result {
          Ok(hooks::PolicyDecision::Approve { reason }) => {
            self.decide(i, GateDecision::Approve, by, reason, None);
          }
          Ok(hooks::PolicyDecision::Reject { reason }) => {
            self.decide(i, GateDecision::Reject, by, reason, None);
          }
          Ok(hooks::PolicyDecision::Ask { reason }) => {
            let id = self.id(i);
            let why = reason.map_or_else(String::new, |r| format!(": {r}"));
            self.emit(Event::Log {
              stage: id,
              attempt: 0,
              stream: "log".into(),
              message: format!("policy `{policy}` leaves the decision to a person{why}"),
            });
            self.wait_for_person(i, &open);
          }
          // A broken policy must not let anything through: fail closed.
          Err(error) => {
            let reason = Some(format!("policy `{policy}` failed: {error}"));
            self.decide(i, GateDecision::Reject, by, reason, None);
          }
        }
      }
      HookReply::Recovery {
        stage: i,
        attempt,
        strategy,
        result,
      } => self.apply_recovery(i, attempt, &strategy, result),
    }
  }

  fn decide(
    &mut self,
    i: usize,
    decision: GateDecision,
    by: String,
    reason: Option<String>,
    inputs: Option<serde_json::Value>,
  ) {
    self.waiting.retain(|&w| w != i);
    self.deadlines.retain(|(_, w)| *w != i);
    let id = self.id(i);
    self.emit(Event::GateDecided {
      stage: id.clone(),
      decision,
      decided_by: by.clone(),
      reason: reason.clone(),
      inputs: inputs.clone(),
    });
    let is_gate = self.workflow.stages[i].gate().is_some();
    match decision {
      GateDecision::Approve if is_gate => {
        let mut outputs = serde_json::Map::new();
        if let Some(serde_json::Value::Object(fields)) = inputs {
          outputs.extend(fields);
        }
        outputs.insert("decision".into(), "approve".into());
        outputs.insert("decided_by".into(), by.into());
        outputs.insert(
          "reason".into(),
          reason.map_or(serde_json::Value::Null, Into::into),
        );
        let outputs = Arc::new(serde_json::Value::Object(outputs));
        self.slots[i].outputs = Some(Arc::clone(&outputs));
        self.emit(Event::StageCompleted {
          stage: id,
          attempt: 0,
          uses: "gate".into(),
          outputs,
          summary: Some("approved".into()),
          duration_ms: 0,
        });
        self.completed(i);
      }
      GateDecision::Approve => {
        self.slots[i].approved = true;
        self.runnable.push(Reverse((self.slots[i].level, i)));
      }
      GateDecision::Reject => {
        self.rejected = true;
        let why = reason.map_or_else(
          || format!("rejected by {by}"),
          |r| format!("rejected by {by}: {r}"),
        );
        self.fail_without_attempt(i, why, "rejected");
      }
    }
  }

  /// A stage fails before any attempt ran (a rejected gate, an `if` or inputs that failed).
  fn fail_without_attempt(&mut self, i: usize, error: String, reason: &str) {
    let id = self.id(i);
    self.emit(Event::StageFailed {
      stage: id,
      attempt: None,
      uses: None,
      error,
      reason: reason.into(),
      duration_ms: 0,
    });
    self.final_failure(i);
  }

  /// Starts an attempt of stage `i` (after a risk approval when one is needed).
  fn start_or_wait(&mut self, i: usize) {
    if self.needs_approval(i) && self.slots[i].attempts == 0 {
      self.open_gate(i, "approval");
      return;
    }
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[i];
    let Some(call) = stage.skill() else {
      return;
    };
    let uses = match self.slots[i].phase {
      Phase::Primary => call.uses.clone(),
      Phase::Fallback(f) => stage.fallback.get(f).cloned().unwrap_or_default(),
      Phase::Chosen => self.slots[i].chosen.clone().unwrap_or_default(),
    };
    let ctx = self.context(i, self.flags(i));
    let inputs = match resolve_with(&call.with, &ctx) {
      Ok(inputs) => inputs,
      Err(error) => {
        self.fail_without_attempt(
          i,
          format!("inputs could not be evaluated: {error}"),
          "inputs",
        );
        return;
      }
    };
    let mut inputs = inputs;
    if let (Some(overrides), serde_json::Value::Object(map)) =
      (&self.slots[i].overrides, &mut inputs)
    {
      map.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let inputs = Arc::new(inputs);
    let slot = &mut self.slots[i];
    slot.attempts += 1;
    if slot.phase == Phase::Primary {
      slot.tries += 1;
    }
    let attempt = slot.attempts;
    slot.started.get_or_insert_with(Instant::now);
    let id = stage.id.clone();
    let task = StageTask {
      run: self.options.run_id.clone(),
      stage: id.clone(),
      attempt,
      idempotency_key: format!("{}/{}", self.options.run_id, id),
      skill: uses.clone(),
      inputs: Arc::clone(&inputs),
      timeout_ms: millis(stage.timeout),
      permissions: self
        .workflow
        .config
        .permissions
        .get(&uses)
        .cloned()
        .unwrap_or_default(),
      env: self.env_strings.clone(),
      memory: self.memory.view(),
    };
    self.emit(Event::StageStarted {
      stage: id,
      attempt,
      uses: uses.clone(),
      inputs,
    });
    // It holds its slot from now; it starts when the pass's events are durable (`launch`).
    self.in_flight += 1;
    self.running[i] = Some(Running {
      attempt,
      uses,
      started: Instant::now(),
    });
    self.launches.push(Launch {
      stage: i,
      attempt,
      task,
      timeout: stage.timeout,
    });
  }

  fn on_log(&mut self, line: LogLine) {
    let current = self.running.get(line.stage).and_then(Option::as_ref);
    if current.is_none_or(|r| r.attempt != line.attempt) {
      return;
    }
    let id = self.id(line.stage);
    self.emit(Event::Log {
      stage: id,
      attempt: line.attempt,
      stream: line.stream.as_str().into(),
      message: line.message,
    });
  }

  fn on_done(&mut self, done: Done) {
    let i = done.stage;
    // A result from an attempt that was already cancelled is stale.
    if self.running[i]
      .as_ref()
      .is_none_or(|r| r.attempt != done.attempt)
    {
      return;
    }
    // Log lines sent before the result belong to attempts that are still current.
    while let Ok(line) = self.log_rx.try_recv() {
      self.on_log(line);
    }
    let Some(running) = self.running[i].take() else {
      return;
    };
    self.in_flight -= 1;
    let elapsed = millis(running.started.elapsed());
    let stage = &self.workflow.stages[i];
    let id = stage.id.clone();
    match done.finished {
      Finished::Result(StageResult::Completed {
        outputs, summary, ..
      }) => {
        if let Err(error) = check_contract(stage, &outputs) {
          self.emit(Event::StageFailed {
            stage: id,
            attempt: Some(done.attempt),
            uses: Some(running.uses),
            error,
            reason: "contract".into(),
            duration_ms: elapsed,
          });
          self.after_failure(i, RetryOn::Error);
          return;
        }
        let outputs = Arc::new(serde_json::Value::Object(outputs));
        self.slots[i].outputs = Some(Arc::clone(&outputs));
        self.emit(Event::StageCompleted {
          stage: id,
          attempt: done.attempt,
          uses: running.uses,
          outputs,
          summary,
          duration_ms: elapsed,
        });
        self.completed(i);
      }
      Finished::Result(StageResult::Failed { error }) => {
        self.emit(Event::StageFailed {
          stage: id,
          attempt: Some(done.attempt),
          uses: Some(running.uses),
          error,
          reason: "error".into(),
          duration_ms: elapsed,
        });
        self.after_failure(i, RetryOn::Error);
      }
      Finished::TimedOut => {
        self.emit(Event::StageTimedOut {
          stage: id,
          attempt: done.attempt,
          uses: running.uses,
          timeout_ms: millis(stage.timeout),
          duration_ms: elapsed,
        });
        self.after_failure(i, RetryOn::Timeout);
      }
    }
  }

  /// Retry, fall back, or give up on stage `i` after a failed attempt.
  fn after_failure(&mut self, i: usize, kind: RetryOn) {
    // Once the run stopped, only clean-up stages (which still run) keep their retries.
    if let Some(stop) = self.stop
      && !self.runs_while_stopping(i, stop)
    {
      self.final_failure(i);
      return;
    }
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[i];
    // A recovery strategy replaces the retry and fallback settings of its stage.
    if let (Some(strategy), Some(hooks)) = (&stage.recover, self.options.hooks.clone()) {
      let state = self.state.stages.get_index(i).map(|(_, s)| s);
      let failure = hooks::Failure {
        stage: stage.id.clone(),
        attempt: self.slots[i].attempts,
        kind: match kind {
          RetryOn::Error => "error".into(),
          RetryOn::Timeout => "timeout".into(),
        },
        error: state.and_then(|s| s.error.clone()).unwrap_or_default(),
        uses: state.and_then(|s| s.uses.clone()).unwrap_or_default(),
        inputs: state
          .and_then(|s| s.inputs.as_deref().cloned())
          .unwrap_or_default(),
        run_id: self.options.run_id.clone(),
        params: masked_params(&self.options),
        memory: self.memory.view().entries(),
      };
      let reply = self.hook_tx.clone();
      let strategy = strategy.clone();
      let attempt = self.slots[i].attempts;
      self.pending_hooks += 1;
      tokio::spawn(async move {
        let result = hooks.recover(&strategy, failure).await;
        let _ = reply.send(HookReply::Recovery {
          stage: i,
          attempt,
          strategy,
          result,
        });
      });
      return;
    }
    let slot = &self.slots[i];
    if slot.phase == Phase::Primary
      && slot.tries < stage.retry.max_attempts
      && stage.retry.on.contains(&kind)
    {
      let mut delay = stage.retry.delay_after(slot.tries);
      if stage.retry.jitter {
        // Equal jitter: half the delay is kept, so retries stay spaced but do not align.
        let half = delay / 2;
        delay = half + half.mul_f64(self.random());
      }
      self.retry_after(i, delay);
      return;
    }
    let next_fallback = match slot.phase {
      Phase::Primary => 0,
      Phase::Fallback(f) => f + 1,
      Phase::Chosen => usize::MAX,
    };
    if next_fallback < stage.fallback.len() {
      self.slots[i].phase = Phase::Fallback(next_fallback);
      self.runnable.push(Reverse((self.slots[i].level, i)));
      return;
    }
    self.final_failure(i);
  }

  /// Announces and schedules the next attempt of stage `i` after `delay`.
  fn retry_after(&mut self, i: usize, delay: Duration) {
    let id = self.id(i);
    let attempt = self.slots[i].attempts;
    let error = self
      .state
      .stages
      .get_index(i)
      .and_then(|(_, s)| s.error.clone())
      .unwrap_or_default();
    self.emit(Event::StageRetrying {
      stage: id,
      attempt,
      delay_ms: millis(delay),
      due: event::rfc3339(SystemTime::now() + delay),
      error,
    });
    self.delayed.push(Reverse((Instant::now() + delay, i)));
  }

  /// Carries out what a recovery strategy decided after attempt `attempt` of stage `i` failed.
  fn apply_recovery(
    &mut self,
    i: usize,
    attempt: u32,
    strategy: &str,
    result: Result<hooks::RecoveryAction, String>,
  ) {
    let id = self.id(i);
    let event = |action: &str| Event::RecoveryDecided {
      stage: id.clone(),
      attempt,
      strategy: strategy.to_string(),
      action: action.to_string(),
      delay_ms: None,
      uses: None,
      with: None,
      error: None,
    };
    let action = match result {
      Ok(action) => action,
      Err(error) => {
        let mut e = event("error");
        if let Event::RecoveryDecided { error: slot, .. } = &mut e {
          *slot = Some(error);
        }
        self.emit(e);
        self.final_failure(i);
        return;
      }
    };
    if self.stop.is_some() && !matches!(action, hooks::RecoveryAction::Skip) {
      self.final_failure(i);
      return;
    }
    let mut decided = event(action.name());
    if let Event::RecoveryDecided {
      delay_ms,
      uses,
      with,
      ..
    } = &mut decided
    {
      match &action {
        hooks::RecoveryAction::Retry { delay, with: w } => {
          *delay_ms = Some(delay.map_or(0, millis));
          *with = w.clone().map(serde_json::Value::Object);
        }
        hooks::RecoveryAction::Fallback { uses: u } => *uses = Some(u.clone()),
        _ => {}
      }
    }
    self.emit(decided);
    // A strategy that always asks for another attempt (a retry or a fallback) must not loop
    // forever.
    let cap = self.workflow.stages[i]
      .retry
      .max_attempts
      .max(RECOVERY_ATTEMPTS);
    let again = matches!(
      action,
      hooks::RecoveryAction::Retry { .. } | hooks::RecoveryAction::Fallback { .. }
    );
    if again && self.slots[i].attempts >= cap {
      self.errors.push(format!(
        "stage `{id}`: recovery `{strategy}` asked for attempt {} but at most {cap} are allowed",
        self.slots[i].attempts + 1
      ));
      self.final_failure(i);
      return;
    }
    match action {
      hooks::RecoveryAction::Retry { delay, with } => {
        if let Some(with) = with {
          self.slots[i]
            .overrides
            .get_or_insert_with(Default::default)
            .extend(with);
        }
        self.slots[i].phase = Phase::Primary;
        self.retry_after(i, delay.unwrap_or_default());
      }
      hooks::RecoveryAction::Fallback { uses } => {
        self.slots[i].phase = Phase::Chosen;
        self.slots[i].chosen = Some(uses);
        self.runnable.push(Reverse((self.slots[i].level, i)));
      }
      hooks::RecoveryAction::Skip => {
        self.emit(Event::StageSkipped {
          stage: id,
          reason: "recovery".into(),
        });
        self.settle(i);
      }
      hooks::RecoveryAction::Abort => {
        self.skip_compensation = true;
        self.settle(i);
        self.begin_stop(Stop::Halt);
      }
      hooks::RecoveryAction::Compensate => {
        self.settle(i);
        self.begin_stop(Stop::Halt);
      }
    }
  }

  /// Applies `on_failure` once nothing more will be tried for stage `i`.
  fn final_failure(&mut self, i: usize) {
    match self.workflow.stages[i].on_failure {
      OnFailure::Halt => {
        self.settle(i);
        self.begin_stop(Stop::Halt);
      }
      OnFailure::Continue => self.settle(i),
      OnFailure::Ignore => {
        self.slots[i].ignored = true;
        self.settle(i);
      }
    }
  }

  fn completed(&mut self, i: usize) {
    self.completion_order.push(i);
    self.settle(i);
  }

  /// Stage `i` reached its final status: record it and release its dependents.
  fn settle(&mut self, i: usize) {
    self.settled += 1;
    let status = self.status(i);
    let slot = &mut self.slots[i];
    let outputs = slot.outputs.as_deref().map_or(Value::Null, Value::from);
    slot.value = object([
      ("outputs", outputs),
      ("status", Value::from(status.as_str())),
      ("attempts", Value::Number(f64::from(slot.attempts))),
    ]);
    let duration_ms = slot.started.map_or_else(
      || {
        self
          .state
          .stages
          .get_index(i)
          .and_then(|(_, s)| s.duration_ms)
          .unwrap_or(0)
      },
      |s| millis(s.elapsed()),
    );
    let entry = MemoryEntry {
      stage: self.workflow.stages[i].id.clone(),
      status,
      uses: self
        .state
        .stages
        .get_index(i)
        .and_then(|(_, s)| s.uses.clone()),
      summary: self
        .state
        .stages
        .get_index(i)
        .and_then(|(_, s)| s.summary.clone()),
      outputs: self.slots[i]
        .outputs
        .clone()
        .unwrap_or_else(|| Arc::new(serde_json::Value::Null)),
      duration_ms,
    };
    self.memory.push(entry);
    for k in 0..self.slots[i].dependents.len() {
      let d = self.slots[i].dependents[k];
      self.slots[d].remaining -= 1;
      // A dependent already settled (restored by a resume) is not evaluated again.
      if self.slots[d].remaining == 0 && !self.status(d).is_settled() {
        self.ready.push(Reverse((self.slots[d].level, d)));
      }
    }
  }

  /// A stage that never started ends cancelled because the run stopped.
  fn cancel_pending(&mut self, i: usize, stop: Stop) {
    let id = self.id(i);
    self.emit(Event::StageCancelled {
      stage: id,
      attempt: None,
      reason: stop_reason(stop).into(),
    });
    self.settle(i);
  }

  /// Stops starting ordinary stages and stops what is in flight, retrying or waiting.
  fn begin_stop(&mut self, stop: Stop) {
    if self.stop.is_some() {
      return;
    }
    self.stop = Some(stop);
    self.paused = false;
    // Every attempt in flight stops now: dropping them kills shell process groups and stops
    // Lua calls at once. Announced ones never start.
    self.attempts.clear();
    self.launches.clear();
    for i in 0..self.running.len() {
      let Some(running) = self.running[i].take() else {
        continue;
      };
      self.in_flight -= 1;
      let id = self.id(i);
      if stop == Stop::Timeout {
        let duration_ms = millis(running.started.elapsed());
        self.emit(Event::StageTimedOut {
          stage: id,
          attempt: running.attempt,
          uses: running.uses,
          timeout_ms: self.workflow.config.timeout.map_or(0, millis),
          duration_ms,
        });
      } else {
        self.emit(Event::StageCancelled {
          stage: id,
          attempt: Some(running.attempt),
          reason: stop_reason(stop).into(),
        });
      }
      self.settle(i);
    }
    let delayed: Vec<usize> = self.delayed.drain().map(|Reverse((_, i))| i).collect();
    let waiting = std::mem::take(&mut self.waiting);
    self.deadlines.clear();
    for i in delayed.into_iter().chain(waiting) {
      self.cancel_pending(i, stop);
    }
  }

  fn on_control(&mut self, message: Control) {
    match message {
      Control::Pause => {
        if !self.paused && self.stop.is_none() {
          self.paused = true;
          self.emit(Event::RunPaused {
            reason: "pause".into(),
            stage: None,
          });
        }
      }
      Control::Resume => {
        if self.paused {
          self.paused = false;
          self.steps = 0;
          self.emit(Event::RunResumed {});
        }
      }
      Control::Step => {
        if self.paused {
          self.steps += 1;
        }
      }
      Control::Cancel => self.begin_stop(Stop::Cancel),
      Control::Break(id) => {
        self.breakpoints.insert(id);
      }
      Control::Unbreak(id) => {
        self.breakpoints.remove(&id);
      }
      Control::Query(reply) => {
        let names = |list: &mut dyn Iterator<Item = usize>| -> Vec<String> {
          list.map(|i| self.workflow.stages[i].id.clone()).collect()
        };
        let snapshot = Snapshot {
          paused: self.paused,
          running: names(&mut (0..self.running.len()).filter(|&i| self.running[i].is_some())),
          waiting: names(&mut self.waiting.iter().copied()),
          runnable: names(&mut self.runnable.iter().map(|Reverse((_, i))| *i)),
          delayed: names(&mut self.delayed.iter().map(|Reverse((_, i))| *i)),
          settled: self.settled,
        };
        let _ = reply.send(snapshot);
      }
      Control::Decide {
        stage,
        decision,
        by,
        reason,
        inputs,
      } => {
        let waiting = self
          .waiting
          .iter()
          .copied()
          .find(|&w| self.workflow.stages[w].id == stage);
        if let Some(i) = waiting {
          self.decide(i, decision, by, reason, inputs);
        }
      }
    }
  }

  fn on_timer(&mut self) {
    let now = Instant::now();
    if self.deadline.is_some_and(|d| d <= now) {
      self.deadline = None;
      let limit = self.workflow.config.timeout.unwrap_or_default();
      self.errors.push(format!(
        "the run timed out after {}",
        duration::format_duration(limit)
      ));
      self.begin_stop(Stop::Timeout);
      return;
    }
    while let Some(&Reverse((due, i))) = self.delayed.peek() {
      if due > now {
        break;
      }
      self.delayed.pop();
      self.runnable.push(Reverse((self.slots[i].level, i)));
    }
    let expired: Vec<usize> = self
      .deadlines
      .iter()
      .filter(|(d, _)| *d <= now)
      .map(|(_, i)| *i)
      .collect();
    for i in expired {
      let on_timeout = self.workflow.stages[i]
        .gate()
        .map_or(GateDecision::Reject, |g| g.on_timeout);
      self.decide(
        i,
        on_timeout,
        "timeout".into(),
        Some("no decision before the gate's timeout".into()),
        None,
      );
    }
  }

  fn random(&mut self) -> f64 {
    // xorshift64*: jitter needs spread, not cryptographic quality.
    self.rng ^= self.rng >> 12;
    self.rng ^= self.rng << 25;
    self.rng ^= self.rng >> 27;
    let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
    (x >> 11) as f64 / (1u64 << 53) as f64
  }

  /// Compensations, workflow outputs and the final event.
  async fn finish(&mut self) {
    let suspended = self.settled < self.slots.len();
    if self.stop == Some(Stop::Halt) && !self.skip_compensation {
      self.compensate().await;
    }
    let failed = self.workflow.stages.iter().enumerate().any(|(i, _)| {
      matches!(self.status(i), StageStatus::Failed | StageStatus::TimedOut)
        && !self.slots[i].ignored
    });
    let mut outputs = serde_json::Map::new();
    if !suspended {
      let mut all = IndexMap::new();
      for i in 0..self.slots.len() {
        all.insert(self.id(i), self.stage_value(i));
      }
      let ctx = self.context_with(
        self.env.clone(),
        Value::Object(Arc::new(all)),
        StatusFlags::default(),
      );
      let workflow = Arc::clone(&self.workflow);
      for (name, input) in &workflow.outputs {
        match resolve_input(input, &ctx) {
          Ok(value) => {
            outputs.insert(name.clone(), value);
          }
          Err(error) => {
            self.errors.push(format!(
              "workflow output `{name}` could not be evaluated: {error}"
            ));
            outputs.insert(name.clone(), serde_json::Value::Null);
          }
        }
      }
    }
    let status = match self.stop {
      _ if suspended => RunStatus::Waiting,
      Some(Stop::Cancel) => RunStatus::Cancelled,
      Some(Stop::Timeout) => RunStatus::Failed,
      _ if failed || !self.errors.is_empty() => RunStatus::Failed,
      _ => RunStatus::Completed,
    };
    let mut error = self.errors.first().cloned();
    if error.is_none() {
      error = match status {
        RunStatus::Cancelled => Some("cancelled".into()),
        RunStatus::Waiting => Some(format!(
          "suspended: waiting for a decision on {}",
          self
            .waiting
            .iter()
            .map(|&i| format!("`{}`", self.workflow.stages[i].id))
            .collect::<Vec<_>>()
            .join(", ")
        )),
        RunStatus::Failed => self.first_failure(),
        _ => None,
      };
    }
    let stages = self
      .state
      .stages
      .iter()
      .map(|(id, s)| (id.clone(), s.status))
      .collect();
    self.emit(Event::RunCompleted {
      status,
      outputs: serde_json::Value::Object(outputs),
      stages,
      error,
      duration_ms: millis(self.started.elapsed()),
    });
    self.flush();
  }

  fn first_failure(&self) -> Option<String> {
    self
      .workflow
      .stages
      .iter()
      .enumerate()
      .find_map(|(i, stage)| {
        let s = self.state.stages.get_index(i)?.1;
        (matches!(s.status, StageStatus::Failed | StageStatus::TimedOut) && !self.slots[i].ignored)
          .then(|| {
            format!(
              "stage `{}` {}: {}",
              stage.id,
              s.status.as_str().replace('_', " "),
              s.error.clone().unwrap_or_default()
            )
          })
      })
  }

  /// Runs the compensations of completed stages, most recently completed first.
  async fn compensate(&mut self) {
    let order: Vec<usize> = self
      .completion_order
      .iter()
      .rev()
      .copied()
      .filter(|i| !self.compensated.contains(i))
      .collect();
    let workflow = Arc::clone(&self.workflow);
    for i in order {
      let stage = &workflow.stages[i];
      let Some(call) = stage.compensate.clone() else {
        continue;
      };
      let id = stage.id.clone();
      let mut reads = self.slots[i].reads.clone();
      reads.push(i);
      let saved = std::mem::replace(&mut self.slots[i].reads, reads);
      let ctx = self.context(i, StatusFlags::default());
      self.slots[i].reads = saved;
      self.emit(Event::CompensationStarted {
        stage: id.clone(),
        uses: call.uses.clone(),
      });
      self.flush();
      let inputs = match resolve_with(&call.with, &ctx) {
        Ok(inputs) => inputs,
        Err(error) => {
          self.emit(Event::CompensationFailed {
            stage: id,
            uses: call.uses,
            error: format!("inputs could not be evaluated: {error}"),
          });
          continue;
        }
      };
      let task = StageTask {
        run: self.options.run_id.clone(),
        stage: id.clone(),
        attempt: 1,
        idempotency_key: format!("{}/{}/compensate", self.options.run_id, id),
        skill: call.uses.clone(),
        inputs: Arc::new(inputs),
        timeout_ms: millis(stage.timeout),
        permissions: self
          .workflow
          .config
          .permissions
          .get(&call.uses)
          .cloned()
          .unwrap_or_default(),
        env: self.env_strings.clone(),
        memory: self.memory.view(),
      };
      let started = Instant::now();
      let future = self.executor.execute(task, TaskIo::discard());
      match tokio::time::timeout(stage.timeout, future).await {
        Ok(StageResult::Completed { .. }) => self.emit(Event::CompensationCompleted {
          stage: id,
          uses: call.uses,
          duration_ms: millis(started.elapsed()),
        }),
        Ok(StageResult::Failed { error }) => self.emit(Event::CompensationFailed {
          stage: id,
          uses: call.uses,
          error,
        }),
        Err(_) => self.emit(Event::CompensationFailed {
          stage: id,
          uses: call.uses,
          error: format!(
            "timed out after {}",
            duration::format_duration(stage.timeout)
          ),
        }),
      }
    }
  }
}

/// Attempts a recovery strategy may ask for when `retry.max_attempts` allows fewer.
const RECOVERY_ATTEMPTS: u32 = 10;

fn risk_name(risk: workflow::Risk) -> &'static str {
  match risk {
    workflow::Risk::Low => "low",
    workflow::Risk::Medium => "medium",
    workflow::Risk::High => "high",
    workflow::Risk::Critical => "critical",
  }
}

/// Parameters as user code may see them: secrets masked.
fn masked_params(options: &RunOptions) -> serde_json::Value {
  let mut params = serde_json::Value::Object(options.params.clone().into_iter().collect());
  options.masker.mask_json(&mut params);
  params
}

fn finished(result: Result<StageResult, tokio::time::error::Elapsed>) -> Finished {
  match result {
    Ok(result) => Finished::Result(result),
    Err(_) => Finished::TimedOut,
  }
}

fn stop_reason(stop: Stop) -> &'static str {
  match stop {
    Stop::Halt => "halt",
    Stop::Cancel => "cancel",
    Stop::Timeout => "timeout",
  }
}

async fn sleep_until(at: Option<Instant>) {
  match at {
    Some(at) => tokio::time::sleep_until(at.into()).await,
    None => std::future::pending().await,
  }
}

fn millis(d: Duration) -> u64 {
  u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
  Value::Object(Arc::new(
    fields
      .into_iter()
      .map(|(k, v)| (k.to_string(), v))
      .collect(),
  ))
}

/// Whether an expression calls one of the named status functions.
fn calls_any(e: &expr::Expr, names: &[&str]) -> bool {
  use expr::ExprKind as K;
  match &e.kind {
    K::Call { name, args } => {
      names.iter().any(|n| n.eq_ignore_ascii_case(name)) || args.iter().any(|a| calls_any(a, names))
    }
    K::Literal(_) | K::Name(_) => false,
    K::Property { base, .. } | K::Filter { base } | K::Not(base) => calls_any(base, names),
    K::Index { base, index } => calls_any(base, names) || calls_any(index, names),
    K::Binary { lhs, rhs, .. } => calls_any(lhs, names) || calls_any(rhs, names),
    K::Logical { operands, .. } | K::Array(operands) => {
      operands.iter().any(|o| calls_any(o, names))
    }
    K::Ternary {
      condition,
      then,
      otherwise,
    } => calls_any(condition, names) || calls_any(then, names) || calls_any(otherwise, names),
    K::Object(fields) => fields.iter().any(|(_, v)| calls_any(v, names)),
  }
}

/// Evaluates every input of a `with` into one JSON object.
fn resolve_with(
  with: &IndexMap<String, Input>,
  ctx: &dyn Context,
) -> Result<serde_json::Value, String> {
  let mut out = serde_json::Map::with_capacity(with.len());
  for (key, input) in with {
    out.insert(key.clone(), resolve_input(input, ctx)?);
  }
  Ok(serde_json::Value::Object(out))
}

/// Evaluates the expressions in one input; literals are returned as they are.
fn resolve_input(input: &Input, ctx: &dyn Context) -> Result<serde_json::Value, String> {
  Ok(match input {
    Input::Literal(v) => v.clone(),
    Input::Expr(e) => e
      .template
      .eval(ctx)
      .map_err(|error| format!("`{}`: {}", e.text, error.kind))?
      .to_json(),
    Input::List(items) => serde_json::Value::Array(
      items
        .iter()
        .map(|i| resolve_input(i, ctx))
        .collect::<Result<_, _>>()?,
    ),
    Input::Map(entries) => serde_json::Value::Object(
      entries
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve_input(v, ctx)?)))
        .collect::<Result<_, String>>()?,
    ),
  })
}

/// Checks outputs against the stage's contract; the message names the offending field.
fn check_contract(
  stage: &Stage,
  outputs: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), String> {
  for (name, field) in &stage.outputs {
    match outputs.get(name) {
      None | Some(serde_json::Value::Null) if field.required => {
        return Err(format!(
          "output contract broken: required output `{name}` ({}) is missing",
          field.ty
        ));
      }
      Some(value) if !value.is_null() && !field.ty.accepts(value) => {
        return Err(format!(
          "output contract broken: output `{name}` must be {}, got {}",
          field.ty,
          workflow::json_kind(value)
        ));
      }
      _ => {}
    }
  }
  Ok(())
}

/// The expression context of one evaluation.
struct StageContext {
  params: Value,
  env: Value,
  run: Value,
  workflow: Value,
  stages: Value,
  /// Built on first use: most expressions never read memory.
  memory: Option<Value>,
  memory_log: Memory,
  status: StatusFlags,
}

impl Context for StageContext {
  fn lookup(&self, name: &str) -> Option<Value> {
    let value = match name.to_ascii_lowercase().as_str() {
      "parameters" => self.params.clone(),
      "env" => self.env.clone(),
      "run" => self.run.clone(),
      "workflow" => self.workflow.clone(),
      "stages" => self.stages.clone(),
      "memory" => self.memory.clone().unwrap_or_else(|| {
        Value::from(serde_json::to_value(self.memory_log.view()).unwrap_or_default())
      }),
      _ => return None,
    };
    Some(value)
  }

  fn status(&self) -> StatusFlags {
    self.status
  }
}

#[cfg(test)]
mod tests {
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
    let workflow = match loader::load_str("t.yaml", text) {
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
      assert_eq!(ran.outcome.exit_code(), 0, "{:?}", ran.outcome.state.error);
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
  fn a_resume_after_a_failed_attempt_goes_on_to_the_fallback() {
    let text = "name: t\nstages:\n  - id: a\n    uses: work\n    with: { fail_times: 1, outputs: { v: 7 } }\n    fallback: [backup]\n  - id: b\n    uses: work\n    depends_on: [a]\n";
    let ran = resumed(text, failed_first_attempt(false));
    assert_eq!(ran.outcome.exit_code(), 0, "{:?}", ran.outcome.state.error);
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
    let workflow = match loader::load_str("t.yaml", text) {
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
    assert_eq!(outcome.exit_code(), 1);
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

  /// Runs nothing; checks that the stage's `stage_started` is durable when asked to run it.
  struct Checked(Journal);

  impl StageExecutor for Checked {
    fn execute(&self, task: StageTask, _io: TaskIo) -> BoxFuture<StageResult> {
      if !self
        .0
        .is_committed(&format!("stage_started:{}", task.stage))
      {
        self.0.violation(format!(
          "{} started before its stage_started was durable",
          task.stage
        ));
      }
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
  fn attempts_start_and_others_see_events_only_once_they_are_durable() {
    let text = "name: d\nconfig: { max_parallel: 3 }\nstages:\n  - id: a\n    uses: echo\n  - id: slow1\n    uses: echo\n    depends_on: [a]\n  - id: b\n    uses: echo\n    depends_on: [a]\n  - id: slow2\n    uses: echo\n    depends_on: [slow1, b]\n  - id: c\n    uses: echo\n    depends_on: [slow2]\n";
    let workflow = match loader::load_str("t.yaml", text) {
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
    let executor: Arc<dyn StageExecutor> = Arc::new(Checked(journal.clone()));
    let outcome = runtime.block_on(execute(
      Arc::clone(&workflow),
      options(&workflow),
      executor,
      sinks,
      rx,
    ));
    assert_eq!(outcome.exit_code(), 0);
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
    assert_eq!(ran.outcome.exit_code(), 0);
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
    assert_eq!(ran.outcome.exit_code(), 1);
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
    assert_eq!(ran.outcome.exit_code(), 1);
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
    assert_eq!(ran.outcome.exit_code(), 3);
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
    assert_eq!(ran.outcome.exit_code(), 4);
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
    assert_eq!(ran.outcome.exit_code(), 4);
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
    assert_eq!(ran.outcome.exit_code(), 3);
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
    assert_eq!(ran.outcome.exit_code(), 1);
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
    let workflow = loader::load_str("t.yaml", text).expect("valid");
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

#[cfg(test)]
mod hook_tests {
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
    let workflow = Arc::new(loader::load_str("t.yaml", text).expect("valid"));
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
    assert_eq!(outcome.exit_code(), 3);
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
