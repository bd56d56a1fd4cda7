//! The core's state and its one entry point, [`Core::handle`]: an input comes in with the time,
//! events and commands come out. The concerns it delegates to live in sibling modules, each
//! adding methods to [`Core`]: `fold` (events into bookkeeping), `queue` (ready queue, slots,
//! pause and breakpoints), `attempt` (starting attempts, output contracts), `retry` (what
//! follows a failed attempt), `gate` (gates and approvals), `recovery` (Lua recovery advice),
//! `outcome` (stopping, compensation, the final event) and `scope` (a stage's expression scope).
use super::*;
use crate::{
  event::{Event, EventRecord, StageStatus},
  executor::{LogLine, Memory, StageResult, StageTask},
  expr::Value,
  workflow::{RetryOn, Workflow},
};
use std::{
  cmp::Reverse,
  collections::{BinaryHeap, VecDeque},
  time::Duration,
};

/// Milliseconds since the Unix epoch: the only notion of time the core has.
pub type Millis = u64;

/// What the core needs to know about how to run, beyond the workflow file.
#[derive(Debug, Clone)]
pub struct CoreOptions {
  /// Run id.
  pub run_id: String,
  /// Stages executing at once (at least 1).
  pub max_parallel: usize,
  /// Resolved parameter values.
  pub params: IndexMap<String, serde_json::Value>,
  /// Gates and approvals approved up front.
  pub approve: HashSet<String>,
  /// Gates and approvals rejected up front.
  pub reject: HashSet<String>,
  /// Approve every gate and approval.
  pub approve_all: bool,
  /// Hides secret values in everything emitted.
  pub masker: Masker,
  /// The driver can answer policy and recovery questions (the workflow has Lua hooks).
  pub hooks: bool,
  /// Start paused: nothing starts before a step or a resume.
  pub start_paused: bool,
  /// `swdl retry`: completed stages of an earlier run that need not run again.
  pub reuse: Option<Arc<Reuse>>,
}

/// Something that happened, handed to [`Core::handle`] with the time it happened.
#[derive(Debug)]
pub enum Input {
  /// Begin a fresh run; `seed` drives retry jitter and is recorded in `run_started`.
  Start {
    /// Seed for every random choice of the run.
    seed: u64,
  },
  /// Continue a run from its recorded events.
  Resume(Resume),
  /// An attempt started by [`Command::Start`] ended.
  Finished {
    /// Stage index.
    stage: usize,
    /// The attempt.
    attempt: u32,
    /// How it ended.
    result: Finished,
  },
  /// An attempt or a compensation logged a line.
  Log(LogLine),
  /// Time passed; timers due by now fire (every input fires them, this one does nothing else).
  Tick,
  /// Someone steered the run.
  Steer(Steer),
  /// The answer to [`Command::AskPolicy`].
  Policy {
    /// Stage index.
    stage: usize,
    /// The policy asked.
    policy: String,
    /// Its decision, or why it failed.
    result: Result<hooks::PolicyDecision, String>,
  },
  /// The answer to [`Command::AskRecovery`].
  Recovery {
    /// Stage index.
    stage: usize,
    /// The failed attempt.
    attempt: u32,
    /// The strategy asked.
    strategy: String,
    /// Its action, or why it failed.
    result: Result<hooks::RecoveryAction, String>,
  },
  /// A compensation started by [`Command::Compensate`] ended.
  Compensated {
    /// Stage index.
    stage: usize,
    /// How it ended.
    result: Finished,
  },
  /// The run store could not make events durable: the run must stop.
  StoreFailed,
  /// Nothing can progress until someone decides a gate and nobody is there to: suspend.
  Suspend,
}

/// How an attempt or compensation ended.
#[derive(Debug)]
pub enum Finished {
  /// The executor returned.
  Result(StageResult),
  /// It ran into its timeout.
  TimedOut,
}

/// The ways to steer a live run (the control channel's commands that change the run).
#[derive(Debug, Clone)]
pub enum Steer {
  /// Stop starting stages.
  Pause,
  /// Start stages again.
  Resume,
  /// Stop everything.
  Cancel,
  /// While paused, start the next ready stage.
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
}

