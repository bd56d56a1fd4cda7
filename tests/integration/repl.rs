//! `swdl repl` driven through a pipe: scripted sessions covering every command.
use crate::{common::TempDir, test::Test};
use std::{io::Write, path::Path, process::Stdio};

/// Runs `swdl repl FILE` in `dir` with `script` on stdin; returns stdout (exit 0 asserted).
#[track_caller]
fn repl(dir: &Path, file: &str, script: &str) -> String {
  Test::at(dir)
    .args(["repl", file])
    .env("SWDL_HISTORY", dir.join("history"))
    .stdin(script)
    .status(0)
    .run()
    .stdout
}

/// The output of command `n` (1-based) of a session: the lines after its `swdl> ` echo.
fn answer(out: &str, command: &str) -> String {
  let mut lines = out.lines().skip_while(|l| *l != format!("swdl> {command}"));
  lines.next();
  lines
    .take_while(|l| !l.starts_with("swdl> "))
    .collect::<Vec<_>>()
    .join("\n")
}

const PIPELINE: &str = r#"
name: pipeline
parameters:
  rows: { type: integer, default: 3 }
stages:
  - id: fetch
    uses: echo
    with: { count: "$<< parameters.rows >>" }
  - id: parse
    uses: fail
    with: { message: "bad row 7" }
    depends_on: [fetch]
  - id: report
    uses: echo
    with: { parsed: "$<< stages.parse.status >>", count: "$<< stages.fetch.outputs.count >>" }
    depends_on: [parse]
  - id: ship
    gate: { message: "ship the report?" }
    depends_on: [report]
"#;

#[test]
fn help_validate_plan_graph_and_bad_commands() {
  let dir = TempDir::new();
  dir.write("wf.yaml", PIPELINE);
  let out = repl(
    dir.path(),
    "wf.yaml",
    "help\nhelp inspect\nvalidate\nplan\ngraph\nfrobnicate\nstep\nbreak nope\nquit\nstatus\n",
  );
  assert!(out.starts_with("loaded pipeline (4 stages)"), "{out}");
  let help = answer(&out, "help");
  for command in [
    "load", "param", "validate", "plan", "graph", "break", "unbreak", "step", "continue", "status",
    "inspect", "eval", "lua", "approve", "reject", "retry", "skip", "set", "reload", "restart",
    "help", "quit",
  ] {
    assert!(
      help.contains(&format!("  {command} ")),
      "help lacks {command}:\n{help}"
    );
  }
  assert!(
    answer(&out, "help inspect").contains("inputs, outputs, attempts"),
    "{out}"
  );
  assert!(
    answer(&out, "validate").contains("valid (4 stages, 4 batches)"),
    "{out}"
  );
  assert!(answer(&out, "plan").contains("fetch"), "{out}");
  let graph = answer(&out, "graph");
  assert!(graph.contains("level 2"), "{graph}");
  assert!(graph.contains("· parse (pending) <- fetch"), "{graph}");
  // A bad command is reported and the session goes on.
  assert!(
    answer(&out, "frobnicate").contains("error: unknown command `frobnicate`"),
    "{out}"
  );
  assert!(
    answer(&out, "step").contains("✓ stage fetch completed"),
    "{out}"
  );
  assert!(
    answer(&out, "break nope").contains("error: no stage `nope`"),
    "{out}"
  );
  // `quit` ends the session: `status` after it never runs.
  assert!(!out.contains("swdl> status"), "{out}");
}

