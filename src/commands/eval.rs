//! `swdl eval`: one expression (or template) evaluated against an optional JSON context.
use super::*;
use indexmap::IndexMap;
use std::{io::Write, path::Path};

/// Runs `swdl eval EXPR`.
pub(super) fn eval(text: &str, context: Option<&Path>) -> Result<Done, Error> {
  let mut names: IndexMap<String, expr::Value> = IndexMap::new();
  if let Some(path) = context {
    names = read_context(path)?;
  }
  let source = Source::new("<expr>", text);
  let fail = |span: Span, kind: expr::ExprErrorKind| {
    Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
      &source,
      span,
      ErrorKind::Expr(kind),
    )]))
  };
  // With delimiters the argument is a template (so text around them interpolates).
  let template = if text.contains("$<<") {
    expr::Template::parse(text).map_err(|e| fail(e.span, e.kind))?
  } else {
    let parsed = expr::parse(text).map_err(|e| fail(e.span, e.kind))?;
    expr::Template {
      segments: vec![expr::Segment::Expr {
        expr: parsed,
        offset: 0,
      }],
    }
  };
  let known = |name: &str| {
    expr::NAMESPACES
      .iter()
      .any(|n| n.eq_ignore_ascii_case(name))
      || names.keys().any(|k| k.eq_ignore_ascii_case(name))
  };
  let mut unknown = Diagnostics::default();
  for (e, offset) in template.exprs() {
    for error in e.check_names(&known) {
      unknown.push(Diagnostic::new(
        &source,
        error.span.shifted(offset),
        ErrorKind::Expr(error.kind),
      ));
    }
  }
  if !unknown.is_empty() {
    return Err(Error::Diagnostics(unknown));
  }
  let ctx = expr::MapContext::new(names);
  // Evaluate each part on its own first so an error points into the right `$<< >>`.
  for (e, offset) in template.exprs() {
    if let Err(error) = e.eval(&ctx) {
      return Err(fail(error.span.shifted(offset), error.kind));
    }
  }
  let value = template
    .eval(&ctx)
    .map_err(|error| fail(error.span, error.kind))?;
  writeln!(std::io::stdout().lock(), "{}", value.to_json_text(true))?;
  Ok(Done::Ok)
}

/// Reads a JSON object whose keys become expression namespaces.
fn read_context(path: &Path) -> Result<IndexMap<String, expr::Value>, Error> {
  let source = read_source(path)?;
  match serde_json::from_str::<serde_json::Value>(source.text()) {
    Ok(serde_json::Value::Object(map)) => Ok(
      map
        .into_iter()
        .map(|(k, v)| (k, expr::Value::from(v)))
        .collect(),
    ),
    Ok(other) => Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
      &source,
      Span::new(0, 1),
      ErrorKind::WrongType {
        field: "--context".into(),
        expected: "a JSON object",
        found: workflow::json_kind(&other),
      },
    )]))),
    Err(error) => {
      let offset = line_col_offset(&source, error.line(), error.column());
      Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
        &source,
        Span::new(offset, 1),
        ErrorKind::InvalidJson(error.to_string()),
      )])))
    }
  }
}

/// Byte offset of a 1-based line and column.
fn line_col_offset(source: &Source, line: usize, column: usize) -> usize {
  let start: usize = source
    .text()
    .split_inclusive('\n')
    .take(line.saturating_sub(1))
    .map(str::len)
    .sum();
  (start + column.saturating_sub(1)).min(source.text().len())
}
