//! Fan-out (SPEC section 11): `for_each` and `matrix`, item order, per-stage `max_parallel`,
//! fail-fast, outputs as arrays in item order, zero items, and the static checks.
use super::*;

/// The one event named `name` of stage `stage` itself (not of one of its items).
#[track_caller]
fn whole<'a>(out: &'a crate::test::Output, name: &str, stage: &str) -> &'a Value {
  let found: Vec<&Value> = out
    .named(name, stage)
    .into_iter()
    .filter(|e| e.get("item").is_none())
    .collect();
  assert_eq!(found.len(), 1, "{}", out.dump());
  found[0]
}

/// The `item` field of each event named `name` of stage `stage`, in stream order.
fn items_of(out: &crate::test::Output, name: &str, stage: &str) -> Vec<u64> {
  out
    .named(name, stage)
    .iter()
    .filter_map(|e| e["item"].as_u64())
    .collect()
}

#[test]
fn items_start_in_order_within_the_stages_max_parallel_and_outputs_are_arrays_in_item_order() {
  let out = run_wf(
    r#"
name: fan
config: { max_parallel: 8 }
stages:
  - id: test
    for_each: [a, b, c, d, e, f]
    max_parallel: 2
    uses: shell
    with:
      run: |
        echo "start $<< index >>" >> log.txt
        sleep 0.1
        echo "end $<< index >>" >> log.txt
        echo "name=pkg-$<< item >>" >> "$SWDL_OUTPUT"
  - id: after
    depends_on: [test]
    uses: echo
    with:
      names: "$<< stages.test.outputs.name >>"
      items: "$<< stages.test.items >>"
      attempts: "$<< stages.test.attempts >>"
outputs:
  names: "$<< stages.after.outputs.names >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(items_of(&out, "stage_started", "test"), [0, 1, 2, 3, 4, 5]);
  let keys: Vec<&str> = out
    .named("stage_started", "test")
    .iter()
    .filter_map(|e| e["key"].as_str())
    .collect();
  assert_eq!(keys, ["a", "b", "c", "d", "e", "f"]);
  // Never more than two items at once, and two at some point.
  let log = std::fs::read_to_string(out.path().join("log.txt")).expect("log");
  let (mut now, mut most) = (0i32, 0i32);
  for line in log.lines() {
    now += if line.starts_with("start") { 1 } else { -1 };
    most = most.max(now);
  }
  assert_eq!(most, 2, "{log}");
  let after = out.outputs("after");
  assert_eq!(
    after["names"],
    json!(["pkg-a", "pkg-b", "pkg-c", "pkg-d", "pkg-e", "pkg-f"])
  );
  assert_eq!(after["attempts"], 6);
  assert_eq!(after["items"][2]["index"], 2);
  assert_eq!(after["items"][2]["key"], "c");
  assert_eq!(after["items"][2]["item"], "c");
  assert_eq!(after["items"][2]["status"], "completed");
  assert_eq!(after["items"][2]["outputs"]["name"], "pkg-c");
  // The stage's own completion carries the arrays; its items' events carry `item` and `key`.
  assert_eq!(
    whole(&out, "stage_completed", "test")["outputs"]["name"][5],
    "pkg-f"
  );
  assert_eq!(out.completed()["outputs"]["names"][0], "pkg-a");
}

#[test]
fn fail_fast_cancels_the_items_in_flight_and_starts_no_more() {
  let out = run_wf(
    r#"
name: fast
stages:
  - id: test
    for_each: [slow, bad, c, d]
    max_parallel: 2
    uses: shell
    with: { run: 'if [ "$<< item >>" = bad ]; then echo broken >&2; exit 3; fi; sleep 30' }
  - id: after
    depends_on: [test]
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert!(out.elapsed < Duration::from_secs(20), "{}", out.dump());
  assert_eq!(items_of(&out, "stage_started", "test"), [0, 1]);
  let cancelled: Vec<(u64, Value, Value)> = out
    .named("stage_cancelled", "test")
    .iter()
    .map(|e| {
      (
        e["item"].as_u64().unwrap_or(99),
        e["attempt"].clone(),
        e["reason"].clone(),
      )
    })
    .collect();
  assert_eq!(
    cancelled,
    [
      (0, json!(1), json!("fail_fast")),
      (2, Value::Null, json!("fail_fast")),
      (3, Value::Null, json!("fail_fast")),
    ]
  );
  assert_eq!(out.final_status("test"), "failed");
  assert_eq!(out.final_status("after"), "cancelled");
  assert!(
    out
      .error_of("test")
      .starts_with("4 of 4 items did not complete; item 1 (bad): "),
    "{}",
    out.error_of("test")
  );
}

#[test]
fn under_continue_a_failed_item_leaves_null_in_the_outputs_arrays() {
  let out = run_wf(
    r#"
name: partial
stages:
  - id: square
    for_each: [1, 2, 3]
    fail_fast: false
    on_failure: continue
    uses: shell
    with: { run: 'test $<< item >> -ne 2 && echo "sq=$<< item * item >>" >> "$SWDL_OUTPUT"' }
  - id: report
    depends_on: [square]
    if: failure()
    uses: echo
    with:
      squares: "$<< stages.square.outputs.sq >>"
      statuses: "$<< stages.square.items >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(items_of(&out, "stage_started", "square"), [0, 1, 2]);
  let report = out.outputs("report");
  assert_eq!(report["squares"], json!([1, null, 9]));
  let statuses: Vec<&str> = (0..3)
    .filter_map(|i| report["statuses"][i]["status"].as_str())
    .collect();
  assert_eq!(statuses, ["completed", "failed", "completed"]);
  assert_eq!(out.final_status("square"), "failed");
}

#[test]
fn a_matrix_expands_with_exclude_and_include_in_githubs_order() {
  let out = run_wf(
    r#"
name: matrix
stages:
  - id: build
    matrix:
      os: [linux, mac]
      rust: [stable, beta]
      exclude: [{ os: mac, rust: beta }]
      include: [{ os: linux, rust: nightly }, { os: mac, experimental: true }]
    uses: echo
    with: { target: "$<< matrix.os >>-$<< matrix.rust >>", experimental: "$<< matrix.experimental >>" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let keys: Vec<&str> = out
    .named("stage_started", "build")
    .iter()
    .filter_map(|e| e["key"].as_str())
    .collect();
  assert_eq!(
    keys,
    [
      "linux,stable",
      "linux,beta",
      "mac,stable,true",
      "linux,nightly"
    ]
  );
  let outputs = &whole(&out, "stage_completed", "build")["outputs"];
  assert_eq!(
    outputs["target"],
    json!(["linux-stable", "linux-beta", "mac-stable", "linux-nightly"])
  );
  assert_eq!(outputs["experimental"], json!([null, null, true, null]));
}

#[test]
fn no_items_skip_the_stage_without_blocking_its_dependents_and_a_non_list_fails_it() {
  let out = run_wf(
    r#"
name: empty
parameters:
  n: { type: number, default: 3 }
stages:
  - id: maybe
    if: false
    uses: echo
  - id: none
    for_each: "$<< stages.maybe.outputs.list >>"
    depends_on: [maybe]
    uses: echo
  - id: empty
    for_each: []
    uses: echo
  - id: after
    depends_on: [none, empty]
    uses: echo
  - id: number
    for_each: "$<< parameters.n >>"
    on_failure: continue
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  for stage in ["none", "empty"] {
    assert_eq!(whole(&out, "stage_skipped", stage)["reason"], "no items");
  }
  assert_eq!(out.final_status("after"), "completed");
  assert_eq!(out.final_status("number"), "failed");
  assert_eq!(
    out.error_of("number"),
    "`for_each` must give a list, got integer"
  );
  assert_eq!(out.one("stage_failed", "number")["reason"], "items");
}

#[test]
fn the_progress_display_names_items_and_counts_stages() {
  Test::new()
    .workflow(
      r#"
name: shown
stages:
  - id: each
    for_each: [x, y]
    max_parallel: 1
    uses: echo
"#,
    )
    .args(["run", "wf.yaml", "--progress", "plain"])
    .stdout("")
    .stderr(
      "
      [..] run shown started (1 stage, max_parallel [..])
      [..] stage each[0] started (attempt 1, uses echo)
      [..] stage each[0] completed in [..]
      [..] stage each[1] started (attempt 1, uses echo)
      [..] stage each[1] completed in [..]
      [..] stage each completed in [..] (2 items completed)
      [..] run completed in [..]
      completed 1/1 stages in [..]
      ",
    )
    .status(0)
    .run();
}

#[test]
fn on_halt_each_completed_item_is_compensated_in_reverse_completion_order() {
  let out = run_wf(
    r#"
name: saga
stages:
  - id: deploy
    for_each: [eu, us, ap]
    max_parallel: 1
    uses: shell
    with: { run: 'echo "at=$<< item >>-$<< index >>" >> "$SWDL_OUTPUT"' }
    compensate: { uses: shell, with: { run: 'echo "undo $<< item >> $<< stages.deploy.outputs.at >>" >> undo.log' } }
  - id: check
    depends_on: [deploy]
    uses: fail
    with: { message: "smoke test failed" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let undo = std::fs::read_to_string(out.path().join("undo.log")).expect("compensated");
  assert_eq!(undo, "undo ap ap-2\nundo us us-1\nundo eu eu-0\n");
  assert_eq!(
    items_of(&out, "compensation_completed", "deploy"),
    [2, 1, 0]
  );
}

#[test]
fn a_fanned_out_stages_env_is_resolved_per_item() {
  let out = run_wf(
    r#"
name: env
stages:
  - id: deploy
    for_each: [eu, us]
    env: { REGION: "region-$<< item >>" }
    uses: shell
    with: { run: 'echo "where=$REGION/$<< env.REGION >>" >> "$SWDL_OUTPUT"' }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(
    whole(&out, "stage_completed", "deploy")["outputs"]["where"],
    json!(["region-eu/region-eu", "region-us/region-us"])
  );
}
