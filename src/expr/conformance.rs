//! Runs `conformance.txt`, the expression conformance suite (see its header), and reports
//! every case that differs at once.
use super::*;
use serde_json::json;

/// The suite, one case per line.
const SUITE: &str = include_str!("conformance.txt");

/// The context every case sees.
fn context() -> MapContext {
  MapContext::from_json(&json!({
    "ctx": {
      "name": "swdl",
      "nested": { "key": "value" },
      "with-dash": "dash",
      "items": [
        { "name": "one", "tags": ["x", "y"] },
        { "name": "two", "tags": ["z"] },
        { "other": 3 }
      ]
    },
    "list": ["a", "b", "c"],
    "empty": []
  }))
}

/// What a case expects.
enum Expected {
  Value(serde_json::Value),
  Error(String),
}

/// The cases of the suite: (line number, expression, expectation).
fn cases() -> Vec<(usize, &'static str, Expected)> {
  SUITE
    .lines()
    .enumerate()
    .filter(|(_, line)| !line.trim().is_empty() && !line.starts_with('#'))
    .map(|(n, line)| {
      let (text, expected) = line
        .rsplit_once(" => ")
        .unwrap_or_else(|| panic!("conformance.txt:{}: no ` => `", n + 1));
      let expected = match expected.strip_prefix("error: ") {
        Some(message) => Expected::Error(message.to_string()),
        None => Expected::Value(
          serde_json::from_str(expected)
            .unwrap_or_else(|e| panic!("conformance.txt:{}: {e}", n + 1)),
        ),
      };
      (n + 1, text.trim(), expected)
    })
    .collect()
}

/// Parses, checks the names and evaluates `text` as `swdl eval` does.
fn run(text: &str, ctx: &MapContext) -> Result<serde_json::Value, String> {
  let expr = parse(text).map_err(|e| e.kind.to_string())?;
  let known = |name: &str| {
    ["ctx", "list", "empty"]
      .iter()
      .any(|n| n.eq_ignore_ascii_case(name))
  };
  if let Some(error) = expr.check_names(&known).into_iter().next() {
    return Err(error.kind.to_string());
  }
  let value = expr.eval(ctx).map_err(|e| e.kind.to_string())?;
  serde_json::from_str(&value.to_json_text(false)).map_err(|e| e.to_string())
}

/// JSON equality where numbers compare as numbers (`1` and `1.0` are the same).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
  use serde_json::Value as J;
  match (a, b) {
    (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
    (J::Array(x), J::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
    (J::Object(x), J::Object(y)) => {
      x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
    }
    _ => a == b,
  }
}

#[test]
fn the_conformance_suite_passes() {
  let ctx = context();
  let cases = cases();
  let mut failed = Vec::new();
  for (line, text, expected) in &cases {
    let got = run(text, &ctx);
    let ok = match (expected, &got) {
      (Expected::Value(want), Ok(value)) => same(want, value),
      (Expected::Error(want), Err(message)) => message.contains(want.as_str()),
      _ => false,
    };
    if !ok {
      let want = match expected {
        Expected::Value(v) => v.to_string(),
        Expected::Error(e) => format!("error: {e}"),
      };
      failed.push(format!(
        "conformance.txt:{line}: `{text}` => {want}, got {got:?}"
      ));
    }
  }
  assert!(
    failed.is_empty(),
    "{} of {} cases differ:\n{}",
    failed.len(),
    cases.len(),
    failed.join("\n")
  );
  // The figure docs/expressions.md states ("Conformance"): change both together.
  assert_eq!(cases.len(), 252, "update the count in docs/expressions.md");
}
