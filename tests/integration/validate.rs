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

#[test]
fn lua_skills_that_do_not_load_or_miss_their_inputs_fail_validation_beside_other_errors() {
  Test::new()
    .skill(
      "count.lua",
      r#"
      return {
        inputs = { text = "string", limit = "integer?" },
        run = function(ctx, input) return { n = #input.text } end,
      }
      "#,
    )
    .skill(
      "broken.lua",
      "
      return { run = function(ctx, input)
        return {
      end }
      ",
    )
    .workflow(
      "
      name: t
      stages:
        - id: a
          uses: count
          with: { txet: hi, limt: 3, extra: kept, limit_unit: s }
        - id: b
          uses: broken
        - id: c
          uses: count
          with: { text: fine, anything: else }
          fallback: [broken]
        - id: d
          uses: shell
      ",
    )
    .args(["validate", "wf.yaml"])
    .stdout("")
    .stderr(
      "
      wf.yaml:4:11: error: skill `count` needs `text` in `with`
        |
      4 |     uses: count
        |           ^^^^^
      wf.yaml:5:13: error: skill `count` has no input `txet` (did you mean `text`?): it takes limit, text
        |
      5 |     with: { txet: hi, limt: 3, extra: kept, limit_unit: s }
        |             ^^^^
      wf.yaml:5:23: error: skill `count` has no input `limt` (did you mean `limit`?): it takes limit, text
        |
      5 |     with: { txet: hi, limt: 3, extra: kept, limit_unit: s }
        |                       ^^^^
      wf.yaml:7:11: error: skill `broken` does not load: skills/broken.lua:3: unexpected symbol near 'end'
        |
      7 |     uses: broken
        |           ^^^^^^
      wf.yaml:11:16: error: skill `broken` does not load: skills/broken.lua:3: unexpected symbol near 'end'
         |
      11 |     fallback: [broken]
         |                ^^^^^^
      wf.yaml:13:11: error: skill `shell` needs `run` in `with`
         |
      13 |     uses: shell
         |           ^^^^^
      6 errors
      ",
    )
    .status(2)
    .run();
}

#[test]
fn hook_names_and_hook_files_are_checked_by_validate_as_by_run() {
  let test = Test::new()
    .file(
      "hooks.lua",
      r#"swdl.recovery("retry-then-skip", function() return "skip" end)"#,
    )
    .workflow(
      "
      name: t
      config: { hooks: [hooks.lua] }
      stages:
        - { id: s, uses: echo, recover: retry-then-skp }
      ",
    );
  let expected = "
    wf.yaml:4:35: error: unknown recovery strategy `retry-then-skp`, did you mean `retry-then-skip`?: registered are retry-then-skip
      |
    4 |   - { id: s, uses: echo, recover: retry-then-skp }
      |                                   ^^^^^^^^^^^^^^
    ";
  let checked = test
    .clone()
    .args(["validate", "wf.yaml"])
    .stdout("")
    .stderr(expected)
    .status(2)
    .run();
  checked
    .then()
    .args(["run", "wf.yaml", "--progress", "none"])
    .stdout("")
    .stderr(expected)
    .status(2)
    .run();
  // A hook file that does not compile is reported with its own line.
  checked
    .then()
    .file("hooks.lua", "swdl.recovery(\n")
    .args(["validate", "wf.yaml"])
    .stdout("")
    .stderr("error: [..]hooks.lua:2: [..]\n...\n")
    .status(2)
    .run();
}
