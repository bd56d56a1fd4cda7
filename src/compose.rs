//! The front end: a path (or text) to a checked workflow. YAML to positioned nodes (`yaml`), nodes
//! to the typed model (`loader`), the cross-stage checks (`analyzer`), the built-ins' `with`
//! keys, then the skill names against the skills the file can see (`skills`). Every problem comes back at once, sorted, each
//! with `FILE:LINE:COL`. Hook names (approval policies, recovery strategies) are checked when the
//! Lua host that registers them starts (`launch::start_lua`).
use super::*;
use crate::workflow::Workflow;
use std::path::Path;

/// Reads and loads a workflow file.
///
/// # Errors
/// [`LoadError::Io`] when the file cannot be read, [`LoadError::Invalid`] with every diagnostic
/// when it is not a valid workflow.
pub fn load_file(path: &Path) -> Result<Workflow, LoadError> {
  let text = crate::source::read_text(path).map_err(|error| LoadError::Io {
    path: path.display().to_string(),
    error,
  })?;
  let base = path.parent().unwrap_or_else(|| Path::new(""));
  load(&path.display().to_string(), &text, Some(base)).map_err(LoadError::Invalid)
}

/// [`load_file`] that keeps the workflow when only its checks failed: the workflow as read
/// (`None` when it could not be read at all) and every diagnostic, so `validate` can run the
/// checks that need it built (Lua skills) and report everything at once.
///
/// # Errors
/// The file cannot be read.
pub fn load_file_with_diagnostics(
  path: &Path,
) -> Result<(Option<Workflow>, Diagnostics), LoadError> {
  let text = crate::source::read_text(path).map_err(|error| LoadError::Io {
    path: path.display().to_string(),
    error,
  })?;
  let base = path.parent().unwrap_or_else(|| Path::new(""));
  Ok(read_and_check(
    &path.display().to_string(),
    &text,
    Some(base),
  ))
}

/// Loads and checks a workflow from text; `name` is used in error positions. Skill names are
/// checked only by [`load_file`], which knows where to look for them.
///
/// # Errors
/// Every diagnostic, when the text is not a valid workflow.
pub fn load_str(name: &str, text: &str) -> Result<Workflow, Diagnostics> {
  load(name, text, None)
}

/// Loads from text; with a base directory, skill names are checked against it too.
fn load(name: &str, text: &str, base: Option<&Path>) -> Result<Workflow, Diagnostics> {
  match read_and_check(name, text, base) {
    (Some(workflow), diagnostics) if diagnostics.is_empty() => Ok(workflow),
    (_, diagnostics) => Err(diagnostics),
  }
}

/// The workflow as read (if it could be) and every diagnostic of its checks, sorted.
fn read_and_check(name: &str, text: &str, base: Option<&Path>) -> (Option<Workflow>, Diagnostics) {
  let source = Source::new(name, text);
  let root = match yaml::parse(&source) {
    Ok(root) => root,
    Err(error) => {
      let yaml = Diagnostic::new(
        &source,
        Span::new(error.offset, 0),
        ErrorKind::Yaml(error.message),
      );
      return (None, Diagnostics(vec![yaml]));
    }
  };
  let (workflow, mut diagnostics) = loader::read(&source, &root);
  if let Some(workflow) = &workflow {
    diagnostics.0.extend(analyzer::analyze(workflow).0);
    diagnostics
      .0
      .extend(skills::check_builtin_inputs(workflow).0);
    if let Some(base) = base {
      let index = skills::SkillIndex::discover(base, &workflow.config.skills_path);
      diagnostics.0.extend(index.check_workflow(workflow).0);
    }
  }
  diagnostics.sort();
  (workflow, diagnostics)
}

/// The typed model of `text` without the cross-stage checks (for tests of those checks' parts).
#[cfg(test)]
pub(crate) fn load_unchecked(name: &str, text: &str) -> Option<Workflow> {
  let source = Source::new(name, text);
  let root = yaml::parse(&source).ok()?;
  loader::read(&source, &root).0
}

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
  /// The file could not be read.
  #[error("{path}: {error}")]
  Io {
    /// The path as given.
    path: String,
    /// The OS error.
    error: std::io::Error,
  },
  /// The file has errors.
  #[error("{0}")]
  Invalid(Diagnostics),
}