/// What the driver must do for the core.
#[derive(Debug)]
pub enum Command {
  /// Start an attempt; report its end as [`Input::Finished`].
  Start {
    /// Stage index.
    stage: usize,
    /// The attempt.
    attempt: u32,
    /// What to run.
    task: StageTask,
    /// Stop it after this long and report [`Finished::TimedOut`].
    timeout: Duration,
  },
  /// Stop a started attempt; its result no longer matters.
  Cancel {
    /// Stage index.
    stage: usize,
    /// The attempt.
    attempt: u32,
  },
  /// Ask an approval policy; report the answer as [`Input::Policy`].
  AskPolicy {
    /// Stage index.
    stage: usize,
    /// The policy.
    policy: String,
    /// What it decides on.
    request: hooks::PolicyStage,
  },
  /// Ask a recovery strategy; report the answer as [`Input::Recovery`].
  AskRecovery {
    /// Stage index.
    stage: usize,
    /// The failed attempt.
    attempt: u32,
    /// The strategy.
    strategy: String,
    /// What failed.
    failure: hooks::Failure,
  },
  /// Run a compensation; report its end as [`Input::Compensated`].
  Compensate {
    /// Stage index.
    stage: usize,
    /// What to run.
    task: StageTask,
    /// Stop it after this long.
    timeout: Duration,
  },
}

/// Why the run stopped starting ordinary stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
  /// A stage failed under `on_failure: halt`.
  Halt,
  /// The user cancelled.
  Cancel,
  /// The whole-run timeout expired.
  Timeout,
}

impl Stop {
  pub(super) fn reason(self) -> &'static str {
    match self {
      Self::Halt => "halt",
      Self::Cancel => "cancel",
      Self::Timeout => "timeout",
    }
  }
}

/// Which skill the next attempt of a stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Phase {
  /// The stage's own skill, with retries.
  #[default]
  Primary,
  /// `fallback[i]`, one attempt each.
  Fallback(usize),
  /// A skill a recovery strategy chose, one attempt.
  Chosen,
}

/// What the last recorded event of a stage leaves to decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
  /// An attempt failed this way; a retry, fallback, recovery or the end follows.
  Failed(RetryOn),
  /// Nothing more will be tried: `on_failure` applies.
  GaveUp,
}

/// A running attempt.
#[derive(Debug, Clone)]
pub(super) struct Running {
  pub(super) attempt: u32,
  pub(super) uses: String,
  pub(super) started: Millis,
}

/// Bookkeeping per stage; statuses and outputs shown to users live in the folded state.
#[derive(Debug, Default)]
pub(super) struct Slot {
  /// Dependencies not settled yet.
  pub(super) remaining: usize,
  /// Some ancestor failed or timed out (failures under `ignore` do not count).
  pub(super) upstream_failed: bool,
  /// Some ancestor was cancelled.
  pub(super) upstream_cancelled: bool,
  /// Total attempts started, across the primary skill and fallbacks.
  pub(super) attempts: u32,
  /// Attempts of the primary skill.
  pub(super) tries: u32,
  pub(super) phase: Phase,
  /// A risk approval was granted (so the stage may start).
  pub(super) approved: bool,
  /// Passed its breakpoint once (so resuming does not stop at it again).
  pub(super) passed_break: bool,
  /// The value seen as `stages.<id>` once settled.
  pub(super) value: Value,
  /// Real (unmasked) outputs, for later stages' inputs.
  pub(super) outputs: Option<Arc<serde_json::Value>>,
  /// Failed under `on_failure: ignore`.
  pub(super) ignored: bool,
  /// Inputs a recovery strategy replaced for the next attempt.
  pub(super) overrides: Option<serde_json::Map<String, serde_json::Value>>,
  /// The skill a recovery strategy chose for the next attempt.
  pub(super) chosen: Option<String>,
  /// When the first attempt started.
  pub(super) first_started: Option<Millis>,
  /// When its gate first opened (its timeout counts from here, across resumes).
  pub(super) opened: Option<Millis>,
  /// When the next attempt is due, while waiting out a retry delay.
  pub(super) retry_due: Option<Millis>,
  /// What its last event leaves to decide.
  pub(super) after: Option<After>,
  /// A policy or recovery question is out.
  pub(super) asking: bool,
  /// The kind (`gate` or `approval`) and message of a gate whose policy was asked.
  pub(super) gate_ask: Option<(String, Option<String>)>,
  /// In the ready queue.
  pub(super) in_ready: bool,
  /// In the runnable queue.
  pub(super) in_runnable: bool,
  /// A recovery strategy settled it and stopped the run (`abort` or `compensate`).
  pub(super) recovery_halts: Option<bool>,
  /// Has a final status.
  pub(super) settled: bool,
  /// The stage and item this unit runs, for an item of a fanned-out stage.
  pub(super) unit: Option<fanout::UnitOf>,
  /// A fanned-out stage's items, once expanded.
  pub(super) fan: Option<Box<fanout::Fan>>,
  /// An item that has been let start (it counts against its stage's `max_parallel`).
  pub(super) admitted: bool,
}

