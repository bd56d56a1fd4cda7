//! The tokio driver's behaviour, end to end: scheduling, retries, gates, stopping, durability
//! and hooks, through `execute` with scripted executors.
use super::recovery::RECOVERY_ATTEMPTS;
use super::*;
use crate::{
  event::{Event, EventRecord, EventSink, RunStatus, StageStatus},
  executor::{self, StageExecutor, StageResult, StageTask, TaskIo},
  mask::Masker,
  workflow::Workflow,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

mod hooks_run;
mod run;

/// The exit code `swdl run` gives for `outcome`.
fn exit_code(outcome: &RunOutcome) -> i32 {
  crate::exit::of_run(outcome.state.status, outcome.rejected)
}
