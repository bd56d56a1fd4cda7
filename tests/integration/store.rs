//! The run store through the binary: history, suspended gates decided by `swdl approve|reject`
//! and continued by `swdl resume`, steering a live run from another process, crash safety
//! under `kill -9`, many processes sharing one store, and secrets kept out of it.
use crate::{
  common::{read_events, root, wait_for},
  test::Test,
};
use std::{
  collections::HashMap,
  ffi::OsStr,
  path::{Path, PathBuf},
  process::{Child, Command, Stdio},
  time::Duration,
};

/// A project directory with its own store, `store/`, named on every command line (so the
/// commands the binary suggests carry `--store [DIR]/store`); each command is a [`Test`].
pub(crate) struct Project(Test);

impl Project {
  pub(crate) fn new() -> Self {
    Self(Test::new())
  }

  pub(crate) fn path(&self) -> &Path {
    self.0.path()
  }

  pub(crate) fn store(&self) -> PathBuf {
    self.path().join("store")
  }

  /// Writes `text` as it is to `name` in the project and returns its path.
  pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
    let path = self.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path
  }

  /// `swdl ARGS` in the project directory, with no store of its own.
  pub(crate) fn bare(&self, args: &[&str]) -> Test {
    self.0.clone().args(args.iter().copied())
  }

  /// `swdl ARGS --store STORE` in the project directory.
  pub(crate) fn swdl(&self, args: &[&str]) -> Test {
    self
      .bare(args)
      .args([OsStr::new("--store"), self.store().as_os_str()])
  }

  /// [`Project::swdl`] as a command, to spawn.
  pub(crate) fn command(&self, args: &[&str]) -> Command {
    self.swdl(args).command()
  }

  /// Starts `swdl run FILE --progress none` in the background.
  pub(crate) fn spawn_run(&self, file: &str, extra: &[&str]) -> Child {
    let mut args = vec!["run", file, "--progress", "none"];
    args.extend_from_slice(extra);
    self
      .command(&args)
      .stdout(Stdio::null())
      .stderr(Stdio::piped())
      .spawn()
      .expect("spawn swdl")
  }

  /// Every run in the store, newest first.
  pub(crate) fn runs(&self) -> Vec<serde_json::Value> {
    let out = self.swdl(&["runs", "--format", "json"]).status(0).run();
    out.json().as_array().cloned().unwrap_or_default()
  }

  /// The only run's id, once it is in the store.
  #[track_caller]
  pub(crate) fn wait_run_id(&self) -> String {
    let mut id = None;
    let found = wait_for(Duration::from_secs(20), || {
      if !self.store().join("swdl.db").exists() {
        return false;
      }
      id = self
        .runs()
        .first()
        .and_then(|r| r["id"].as_str().map(str::to_string));
      id.is_some()
    });
    assert!(found, "no run appeared in the store");
    id.unwrap_or_default()
  }

  /// `swdl runs ID --format json`.
  pub(crate) fn detail(&self, id: &str) -> serde_json::Value {
    let out = self.swdl(&["runs", id, "--format", "json"]).status(0).run();
    out.json()
  }
}

