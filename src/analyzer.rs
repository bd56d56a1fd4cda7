//! Checks across stages: dependencies, cycles, and what each expression may read (docs/expressions.md, "Checks at validate time").
use super::*;
use crate::{
  dag::{Dag, DagProblem, Reach},
  workflow::{Expression, Input, Stage, StageKind, Workflow},
};
use std::collections::HashMap;

const STAGE_NAMES: &[&str] = &["parameters", "stages", "env", "run", "workflow", "memory"];
/// What an item of a fanned-out stage reads beside [`STAGE_NAMES`].
const ITEM_NAMES: &[&str] = &["item", "index", "matrix"];
const ENV_NAMES: &[&str] = &["parameters", "env", "run", "workflow"];
const STAGE_FIELDS: &[&str] = &["outputs", "status", "attempts"];
/// Outputs every gate decision records, beside the gate's declared `inputs`.
pub(crate) const GATE_OUTPUTS: &[&str] = &["decision", "decided_by", "reason"];

/// Runs every cross-stage check and returns what is wrong.
pub(crate) fn analyze(workflow: &Workflow) -> Diagnostics {
  let mut analyzer = Analyzer {
    workflow,
    index: workflow.stage_index(),
    diagnostics: Diagnostics::default(),
  };
  let dag = workflow.dag();
  analyzer.graph(dag);
  analyzer.expressions(dag);
  analyzer.diagnostics
}

