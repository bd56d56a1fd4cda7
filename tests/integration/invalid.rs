//! The corpus under `tests/invalid/`: each file states its expected errors in
//! `# expect: LINE:COL: MESSAGE` comments, and validation must report exactly those.
use crate::common::{root, swdl};

#[test]
fn every_invalid_file_reports_its_expected_errors() {
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
    let text = std::fs::read_to_string(file).expect("readable");
    let relative = file
      .strip_prefix(root())
      .expect("under root")
      .display()
      .to_string();
    let expected: Vec<String> = text
      .lines()
      .filter_map(|l| l.strip_prefix("# expect: "))
      .map(|e| {
        let (pos, message) = e.split_once(": ").expect("LINE:COL: MESSAGE");
        format!("{relative}:{pos}: error: {message}")
      })
      .collect();
    assert!(!expected.is_empty(), "{relative} has no `# expect:` line");
    let run = swdl(["validate", relative.as_str()]);
    let reported: Vec<&str> = run
      .stderr
      .lines()
      .filter(|l| l.starts_with(&relative))
      .collect();
    if run.status != 2 || reported != expected {
      failures.push(format!(
        "{relative}: exit {}\n  expected:\n    {}\n  reported:\n    {}",
        run.status,
        expected.join("\n    "),
        reported.join("\n    ")
      ));
    }
    // Every error comes with the source line and a caret under it.
    assert!(
      run.stderr.contains(" | ") && run.stderr.contains('^'),
      "{relative}: no caret\n{}",
      run.stderr
    );
  }
  assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_format_reports_positions() {
  let run = swdl([
    "validate",
    "--format",
    "json",
    "tests/invalid/cycle_three.yaml",
  ]);
  run.status(2);
  let json = run.json();
  assert_eq!(json["valid"], false);
  let error = &json["files"][0]["errors"][0];
  assert_eq!(error["line"], 12);
  assert_eq!(error["column"], 18);
  assert_eq!(error["message"], "dependency cycle: a -> b -> c -> a");
}
