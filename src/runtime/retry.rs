//! What follows a failed attempt: a retry after its back-off (with jitter drawn from the run's
//! seed), the next fallback, a recovery strategy's advice, or the end under `on_failure`.
use super::machine::{Command, Core, Phase};
use super::*;
use crate::{
  event::Event,
  workflow::{OnFailure, RetryOn},
};
use std::time::Duration;

impl Core {
  /// Retry, fall back, ask a recovery strategy, or give up on stage `i` after a failed attempt.
  pub(super) fn after_failure(&mut self, i: usize, kind: RetryOn) {
    // A fanned-out stage fails as a whole once its items are done: nothing is tried again.
    if self.slots[i].fan.is_some() {
      self.final_failure(i);
      return;
    }
    // Once the run stopped, only clean-up stages (which still run) keep their retries.
    if let Some(stop) = self.stop
      && !self.runs_while_stopping(i, stop)
    {
      self.final_failure(i);
      return;
    }
    let workflow = Arc::clone(&self.workflow);
    let stage = &workflow.stages[self.stage_of(i)];
    // A recovery strategy replaces the retry and fallback settings of its stage.
    if let Some(strategy) = &stage.recover
      && self.options.hooks
    {
      self.ask_recovery(i, kind, strategy);
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
        delay = half + half.mul_f64(jitter(self.seed, i, slot.attempts));
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
      self.push_runnable(i);
      return;
    }
    self.final_failure(i);
  }

  /// Announces the next attempt of stage `i` after `delay`; the fold queues it.
  pub(super) fn retry_after(&mut self, i: usize, delay: Duration) {
    let id = self.id(i);
    let attempt = self.slots[i].attempts;
    let error = self
      .stage_state(i)
      .and_then(|s| s.error.clone())
      .unwrap_or_default();
    let delay_ms = machine::millis(delay);
    let due = self.rfc3339(self.now.saturating_add(delay_ms));
    self.emit_at(
      i,
      Event::StageRetrying {
        stage: id,
        attempt,
        delay_ms,
        due,
        error,
      },
    );
  }

  /// Applies `on_failure` once nothing more will be tried for stage `i`.
  pub(super) fn final_failure(&mut self, i: usize) {
    // An item's failure is its stage's to judge, once every item is done.
    if self.slots[i].unit.is_some() {
      self.settle(i);
      return;
    }
    match self.workflow.stages[self.stage_of(i)].on_failure {
      OnFailure::Halt => {
        self.settle(i);
        self.begin_stop(machine::Stop::Halt);
      }
      OnFailure::Continue => self.settle(i),
      OnFailure::Ignore => {
        self.slots[i].ignored = true;
        self.settle(i);
      }
    }
  }

  /// Hands the failure of stage `i`'s latest attempt to its recovery strategy.
  fn ask_recovery(&mut self, i: usize, kind: RetryOn, strategy: &str) {
    let stage = &self.workflow.stages[self.stage_of(i)];
    let state = self.stage_state(i);
    let attempt = self.slots[i].attempts;
    let item = self.slots[i].unit.map(|of| of.item);
    let key = self.slots[i].unit.and_then(|of| {
      let fan = self.slots[of.stage].fan.as_ref()?;
      fan.keys.get(of.item as usize).map(ToString::to_string)
    });
    let failure = hooks::Failure {
      stage: stage.id.clone(),
      attempt,
      item,
      key,
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
      params: self.options.masked_params(),
      memory: self.memory.view().entries(),
    };
    self.slots[i].asking = true;
    self.asks += 1;
    self.commands.push_back(Command::AskRecovery {
      stage: i,
      attempt,
      strategy: strategy.to_string(),
      failure,
    });
  }
}

/// A number in [0, 1) for the jitter of stage `stage`'s retry after attempt `attempt`: a hash
/// of the run's seed, so the same run always waits the same.
pub(super) fn jitter(seed: u64, stage: usize, attempt: u32) -> f64 {
  // splitmix64 finaliser: jitter needs spread, not cryptographic quality.
  let mut x = seed
    ^ (stage as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    ^ u64::from(attempt).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
  x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
  x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
  x ^= x >> 31;
  (x >> 11) as f64 / (1u64 << 53) as f64
}
