//! The dry-run view of a workflow: batches, critical path, gates, limits and an estimate.
use super::*;
use crate::workflow::{Backoff, OnFailure, Stage, StageKind, Workflow};
use indexmap::IndexMap;
use serde::Serialize;
use std::{fmt::Write as _, time::Duration};

/// What `swdl plan` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
  /// The workflow's name.
  pub workflow: String,
  /// Stages executing at once.
  pub max_parallel: usize,
  /// The DAG's levels: every stage of a batch can run once the earlier batches are done.
  pub batches: Vec<Vec<String>>,
  /// The longest chain by estimated duration (then by length).
  pub critical_path: Vec<String>,
  /// Gate stages in file order.
  pub gates: Vec<String>,
  /// Estimated wall time along the critical path, counting only stages with a known duration.
  pub estimated_duration_ms: u64,
  /// Stages whose duration cannot be known before running (shell, Lua, models, ...).
  pub unknown_duration: Vec<String>,
  /// Upper bound from timeouts, attempts and backoff; `null` when a gate may wait forever.
  pub worst_case_ms: Option<u64>,
  /// Whole-run timeout, if any.
  pub run_timeout_ms: Option<u64>,
  /// Every stage, in file order.
  pub stages: Vec<PlannedStage>,
}

/// One stage as planned.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
  /// The id.
  pub id: String,
  /// 1-based batch number.
  pub batch: usize,
  /// Direct dependencies.
  pub depends_on: Vec<String>,
  /// Stages that directly depend on this one.
  pub dependents: Vec<String>,
  /// `skill` or `gate`.
  pub kind: &'static str,
  /// The skill, for skill stages.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub uses: Option<String>,
  /// The `if` as written.
  #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
  pub condition: Option<String>,
  /// `will run` or `will skip` when parameters alone decide the `if`.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub decision: Option<&'static str>,
  /// Attempt limit (gates: decision limit).
  pub timeout_ms: Option<u64>,
  /// Total attempts.
  pub max_attempts: u32,
  /// Backoff shape.
  pub backoff: Backoff,
  /// First retry delay.
  pub delay_ms: u64,
  /// What a failure does.
  pub on_failure: OnFailure,
  /// Fallback skills.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub fallback: Vec<String>,
  /// Risk level.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub risk: Option<workflow::Risk>,
  /// Estimated duration, when known.
  pub estimate_ms: Option<u64>,
  /// Upper bound; `null` when unbounded.
  pub worst_case_ms: Option<u64>,
  /// On the critical path.
  pub critical: bool,
  /// A fanned-out stage's item count when the parameters alone decide it, `null` when not
  /// known before the run; absent for a stage that does not fan out.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub items: Option<Option<usize>>,
}