#[test]
fn step_inspect_eval_skip_set_retry_and_breakpoints() {
  let dir = TempDir::new();
  dir.write("wf.yaml", PIPELINE);
  let out = repl(
    dir.path(),
    "wf.yaml",
    "break report\nstep\nstatus\nstep\ninspect parse\neval stages.fetch.outputs.count\n\
     eval stages.parse.status == 'failed' && parameters.rows > 2\neval stages.fetch.outputs.(\n\
     skip parse\ncontinue\ninspect report\nunbreak report\nset fetch.outputs.count = 42\n\
     eval stages.fetch.outputs.count\nretry report\ncontinue\ninspect report\nstatus\n",
  );
  assert_eq!(answer(&out, "break report"), "breakpoint before `report`");
  let first = answer(&out, "step");
  assert!(
    first.contains("▶ stage fetch started (attempt 1, uses echo)"),
    "{out}"
  );
  assert!(first.contains("✓ stage fetch completed"), "{out}");
  let status = answer(&out, "status");
  assert!(status.contains("running (paused)"), "{status}");
  assert!(
    status.contains("fetch                completed"),
    "{status}"
  );
  assert!(status.contains("parse                pending"), "{status}");
  assert!(out.contains("✗ stage parse failed: bad row 7"), "{out}");
  let inspect = answer(&out, "inspect parse");
  assert!(inspect.starts_with("parse: failed"), "{inspect}");
  assert!(
    inspect.contains("inputs    {\"message\":\"bad row 7\"}"),
    "{inspect}"
  );
  assert!(inspect.contains("#1 fail started"), "{inspect}");
  assert_eq!(answer(&out, "eval stages.fetch.outputs.count"), "3");
  assert_eq!(
    answer(
      &out,
      "eval stages.parse.status == 'failed' && parameters.rows > 2"
    ),
    "true"
  );
  assert!(
    answer(&out, "eval stages.fetch.outputs.(").starts_with("error: "),
    "{out}"
  );
  assert!(
    answer(&out, "skip parse").contains("`parse` skipped"),
    "{out}"
  );
  // After the skip, `report` may run: the breakpoint stops the run before it.
  assert!(
    answer(&out, "continue").contains("paused at breakpoint (stage report)"),
    "{out}"
  );
  assert!(
    answer(&out, "inspect report").starts_with("report: pending"),
    "{out}"
  );
  assert!(
    answer(&out, "set fetch.outputs.count = 42").contains("= 42"),
    "{out}"
  );
  let after_set = out
    .split("swdl> set fetch.outputs.count = 42")
    .nth(1)
    .unwrap_or_default();
  assert!(
    answer(after_set, "eval stages.fetch.outputs.count") == "42",
    "{after_set}"
  );
  let cont = out.split("swdl> retry report").nth(1).unwrap_or_default();
  assert!(
    answer(cont, "continue").contains("? gate ship waiting: ship the report?"),
    "{cont}"
  );
  let report = answer(cont, "inspect report");
  assert!(
    report.contains("\"count\":42"),
    "the what-if value flowed on: {report}"
  );
  assert!(report.contains("\"parsed\":\"skipped\""), "{report}");
}

#[test]
fn gates_are_decided_and_the_run_ends() {
  let dir = TempDir::new();
  dir.write(
    "wf.yaml",
    &PIPELINE.replace(
      "uses: fail\n    with: { message: \"bad row 7\" }",
      "uses: echo\n    with: { rows: 7 }",
    ),
  );
  let out = repl(
    dir.path(),
    "wf.yaml",
    "approve ship\ncontinue\napprove fetch\napprove ship all good\nstatus\nstep\nrestart\ncontinue\nreject ship not today\nstatus\n",
  );
  assert!(
    answer(&out, "approve ship").contains("error: `ship` is not waiting"),
    "{out}"
  );
  assert!(
    answer(&out, "continue").contains("stopped at gate `ship`"),
    "{out}"
  );
  assert!(
    answer(&out, "approve fetch").contains("not waiting"),
    "{out}"
  );
  let approved = answer(&out, "approve ship all good");
  assert!(
    approved.contains("gate ship approved by repl"),
    "{approved}"
  );
  assert!(approved.contains("\"reason\":\"all good\""), "{approved}");
  assert!(approved.contains("run completed"), "{approved}");
  assert!(
    answer(&out, "step").contains("the run is over (completed)"),
    "{out}"
  );
  assert_eq!(answer(&out, "restart"), "restarted: nothing has run");
  let rejected = answer(&out, "reject ship not today");
  assert!(
    rejected.contains("gate ship rejected by repl"),
    "{rejected}"
  );
  assert!(rejected.contains("run failed"), "{rejected}");
}

