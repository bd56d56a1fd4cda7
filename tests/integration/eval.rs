use crate::common::{TempDir, swdl};

fn eval(args: &[&str]) -> (i32, String, String) {
  let mut all = vec!["eval"];
  all.extend_from_slice(args);
  let run = swdl(&all);
  (run.status, run.stdout, run.stderr)
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
    let (status, stdout, stderr) = eval(&[expr]);
    assert_eq!(status, 0, "{expr}: {stderr}");
    assert_eq!(stdout, format!("{expected}\n"), "{expr}");
  }
}

#[test]
fn context_file_keys_become_namespaces() {
  let dir = TempDir::new();
  let context = dir.write(
    "ctx.json",
    r#"{"parameters": {"n": 3, "tags": ["Fast", "small"]}, "stages": {"a": {"outputs": {"x": "Y"}}}, "custom": {"k": 1}}"#,
  );
  let context = context.display().to_string();
  let cases = [
    ("stages.a.outputs.x == 'y' && parameters.n > 2", "true"),
    ("contains(parameters.tags, 'fast')", "true"),
    ("Parameters.N", "3"),
    ("custom.k", "1"),
    ("stages.missing.outputs.x", "null"),
    ("join(parameters.tags, '+')", "\"Fast+small\""),
  ];
  for (expr, expected) in cases {
    let (status, stdout, stderr) = eval(&[expr, "--context", &context]);
    assert_eq!(status, 0, "{expr}: {stderr}");
    assert_eq!(stdout, format!("{expected}\n"), "{expr}");
  }
}

#[test]
fn parse_errors_exit_2_with_the_column() {
  let (status, stdout, stderr) = eval(&["parameters.n > 2 && fromJSN('1')"]);
  assert_eq!(status, 2);
  assert_eq!(stdout, "");
  assert!(
    stderr
      .starts_with("<expr>:1:21: error: unknown function `fromJSN`, did you mean `fromJSON`?\n"),
    "{stderr}"
  );
  assert!(
    stderr.contains("  |                     ^^^^^^^\n"),
    "{stderr}"
  );
}

#[test]
fn evaluation_errors_exit_2_with_the_column() {
  let (status, _, stderr) = eval(&["'x' && format('{0', 1)"]);
  assert_eq!(status, 2);
  assert!(
    stderr.starts_with("<expr>:1:15: error: invalid format string `{0`"),
    "{stderr}"
  );
  // Inside delimiters the column counts from the start of the whole argument.
  let (status, _, stderr) = eval(&["a $<< 1 >> b $<< fromJSON('[') >>"]);
  assert_eq!(status, 2);
  assert!(
    stderr.starts_with("<expr>:1:18: error: fromJSON: invalid JSON"),
    "{stderr}"
  );
}

#[test]
fn unknown_namespaces_are_errors_even_when_short_circuited() {
  let (status, _, stderr) = eval(&["false && paramters.x"]);
  assert_eq!(status, 2);
  assert!(
    stderr
      .starts_with("<expr>:1:10: error: unknown namespace `paramters`, did you mean `parameters`?"),
    "{stderr}"
  );
}

#[test]
fn bad_context_files_are_reported_with_positions() {
  let dir = TempDir::new();
  let broken = dir.write("broken.json", "{\n  \"a\": [1,\n}\n");
  let (status, _, stderr) = eval(&["a", "--context", &broken.display().to_string()]);
  assert_eq!(status, 2);
  assert!(
    stderr.contains("broken.json:3:1: error: invalid JSON"),
    "{stderr}"
  );
  let list = dir.write("list.json", "[1]");
  let (status, _, stderr) = eval(&["a", "--context", &list.display().to_string()]);
  assert_eq!(status, 2);
  assert!(
    stderr.contains("`--context` must be a JSON object, found array"),
    "{stderr}"
  );
}
