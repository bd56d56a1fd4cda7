//! Conditions and skips.
use super::*;

#[test]
fn a_stage_skipped_by_its_own_condition_does_not_block_dependents() {
  let out = run_wf(
    r#"
name: skip
parameters:
  enabled: { type: boolean, default: false }
stages:
  - id: optional
    if: "$<< parameters.enabled >>"
    uses: echo
    with: { x: 1 }
  - id: consumer
    depends_on: optional
    uses: echo
    with: { x: "$<< stages.optional.outputs.x >>", st: "$<< stages.optional.status >>" }
  - id: last
    depends_on: consumer
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let skipped = out.named("stage_skipped", "optional");
  assert_eq!(skipped.len(), 1, "{}", out.dump());
  assert_eq!(skipped[0]["reason"], "condition");
  let inputs = &out.named("stage_started", "consumer")[0]["inputs"];
  assert_eq!(inputs["x"], Value::Null);
  assert_eq!(inputs["st"], "skipped");
  assert_eq!(out.final_status("consumer"), "completed");
  assert_eq!(out.final_status("last"), "completed");
  assert_eq!(out.completed()["status"], "completed");

  // The same workflow with the condition true runs the stage.
  let out = out
    .then()
    .args(RUN)
    .args(["--param", "enabled=true"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(out.named("stage_started", "consumer")[0]["inputs"]["x"], 1);
}

#[test]
fn a_skip_caused_by_failure_propagates_down_the_chain() {
  let out = run_wf(
    r#"
name: chain
stages:
  - id: a
    uses: fail
    on_failure: continue
  - id: b
    depends_on: a
    uses: echo
  - id: c
    depends_on: b
    if: "$<< true >>"
    uses: echo
  - id: d
    depends_on: c
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  for stage in ["b", "c", "d"] {
    let skipped = out.named("stage_skipped", stage);
    assert_eq!(skipped.len(), 1, "{stage}: {}", out.dump());
    assert_eq!(skipped[0]["reason"], "dependency", "{stage}");
    assert!(out.named("stage_started", stage).is_empty());
  }
}
