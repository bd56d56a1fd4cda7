//! Which skill names a workflow can use: the built-ins and the skills found on its skills path.
use super::*;
use crate::workflow::Workflow;
use std::{
  collections::BTreeSet,
  path::{Path, PathBuf},
};

/// Skills every swdl binary provides.
pub const BUILTINS: &[&str] = &["echo", "sleep", "fail", "shell", "http", "llm"];

/// The skill names visible to one workflow.
#[derive(Debug, Clone, Default)]
pub struct SkillIndex {
  /// The directory relative paths are resolved against.
  pub base: PathBuf,
  /// Discovered names (`NAME.lua` or `NAME/init.lua`).
  pub discovered: BTreeSet<String>,
}

impl SkillIndex {
  /// Scans `skills_path` (relative to `base`) for `NAME.lua` and `NAME/init.lua`.
  pub fn discover(base: &Path, skills_path: &[String]) -> Self {
    let mut discovered = BTreeSet::new();
    for dir in skills_path {
      let Ok(entries) = std::fs::read_dir(base.join(dir)) else {
        continue;
      };
      for entry in entries.flatten() {
        let path = entry.path();
        let name = if path.is_dir() && path.join("init.lua").is_file() {
          path.file_name()
        } else if path.extension().is_some_and(|e| e == "lua") {
          path.file_stem()
        } else {
          None
        };
        if let Some(name) = name.and_then(|n| n.to_str()) {
          discovered.insert(name.to_string());
        }
      }
    }
    Self {
      base: base.to_path_buf(),
      discovered,
    }
  }

  /// Whether `uses` names something that exists; paths must exist as files.
  fn check(&self, uses: &str) -> Result<(), ErrorKind> {
    if uses.starts_with("./") || uses.starts_with("../") || uses.starts_with('/') {
      return if self.base.join(uses).is_file() {
        Ok(())
      } else {
        Err(ErrorKind::MissingSkillFile(uses.to_string()))
      };
    }
    if BUILTINS.contains(&uses) || self.discovered.contains(uses) {
      return Ok(());
    }
    let known = BUILTINS
      .iter()
      .copied()
      .chain(self.discovered.iter().map(String::as_str));
    Err(ErrorKind::UnknownSkill {
      name: uses.to_string(),
      suggestion: suggest::suggest(uses, known).map(str::to_string),
    })
  }

  /// Reports every `uses`, `fallback` and `compensate` naming a skill that does not exist.
  pub fn check_workflow(&self, workflow: &Workflow) -> Diagnostics {
    let mut out = Diagnostics::default();
    let mut report = |name: &str, span: Span| {
      // An empty name was already reported by the loader.
      if name.is_empty() {
        return;
      }
      if let Err(kind) = self.check(name) {
        out.push(Diagnostic::new(&workflow.source, span, kind));
      }
    };
    for stage in &workflow.stages {
      if let Some(call) = stage.skill() {
        report(&call.uses, call.span);
      }
      for (name, &span) in stage.fallback.iter().zip(&stage.fallback_spans) {
        report(name, span);
      }
      if let Some(call) = &stage.compensate {
        report(&call.uses, call.span);
      }
    }
    out
  }
}
