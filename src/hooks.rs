//! What the runtime asks user code (Lua policies and recovery strategies) to decide. The runtime
//! depends only on the [`Hooks`] trait, so it does not know there is a Lua host behind it.
use crate::executor::{BoxFuture, MemoryEntry};
use serde::Serialize;
use std::time::Duration;

/// A stage waiting for approval, as an approval policy sees it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStage {
  /// Stage id.
  pub id: String,
  /// `gate`, or `approval` for a skill stage whose risk needs approval.
  pub kind: String,
  /// The stage's risk level.
  pub risk: Option<String>,
  /// The skill, for approvals.
  pub uses: Option<String>,
  /// The gate's rendered message.
  pub message: Option<String>,
  /// Run id.
  pub run_id: String,
  /// Resolved parameters (secrets masked).
  pub params: serde_json::Value,
  /// Working memory so far.
  pub memory: Vec<MemoryEntry>,
}

/// What an approval policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyDecision {
  /// Let it through.
  Approve {
    /// Why.
    reason: Option<String>,
  },
  /// Stop it.
  Reject {
    /// Why.
    reason: Option<String>,
  },
  /// Leave it to a person (the prompt, or suspension).
  Ask {
    /// Why.
    reason: Option<String>,
  },
}

/// A failed attempt, as a recovery strategy sees it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
  /// Stage id.
  pub stage: String,
  /// The attempt that failed.
  pub attempt: u32,
  /// The item of a fanned-out stage that failed (its index), absent for a whole stage.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub item: Option<u32>,
  /// That item's key.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub key: Option<String>,
  /// `error` or `timeout`.
  pub kind: String,
  /// What the attempt reported.
  pub error: String,
  /// The skill the attempt ran.
  pub uses: String,
  /// The inputs it ran with.
  pub inputs: serde_json::Value,
  /// Run id.
  pub run_id: String,
  /// Resolved parameters (secrets masked).
  pub params: serde_json::Value,
  /// Working memory so far.
  pub memory: Vec<MemoryEntry>,
}

/// What a recovery strategy wants done after a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RecoveryAction {
  /// Try again, after `delay`, with these inputs changed.
  Retry {
    /// Wait before the next attempt (none: at once).
    delay: Option<Duration>,
    /// Inputs to replace for the next attempt.
    with: Option<serde_json::Map<String, serde_json::Value>>,
  },
  /// Run another skill with the same inputs.
  Fallback {
    /// The skill.
    uses: String,
  },
  /// Give up on the stage without failing the run; its dependents still run.
  Skip,
  /// Fail the stage and stop the run without compensating.
  Abort,
  /// Fail the stage, stop the run and compensate what completed.
  Compensate,
}

impl RecoveryAction {
  /// The action's name as strategies spell it.
  pub fn name(&self) -> &'static str {
    match self {
      Self::Retry { .. } => "retry",
      Self::Fallback { .. } => "fallback",
      Self::Skip => "skip",
      Self::Abort => "abort",
      Self::Compensate => "compensate",
    }
  }
}

/// User code the runtime consults: approval policies and recovery strategies by name.
pub trait Hooks: Send + Sync {
  /// Registered approval policy names.
  fn policies(&self) -> Vec<String>;
  /// Registered recovery strategy names.
  fn recoveries(&self) -> Vec<String>;
  /// Asks policy `name` about a stage.
  fn decide(&self, name: &str, stage: PolicyStage) -> BoxFuture<Result<PolicyDecision, String>>;
  /// Asks strategy `name` what to do after a failed attempt.
  fn recover(&self, name: &str, failure: Failure) -> BoxFuture<Result<RecoveryAction, String>>;
}