/// Builds the plan for `workflow` given resolved parameter values.
pub fn plan(workflow: &Workflow, params: &IndexMap<String, serde_json::Value>) -> Plan {
  let n = workflow.stages.len();
  let dag = workflow.dag();
  let order = &dag.order;
  let level = &dag.level;
  let dependents = &dag.dependents;

  let param_ctx = parameter_context(params);
  let decisions: Vec<Option<&'static str>> = workflow
    .stages
    .iter()
    .map(|s| decide(s, &param_ctx))
    .collect();
  let skipped = |i: usize| decisions[i] == Some("will skip");
  // A stage known to be skipped costs nothing, even a gate that could wait forever.
  let cost = |of: fn(&Stage) -> Option<Duration>| -> Vec<Option<Duration>> {
    (0..n)
      .map(|i| {
        if skipped(i) {
          Some(Duration::ZERO)
        } else {
          of(&workflow.stages[i])
        }
      })
      .collect()
  };
  let estimates = cost(estimate);
  let worst = cost(worst_case);
  // Longest chain ending at each stage: (estimated time, stage count, previous stage).
  let mut best: Vec<(Duration, usize, Option<usize>)> = vec![(Duration::ZERO, 0, None); n];
  let mut worst_to: Vec<Option<Duration>> = vec![Some(Duration::ZERO); n];
  for &i in order {
    let mut longest = (Duration::ZERO, 0, None);
    let mut worst_before = Some(Duration::ZERO);
    for &d in &dag.deps[i] {
      if (best[d].0, best[d].1) > (longest.0, longest.1) {
        longest = (best[d].0, best[d].1, Some(d));
      }
      worst_before = max_opt(worst_before, worst_to[d]);
    }
    best[i] = (
      longest.0 + estimates[i].unwrap_or_default(),
      longest.1 + usize::from(!skipped(i)),
      longest.2,
    );
    worst_to[i] = worst_before.zip(worst[i]).map(|(a, b)| a.saturating_add(b));
  }

  let end = (0..n).max_by(|&a, &b| (best[a].0, best[a].1, b).cmp(&(best[b].0, best[b].1, a)));
  let mut critical_path = Vec::new();
  let mut cursor = end;
  while let Some(i) = cursor {
    // A stage that will be skipped takes no time: the path runs through it, not to it.
    if !skipped(i) {
      critical_path.push(i);
    }
    cursor = best[i].2;
  }
  critical_path.reverse();
  let mut critical = vec![false; n];
  for &i in &critical_path {
    critical[i] = true;
  }

  let depth = level.iter().max().map_or(0, |m| m + 1);
  let mut batches = vec![Vec::new(); depth];
  for (i, stage) in workflow.stages.iter().enumerate() {
    batches[level[i]].push(stage.id.clone());
  }
  let run_timeout = workflow.config.timeout;
  let mut worst_case = worst_to
    .iter()
    .try_fold(Duration::ZERO, |acc, w| w.map(|w| acc.max(w)));
  if let Some(limit) = run_timeout {
    worst_case = Some(worst_case.map_or(limit, |w| w.min(limit)));
  }
  Plan {
    workflow: workflow.name.clone(),
    max_parallel: workflow.config.max_parallel,
    batches,
    critical_path: critical_path
      .iter()
      .map(|&i| workflow.stages[i].id.clone())
      .collect(),
    gates: workflow
      .stages
      .iter()
      .filter(|s| s.gate().is_some())
      .map(|s| s.id.clone())
      .collect(),
    estimated_duration_ms: end.map_or(0, |e| millis(best[e].0)),
    unknown_duration: workflow
      .stages
      .iter()
      .zip(&estimates)
      .filter(|(_, e)| e.is_none())
      .map(|(s, _)| s.id.clone())
      .collect(),
    worst_case_ms: worst_case.map(millis),
    run_timeout_ms: run_timeout.map(millis),
    stages: workflow
      .stages
      .iter()
      .enumerate()
      .map(|(i, stage)| PlannedStage {
        id: stage.id.clone(),
        batch: level[i] + 1,
        depends_on: stage.depends_on.clone(),
        dependents: dependents[i]
          .iter()
          .map(|&d| workflow.stages[d].id.clone())
          .collect(),
        kind: if stage.gate().is_some() {
          "gate"
        } else {
          "skill"
        },
        uses: stage.skill().map(|c| c.uses.clone()),
        condition: stage.condition.as_ref().map(|c| c.text.clone()),
        decision: decisions[i],
        timeout_ms: match &stage.kind {
          StageKind::Skill(_) => Some(millis(stage.timeout)),
          StageKind::Gate(g) => g.timeout.map(millis),
        },
        max_attempts: stage.retry.max_attempts,
        backoff: stage.retry.backoff,
        delay_ms: millis(stage.retry.delay),
        on_failure: stage.on_failure,
        fallback: stage.fallback.clone(),
        risk: stage.risk,
        estimate_ms: estimates[i].map(millis),
        worst_case_ms: worst[i].map(millis),
        critical: critical[i],
        items: stage
          .fan_out
          .as_ref()
          .map(|fan| item_count(fan, &param_ctx)),
      })
      .collect(),
  }
}

/// How many items a `for_each` or `matrix` gives when it reads nothing but parameters.
fn item_count(fan: &workflow::FanOut, ctx: &expr::MapContext) -> Option<usize> {
  let value = known_value(&fan.source, ctx)?;
  crate::runtime::expand(fan.kind, value)
    .ok()
    .map(|items| items.len())
}

/// The value of an input whose expressions read only parameters.
fn known_value(input: &workflow::Input, ctx: &expr::MapContext) -> Option<serde_json::Value> {
  Some(match input {
    workflow::Input::Literal(v) => v.clone(),
    workflow::Input::Expr(e) => {
      let parameters_only = e.template.exprs().all(|(e, _)| {
        e.paths().iter().all(|p| {
          p.segments
            .first()
            .is_some_and(|(n, _)| n.eq_ignore_ascii_case("parameters"))
        })
      });
      if !parameters_only {
        return None;
      }
      e.template.eval(ctx).ok()?.to_json()
    }
    workflow::Input::List(items) => serde_json::Value::Array(
      items
        .iter()
        .map(|i| known_value(i, ctx))
        .collect::<Option<_>>()?,
    ),
    workflow::Input::Map(entries) => serde_json::Value::Object(
      entries
        .iter()
        .map(|(k, v)| Some((k.clone(), known_value(v, ctx)?)))
        .collect::<Option<_>>()?,
    ),
  })
}

