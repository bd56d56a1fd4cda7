//! Turns a YAML [`Node`](yaml::Node) tree into a typed [`Workflow`], collecting every error:
//! node readers ([`nodes`]), the top level ([`model`]), stages ([`stage`]) and a skill's
//! `skill.yaml` ([`skill_meta`]). [`crate::compose`] runs it between the YAML parser and the
//! checks that need the whole workflow.
use super::*;
use crate::workflow::*;
use std::time::Duration;
use yaml::Node;

mod model;
mod nodes;
mod skill_meta;
mod stage;

pub(crate) use skill_meta::{SkillMeta, load_skill_meta};

pub(super) const WORKFLOW_KEYS: &[&str] = &[
  "swdl",
  "name",
  "description",
  "version",
  "parameters",
  "config",
  "defaults",
  "stages",
  "outputs",
];
pub(super) const PARAMETER_KEYS: &[&str] = &[
  "type",
  "default",
  "required",
  "description",
  "enum",
  "secret",
];
pub(super) const CONFIG_KEYS: &[&str] = &[
  "max_parallel",
  "timeout",
  "env",
  "hooks",
  "skills_path",
  "approval",
  "permissions",
  "secrets",
  "budget",
];
pub(super) const APPROVAL_KEYS: &[&str] = &["policy", "require_for"];
pub(super) const BUDGET_KEYS: &[&str] = &["tokens"];
pub(super) const DEFAULTS_KEYS: &[&str] = &["timeout", "retry", "on_failure"];
pub(super) const RETRY_KEYS: &[&str] = &[
  "max_attempts",
  "backoff",
  "delay",
  "max_delay",
  "jitter",
  "on",
];
pub(super) const STAGE_KEYS: &[&str] = &[
  "id",
  "description",
  "depends_on",
  "uses",
  "with",
  "gate",
  "if",
  "env",
  "timeout",
  "retry",
  "on_failure",
  "fallback",
  "compensate",
  "recover",
  "risk",
  "outputs",
  "for_each",
  "matrix",
  "max_parallel",
  "fail_fast",
];
/// Keys that only make sense on a skill stage.
pub(super) const SKILL_ONLY_KEYS: &[&str] = &[
  "with",
  "retry",
  "fallback",
  "compensate",
  "recover",
  "outputs",
  "timeout",
  "for_each",
  "matrix",
  "max_parallel",
  "fail_fast",
];
pub(super) const GATE_KEYS: &[&str] = &[
  "message",
  "timeout",
  "on_timeout",
  "policy",
  "approvers",
  "inputs",
];
pub(super) const COMPENSATE_KEYS: &[&str] = &["uses", "with"];
pub(super) const FIELD_KEYS: &[&str] = &["type", "required", "description"];
pub(super) const RETRY_ON: &[&str] = &["error", "timeout"];
pub(super) const GATE_DECISIONS: &[&str] = &["reject", "approve"];
pub(super) const PARAMETER_TYPES: &[&str] =
  &["string", "number", "integer", "boolean", "array", "object"];

/// Default stage timeout when neither the stage nor `defaults` sets one.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_hours(2);

/// The typed model of a parsed file, and every problem found reading it.
pub(crate) fn read(source: &Arc<Source>, root: &Node) -> (Option<Workflow>, Diagnostics) {
  let mut loader = nodes::Loader {
    source: Arc::clone(source),
    diagnostics: Diagnostics::default(),
  };
  let workflow = loader.workflow(root);
  (workflow, loader.diagnostics)
}

