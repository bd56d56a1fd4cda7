//! Crash safety: kill -9 at random points, then resume; damaged or foreign stores.
use super::*;

/// 50 shell stages in a layered DAG; each appends its id to `ran.log` then sleeps a little.
fn crash_workflow() -> String {
  let mut text = String::from("name: crashy\nconfig: { max_parallel: 4 }\nstages:\n");
  for i in 0..50 {
    text.push_str(&format!(
      "  - id: s{i}\n    uses: shell\n    with: {{ run: \"echo s{i} >> ran.log && sleep 0.0{} && echo out-s{i}\" }}\n",
      i % 5 + 1
    ));
    if i >= 5 {
      let layer = (i / 5 - 1) * 5;
      text.push_str(&format!(
        "    depends_on: [s{}, s{}]\n",
        layer + i % 5,
        layer + (i + 1) % 5
      ));
    }
  }
  text
}

/// Status, attempts and outputs of every stage, as the store has them.
fn stages(p: &Project, id: &str) -> HashMap<String, (String, u64, serde_json::Value)> {
  let detail = p.detail(id);
  detail["state"]["stages"]
    .as_object()
    .map(|stages| {
      stages
        .iter()
        .map(|(k, v)| {
          (
            k.clone(),
            (
              v["status"].as_str().unwrap_or_default().to_string(),
              v["attempts"].as_u64().unwrap_or(0),
              v["outputs"].clone(),
            ),
          )
        })
        .collect()
    })
    .unwrap_or_default()
}

/// How many times each stage's command has run so far, from `ran.log`.
fn ran_counts(p: &Project) -> HashMap<String, usize> {
  let log = std::fs::read_to_string(p.path().join("ran.log")).unwrap_or_default();
  let mut counts = HashMap::new();
  for line in log.lines() {
    *counts.entry(line.trim().to_string()).or_default() += 1;
  }
  counts
}

