//! Invalid input stops a run before its first event.
use super::*;

#[test]
fn invalid_param_exits_2_before_any_event() {
  let out = run_wf(
    r#"
name: bad-param
parameters:
  n: { type: integer, required: true }
stages:
  - id: a
    uses: echo
    with: { n: "$<< parameters.n >>" }
"#,
  )
  .args(["--param", "n=lots", "--output", "json"])
  .stdout("")
  // The bad value is also reported as a missing parameter.
  .stderr(
    r#"
    --param:1:3: error: parameter `n` expects integer, got `lots`
      |
    1 | n=lots
      |   ^^^^
    wf.yaml:3:3: error: missing required parameter `n`: pass --param n=VALUE
      |
    3 |   n: { type: integer, required: true }
      |   ^
    2 errors
    "#,
  )
  .status(2)
  .run();
  assert!(out.events.is_empty(), "events were written: {}", out.dump());

  // A missing required parameter too.
  let out = out
    .then()
    .args(RUN)
    .stdout("")
    .stderr(
      r#"
      wf.yaml:3:3: error: missing required parameter `n`: pass --param n=VALUE
        |
      3 |   n: { type: integer, required: true }
        |   ^
      "#,
    )
    .status(2)
    .run();
  assert!(out.events.is_empty());
}

#[test]
fn a_non_builtin_skill_exits_2_with_its_position() {
  let out = run_wf(
    "name: unknown-skill\nstages:\n  - id: a\n    uses: echo\n  - id: b\n    uses: summarise-text\n",
  )
  .stdout("")
  .stderr(
    r#"
    wf.yaml:6:11: error: unknown skill `summarise-text`: not a built-in skill, and no `NAME.lua` or `NAME/init.lua` on the skills path
      |
    6 |     uses: summarise-text
      |           ^^^^^^^^^^^^^^
    "#,
  )
  .status(2)
  .run();
  assert!(out.events.is_empty(), "{}", out.dump());
}
