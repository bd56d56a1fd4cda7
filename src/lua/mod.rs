//! The Lua host (docs/lua.md): skills, approval policies and recovery strategies written in
//! Lua 5.4, run sandboxed.
//!
//! A [`LuaHost`] owns a few OS threads, each owning one `mlua::Lua` (a state never crosses
//! threads) and running a current-thread tokio runtime with a `LocalSet`. Requests are sent to
//! a state's thread and each runs as its own Lua coroutine, so skills that wait (`swdl.sleep`,
//! `swdl.exec`) share a state. An instruction hook stops Lua code at its deadline or when its
//! caller gives up, and lets other calls on the state take turns with a busy one.
//!
//! Files: `host.rs` (threads and requests), `call.rs` (the running call, the hook),
//! `sandbox.rs` + `sandbox.lua` (environments), `api.rs` (the `swdl` module), `skill.rs`,
//! `hooks.rs` (hook files, policies, recovery, the REPL), `convert.rs` (JSON, types, errors).
use {
  super::*,
  crate::{
    builtin::{self, Builtins},
    executor::{
      self, BoxFuture, LogStream, MemoryEntry, StageExecutor, StageResult, StageTask, TaskIo,
    },
    workflow::Permission,
  },
  call::{Call, Purpose},
  host::{HOOK_TIMEOUT, HookFile, State},
  indexmap::IndexMap,
  mlua::{Function, Lua, Table, Value as LuaValue},
  serde::Serialize,
  std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    path::{Path, PathBuf},
    rc::Rc,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
  },
};

mod api;
mod call;
mod convert;
mod hooks;
mod host;
mod sandbox;
mod skill;

#[cfg(test)]
mod tests;

pub use host::LuaHost;

/// Lua modules compiled into the binary, loadable with `require "swdl.<name>"`.
pub const STDLIB: &[(&str, &str)] = &[
  ("retry", include_str!("../../stdlib/retry.lua")),
  (
    "circuit_breaker",
    include_str!("../../stdlib/circuit_breaker.lua"),
  ),
  ("policies", include_str!("../../stdlib/policies.lua")),
];

/// The memory one Lua state may use unless configured otherwise: 256 MiB.
pub const DEFAULT_MEMORY_LIMIT: usize = 256 * 1024 * 1024;

/// How a [`LuaHost`] is set up.
#[derive(Debug, Clone)]
pub struct HostConfig {
  /// How many Lua states (each on its own thread) share the work; at least one.
  pub states: usize,
  /// The most memory one state may allocate, in bytes; a skill going past it fails with "not
  /// enough memory" and the state stays usable.
  pub memory_limit: usize,
  /// Hook files loaded into every state at start, in order.
  pub hooks: Vec<PathBuf>,
}

impl Default for HostConfig {
  fn default() -> Self {
    Self {
      states: 2,
      memory_limit: DEFAULT_MEMORY_LIMIT,
      hooks: Vec::new(),
    }
  }
}

/// What a skill file declares, read from the table it returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkillInfo {
  /// `description`.
  pub description: Option<String>,
  /// `inputs`: name to type as written (`string`, `integer?`), sorted by name.
  pub inputs: IndexMap<String, String>,
  /// `outputs`: name to type as written, sorted by name.
  pub outputs: IndexMap<String, String>,
}

pub use crate::hooks::{Failure, PolicyDecision, PolicyStage, RecoveryAction};

/// What can go wrong in the Lua host; Lua errors carry the file, line and traceback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuaError {
  /// A Lua file could not be read.
  #[error("{path}: {message}")]
  File {
    /// The path as given.
    path: String,
    /// The system's reason.
    message: String,
  },
  /// Lua code failed: a syntax error, an `error()`, running out of memory.
  #[error("{0}")]
  Script(String),
  /// Lua code returned something swdl cannot use.
  #[error("{0}")]
  Invalid(String),
  /// No hook of that name was registered.
  #[error(
    "unknown {kind} `{name}`{}",
    suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
  )]
  Unknown {
    /// `policy` or `recovery strategy`.
    kind: &'static str,
    /// The name asked for.
    name: String,
    /// The closest registered name.
    suggestion: Option<String>,
  },
  /// The call timed out or was cancelled.
  #[error("{0}")]
  Stopped(String),
  /// The host itself is in trouble (a thread could not start, a state stopped).
  #[error("{0}")]
  Host(String),
}

/// An executor running built-in skills itself and every other skill through the Lua host.
#[derive(Debug, Clone)]
pub struct Executor {
  builtins: Builtins,
  host: LuaHost,
  skills: Arc<HashMap<String, PathBuf>>,
}

impl Executor {
  /// Runs the skills in `skills` (name to Lua file) on `host`, built-ins itself. The host looks
  /// at the skill files afresh (see [`LuaHost::refresh_skills`]).
  pub fn new(host: LuaHost, skills: HashMap<String, PathBuf>) -> Self {
    host.refresh_skills();
    Self {
      builtins: Builtins::new(),
      host,
      skills: Arc::new(skills),
    }
  }

  /// The same executor, running the built-in skills with `builtins`.
  #[must_use]
  pub fn with_builtins(mut self, builtins: Builtins) -> Self {
    self.builtins = builtins;
    self
  }
}

impl StageExecutor for Executor {
  fn execute(&self, task: StageTask, io: TaskIo) -> BoxFuture<StageResult> {
    if builtin::NAMES.contains(&task.skill.as_str()) {
      return self.builtins.execute(task, io);
    }
    if let Some(path) = self.skills.get(&task.skill) {
      let host = self.host.clone();
      let path = path.clone();
      return Box::pin(async move { host.run_skill(&path, task, io).await });
    }
    let names = builtin::NAMES
      .iter()
      .copied()
      .chain(self.skills.keys().map(String::as_str));
    let hint = crate::suggest::hint(&task.skill, names);
    let message = format!(
      "skill `{}` is not available{hint}: it is neither built in ({}) nor a Lua skill found in \
       skills_path",
      task.skill,
      builtin::NAMES.join(", ")
    );
    Box::pin(async move { StageResult::failed(message) })
  }
}

impl crate::hooks::Hooks for LuaHost {
  fn policies(&self) -> Vec<String> {
    LuaHost::policies(self)
  }

  fn recoveries(&self) -> Vec<String> {
    LuaHost::recoveries(self)
  }

  fn decide(&self, name: &str, stage: PolicyStage) -> BoxFuture<Result<PolicyDecision, String>> {
    let host = self.clone();
    let name = name.to_string();
    Box::pin(async move { host.decide(&name, stage).await.map_err(|e| e.to_string()) })
  }

  fn recover(&self, name: &str, failure: Failure) -> BoxFuture<Result<RecoveryAction, String>> {
    let host = self.clone();
    let name = name.to_string();
    Box::pin(async move {
      host
        .recover(&name, failure)
        .await
        .map_err(|e| e.to_string())
    })
  }
}
