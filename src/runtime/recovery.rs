//! Recovery advice: what a Lua recovery strategy decided after a failed attempt, carried out,
//! with a cap so a strategy that always asks for more cannot loop forever.
use super::machine::{After, Core, Phase, Stop};
use super::*;
use crate::event::Event;

/// Attempts a recovery strategy may ask for when `retry.max_attempts` allows fewer.
pub(super) const RECOVERY_ATTEMPTS: u32 = 10;

impl Core {
  /// The most attempts stage `i` may have under a recovery strategy.
  fn recovery_cap(&self, i: usize) -> u32 {
    self.workflow.stages[self.stage_of(i)]
      .retry
      .max_attempts
      .max(RECOVERY_ATTEMPTS)
  }

  /// A recovery strategy answered after attempt `attempt` of stage `i` failed.
  pub(super) fn on_recovery(
    &mut self,
    i: usize,
    attempt: u32,
    strategy: &str,
    result: Result<hooks::RecoveryAction, String>,
  ) {
    if !self.slots[i].asking {
      return;
    }
    self.slots[i].asking = false;
    self.asks -= 1;
    // An item cancelled while its strategy was thinking (fail-fast) has nothing left to decide.
    if self.slots[i].settled {
      return;
    }
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
        self.emit_at(i, e);
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
          *delay_ms = Some(delay.map_or(0, machine::millis));
          *with = w.clone().map(serde_json::Value::Object);
        }
        hooks::RecoveryAction::Fallback { uses: u } => *uses = Some(u.clone()),
        _ => {}
      }
    }
    self.emit_at(i, decided);
    let cap = self.recovery_cap(i);
    let again = matches!(
      action,
      hooks::RecoveryAction::Retry { .. } | hooks::RecoveryAction::Fallback { .. }
    );
    if again && self.slots[i].attempts >= cap {
      let asked = self.slots[i].attempts + 1;
      self.fail_run(
        Some(i),
        RunError::RecoveryCap {
          stage: id.clone(),
          strategy: strategy.to_string(),
          asked,
          cap,
        },
      );
      self.final_failure(i);
      return;
    }
    match action {
      hooks::RecoveryAction::Retry { delay, .. } => {
        self.retry_after(i, delay.unwrap_or_default());
      }
      hooks::RecoveryAction::Fallback { .. } => self.push_runnable(i),
      hooks::RecoveryAction::Skip => {
        self.emit_at(
          i,
          Event::StageSkipped {
            stage: id,
            reason: "recovery".into(),
          },
        );
      }
      hooks::RecoveryAction::Abort => {
        self.skip_compensation = true;
        self.begin_stop(Stop::Halt);
      }
      hooks::RecoveryAction::Compensate => self.begin_stop(Stop::Halt),
    }
  }

  /// Folds a recorded `recovery_decided` into stage `i`'s bookkeeping.
  pub(super) fn fold_recovery(
    &mut self,
    i: usize,
    action: &str,
    uses: Option<&str>,
    with: Option<&serde_json::Value>,
  ) {
    let cap = self.recovery_cap(i);
    let slot = &mut self.slots[i];
    slot.after = None;
    match action {
      "retry" => {
        if let Some(serde_json::Value::Object(with)) = with {
          slot
            .overrides
            .get_or_insert_with(Default::default)
            .extend(with.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        slot.phase = Phase::Primary;
      }
      "fallback" => {
        slot.phase = Phase::Chosen;
        slot.chosen = uses.map(str::to_string);
      }
      "abort" | "compensate" => {
        slot.recovery_halts = Some(action == "abort");
        self.settle(i);
        return;
      }
      "error" => {
        slot.after = Some(After::GaveUp);
        return;
      }
      _ => return,
    }
    // Past the cap the strategy's wish is refused: the stage gives up.
    if slot.attempts >= cap {
      slot.after = Some(After::GaveUp);
    }
  }
}
