//! `swdl skills`: the registry of built-in and discovered skills.
use crate::common::{TempDir, swdl};

fn fixture() -> TempDir {
  let dir = TempDir::new();
  std::fs::create_dir_all(dir.path().join("lib/review")).expect("dirs");
  dir.write(
    "lib/word-count.lua",
    "return { description = 'Count words', run = function() return {} end }\n",
  );
  dir.write(
    "lib/review/init.lua",
    "return { run = function() return {} end }\n",
  );
  dir.write(
    "lib/review/skill.yaml",
    "description: Review code for style\ndomains: [code-quality, review]\nlanguages: [python, rust]\nrisk: low\ntokens: 300\ninputs: { text: string }\noutputs: { findings: array }\n",
  );
  std::fs::create_dir_all(dir.path().join("lib/deploy")).expect("dirs");
  dir.write(
    "lib/deploy/init.lua",
    "return { run = function() return {} end }\n",
  );
  dir.write(
    "lib/deploy/skill.yaml",
    "domains: [ops]\ntokens: 900\npermissions: [exec, net]\n",
  );
  dir
}

fn lib(dir: &TempDir) -> String {
  dir.path().join("lib").display().to_string()
}

#[test]
fn list_shows_built_ins_and_discovered_skills() {
  let dir = fixture();
  let run = swdl(["skills", "--skills", &lib(&dir)]);
  run.status(0);
  for name in ["echo", "shell", "review", "word-count", "deploy"] {
    assert!(
      run.stdout.lines().any(|l| l.starts_with(name)),
      "{name}\n{}",
      run.stdout
    );
  }
  assert!(run.stdout.contains("Review code for style"));
}

#[test]
fn list_selects_by_domain_and_token_budget() {
  let dir = fixture();
  let run = swdl([
    "skills",
    "list",
    "--skills",
    &lib(&dir),
    "--domain",
    "review",
    "--format",
    "json",
  ]);
  run.status(0);
  let names: Vec<String> = run
    .json()
    .as_array()
    .map(|a| {
      a.iter()
        .filter_map(|s| s["name"].as_str().map(str::to_string))
        .collect()
    })
    .unwrap_or_default();
  assert_eq!(names, vec!["review"]);
  let run = swdl([
    "skills",
    "list",
    "--skills",
    &lib(&dir),
    "--max-tokens",
    "500",
    "--format",
    "json",
  ]);
  run.status(0);
  let json = run.json();
  let names: Vec<&str> = json
    .as_array()
    .map(|a| a.iter().filter_map(|s| s["name"].as_str()).collect())
    .unwrap_or_default();
  // Skills are taken in registry order while they fit: deploy (900) does not, review (300) does.
  assert!(
    names.contains(&"review") && !names.contains(&"deploy"),
    "{names:?}"
  );
  assert!(names.contains(&"word-count"), "{names:?}");
}

#[test]
fn show_prints_metadata_inputs_outputs_and_source() {
  let dir = fixture();
  let run = swdl(["skills", "show", "review", "--skills", &lib(&dir)]);
  run.status(0);
  assert!(
    run.stdout.contains("  domains      code-quality, review"),
    "{}",
    run.stdout
  );
  assert!(
    run.stdout.contains("  inputs       text: string"),
    "{}",
    run.stdout
  );
  assert!(
    run.stdout.contains("  outputs      findings: array"),
    "{}",
    run.stdout
  );
  assert!(
    run.stdout.contains("return { run = function()"),
    "{}",
    run.stdout
  );
  let run = swdl([
    "skills",
    "show",
    "deploy",
    "--skills",
    &lib(&dir),
    "--format",
    "json",
  ]);
  run.status(0);
  assert_eq!(
    run.json()["permissions"],
    serde_json::json!(["exec", "net"])
  );
}

#[test]
fn unknown_skills_and_bad_metadata_exit_2() {
  let dir = fixture();
  let run = swdl(["skills", "show", "reveiw", "--skills", &lib(&dir)]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("unknown skill `reveiw`, did you mean `review`?"),
    "{}",
    run.stderr
  );
  dir.write("lib/review/skill.yaml", "tokens: lots\n");
  let run = swdl(["skills", "--skills", &lib(&dir)]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("skill.yaml:1:9: error: `tokens` must be a whole number, found a string"),
    "{}",
    run.stderr
  );
}
