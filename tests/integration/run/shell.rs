//! The shell skill: exit status and log lines.
use super::*;

#[test]
fn failing_shell_reports_its_exit_status() {
  let out = run_wf(
    r#"
name: shfail
stages:
  - id: quiet
    uses: shell
    with: { run: "exit 3" }
    on_failure: continue
  - id: loud
    uses: shell
    with: { run: "echo 'disk full' >&2; exit 3" }
    on_failure: continue
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let quiet = out.named("stage_failed", "quiet");
  assert_eq!(
    quiet[0]["error"],
    "shell exited with status 3",
    "{}",
    out.dump()
  );
  assert_eq!(quiet[0]["reason"], "error");
  assert_eq!(quiet[0]["uses"], "shell");
  let loud = out.named("stage_failed", "loud");
  assert_eq!(loud[0]["error"], "shell exited with status 3: disk full");
}

#[test]
fn log_events_carry_shell_output_lines() {
  let out = run_wf(
    r#"
name: logs
stages:
  - id: talk
    uses: shell
    with: { run: "echo one; echo two; echo warn >&2; printf 'no newline'" }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let logs = out.named("log", "talk");
  let stdout: Vec<&Value> = logs
    .iter()
    .filter(|l| l["stream"] == "stdout")
    .map(|l| &l["message"])
    .collect();
  assert_eq!(
    stdout,
    [&json!("one"), &json!("two"), &json!("no newline")],
    "{}",
    out.dump()
  );
  assert!(
    logs
      .iter()
      .any(|l| l["stream"] == "stderr" && l["message"] == "warn")
  );
  assert!(logs.iter().all(|l| l["attempt"] == 1));
  // Logs come between the attempt's start and its end.
  let start = out.index("stage_started", "talk");
  let end = out.index("stage_completed", "talk");
  let first_log = out.index("log", "talk");
  assert!(start < first_log && first_log < end);
  let outputs = &out.named("stage_completed", "talk")[0]["outputs"];
  assert_eq!(outputs["stdout"], "one\ntwo\nno newline");
  assert_eq!(outputs["stderr"], "warn");
  assert_eq!(outputs["exit_code"], 0);
}

#[test]
fn a_relative_cwd_is_the_workflow_files_and_output_lines_of_json_are_typed() {
  let test = Test::new().file(
    "sub/wf.yaml",
    r#"
    name: typed
    stages:
      - id: here
        uses: shell
        with: { run: pwd -P, cwd: dir }
      - id: typed
        uses: shell
        with:
          run: |
            echo "n=3" >> "$SWDL_OUTPUT"
            echo "ok=true" >> "$SWDL_OUTPUT"
            echo 'xs=[1,"b"]' >> "$SWDL_OUTPUT"
            echo 'quoted="1.10"' >> "$SWDL_OUTPUT"
            echo "version=1.2.3" >> "$SWDL_OUTPUT"
      - id: use
        depends_on: typed
        uses: echo
        with:
          n: "$<< stages.typed.outputs.n >>"
          big: "$<< stages.typed.outputs.n > 2 && stages.typed.outputs.ok == true >>"
          second: "$<< stages.typed.outputs.xs[1] >>"
          quoted: "$<< stages.typed.outputs.quoted >>"
          version: "$<< stages.typed.outputs.version >>"
    "#,
  );
  std::fs::create_dir_all(test.path().join("sub/dir")).expect("mkdir");
  let dir = test
    .path()
    .join("sub/dir")
    .canonicalize()
    .expect("canonical");
  let out = test
    .args([
      "run",
      "sub/wf.yaml",
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(
    out.outputs("here")["stdout"],
    dir.display().to_string(),
    "{}",
    out.dump()
  );
  assert_eq!(
    out.one("stage_started", "use")["inputs"],
    json!({ "n": 3, "big": true, "second": "b", "quoted": "1.10", "version": "1.2.3" })
  );
}

#[test]
fn an_output_the_contract_declares_a_string_stays_the_text_written() {
  // A short commit hash can be all digits, and a version can read as a number: the
  // contract says they are text, so they stay exactly as written.
  let out = run_wf(
    r#"
name: text
stages:
  - id: checkout
    uses: shell
    with:
      run: |
        echo "commit=2506175" >> "$SWDL_OUTPUT"
        echo "version=1.10" >> "$SWDL_OUTPUT"
        echo "count=3" >> "$SWDL_OUTPUT"
    outputs: { commit: string, version: string, count: number }
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(
    out.outputs("checkout"),
    &json!({"stdout": "", "stderr": "", "exit_code": 0, "commit": "2506175", "version": "1.10", "count": 3}),
    "{}",
    out.dump()
  );
}
