//! Gates and approvals.
use super::*;

const GATED: &str = r#"
name: gated
stages:
  - id: build
    uses: echo
    with: { artifact: app.tar }
  - id: ship
    depends_on: build
    gate: { message: "Ship $<< stages.build.outputs.artifact >>?" }
  - id: deploy
    depends_on: ship
    uses: echo
    with: { by: "$<< stages.ship.outputs.decided_by >>" }
"#;

#[test]
fn gate_rejected_by_flag_exits_3() {
  let out = run_wf(GATED)
    .args(["--reject", "ship"])
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let waiting = out.named("gate_waiting", "ship");
  assert_eq!(waiting.len(), 1, "{}", out.dump());
  assert_eq!(waiting[0]["message"], "Ship app.tar?");
  assert_eq!(waiting[0]["kind"], "gate");
  let decided = out.named("gate_decided", "ship");
  assert_eq!(decided.len(), 1);
  assert_eq!(decided[0]["decision"], "reject");
  assert_eq!(decided[0]["decided_by"], "flag");
  let failed = out.named("stage_failed", "ship");
  assert_eq!(failed[0]["reason"], "rejected");
  assert_eq!(out.final_status("ship"), "failed");
  // Gates never emit stage_started; the dependent never runs.
  assert!(out.named("stage_started", "ship").is_empty());
  assert!(out.named("stage_started", "deploy").is_empty());
  assert_ne!(out.final_status("deploy"), "completed");
}

