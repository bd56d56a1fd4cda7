//! The one fold: how each event changes the core's bookkeeping. Live decisions emit events and
//! let this fold apply them; resuming a run applies the recorded events the same way, then
//! [`Core::recover`] takes again the decisions that were cut short.
use super::machine::{After, Core, Phase, Running, Stop};
use super::*;
use crate::{
  event::{Event, EventRecord},
  workflow::RetryOn,
};
use std::cmp::Reverse;

impl Core {
  /// Folds one event (with its real, unmasked values) into the bookkeeping, at `self.now`.
  pub(super) fn apply(&mut self, record: &EventRecord) {
    let mut index = record.event.stage().and_then(|s| self.state.position(s));
    if let (Some(item), Some(stage)) = (record.item, index) {
      index = self.unit_of(stage, item);
      if index.is_none() {
        return;
      }
    }
    self.apply_at(record, index);
  }

  /// [`Core::apply`] for an event whose stage sits at `index`.
  pub(super) fn apply_at(&mut self, record: &EventRecord, index: Option<usize>) {
    let now = self.now;
    let event = &record.event;
    match event {
      Event::RunStarted { seed, .. } => self.seed = *seed,
      Event::RunPaused { stage, .. } => {
        self.paused = true;
        if let Some(i) = stage.as_deref().and_then(|s| self.state.position(s)) {
          self.slots[i].passed_break = true;
        }
      }
      Event::RunResumed {} => {
        self.paused = false;
        self.steps = 0;
      }
      Event::RunCompleted { .. } => self.finished = true,
      _ => {}
    }
    let Some(i) = index else {
      return;
    };
    if let Some(of) = self.slots[i].unit {
      self.admit_folded(i);
      if let Event::StageStarted { .. } = event {
        let stage = &mut self.slots[of.stage];
        stage.first_started.get_or_insert(now);
        stage.attempts = stage.attempts.saturating_add(1);
      }
    }
    match event {
      Event::StageStarted { attempt, uses, .. } => {
        self.infer_phase(i, uses);
        let slot = &mut self.slots[i];
        slot.attempts = *attempt;
        if slot.phase == Phase::Primary {
          slot.tries += 1;
        }
        slot.first_started.get_or_insert(now);
        slot.after = None;
        slot.retry_due = None;
        if self.running[i].is_none() {
          self.in_flight += 1;
        }
        self.running[i] = Some(Running {
          attempt: *attempt,
          uses: uses.clone(),
          started: now,
        });
      }
      Event::StageRetrying { delay_ms, .. } => {
        let due = now.saturating_add(*delay_ms);
        let slot = &mut self.slots[i];
        slot.retry_due = Some(due);
        slot.after = None;
        self.delayed.push(Reverse((due, i)));
      }
      Event::StageCompleted { outputs, .. } => {
        self.end_attempt(i);
        self.slots[i].outputs = Some(Arc::clone(outputs));
        self.slots[i].after = None;
        // A fanned-out stage's items are compensated one by one, not the stage.
        if self.slots[i].fan.is_none() {
          self.completion_order.push(i);
        }
        self.settle(i);
      }
      Event::StageFailed {
        attempt: Some(_), ..
      } => {
        self.end_attempt(i);
        self.slots[i].after = Some(After::Failed(RetryOn::Error));
      }
      Event::StageFailed {
        attempt: None,
        reason,
        ..
      } => {
        self.slots[i].after = Some(After::GaveUp);
        self.rejected |= reason == "rejected";
      }
      Event::StageTimedOut { .. } => {
        self.end_attempt(i);
        self.slots[i].after = Some(After::Failed(RetryOn::Timeout));
      }
      Event::StageSkipped { .. } => {
        self.slots[i].after = None;
        self.settle(i);
      }
      Event::StageCancelled { .. } => {
        self.end_attempt(i);
        self.slots[i].after = None;
        self.slots[i].retry_due = None;
        self.waiting.retain(|&w| w != i);
        self.deadlines.retain(|&(_, w)| w != i);
        self.settle(i);
      }
      Event::GateWaiting { timeout_ms, .. } => {
        let opened = *self.slots[i].opened.get_or_insert(now);
        if !self.waiting.contains(&i) {
          self.waiting.push(i);
        }
        self.deadlines.retain(|&(_, w)| w != i);
        if let Some(timeout) = timeout_ms {
          self.deadlines.push((opened.saturating_add(*timeout), i));
        }
      }
      Event::GateDecided { decision, .. } => {
        self.waiting.retain(|&w| w != i);
        self.deadlines.retain(|&(_, w)| w != i);
        match decision {
          GateDecision::Approve => self.slots[i].approved = true,
          GateDecision::Reject => self.rejected = true,
        }
      }
      Event::RecoveryDecided {
        action, uses, with, ..
      } => self.fold_recovery(i, action, uses.as_deref(), with.as_ref()),
      Event::CompensationCompleted { .. } | Event::CompensationFailed { .. } => {
        self.compensated.insert(i);
      }
      _ => {}
    }
  }

