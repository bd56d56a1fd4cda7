//! Settling stages, stopping the run (halt, cancel, run timeout), compensation in reverse
//! completion order, and the final `run_completed` with the run's status and outputs.
use super::machine::{Command, Core, Finished, Stop};
use super::*;
use crate::{
  event::{Event, RunStatus, StageStatus},
  executor::{MemoryEntry, StageResult},
  expr::{StatusFlags, Value},
};
use std::cmp::Reverse;

/// Where the end of the run stands: compensations left, then the final event.
#[derive(Debug)]
pub(super) struct Finishing {
  /// The run suspended (some stage never settled).
  suspended: bool,
  /// Stages still to compensate, next first.
  queue: Vec<usize>,
  /// The compensation running now, and when it started.
  current: Option<(usize, machine::Millis)>,
}

impl Core {
  /// Stage `i` reached its final status: record it and release its dependents. (An item
  /// reached its final status: its stage looks at what follows.)
  pub(super) fn settle(&mut self, i: usize) {
    if self.slots[i].settled {
      return;
    }
    self.slots[i].settled = true;
    self.settled += 1;
    let status = self.status(i);
    if self.slots[i].unit.is_some() {
      let slot = &mut self.slots[i];
      let outputs = slot.outputs.as_deref().map_or(Value::Null, Value::from);
      slot.value = scope::object([
        ("outputs", outputs),
        ("status", Value::from(status.as_str())),
        ("attempts", Value::Number(f64::from(slot.attempts))),
      ]);
      self.item_settled(i);
      return;
    }
    let items = if self.slots[i].fan.is_some() {
      // The event carried these too; computed again so a resume needs nothing more.
      self.slots[i].outputs = Some(Arc::new(self.fan_outputs(i)));
      Some(self.fan_items(i))
    } else {
      None
    };
    let now = self.now;
    let slot = &self.slots[i];
    let outputs = slot.outputs.as_deref().map_or(Value::Null, Value::from);
    let mut value = vec![
      ("outputs", outputs),
      ("status", Value::from(status.as_str())),
      ("attempts", Value::Number(f64::from(slot.attempts))),
    ];
    if let Some(items) = items {
      value.push(("items", items));
    }
    let value = Value::Object(Arc::new(
      value.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    ));
    let state = self.stage_state(i);
    let duration_ms = slot.first_started.map_or_else(
      || state.and_then(|s| s.duration_ms).unwrap_or(0),
      |s| now.saturating_sub(s),
    );
    let entry = MemoryEntry {
      stage: self.workflow.stages[i].id.clone(),
      status,
      uses: state.and_then(|s| s.uses.clone()),
      summary: state.and_then(|s| s.summary.clone()),
      artifacts: state.map(|s| s.artifacts.clone()).unwrap_or_default(),
      hints: state.map(|s| s.hints.clone()).unwrap_or_default(),
      outputs: slot
        .outputs
        .clone()
        .unwrap_or_else(|| Arc::new(serde_json::Value::Null)),
      duration_ms,
    };
    self.slots[i].value = value;
    self.memory.push(entry);
    let workflow = Arc::clone(&self.workflow);
    for &d in &workflow.dag().dependents[i] {
      let slot = &mut self.slots[d];
      slot.remaining = slot.remaining.saturating_sub(1);
      // A dependent already settled (restored by a resume) is not evaluated again.
      if slot.remaining == 0 && !slot.settled {
        self.push_ready(d);
      }
    }
  }

  /// A stage that never started ends cancelled because the run stopped.
  pub(super) fn cancel_pending(&mut self, i: usize, stop: Stop) {
    let id = self.id(i);
    self.emit_at(
      i,
      Event::StageCancelled {
        stage: id,
        attempt: None,
        reason: stop.reason().into(),
      },
    );
  }

  /// Stops starting ordinary stages and stops what is in flight, retrying or waiting.
  pub(super) fn begin_stop(&mut self, stop: Stop) {
    if self.stop.is_some() {
      return;
    }
    self.stop = Some(stop);
    self.paused = false;
    // Every attempt in flight stops now; announced ones that the driver has not started yet
    // never start.
    let mut unstarted = Vec::new();
    self.commands.retain(|command| match command {
      Command::Start { stage, attempt, .. } => {
        unstarted.push((*stage, *attempt));
        false
      }
      _ => true,
    });
    for i in 0..self.running.len() {
      let Some(running) = self.running[i].clone() else {
        continue;
      };
      if !unstarted.contains(&(i, running.attempt)) {
        self.commands.push_back(Command::Cancel {
          stage: i,
          attempt: running.attempt,
        });
      }
      let id = self.id(i);
      if stop == Stop::Timeout {
        let duration_ms = self.now.saturating_sub(running.started);
        self.emit_at(
          i,
          Event::StageTimedOut {
            stage: id,
            attempt: running.attempt,
            uses: running.uses,
            timeout_ms: self.workflow.config.timeout.map_or(0, machine::millis),
            duration_ms,
          },
        );
        self.settle(i);
      } else {
        self.emit_at(
          i,
          Event::StageCancelled {
            stage: id,
            attempt: Some(running.attempt),
            reason: stop.reason().into(),
          },
        );
      }
    }
    let delayed: Vec<usize> = self.delayed.drain().map(|Reverse((_, i))| i).collect();
    let waiting = std::mem::take(&mut self.waiting);
    self.deadlines.clear();
    for i in delayed.into_iter().chain(waiting) {
      if !self.slots[i].settled {
        self.slots[i].retry_due = None;
        self.cancel_pending(i, stop);
      }
    }
  }