fn max_opt(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
  a.zip(b).map(|(a, b)| a.max(b))
}

fn millis(d: Duration) -> u64 {
  u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a stage is expected to take: known for built-ins whose cost is in their inputs.
fn estimate(stage: &Stage) -> Option<Duration> {
  match &stage.kind {
    // Time spent waiting for a person is not the workflow's own duration.
    StageKind::Gate(_) => Some(Duration::ZERO),
    StageKind::Skill(call) => match call.uses.as_str() {
      "echo" | "fail" => Some(Duration::ZERO),
      "sleep" => call
        .with
        .get("ms")
        .and_then(|ms| ms.as_literal())
        .and_then(serde_json::Value::as_u64)
        .map(Duration::from_millis),
      _ => None,
    },
  }
}

/// Every attempt running to its timeout, every backoff delay, then every fallback.
fn worst_case(stage: &Stage) -> Option<Duration> {
  match &stage.kind {
    StageKind::Gate(gate) => gate.timeout,
    StageKind::Skill(_) => {
      let attempts = stage.retry.max_attempts;
      let delays = (1..attempts).fold(Duration::ZERO, |acc, a| {
        acc.saturating_add(stage.retry.delay_after(a))
      });
      let runs = attempts.saturating_add(u32::try_from(stage.fallback.len()).unwrap_or(u32::MAX));
      Some(stage.timeout.saturating_mul(runs).saturating_add(delays))
    }
  }
}

fn parameter_context(params: &IndexMap<String, serde_json::Value>) -> expr::MapContext {
  let object: IndexMap<String, expr::Value> = params
    .iter()
    .map(|(k, v)| (k.clone(), expr::Value::from(v)))
    .collect();
  let mut names = IndexMap::new();
  names.insert(
    "parameters".to_string(),
    expr::Value::Object(Arc::new(object)),
  );
  expr::MapContext::new(names)
}

/// "will run" / "will skip" when the `if` reads only parameters and no status function.
fn decide(stage: &Stage, ctx: &expr::MapContext) -> Option<&'static str> {
  let condition = stage.condition.as_ref()?;
  let exprs: Vec<_> = condition.template.exprs().collect();
  let decidable = exprs.iter().all(|(e, _)| {
    !e.uses_status_function()
      && e.paths().iter().all(|p| {
        p.segments
          .first()
          .is_some_and(|(n, _)| n.eq_ignore_ascii_case("parameters"))
      })
  });
  if !decidable {
    return None;
  }
  let value = condition.template.eval(ctx).ok()?;
  Some(if value.is_truthy() {
    "will run"
  } else {
    "will skip"
  })
}

impl Plan {
  /// Readable text: batches with dependency arrows, then the summary; `color` adds ANSI colours.
  pub fn to_text(&self, color: bool) -> String {
    let paint = |code: &str, text: &str| {
      if color {
        format!("\x1b[{code}m{text}\x1b[0m")
      } else {
        text.to_string()
      }
    };
    let mut out = String::new();
    let _ = writeln!(
      out,
      "{} {} ({}, {}, max_parallel {})",
      paint("1", "plan"),
      paint("1", &self.workflow),
      crate::event_text::count(self.stages.len(), "stage", "stages"),
      crate::event_text::count(self.batches.len(), "batch", "batches"),
      self.max_parallel
    );
    let by_id: std::collections::HashMap<&str, &PlannedStage> =
      self.stages.iter().map(|s| (s.id.as_str(), s)).collect();
    // Room for a fanned-out stage's `×N` beside its id.
    let width = self
      .stages
      .iter()
      .map(|s| {
        s.id.chars().count()
          + s
            .items
            .map_or(0, |n| n.map_or(2, |n| n.to_string().len() + 1) + 1)
      })
      .max()
      .unwrap_or(0);
    for (b, batch) in self.batches.iter().enumerate() {
      let _ = writeln!(out, "\n{}", paint("1;34", &format!("batch {}", b + 1)));
      for id in batch {
        let Some(stage) = by_id.get(id.as_str()) else {
          continue;
        };
        let marker = if stage.kind == "gate" { "?" } else { "*" };
        let marker = if stage.critical {
          paint("1;33", marker)
        } else {
          marker.to_string()
        };
        let name = match stage.items {
          None => stage.id.clone(),
          Some(Some(n)) => format!("{} ×{n}", stage.id),
          Some(None) => format!("{} ×?", stage.id),
        };
        let mut line = format!("  {marker} {name:<width$}");
        if !stage.depends_on.is_empty() {
          let _ = write!(line, "  <- {}", stage.depends_on.join(", "));
        }
        match &stage.uses {
          Some(uses) => {
            let _ = write!(line, "  uses {uses}");
          }
          None => line.push_str(&format!("  {}", paint("35", "gate"))),
        }
        let _ = writeln!(out, "{line}");
        let details = stage.details();
        if !details.is_empty() {
          let _ = writeln!(
            out,
            "    {:width$}  {}",
            "",
            paint("2", &details.join("  "))
          );
        }
      }
    }
    let _ = writeln!(out);
    let _ = writeln!(
      out,
      "critical path: {}",
      paint("33", &self.critical_path.join(" -> "))
    );
    if !self.gates.is_empty() {
      let _ = writeln!(out, "gates: {}", self.gates.join(", "));
    }
    let mut estimate = duration::format_duration(Duration::from_millis(self.estimated_duration_ms));
    if !self.unknown_duration.is_empty() {
      let _ = write!(
        estimate,
        " + {} stage{} of unknown duration",
        self.unknown_duration.len(),
        if self.unknown_duration.len() == 1 {
          ""
        } else {
          "s"
        }
      );
    }
    let _ = writeln!(out, "estimated duration: {estimate}");
    let worst = self.worst_case_ms.map_or_else(
      || "unbounded (a gate has no timeout)".to_string(),
      |w| duration::format_duration(Duration::from_millis(w)),
    );
    let _ = writeln!(out, "worst case: {worst}");
    out
  }

