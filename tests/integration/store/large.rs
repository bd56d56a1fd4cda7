//! Large values: a big output is stored once, however many events repeat it, and comes back
//! whole.
use super::*;

/// The size of the store's files, in bytes, once a reader (`swdl runs`, whose closing
/// connection checkpoints the write-ahead log into the database) has been through: while a
/// run writes, its value is in the log and, after an automatic checkpoint, in the database
/// too.
fn store_bytes(p: &Project) -> u64 {
  p.runs();
  ["swdl.db", "swdl.db-wal"]
    .iter()
    .filter_map(|f| std::fs::metadata(p.store().join(f)).ok())
    .map(|m| m.len())
    .sum()
}

#[test]
fn a_large_output_is_stored_once_and_comes_back_whole_on_resume() {
  const SIZE: usize = 5_000_000;
  let p = Project::new();
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/big.lua",
    r#"return { run = function() return { big = string.rep("ab", 2500000), small = 1 } end }"#,
  );
  // The value is in make's outputs, in use's inputs and outputs, and in the workflow outputs.
  p.write(
    "big.yaml",
    r#"
name: big
stages:
  - id: make
    uses: big
  - id: use
    depends_on: make
    uses: echo
    with: { copy: "$<< stages.make.outputs.big >>" }
  - id: ship
    depends_on: use
    gate: { message: "ship?" }
outputs:
  big: "$<< stages.use.outputs.copy >>"
  length: "$<< length(stages.make.outputs.big) >>"
"#,
  );
  let out = p
    .swdl(&["run", "big.yaml", "--progress", "none"])
    .stdout("")
    .status(4)
    .run();
  let id = run_id_in(&out.stderr);
  let bytes = store_bytes(&p);
  assert!(
    bytes < 2 * SIZE as u64,
    "the store holds {bytes} bytes for one value of {SIZE}: it is written more than once"
  );
  p.swdl(&["approve", &id, "ship"]).status(0).run();
  p.swdl(&["resume", &id, "--progress", "none"])
    .stdout("")
    .status(0)
    .run();
  assert!(store_bytes(&p) < 2 * SIZE as u64, "{}", store_bytes(&p));
  // Read back whole: by the resumed run (its outputs were computed from the stored events),
  // in the run record and in the runs list.
  let detail = p.detail(&id);
  let big = detail["state"]["outputs"]["big"]
    .as_str()
    .unwrap_or_default();
  assert_eq!(big.len(), SIZE);
  assert!(big.starts_with("abab") && big.ends_with("abab"));
  assert_eq!(detail["state"]["outputs"]["length"], SIZE);
  assert_eq!(
    detail["state"]["stages"]["use"]["inputs"]["copy"]
      .as_str()
      .map(str::len),
    Some(SIZE)
  );
  assert_eq!(detail["state"]["stages"]["make"]["outputs"]["small"], 1);
  let text = p.swdl(&["runs", &id]).status(0).run().stdout;
  assert!(text.contains("\nresumed   1 time\n"), "{text}");
  let runs = p.runs();
  assert_eq!(runs[0]["outputs"]["big"].as_str().map(str::len), Some(SIZE));
}
