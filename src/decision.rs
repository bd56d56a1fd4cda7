//! Gate decisions: the types the runtime, the store and the commands share, so none of them
//! imports another's.
use serde::{Deserialize, Serialize};

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateDecision {
  /// Let the run go on.
  Approve,
  /// Fail the gate.
  Reject,
}

/// A gate decision recorded while its run was not executing.
#[derive(Debug, Clone, PartialEq)]
pub struct PriorDecision {
  /// Approve or reject.
  pub decision: GateDecision,
  /// Who decided (`user` for `swdl approve`).
  pub by: String,
  /// Why, if given.
  pub reason: Option<String>,
  /// Values for the gate's declared `inputs`.
  pub inputs: Option<serde_json::Value>,
}
