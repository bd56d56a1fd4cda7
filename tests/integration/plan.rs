//! `swdl plan`: batches, the critical path, durations and parameters, in every format.
use crate::test::Test;

const DIAMOND: &str = r#"
name: shape
parameters:
  fast: { type: boolean, default: false }
  n: { type: integer, required: true }
config: { max_parallel: 2, timeout: 1h }
stages:
  - id: start
    uses: sleep
    with: { ms: 100 }
  - id: left
    depends_on: start
    uses: sleep
    with: { ms: 500 }
    retry: { max_attempts: 3, backoff: exponential, delay: 1s }
    timeout: 10s
  - id: right
    depends_on: start
    uses: shell
    with: { run: "true" }
  - id: ok
    depends_on: [left, right]
    gate: { message: "go?", timeout: 5m }
  - id: end
    depends_on: ok
    uses: echo
"#;

/// `swdl plan wf.yaml` on [`DIAMOND`] with `args` after it.
fn plan<const N: usize>(args: [&str; N]) -> Test {
  Test::new()
    .workflow(DIAMOND)
    .args(["plan", "wf.yaml"])
    .args(args)
}

fn plan_json() -> serde_json::Value {
  plan(["--param", "n=1", "--format", "json"])
    .stderr("")
    .status(0)
    .run()
    .json()
}

#[test]
fn batches_are_the_dag_levels() {
  let plan = plan_json();
  assert_eq!(
    plan["batches"],
    serde_json::json!([["start"], ["left", "right"], ["ok"], ["end"]])
  );
  assert_eq!(plan["max_parallel"], 2);
  assert_eq!(plan["gates"], serde_json::json!(["ok"]));
}

#[test]
fn critical_path_follows_the_longest_known_duration() {
  let plan = plan_json();
  assert_eq!(
    plan["critical_path"],
    serde_json::json!(["start", "left", "ok", "end"])
  );
  assert_eq!(plan["estimated_duration_ms"], 600);
  assert_eq!(plan["unknown_duration"], serde_json::json!(["right"]));
}

#[test]
fn worst_case_counts_attempts_backoff_and_is_capped_by_the_run_timeout() {
  let plan = plan_json();
  let left = &plan["stages"][1];
  // 3 attempts of 10s plus backoff delays of 1s and 2s.
  assert_eq!(left["worst_case_ms"], 33_000);
  assert_eq!(left["max_attempts"], 3);
  assert_eq!(plan["worst_case_ms"], 3_600_000);
}