/// Workflow names and stage ids: `[a-z0-9][a-z0-9_-]*`.
pub(crate) fn is_valid_name(name: &str) -> bool {
  let mut bytes = name.bytes();
  bytes
    .next()
    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parameter names are read through expressions, so they follow expression name rules.
pub(super) fn is_valid_param_name(name: &str) -> bool {
  let mut bytes = name.bytes();
  bytes
    .next()
    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
    && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::compose::load_str;
  use proptest::prelude::*;

  fn load(text: &str) -> Workflow {
    match load_str("t.yaml", text) {
      Ok(w) => w,
      Err(d) => panic!("{}", d.render(false)),
    }
  }

  fn errors(text: &str) -> Vec<String> {
    match load_str("t.yaml", text) {
      Ok(_) => Vec::new(),
      Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
  }

  #[test]
  fn documented_defaults_apply_when_nothing_is_given() {
    let w = load("name: t\nstages:\n  - { id: a, uses: echo }\n  - { id: g, gate: {} }\n");
    assert_eq!(w.swdl, 1);
    assert_eq!(w.config.max_parallel, 3);
    assert_eq!(w.config.skills_path, vec!["skills".to_string()]);
    let a = &w.stages[0];
    assert_eq!(a.timeout, Duration::from_hours(2));
    assert_eq!(a.retry, Retry::default());
    assert_eq!(a.retry.max_attempts, 1);
    assert_eq!(a.on_failure, OnFailure::Halt);
    let gate = w.stages[1].gate().expect("a gate");
    assert_eq!(gate.on_timeout, GateDecision::Reject);
    assert!(gate.timeout.is_none());
  }

  #[test]
  fn stage_retry_merges_field_by_field_over_defaults() {
    let w = load(
      "name: t\ndefaults:\n  timeout: 30m\n  on_failure: continue\n  retry: { max_attempts: 2, backoff: exponential, delay: 1s, max_delay: 1m, jitter: true }\nstages:\n  - { id: a, uses: echo, retry: { max_attempts: 5 } }\n  - { id: b, uses: echo, timeout: 10s, on_failure: ignore }\n",
    );
    let a = &w.stages[0];
    assert_eq!(a.retry.max_attempts, 5);
    assert_eq!(a.retry.backoff, Backoff::Exponential);
    assert_eq!(a.retry.max_delay, Some(Duration::from_mins(1)));
    assert!(a.retry.jitter);
    assert_eq!(a.timeout, Duration::from_mins(30));
    assert_eq!(a.on_failure, OnFailure::Continue);
    let b = &w.stages[1];
    assert_eq!(b.retry.max_attempts, 2);
    assert_eq!(b.timeout, Duration::from_secs(10));
    assert_eq!(b.on_failure, OnFailure::Ignore);
  }

  #[test]
  fn shorthands_are_accepted() {
    let w = load(
      "name: t\nstages:\n  - id: a\n    uses: echo\n    outputs: { x: string, y: { type: integer, required: false } }\n    compensate: undo\n  - id: b\n    depends_on: a\n    gate: \"Ship $<< parameters.v >>?\"\nparameters:\n  v: { type: string, default: '1' }\n",
    );
    let a = &w.stages[0];
    assert_eq!(a.outputs["x"].ty, ValueType::String);
    assert!(a.outputs["x"].required);
    assert!(!a.outputs["y"].required);
    assert_eq!(a.compensate.as_ref().map(|c| c.uses.as_str()), Some("undo"));
    let b = &w.stages[1];
    assert_eq!(b.depends_on, vec!["a".to_string()]);
    assert!(b.gate().and_then(|g| g.message.as_ref()).is_some());
  }

  #[test]
  fn parameters_keep_types_defaults_and_enums() {
    let w = load(
      "name: t\nparameters:\n  env: { type: string, enum: [dev, prod], default: dev }\n  n: { type: number, default: 2.5 }\n  token: { type: string, secret: true, required: true }\nstages:\n  - { id: a, uses: echo }\n",
    );
    let env = &w.parameters["env"];
    assert_eq!(env.allowed.as_ref().map(Vec::len), Some(2));
    assert_eq!(env.default, Some(serde_json::json!("dev")));
    assert_eq!(w.parameters["n"].default, Some(serde_json::json!(2.5)));
    assert!(w.parameters["token"].secret && w.parameters["token"].required);
  }

  #[test]
  fn with_keeps_literals_and_expressions_apart() {
    let w = load(
      "name: t\nstages:\n  - id: a\n    uses: echo\n    with: { n: 3, list: [1, two], cost: \"$$<< not an expression\", nested: { x: \"$<< 1 >>\" } }\n",
    );
    let with = &w.stages[0].skill().expect("skill").with;
    assert_eq!(with["n"].as_literal(), Some(&serde_json::json!(3)));
    assert_eq!(
      with["list"].as_literal(),
      Some(&serde_json::json!([1, "two"]))
    );
    assert_eq!(
      with["cost"].as_literal(),
      Some(&serde_json::json!("$<< not an expression"))
    );
    assert!(matches!(with["nested"], Input::Map(_)));
  }

  #[test]
  fn errors_are_all_reported_in_file_order() {
    let found = errors(
      "name: t\nstages:\n  - { id: b, uses: echo, depends_on: [zz] }\n  - { id: a, uses: echo, timeout: nope }\n",
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("t.yaml:3:39: error: stage `b` depends on unknown stage `zz`"));
    assert!(found[1].starts_with("t.yaml:4:35: error: invalid duration `nope`"));
  }

  #[test]
  fn a_broken_stage_does_not_cascade_into_unknown_dependencies() {
    let found = errors(
      "name: t\nstages:\n  - { id: a, uses: echo, gate: {} }\n  - { id: b, uses: echo, depends_on: a }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
  }

  #[test]
  fn deep_dependency_chains_do_not_overflow_the_stack() {
    let mut text = String::from("name: t\nstages:\n  - { id: s0, uses: echo }\n");
    for i in 1..20_000 {
      text.push_str(&format!(
        "  - {{ id: s{i}, uses: echo, depends_on: s{} }}\n",
        i - 1
      ));
    }
    text.push_str("  - { id: loop, uses: echo, depends_on: [s19999, loop2] }\n");
    text.push_str("  - { id: loop2, uses: echo, depends_on: loop }\n");
    let found = errors(&text);
    assert_eq!(found.len(), 1);
    assert!(
      found[0].contains("dependency cycle: loop -> loop2 -> loop"),
      "{found:?}"
    );
  }

  const VALID: &str = "name: t\nparameters:\n  n: { type: integer, default: 3 }\nconfig: { max_parallel: 2, timeout: 1h }\ndefaults:\n  retry: { max_attempts: 2, backoff: linear, delay: 1s }\nstages:\n  - id: a\n    uses: echo\n    with: { x: \"$<< parameters.n >>\" }\n    outputs: { x: integer }\n  - id: b\n    depends_on: [a]\n    if: $<< stages.a.outputs.x > 2 >>\n    uses: sleep\n    with: { ms: 10 }\n  - id: g\n    depends_on: b\n    gate: { message: \"go $<< parameters.n >>?\", timeout: 5m }\noutputs:\n  x: $<< stages.a.outputs.x >>\n";

  #[test]
  fn the_mutation_seed_is_valid() {
    load(VALID);
  }

  proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_text(text in "\\PC{0,300}") {
      let _ = load_str("p.yaml", &text);
    }

    #[test]
    fn never_panics_on_yaml_shaped_noise(text in "[-:{}\\[\\],'\"\\n #&*!|>a-z0-9_$<.()= ]{0,300}") {
      let _ = load_str("p.yaml", &text);
    }

    #[test]
    fn never_panics_on_mutated_workflows(
      edits in proptest::collection::vec((0usize..VALID.len(), any::<char>(), 0u8..3), 1..6)
    ) {
      let mut text: Vec<char> = VALID.chars().collect();
      for (at, c, op) in edits {
        let at = at.min(text.len().saturating_sub(1));
        match op {
          0 => text.insert(at, c),
          1 => { text.remove(at); }
          _ => text[at] = c,
        }
      }
      let text: String = text.into_iter().collect();
      if let Err(diagnostics) = load_str("p.yaml", &text) {
        // Every error renders, and points inside the file.
        for d in &diagnostics.0 {
          prop_assert!(d.span.offset <= text.len());
          let _ = d.render(false);
        }
      }
    }
  }
}