/// Where an expression sits, which decides the names it may read.
#[derive(Clone, Copy)]
enum Place<'a> {
  /// A stage's `if`.
  Condition(&'a Stage),
  /// A stage's `for_each` or `matrix`, evaluated once before its items exist.
  FanSource(&'a Stage),
  /// A stage's `env`, `with` or gate message.
  Stage(&'a Stage),
  /// A stage's compensation, which runs after the stage completed and may read its outputs.
  Compensation(&'a Stage),
  /// `config.env`.
  Env,
  /// Workflow `outputs`.
  Outputs,
}

struct Analyzer<'a> {
  workflow: &'a Workflow,
  index: HashMap<&'a str, usize>,
  diagnostics: Diagnostics,
}

impl Analyzer<'_> {
  fn error(&mut self, span: Span, kind: ErrorKind) {
    self
      .diagnostics
      .push(Diagnostic::new(&self.workflow.source, span, kind));
  }

  /// Reports `depends_on` entries that name no stage, the stage itself or a repeat, and each
  /// cycle once, at the entry that closes it.
  fn graph(&mut self, dag: &Dag) {
    let workflow = self.workflow;
    for problem in &dag.problems {
      let (stage, entry) = match problem {
        DagProblem::SelfDependency { stage, entry }
        | DagProblem::Unknown { stage, entry }
        | DagProblem::Duplicate { stage, entry }
        | DagProblem::Cycle { stage, entry, .. } => (&workflow.stages[*stage], *entry),
      };
      let span = stage.depends_on_spans[entry];
      let on = stage.depends_on[entry].clone();
      let kind = match problem {
        DagProblem::SelfDependency { .. } => ErrorKind::SelfDependency {
          id: stage.id.clone(),
        },
        DagProblem::Unknown { .. } => ErrorKind::UnknownDependency {
          id: stage.id.clone(),
          suggestion: suggest::suggest(&on, workflow.stages.iter().map(|s| s.id.as_str()))
            .map(str::to_string),
          on,
        },
        DagProblem::Duplicate { .. } => ErrorKind::DuplicateDependency {
          id: stage.id.clone(),
          on,
        },
        DagProblem::Cycle { path, .. } => ErrorKind::Cycle {
          path: path
            .iter()
            .map(|&i| workflow.stages[i].id.clone())
            .collect(),
        },
      };
      self.error(span, kind);
    }
  }

  fn expressions(&mut self, dag: &Dag) {
    let workflow = self.workflow;
    let acyclic = dag.is_acyclic();
    let mut reach = Reach::new(dag);
    for (name, input) in &workflow.config.env {
      let _ = name;
      for e in input.expressions() {
        self.expression(e, Place::Env, &mut reach, acyclic);
      }
    }
    for stage in &workflow.stages {
      if let Some(fan) = &stage.fan_out {
        for e in fan.source.expressions() {
          self.expression(e, Place::FanSource(stage), &mut reach, acyclic);
        }
      }
      if let Some(condition) = &stage.condition {
        self.expression(condition, Place::Condition(stage), &mut reach, acyclic);
      }
      let mut inputs: Vec<&Input> = stage.env.values().collect();
      if let StageKind::Skill(call) = &stage.kind {
        inputs.extend(call.with.values());
      }
      for input in inputs {
        for e in input.expressions() {
          self.expression(e, Place::Stage(stage), &mut reach, acyclic);
        }
      }
      for input in stage.compensate.iter().flat_map(|c| c.with.values()) {
        for e in input.expressions() {
          self.expression(e, Place::Compensation(stage), &mut reach, acyclic);
        }
      }
      if let Some(message) = stage.gate().and_then(|g| g.message.as_ref()) {
        self.expression(message, Place::Stage(stage), &mut reach, acyclic);
      }
    }
    for input in workflow.outputs.values() {
      for e in input.expressions() {
        self.expression(e, Place::Outputs, &mut reach, acyclic);
      }
    }
  }

  fn expression(&mut self, e: &Expression, place: Place<'_>, reach: &mut Reach<'_>, acyclic: bool) {
    let source = Arc::clone(&self.workflow.source);
    for (expr, body) in e.template.exprs() {
      if !matches!(place, Place::Condition(_)) && expr.uses_status_function() {
        self.error(
          e.file_span(&source, body, expr.span),
          ErrorKind::StatusOutsideIf,
        );
      }
      for path in expr.paths() {
        let at = |i: usize| e.file_span(&source, body, path.segments[i].1);
        self.path(&path, place, reach, acyclic, at);
      }
    }
  }

  /// `item`, `index` and `matrix`: only in the `with`, `env` and `compensate` of a fanned-out
  /// stage (`matrix` of a matrix stage), and `matrix.X` only for one of its dimensions.
  fn item_name(&mut self, path: &expr::Path, place: Place<'_>, at: &impl Fn(usize) -> Span) {
    let name = path.segments[0].0.as_str();
    let fan = match place {
      Place::Stage(stage) | Place::Compensation(stage) => stage.fan_out.as_ref(),
      _ => None,
    };
    let Some(fan) = fan else {
      let where_ = match place {
        Place::Condition(s) | Place::FanSource(s) if s.fan_out.is_some() => {
          "for each item, in the `with`, `env` and `compensate` of its stage (`if`, `for_each` and `matrix` are evaluated once, before the items)"
        }
        _ => "in a stage with `for_each` or `matrix`",
      };
      self.error(
        at(0),
        ErrorKind::NoItem {
          name: name.to_string(),
          where_,
        },
      );
      return;
    };
    if !name.eq_ignore_ascii_case("matrix") {
      return;
    }
    if fan.kind != workflow::FanKind::Matrix {
      self.error(
        at(0),
        ErrorKind::NoItem {
          name: name.to_string(),
          where_: "in a stage with `matrix` (this one has `for_each`: use `item`)",
        },
      );
      return;
    }
    let (Some((dimension, _)), Some(known)) = (path.segments.get(1), fan.matrix_keys()) else {
      return;
    };
    if !known.iter().any(|k| k == dimension) {
      self.error(
        at(1),
        ErrorKind::UnknownDimension {
          name: dimension.clone(),
          suggestion: suggest::suggest(dimension, known.iter().map(String::as_str))
            .map(str::to_string),
          known,
        },
      );
    }
  }

  fn path(
    &mut self,
    path: &expr::Path,
    place: Place<'_>,
    reach: &mut Reach<'_>,
    acyclic: bool,
    at: impl Fn(usize) -> Span,
  ) {
    let workflow = self.workflow;
    let segment = |i: usize| path.segments.get(i).map(|(s, _)| s.as_str());
    let Some(name) = segment(0) else { return };
    let name = name.to_ascii_lowercase();
    if ITEM_NAMES.contains(&name.as_str()) {
      self.item_name(path, place, &at);
      return;
    }
    let (allowed, where_) = match place {
      Place::Condition(_) => (STAGE_NAMES, "in `if`"),
      Place::FanSource(_) => (STAGE_NAMES, "in `for_each` or `matrix`"),
      Place::Stage(_) | Place::Compensation(_) => (STAGE_NAMES, "in a stage"),
      Place::Env => (ENV_NAMES, "in `config.env`"),
      Place::Outputs => (STAGE_NAMES, "in workflow `outputs`"),
    };
    if !allowed.contains(&name.as_str()) {
      self.error(
        at(0),
        ErrorKind::UnknownNamespace {
          suggestion: suggest::suggest(&name, allowed.iter().copied()).map(str::to_string),
          name: segment(0).unwrap_or_default().to_string(),
          where_: where_.to_string(),
          available: allowed.to_vec(),
        },
      );
      return;
    }
    match name.as_str() {
      "parameters" => {
        let Some(param) = segment(1) else { return };
        if !workflow
          .parameters
          .keys()
          .any(|k| k.eq_ignore_ascii_case(param))
        {
          self.error(
            at(1),
            ErrorKind::UnknownParameter {
              name: param.to_string(),
              suggestion: suggest::suggest(param, workflow.parameters.keys().map(String::as_str))
                .map(str::to_string),
              declared: workflow.parameters.keys().cloned().collect(),
            },
          );
        }
      }
      "stages" => {
        let Some(id) = segment(1) else { return };
        let Some(&target) = self
          .index
          .get(id)
          .or_else(|| self.index.get(id.to_ascii_lowercase().as_str()))
        else {
          self.error(
            at(1),
            ErrorKind::UnknownStage {
              id: id.to_string(),
              suggestion: suggest::suggest(id, workflow.stages.iter().map(|s| s.id.as_str()))
                .map(str::to_string),
            },
          );
          return;
        };
        let reader = match place {
          Place::Condition(stage) | Place::Stage(stage) | Place::FanSource(stage) => {
            Some((stage, false))
          }
          Place::Compensation(stage) => Some((stage, true)),
          Place::Env | Place::Outputs => None,
        };
        if let Some((stage, self_allowed)) = reader {
          let own = self_allowed && target == stage.index;
          // Only meaningful once cycles are ruled out; a cycle was already reported.
          if target == stage.index && !own {
            self.error(
              at(1),
              ErrorKind::ReadsItself {
                stage: stage.id.clone(),
              },
            );
            return;
          }
          if acyclic && !own && !reach.is_ancestor(target, stage.index) {
            self.error(
              at(1),
              ErrorKind::NotAnAncestor {
                stage: stage.id.clone(),
                other: workflow.stages[target].id.clone(),
              },
            );
            return;
          }
        }
        let Some(field) = segment(2) else { return };
        let fanned = workflow.stages[target].fan_out.is_some();
        let known = STAGE_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(field))
          || (fanned && field.eq_ignore_ascii_case("items"));
        if !known {
          self.error(
            at(2),
            ErrorKind::UnknownStageField {
              fanned,
              id: workflow.stages[target].id.clone(),
              field: field.to_string(),
            },
          );
          return;
        }
        let (Some(output), true) = (segment(3), field.eq_ignore_ascii_case("outputs")) else {
          return;
        };
        let producer = &workflow.stages[target];
        // A gate's outputs are its declared inputs plus what every decision records.
        let declared: Vec<&str> = match &producer.kind {
          StageKind::Skill(_) => producer.outputs.keys().map(String::as_str).collect(),
          StageKind::Gate(gate) if gate.inputs.is_empty() => Vec::new(),
          StageKind::Gate(gate) => gate
            .inputs
            .keys()
            .map(String::as_str)
            .chain(
              GATE_OUTPUTS
                .iter()
                .copied()
                .filter(|o| !gate.inputs.contains_key(*o)),
            )
            .collect(),
        };
        if !declared.is_empty() && !declared.iter().any(|d| d.eq_ignore_ascii_case(output)) {
          self.error(
            at(3),
            ErrorKind::UndeclaredOutput {
              gate: producer.gate().is_some(),
              id: producer.id.clone(),
              output: output.to_string(),
              declared: declared.into_iter().map(str::to_string).collect(),
            },
          );
        }
      }
      _ => {}
    }
  }
}