#[test]
fn missing_required_parameter_points_at_its_declaration() {
  plan([])
    .stdout("")
    .stderr(
      r"
      wf.yaml:4:3: error: missing required parameter `n`: pass --param n=VALUE
        |
      4 |   n: { type: integer, required: true }
        |   ^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn parameter_values_are_converted_and_checked() {
  // A bad --param leaves `n` missing too, which is reported after it.
  const MISSING: &str = "
    wf.yaml:4:3: error: missing required parameter `n`: pass --param n=VALUE
      |
    4 |   n: { type: integer, required: true }
      |   ^
    2 errors
  ";
  let cases = [
    (
      "n=two",
      r"
      --param:1:3: error: parameter `n` expects integer, got `two`
        |
      1 | n=two
        |   ^^^
      ",
    ),
    (
      "nn=2",
      r"
      --param:1:1: error: unknown parameter `nn` given with --param, did you mean `n`?
        |
      1 | nn=2
        | ^^
      ",
    ),
    (
      "n",
      r"
      --param:1:1: error: --param `n` must look like name=value
        |
      1 | n
        | ^
      ",
    ),
  ];
  for (param, error) in cases {
    let expected = crate::test::unindent(error) + &crate::test::unindent(MISSING);
    plan(["--param", param])
      .stdout("")
      .stderr(&expected)
      .status(2)
      .run();
  }
}

#[test]
fn text_plan_shows_batches_arrows_and_summary() {
  // NO_COLOR is set and stdout is a pipe: the comparison also shows there are no colour codes.
  plan(["--param", "n=3"])
    .stdout(
      r"
      plan shape (5 stages, 4 batches, max_parallel 2)

      batch 1
        * start  uses sleep
                 timeout 2h

      batch 2
        * left   <- start  uses sleep
                 timeout 10s  retry 3x exponential 1s
        * right  <- start  uses shell
                 timeout 2h

      batch 3
        ? ok     <- left, right  gate
                 timeout 5m

      batch 4
        * end    <- ok  uses echo
                 timeout 2h

      critical path: start -> left -> ok -> end
      gates: ok
      estimated duration: 600ms + 1 stage of unknown duration
      worst case: 1h
      ",
    )
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn dot_and_mermaid_draw_every_edge() {
  plan(["--param", "n=3", "--format", "dot"])
    .stdout(
      r#"
      digraph "shape" {
        rankdir=LR;
        node [shape=box];
        "start" [label="start\nsleep", penwidth=2];
        "left" [label="left\nsleep", penwidth=2];
        "right" [label="right\nshell"];
        "ok" [label="ok\n(gate)", shape=diamond, penwidth=2];
        "end" [label="end\necho", penwidth=2];
        "start" -> "left" [penwidth=2];
        "start" -> "right";
        "left" -> "ok" [penwidth=2];
        "right" -> "ok";
        "ok" -> "end" [penwidth=2];
      }
      "#,
    )
    .stderr("")
    .status(0)
    .run();
  plan(["--param", "n=3", "--format", "mermaid"])
    .stdout(
      r#"
      flowchart TD
        s_start["start: sleep"]
        s_left["left: sleep"]
        s_right["right: shell"]
        s_ok{"ok (gate)"}
        s_end["end: echo"]
        s_start --> s_left
        s_start --> s_right
        s_left --> s_ok
        s_right --> s_ok
        s_ok --> s_end
      "#,
    )
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn conditions_decided_by_parameters_are_marked() {
  let test = Test::new().workflow(
    r#"
    name: t
    parameters:
      env: { type: string, default: dev }
    stages:
      - { id: a, uses: echo, if: "$<< parameters.env == 'prod' >>" }
      - { id: b, uses: echo, if: "$<< parameters.env != 'prod' >>" }
      - { id: c, uses: echo, depends_on: a, if: "$<< failure() >>" }
    "#,
  );
  let json = test
    .clone()
    .args(["plan", "wf.yaml", "--format", "json"])
    .stderr("")
    .status(0)
    .run()
    .json();
  assert_eq!(json["stages"][0]["decision"], "will skip");
  assert_eq!(json["stages"][1]["decision"], "will run");
  assert!(json["stages"][2].get("decision").is_none());
  // String comparison is case-insensitive, as in GitHub Actions.
  test
    .args(["plan", "wf.yaml", "--param", "env=PROD"])
    .stdout(
      r"
      plan t (3 stages, 2 batches, max_parallel 3)

      batch 1
        * a  uses echo
             if $<< parameters.env == 'prod' >> (will run)  timeout 2h
        * b  uses echo
             if $<< parameters.env != 'prod' >> (will skip)  timeout 2h

      batch 2
        * c  <- a  uses echo
             if $<< failure() >>  timeout 2h

      critical path: a -> c
      estimated duration: 0ms
      worst case: 4h
      ",
    )
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn a_fan_out_known_from_parameters_is_counted_and_one_that_is_not_shows_a_question_mark() {
  let yaml = r#"
name: p
parameters:
  regions: { type: array, default: [eu, us, ap] }
stages:
  - id: list
    uses: echo
  - id: deploy
    for_each: "$<< parameters.regions >>"
    uses: echo
  - id: test
    depends_on: [list]
    for_each: "$<< stages.list.outputs.x >>"
    uses: echo
  - id: build
    matrix: { os: [a, b, c], rust: [x, y, z], arch: [1, 2, 3], exclude: [{ os: a }] }
    uses: echo
"#;
  Test::new()
    .workflow(yaml)
    .args(["plan", "wf.yaml", "--param", r#"regions=["eu","us"]"#])
    .stdout(
      "
      plan p (4 stages, 2 batches, max_parallel 3)

      batch 1
        * list       uses echo
                     timeout 2h
        * deploy ×2  uses echo
                     timeout 2h
        * build ×18  uses echo
                     timeout 2h

      batch 2
        * test ×?    <- list  uses echo
                     timeout 2h

      critical path: list -> test
      estimated duration: 0ms
      worst case: 4h
      ",
    )
    .stderr("")
    .status(0)
    .run();
}
