//! TEMPORARY: minimal built-ins until the real module lands.
use super::*;
use executor::{BoxFuture, StageExecutor, StageResult, StageTask, TaskIo};

/// Built-in skill names.
pub const NAMES: &[&str] = &["echo", "sleep", "fail", "shell"];

/// Built-in skills.
pub struct Builtins;

/// Kills every process group still running.
pub fn kill_all_process_groups() {}

impl StageExecutor for Builtins {
  fn execute(&self, task: StageTask, _io: TaskIo) -> BoxFuture<StageResult> {
    Box::pin(async move {
      match task.skill.as_str() {
        "echo" => StageResult::outputs(task.inputs.as_object().cloned().unwrap_or_default()),
        "sleep" => {
          let ms = task
            .inputs
            .get("ms")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
          tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
          StageResult::outputs(serde_json::Map::new())
        }
        "fail" => {
          let times = task.inputs.get("times").and_then(serde_json::Value::as_u64);
          if times.is_some_and(|t| u64::from(task.attempt) > t) {
            StageResult::outputs(serde_json::Map::new())
          } else {
            StageResult::failed("fail skill failed as asked")
          }
        }
        other => StageResult::failed(format!("skill `{other}` is not available")),
      }
    })
  }
}