/// The run's id from its `run ID is suspended at ...` message.
#[track_caller]
pub(crate) fn run_id_in(stderr: &str) -> String {
  let id = stderr
    .lines()
    .find(|l| l.contains(" is suspended at "))
    .and_then(|l| l.strip_prefix("run "))
    .and_then(|l| l.split_whitespace().next());
  match id {
    Some(id) => id.to_string(),
    None => panic!("no suspension message in:\n{stderr}"),
  }
}

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
      RUN                    STATUS     WORKFLOW                 STARTED (UTC)         DURATION
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
      run [..] is suspended at approve: approve with `swdl approve --store [DIR]/store [..] approve` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
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
      run [..] is suspended at approve: approve with `swdl approve --store [DIR]/store [..] approve` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
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
  // The run waits for its gate's deadline; it is killed meanwhile, and resumed after the
  // deadline: the gate is decided by its timeout at once, as `on_timeout` says.
  p.write(
    "timed.yaml",
    "name: timed\nstages:\n  - id: wait\n    gate: { timeout: 2s, on_timeout: approve }\n  - id: after\n    uses: echo\n    with: { d: \"$<< stages.wait.outputs.decided_by >>\" }\n    depends_on: [wait]\n",
  );
  let mut child = p.spawn_run("timed.yaml", &[]);
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
    gate: { timeout: 60s }
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
  let mut child = p.spawn_run(
    "live.yaml",
    &["--events", events.to_str().unwrap_or_default()],
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
  let status = child.wait().expect("the run ends");
  assert_eq!(status.code(), Some(3));
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
      run [..] is suspended at approve: approve with `swdl approve --store [DIR]/store [..] approve` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
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
fn twenty_processes_share_one_store() {
  let p = Project::new();
  let mut text = String::from("name: shared\nstages:\n");
  for i in 0..10 {
    text.push_str(&format!(
      "  - id: s{i}\n    uses: echo\n    with: {{ n: {i} }}\n"
    ));
    if i > 0 {
      text.push_str(&format!("    depends_on: [s{}]\n", i - 1));
    }
  }
  p.write("shared.yaml", &text);
  let children: Vec<Child> = (0..20).map(|_| p.spawn_run("shared.yaml", &[])).collect();
  for child in children {
    let output = child.wait_with_output().expect("run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("locked"), "{stderr}");
  }
  let runs = p.runs();
  assert_eq!(runs.len(), 20);
  assert!(runs.iter().all(|r| r["status"] == "completed"));
}

#[test]
fn secrets_never_reach_the_store_logs_events_or_output() {
  let p = Project::new();
  p.write(
    "secret.yaml",
    r#"
name: secretive
parameters:
  token: { type: string, secret: true }
config:
  secrets: [API_PASSWORD]
  env:
    PASSWORD: "$<< env.API_PASSWORD >>"
stages:
  - id: use
    uses: shell
    with: { run: "echo token=$<< parameters.token >> password=$API_PASSWORD" }
  - id: echo
    uses: echo
    with: { both: "$<< parameters.token >>/$<< stages.use.outputs.stdout >>" }
    depends_on: [use]
  - id: wait
    gate: { message: "token $<< parameters.token >>" }
    depends_on: [echo]
"#,
  );
  let events = p.path().join("events.jsonl");
  let token = "tok-5f1d9c2b7a";
  let password = "pw-8e3a71c44d";
  let out = p
    .command(&[
      "run",
      "secret.yaml",
      "--param",
      &format!("token={token}"),
      "--progress",
      "plain",
      "--events",
      events.to_str().unwrap_or_default(),
      "--output",
      "json",
    ])
    .env("API_PASSWORD", password)
    .output()
    .expect("swdl runs");
  assert_eq!(out.status.code(), Some(4));
  let id = run_id_in(&String::from_utf8_lossy(&out.stderr));
  p.swdl(&["approve", &id, "wait", "--reason", "looks fine"])
    .stdout("")
    .stderr("approved `wait` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  let resumed = p
    .command(&[
      "resume",
      &id,
      "--param",
      &format!("token={token}"),
      "--progress",
      "plain",
    ])
    .env("API_PASSWORD", password)
    .output()
    .expect("swdl runs");
  assert_eq!(
    resumed.status.code(),
    Some(0),
    "{}",
    String::from_utf8_lossy(&resumed.stderr)
  );
  let detail = p.swdl(&["runs", &id]).run();
  let mut haystacks: Vec<(String, Vec<u8>)> = vec![
    ("stdout".into(), out.stdout.clone()),
    ("stderr".into(), out.stderr.clone()),
    ("resume stderr".into(), resumed.stderr.clone()),
    ("events".into(), std::fs::read(&events).unwrap_or_default()),
    ("runs".into(), detail.stdout.into_bytes()),
  ];
  for entry in std::fs::read_dir(p.store()).expect("store dir").flatten() {
    haystacks.push((
      entry.path().display().to_string(),
      std::fs::read(entry.path()).unwrap_or_default(),
    ));
  }
  for (name, bytes) in &haystacks {
    for secret in [token, password] {
      assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "{secret} found in {name}"
      );
    }
  }
  // The masked values were really there to mask.
  let text = String::from_utf8_lossy(&haystacks[3].1).into_owned();
  assert!(text.contains("token=*** password=***"), "{text}");
  // Without the secret again, resume refuses (nothing to resume here, but the message is
  // about the run having finished, not about secrets).
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
fn a_suspended_run_needs_its_secret_parameters_again() {
  let p = Project::new();
  p.write(
    "s.yaml",
    "name: s\nparameters:\n  token: { type: string, secret: true }\nstages:\n  - id: g\n    gate: {}\n  - id: e\n    uses: echo\n    with: { t: \"$<< parameters.token >>\" }\n    depends_on: [g]\n",
  );
  let out = p
    .swdl(&[
      "run",
      "s.yaml",
      "--param",
      "token=abc123xyz",
      "--progress",
      "none",
    ])
    .stdout("").stderr(r"
      run [..] is suspended at g: approve with `swdl approve --store [DIR]/store [..] g` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&out.stderr);
  p.swdl(&["approve", &id, "g"])
    .stdout("")
    .stderr("approved `g` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  p
    .swdl(&["resume", &id, "--progress", "none"])
    .stdout("").stderr(r"
      error: run `[..]` has secret parameters the store does not keep: give them again with --param token=...
      ").status(2)
    .run();
  p.swdl(&[
    "resume",
    &id,
    "--param",
    "token=abc123xyz",
    "--progress",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
}

#[test]
fn recovery_and_policy_decisions_are_kept_with_who_decided_and_why() {
  let p = Project::new();
  let file = root().join("examples/lua-recovery.yaml");
  let out = p
    .swdl(&[
      "run",
      file.to_str().unwrap_or_default(),
      "--progress",
      "none",
    ])
    .run();
  assert!(matches!(out.status, 0 | 1), "{}", out.stderr);
  let id = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  let detail = p.detail(&id);
  let decisions = detail["decisions"].as_array().cloned().unwrap_or_default();
  assert!(
    decisions.iter().any(|d| d["kind"] == "recovery"
      && d["decided_by"]
        .as_str()
        .is_some_and(|b| b.starts_with("recovery:"))),
    "{decisions:?}"
  );
  let file = root().join("examples/lua-review.yaml");
  p.swdl(&[
    "run",
    file.to_str().unwrap_or_default(),
    "--progress",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let id = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  let decisions = p.detail(&id)["decisions"].clone();
  let by_policy = decisions.as_array().into_iter().flatten().find(|d| {
    d["decided_by"]
      .as_str()
      .is_some_and(|b| b.starts_with("policy:"))
  });
  let Some(by_policy) = by_policy else {
    panic!("no policy decision in {decisions}");
  };
  assert!(by_policy["reason"].is_string(), "{by_policy}");
}
