//! A run's state as a fold over its events: what the progress display, `--output json`, the
//! store and the REPL read. Nothing writes it except [`RunState::apply`].
use super::*;
use crate::event::{Event, EventRecord, RunStatus, StageStatus};
use serde::Serialize;
use std::collections::HashMap;

/// Lines of log kept per stage; older ones are dropped (the events file keeps them all).
const LOG_LINES_KEPT: usize = 1_000;

/// Everything known about a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunState {
  /// Run id.
  pub run: String,
  /// Workflow name.
  pub workflow: String,
  /// Current status.
  pub status: RunStatus,
  /// When `run_started` was recorded.
  pub started_at: Option<String>,
  /// When `run_completed` was recorded.
  pub finished_at: Option<String>,
  /// Run wall time, once finished.
  pub duration_ms: Option<u64>,
  /// Resolved parameters (secrets masked).
  pub params: serde_json::Value,
  /// Workflow outputs, once finished.
  pub outputs: serde_json::Value,
  /// Why the run did not complete.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub error: Option<String>,
  /// Model tokens the run's calls used (the `llm` skill, `swdl.llm`), all attempts counted.
  pub tokens: u64,
  /// Stages in file order.
  pub stages: indexmap::IndexMap<String, StageState>,
  #[serde(skip)]
  index: HashMap<String, usize>,
}

/// Everything known about one stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageState {
  /// Current status.
  pub status: StageStatus,
  /// Attempts started (fallbacks included).
  pub attempts: u32,
  /// The skill of the latest attempt.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub uses: Option<String>,
  /// Resolved inputs of the latest attempt.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub inputs: Option<Arc<serde_json::Value>>,
  /// Outputs, once completed.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub outputs: Option<Arc<serde_json::Value>>,
  /// Summary for working memory.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub summary: Option<String>,
  /// What the skill produced outside its outputs.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub artifacts: Vec<serde_json::Value>,
  /// The skill's advice for later stages.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub hints: Vec<serde_json::Value>,
  /// The latest error.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub error: Option<String>,
  /// Model tokens the stage's calls used, all attempts and its compensation counted.
  #[serde(skip_serializing_if = "is_zero")]
  pub tokens: u64,
  /// Why it failed, was skipped or cancelled.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub reason: Option<String>,
  /// When the first attempt (or the gate wait) began.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub started_at: Option<String>,
  /// When it settled.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub finished_at: Option<String>,
  /// Wall time of the latest attempt.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub duration_ms: Option<u64>,
  /// `swdl retry`: the run whose outputs this stage reused instead of running.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub reused_from: Option<String>,
  /// The gate decision, for gates and approvals.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub decision: Option<serde_json::Value>,
  /// When the next attempt is due, while waiting out a retry delay.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub retry_due: Option<String>,
  /// The latest log lines.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub logs: Vec<String>,
  /// A fanned-out stage's items, in item order, as far as their events tell.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub items: Vec<ItemState>,
}

/// One item of a fanned-out stage.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ItemState {
  /// Its index.
  pub index: u32,
  /// Its key.
  pub key: String,
  /// Everything known about it, as for a stage.
  #[serde(flatten)]
  pub state: StageState,
}

