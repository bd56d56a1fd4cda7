//! The `$<< ... >>` expression language: parser, evaluator and string templates.
//!
//! Semantics follow GitHub Actions expressions (see `docs/expressions.md`); the grammar is in
//! `GRAMMAR.md` next to this file.
use {
  crate::*,
  functions::call,
  indexmap::IndexMap,
  std::{borrow::Cow, cmp::Ordering},
  value::{
    contains_ignore_case, ends_with_ignore_case, eq_ignore_case, number_from_text, object_get,
    starts_with_ignore_case,
  },
};

pub use {
  ast::{ArithOp, BinaryOp, Expr, ExprKind, LogicalOp, NAMESPACES, Path},
  error::{ExprError, ExprErrorKind},
  eval::{Context, MapContext, StatusFlags},
  functions::{FUNCTIONS, FunctionInfo, function},
  template::{Segment, Template},
  value::Value,
};

use eval::eval;

/// `ctx; text => expected JSON` rows: each text parses and evaluates to the expected value.
#[cfg(test)]
macro_rules! evals {
  ($ctx:expr; $($text:expr => $expected:tt),* $(,)?) => {$(
    crate::expr::test_support::check(&$ctx, $text, serde_json::json!($expected));
  )*};
}

/// `ctx; text => message, column` rows: each text parses and fails to evaluate.
#[cfg(test)]
macro_rules! eval_fails {
  ($ctx:expr; $($text:expr => $message:expr, $column:expr);* $(;)?) => {$(
    crate::expr::test_support::check_error(&$ctx, $text, $message, $column);
  )*};
}

mod ast;
mod error;
mod eval;
mod functions;
mod parser;
mod template;
mod value;

#[cfg(test)]
mod conformance;

/// The most text one evaluation (an expression, or a template with all its expressions) may
/// build through `toJSON`, `format`, `join` and interpolation.
pub const MAX_BUILT_BYTES: usize = 32 * 1024 * 1024;

/// How deeply an expression may nest, as in GitHub Actions.
pub const MAX_DEPTH: usize = 50;

/// Parses an expression body (without `$<< >>`); empty or blank text is `null`.
///
/// Function names and argument counts are checked here; context names are not (see
/// [`Expr::check_names`]).
///
/// # Errors
///
/// Syntax errors, unknown functions, wrong argument counts and nesting deeper than
/// [`MAX_DEPTH`], with the span of the offending text.
pub fn parse(text: &str) -> Result<Expr, ExprError> {
  parser::parse_text(text)
}

pub use crate::suggest::suggest;

#[cfg(test)]
pub(crate) mod test_support {
  use {super::*, serde_json::json};

  /// A context with one of everything, shaped like swdl's namespaces.
  pub(crate) fn sample() -> MapContext {
    MapContext::from_json(&json!({
      "parameters": {
        "n": 3, "s": "Hello", "zero": 0, "empty": "", "list": [1, 2, 3], "names": ["a", "B"],
        "obj": {"Key": "v", "n": null}, "t": true, "f": false,
      },
      "stages": {
        "a": {
          "outputs": {"x": "Y", "items": [{"name": "x", "v": 1}, {"name": "y"}, {"v": 3}, 5]},
          "status": "completed",
        },
        "b": {"outputs": {"x": "z"}},
      },
      "matrix": [[1, 2], [3], "s", {"k": 4}],
      "env": {"HOME": "/root"},
    }))
  }

  /// Asserts that `text` evaluates to `expected`.
  #[track_caller]
  pub(super) fn check(ctx: &dyn Context, text: &str, expected: serde_json::Value) {
    match parse(text).and_then(|expr| expr.eval(ctx)) {
      Ok(value) => assert_eq!(value, Value::from(expected), "evaluating {text:?}"),
      Err(e) => panic!("{text:?} failed: {e} at {}", e.span.offset),
    }
  }

  /// Asserts that `text` parses but fails to evaluate with `message` at 1-based `column`.
  #[track_caller]
  pub(super) fn check_error(ctx: &dyn Context, text: &str, message: &str, column: usize) {
    match parse(text).map(|expr| expr.eval(ctx)) {
      Ok(Err(e)) => {
        let at = text.get(..e.span.offset).map_or(0, |s| s.chars().count()) + 1;
        assert_eq!(
          (e.to_string().as_str(), at),
          (message, column),
          "evaluating {text:?}"
        );
      }
      Ok(Ok(value)) => panic!("{text:?} should fail, gave {value:?}"),
      Err(e) => panic!("{text:?} should parse, got {e}"),
    }
  }
}

#[cfg(test)]
mod tests {
  use {super::*, proptest::prelude::*};

