//! `swdl validate`: checks files and reports each, as text or one JSON document.
use super::*;
use crate::{cli::Format, compose::LoadError};

/// Everything `swdl run` would refuse `file` for before its first stage, and what its Lua
/// skills would refuse: the composer's checks, the hook files and names, each Lua skill
/// loading and its declared inputs.
fn check(file: &std::path::Path) -> Result<crate::workflow::Workflow, Error> {
  let workflow = compose::load_file(file).map_err(|error| match error {
    LoadError::Invalid(d) => Error::Diagnostics(d),
    io @ LoadError::Io { .. } => Error::Usage(io.to_string()),
  })?;
  if let Some(lua) = launch::start_lua(&workflow, file, &[])? {
    let mut problems = launch::check_lua_skills(&workflow, &lua);
    if !problems.is_empty() {
      problems.sort();
      return Err(Error::Diagnostics(problems));
    }
  }
  Ok(workflow)
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