/// The deterministic core of one run. See the module docs of [`crate::runtime`].
pub struct Core {
  pub(super) workflow: Arc<Workflow>,
  pub(super) options: CoreOptions,
  pub(super) state: state::RunState,
  pub(super) slots: Vec<Slot>,
  pub(super) running: Vec<Option<Running>>,
  /// Dependencies settled; condition not evaluated yet. Ordered by (level, file order).
  pub(super) ready: BinaryHeap<Reverse<(usize, usize)>>,
  /// Condition passed; waiting for a free slot.
  pub(super) runnable: BinaryHeap<Reverse<(usize, usize)>>,
  /// Waiting out a retry delay: (due, stage).
  pub(super) delayed: BinaryHeap<Reverse<(Millis, usize)>>,
  /// Gates and approvals waiting for a decision, with their deadlines.
  pub(super) waiting: Vec<usize>,
  pub(super) deadlines: Vec<(Millis, usize)>,
  pub(super) in_flight: usize,
  pub(super) asks: usize,
  pub(super) settled: usize,
  pub(super) completion_order: Vec<usize>,
  pub(super) compensated: HashSet<usize>,
  pub(super) stop: Option<Stop>,
  pub(super) rejected: bool,
  pub(super) paused: bool,
  pub(super) steps: usize,
  pub(super) breakpoints: HashSet<String>,
  pub(super) memory: Memory,
  pub(super) scope: scope::Scope,
  /// When this core began (the run timeout and `duration_ms` count from here).
  pub(super) began: Millis,
  pub(super) deadline: Option<Millis>,
  pub(super) seed: u64,
  pub(super) errors: Vec<RunError>,
  /// Failures with a place in the workflow file, for the command line to point at.
  pub(super) diagnostics: Vec<Diagnostic>,
  /// A recovery strategy or a store failure asked to stop without compensating.
  pub(super) skip_compensation: bool,
  /// Decisions made while the run was not executing, applied when their gates open.
  pub(super) prior_decisions: HashMap<String, PriorDecision>,
  /// Compensations still to run, most recently completed stage first, once finishing.
  pub(super) finishing: Option<outcome::Finishing>,
  pub(super) finished: bool,
  pub(super) commands: VecDeque<Command>,
  /// Fanned-out stages whose items changed: admit more, cancel the rest, or settle the stage.
  pub(super) fan_checks: Vec<usize>,
  pub(super) outbox: Vec<EventRecord>,
  pub(super) now: Millis,
  run_id: Arc<str>,
  /// `YYYY-MM-DDTHH:MM:SS` of the second in `ts_second`, reused while it does not change.
  ts_cache: (u64, String),
}