impl RunState {
  /// The state before any event: every stage pending.
  pub fn new(workflow: &workflow::Workflow, run: &str) -> Self {
    Self {
      run: run.to_string(),
      workflow: workflow.name.clone(),
      status: RunStatus::Running,
      started_at: None,
      finished_at: None,
      duration_ms: None,
      params: serde_json::Value::Null,
      outputs: serde_json::Value::Null,
      error: None,
      tokens: 0,
      stages: workflow
        .stages
        .iter()
        .map(|s| (s.id.clone(), StageState::default()))
        .collect(),
      index: workflow
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.clone(), i))
        .collect(),
    }
  }

  /// The position of a stage in file order, by id.
  pub fn position(&self, id: &str) -> Option<usize> {
    self.index.get(id).copied()
  }

  /// The state of a stage by id.
  pub fn stage(&self, id: &str) -> Option<&StageState> {
    self
      .index
      .get(id)
      .and_then(|&i| self.stages.get_index(i))
      .map(|(_, s)| s)
  }

  fn at(&mut self, index: Option<usize>) -> Option<&mut StageState> {
    self.stages.get_index_mut(index?).map(|(_, s)| s)
  }

  /// Folds one event into the state, copying only the values it keeps.
  pub fn apply(&mut self, record: &EventRecord) {
    let index = record.event.stage().and_then(|s| self.position(s));
    self.apply_at(record, index);
  }

  /// Folds one event whose stage sits at `index` (as [`RunState::position`] finds it).
  pub fn apply_at(&mut self, record: &EventRecord, index: Option<usize>) {
    let Some(item) = record.item else {
      self.apply_to(record, index);
      return;
    };
    // An item's event changes the item; its stage only shows that items are under way.
    if let Event::Log { tokens, .. } = record.event {
      self.tokens = self.tokens.saturating_add(tokens.unwrap_or(0));
    }
    let Some(stage) = self.at(index) else { return };
    match record.event {
      Event::StageStarted { .. } => {
        stage.status = StageStatus::Running;
        stage.attempts = stage.attempts.saturating_add(1);
        stage.started_at.get_or_insert_with(|| record.ts.clone());
      }
      Event::Log { tokens, .. } => stage.tokens = stage.tokens.saturating_add(tokens.unwrap_or(0)),
      _ => {}
    }
    let k = item as usize;
    // Items are announced in order, so this grows by one at a time; a gap (a damaged record)
    // fills with pending items rather than misplacing the event.
    if k >= stage.items.len() && k < workflow::MAX_ITEMS {
      let from = stage.items.len();
      stage.items.extend((from..=k).map(|i| ItemState {
        index: u32::try_from(i).unwrap_or(u32::MAX),
        ..ItemState::default()
      }));
    }
    let Some(entry) = stage.items.get_mut(k) else {
      return;
    };
    if let Some(key) = &record.key
      && entry.key != **key
    {
      entry.key = key.to_string();
    }
    Self::apply_stage(&mut entry.state, record);
  }

  fn apply_to(&mut self, record: &EventRecord, index: Option<usize>) {
    let ts = &record.ts;
    match &record.event {
      Event::RunStarted { params, .. } => {
        self.status = RunStatus::Running;
        self.started_at = Some(ts.clone());
        self.params = params.clone();
      }
      Event::RunPaused { .. } => self.status = RunStatus::Paused,
      Event::RunResumed {} => self.status = RunStatus::Running,
      Event::Log { tokens, .. } => {
        self.tokens = self.tokens.saturating_add(tokens.unwrap_or(0));
      }
      Event::RunCompleted {
        status,
        outputs,
        error,
        duration_ms,
        ..
      } => {
        self.status = *status;
        self.outputs = outputs.clone();
        self.error.clone_from(error);
        self.finished_at = Some(ts.clone());
        self.duration_ms = Some(*duration_ms);
      }
      _ => {}
    }
    if let Some(s) = self.at(index) {
      Self::apply_stage(s, record);
    }
  }

  /// The part of an event that changes one stage (or one item).
  fn apply_stage(s: &mut StageState, record: &EventRecord) {
    let ts = &record.ts;
    match &record.event {
      Event::StageStarted {
        stage: _,
        attempt,
        uses,
        inputs,
      } => {
        s.status = StageStatus::Running;
        s.attempts = *attempt;
        if s.uses.as_deref() != Some(uses) {
          s.uses = Some(uses.clone());
        }
        s.inputs = Some(Arc::clone(inputs));
        s.retry_due = None;
        s.started_at.get_or_insert_with(|| ts.clone());
      }
      Event::StageRetrying { due, error, .. } => {
        s.status = StageStatus::Pending;
        s.retry_due = Some(due.clone());
        s.error = Some(error.clone());
      }
      Event::StageCompleted {
        stage: _,
        uses,
        outputs,
        summary,
        artifacts,
        hints,
        duration_ms,
        reused_from,
        inputs,
        ..
      } => {
        s.artifacts.clone_from(artifacts);
        s.hints.clone_from(hints);
        s.uses = Some(uses.clone());
        s.reused_from.clone_from(reused_from);
        if inputs.is_some() {
          s.inputs.clone_from(inputs);
        }
        s.status = StageStatus::Completed;
        s.outputs = Some(Arc::clone(outputs));
        s.summary.clone_from(summary);
        s.error = None;
        s.reason = None;
        s.duration_ms = Some(*duration_ms);
        s.finished_at = Some(ts.clone());
      }
      Event::StageFailed {
        stage: _,
        error,
        reason,
        duration_ms,
        ..
      } => {
        s.status = StageStatus::Failed;
        s.error = Some(error.clone());
        s.reason = Some(reason.clone());
        s.duration_ms = Some(*duration_ms);
        s.finished_at = Some(ts.clone());
      }
      Event::StageTimedOut {
        stage: _,
        timeout_ms,
        duration_ms,
        ..
      } => {
        s.status = StageStatus::TimedOut;
        s.error = Some(format!(
          "timed out after {}",
          duration::format_duration(std::time::Duration::from_millis(*timeout_ms))
        ));
        s.reason = Some("timeout".into());
        s.duration_ms = Some(*duration_ms);
        s.finished_at = Some(ts.clone());
      }
      Event::StageSkipped { reason, .. } => {
        s.status = StageStatus::Skipped;
        s.reason = Some(reason.clone());
        s.finished_at = Some(ts.clone());
      }
      Event::StageCancelled { reason, .. } => {
        s.status = StageStatus::Cancelled;
        s.reason = Some(reason.clone());
        s.retry_due = None;
        s.finished_at = Some(ts.clone());
      }
      Event::GateWaiting { .. } => {
        s.status = StageStatus::Waiting;
        s.started_at.get_or_insert_with(|| ts.clone());
      }
      Event::GateDecided {
        stage: _,
        decision,
        decided_by,
        reason,
        inputs,
      } => {
        s.decision = Some(serde_json::json!({
          "decision": decision,
          "decided_by": decided_by,
          "reason": reason,
          "inputs": inputs,
        }));
      }
      Event::Log {
        message, tokens, ..
      } => {
        let tokens = tokens.unwrap_or(0);
        {
          s.tokens = s.tokens.saturating_add(tokens);
          if s.logs.len() == LOG_LINES_KEPT {
            s.logs.remove(0);
          }
          s.logs.push(message.clone());
        }
      }
      Event::RunStarted { .. }
      | Event::RunPaused { .. }
      | Event::RunResumed {}
      | Event::RunCompleted { .. }
      | Event::RecoveryDecided { .. }
      | Event::CompensationStarted { .. }
      | Event::CompensationCompleted { .. }
      | Event::CompensationFailed { .. } => {}
    }
  }

  /// Counts of stages by status, for summaries.
  pub fn counts(&self) -> HashMap<StageStatus, usize> {
    let mut counts = HashMap::new();
    for s in self.stages.values() {
      *counts.entry(s.status).or_insert(0) += 1;
    }
    counts
  }
}

#[expect(
  clippy::trivially_copy_pass_by_ref,
  reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(n: &u64) -> bool {
  *n == 0
}
