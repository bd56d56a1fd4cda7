//! Every example must validate and plan in every format.
use crate::{common::root, test::Test};

/// `swdl ARGS` from the repository root, where the examples' paths are relative to.
fn swdl<const N: usize>(args: [&str; N]) -> Test {
  Test::at(root()).args(args)
}

fn examples() -> Vec<String> {
  let mut files: Vec<String> = std::fs::read_dir(root().join("examples"))
    .expect("examples/ exists")
    .filter_map(Result::ok)
    .map(|e| e.path())
    .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
    .map(|p| {
      format!(
        "examples/{}",
        p.file_name().unwrap_or_default().to_string_lossy()
      )
    })
    .collect();
  files.sort();
  files
}

#[test]
fn there_are_at_least_five_examples() {
  assert!(examples().len() >= 5, "{:?}", examples());
}

#[test]
fn every_example_validates() {
  for file in examples() {
    swdl(["validate", file.as_str()])
      .stdout(&format!("{file}: valid ([..] stage[..], [..] batch[..])\n"))
      .stderr("")
      .status(0)
      .run();
  }
}

#[test]
fn every_example_plans_in_every_format() {
  // Each example's plan is its own; what every plan must have is checked here.
  for file in examples() {
    swdl(["plan", file.as_str()])
      .stdout(
        r"
        plan [..] ([..] stage[..], [..] batch[..], max_parallel [..])
        ...
        critical path: [..]
        ...
        worst case: [..]
        ",
      )
      .stderr("")
      .status(0)
      .run();
    let plan = swdl(["plan", file.as_str(), "--format", "json"])
      .stderr("")
      .status(0)
      .run()
      .json();
    let batched: usize = plan["batches"]
      .as_array()
      .expect("batches")
      .iter()
      .map(|b| b.as_array().map_or(0, Vec::len))
      .sum();
    assert_eq!(
      batched,
      plan["stages"].as_array().map_or(0, Vec::len),
      "{file}"
    );
    swdl(["plan", file.as_str(), "--format", "dot"])
      .stdout(
        r"
        digraph [..] {
        ...
        }
        ",
      )
      .stderr("")
      .status(0)
      .run();
    swdl(["plan", file.as_str(), "--format", "mermaid"])
      .stdout(
        r"
        flowchart TD
        ...
        ",
      )
      .stderr("")
      .status(0)
      .run();
  }
}

#[test]
fn every_example_runs_to_completion_with_its_gates_approved() {
  for file in examples() {
    // An example with a deliberate bug says so (`# fails on purpose`) and must fail.
    let text = std::fs::read_to_string(root().join(&file)).unwrap_or_default();
    let fails = text.contains("# fails on purpose");
    let record = swdl([
      "run",
      file.as_str(),
      "--approve-all",
      "--progress",
      "none",
      "--output",
      "json",
    ])
    .status(i32::from(fails))
    .run()
    .json();
    let expected = if fails { "failed" } else { "completed" };
    assert_eq!(record["status"], expected, "{file}");
  }
}

#[test]
fn the_code_review_demo_recovers_through_retries_and_its_fallback() {
  let record = swdl([
    "run",
    "examples/code-review.yaml",
    "--approve-all",
    "--progress",
    "none",
    "--output",
    "json",
  ])
  .stderr("")
  .status(0)
  .run()
  .json();
  let security = &record["stages"]["security"];
  assert_eq!(security["status"], "completed");
  assert_eq!(security["uses"], "echo", "the fallback finished the stage");
  assert_eq!(security["attempts"], 3);
}
