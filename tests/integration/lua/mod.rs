//! Lua end to end (docs/lua.md): skills, approval policies and recovery strategies written
//! in Lua, run by the real `swdl` binary on real workflow files. Every test builds its own
//! project in a temporary directory — `wf.yaml`, `skills/*.lua`, `hooks.lua` — and runs
//! `swdl run wf.yaml --progress none --events events.jsonl` there, so the paths in messages are
//! the ones a user sees (`skills/boom.lua:3: ...`).
//!
//! The host's own unit tests (`src/lua/tests.rs`) cover the Lua API in process; these check
//! that the pieces are wired together: discovery, `config.hooks`, permissions, the runtime's
//! use of policies and strategies, the event stream and the exit codes.

mod invalid_hooks;
mod policies;
mod recovery;
mod sandbox;
mod skill_errors;
mod skills;
mod skills_command;
mod yielding;

use crate::{
  common::{events_named, read_events, wait_for},
  test::{Test, assert_matches},
};
use serde_json::{Value, json};
use std::{
  path::Path,
  process::Stdio,
  time::{Duration, Instant},
};

/// A Lua project in a temporary directory; each command is a [`Test`] in it.
struct Project(Test);

impl Project {
  fn new() -> Self {
    Self(Test::new())
  }

  fn path(&self) -> &Path {
    self.0.path()
  }

  /// Writes `text` as it is (line numbers matter) to `rel`, parents created.
  fn file(&self, rel: &str, text: &str) {
    let path = self.path().join(rel);
    if let Some(parent) = path.parent() {
      std::fs::create_dir_all(parent).expect("parent dir");
    }
    std::fs::write(&path, text).expect("write file");
  }

  /// `skills/NAME.lua`.
  fn skill(&self, name: &str, code: &str) {
    self.file(&format!("skills/{name}.lua"), code);
  }

  /// `hooks.lua`.
  fn hooks(&self, code: &str) {
    self.file("hooks.lua", code);
  }

  /// `swdl run wf.yaml --progress none --events events.jsonl` with `yaml` as `wf.yaml`.
  fn run(&self, yaml: &str) -> Test {
    self.file("wf.yaml", yaml);
    self.0.clone().args([
      "run",
      "wf.yaml",
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
  }

  /// `swdl ARGS` in the project directory.
  fn swdl<const N: usize>(&self, args: [&str; N]) -> Test {
    self.0.clone().args(args)
  }

  fn events(&self) -> Vec<Value> {
    read_events(&self.path().join("events.jsonl"))
  }
}

/// A skill whose `run` body is `body` (indented under `run`), starting on line 3 of the file.
fn skill_with_body(body: &str) -> String {
  format!("return {{\n  run = function(ctx, input)\n    {body}\n    return {{}}\n  end,\n}}\n")
}

const BY_RISK: &str = r#"
local policies = require "swdl.policies"
swdl.policy("by-risk", policies.by_risk{ approve_up_to = "medium", reject_at = "critical" })
"#;