#[test]
fn gate_approved_by_flag_lets_dependents_run() {
  let out = run_wf(GATED)
    .args(["--approve", "ship"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let decided = out.named("gate_decided", "ship");
  assert_eq!(decided[0]["decision"], "approve", "{}", out.dump());
  assert_eq!(decided[0]["decided_by"], "flag");
  assert!(out.named("stage_started", "ship").is_empty());
  assert_eq!(out.final_status("ship"), "completed");
  assert_eq!(
    out.named("stage_started", "deploy")[0]["inputs"]["by"],
    "flag"
  );
  assert!(out.index("stage_started", "deploy") > out.index("gate_decided", "ship"));

  run_wf(GATED)
    .args(["--approve-all"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn undecided_gate_without_a_terminal_suspends() {
  let out = run_wf(GATED)
    .stdout("")
    .stderr(
      "
      run [..] is suspended at ship
        decide ship: `swdl approve [..] ship` or `swdl reject [..] ship`
        then continue it: `swdl resume [..]`
      ",
    )
    .status(4)
    .run();
  assert_eq!(out.named("gate_waiting", "ship").len(), 1);
  assert!(out.named("gate_decided", "ship").is_empty());
  assert_eq!(out.final_status("build"), "completed");
  assert!(out.named("stage_started", "deploy").is_empty());
  assert_eq!(out.completed()["status"], "waiting");
}

#[test]
fn gate_timeout_applies_on_timeout() {
  let approve = r#"
name: gate-timeout
stages:
  - id: ok
    gate: { message: "go?", timeout: 200ms, on_timeout: approve }
  - id: after
    depends_on: ok
    uses: echo
"#;
  // `--wait` keeps the process waiting until the deadline decides the gate.
  let out = run_wf(approve)
    .args(["--wait"])
    .stdout("")
    .stderr(
      "run [..] waits at ok: decide it from another terminal with `swdl approve [..] ok` or \
       `swdl reject [..] ok` (if this process stops, `swdl resume [..]` continues the run)\n",
    )
    .status(0)
    .run();
  let waiting = out.named("gate_waiting", "ok");
  assert_eq!(waiting[0]["timeout_ms"], 200, "{}", out.dump());
  let decided = out.named("gate_decided", "ok");
  assert_eq!(decided[0]["decision"], "approve");
  assert_eq!(decided[0]["decided_by"], "timeout");
  assert!(ts_ms(decided[0]) - ts_ms(waiting[0]) >= 199);
  assert_eq!(out.final_status("after"), "completed");

  // The default is to reject.
  let reject = approve.replace(", on_timeout: approve", "");
  let out = run_wf(&reject)
    .args(["--wait"])
    .stdout("")
    .stderr("run [..] waits at ok: [..]\n")
    .status(3)
    .run();
  assert_eq!(out.named("gate_decided", "ok")[0]["decision"], "reject");
  assert_eq!(out.final_status("ok"), "failed");
}

#[test]
fn a_gate_with_a_timeout_suspends_headless_and_resume_applies_its_deadline() {
  let wf = r#"
name: gate-deadline
stages:
  - id: ok
    gate: { message: "go?", timeout: 1s, on_timeout: approve }
  - id: after
    depends_on: ok
    uses: echo
    with: { by: "$<< stages.ok.outputs.decided_by >>" }
"#;
  let first = run_wf(wf)
    .stdout("")
    .stderr(
      "
      run [..] is suspended at ok
        decide ok: `swdl approve [..] ok` or `swdl reject [..] ok`
        then continue it: `swdl resume [..]`
        ok times out at [..]Z: a resume after that approves it (its `on_timeout`)
      ",
    )
    .status(4)
    .run();
  let waiting = first.one("gate_waiting", "ok");
  assert_eq!(waiting["timeout_ms"], 1000);
  assert!(first.named("gate_decided", "ok").is_empty());
  // The deadline printed is the one the event implies: opened + timeout.
  let line = first
    .stderr
    .lines()
    .find(|l| l.contains("times out at"))
    .unwrap_or_default();
  let at = line
    .split("times out at ")
    .nth(1)
    .and_then(|rest| rest.split(": a resume").next())
    .unwrap_or_default();
  assert_eq!(
    ts_ms(&json!({ "ts": at })) - ts_ms(waiting),
    1000,
    "deadline {at}"
  );
  let id = first
    .stderr
    .strip_prefix("run ")
    .and_then(|rest| rest.split_whitespace().next())
    .unwrap_or_default()
    .to_string();
  // A resume before the deadline suspends again, the deadline unchanged.
  first
    .then()
    .args(["resume", &id, "--progress", "none"])
    .stdout("")
    .stderr(&first.stderr)
    .status(4)
    .run();
  std::thread::sleep(Duration::from_millis(1_100));
  let done = first
    .then()
    .args(["resume", &id, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(done.json()["stages"]["after"]["outputs"]["by"], "timeout");
}

#[test]
fn wait_needs_a_store() {
  run_wf(GATED)
    .args(["--wait", "--store", "none"])
    .stdout("")
    .stderr(
      "error: `--wait` waits for `swdl approve|reject` from another process, which finds the \
       run in the store: drop `--store none`\n",
    )
    .status(2)
    .run();
}

const RISKY: &str = r#"
name: risky
config:
  approval: { require_for: high }
stages:
  - id: check
    uses: echo
    risk: medium
  - id: deploy
    depends_on: check
    uses: echo
    risk: high
  - id: nuke
    uses: echo
    risk: critical
    on_failure: continue
"#;

#[test]
fn risky_stages_need_approval() {
  let out = run_wf(RISKY)
    .stdout("")
    .stderr(
      "
      run [..] is suspended at nuke, deploy
        decide nuke: `swdl approve [..] nuke` or `swdl reject [..] nuke`
        decide deploy: `swdl approve [..] deploy` or `swdl reject [..] deploy`
        then continue it: `swdl resume [..]`
      ",
    )
    .status(4)
    .run();
  assert_eq!(out.final_status("check"), "completed");
  for stage in ["deploy", "nuke"] {
    let waiting = out.named("gate_waiting", stage);
    assert_eq!(waiting.len(), 1, "{}", out.dump());
    assert_eq!(waiting[0]["kind"], "approval");
    assert!(out.named("stage_started", stage).is_empty());
  }

  let out = run_wf(RISKY)
    .args(["--approve", "deploy", "--reject", "nuke"])
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let decided = out.named("gate_decided", "deploy");
  assert_eq!(decided[0]["decision"], "approve", "{}", out.dump());
  assert!(out.index("stage_started", "deploy") > out.index("gate_decided", "deploy"));
  assert_eq!(out.final_status("deploy"), "completed");
  assert_eq!(out.named("stage_failed", "nuke")[0]["reason"], "rejected");
  assert!(out.named("stage_started", "nuke").is_empty());

  run_wf(RISKY)
    .args(["--approve-all"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
}

/// `swdl ARGS` in `dir` on a pseudo-terminal (util-linux `script`), its input kept open and
/// silent; what the terminal showed, or `None` (with the reason printed) without `script`.
fn on_a_terminal(dir: &Path, args: &str) -> Option<(i32, String)> {
  let found = Command::new("script")
    .arg("--version")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .status()
    .is_ok();
  if !found {
    eprintln!(
      "skipped: `script` (util-linux) is needed to give swdl a terminal; .ci/run installs it"
    );
    return None;
  }
  let command = format!("{} {args}", env!("CARGO_BIN_EXE_swdl"));
  let mut child = Command::new("script")
    .args(["-qec", &command, "/dev/null"])
    .current_dir(dir)
    .env("NO_COLOR", "1")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn script");
  // Nobody types: the pipe stays open (and silent) until the run is over.
  let _keyboard = child.stdin.take();
  let started = Instant::now();
  let status = loop {
    if let Ok(Some(status)) = child.try_wait() {
      break status;
    }
    assert!(
      started.elapsed() < Duration::from_secs(30),
      "the run on a terminal never ended"
    );
    std::thread::sleep(Duration::from_millis(20));
  };
  let output = child.wait_with_output().expect("output");
  let text = String::from_utf8_lossy(&output.stdout).replace('\r', "");
  Some((status.code().unwrap_or(-1), text))
}

#[test]
fn a_gate_decided_by_its_timeout_closes_the_open_terminal_question() {
  let test = Test::new().workflow(
    r#"
name: pty
stages:
  - id: g
    gate: { message: "Ship it?", timeout: 1s, on_timeout: approve }
  - id: after
    depends_on: g
    uses: echo
"#,
  );
  let Some((status, text)) =
    on_a_terminal(test.path(), "run wf.yaml --progress plain --store none")
  else {
    return;
  };
  assert_eq!(status, 0, "{text}");
  let question = text.find("Ship it? Approve `g`? [y/N] ");
  let closed = text.find(
    "\nthe question is closed: gate g approved by timeout: no decision before the gate's timeout\n",
  );
  let after = text.find("stage after completed");
  assert!(
    question.is_some() && closed > question && after > closed,
    "the question, then its closing, then the rest of the run:\n{text}"
  );
  assert!(text.contains("completed 2/2 stages"), "{text}");
}
