//! `swdl validate`: checks files and reports each, as text or one JSON document.
use super::*;
use crate::{cli::Format, compose::LoadError};
use std::io::Write;

/// Runs `swdl validate FILE...`.
pub(super) fn validate(files: &[std::path::PathBuf], format: Format) -> Result<Done, Error> {
  let mut reports = Vec::new();
  let mut all_valid = true;
  let mut stdout = std::io::stdout().lock();
  let mut stderr = std::io::stderr().lock();
  for file in files {
    let name = file.display().to_string();
    match compose::load_file(file) {
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
          LoadError::Invalid(d) => d.0.iter().map(Diagnostic::to_json).collect(),
          LoadError::Io { .. } => {
            vec![serde_json::json!({ "file": name, "message": error.to_string() })]
          }
        };
        if format == Format::Text {
          let text = match &error {
            LoadError::Invalid(d) => d.render(color::stderr()),
            LoadError::Io { .. } => format!("error: {error}\n"),
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
