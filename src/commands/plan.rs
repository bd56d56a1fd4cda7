//! `swdl plan`: the plan of a workflow without running it, in four formats.
use super::*;
use crate::cli::{ParamArgs, PlanFormat};
use std::{io::Write, path::Path};

/// Runs `swdl plan FILE`.
pub(super) fn plan(file: &Path, params: &ParamArgs, format: PlanFormat) -> Result<Done, Error> {
  let workflow = compose::load_file(file)?;
  let given = params.given(&workflow)?;
  let values = params::resolve(&workflow, &given).map_err(Error::Diagnostics)?;
  let plan = crate::plan::plan(&workflow, &values);
  let text = match format {
    PlanFormat::Text => plan.to_text(color::stdout()),
    PlanFormat::Json => {
      let mut json = serde_json::to_string_pretty(&plan).unwrap_or_default();
      json.push('\n');
      json
    }
    PlanFormat::Dot => plan.to_dot(),
    PlanFormat::Mermaid => plan.to_mermaid(),
  };
  std::io::stdout().lock().write_all(text.as_bytes())?;
  Ok(Done::Ok)
}