  #[test]
  fn suggestions() {
    let functions = || FUNCTIONS.iter().map(|f| f.name);
    assert_eq!(suggest("fromJson2", functions()), Some("fromJSON"));
    assert_eq!(suggest("lenght", functions()), Some("length"));
    assert_eq!(suggest("startWith", functions()), Some("startsWith"));
    assert_eq!(suggest("xyz", functions()), None);
    assert_eq!(
      suggest("paramters", NAMESPACES.iter().copied()),
      Some("parameters")
    );
    assert_eq!(suggest("stage", NAMESPACES.iter().copied()), Some("stages"));
    assert_eq!(suggest("x", NAMESPACES.iter().copied()), None);
  }

  #[test]
  fn function_table() {
    assert_eq!(function("FROMJSON").map(|f| f.name), Some("fromJSON"));
    assert_eq!(function("nope"), None);
    assert!(
      FUNCTIONS
        .iter()
        .all(|f| f.max_args.is_none_or(|max| max >= f.min_args))
    );
  }

  /// Every `| expression | result |` table row of the user docs holds, against the context
  /// in the docs' first JSON block, so the docs cannot drift from the code.
  #[test]
  fn documented_examples_hold() {
    let doc = include_str!("../../docs/expressions.md");
    let context = doc
      .split("```json")
      .nth(1)
      .and_then(|rest| rest.split("```").next())
      .and_then(|json| serde_json::from_str(json).ok())
      .map(|json| MapContext::from_json(&json));
    let Some(ctx) = context else {
      panic!("docs/expressions.md has no JSON context block");
    };
    let code = |cell: &str| {
      cell
        .strip_prefix('`')
        .and_then(|c| c.strip_suffix('`'))
        .map(|c| c.replace("\\|", "|"))
    };
    let mut in_table = false;
    let mut checked = 0;
    for line in doc.lines() {
      if line.starts_with("| expression | result |") {
        in_table = true;
        continue;
      }
      if !line.starts_with('|') {
        in_table = false;
      }
      if !in_table || line.starts_with("|---") {
        continue;
      }
      // Split on `|` that is not escaped as `\|`.
      let cells: Vec<String> = line
        .replace("\\|", "\u{0}")
        .split('|')
        .map(|cell| cell.trim().replace('\u{0}', "\\|"))
        .filter(|cell| !cell.is_empty())
        .collect();
      let [text, expected] = cells.as_slice() else {
        panic!("bad example row: {line}");
      };
      let Some(text) = code(text) else {
        panic!("bad expression cell: {line}");
      };
      let result = parse(&text).and_then(|expr| expr.eval(&ctx));
      match (expected.strip_prefix("error: "), result) {
        (Some(message), Err(e)) => assert_eq!(e.to_string(), message, "{text}"),
        (None, Ok(value)) => {
          let expected =
            code(expected).and_then(|json| serde_json::from_str::<serde_json::Value>(&json).ok());
          assert_eq!(Some(value), expected.map(Value::from), "{text}");
        }
        (_, result) => panic!("{text}: expected {expected}, got {result:?}"),
      }
      checked += 1;
    }
    assert!(checked >= 80, "only {checked} documented examples found");
  }

  /// Text built from the expression tokens.
  fn expression_like() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(crate::fuzz::EXPR_TOKENS), 0..60)
      .prop_map(|parts| parts.concat())
  }

  /// A context with one of everything.
  fn context() -> MapContext {
    MapContext::from_json(&serde_json::json!({
      "a": {"b": [1, {"c": "x"}], "d": null},
      "b-c": [[1, 2], {"k": [3]}],
    }))
  }

  proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parse_never_panics(text in any::<String>()) {
      let _ = parse(&text);
      let _ = Template::parse(&text);
    }

    #[test]
    fn whatever_parses_evaluates_without_panicking(text in expression_like()) {
      let ctx = context();
      if let Ok(expr) = parse(&text) {
        let _ = expr.eval(&ctx);
        let _ = expr.paths();
        let _ = expr.check_names(&|n| n == "a");
        let _ = expr.uses_status_function();
        // Printing gives source that parses back to the same tree shape.
        let printed = expr.to_string();
        prop_assert_eq!(parse(&printed).map(|e| e.to_string()), Ok(printed));
      }
      if let Ok(template) = Template::parse(&text) {
        let _ = template.eval(&ctx);
      }
    }

    #[test]
    fn deep_nesting_is_rejected_not_overflowed(
      open in prop_oneof![Just("("), Just("["), Just("!"), Just("{a:"), Just("length("), Just("a ? ")],
      n in 0usize..3000,
    ) {
      let text = open.repeat(n);
      let _ = parse(&text);
      let _ = parse(&format!("{text}x"));
      let _ = Template::parse(&format!("$<< {text} >>"));
    }
  }
}
