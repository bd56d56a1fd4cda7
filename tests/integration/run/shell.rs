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
