use crate::common::{TempDir, swdl};

#[test]
fn valid_file_exits_zero_with_a_summary() {
  let run = swdl(["validate", "examples/hello.yaml"]);
  run.status(0);
  assert_eq!(
    run.stdout,
    "examples/hello.yaml: valid (2 stages, 2 batches)\n"
  );
}

#[test]
fn several_files_are_checked_and_any_invalid_one_fails_the_command() {
  let run = swdl([
    "validate",
    "examples/hello.yaml",
    "tests/invalid/self_dependency.yaml",
  ]);
  run.status(2);
  assert!(run.stdout.contains("examples/hello.yaml: valid"));
  assert!(
    run
      .stderr
      .contains("tests/invalid/self_dependency.yaml:6:17: error: stage `a` depends on itself")
  );
}

#[test]
fn missing_file_is_invalid_input() {
  let run = swdl(["validate", "no/such/file.yaml"]);
  run.status(2);
  assert!(run.stderr.contains("no/such/file.yaml"), "{}", run.stderr);
}

#[test]
fn caret_run_is_as_wide_as_the_offending_token() {
  let run = swdl(["validate", "tests/invalid/unknown_stage_key.yaml"]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("8 |     depend_on: [a]\n  |     ^^^^^^^^^\n"),
    "{}",
    run.stderr
  );
}

#[test]
fn non_ascii_text_before_an_error_counts_columns_in_characters() {
  let dir = TempDir::new();
  let file = dir.write(
    "wf.yaml",
    "name: t\nstages:\n  - { id: a, uses: echo, description: \"héllo wörld\", timeout: \"é\" }\n",
  );
  let run = swdl(["validate".as_ref(), file.as_os_str()]);
  run.status(2);
  assert!(
    run.stderr.contains(":3:64: error: invalid duration `é`"),
    "{}",
    run.stderr
  );
}

#[test]
fn json_format_for_a_valid_file() {
  let run = swdl(["validate", "--format", "json", "examples/hello.yaml"]);
  run.status(0);
  let json = run.json();
  assert_eq!(json["valid"], true);
  assert_eq!(json["files"][0]["file"], "examples/hello.yaml");
  assert_eq!(json["files"][0]["errors"], serde_json::json!([]));
}
