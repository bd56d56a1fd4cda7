//! Converts `--param k=v` arguments to the types the workflow declares (docs/workflow-format.md, "Parameters").
use super::*;
use crate::workflow::{ValueType, Workflow};
use indexmap::IndexMap;

/// Final parameter values: given ones converted, defaults filled in, required ones checked.
///
/// # Errors
/// A diagnostic for each malformed, unknown, mistyped or missing parameter.
pub fn resolve(
  workflow: &Workflow,
  args: &[String],
) -> Result<IndexMap<String, serde_json::Value>, Diagnostics> {
  let (mut given, mut diagnostics) = match resolve_given(workflow, args) {
    Ok(given) => (given, Diagnostics::default()),
    Err(diagnostics) => (IndexMap::new(), diagnostics),
  };
  let mut out = IndexMap::with_capacity(workflow.parameters.len());
  for param in workflow.parameters.values() {
    if let Some(value) = given.shift_remove(&param.name) {
      out.insert(param.name.clone(), value);
    } else if let Some(default) = &param.default {
      out.insert(param.name.clone(), default.clone());
    } else if param.required {
      diagnostics.push(Diagnostic::new(
        &workflow.source,
        param.span,
        ErrorKind::MissingParameter {
          name: param.name.clone(),
        },
      ));
    } else {
      out.insert(param.name.clone(), serde_json::Value::Null);
    }
  }
  if diagnostics.is_empty() {
    Ok(out)
  } else {
    Err(diagnostics)
  }
}

/// Converts and checks `name=value` arguments without applying defaults or requirements.
///
/// # Errors
///
/// Every malformed argument, unknown name, failed conversion or value outside `enum`.
pub fn resolve_given(
  workflow: &Workflow,
  args: &[String],
) -> Result<IndexMap<String, serde_json::Value>, Diagnostics> {
  let mut diagnostics = Diagnostics::default();
  let mut given: IndexMap<String, serde_json::Value> = IndexMap::new();
  for arg in args {
    let arg_source = Source::new("--param", arg.as_str());
    let Some((name, raw)) = arg.split_once('=') else {
      diagnostics.push(Diagnostic::new(
        &arg_source,
        Span::new(0, arg.len()),
        ErrorKind::MalformedParamArg(arg.clone()),
      ));
      continue;
    };
    let Some(param) = workflow
      .parameters
      .values()
      .find(|p| p.name.eq_ignore_ascii_case(name))
    else {
      diagnostics.push(Diagnostic::new(
        &arg_source,
        Span::new(0, name.len()),
        ErrorKind::UnknownParamArg {
          name: name.to_string(),
          suggestion: suggest::suggest(name, workflow.parameters.keys().map(String::as_str))
            .map(str::to_string),
        },
      ));
      continue;
    };
    // A secret's value is never echoed: the error shows `name=***`.
    let (arg_source, raw_shown) = if param.secret {
      (
        Source::new("--param", format!("{name}={}", mask::MASK)),
        mask::MASK,
      )
    } else {
      (arg_source, raw)
    };
    let value_span = Span::new(name.len() + 1, raw_shown.len());
    let Some(value) = convert(param.ty, raw) else {
      diagnostics.push(Diagnostic::new(
        &arg_source,
        value_span,
        ErrorKind::ParamConversion {
          name: param.name.clone(),
          expected: param.ty,
          value: raw_shown.to_string(),
        },
      ));
      continue;
    };
    if let Some(allowed) = &param.allowed
      && !allowed.iter().any(|a| workflow::same_value(a, &value))
    {
      diagnostics.push(Diagnostic::new(
        &arg_source,
        value_span,
        ErrorKind::ParamNotInEnum {
          name: param.name.clone(),
          allowed: serde_json::Value::from(allowed.clone()).to_string(),
          value: if param.secret {
            mask::MASK.to_string()
          } else {
            value.to_string()
          },
        },
      ));
      continue;
    }
    given.insert(param.name.clone(), value);
  }
  if diagnostics.is_empty() {
    Ok(given)
  } else {
    Err(diagnostics)
  }
}

/// Every parameter at its default (null when it has none): what `plan` and `validate` assume
/// when no values are given.
pub fn defaults(workflow: &Workflow) -> IndexMap<String, serde_json::Value> {
  workflow
    .parameters
    .values()
    .map(|p| {
      (
        p.name.clone(),
        p.default.clone().unwrap_or(serde_json::Value::Null),
      )
    })
    .collect()
}

/// Converts command-line text to a declared type; `None` when it does not convert.
pub fn convert(ty: ValueType, raw: &str) -> Option<serde_json::Value> {
  use serde_json::Value as J;
  match ty {
    ValueType::String => Some(J::String(raw.to_string())),
    ValueType::Integer => raw.trim().parse::<i64>().ok().map(J::from),
    ValueType::Number => {
      let trimmed = raw.trim();
      if let Ok(i) = trimmed.parse::<i64>() {
        return Some(J::from(i));
      }
      trimmed
        .parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .and_then(serde_json::Number::from_f64)
        .map(J::Number)
    }
    ValueType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
      "true" => Some(J::Bool(true)),
      "false" => Some(J::Bool(false)),
      _ => None,
    },
    ValueType::Array => serde_json::from_str::<J>(raw).ok().filter(J::is_array),
    ValueType::Object => serde_json::from_str::<J>(raw).ok().filter(J::is_object),
    ValueType::Any => Some(serde_json::from_str(raw).unwrap_or_else(|_| J::String(raw.into()))),
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn values_convert_to_declared_types() {
    assert_eq!(convert(ValueType::Integer, "42"), Some(json!(42)));
    assert_eq!(convert(ValueType::Integer, "4.2"), None);
    assert_eq!(convert(ValueType::Number, "4.5"), Some(json!(4.5)));
    assert_eq!(convert(ValueType::Number, "NaN"), None);
    assert_eq!(convert(ValueType::Boolean, "TRUE"), Some(json!(true)));
    assert_eq!(convert(ValueType::Boolean, "yes"), None);
    assert_eq!(convert(ValueType::Array, "[1,2]"), Some(json!([1, 2])));
    assert_eq!(convert(ValueType::Array, "{}"), None);
    assert_eq!(
      convert(ValueType::Object, "{\"a\":1}"),
      Some(json!({"a": 1}))
    );
    assert_eq!(convert(ValueType::String, " x "), Some(json!(" x ")));
  }
}