#[test]
fn kill_9_at_random_points_then_resume_completes_without_repeating_completed_stages() {
  let start = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(7, |d| d.subsec_nanos().into());
  let mut seed = start | 1;
  let mut random = move |below: u64| {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    seed % below
  };
  for round in 0..6 {
    let context = format!("round {round} (seed {start})");
    let p = Project::new();
    p.write("crashy.yaml", &crash_workflow());
    let mut child = p.spawn_run("crashy.yaml", &[]);
    let id = p.wait_run_id();
    // For each stage seen completed after a crash: its outputs then, and how many times its
    // command had run by then. Neither may change afterwards.
    let mut recorded: HashMap<String, (serde_json::Value, usize)> = HashMap::new();
    // Stages seen in flight after a crash, with their attempts then.
    let mut in_flight: Vec<(String, u64)> = Vec::new();
    let mut finished = false;
    // Up to three crashes: the first run, then two resumes, each killed at a random moment.
    for _ in 0..3 {
      std::thread::sleep(Duration::from_millis(30 + random(400)));
      let _ = child.kill();
      let _ = child.wait();
      let seen = stages(&p, &id);
      let counts = ran_counts(&p);
      for (stage, (status, attempts, outputs)) in &seen {
        match status.as_str() {
          "completed" => {
            let ran = counts.get(stage).copied().unwrap_or(0);
            let (kept, _) = recorded
              .entry(stage.clone())
              .or_insert_with(|| (outputs.clone(), ran));
            assert_eq!(kept, outputs, "{context}: outputs of {stage} changed");
          }
          "running" => in_flight.push((stage.clone(), *attempts)),
          _ => {}
        }
      }
      if seen.values().all(|(status, _, _)| status == "completed") {
        finished = true;
        break;
      }
      child = p
        .command(&["resume", &id, "--progress", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn resume");
    }
    if !finished {
      let output = child.wait_with_output().expect("the last resume ends");
      assert_eq!(
        output.status.code(),
        Some(0),
        "{context}: {}",
        String::from_utf8_lossy(&output.stderr)
      );
    }
    let done = stages(&p, &id);
    assert_eq!(done.len(), 50);
    let counts = ran_counts(&p);
    for (stage, (status, _, outputs)) in &done {
      assert_eq!(status, "completed", "{context}: {stage}");
      assert_eq!(outputs["stdout"], format!("out-{stage}"), "{context}");
      assert!(
        counts.get(stage).is_some_and(|&n| n >= 1),
        "{context}: {stage} never ran"
      );
    }
    for (stage, (outputs, ran)) in &recorded {
      assert_eq!(
        &done[stage].2, outputs,
        "{context}: outputs of {stage} changed on resume"
      );
      assert_eq!(
        counts.get(stage).copied().unwrap_or(0),
        *ran,
        "{context}: {stage} ran again after it was recorded as completed"
      );
    }
    for (stage, attempts) in &in_flight {
      assert!(
        done[stage].1 > *attempts,
        "{context}: {stage} was in flight at a crash and must run again with its attempt counted"
      );
    }
  }
}

#[test]
fn a_damaged_or_foreign_store_is_a_clear_error() {
  let p = Project::new();
  std::fs::create_dir_all(p.store()).expect("store dir");
  std::fs::write(p.store().join("swdl.db"), vec![b'x'; 4096]).expect("garbage");
  let hello = root().join("examples/hello.yaml");
  let out = p
    .swdl(&[
      "run",
      hello.to_str().unwrap_or_default(),
      "--progress",
      "none",
    ])
    .stdout("").stderr(r"
      error: [DIR]/store/swdl.db: not a swdl run store (file is not a database); point --store or SWDL_STORE elsewhere
      ").status(2)
    .run();
  assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
  p.swdl(&["runs"]).stdout("").stderr(r"
      error: [DIR]/store/swdl.db: not a swdl run store (file is not a database); point --store or SWDL_STORE elsewhere
      ").status(2).run();
  // `--store none` runs without one.
  p.bare(&[
    "run",
    hello.to_str().unwrap_or_default(),
    "--progress",
    "none",
    "--store",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
}

#[test]
fn an_attempt_a_recovery_strategy_started_runs_again_as_it_chose_after_kill_9() {
  let p = Project::new();
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/nope.lua",
    r#"return { inputs = { run = "string" }, run = function() error("nope", 0) end }"#,
  );
  // Each strategy helps once: a second failure (the stage's own skill or inputs run again)
  // aborts the run.
  p.write(
    "hooks.lua",
    r#"
swdl.recovery("fix", function(failure)
  if failure.attempt > 1 then return "abort" end
  return { action = "retry", with = { run = "test -f s.marker || { touch s.marker; sleep 30; }; echo fixed" } }
end)
swdl.recovery("other", function(failure)
  if failure.uses ~= "nope" then return "abort" end
  return { action = "fallback", uses = "shell" }
end)
"#,
  );
  p.write(
    "restore.yaml",
    r#"
name: restore
config: { hooks: [hooks.lua] }
stages:
  - id: s
    uses: shell
    with: { run: "exit 3" }
    recover: fix
  - id: t
    uses: nope
    with: { run: "test -f t.marker || { touch t.marker; sleep 30; }; echo fell back" }
    recover: other
"#,
  );
  let mut child = p.spawn_run("restore.yaml", &[]);
  let id = p.wait_run_id();
  let both = wait_for(Duration::from_secs(20), || {
    p.path().join("s.marker").exists() && p.path().join("t.marker").exists()
  });
  assert!(both, "the strategies' attempts never started");
  let _ = child.kill();
  let _ = child.wait();
  let out = p
    .swdl(&[
      "resume",
      &id,
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
    .stdout("")
    .stderr("killed 2 process group(s) the run's previous process left running\n")
    .status(0)
    .run();
  // The attempts cut short start again as the strategy had them: its inputs, its skill (under
  // a new attempt number, as every restarted attempt).
  let s = out.one("stage_started", "s");
  assert_eq!(s["attempt"], 3, "{}", out.dump());
  assert_eq!(s["uses"], "shell");
  assert_eq!(
    s["inputs"]["run"],
    "test -f s.marker || { touch s.marker; sleep 30; }; echo fixed"
  );
  assert_eq!(out.outputs("s")["stdout"], "fixed");
  let t = out.one("stage_started", "t");
  assert_eq!(t["attempt"], 3, "{}", out.dump());
  assert_eq!(t["uses"], "shell");
  assert_eq!(out.outputs("t")["stdout"], "fell back");
  assert_eq!(out.count("recovery_decided"), 0, "{}", out.dump());
}
