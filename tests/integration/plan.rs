use crate::common::{TempDir, swdl};

const DIAMOND: &str = r#"
name: shape
parameters:
  fast: { type: boolean, default: false }
  n: { type: integer, required: true }
config: { max_parallel: 2, timeout: 1h }
stages:
  - id: start
    uses: sleep
    with: { ms: 100 }
  - id: left
    depends_on: start
    uses: sleep
    with: { ms: 500 }
    retry: { max_attempts: 3, backoff: exponential, delay: 1s }
    timeout: 10s
  - id: right
    depends_on: start
    uses: shell
    with: { run: "true" }
  - id: ok
    depends_on: [left, right]
    gate: { message: "go?", timeout: 5m }
  - id: end
    depends_on: ok
    uses: echo
"#;

fn plan_json(dir: &TempDir, params: &[&str]) -> serde_json::Value {
  let file = dir.write("wf.yaml", DIAMOND);
  let mut args = vec![
    "plan".to_string(),
    file.display().to_string(),
    "--format".into(),
    "json".into(),
  ];
  for p in params {
    args.push("--param".into());
    args.push((*p).to_string());
  }
  let run = swdl(&args);
  run.status(0);
  run.json()
}

#[test]
fn batches_are_the_dag_levels() {
  let dir = TempDir::new();
  let plan = plan_json(&dir, &["n=1"]);
  assert_eq!(
    plan["batches"],
    serde_json::json!([["start"], ["left", "right"], ["ok"], ["end"]])
  );
  assert_eq!(plan["max_parallel"], 2);
  assert_eq!(plan["gates"], serde_json::json!(["ok"]));
}

#[test]
fn critical_path_follows_the_longest_known_duration() {
  let dir = TempDir::new();
  let plan = plan_json(&dir, &["n=1"]);
  assert_eq!(
    plan["critical_path"],
    serde_json::json!(["start", "left", "ok", "end"])
  );
  assert_eq!(plan["estimated_duration_ms"], 600);
  assert_eq!(plan["unknown_duration"], serde_json::json!(["right"]));
}

#[test]
fn worst_case_counts_attempts_backoff_and_is_capped_by_the_run_timeout() {
  let dir = TempDir::new();
  let plan = plan_json(&dir, &["n=1"]);
  let left = &plan["stages"][1];
  // 3 attempts of 10s plus backoff delays of 1s and 2s.
  assert_eq!(left["worst_case_ms"], 33_000);
  assert_eq!(left["max_attempts"], 3);
  assert_eq!(plan["worst_case_ms"], 3_600_000);
}

#[test]
fn missing_required_parameter_points_at_its_declaration() {
  let dir = TempDir::new();
  let file = dir.write("wf.yaml", DIAMOND);
  let run = swdl(["plan".as_ref(), file.as_os_str()]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("wf.yaml:5:3: error: missing required parameter `n`: pass --param n=VALUE"),
    "{}",
    run.stderr
  );
}

#[test]
fn parameter_values_are_converted_and_checked() {
  let dir = TempDir::new();
  let file = dir.write("wf.yaml", DIAMOND);
  let file = file.display().to_string();
  let run = swdl(["plan", &file, "--param", "n=two"]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("--param:1:3: error: parameter `n` expects integer, got `two`"),
    "{}",
    run.stderr
  );
  let run = swdl(["plan", &file, "--param", "nn=2"]);
  run.status(2);
  assert!(
    run
      .stderr
      .contains("unknown parameter `nn` given with --param, did you mean `n`?"),
    "{}",
    run.stderr
  );
  let run = swdl(["plan", &file, "--param", "n"]);
  run.status(2);
  assert!(
    run.stderr.contains("--param `n` must look like name=value"),
    "{}",
    run.stderr
  );
}

#[test]
fn text_plan_shows_batches_arrows_and_summary() {
  let dir = TempDir::new();
  let file = dir.write("wf.yaml", DIAMOND);
  let run = swdl([
    "plan".as_ref(),
    file.as_os_str(),
    "--param".as_ref(),
    "n=3".as_ref(),
  ]);
  run.status(0);
  let out = &run.stdout;
  assert!(
    out.starts_with("plan shape (5 stages, 4 batches, max_parallel 2)\n"),
    "{out}"
  );
  assert!(
    out.contains("batch 2\n  * left   <- start  uses sleep\n"),
    "{out}"
  );
  assert!(out.contains("retry 3x exponential 1s"), "{out}");
  assert!(out.contains("  ? ok     <- left, right  gate\n"), "{out}");
  assert!(
    out.contains("critical path: start -> left -> ok -> end\n"),
    "{out}"
  );
  assert!(
    out.contains("estimated duration: 600ms + 1 stage of unknown duration\n"),
    "{out}"
  );
  assert!(out.contains("worst case: 1h\n"), "{out}");
  // No colour codes when stdout is not a terminal.
  assert!(!out.contains('\x1b'));
}

#[test]
fn dot_and_mermaid_draw_every_edge() {
  let dir = TempDir::new();
  let file = dir.write("wf.yaml", DIAMOND);
  let dot = swdl([
    "plan".as_ref(),
    file.as_os_str(),
    "--param".as_ref(),
    "n=3".as_ref(),
    "--format".as_ref(),
    "dot".as_ref(),
  ]);
  dot.status(0);
  for edge in [
    "\"start\" -> \"left\" [penwidth=2]",
    "\"start\" -> \"right\";",
    "\"right\" -> \"ok\";",
  ] {
    assert!(dot.stdout.contains(edge), "{edge}\n{}", dot.stdout);
  }
  assert!(
    dot
      .stdout
      .contains("\"ok\" [label=\"ok\\n(gate)\", shape=diamond")
  );
  let mermaid = swdl([
    "plan".as_ref(),
    file.as_os_str(),
    "--param".as_ref(),
    "n=3".as_ref(),
    "--format".as_ref(),
    "mermaid".as_ref(),
  ]);
  mermaid.status(0);
  assert!(mermaid.stdout.contains("  s_start --> s_left\n"));
  assert!(mermaid.stdout.contains("  s_ok{\"ok (gate)\"}\n"));
}

#[test]
fn conditions_decided_by_parameters_are_marked() {
  let dir = TempDir::new();
  let file = dir.write(
    "wf.yaml",
    "name: t\nparameters:\n  env: { type: string, default: dev }\nstages:\n  - { id: a, uses: echo, if: \"$<< parameters.env == 'prod' >>\" }\n  - { id: b, uses: echo, if: \"$<< parameters.env != 'prod' >>\" }\n  - { id: c, uses: echo, depends_on: a, if: \"$<< failure() >>\" }\n",
  );
  let file = file.display().to_string();
  let plan = swdl(["plan", &file, "--format", "json"]);
  plan.status(0);
  let json = plan.json();
  assert_eq!(json["stages"][0]["decision"], "will skip");
  assert_eq!(json["stages"][1]["decision"], "will run");
  assert!(json["stages"][2].get("decision").is_none());
  let prod = swdl(["plan", &file, "--param", "env=PROD"]);
  prod.status(0);
  // String comparison is case-insensitive, as in GitHub Actions.
  assert!(
    prod
      .stdout
      .contains("if $<< parameters.env == 'prod' >> (will run)"),
    "{}",
    prod.stdout
  );
  assert!(
    prod
      .stdout
      .contains("if $<< parameters.env != 'prod' >> (will skip)"),
    "{}",
    prod.stdout
  );
}
