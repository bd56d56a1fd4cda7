//! Fan-out and the store: each item's attempts are kept, so a resume after kill -9 re-runs only
//! the items not recorded completed, and `swdl retry` re-runs only the items that failed.
use super::*;

/// Lines of `name` in the project, counted by content.
fn counts(p: &Project, name: &str) -> HashMap<String, usize> {
  let text = std::fs::read_to_string(p.path().join(name)).unwrap_or_default();
  let mut counts = HashMap::new();
  for line in text.lines() {
    *counts.entry(line.to_string()).or_default() += 1;
  }
  counts
}

#[test]
fn kill_9_in_the_middle_of_a_1000_item_fan_out_and_resume_reruns_only_unfinished_items() {
  let p = Project::new();
  p.write(
    "many.yaml",
    r#"
name: many
config: { max_parallel: 4 }
stages:
  - id: each
    for_each: "$<< fromJSON(parameters.list) >>"
    uses: shell
    with: { run: 'echo $<< item >> >> ran.log; sleep 0.005; echo "sq=$<< item * item >>" >> "$SWDL_OUTPUT"' }
parameters:
  list: { type: string }
outputs:
  squares: "$<< stages.each.outputs.sq >>"
"#,
  );
  let list: Vec<u32> = (0..1000).collect();
  let list = serde_json::to_string(&list).expect("json");
  let param = format!("list={list}");
  let mut child = p.spawn_run("many.yaml", &["--param", &param]);
  let id = p.wait_run_id();
  let started = wait_for(Duration::from_secs(30), || {
    counts(&p, "ran.log").len() >= 200
  });
  assert!(started, "the fan-out did not get going");
  let _ = child.kill();
  let _ = child.wait();
  // What the store holds as completed now must never run again.
  let detail = p.detail(&id);
  let items = detail["state"]["stages"]["each"]["items"]
    .as_array()
    .cloned()
    .unwrap_or_default();
  let completed: Vec<String> = items
    .iter()
    .filter(|i| i["status"] == "completed")
    .map(|i| i["key"].as_str().unwrap_or_default().to_string())
    .collect();
  assert!(completed.len() >= 100, "{} completed", completed.len());
  assert!(completed.len() < 1000, "the run finished before the kill");
  let before = counts(&p, "ran.log");
  let out = p
    .swdl(&["resume", &id, "--progress", "none", "--output", "json"])
    .status(0)
    .run();
  let after = counts(&p, "ran.log");
  assert_eq!(after.len(), 1000, "every item ran");
  for key in &completed {
    assert_eq!(
      after.get(key),
      before.get(key),
      "item {key} was recorded completed and ran again"
    );
  }
  // What ran twice had started without its completion recorded: in flight at the kill, or
  // finished with its completion not yet committed (which the durability rule allows).
  for (key, n) in &after {
    assert!(
      *n == 1 || !completed.contains(key),
      "item {key} ran {n} times although recorded completed"
    );
  }
  let squares = out.json()["outputs"]["squares"].clone();
  let expected: Vec<u64> = (0..1000u64).map(|i| i * i).collect();
  assert_eq!(squares, serde_json::json!(expected));
}

#[test]
fn a_retry_reruns_only_the_items_that_failed() {
  let p = Project::new();
  p.write(
    "items.yaml",
    r#"
name: items
stages:
  - id: each
    for_each: [a, b, c, d]
    fail_fast: false
    uses: shell
    with: { run: 'echo $<< item >> >> ran.log; test "$<< item >>" != c || test -f fixed || exit 1; echo "up=$<< index * 10 >>" >> "$SWDL_OUTPUT"' }
outputs:
  ups: "$<< stages.each.outputs.up >>"
"#,
  );
  p.swdl(&["run", "items.yaml", "--progress", "none"])
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let first = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  let ran = counts(&p, "ran.log");
  assert_eq!(ran.len(), 4);
  // `swdl runs ID` lists each item's attempt under its unit's name.
  let mut attempts: Vec<String> = p.detail(&first)["attempts"]
    .as_array()
    .cloned()
    .unwrap_or_default()
    .iter()
    .map(|a| {
      format!(
        "{} {}",
        a["stage"].as_str().unwrap_or_default(),
        a["status"].as_str().unwrap_or_default()
      )
    })
    .collect();
  attempts.sort();
  assert_eq!(
    attempts,
    [
      "each[0] completed",
      "each[1] completed",
      "each[2] failed",
      "each[3] completed"
    ]
  );
  std::fs::remove_file(p.path().join("ran.log")).expect("clear the log");
  p.write("fixed", "");
  let out = p
    .swdl(&["retry", &first, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(
    std::fs::read_to_string(p.path().join("ran.log")).expect("log"),
    "c\n",
    "only the failed item runs again"
  );
  assert_eq!(
    out.json()["outputs"]["ups"],
    serde_json::json!([0, 10, 20, 30])
  );
  let items = &out.json()["stages"]["each"]["items"];
  assert_eq!(items[0]["reused_from"], first.as_str());
  assert_eq!(items[2].get("reused_from"), None);
}

#[test]
fn a_retry_reuses_a_completed_fan_out_item_by_item() {
  let p = Project::new();
  p.write(
    "whole.yaml",
    r#"
name: whole
stages:
  - id: each
    for_each: [a, b]
    uses: shell
    with: { run: 'echo $<< item >> >> ran.log; echo "v=$<< item >>" >> "$SWDL_OUTPUT"' }
  - id: later
    depends_on: [each]
    uses: shell
    with: { run: 'test -f fixed' }
"#,
  );
  p.swdl(&["run", "whole.yaml", "--progress", "none"])
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let first = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  std::fs::remove_file(p.path().join("ran.log")).expect("clear the log");
  p.write("fixed", "");
  let out = p
    .swdl(&["retry", &first, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert!(!p.path().join("ran.log").exists(), "no item ran again");
  let each = &out.json()["stages"]["each"];
  assert_eq!(each["outputs"]["v"], serde_json::json!(["a", "b"]));
  assert_eq!(each["items"][0]["reused_from"], first.as_str());
  assert_eq!(each["items"][1]["reused_from"], first.as_str());
}