  /// Graphviz DOT: gates as diamonds, the critical path in bold.
  pub fn to_dot(&self) -> String {
    let mut out = format!(
      "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
      self.workflow
    );
    for stage in &self.stages {
      let shape = if stage.kind == "gate" {
        ", shape=diamond"
      } else {
        ""
      };
      let label = stage.uses.as_ref().map_or_else(
        || format!("{}\\n(gate)", stage.id),
        |u| format!("{}\\n{}", stage.id, u),
      );
      let bold = if stage.critical { ", penwidth=2" } else { "" };
      let dashed = if stage.condition.is_some() {
        ", style=dashed"
      } else {
        ""
      };
      let _ = writeln!(
        out,
        "  \"{}\" [label=\"{label}\"{shape}{bold}{dashed}];",
        stage.id
      );
    }
    for stage in &self.stages {
      for dep in &stage.depends_on {
        let on_path = self
          .critical_path
          .windows(2)
          .any(|w| w[0] == *dep && w[1] == stage.id);
        let attr = if on_path { " [penwidth=2]" } else { "" };
        let _ = writeln!(out, "  \"{dep}\" -> \"{}\"{attr};", stage.id);
      }
    }
    out.push_str("}\n");
    out
  }

  /// A Mermaid flowchart: gates as rhombi.
  pub fn to_mermaid(&self) -> String {
    let mut out = String::from("flowchart TD\n");
    for stage in &self.stages {
      let label = stage.uses.as_ref().map_or_else(
        || format!("{} (gate)", stage.id),
        |u| format!("{}: {u}", stage.id),
      );
      let node = if stage.kind == "gate" {
        format!("{{\"{label}\"}}")
      } else {
        format!("[\"{label}\"]")
      };
      let _ = writeln!(out, "  {}{node}", mermaid_id(&stage.id));
    }
    for stage in &self.stages {
      for dep in &stage.depends_on {
        let _ = writeln!(out, "  {} --> {}", mermaid_id(dep), mermaid_id(&stage.id));
      }
    }
    out
  }
}

/// Mermaid ids cannot contain `-`; keep them readable and unique.
fn mermaid_id(id: &str) -> String {
  format!("s_{}", id.replace('-', "__"))
}

