//! `swdl validate`: summaries for valid files, positioned diagnostics for invalid ones.
use crate::{common::root, test::Test};

/// `swdl validate ARGS` from the repository root, where `examples/` and `tests/invalid/` are.
fn validate<const N: usize>(args: [&str; N]) -> Test {
  Test::at(root()).args(["validate"]).args(args)
}

#[test]
fn valid_file_exits_zero_with_a_summary() {
  validate(["examples/hello.yaml"])
    .stdout("examples/hello.yaml: valid (2 stages, 2 batches)\n")
    .stderr("")
    .status(0)
    .run();
}

#[test]
fn several_files_are_checked_and_any_invalid_one_fails_the_command() {
  validate(["examples/hello.yaml", "tests/invalid/self_dependency.yaml"])
    .stdout("examples/hello.yaml: valid (2 stages, 2 batches)\n")
    .stderr(
      r"
    tests/invalid/self_dependency.yaml:6:17: error: stage `a` depends on itself
      |
    6 |     depends_on: a
      |                 ^
    ",
    )
    .status(2)
    .run();
}

#[test]
fn missing_file_is_invalid_input() {
  validate(["no/such/file.yaml"])
    .stdout("")
    .stderr("error: no/such/file.yaml: No such file or directory (os error 2)\n")
    .status(2)
    .run();
}

#[test]
fn caret_run_is_as_wide_as_the_offending_token() {
  validate(["tests/invalid/unknown_stage_key.yaml"])
    .stdout("")
    .stderr(
      r"
      tests/invalid/unknown_stage_key.yaml:8:5: error: unknown key `depend_on` in stage, did you mean `depends_on`?
        |
      8 |     depend_on: [a]
        |     ^^^^^^^^^
      ",
    )
    .status(2)
    .run();
}

#[test]
fn non_ascii_text_before_an_error_counts_columns_in_characters() {
  Test::new()
    .workflow(
      r#"
      name: t
      stages:
        - { id: a, uses: echo, description: "héllo wörld", timeout: "é" }
      "#,
    )
    .args(["validate", "wf.yaml"])
    .stdout("")
    .stderr(
      r#"
      wf.yaml:3:64: error: invalid duration `é`: use a number of seconds or units like 250ms, 30s, 5m, 1h30m, 2d
        |
      3 |   - { id: a, uses: echo, description: "héllo wörld", timeout: "é" }
        |                                                                ^
      "#,
    )
    .status(2)
    .run();
}

#[test]
fn json_format_for_a_valid_file() {
  validate(["--format", "json", "examples/hello.yaml"])
    .stdout(
      r#"
      {
        "valid": true,
        "files": [
          {
            "file": "examples/hello.yaml",
            "valid": true,
            "errors": []
          }
        ]
      }
      "#,
    )
    .stderr("")
    .status(0)
    .run();
}
