//! The ready queue and the parallel slots: which stage is looked at next (level, then file
//! order), when a runnable stage gets a slot, pausing, stepping and breakpoints, and timers.
use super::machine::{Core, Stop};
use super::*;
use crate::{
  event::{Event, StageStatus},
  workflow::StageKind,
};
use std::cmp::Reverse;

impl Core {
  /// Queues stage `i` to have its condition evaluated.
  pub(super) fn push_ready(&mut self, i: usize) {
    if !std::mem::replace(&mut self.slots[i].in_ready, true) {
      self.ready.push(Reverse((self.level(i), i)));
    }
  }

  /// Stage `i` may run: a fanned-out stage expands into its items, any other waits for a slot.
  pub(super) fn admit(&mut self, i: usize) {
    if self.workflow.stages[i].fan_out.is_some() {
      self.fan_out(i);
    } else {
      self.push_runnable(i);
    }
  }

  /// Queues stage `i` for a free slot.
  pub(super) fn push_runnable(&mut self, i: usize) {
    if !std::mem::replace(&mut self.slots[i].in_runnable, true) {
      self.runnable.push(Reverse((self.level(i), i)));
    }
  }

  /// Moves work forward: evaluates ready stages, then starts runnable ones while slots are free.
  pub(super) fn schedule(&mut self) {
    loop {
      while let Some(Reverse((_, i))) = self.ready.pop() {
        self.slots[i].in_ready = false;
        self.evaluate(i);
      }
      self.check_fans();
      self.start_runnable();
      if self.ready.is_empty() && self.fan_checks.is_empty() {
        break;
      }
    }
  }

  /// Starts runnable stages while slots are free and the run is not paused.
  fn start_runnable(&mut self) {
    while let Some(&Reverse((_, i))) = self.runnable.peek() {
      // An item cancelled while it queued (fail-fast) has nothing left to start.
      if self.slots[i].settled {
        self.runnable.pop();
        self.slots[i].in_runnable = false;
        continue;
      }
      if let Some(stop) = self.stop
        && !self.runs_while_stopping(i, stop)
      {
        self.runnable.pop();
        self.slots[i].in_runnable = false;
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
        // A fanned-out stage breaks once, before its first item.
        let b = self.stage_of(i);
        let stage = &self.workflow.stages[b];
        if self.breakpoints.contains(&stage.id)
          && !self.slots[b].passed_break
          && self.slots[b].attempts == 0
          && self.slots[i].attempts == 0
        {
          self.slots[b].passed_break = true;
          if !self.paused || self.steps == 0 {
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
      self.slots[i].in_runnable = false;
      self.start_or_wait(i);
    }
  }

  /// Whether stage `i` still runs after the run stopped: clean-up stages asking for it.
  pub(super) fn runs_while_stopping(&self, i: usize, stop: Stop) -> bool {
    let Some(condition) = &self.workflow.stages[self.stage_of(i)].condition else {
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
      .any(|(e, _)| scope::calls_any(e, wanted))
  }

  /// Computes stage `i`'s upstream flags from its direct dependencies, which carry their own
  /// ancestors' flags.
  pub(super) fn upstream(&mut self, i: usize) {
    let (mut failed, mut cancelled) = (false, false);
    for &d in &self.workflow.dag().deps[i] {
      let slot = &self.slots[d];
      let status = self.status(d);
      failed |= slot.upstream_failed
        || (matches!(status, StageStatus::Failed | StageStatus::TimedOut) && !slot.ignored);
      cancelled |= slot.upstream_cancelled || status == StageStatus::Cancelled;
    }
    self.slots[i].upstream_failed = failed;
    self.slots[i].upstream_cancelled = cancelled;
  }

  /// Dependencies are settled: skip, cancel, queue for a slot, or wait at a gate.
  fn evaluate(&mut self, i: usize) {
    let slot = &self.slots[i];
    // Anything already under way (restored by a resume, or queued twice) is left alone.
    if slot.settled
      || slot.in_runnable
      || slot.asking
      || slot.retry_due.is_some()
      || slot.after.is_some()
      || self.running[i].is_some()
      || self.waiting.contains(&i)
      || slot.fan.is_some()
      || slot.unit.is_some()
    {
      return;
    }
    self.upstream(i);
    if let Some(stop) = self.stop
      && !self.runs_while_stopping(i, stop)
    {
      self.cancel_pending(i, stop);
      return;
    }
    // The stage's `env` is resolved when something reads it: its `if`, or else its start (a
    // fanned-out stage's, per item, as it may read `item`).
    if self.workflow.stages[i].fan_out.is_none()
      && let Err(error) = self.stage_env(i)
      && (self.workflow.stages[self.stage_of(i)].condition.is_some() || self.flags(i).success)
    {
      self.fail_stage(i, &error, "inputs");
      return;
    }
    let flags = self.flags(i);
    let stage = &self.workflow.stages[self.stage_of(i)];
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
        let Some(condition) = &self.workflow.stages[self.stage_of(i)].condition else {
          return;
        };
        let failure = ExprFailure::new(condition, error, &self.workflow.source);
        self.fail_stage(i, &RunError::Condition(failure), "condition");
      }
      Ok(false) => {
        let reason = if flags.success {
          "condition"
        } else {
          "dependency"
        };
        let id = self.id(i);
        self.emit_at(
          i,
          Event::StageSkipped {
            stage: id,
            reason: reason.into(),
          },
        );
      }
      Ok(true) if self.reuse(i) => {}
      Ok(true) => match &self.workflow.stages[self.stage_of(i)].kind {
        StageKind::Gate(_) => self.open_gate(i, "gate"),
        StageKind::Skill(_) if self.needs_approval(i) => self.open_gate(i, "approval"),
        StageKind::Skill(_) => self.admit(i),
      },
    }
  }

  /// Fires every timer due by now: the run timeout, retry delays, gate deadlines.
  pub(super) fn fire_timers(&mut self) {
    let now = self.now;
    if self.deadline.is_some_and(|d| d <= now) {
      self.deadline = None;
      let limit = self.workflow.config.timeout.unwrap_or_default();
      self.fail_run(None, RunError::RunTimedOut { limit });
      self.begin_stop(Stop::Timeout);
      return;
    }
    while let Some(&Reverse((due, i))) = self.delayed.peek() {
      if due > now {
        break;
      }
      self.delayed.pop();
      if self.slots[i].retry_due == Some(due) && !self.slots[i].settled {
        self.slots[i].retry_due = None;
        self.push_runnable(i);
      }
    }
    let mut expired: Vec<usize> = self
      .deadlines
      .iter()
      .filter(|(d, _)| *d <= now)
      .map(|(_, i)| *i)
      .collect();
    expired.sort_unstable();
    for i in expired {
      let on_timeout = self.workflow.stages[self.stage_of(i)]
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

  /// Applies one steering command.
  pub(super) fn steer(&mut self, steer: Steer) {
    match steer {
      Steer::Pause => {
        if !self.paused && self.stop.is_none() {
          self.emit(Event::RunPaused {
            reason: "pause".into(),
            stage: None,
          });
        }
      }
      Steer::Resume => {
        if self.paused {
          self.emit(Event::RunResumed {});
        }
      }
      Steer::Step => {
        if self.paused {
          self.steps += 1;
        }
      }
      Steer::Cancel => self.begin_stop(Stop::Cancel),
      Steer::Break(id) => {
        self.breakpoints.insert(id);
      }
      Steer::Unbreak(id) => {
        self.breakpoints.remove(&id);
      }
      Steer::Decide {
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
}
