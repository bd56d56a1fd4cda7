//! `swdl eval`: expressions evaluated against an optional context file, results as JSON.
use crate::test::Test;

/// `swdl eval ARGS` in a fresh directory.
fn eval<const N: usize>(args: [&str; N]) -> Test {
  Test::new().args(["eval"]).args(args)
}

#[test]
fn results_print_as_json() {
  let cases = [
    ("1 == 1", "true"),
    ("'abc'", "\"abc\""),
    ("[1, 'a', null]", "[\n  1,\n  \"a\",\n  null\n]"),
    ("{a: 1}", "{\n  \"a\": 1\n}"),
    ("'' || 'fallback'", "\"fallback\""),
    ("3 < 2 < 1", "true"),
    ("format('{0} of {1}', 1, 'x')", "\"1 of x\""),
    ("NaN", "NaN"),
    ("-Infinity", "-Infinity"),
    ("", "null"),
    ("$<< 1 == 1 >>", "true"),
    ("n=$<< 2 >>, list=$<< [1, 2] >>", "\"n=2, list=[1,2]\""),
  ];
  for (expr, expected) in cases {
    eval([expr])
      .stdout(&format!("{expected}\n"))
      .stderr("")
      .status(0)
      .run();
  }
}

#[test]
fn context_file_keys_become_namespaces() {
  let test = Test::new().file(
    "ctx.json",
    r#"{"parameters": {"n": 3, "tags": ["Fast", "small"]}, "stages": {"a": {"outputs": {"x": "Y"}}}, "custom": {"k": 1}}"#,
  );
  let cases = [
    ("stages.a.outputs.x == 'y' && parameters.n > 2", "true"),
    ("contains(parameters.tags, 'fast')", "true"),
    ("Parameters.N", "3"),
    ("custom.k", "1"),
    ("stages.missing.outputs.x", "null"),
    ("join(parameters.tags, '+')", "\"Fast+small\""),
  ];
  for (expr, expected) in cases {
    test
      .clone()
      .args(["eval", expr, "--context", "ctx.json"])
      .stdout(&format!("{expected}\n"))
      .stderr("")
      .status(0)
      .run();
  }
}

#[test]
fn parse_errors_exit_2_with_the_column() {
  eval(["parameters.n > 2 && fromJSN('1')"])
    .stdout("")
    .stderr(
      r"
      <expr>:1:21: error: unknown function `fromJSN` (did you mean `fromJSON`?): the functions are contains, startsWith, endsWith, format, join, toJSON, fromJSON, case, length, success, failure, always, cancelled
        |
      1 | parameters.n > 2 && fromJSN('1')
        |                     ^^^^^^^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn evaluation_errors_exit_2_with_the_column() {
  eval(["'x' && format('{0', 1)"])
    .stdout("")
    .stderr(
      r"
      <expr>:1:15: error: invalid format string `{0`: write `{{` and `}}` for literal braces
        |
      1 | 'x' && format('{0', 1)
        |               ^^^^
      ",
    )
    .status(2)
    .run();
  // Inside delimiters the column counts from the start of the whole argument.
  eval(["a $<< 1 >> b $<< fromJSON('[') >>"])
    .stdout("")
    .stderr(
      r"
      <expr>:1:18: error: fromJSON: invalid JSON: EOF while parsing a list at line 1 column 1
        |
      1 | a $<< 1 >> b $<< fromJSON('[') >>
        |                  ^^^^^^^^^^^^^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn unknown_namespaces_are_errors_even_when_short_circuited() {
  eval(["false && paramters.x"])
    .stdout("")
    .stderr(
      r"
      <expr>:1:10: error: unknown namespace `paramters`, did you mean `parameters`?
        |
      1 | false && paramters.x
        |          ^^^^^^^^^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn bad_context_files_are_reported_with_positions() {
  let test = Test::new()
    .bytes("broken.json", b"{\n  \"a\": [1,\n}\n")
    .bytes("list.json", b"[1]");
  test
    .clone()
    .args(["eval", "a", "--context", "broken.json"])
    .stdout("")
    .stderr(
      r"
      broken.json:3:1: error: invalid JSON: expected value at line 3 column 1
        |
      3 | }
        | ^
      ",
    )
    .status(2)
    .run();
  test
    .args(["eval", "a", "--context", "list.json"])
    .stdout("")
    .stderr(
      r"
      list.json:1:1: error: `--context` must be a JSON object, found array
        |
      1 | [1]
        | ^
      ",
    )
    .status(2)
    .run();
}