  /// Every stage settled (or the run suspends): compensate if the run halted, then finish.
  pub(super) fn begin_finish(&mut self) {
    if self.finishing.is_some() {
      return;
    }
    let suspended = self.settled < self.slots.len();
    let queue = if self.stop == Some(Stop::Halt) && !self.skip_compensation {
      self
        .completion_order
        .iter()
        .rev()
        .copied()
        .filter(|&i| {
          !self.compensated.contains(&i)
            && self.workflow.stages[self.stage_of(i)].compensate.is_some()
        })
        .collect()
    } else {
      Vec::new()
    };
    self.finishing = Some(Finishing {
      suspended,
      queue,
      current: None,
    });
    self.next_compensation();
  }

  /// Starts the next compensation, or emits `run_completed` when none is left.
  fn next_compensation(&mut self) {
    loop {
      let Some(finishing) = self.finishing.as_mut() else {
        return;
      };
      if finishing.current.is_some() {
        return;
      }
      if finishing.queue.is_empty() {
        self.complete();
        return;
      }
      let i = finishing.queue.remove(0);
      let workflow = Arc::clone(&self.workflow);
      let stage = &workflow.stages[self.stage_of(i)];
      let Some(call) = &stage.compensate else {
        continue;
      };
      // A compensation also sees its own stage's outputs.
      let mut ctx = self.context(i, StatusFlags::default());
      ctx.add_stage(&stage.id, self.stage_value(i));
      self.emit_at(
        i,
        Event::CompensationStarted {
          stage: stage.id.clone(),
          uses: call.uses.clone(),
        },
      );
      match scope::resolve_with(&call.with, &ctx, &workflow.source) {
        Ok(inputs) => {
          let task = self.task(i, &call.uses, 1, Arc::new(inputs), "/compensate");
          self.commands.push_back(Command::Compensate {
            stage: i,
            task,
            timeout: stage.timeout,
          });
          let now = self.now;
          if let Some(finishing) = self.finishing.as_mut() {
            finishing.current = Some((i, now));
          }
          return;
        }
        Err(failure) => {
          let error = RunError::Inputs(failure);
          self.note(Some(i), &error);
          self.emit_at(
            i,
            Event::CompensationFailed {
              stage: stage.id.clone(),
              uses: call.uses.clone(),
              error: error.to_string(),
            },
          );
        }
      }
    }
  }

  /// Whether the compensation of stage `i` is the one running.
  pub(super) fn compensating(&self, i: usize) -> bool {
    self
      .finishing
      .as_ref()
      .is_some_and(|f| f.current.is_some_and(|(current, _)| current == i))
  }

  /// The compensation of stage `i` ended.
  pub(super) fn on_compensated(&mut self, i: usize, result: Finished) {
    let Some(finishing) = self.finishing.as_mut() else {
      return;
    };
    let Some((current, started)) = finishing.current else {
      return;
    };
    if current != i {
      return;
    }
    finishing.current = None;
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[self.stage_of(i)];
    let id = stage.id.clone();
    let uses = stage
      .compensate
      .as_ref()
      .map(|c| c.uses.clone())
      .unwrap_or_default();
    let duration_ms = self.now.saturating_sub(started);
    self.emit_at(
      i,
      match result {
        Finished::Result(StageResult::Completed { .. }) => Event::CompensationCompleted {
          stage: id,
          uses,
          duration_ms,
        },
        Finished::Result(StageResult::Failed { error }) => Event::CompensationFailed {
          stage: id,
          uses,
          error,
        },
        Finished::TimedOut => Event::CompensationFailed {
          stage: id,
          uses,
          error: format!(
            "timed out after {}",
            duration::format_duration(stage.timeout)
          ),
        },
      },
    );
    self.next_compensation();
  }

  /// Workflow outputs and the final event.
  fn complete(&mut self) {
    let suspended = self.finishing.as_ref().is_some_and(|f| f.suspended);
    let stages = self.workflow.stages.len();
    let failed = (0..stages).any(|i| {
      matches!(self.status(i), StageStatus::Failed | StageStatus::TimedOut)
        && !self.slots[i].ignored
    });
    let mut outputs = serde_json::Map::new();
    if !suspended {
      let all = (0..stages)
        .map(|i| (self.id(i), self.stage_value(i)))
        .collect();
      let ctx = self.context_with(
        self.scope.env.clone(),
        Value::Object(Arc::new(all)),
        StatusFlags::default(),
      );
      let workflow = Arc::clone(&self.workflow);
      for (name, input) in &workflow.outputs {
        match scope::resolve_input(input, &ctx, &workflow.source) {
          Ok(value) => {
            outputs.insert(name.clone(), value);
          }
          Err(failure) => {
            self.fail_run(
              None,
              RunError::Output {
                name: name.clone(),
                failure,
              },
            );
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
    let mut error = self.errors.first().map(ToString::to_string);
    if error.is_none() {
      error = match status {
        RunStatus::Cancelled => Some("cancelled".into()),
        RunStatus::Waiting => Some(format!(
          "suspended: waiting for a decision on {}",
          self
            .waiting
            .iter()
            .map(|&i| format!("`{}`", self.workflow.stages[self.stage_of(i)].id))
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
      duration_ms: self.now.saturating_sub(self.began),
    });
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
}
