//! History, and gates decided from other processes: approve, reject, timeouts, steering a live run.
use super::*;

const GATED: &str = r#"
name: gated
stages:
  - id: build
    uses: echo
    with: { artifact: app-1.2.tar }
  - id: approve
    gate:
      message: "ship $<< stages.build.outputs.artifact >>?"
      inputs: { note: string }
    depends_on: [build]
  - id: ship
    uses: echo
    with:
      decision: "$<< stages.approve.outputs.decision >>"
      note: "$<< stages.approve.outputs.note >>"
    depends_on: [approve]
"#;

#[test]
fn history_lists_runs_and_shows_one_in_detail() {
  let p = Project::new();
  let file = root().join("examples/diamond.yaml");
  let file = file.to_str().unwrap_or_default();
  p.swdl(&["run", file, "--progress", "none"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let failing = p.write(
    "fails.yaml",
    "name: fails\nstages:\n  - id: boom\n    uses: fail\n    with: { message: kaput }\n",
  );
  p.swdl(&[
    "run",
    failing.to_str().unwrap_or_default(),
    "--progress",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let runs = p.runs();
  assert_eq!(runs.len(), 2);
  assert_eq!(runs[0]["workflow"], "fails", "newest first");
  assert_eq!(runs[0]["status"], "failed");
  assert_eq!(runs[1]["status"], "completed");

  p.swdl(&["runs"])
    .stdout(
      r"
      RUN                          STATUS     WORKFLOW                 STARTED (UTC)         DURATION
      [..] failed     fails                    [..]
      [..] completed  diamond                  [..]
      ",
    )
    .stderr("")
    .status(0)
    .run();
  let only = p
    .swdl(&["runs", "--status", "completed", "--format", "json"])
    .run();
  let only = only.json();
  assert_eq!(only.as_array().map(Vec::len), Some(1));
  assert_eq!(only[0]["workflow"], runs[1]["workflow"]);
  p.swdl(&["runs", "--status", "complete"]).stdout("").stderr(r"
      error: unknown status `complete` (did you mean `completed`?); one of: running, paused, waiting, crashed, completed, failed, cancelled
      ").status(2).run();

  let id = runs[0]["id"].as_str().unwrap_or_default();
  let detail = p.detail(id);
  assert_eq!(detail["state"]["stages"]["boom"]["status"], "failed");
  assert_eq!(detail["attempts"][0]["stage"], "boom");
  assert_eq!(detail["attempts"][0]["status"], "failed");
  assert!(
    detail["attempts"][0]["error"]
      .as_str()
      .is_some_and(|e| e.contains("kaput")),
    "{detail}"
  );
  p.swdl(&["runs", id])
    .stdout(
      r"
      run       [..]
      workflow  fails ([DIR]/fails.yaml)
      status    failed
      started   [..] UTC
      duration[..]
      error     stage `boom` failed: kaput

      stages
        boom                     failed     attempts 1   kaput

      attempts
        boom                     #1  fail           failed[..] kaput
      ",
    )
    .stderr("")
    .status(0)
    .run();

  let mut wrong = id.to_string();
  wrong.pop();
  wrong.push('x');
  p.swdl(&["runs", &wrong])
    .stdout("")
    .stderr(&format!(
      "error: no run `{wrong}` in the run store (did you mean `{id}`?)\n"
    ))
    .status(2)
    .run();
}

#[test]
fn a_suspended_gate_is_approved_with_inputs_then_resumed() {
  let p = Project::new();
  p.write("gated.yaml", GATED);
  let first = p
    .swdl(&["run", "gated.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at approve
        decide approve: `swdl approve --store [DIR]/store [..] approve` or `swdl reject --store [DIR]/store [..] approve`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&first.stderr);
  assert!(
    first.stderr.contains(&format!("{id} approve`")),
    "{}",
    first.stderr
  );
  assert_eq!(p.runs()[0]["status"], "waiting");

  // Deciding a stage that is not waiting is refused.
  p.swdl(&["approve", &id, "build"])
    .stdout("")
    .stderr(
      r"
      error: stage `build` of run `[..]` is not waiting for a decision (it is completed)
      ",
    )
    .status(2)
    .run();
  p.swdl(&["approve", &id, "aprove"])
    .stdout("")
    .stderr("error: run `[..]` has no stage `aprove` (did you mean `approve`?)\n")
    .status(2)
    .run();

  p.swdl(&[
    "approve",
    &id,
    "approve",
    "--reason",
    "release notes checked",
    "--input",
    "note=go",
  ])
  .stdout("")
  .stderr("approved `approve` of run [..]; continue it with `swdl resume [..]`\n")
  .status(0)
  .run();
  let resumed = p
    .swdl(&["resume", &id, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  let state = resumed.json();
  assert_eq!(state["status"], "completed");
  assert_eq!(state["stages"]["ship"]["outputs"]["decision"], "approve");
  assert_eq!(state["stages"]["ship"]["outputs"]["note"], "go");
  // `build` ran once, before the suspension, and kept its outputs.
  assert_eq!(state["stages"]["build"]["attempts"], 1);
  assert_eq!(
    state["stages"]["build"]["outputs"]["artifact"],
    "app-1.2.tar"
  );

  let detail = p.detail(&id);
  assert_eq!(detail["run"]["attempt"], 2, "run.attempt counts the resume");
  let decision = &detail["decisions"][0];
  assert_eq!(decision["stage"], "approve");
  assert_eq!(decision["decision"], "approve");
  assert!(
    decision["decided_by"]
      .as_str()
      .is_some_and(|by| by.starts_with("user")),
    "{decision}"
  );
  assert_eq!(decision["reason"], "release notes checked");
  let starts = detail["attempts"]
    .as_array()
    .map_or(0, |a| a.iter().filter(|x| x["stage"] == "build").count());
  assert_eq!(starts, 1, "build did not run again");

  // A finished run cannot be resumed or decided again.
  p.swdl(&["resume", &id])
    .stdout("")
    .stderr(
      r"
      error: run `[..]` already finished (completed); a finished run cannot be resumed
      ",
    )
    .status(2)
    .run();
}

#[test]
fn a_rejected_gate_fails_the_resumed_run_with_exit_3() {
  let p = Project::new();
  p.write("gated.yaml", GATED);
  let first = p
    .swdl(&["run", "gated.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at approve
        decide approve: `swdl approve --store [DIR]/store [..] approve` or `swdl reject --store [DIR]/store [..] approve`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&first.stderr);
  p.swdl(&["reject", &id, "approve", "--reason", "not today"])
    .stdout("")
    .stderr("rejected `approve` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  let resumed = p
    .swdl(&["resume", &id, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(3)
    .run();
  let state = resumed.json();
  assert_eq!(state["stages"]["approve"]["status"], "failed");
  // A rejected gate fails under the default `on_failure: halt`: what was not started is
  // cancelled.
  assert_eq!(state["stages"]["ship"]["status"], "cancelled");
  let detail = p.detail(&id);
  assert_eq!(detail["decisions"][0]["decision"], "reject");
  assert_eq!(detail["decisions"][0]["reason"], "not today");
}

#[test]
fn a_gate_timeout_counts_from_when_it_opened_across_processes() {
  let p = Project::new();
  // The run waits (`--wait`) for its gate's deadline; it is killed meanwhile, and resumed
  // after the deadline: the gate is decided by its timeout at once, as `on_timeout` says.
  p.write(
    "timed.yaml",
    "name: timed\nstages:\n  - id: wait\n    gate: { timeout: 2s, on_timeout: approve }\n  - id: after\n    uses: echo\n    with: { d: \"$<< stages.wait.outputs.decided_by >>\" }\n    depends_on: [wait]\n",
  );
  let mut child = p.spawn_run("timed.yaml", &["--wait"]);
  let id = p.wait_run_id();
  let waiting = wait_for(Duration::from_secs(10), || {
    p.detail(&id)["state"]["stages"]["wait"]["status"] == "waiting"
  });
  assert!(waiting, "the gate never opened");
  let _ = child.kill();
  let _ = child.wait();
  assert_eq!(p.runs()[0]["status"], "crashed");
  std::thread::sleep(Duration::from_millis(2_200));
  p.swdl(&["approve", &id, "wait"]).stdout("").stderr(r"
      error: the gate `wait` of run `[..]` timed out; `swdl resume [..]` decides it as its `on_timeout` says
      ").status(2).run();
  let started = std::time::Instant::now();
  let resumed = p
    .swdl(&["resume", &id, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert!(
    started.elapsed() < Duration::from_millis(1_500),
    "the timeout was not counted again from the resume"
  );
  let state = resumed.json();
  assert_eq!(state["stages"]["after"]["outputs"]["d"], "timeout");
}

#[test]
fn a_live_run_is_approved_paused_resumed_and_cancelled_from_other_processes() {
  let p = Project::new();
  p.write(
    "live.yaml",
    r#"
name: live
stages:
  - id: gate
    gate: {}
  - id: one
    uses: sleep
    with: { ms: 300 }
    depends_on: [gate]
  - id: two
    uses: sleep
    with: { ms: 300 }
    depends_on: [one]
  - id: three
    uses: sleep
    with: { ms: 60000 }
    depends_on: [two]
"#,
  );
  let events = p.path().join("events.jsonl");
  let child = p.spawn_run(
    "live.yaml",
    &["--events", events.to_str().unwrap_or_default(), "--wait"],
  );
  let id = p.wait_run_id();
  assert!(wait_for(Duration::from_secs(10), || {
    read_events(&events)
      .iter()
      .any(|e| e["event"] == "gate_waiting")
  }));
  p.swdl(&["approve", &id, "gate", "--reason", "from afar"])
    .stdout("")
    .stderr("approved `gate`: run [..] (process [..]) continues\n")
    .status(0)
    .run();
  assert!(
    wait_for(Duration::from_secs(10), || {
      read_events(&events)
        .iter()
        .any(|e| e["event"] == "stage_started" && e["stage"] == "one")
    }),
    "the live run did not take the approval"
  );
  p.swdl(&["pause", &id])
    .stdout("")
    .stderr(
      r"
      asked run [..] (process [..]) to pause; `swdl resume [..]` lets it go on
      ",
    )
    .status(0)
    .run();
  assert!(wait_for(Duration::from_secs(10), || {
    read_events(&events)
      .iter()
      .any(|e| e["event"] == "run_paused")
  }));
  assert_eq!(p.runs()[0]["status"], "paused");
  // While paused, `two` does not start even after `one` is done.
  std::thread::sleep(Duration::from_millis(700));
  assert!(
    !read_events(&events)
      .iter()
      .any(|e| e["event"] == "stage_started" && e["stage"] == "two"),
    "a stage started while paused"
  );
  p.swdl(&["resume", &id])
    .stdout("")
    .stderr("asked run [..] (process [..]) to resume\n")
    .status(0)
    .run();
  assert!(wait_for(Duration::from_secs(10), || {
    read_events(&events)
      .iter()
      .any(|e| e["event"] == "stage_started" && e["stage"] == "three")
  }));
  p.swdl(&["cancel", &id])
    .stdout("")
    .stderr("run [..] cancelled\n")
    .status(0)
    .run();
  let ended = child.wait_with_output().expect("the run ends");
  assert_eq!(ended.status.code(), Some(3));
  // `--wait` said, once, how to decide the gate from elsewhere.
  assert_matches(
    "run [..] waits at gate: decide it from another terminal with `swdl approve --store \
     [DIR]/store [..] gate` or `swdl reject --store [DIR]/store [..] gate` (if this process \
     stops, `swdl resume --store [DIR]/store [..]` continues the run)\n",
    &normalise(&String::from_utf8_lossy(&ended.stderr), p.path()),
  );
  let detail = p.detail(&id);
  assert_eq!(detail["run"]["status"], "cancelled");
  assert_eq!(detail["state"]["stages"]["three"]["status"], "cancelled");
  assert_eq!(detail["decisions"][0]["reason"], "from afar");
}

#[test]
fn a_suspended_run_can_be_cancelled_and_then_not_resumed() {
  let p = Project::new();
  p.write("gated.yaml", GATED);
  let first = p
    .swdl(&["run", "gated.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at approve
        decide approve: `swdl approve --store [DIR]/store [..] approve` or `swdl reject --store [DIR]/store [..] approve`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&first.stderr);
  p.swdl(&["cancel", &id])
    .stdout("")
    .stderr("run [..] cancelled\n")
    .status(0)
    .run();
  let detail = p.detail(&id);
  assert_eq!(detail["run"]["status"], "cancelled");
  assert_eq!(detail["state"]["stages"]["approve"]["status"], "cancelled");
  assert_eq!(detail["state"]["stages"]["build"]["status"], "completed");
  p.swdl(&["resume", &id])
    .stdout("")
    .stderr(
      r"
      error: run `[..]` already finished (cancelled); a finished run cannot be resumed
      ",
    )
    .status(2)
    .run();
  p.swdl(&["cancel", &id])
    .stdout("")
    .stderr(
      r"
      error: run `[..]` already finished (cancelled); a finished run cannot be resumed
      ",
    )
    .status(2)
    .run();
  p.swdl(&["pause", &id])
    .stdout("")
    .stderr(
      r"
      error: run `[..]` is not executing (it is cancelled); only a live run can be paused
      ",
    )
    .status(2)
    .run();
}
