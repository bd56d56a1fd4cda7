//! `swdl validate`: checks files and reports each, as text or one JSON document.
use super::*;
use crate::{cli::Format, compose::LoadError};

/// Everything `swdl run` would refuse `file` for before its first stage, and what its Lua
/// skills would refuse: the composer's checks, the hook files and names, each Lua skill
/// loading and its declared inputs.
///
/// Every problem is reported at once: the Lua checks run even when the file has others.
fn check(file: &std::path::Path) -> Result<crate::workflow::Workflow, Error> {
  let (workflow, mut problems) =
    compose::load_file_with_diagnostics(file).map_err(|error| match error {
      LoadError::Invalid(d) => Error::Diagnostics(d),
      io @ LoadError::Io { .. } => Error::Usage(io.to_string()),
    })?;
  let Some(workflow) = workflow else {
    return Err(Error::Diagnostics(problems));
  };
  match launch::start_lua(&workflow, file, &[]) {
    Ok(Some(lua)) => problems
      .0
      .extend(launch::check_lua_skills(&workflow, &lua).0),
    Err(Error::Diagnostics(hooks)) => problems.0.extend(hooks.0),
    // Anything else stops the checks; report what was found first, if anything.
    Err(error) if problems.is_empty() => return Err(error),
    Ok(None) | Err(_) => {}
  }
  if problems.is_empty() {
    return Ok(workflow);
  }
  problems.sort();
  Err(Error::Diagnostics(problems))
}
use std::io::Write;

/// Runs `swdl validate FILE...`.
pub(super) fn validate(files: &[std::path::PathBuf], format: Format) -> Result<Done, Error> {
  let mut reports = Vec::new();
  let mut all_valid = true;
  let mut stdout = std::io::stdout().lock();
  let mut stderr = std::io::stderr().lock();
  for file in files {
    let name = file.display().to_string();
    match check(file) {
      Ok(workflow) => {
        let plan = crate::plan::plan(&workflow, &params::defaults(&workflow));
        if format == Format::Text {
          writeln!(
            stdout,
            "{name}: valid ({}, {})",
            event_text::count(workflow.stages.len(), "stage", "stages"),
            event_text::count(plan.batches.len(), "batch", "batches")
          )?;
        }
        reports.push(serde_json::json!({ "file": name, "valid": true, "errors": [] }));
      }
      Err(error) => {
        all_valid = false;
        let errors: Vec<serde_json::Value> = match &error {
          Error::Diagnostics(d) => d.0.iter().map(Diagnostic::to_json).collect(),
          _ => vec![serde_json::json!({ "file": name, "message": error.to_string() })],
        };
        if format == Format::Text {
          let text = match &error {
            Error::Diagnostics(d) => d.render(color::stderr()),
            _ => format!("error: {error}\n"),
          };
          stderr.write_all(text.as_bytes())?;
        }
        reports.push(serde_json::json!({ "file": name, "valid": false, "errors": errors }));
      }
    }
  }
  if format == Format::Json {
    let doc = serde_json::json!({ "valid": all_valid, "files": reports });
    writeln!(
      stdout,
      "{}",
      serde_json::to_string_pretty(&doc).unwrap_or_default()
    )?;
  }
  Ok(if all_valid { Done::Ok } else { Done::Invalid })
}
