//! `swdl repl` driven through a pipe: scripted sessions covering every command.
use crate::{
  common::TempDir,
  test::{Test, diff, unindent},
};
use std::{io::Write, path::Path, process::Stdio};

/// `swdl repl FILE` in `dir` with `script` on stdin, history kept in the directory.
fn repl(dir: &Path, file: &str, script: &str) -> Test {
  Test::at(dir)
    .args(["repl", file])
    .env("SWDL_HISTORY", dir.join("history"))
    .stdin(script)
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
  // `quit` ends the session: `status` after it never runs.
  repl(
    dir.path(),
    "wf.yaml",
    "help\nhelp inspect\nvalidate\nplan\ngraph\nfrobnicate\nstep\nbreak nope\nquit\nstatus\n",
  )
  .stdout(
    r#"
    loaded pipeline (4 stages); `step`, `continue`, or `help`
    swdl> help
    commands:
      load FILE                          load a workflow file and start a fresh run of it
      param NAME=VALUE                   set a parameter (applies now if nothing ran yet, else at `restart`)
      validate                           check the file again: schema, expressions, DAG
      plan                               the plan: batches, critical path, gates, estimate
      graph                              the DAG by level, with each stage's status
      break STAGE                        pause before STAGE starts
      unbreak STAGE                      remove a breakpoint
      step                               start the next ready stage and wait for it
      continue                           run until a breakpoint, a gate or the end
      status                             the run and every stage, one line each
      inspect STAGE                      a stage's inputs, outputs, attempts, logs and timings
      eval EXPR                          evaluate an expression against the run so far
      lua CODE                           run Lua in the host the skills use (globals persist)
      approve STAGE [REASON]             approve a waiting gate or risky stage
      reject STAGE [REASON]              reject a waiting gate or risky stage
      retry STAGE                        run a finished stage (and what follows it) again
      skip STAGE                         mark a failed or pending stage skipped; what follows may run
      set STAGE.outputs.KEY = VALUE      change a completed stage's output (what if?)
      reload                             re-read the file and skills; keep finished stages that did not change
      restart                            start the run again from nothing
      help [COMMAND]                     this list, or one command
      quit                               leave (also `exit`, Ctrl-D)
    swdl> help inspect
    inspect STAGE
      a stage's inputs, outputs, attempts, logs and timings
    swdl> validate
    wf.yaml: valid (4 stages, 4 batches)
    swdl> plan
    plan pipeline (4 stages, 4 batches, max_parallel 3)

    batch 1
      * fetch   uses echo
                timeout 2h

    batch 2
      * parse   <- fetch  uses fail
                timeout 2h

    batch 3
      * report  <- parse  uses echo
                timeout 2h

    batch 4
      ? ship    <- report  gate

    critical path: fetch -> parse -> report -> ship
    gates: ship
    estimated duration: 0ms
    worst case: unbounded (a gate has no timeout)
    swdl> graph
    level 1
      · fetch (pending)
    level 2
      · parse (pending) <- fetch
    level 3
      · report (pending) <- parse
    level 4
      · ship (pending) <- report
    swdl> frobnicate
    error: unknown command `frobnicate`; `help` lists them
    swdl> step
    ▶ stage fetch started (attempt 1, uses echo)
    ✓ stage fetch completed in [..] {"count":3}
    swdl> break nope
    error: no stage `nope`
    swdl> quit
    "#,
  )
  .stderr("")
  .status(0)
  .run();
}

