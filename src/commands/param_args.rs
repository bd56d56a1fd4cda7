//! `--param NAME=VALUE` and `--params FILE`, as `run`, `plan` and `repl` take them: a file's
//! values checked against the workflow's declarations at their positions in the file, then the
//! flags, which win.
use super::*;
use crate::{cli::ParamArgs, workflow::Workflow};
use std::path::Path;

impl ParamArgs {
  /// The `name=value` arguments these flags give for `workflow`: the file's first, then
  /// `--param`, so a flag wins over the file.
  pub(crate) fn given(&self, workflow: &Workflow) -> Result<Vec<String>, Error> {
    let mut given = match &self.params_file {
      Some(path) => from_file(workflow, path)?,
      None => Vec::new(),
    };
    given.extend(self.params.iter().cloned());
    Ok(given)
  }
}

/// Reads `--params FILE` (YAML or JSON) into `name=value` arguments checked like `--param`.
fn from_file(workflow: &Workflow, path: &Path) -> Result<Vec<String>, Error> {
  let source = commands::read_source(path)?;
  let fail = |span: Span, kind: ErrorKind| {
    Error::Diagnostics(Diagnostics(vec![Diagnostic::new(&source, span, kind)]))
  };
  let root =
    yaml::parse(&source).map_err(|e| fail(Span::new(e.offset, 0), ErrorKind::Yaml(e.message)))?;
  let yaml::NodeValue::Map(entries) = &root.value else {
    return Err(fail(
      root.span,
      ErrorKind::WrongType {
        field: "--params".into(),
        expected: "a mapping of parameter names to values",
        found: root.kind_name(),
      },
    ));
  };
  let mut out = Vec::new();
  for (key, value) in entries {
    let key_text = key.key_text();
    let declared = workflow
      .parameters
      .values()
      .find(|p| p.name.eq_ignore_ascii_case(&key_text));
    let Some(param) = declared else {
      return Err(fail(
        key.span,
        ErrorKind::UnknownParamArg {
          suggestion: suggest::suggest(&key_text, workflow.parameters.keys().map(String::as_str))
            .map(str::to_string),
          name: key_text,
        },
      ));
    };
    // Typed YAML values are passed on in their JSON form, strings as they are.
    let raw = match value.to_json() {
      serde_json::Value::String(s) => s,
      other => other.to_string(),
    };
    if crate::params::convert(param.ty, &raw).is_none() {
      if param.secret {
        // Point at the key of a file whose text, from the key on, has the value masked.
        let text = source.text();
        let at = key.span.offset.min(text.len());
        let masked = format!("{}{}", &text[..at], text[at..].replace(&raw, mask::MASK));
        let shown = Source::new(source.name(), masked);
        return Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
          &shown,
          key.span,
          ErrorKind::ParamConversion {
            name: param.name.clone(),
            expected: param.ty,
            value: mask::MASK.to_string(),
          },
        )])));
      }
      return Err(fail(
        value.span,
        ErrorKind::ParamConversion {
          name: param.name.clone(),
          expected: param.ty,
          value: raw,
        },
      ));
    }
    out.push(format!("{}={raw}", param.name));
  }
  Ok(out)
}
