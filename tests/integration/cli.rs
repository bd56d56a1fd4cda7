//! The command line behaving as its peers do: a missing file is an error at once, read-only
//! commands never create a store, and the store is found the way git finds `.git`.
use crate::test::Test;

const HELLO: &str = "
  name: hello
  stages:
    - { id: greet, uses: echo, with: { message: hi } }
";

#[test]
fn repl_and_watch_of_a_missing_file_exit_2_with_the_error() {
  for command in ["repl", "watch"] {
    Test::new()
      .args([command, "missing.yaml"])
      .stdout("")
      .stderr("error: missing.yaml: No such file or directory (os error 2)\n")
      .status(2)
      .run();
  }
}

#[test]
fn repl_of_an_invalid_file_exits_2_with_its_diagnostic() {
  Test::new()
    .workflow(
      "
      name: bad
      stages:
        - { id: a, uses: echo, depend_on: [b] }
      ",
    )
    .args(["repl", "wf.yaml"])
    .stdout("")
    .stderr(
      "
      wf.yaml:3:26: error: unknown key `depend_on` in stage, did you mean `depends_on`?
        |
      3 |   - { id: a, uses: echo, depend_on: [b] }
        |                          ^^^^^^^^^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn read_only_commands_never_create_a_store() {
  let out = Test::new()
    .args(["runs"])
    .stdout("no runs: there is no run store at .swdl yet (`swdl run` makes one)\n")
    .stderr("")
    .status(0)
    .run();
  out
    .then()
    .args(["runs", "--format", "json"])
    .stdout("[]\n")
    .stderr("")
    .status(0)
    .run();
  let missing = "error: no run `nope`: there is no run store at .swdl (runs are recorded in the \
                 nearest `.swdl/` of the directory `swdl run` ran in; --store or SWDL_STORE name \
                 another)\n";
  for args in [
    &["runs", "nope"][..],
    &["approve", "nope", "gate"],
    &["reject", "nope", "gate"],
    &["cancel", "nope"],
    &["pause", "nope"],
    &["resume", "nope"],
  ] {
    out
      .then()
      .args(args)
      .stdout("")
      .stderr(missing)
      .status(2)
      .run();
  }
  assert!(
    !out.path().join(".swdl").exists(),
    "a read-only command created the store"
  );
}

#[test]
fn the_nearest_store_above_the_current_directory_is_used() {
  let out = Test::new()
    .workflow(HELLO)
    .file("sub/deeper/notes.txt", "")
    .args(["run", "wf.yaml", "--progress", "none", "--output", "json"])
    .status(0)
    .run();
  let id = out.json()["run"].as_str().unwrap_or_default().to_string();
  assert!(out.path().join(".swdl/swdl.db").is_file());
  // From two levels down, `runs` reads the store above, and a new run is recorded there too.
  let deeper = out.path().join("sub/deeper");
  let listed = Test::at(&deeper)
    .env_remove("SWDL_STORE")
    .args(["runs", "--format", "json"])
    .status(0)
    .run()
    .json();
  assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
  Test::at(&deeper)
    .env_remove("SWDL_STORE")
    .args(["run", "../../wf.yaml", "--progress", "none"])
    .status(0)
    .run();
  assert!(!deeper.join(".swdl").exists(), "a second store was made");
  let listed = Test::at(&deeper)
    .env_remove("SWDL_STORE")
    .args(["runs", "--format", "json"])
    .status(0)
    .run()
    .json();
  assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}

const CONDITIONAL: &str = "
  name: p
  parameters:
    deploy: { type: boolean, default: false }
  stages:
    - { id: build, uses: echo }
    - { id: ship, uses: echo, depends_on: [build], if: $<< parameters.deploy >> }
";

#[test]
fn plan_and_repl_take_a_params_file_like_run() {
  let out = Test::new()
    .workflow(CONDITIONAL)
    .file("p.yaml", "deploy: true\n")
    .file("bad.yaml", "deploy: maybe\n")
    .args(["plan", "wf.yaml", "--params", "p.yaml"])
    .stdout("...\n[..]if $<< parameters.deploy >> (will run)[..]\n...")
    .stderr("")
    .status(0)
    .run();
  out
    .then()
    .args(["plan", "wf.yaml", "--params", "bad.yaml"])
    .stdout("")
    .stderr(
      "
      bad.yaml:1:9: error: parameter `deploy` expects boolean, got `maybe`
        |
      1 | deploy: maybe
        |         ^^^^^
      ",
    )
    .status(2)
    .run();
  // In the REPL too, and a `--param` wins over the file.
  out
    .then()
    .args(["repl", "wf.yaml", "--params", "p.yaml"])
    .stdin("eval parameters.deploy\n")
    .stdout(
      "loaded p (2 stages); `step`, `continue`, or `help`\nswdl> eval parameters.deploy\ntrue\n",
    )
    .status(0)
    .run();
  out
    .then()
    .args([
      "repl",
      "wf.yaml",
      "--params",
      "p.yaml",
      "--param",
      "deploy=false",
    ])
    .stdin("eval parameters.deploy\n")
    .stdout(
      "loaded p (2 stages); `step`, `continue`, or `help`\nswdl> eval parameters.deploy\nfalse\n",
    )
    .status(0)
    .run();
}

#[test]
fn counts_read_as_english_and_no_word_is_said_twice() {
  Test::new()
    .workflow(HELLO)
    .args(["validate", "wf.yaml"])
    .stdout("wf.yaml: valid (1 stage, 1 batch)\n")
    .stderr("")
    .status(0)
    .run();
  Test::new()
    .workflow(
      "
      name: g
      stages:
        - { id: a, uses: echo }
        - { id: ok, gate: { message: go? }, depends_on: [a] }
      ",
    )
    .args(["run", "wf.yaml", "--store", "none", "--progress", "plain"])
    .stderr(
      "
      [..] run g started (2 stages, max_parallel 3)
      [..] stage a started (attempt 1, uses echo)
      [..] stage a completed in [..]
      [..] gate ok waiting: go?
      [..] run suspended: waiting for a decision on `ok`
      run suspended: completed 1/2 stages, 1 waiting in [..]
      run [..] is suspended at ok
        decide ok up front: `--approve ok` or `--reject ok`, and run again
      ",
    )
    .status(4)
    .run();
}

#[test]
fn runs_shows_the_duration_the_run_itself_reported() {
  let out = Test::new()
    .workflow(
      "
      name: slow
      stages:
        - { id: nap, uses: sleep, with: { ms: 50 } }
      ",
    )
    .args([
      "run",
      "wf.yaml",
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
    .status(0)
    .run();
  let reported = out.completed()["duration_ms"].clone();
  let listed = out
    .then()
    .args(["runs", "--format", "json"])
    .status(0)
    .run()
    .json();
  assert_eq!(listed[0]["duration_ms"], reported, "{listed}");
  let ms = reported.as_u64().unwrap_or_default();
  out
    .then()
    .args(["runs"])
    .stdout(&format!("RUN[..]\n[..] completed  slow [..] {ms}ms\n"))
    .status(0)
    .run();
}

#[test]
fn a_reader_that_stops_reading_ends_the_command_quietly() {
  // `swdl runs | head -0`: the pipe's reading end is closed before swdl writes.
  for args in [&["eval", "[1, 2, 3]"][..], &["runs"], &["plan", "wf.yaml"]] {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = Test::new()
      .workflow(HELLO)
      .args(args.iter().copied())
      .command()
      .stdout(writer)
      .stderr(std::process::Stdio::piped())
      .output()
      .expect("swdl runs");
    assert_eq!(
      (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).as_ref()
      ),
      (Some(0), ""),
      "{args:?}"
    );
  }
}