#[test]
fn step_inspect_eval_skip_set_retry_and_breakpoints() {
  let dir = TempDir::new();
  dir.write("wf.yaml", PIPELINE);
  // After the failure, `skip parse` lets `report` run; the breakpoint stops the run before
  // it, and the what-if value set on `fetch` flows into it.
  repl(
    dir.path(),
    "wf.yaml",
    "break report\nstep\nstatus\nstep\ninspect parse\neval stages.fetch.outputs.count\n\
     eval stages.parse.status == 'failed' && parameters.rows > 2\neval stages.fetch.outputs.(\n\
     skip parse\ncontinue\ninspect report\nunbreak report\nunbreak report\n\
     set fetch.outputs.count = 42\neval stages.fetch.outputs.count\nretry report\ncontinue\n\
     inspect report\nstatus\n",
  )
  .stdout(
    r#"
    loaded pipeline (4 stages); `step`, `continue`, or `help`
    swdl> break report
    breakpoint before `report`
    swdl> step
    ▶ stage fetch started (attempt 1, uses echo)
    ✓ stage fetch completed in [..] {"count":3}
    swdl> status
    run repl-1 running (paused)
      fetch                completed  attempts 1 [..]ms
      parse                pending
      report               pending
      ship                 pending
    swdl> step
    ▶ stage parse started (attempt 1, uses fail)
    ✗ stage parse failed: bad row 7
    ⊘ stage report cancelled (halt)
    ⊘ stage ship cancelled (halt)
    ✗ run failed: stage `parse` failed: bad row 7
    swdl> inspect parse
    parse: failed
      uses      fail
      attempts  1
      inputs    {"message":"bad row 7"}
      error     bad row 7
      reason    error
      started   [..]T[..]Z
      finished  [..]T[..]Z
      took      [..]ms
      history
        #1 fail started [..]T[..]Z
        #1 failed: bad row 7
    swdl> eval stages.fetch.outputs.count
    3
    swdl> eval stages.parse.status == 'failed' && parameters.rows > 2
    true
    swdl> eval stages.fetch.outputs.(
    error: expected a property name or `*`, found `(` at column 22
    swdl> skip parse
    `parse` skipped: `step` or `continue`
    swdl> continue
    ⏸ run paused at breakpoint (stage report)
    swdl> inspect report
    report: pending
    swdl> unbreak report
    breakpoint before `report` removed
    swdl> unbreak report
    no breakpoint at `report` to remove
    swdl> set fetch.outputs.count = 42
    fetch.outputs.count = 42; stages that already ran keep their results (`retry` them)
    swdl> eval stages.fetch.outputs.count
    42
    swdl> retry report
    error: `report` is pending: only a finished stage can be retried
    swdl> continue
    ▶ stage report started (attempt 1, uses echo)
    ✓ stage report completed in [..] {"parsed":"skipped","count":42}
    ? gate ship waiting: ship the report?
    stopped at gate `ship`: `approve ship` or `reject ship`, then `continue`
    swdl> inspect report
    report: completed
      uses      echo
      attempts  1
      inputs    {"parsed":"skipped","count":42}
      outputs   {"parsed":"skipped","count":42}
      started   [..]T[..]Z
      finished  [..]T[..]Z
      took      [..]ms
      history
        #1 echo started [..]T[..]Z
        #1 completed in [..]
    swdl> status
    run repl-1 paused
      fetch                completed  attempts 1 [..]ms
      parse                skipped    attempts 1
      report               completed  attempts 1 [..]ms
      ship                 waiting
    "#,
  )
  .stderr("")
  .status(0)
  .run();
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
  repl(
    dir.path(),
    "wf.yaml",
    "approve ship\ncontinue\napprove fetch\napprove ship all good\nstatus\nstep\nrestart\n\
     continue\nreject ship not today\nstatus\n",
  )
  .stdout(
    r#"
    loaded pipeline (4 stages); `step`, `continue`, or `help`
    swdl> approve ship
    error: `ship` is not waiting for a decision
    swdl> continue
    ▶ stage fetch started (attempt 1, uses echo)
    ✓ stage fetch completed in [..] {"count":3}
    ▶ stage parse started (attempt 1, uses echo)
    ✓ stage parse completed in [..] {"rows":7}
    ▶ stage report started (attempt 1, uses echo)
    ✓ stage report completed in [..] {"parsed":"completed","count":3}
    ? gate ship waiting: ship the report?
    stopped at gate `ship`: `approve ship` or `reject ship`, then `continue`
    swdl> approve fetch
    error: `fetch` is not waiting for a decision (waiting: ship)
    swdl> approve ship all good
    ✓ gate ship approved by repl: all good
    ✓ stage ship completed in [..] {"decision":"approve","decided_by":"repl","reason":"all good"}
    ✓ run completed in [..]
    swdl> status
    run repl-1 completed
      fetch                completed  attempts 1 [..]ms
      parse                completed  attempts 1 [..]ms
      report               completed  attempts 1 [..]ms
      ship                 completed  [..]ms
    swdl> step
    error: the run is over (completed): `restart`, or `retry STAGE` / `skip STAGE`
    swdl> restart
    restarted: nothing has run
    swdl> continue
    ▶ stage fetch started (attempt 1, uses echo)
    ✓ stage fetch completed in [..] {"count":3}
    ▶ stage parse started (attempt 1, uses echo)
    ✓ stage parse completed in [..] {"rows":7}
    ▶ stage report started (attempt 1, uses echo)
    ✓ stage report completed in [..] {"parsed":"completed","count":3}
    ? gate ship waiting: ship the report?
    stopped at gate `ship`: `approve ship` or `reject ship`, then `continue`
    swdl> reject ship not today
    ✗ gate ship rejected by repl: not today
    ✗ stage ship failed: rejected by repl: not today
    ✗ run failed: stage `ship` failed: rejected by repl: not today
    swdl> status
    run repl-2 failed
      fetch                completed  attempts 1 [..]ms
      parse                completed  attempts 1 [..]ms
      report               completed  attempts 1 [..]ms
      ship                 failed     [..]ms  rejected by repl: not today
    "#,
  )
  .stderr("")
  .status(0)
  .run();
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
  // The run in progress keeps the value it started with: `who` is still ada.
  repl(
    dir.path(),
    "wf.yaml",
    "param who=ada\nstep\nparam who=bob\neval parameters.who\nlua greeting = 'hello'\n\
     lua return greeting .. ' from lua'\nlua error('boom')\nload other.yaml\nstatus\n\
     load missing.yaml\n",
  )
  .stdout(
    "
    loaded two (2 stages); `step`, `continue`, or `help`
    swdl> param who=ada
    who set
    swdl> step
    ▶ stage greet started (attempt 1, uses echo)
    ✓ stage greet completed in [..] {\"message\":\"hi ada\"}
    swdl> param who=bob
    who set; it applies from the next `restart`
    swdl> eval parameters.who
    \"ada\"
    swdl> lua greeting = 'hello'
    nil
    swdl> lua return greeting .. ' from lua'
    \"hello from lua\"
    swdl> lua error('boom')
    error: lua:1: boom
    stack traceback:
    \t[C]: in global 'error'
    \tlua:1: in main chunk
    swdl> load other.yaml
    loaded other (1 stage); `step`, `continue`, or `help`
    swdl> status
    run repl-3 running (paused)
      only                 pending
    swdl> load missing.yaml
    error: missing.yaml: No such file or directory (os error 2)
    ",
  )
  .stderr("")
  .status(0)
  .run();

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
  // Only `shout` runs again; `greet` keeps its first (and only) attempt.
  let expected = unindent(
    r#"
    loaded two (2 stages); `step`, `continue`, or `help`
    swdl> continue
    ▶ stage greet started (attempt 1, uses echo)
    ✓ stage greet completed in [..] {"message":"hi world"}
    ▶ stage shout started (attempt 1, uses echo)
    ✓ stage shout completed in [..] {"loud":"hi world!"}
    ✓ run completed in [..]
    swdl> reload
    reloaded; changed: shout (they and what follows run again)
    swdl> continue
    ▶ stage shout started (attempt 2, uses echo)
    ✓ stage shout completed in [..] (attempt 2) {"loud":"hi world!!!"}
    ✓ run completed in [..]
    swdl> inspect greet
    greet: completed
      uses      echo
      attempts  1
      inputs    {"message":"hi world"}
      outputs   {"message":"hi world"}
      started   [..]
      finished  [..]
      took      [..]ms
      history
        #1 echo started [..]
        #1 completed in [..]ms
    swdl> inspect shout
    shout: completed
      uses      echo
      attempts  2
      inputs    {"loud":"hi world!!!"}
      outputs   {"loud":"hi world!!!"}
      started   [..]
      finished  [..]
      took      [..]ms
      history
        #1 echo started [..]
        #2 echo started [..]
        #2 completed in [..]ms
    "#,
  );
  if let Some(diff) = diff(&expected, &out) {
    panic!("the reloaded session differs:\n{diff}");
  }
}
