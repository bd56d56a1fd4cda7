//! The corpus under `tests/invalid/`: each `NAME.yaml` states its expected errors in
//! `# expect: LINE:COL: MESSAGE` comments, and `NAME.stderr` beside it holds the whole rendered
//! diagnostic `swdl validate tests/invalid/NAME.yaml` prints (no colours), caret lines and all.
//!
//! After a deliberate change to the diagnostics, regenerate the `.stderr` files with
//! `SWDL_BLESS=1 cargo test --test integration invalid::` and review the diff.
use crate::{
  common::root,
  test::{Test, diff},
};

#[test]
fn every_invalid_file_prints_its_expected_diagnostic() {
  let bless = std::env::var_os("SWDL_BLESS").is_some_and(|v| v == "1");
  let dir = root().join("tests/invalid");
  let mut files: Vec<_> = std::fs::read_dir(&dir)
    .expect("tests/invalid exists")
    .filter_map(Result::ok)
    .map(|e| e.path())
    .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    .collect();
  files.sort();
  assert!(files.len() >= 40, "the corpus has {} files", files.len());
  let mut failures = Vec::new();
  for file in &files {
    let relative = file
      .strip_prefix(root())
      .expect("under root")
      .display()
      .to_string();
    let text = std::fs::read_to_string(file).expect("readable");
    // The `# expect:` lines are the errors the diagnostic must open with, in order.
    let expected_errors: Vec<String> = text
      .lines()
      .filter_map(|l| l.strip_prefix("# expect: "))
      .map(|e| {
        let (pos, message) = e.split_once(": ").expect("LINE:COL: MESSAGE");
        format!("{relative}:{pos}: error: {message}")
      })
      .collect();
    assert!(
      !expected_errors.is_empty(),
      "{relative} has no `# expect:` line"
    );
    let out = Test::at(root())
      .args(["validate", relative.as_str()])
      .status(2)
      .stdout("")
      .run();
    let stderr = out.normalised(&out.stderr);
    let reported: Vec<&str> = stderr
      .lines()
      .filter(|l| l.starts_with(&relative))
      .collect();
    if reported != expected_errors {
      failures.push(format!(
        "{relative}: the `# expect:` lines differ from the report\n  expected:\n    {}\n  \
         reported:\n    {}",
        expected_errors.join("\n    "),
        reported.join("\n    ")
      ));
    }
    let golden = file.with_extension("stderr");
    if bless {
      std::fs::write(&golden, &stderr).expect("write the expected diagnostic");
      continue;
    }
    match std::fs::read_to_string(&golden) {
      Ok(expected) => {
        if let Some(diff) = diff(&expected, &stderr) {
          failures.push(format!(
            "{relative}: stderr differs from {} (-expected +actual)\n{diff}",
            golden.display()
          ));
        }
      }
      Err(e) => failures.push(format!(
        "{}: {e}; write it with SWDL_BLESS=1",
        golden.display()
      )),
    }
  }
  assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_format_reports_positions() {
  Test::at(root())
    .args([
      "validate",
      "--format",
      "json",
      "tests/invalid/cycle_three.yaml",
    ])
    .stdout(
      r#"
      {
        "valid": false,
        "files": [
          {
            "file": "tests/invalid/cycle_three.yaml",
            "valid": false,
            "errors": [
              {
                "file": "tests/invalid/cycle_three.yaml",
                "line": 12,
                "column": 18,
                "message": "dependency cycle: a -> b -> c -> a"
              }
            ]
          }
        ]
      }
      "#,
    )
    .stderr("")
    .status(2)
    .run();
}
