//! Failures the runtime finds in the file itself while a run goes on are shown like load
//! errors: `FILE:LINE:COL`, the line, and a caret under the failing expression.
use crate::test::Test;

/// Runs `yaml` as `wf.yaml` with `--store none --progress none --events events.jsonl`.
fn run(yaml: &str) -> Test {
  Test::new().workflow(yaml).args([
    "run",
    "wf.yaml",
    "--store",
    "none",
    "--progress",
    "none",
    "--events",
    "events.jsonl",
  ])
}

#[test]
fn a_failing_with_expression_is_reported_at_its_position_with_a_caret() {
  let out = run(
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
  )
  .stdout("")
  .stderr(
    "wf.yaml:11:20: error: stage `b`: inputs could not be evaluated: fromJSON: invalid JSON: \
     expected value at line 1 column 1
   |
11 |       message: $<< fromJSON(stages.a.outputs.message) >>
   |                    ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
",
  )
  .status(1)
  .run();
  // The event keeps the whole account, expression text included.
  assert_eq!(out.count("stage_failed"), 1, "{}", out.dump());
  let failed = out.one("stage_failed", "b");
  assert_eq!(
    failed["error"],
    "inputs could not be evaluated: `$<< fromJSON(stages.a.outputs.message) >>`: fromJSON: \
     invalid JSON: expected value at line 1 column 1"
  );
  assert_eq!(failed["reason"], "inputs");
}

#[test]
fn env_conditions_and_outputs_that_fail_point_at_their_expressions() {
  run(
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
  )
  .stdout("")
  .stderr(
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
",
  )
  .status(1)
  .run();
}
