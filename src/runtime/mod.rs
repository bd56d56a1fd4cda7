//! The runtime: a deterministic core that decides what a run does next ([`Core`]), and the
//! drivers around it that carry those decisions out.
//!
//! The core ([`machine`] and the modules that extend it, one concern each) takes the workflow
//! plus each thing that happens — an attempt finished, time passed, a decision arrived, pause or
//! cancel was asked — as an [`Input`] stamped with the time, and answers with events (the run's
//! record) and [`Command`]s (start this attempt, stop that one, ask this policy, run this
//! compensation). It reads no clock, spawns nothing and touches no store, Lua or terminal, so the
//! same inputs give the same events on every machine; resuming a run is folding its recorded
//! events back into a fresh core ([`fold`]).
//!
//! [`driver`] is the local tokio driver that `swdl run`, `swdl resume` and the REPL use;
//! [`delivery`] makes events durable in the run store and only then shows them to everyone
//! else. The simulation tests (`sim`) drive the same core with a virtual clock and injected
//! faults.
use super::*;
use crate::mask::Masker;
use indexmap::IndexMap;
use std::collections::{HashMap, HashSet};

mod attempt;
mod delivery;
mod driver;
mod error;
mod fanout;
mod fold;
mod gate;
mod machine;
mod outcome;
mod queue;
mod recovery;
mod retry;
mod reuse;
mod scope;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

pub use driver::execute;
pub use error::{ExprFailure, RunError};
pub use fanout::{Item, MAX_CROSS_PRODUCT, expand};
pub use machine::{Command, Core, CoreOptions, Finished, Input, Millis, Steer};

/// Commands that steer a live run: the only way anything outside the runtime changes it.
#[derive(Debug)]
pub enum Control {
  /// Change the run: pause, resume, cancel, step, breakpoints, decisions.
  Steer(Steer),
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
  /// Someone is watching `gate_waiting` events and will send `Control::Decide` (a prompt, or
  /// `--wait` for another process); without it, an undecided gate suspends the run once nothing
  /// else can progress, whether or not it has a timeout.
  pub interactive: bool,
  /// Hides secret values in everything emitted.
  pub masker: Masker,
  /// Approval policies and recovery strategies, when the workflow has hooks.
  pub hooks: Option<Arc<dyn hooks::Hooks>>,
  /// Continue a run from its recorded events instead of starting afresh.
  pub resume: Option<Resume>,
  /// Start paused: nothing starts before `Control::Steer(Steer::Step)` or `Control::Steer(Steer::Resume)` (the REPL).
  pub start_paused: bool,
  /// `swdl retry`: completed stages of an earlier run that need not run again.
  pub reuse: Option<Arc<Reuse>>,
}

impl RunOptions {
  /// What the core needs of these options.
  pub fn core(&self) -> CoreOptions {
    CoreOptions {
      run_id: self.run_id.clone(),
      max_parallel: self.max_parallel.max(1),
      params: self.params.clone(),
      approve: self.approve.clone(),
      reject: self.reject.clone(),
      approve_all: self.approve_all,
      masker: self.masker.clone(),
      hooks: self.hooks.is_some(),
      start_paused: self.start_paused,
      reuse: self.reuse.clone(),
    }
  }
}

/// What `swdl retry` may reuse of the run it retries.
#[derive(Debug, Clone, Default)]
pub struct Reuse {
  /// The retried run's id.
  pub from_run: String,
  /// Stages that completed there and may be reused, by id.
  pub stages: HashMap<String, Reusable>,
  /// The items of fanned-out stages there, by stage id, in item order: each item's key, and
  /// what it completed with when it did.
  pub items: HashMap<String, Vec<(String, Option<Reusable>)>>,
}

/// A stage that completed in the retried run.
#[derive(Debug, Clone)]
pub struct Reusable {
  /// Its definition there, as JSON: reused only when the stage still reads the same.
  pub definition: serde_json::Value,
  /// Its resolved inputs there, secrets masked; reused only when they resolve the same again.
  pub inputs: Option<Arc<serde_json::Value>>,
  /// The skill that produced the outputs.
  pub uses: String,
  /// The outputs it completed with.
  pub outputs: Arc<serde_json::Value>,
  /// Its summary for working memory.
  pub summary: Option<String>,
  /// What its skill produced outside the outputs.
  pub artifacts: Vec<serde_json::Value>,
  /// Its skill's advice for later stages.
  pub hints: Vec<serde_json::Value>,
}

/// What a resumed run continues from (`swdl resume`).
#[derive(Debug, Clone, Default)]
pub struct Resume {
  /// Every event recorded so far, in order.
  pub events: Vec<event::EventRecord>,
  /// Decisions on gates made while the run was suspended (`swdl approve|reject`), by stage.
  pub decisions: HashMap<String, PriorDecision>,
  /// `run.attempt`: one more than the number of times the run was resumed before.
  pub attempt: u32,
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
  /// When each waiting gate with a `timeout` is decided by it (Unix milliseconds).
  pub deadlines: HashMap<String, Millis>,
  /// The runtime's own failures that point into the workflow file (a failing `with`).
  pub diagnostics: Vec<Diagnostic>,
}
