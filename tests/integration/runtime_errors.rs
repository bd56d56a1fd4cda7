//! Failures the runtime finds in the file itself while a run goes on are shown like load
//! errors: `FILE:LINE:COL`, the line, and a caret under the failing expression.
use crate::common::{TempDir, read_events};
use std::process::{Command, Stdio};

/// Runs `swdl run wf.yaml --store none --progress none --events events.jsonl` in `dir`.
fn run(dir: &TempDir, yaml: &str) -> (i32, String, Vec<serde_json::Value>) {
  dir.write("wf.yaml", yaml);
  let output = Command::new(env!("CARGO_BIN_EXE_swdl"))
    .args([
      "run",
      "wf.yaml",
      "--store",
      "none",
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
    .current_dir(dir.path())
    .env("NO_COLOR", "1")
    .stdin(Stdio::null())
    .output()
    .expect("swdl runs");
  (
    output.status.code().unwrap_or(-1),
    String::from_utf8_lossy(&output.stderr).into_owned(),
    read_events(&dir.path().join("events.jsonl")),
  )
}

#[test]
fn a_failing_with_expression_is_reported_at_its_position_with_a_caret() {
  let dir = TempDir::new();
  let (status, stderr, events) = run(
    &dir,
    "name: p
stages:
  - id: a
    uses: echo
    with:
      message: hi
  - id: b
    uses: echo
    depends_on: [a]
    with:
      message: $<< fromJSON(stages.a.outputs.message) >>
",
  );
  assert_eq!(status, 1, "{stderr}");
  assert_eq!(
    stderr,
    "wf.yaml:11:20: error: stage `b`: inputs could not be evaluated: fromJSON: invalid JSON: \
     expected value at line 1 column 1
   |
11 |       message: $<< fromJSON(stages.a.outputs.message) >>
   |                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
"
  );
  // The event keeps the whole account, expression text included.
  let failed: Vec<_> = events
    .iter()
    .filter(|e| e["event"] == "stage_failed")
    .collect();
  assert_eq!(failed.len(), 1);
  assert_eq!(
    failed[0]["error"],
    "inputs could not be evaluated: `$<< fromJSON(stages.a.outputs.message) >>`: fromJSON: \
     invalid JSON: expected value at line 1 column 1"
  );
  assert_eq!(failed[0]["reason"], "inputs");
}

#[test]
fn env_conditions_and_outputs_that_fail_point_at_their_expressions() {
  let dir = TempDir::new();
  let (status, stderr, _) = run(
    &dir,
    "name: p
config:
  env:
    X: $<< fromJSON('{') >>
stages:
  - id: a
    uses: echo
    if: fromJSON('[') == 1
    with:
      message: hi
outputs:
  o: $<< fromJSON('nope') >>
",
  );
  assert_eq!(status, 1, "{stderr}");
  assert_eq!(
    stderr,
    "wf.yaml:4:12: error: config.env.X: fromJSON: invalid JSON: EOF while parsing an object at \
     line 1 column 1
  |
4 |     X: $<< fromJSON('{') >>
  |            ^^^^^^^^^^^^^
wf.yaml:8:9: error: stage `a`: `if` could not be evaluated: fromJSON: invalid JSON: EOF while \
     parsing a list at line 1 column 1
  |
8 |     if: fromJSON('[') == 1
  |         ^^^^^^^^^^^^^
wf.yaml:12:10: error: workflow output `o` could not be evaluated: fromJSON: invalid JSON: \
     expected ident at line 1 column 2
   |
12 |   o: $<< fromJSON('nope') >>
   |          ^^^^^^^^^^^^^^^^
"
  );
}