impl PlannedStage {
  fn details(&self) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(condition) = &self.condition {
      let decision = self.decision.map_or(String::new(), |d| format!(" ({d})"));
      out.push(format!("if {condition}{decision}"));
    }
    if let Some(risk) = self.risk {
      out.push(format!(
        "risk {}",
        serde_json::to_value(risk)
          .unwrap_or_default()
          .as_str()
          .unwrap_or("")
      ));
    }
    if let Some(t) = self.timeout_ms {
      out.push(format!(
        "timeout {}",
        duration::format_duration(Duration::from_millis(t))
      ));
    }
    if self.max_attempts > 1 {
      let backoff = match self.backoff {
        Backoff::Fixed => "fixed",
        Backoff::Linear => "linear",
        Backoff::Exponential => "exponential",
      };
      out.push(format!(
        "retry {}x {backoff} {}",
        self.max_attempts,
        duration::format_duration(Duration::from_millis(self.delay_ms))
      ));
    }
    if !self.fallback.is_empty() {
      out.push(format!("fallback {}", self.fallback.join(", ")));
    }
    match self.on_failure {
      OnFailure::Halt => {}
      OnFailure::Continue => out.push("on_failure continue".into()),
      OnFailure::Ignore => out.push("on_failure ignore".into()),
    }
    out
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn plan_of(text: &str) -> Plan {
    let workflow = match compose::load_str("t.yaml", text) {
      Ok(w) => w,
      Err(d) => panic!("{}", d.render(false)),
    };
    let params = match params::resolve(&workflow, &[]) {
      Ok(p) => p,
      Err(d) => panic!("{}", d.render(false)),
    };
    plan(&workflow, &params)
  }

  #[test]
  fn batches_are_levels_in_file_order() {
    let p = plan_of(
      "name: t\nstages:\n  - { id: z, uses: echo }\n  - { id: a, uses: echo }\n  - { id: m, uses: echo, depends_on: [z] }\n  - { id: b, uses: echo, depends_on: [a, m] }\n",
    );
    assert_eq!(p.batches, vec![vec!["z", "a"], vec!["m"], vec!["b"]]);
    assert_eq!(p.stages[1].dependents, vec!["b".to_string()]);
  }

  #[test]
  fn critical_path_prefers_known_duration_then_length() {
    let p = plan_of(
      "name: t\nstages:\n  - { id: s, uses: echo }\n  - { id: slow, uses: sleep, with: { ms: 900 }, depends_on: s }\n  - { id: x1, uses: echo, depends_on: s }\n  - { id: x2, uses: echo, depends_on: x1 }\n  - { id: end, uses: echo, depends_on: [slow, x2] }\n",
    );
    assert_eq!(p.critical_path, vec!["s", "slow", "end"]);
    assert_eq!(p.estimated_duration_ms, 900);
    let q = plan_of(
      "name: t\nstages:\n  - { id: s, uses: echo }\n  - { id: one, uses: echo, depends_on: s }\n  - { id: x1, uses: echo, depends_on: s }\n  - { id: x2, uses: echo, depends_on: x1 }\n",
    );
    assert_eq!(q.critical_path, vec!["s", "x1", "x2"]);
  }

  #[test]
  fn critical_path_leaves_out_stages_that_will_skip() {
    // `b` will skip: the longest chain by count runs through it, but it takes no time and is
    // not shown; `c` still follows `a`.
    let p = plan_of(
      "name: t\nstages:\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, depends_on: a, if: \"$<< false >>\" }\n  - { id: c, uses: echo, depends_on: b }\n  - { id: d, uses: echo, depends_on: a }\n",
    );
    assert_eq!(p.critical_path, vec!["a", "c"]);
    assert!(!p.stages[1].critical);
  }

  #[test]
  fn worst_case_counts_retries_fallbacks_and_unbounded_gates() {
    let p = plan_of(
      "name: t\nstages:\n  - id: a\n    uses: echo\n    timeout: 10s\n    retry: { max_attempts: 3, backoff: linear, delay: 2s, max_delay: 3s }\n    fallback: [echo]\n",
    );
    // Four runs of 10s, then delays of 2s and min(4s, 3s).
    assert_eq!(p.stages[0].worst_case_ms, Some(45_000));
    let gated = plan_of(
      "name: t\nstages:\n  - { id: g, gate: {} }\n  - { id: a, uses: echo, depends_on: g }\n",
    );
    assert_eq!(gated.worst_case_ms, None);
    assert!(gated.to_text(false).contains("worst case: unbounded"));
    let skipped = plan_of(
      "name: t\nparameters:\n  ask: { type: boolean, default: false }\nstages:\n  - { id: g, gate: {}, if: \"$<< parameters.ask >>\" }\n",
    );
    assert_eq!(skipped.worst_case_ms, Some(0));
  }

  #[test]
  fn mermaid_ids_stay_valid_for_dashed_names() {
    let p = plan_of(
      "name: t\nstages:\n  - { id: a-b, uses: echo }\n  - { id: a_b, uses: echo, depends_on: a-b }\n",
    );
    let mermaid = p.to_mermaid();
    assert!(mermaid.contains("s_a__b --> s_a_b"), "{mermaid}");
  }
}