#[cfg(test)]
mod tests {
  fn messages(text: &str) -> Vec<String> {
    match crate::compose::load_str("t.yaml", text) {
      Ok(_) => Vec::new(),
      Err(d) => d.0.iter().map(ToString::to_string).collect(),
    }
  }

  #[test]
  fn every_cycle_is_reported_once_at_its_closing_edge() {
    let found = messages(
      "name: t\nstages:\n  - { id: a, uses: echo, depends_on: b }\n  - { id: b, uses: echo, depends_on: a }\n  - { id: c, uses: echo, depends_on: [d] }\n  - { id: d, uses: echo, depends_on: [e] }\n  - { id: e, uses: echo, depends_on: [c, a] }\n",
    );
    assert_eq!(
      found,
      vec![
        "t.yaml:4:38: error: dependency cycle: a -> b -> a",
        "t.yaml:7:39: error: dependency cycle: c -> d -> e -> c",
      ]
    );
  }

  #[test]
  fn transitive_ancestors_may_be_read() {
    let found = messages(
      "name: t\nstages:\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, depends_on: a }\n  - { id: c, uses: echo, depends_on: b, with: { x: \"$<< stages.a.outputs.x >>\" } }\n",
    );
    assert!(found.is_empty(), "{found:?}");
  }

  #[test]
  fn compensation_may_read_its_own_stage_but_with_may_not() {
    let found = messages(
      "name: t\nstages:\n  - id: a\n    uses: echo\n    with: { x: \"$<< stages.a.outputs.x >>\" }\n    compensate: { uses: echo, with: { id: \"$<< stages.a.outputs.x >>\" } }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
      found[0],
      "t.yaml:5:28: error: stage `a` reads its own outputs: only its `compensate` may, after it completed"
    );
  }

  #[test]
  fn names_are_case_insensitive_like_github() {
    let found = messages(
      "name: t\nparameters:\n  Module: { type: string, default: x }\nstages:\n  - { id: a, uses: echo }\n  - { id: b, uses: echo, depends_on: a, if: \"$<< Stages.a.Outputs.x == PARAMETERS.module >>\" }\n",
    );
    assert!(found.is_empty(), "{found:?}");
  }

  #[test]
  fn status_functions_are_allowed_only_in_if() {
    let found = messages(
      "name: t\nstages:\n  - { id: a, uses: echo, if: \"$<< failure() || always() >>\" }\n  - { id: b, uses: echo, with: { x: \"$<< cancelled() >>\" } }\n",
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("status functions"), "{found:?}");
  }
}