impl Core {
  /// A core for `workflow`, before any input.
  pub fn new(workflow: Arc<Workflow>, options: CoreOptions) -> Self {
    let n = workflow.stages.len();
    let dag = workflow.dag();
    let slots = (0..n)
      .map(|i| Slot {
        remaining: dag.deps[i].len(),
        ..Slot::default()
      })
      .collect();
    Self {
      state: state::RunState::new(&workflow, &options.run_id),
      scope: scope::Scope::new(&workflow, &options),
      run_id: Arc::from(options.run_id.as_str()),
      slots,
      running: vec![None; n],
      ready: BinaryHeap::new(),
      runnable: BinaryHeap::new(),
      delayed: BinaryHeap::new(),
      waiting: Vec::new(),
      deadlines: Vec::new(),
      in_flight: 0,
      asks: 0,
      settled: 0,
      completion_order: Vec::new(),
      compensated: HashSet::new(),
      stop: None,
      rejected: false,
      paused: options.start_paused,
      steps: 0,
      breakpoints: HashSet::new(),
      memory: Memory::default(),
      began: 0,
      deadline: None,
      seed: 0,
      errors: Vec::new(),
      diagnostics: Vec::new(),
      skip_compensation: false,
      prior_decisions: HashMap::new(),
      finishing: None,
      finished: false,
      commands: VecDeque::new(),
      fan_checks: Vec::new(),
      outbox: Vec::new(),
      now: 0,
      ts_cache: (u64::MAX, String::new()),
      workflow,
      options,
    }
  }

  /// Handles one input that happened at `now`: timers due by then fire first, then the input,
  /// then everything that can move forward does. Read the results with
  /// [`Core::take_events`] and [`Core::next_command`].
  pub fn handle(&mut self, now: Millis, input: Input) {
    // Time never goes backwards for the core, whatever the driver's clock does.
    self.now = self.now.max(now);
    if self.finished {
      return;
    }
    // Once the run is finishing (compensating, then the final event), nothing but the
    // compensations moves it: late results, decisions and timers no longer count.
    if self.finishing.is_some() {
      match input {
        Input::Compensated { stage, result } => self.on_compensated(stage, result),
        Input::Log(line) if line.compensation => self.on_log(line),
        _ => {}
      }
      return;
    }
    match input {
      Input::Start { seed } => self.start(seed),
      Input::Resume(resume) => self.resume(resume),
      Input::Finished {
        stage,
        attempt,
        result,
      } => self.on_finished(stage, attempt, result),
      Input::Log(line) => self.on_log(line),
      Input::Tick => {}
      Input::Steer(steer) => self.steer(steer),
      Input::Policy {
        stage,
        policy,
        result,
      } => self.on_policy(stage, &policy, result),
      Input::Recovery {
        stage,
        attempt,
        strategy,
        result,
      } => self.on_recovery(stage, attempt, &strategy, result),
      Input::Compensated { stage, result } => self.on_compensated(stage, result),
      Input::StoreFailed => {
        if self.stop.is_none() {
          self.fail_run(None, RunError::StoreFailed);
          self.skip_compensation = true;
          self.begin_stop(Stop::Halt);
        }
      }
      Input::Suspend => self.begin_finish(),
    }
    if self.finishing.is_some() {
      return;
    }
    self.fire_timers();
    self.schedule();
    if self.finishing.is_none() && self.settled == self.slots.len() && self.fan_checks.is_empty() {
      self.begin_finish();
    }
  }

  /// Events emitted since the last call, masked, in order.
  pub fn take_events(&mut self) -> Vec<EventRecord> {
    std::mem::take(&mut self.outbox)
  }