#[test]
fn params_lua_load_and_reload_keep_unchanged_finished_stages() {
  let dir = TempDir::new();
  dir.write(
    "wf.yaml",
    "name: two\nparameters:\n  who: { type: string, default: world }\nstages:\n  - id: greet\n    uses: echo\n    with: { message: \"hi $<< parameters.who >>\" }\n  - id: shout\n    uses: echo\n    with: { loud: \"$<< stages.greet.outputs.message >>!\" }\n    depends_on: [greet]\n",
  );
  dir.write(
    "other.yaml",
    "name: other\nstages:\n  - id: only\n    uses: echo\n    with: { x: 1 }\n",
  );
  let out = repl(
    dir.path(),
    "wf.yaml",
    "param who=ada\nstep\nparam who=bob\neval parameters.who\nlua greeting = 'hello'\nlua return greeting .. ' from lua'\nlua error('boom')\nload other.yaml\nstatus\nload missing.yaml\n",
  );
  assert_eq!(answer(&out, "param who=ada"), "who set");
  assert!(
    answer(&out, "step").contains("{\"message\":\"hi ada\"}"),
    "{out}"
  );
  assert!(
    answer(&out, "param who=bob").contains("applies from the next `restart`"),
    "{out}"
  );
  // The run in progress still has the value it started with.
  assert_eq!(answer(&out, "eval parameters.who"), "\"ada\"");
  assert_eq!(
    answer(&out, "lua return greeting .. ' from lua'"),
    "\"hello from lua\""
  );
  assert!(
    answer(&out, "lua error('boom')").contains("error:"),
    "{out}"
  );
  assert!(
    answer(&out, "load other.yaml").contains("loaded other (1 stage)"),
    "{out}"
  );
  assert!(answer(&out, "status").contains("only"), "{out}");
  assert!(
    answer(&out, "load missing.yaml").contains("error:"),
    "{out}"
  );

  // Reload: `greet` finished and is unchanged, `shout` changed; only `shout` runs again.
  let script_dir = dir.path().to_path_buf();
  // A raw command: the file changes between two commands of the session.
  let mut child = Test::at(&script_dir)
    .args(["repl", "wf.yaml"])
    .env("SWDL_HISTORY", script_dir.join("history"))
    .command()
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .expect("swdl repl starts");
  let mut stdin = child.stdin.take().expect("stdin");
  stdin.write_all(b"continue\n").expect("write");
  // Let the first run finish before the file changes.
  std::thread::sleep(std::time::Duration::from_millis(500));
  dir.write(
    "wf.yaml",
    "name: two\nparameters:\n  who: { type: string, default: world }\nstages:\n  - id: greet\n    uses: echo\n    with: { message: \"hi $<< parameters.who >>\" }\n  - id: shout\n    uses: echo\n    with: { loud: \"$<< stages.greet.outputs.message >>!!!\" }\n    depends_on: [greet]\n",
  );
  stdin
    .write_all(b"reload\ncontinue\ninspect greet\ninspect shout\n")
    .expect("write");
  drop(stdin);
  let output = child.wait_with_output().expect("ends");
  let out = String::from_utf8_lossy(&output.stdout).into_owned();
  assert!(answer(&out, "reload").contains("changed: shout"), "{out}");
  let after = out.split("swdl> reload").nth(1).unwrap_or_default();
  let rerun = answer(after, "continue");
  assert!(rerun.contains("▶ stage shout started"), "{after}");
  assert!(
    !rerun.contains("▶ stage greet started"),
    "greet ran again:\n{after}"
  );
  assert!(
    answer(after, "inspect shout").contains("hi world!!!"),
    "{after}"
  );
  assert!(
    answer(after, "inspect greet").contains("#1 echo started"),
    "{after}"
  );
}
