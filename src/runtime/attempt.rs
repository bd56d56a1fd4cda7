//! Attempts: building a stage's `StageTask`, what a finished attempt means (its output contract
//! included), and the log lines it sends while it runs.
use super::machine::{Command, Core, Finished, Phase};
use super::*;
use crate::{
  event::Event,
  executor::{LogLine, StageResult, StageTask},
  workflow::{RetryOn, Stage},
};

impl Core {
  /// Starts an attempt of stage `i` (after a risk approval when one is needed).
  pub(super) fn start_or_wait(&mut self, i: usize) {
    // An item's stage was approved once, before its items.
    if self.slots[i].unit.is_none() && self.needs_approval(i) && self.slots[i].attempts == 0 {
      self.open_gate(i, "approval");
      return;
    }
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[self.stage_of(i)];
    let Some(call) = stage.skill() else {
      return;
    };
    let uses = match self.slots[i].phase {
      Phase::Primary => call.uses.clone(),
      Phase::Fallback(f) => stage.fallback.get(f).cloned().unwrap_or_default(),
      Phase::Chosen => self.slots[i].chosen.clone().unwrap_or_default(),
    };
    // An item's `env` is resolved here, where its `item` exists.
    if self.slots[i].unit.is_some()
      && let Err(error) = self.stage_env(i)
    {
      self.fail_stage(i, &error, "inputs");
      return;
    }
    let ctx = self.context(i, self.flags(i));
    let mut inputs = match scope::resolve_with(&call.with, &ctx, &self.workflow.source) {
      Ok(inputs) => inputs,
      Err(failure) => {
        self.fail_stage(i, &RunError::Inputs(failure), "inputs");
        return;
      }
    };
    if let (Some(overrides), serde_json::Value::Object(map)) =
      (&self.slots[i].overrides, &mut inputs)
    {
      map.extend(overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let inputs = Arc::new(inputs);
    let attempt = self.slots[i].attempts + 1;
    let task = self.task(i, &uses, attempt, Arc::clone(&inputs), "");
    self.emit_at(
      i,
      Event::StageStarted {
        stage: stage.id.clone(),
        attempt,
        uses,
        inputs,
      },
    );
    // It holds its slot from now (the fold counted it in flight).
    self.commands.push_back(Command::Start {
      stage: i,
      attempt,
      task,
      timeout: stage.timeout,
    });
  }

  /// The task for one attempt (or, with `suffix` `/compensate`, a compensation) of stage `i`.
  pub(super) fn task(
    &self,
    i: usize,
    uses: &str,
    attempt: u32,
    inputs: Arc<serde_json::Value>,
    suffix: &str,
  ) -> StageTask {
    let stage = &self.workflow.stages[self.stage_of(i)];
    StageTask {
      run: self.options.run_id.clone(),
      stage: stage.id.clone(),
      attempt,
      idempotency_key: format!("{}/{}{suffix}", self.options.run_id, self.unit_name(i)),
      skill: uses.to_string(),
      inputs,
      timeout_ms: machine::millis(stage.timeout),
      permissions: self
        .workflow
        .config
        .permissions
        .get(uses)
        .cloned()
        .unwrap_or_default(),
      env: match self.stage_env(i) {
        Ok(Some(env)) => env.strings,
        Ok(None) | Err(_) => self.scope.env_strings.clone(),
      },
      memory: self.memory.view(),
      text_outputs: stage
        .outputs
        .iter()
        .filter(|(_, field)| field.ty == workflow::ValueType::String)
        .map(|(name, _)| name.clone())
        .collect(),
    }
  }

  /// A log line from an attempt or a compensation; lines of attempts no longer current, and
  /// of a compensation no longer running, are dropped.
  pub(super) fn on_log(&mut self, line: LogLine) {
    let i = line.stage;
    let current = if line.compensation {
      self.compensating(i)
    } else {
      self
        .running
        .get(i)
        .and_then(Option::as_ref)
        .is_some_and(|r| r.attempt == line.attempt)
    };
    if !current {
      return;
    }
    self.emit_at(
      i,
      Event::Log {
        stage: self.id(i),
        attempt: line.attempt,
        stream: line.stream.as_str().into(),
        message: line.message,
        compensation: line.compensation,
        tokens: line.tokens,
      },
    );
  }

  /// Attempt `attempt` of stage `i` ended.
  pub(super) fn on_finished(&mut self, i: usize, attempt: u32, result: Finished) {
    // A result from an attempt that was already cancelled is stale.
    let Some(running) = self.running.get(i).and_then(Option::as_ref) else {
      return;
    };
    if running.attempt != attempt {
      return;
    }
    let uses = running.uses.clone();
    let elapsed = self.now.saturating_sub(running.started);
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[self.stage_of(i)];
    let id = stage.id.clone();
    match result {
      Finished::Result(StageResult::Completed {
        outputs,
        summary,
        artifacts,
        hints,
      }) => {
        if let Err(error) = check_contract(stage, &outputs) {
          self.emit_at(
            i,
            Event::StageFailed {
              stage: id,
              attempt: Some(attempt),
              uses: Some(uses),
              error,
              reason: "contract".into(),
              duration_ms: elapsed,
            },
          );
          self.after_failure(i, RetryOn::Error);
          return;
        }
        self.emit_at(
          i,
          Event::StageCompleted {
            stage: id,
            attempt,
            uses,
            outputs: Arc::new(serde_json::Value::Object(outputs)),
            summary,
            artifacts,
            hints,
            duration_ms: elapsed,
            reused_from: None,
            inputs: None,
          },
        );
      }
      Finished::Result(StageResult::Failed { error }) => {
        self.emit_at(
          i,
          Event::StageFailed {
            stage: id,
            attempt: Some(attempt),
            uses: Some(uses),
            error,
            reason: "error".into(),
            duration_ms: elapsed,
          },
        );
        self.after_failure(i, RetryOn::Error);
      }
      Finished::TimedOut => {
        self.emit_at(
          i,
          Event::StageTimedOut {
            stage: id,
            attempt,
            uses,
            timeout_ms: machine::millis(stage.timeout),
            duration_ms: elapsed,
          },
        );
        self.after_failure(i, RetryOn::Timeout);
      }
    }
  }

  /// A stage fails before any attempt ran (a rejected gate, an `if` or inputs that failed).
  /// Fails stage `i` before any attempt for a reason the runtime found, keeping its position.
  pub(super) fn fail_stage(&mut self, i: usize, error: &RunError, reason: &str) {
    self.note(Some(i), error);
    self.fail_without_attempt(i, error.to_string(), reason);
  }

  pub(super) fn fail_without_attempt(&mut self, i: usize, error: String, reason: &str) {
    let id = self.id(i);
    self.emit_at(
      i,
      Event::StageFailed {
        stage: id,
        attempt: None,
        uses: None,
        error,
        reason: reason.into(),
        duration_ms: 0,
      },
    );
    self.final_failure(i);
  }
}

/// Checks outputs against the stage's contract; the message names the offending field.
pub(super) fn check_contract(
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