  /// Events emitted since the last call, masked, in order, keeping the buffer for the next.
  pub fn drain_events(&mut self) -> std::vec::Drain<'_, EventRecord> {
    self.outbox.drain(..)
  }

  /// How many events are waiting in [`Core::take_events`].
  pub fn events_waiting(&self) -> usize {
    self.outbox.len()
  }

  /// The next thing the driver must do, oldest first.
  pub fn next_command(&mut self) -> Option<Command> {
    self.commands.pop_front()
  }

  /// When the earliest timer (a retry, a gate deadline, the run timeout) is due.
  pub fn next_timer(&self) -> Option<Millis> {
    // A finishing run only waits for its compensations.
    if self.finishing.is_some() {
      return None;
    }
    let retry = self.delayed.peek().map(|Reverse((due, _))| *due);
    let gate = self.deadlines.iter().map(|(d, _)| *d).min();
    [retry, gate, self.deadline].into_iter().flatten().min()
  }

  /// The run ended: `run_completed` was emitted.
  pub fn is_finished(&self) -> bool {
    self.finished
  }

  /// Whether the run should suspend now: nothing is in flight or due, gates wait (or the run is
  /// paused with nobody left to resume it), and nobody can decide them. `decider` says someone
  /// watches the gates (a prompt, `--wait`); `control_open` that steering can still arrive. A
  /// gate's timeout alone does not keep a run waiting: its deadline is recorded and applied by
  /// whoever continues the run.
  pub fn should_suspend(&self, decider: bool, control_open: bool) -> bool {
    if self.finishing.is_some()
      || self.in_flight > 0
      || self.asks > 0
      || !self.delayed.is_empty()
      || !self.commands.is_empty()
      // A deadline already passed (a gate reopened by a resume after it) is applied first.
      || self.next_timer().is_some_and(|due| due <= self.now)
    {
      return false;
    }
    let stuck = self.runnable.is_empty() || self.paused;
    let gates = !self.waiting.is_empty();
    stuck && ((gates && !decider && !self.paused) || (self.paused && !control_open && !gates))
  }

  /// The folded state: what every sink has been told.
  pub fn state(&self) -> &state::RunState {
    &self.state
  }

  /// Where the run stands.
  pub fn snapshot(&self) -> Snapshot {
    let names = |list: &mut dyn Iterator<Item = usize>| -> Vec<String> {
      list.map(|i| self.unit_name(i)).collect()
    };
    Snapshot {
      paused: self.paused,
      running: names(&mut (0..self.running.len()).filter(|&i| self.running[i].is_some())),
      waiting: names(&mut self.waiting.iter().copied()),
      runnable: names(&mut self.runnable.iter().map(|Reverse((_, i))| *i)),
      delayed: names(&mut self.delayed.iter().map(|Reverse((_, i))| *i)),
      settled: self.settled,
    }
  }

  /// The ids of the stages waiting for a decision.
  fn waiting_ids(&self) -> Vec<String> {
    self
      .waiting
      .iter()
      .map(|&i| self.workflow.stages[i].id.clone())
      .collect()
  }

  /// The deadlines of the waiting gates that have a timeout, by stage id.
  fn gate_deadlines(&self) -> HashMap<String, Millis> {
    self
      .deadlines
      .iter()
      .map(|&(at, i)| (self.workflow.stages[i].id.clone(), at))
      .collect()
  }

  /// How the run ended (or where it stands, if it has not).
  pub fn outcome(&self) -> RunOutcome {
    RunOutcome {
      waiting: self.waiting_ids(),
      deadlines: self.gate_deadlines(),
      rejected: self.rejected,
      state: self.state.clone(),
      diagnostics: self.diagnostics.clone(),
    }
  }

  /// Consumes the core into its outcome, without copying the state.
  pub fn into_outcome(self) -> RunOutcome {
    RunOutcome {
      waiting: self.waiting_ids(),
      deadlines: self.gate_deadlines(),
      rejected: self.rejected,
      state: self.state,
      diagnostics: self.diagnostics,
    }
  }

  /// Records a failure of the run itself (the run fails with the first one).
  pub(super) fn fail_run(&mut self, stage: Option<usize>, error: RunError) {
    self.note(stage, &error);
    self.errors.push(error);
  }

  /// Keeps a failure's place in the workflow file, when it has one.
  pub(super) fn note(&mut self, stage: Option<usize>, error: &RunError) {
    let stage = stage.map(|i| self.workflow.stages[i].id.as_str());
    if let Some(diagnostic) = error.diagnostic(stage, &self.workflow.source) {
      self.diagnostics.push(diagnostic);
    }
  }

  /// Begins a fresh run.
  fn start(&mut self, seed: u64) {
    self.began = self.now;
    self.seed = seed;
    self.deadline = self.workflow.config.timeout.map(|t| self.now + millis(t));
    let started_at = self.rfc3339(self.now);
    self.scope.set_run(&self.options.run_id, &started_at, 1);
    self.resolve_env();
    self.emit(Event::RunStarted {
      workflow: self.workflow.name.clone(),
      params: serde_json::Value::Object(self.options.params.clone().into_iter().collect()),
      max_parallel: self.options.max_parallel,
      stages: self.workflow.stages.len(),
      seed,
    });
    for i in 0..self.slots.len() {
      if self.slots[i].remaining == 0 {
        self.push_ready(i);
      }
    }
  }

  /// Emits an event about the run or a whole stage: the folded state gets it masked, the
  /// core's own bookkeeping gets the real values, sinks get the masked record.
  pub(super) fn emit(&mut self, event: Event) {
    let index = event.stage().and_then(|s| self.state.position(s));
    self.record(event, None, index, index);
  }

  /// Emits an event about unit `u`: a stage, or one item of a fanned-out stage (tagged with its
  /// `item` and `key`).
  pub(super) fn emit_at(&mut self, u: usize, event: Event) {
    match self.slots[u].unit {
      None => self.record(event, None, Some(u), Some(u)),
      Some(of) => {
        let key = self.slots[of.stage]
          .fan
          .as_ref()
          .and_then(|f| f.keys.get(of.item as usize).cloned());
        self.record(event, Some((of.item, key)), Some(of.stage), Some(u));
      }
    }
  }

  fn record(
    &mut self,
    event: Event,
    item: Option<(u32, Option<Arc<str>>)>,
    stage: Option<usize>,
    unit: Option<usize>,
  ) {
    let ts = self.rfc3339(self.now);
    let (item, key) = item.map_or((None, None), |(i, k)| (Some(i), k));
    let record = EventRecord {
      ts,
      run: Arc::clone(&self.run_id),
      item,
      key,
      event,
    };
    if self.options.masker.is_empty() {
      self.state.apply_at(&record, stage);
      self.apply_at(&record, unit);
      self.outbox.push(record);
    } else {
      let mut masked = record.clone();
      self.options.masker.mask_event(&mut masked.event);
      self.state.apply_at(&masked, stage);
      self.apply_at(&record, unit);
      self.outbox.push(masked);
    }
  }

  /// RFC 3339 for `ms`, reusing the formatted second.
  pub(super) fn rfc3339(&mut self, ms: Millis) -> String {
    let second = ms / 1_000;
    if self.ts_cache.0 != second {
      let full = event::rfc3339_ms(ms);
      self.ts_cache = (second, full[..19].to_string());
    }
    format!("{}.{:03}Z", self.ts_cache.1, ms % 1_000)
  }

  /// The id of unit `i`'s stage.
  pub(super) fn id(&self, i: usize) -> String {
    self.workflow.stages[self.stage_of(i)].id.clone()
  }

  pub(super) fn status(&self, i: usize) -> StageStatus {
    self
      .stage_state(i)
      .map_or(StageStatus::Pending, |s| s.status)
  }

  /// What the folded state knows of unit `i`: its stage's, or its item's.
  pub(super) fn stage_state(&self, i: usize) -> Option<&state::StageState> {
    match self.slots.get(i).and_then(|s| s.unit) {
      None => self.state.stages.get_index(i).map(|(_, s)| s),
      Some(of) => self
        .state
        .stages
        .get_index(of.stage)
        .and_then(|(_, s)| s.items.get(of.item as usize))
        .map(|item| &item.state),
    }
  }

  pub(super) fn level(&self, i: usize) -> usize {
    self.workflow.dag().level[self.stage_of(i)]
  }
}

/// Milliseconds of a duration, saturating.
pub(super) fn millis(d: Duration) -> u64 {
  u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