  /// Which skill an attempt that started with `uses` ran: the current phase when it matches,
  /// else the primary skill, a fallback, or a skill a recovery strategy chose.
  fn infer_phase(&mut self, i: usize, uses: &str) {
    let stage = &self.workflow.stages[self.stage_of(i)];
    let primary = stage.skill().map(|c| c.uses.as_str());
    let slot = &mut self.slots[i];
    let current = match slot.phase {
      Phase::Primary => primary,
      Phase::Fallback(f) => stage.fallback.get(f).map(String::as_str),
      Phase::Chosen => slot.chosen.as_deref(),
    };
    if current == Some(uses) {
      return;
    }
    slot.phase = if primary == Some(uses) {
      Phase::Primary
    } else if let Some(f) = stage.fallback.iter().position(|f| f == uses) {
      Phase::Fallback(f)
    } else {
      slot.chosen = Some(uses.to_string());
      Phase::Chosen
    };
  }

  /// The attempt in flight for stage `i`, if any, ended.
  pub(super) fn end_attempt(&mut self, i: usize) {
    if self.running[i].take().is_some() {
      self.in_flight -= 1;
    }
  }

  /// Continues from recorded events: the fold already restored every settled stage with its
  /// status and outputs. Attempts cut short start again (their number is used, their try is
  /// not spent), decisions that follow a failed attempt are taken again, retry delays run out
  /// at their recorded due time, and gates open again with their deadline counted from when
  /// they first opened. A cancel or run timeout is not carried over: stages it cancelled stay
  /// cancelled, and the rest go on.
  pub(super) fn recover(&mut self) {
    let n = self.slots.len();
    for i in 0..n {
      if self.running[i].take().is_some() {
        self.in_flight -= 1;
        let slot = &mut self.slots[i];
        if slot.phase == Phase::Primary {
          slot.tries = slot.tries.saturating_sub(1);
        }
      }
    }
    self.ready.clear();
    self.runnable.clear();
    self.waiting.clear();
    self.deadlines.clear();
    self.delayed.clear();
    for i in 0..n {
      let slot = &mut self.slots[i];
      slot.in_ready = false;
      slot.in_runnable = false;
      if let Some(due) = slot.retry_due
        && !slot.settled
      {
        self.delayed.push(Reverse((due, i)));
      }
    }
    // A recovery strategy that aborted or compensated stopped the run; it stays stopped. (A
    // halt under `on_failure` comes back as its failure is decided again below.)
    if let Some(skip) = (0..n).find_map(|i| self.slots[i].recovery_halts) {
      self.skip_compensation |= skip;
      self.begin_stop(Stop::Halt);
    }
    let order = self.workflow.dag().order.clone();
    // Upstream flags first, in dependency order: a stage decided again below reads them.
    for &i in &order {
      if self.slots[i].remaining == 0 {
        self.upstream(i);
      }
    }
    // Items after the stages, in item order: what a failed item left to decide comes first.
    let units = order.iter().copied().chain(self.workflow.stages.len()..n);
    for i in units.collect::<Vec<_>>() {
      if self.slots[i].settled {
        continue;
      }
      match self.slots[i].after {
        Some(After::Failed(kind)) => self.after_failure(i, kind),
        Some(After::GaveUp) => self.final_failure(i),
        None => {}
      }
    }
    // Stages settled by those decisions pass their flags on too.
    for &i in &order {
      if self.slots[i].remaining == 0 {
        self.upstream(i);
      }
    }
    for i in 0..n {
      let slot = &self.slots[i];
      if !slot.settled
        && slot.remaining == 0
        && slot.retry_due.is_none()
        && !slot.in_ready
        && !slot.in_runnable
        && !slot.asking
      {
        match slot.unit {
          None if slot.fan.is_some() => self.fan_checks.push(i),
          None => self.push_ready(i),
          // An item whose attempt was cut short starts again; one never admitted waits for
          // its stage to admit it.
          Some(_) if slot.admitted && slot.after.is_none() => self.push_runnable(i),
          Some(_) => {}
        }
      }
    }
  }

  /// Continues a run from its recorded events.
  pub(super) fn resume(&mut self, resume: Resume) {
    let now = self.now;
    self.began = now;
    self.deadline = self
      .workflow
      .config
      .timeout
      .map(|t| now + machine::millis(t));
    for record in &resume.events {
      // Recorded times place retries and gate deadlines; none may lie in the future.
      self.now = event::parse_rfc3339(&record.ts).map_or(now, |t| t.min(now));
      self.state.apply(record);
      self.apply(record);
    }
    self.now = now;
    self.finished = false;
    let started_at = self.state.started_at.clone().unwrap_or_default();
    self
      .scope
      .set_run(&self.options.run_id, &started_at, resume.attempt.max(1));
    self.resolve_env();
    self.prior_decisions = resume.decisions;
    self.emit(Event::RunResumed {});
    self.paused = self.options.start_paused;
    self.recover();
  }
}
