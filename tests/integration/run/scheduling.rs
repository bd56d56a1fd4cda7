//! Scheduling: dependency order, the ready queue, `max_parallel`.
use super::*;

#[test]
fn diamond_runs_in_dependency_order() {
  let out = run_wf(
    r#"
name: diamond
stages:
  - id: a
    uses: sleep
    with: { ms: 50 }
  - id: b
    depends_on: a
    uses: sleep
    with: { ms: 100 }
  - id: c
    depends_on: a
    uses: echo
    with: { v: c }
  - id: d
    depends_on: [b, c]
    uses: echo
    with: { v: d }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let a_done = out.index("stage_completed", "a");
  for mid in ["b", "c"] {
    assert!(out.index("stage_started", mid) > a_done, "{}", out.dump());
  }
  let d_start = out.index("stage_started", "d");
  assert!(
    d_start > out.index("stage_completed", "b"),
    "{}",
    out.dump()
  );
  assert!(
    d_start > out.index("stage_completed", "c"),
    "{}",
    out.dump()
  );
  assert_eq!(out.events[0]["event"], "run_started");
  assert_eq!(out.events[0]["stages"], 4);
  let completed = out.completed();
  assert_eq!(completed["status"], "completed");
  assert_eq!(
    completed["stages"],
    json!({"a": "completed", "b": "completed", "c": "completed", "d": "completed"})
  );
  // Every event names the same run and has a timestamp.
  let run_id = &out.events[0]["run"];
  assert!(
    out
      .events
      .iter()
      .all(|e| &e["run"] == run_id && e["ts"].is_string())
  );
}

#[test]
fn ready_queue_starts_a_stage_without_waiting_for_its_level() {
  // `quick2` (level 1) starts while `slow` (level 0) still runs: not level by level.
  let out = run_wf(
    r#"
name: ready
stages:
  - id: slow
    uses: sleep
    with: { ms: 400 }
  - id: quick
    uses: echo
  - id: quick2
    depends_on: quick
    uses: echo
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert!(
    out.index("stage_started", "quick2") < out.index("stage_completed", "slow"),
    "{}",
    out.dump()
  );
}

const EIGHT_SLEEPS: &str = r#"
name: wide
config: { max_parallel: 3 }
stages:
  - { id: s1, uses: sleep, with: { ms: 300 } }
  - { id: s2, uses: sleep, with: { ms: 300 } }
  - { id: s3, uses: sleep, with: { ms: 300 } }
  - { id: s4, uses: sleep, with: { ms: 300 } }
  - { id: s5, uses: sleep, with: { ms: 300 } }
  - { id: s6, uses: sleep, with: { ms: 300 } }
  - { id: s7, uses: sleep, with: { ms: 300 } }
  - { id: s8, uses: sleep, with: { ms: 300 } }
"#;

#[test]
fn peak_concurrency_reaches_but_never_exceeds_max_parallel() {
  let out = run_wf(EIGHT_SLEEPS).stdout("").stderr("").status(0).run();
  assert_eq!(out.events[0]["max_parallel"], 3);
  assert_eq!(peak_overlap(&out.events), 3, "{}", out.dump());
  let started = out
    .events
    .iter()
    .filter(|e| e["event"] == "stage_started")
    .count();
  assert_eq!(started, 8);
  // Stages start in file order when they are all ready at once.
  let order: Vec<&str> = out
    .events
    .iter()
    .filter(|e| e["event"] == "stage_started")
    .filter_map(|e| e["stage"].as_str())
    .collect();
  assert_eq!(order, ["s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8"]);
}

#[test]
fn max_parallel_flag_overrides_the_file() {
  let out = run_wf(EIGHT_SLEEPS)
    .args(["--max-parallel", "5"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(out.events[0]["max_parallel"], 5);
  assert_eq!(peak_overlap(&out.events), 5, "{}", out.dump());
}
