//! One stage: its skill or gate, inputs, dependencies, retries, fallbacks, compensation and
//! output contract.
use super::*;
use indexmap::IndexMap;
use yaml::{Node, NodeValue};

use model::StageDefaults;
use nodes::{Loader, literal_expression};

impl Loader {
  pub(super) fn stages(&mut self, node: &Node, defaults: &StageDefaults) -> Vec<Stage> {
    let NodeValue::Seq(items) = &node.value else {
      self.wrong_type(node, "stages", "a list of stages");
      return Vec::new();
    };
    if items.is_empty() {
      self.error(node.span, ErrorKind::NoStages);
    }
    let mut stages: Vec<Stage> = Vec::with_capacity(items.len());
    let mut seen: std::collections::HashMap<String, usize> =
      std::collections::HashMap::with_capacity(items.len());
    for item in items {
      let index = stages.len();
      let Some(stage) = self.stage(item, index, defaults) else {
        continue;
      };
      if let Some(&first) = seen.get(&stage.id) {
        let (line, _) = self.source.line_col(stages[first].span.offset);
        self.error(
          stage.span,
          ErrorKind::DuplicateStage {
            id: stage.id.clone(),
            first_line: line,
          },
        );
        continue;
      }
      seen.insert(stage.id.clone(), index);
      stages.push(stage);
    }
    stages
  }

  pub(super) fn stage(
    &mut self,
    node: &Node,
    index: usize,
    defaults: &StageDefaults,
  ) -> Option<Stage> {
    let map = self.mapping(node, "stage", Some(STAGE_KEYS))?;
    let Some(id_node) = map.get("id") else {
      self.error(
        node.span,
        ErrorKind::MissingKey {
          key: "id",
          context: "stage".into(),
        },
      );
      return None;
    };
    // An invalid id is reported but kept, so its stage's other errors are still found.
    let id = match id_node.value {
      NodeValue::Int(_) => self.string(id_node, "id")?,
      _ => self.strict_string(id_node, "id")?,
    };
    if !is_valid_name(&id) {
      self.error(
        id_node.span,
        ErrorKind::InvalidName {
          what: "stage id",
          name: id.clone(),
        },
      );
    }
    // Once the id is known the stage is kept even when broken, so that stages depending on
    // it do not report it as unknown on top of the real error.
    let skill = |loader: &mut Self| {
      let (uses, span) = map
        .get("uses")
        .and_then(|n| loader.skill_name(n))
        .unwrap_or_default();
      let (with, with_spans) = map.get("with").map(|n| loader.with(n)).unwrap_or_default();
      StageKind::Skill(SkillCall {
        uses,
        span,
        with,
        with_spans,
      })
    };
    let kind = match (map.key_node("uses"), map.key_node("gate")) {
      (Some(_), Some(gate_key)) => {
        self.error(gate_key.span, ErrorKind::GateAndSkill { id: id.clone() });
        skill(self)
      }
      (None, None) => {
        self.error(id_node.span, ErrorKind::NoAction { id: id.clone() });
        skill(self)
      }
      (Some(_), None) => skill(self),
      (None, Some(_)) => {
        for key in SKILL_ONLY_KEYS {
          if let Some(k) = map.key_node(key) {
            self.error(
              k.span,
              ErrorKind::NotForGate {
                key,
                id: id.clone(),
              },
            );
          }
        }
        let gate = map.get("gate").and_then(|g| self.gate(g));
        StageKind::Gate(gate.unwrap_or_else(Gate::default))
      }
    };
    let mut depends_on = Vec::new();
    let mut depends_on_spans = Vec::new();
    if let Some(n) = map.get("depends_on") {
      for (dep, span) in self.string_list(n, "depends_on") {
        depends_on.push(dep);
        depends_on_spans.push(span);
      }
    }
    // Gates are decided, not attempted: retry defaults do not reach them.
    let retry = match (&kind, map.get("retry")) {
      (StageKind::Gate(_), _) => None,
      (_, Some(n)) => self.retry(n, defaults.retry.as_ref().unwrap_or(&Retry::default())),
      (_, None) => defaults.retry.clone(),
    }
    .unwrap_or_default();
    // A gate's only limit is `gate.timeout`; stage timeouts and their defaults are for attempts.
    let timeout = match &kind {
      StageKind::Gate(gate) => gate.timeout.unwrap_or(DEFAULT_TIMEOUT),
      StageKind::Skill(_) => map
        .get("timeout")
        .and_then(|n| self.limit(n, "timeout"))
        .or(defaults.timeout)
        .unwrap_or(DEFAULT_TIMEOUT),
    };
    let mut stage = Stage {
      id,
      index,
      span: id_node.span,
      description: map
        .get("description")
        .and_then(|n| self.string(n, "description")),
      depends_on,
      depends_on_spans,
      kind,
      condition: map.get("if").and_then(|n| self.condition(n)),
      env: map.get("env").map(|n| self.env(n)).unwrap_or_default(),
      timeout,
      retry,
      on_failure: map
        .get("on_failure")
        .and_then(|n| self.on_failure(n))
        .or(defaults.on_failure)
        .unwrap_or(OnFailure::Halt),
      fallback: Vec::new(),
      fallback_spans: Vec::new(),
      compensate: None,
      recover: map
        .get("recover")
        .and_then(|n| self.strict_string(n, "recover")),
      recover_span: map.get("recover").map_or(id_node.span, |n| n.span),
      risk: map.get("risk").and_then(|n| self.risk(n, "risk")),
      outputs: IndexMap::new(),
      fan_out: None,
    };
    if matches!(stage.kind, StageKind::Skill(_)) {
      stage.fan_out = self.fan_out(&map, &stage.id);
    }
    if let Some(n) = map.get("fallback") {
      for (name, span) in self.string_list(n, "fallback") {
        if name.trim().is_empty() {
          self.error(span, ErrorKind::EmptySkill);
          continue;
        }
        stage.fallback.push(name);
        stage.fallback_spans.push(span);
      }
    }
    if let Some(n) = map.get("compensate") {
      stage.compensate = self.compensate(n);
    }
    if let Some(n) = map.get("outputs") {
      stage.outputs = self.fields(n, "outputs", true);
    }
    Some(stage)
  }

  /// `for_each` or `matrix`, with `max_parallel` and `fail_fast`, which need one of them.
  fn fan_out(&mut self, map: &nodes::Mapping<'_>, id: &str) -> Option<FanOut> {
    let (kind, key, node) = match (map.key_node("for_each"), map.key_node("matrix")) {
      (Some(_), Some(second)) => {
        self.error(
          second.span,
          ErrorKind::ForEachAndMatrix { id: id.to_string() },
        );
        return None;
      }
      (Some(key), None) => (FanKind::ForEach, key, map.get("for_each")?),
      (None, Some(key)) => (FanKind::Matrix, key, map.get("matrix")?),
      (None, None) => {
        for key in ["max_parallel", "fail_fast"] {
          if let Some(k) = map.key_node(key) {
            self.error(
              k.span,
              ErrorKind::NeedsFanOut {
                key,
                id: id.to_string(),
              },
            );
          }
        }
        return None;
      }
    };
    let source = self.input(node, key.as_str().unwrap_or("for_each"));
    match kind {
      FanKind::ForEach => self.check_items(node, &source),
      FanKind::Matrix => self.check_matrix(node, &source),
    }
    let max_parallel = map
      .get("max_parallel")
      .and_then(|n| self.integer(n, "max_parallel", 1))
      .map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let fail_fast = map
      .get("fail_fast")
      .and_then(|n| self.bool(n, "fail_fast"))
      .unwrap_or(true);
    Some(FanOut {
      kind,
      source,
      span: key.span,
      max_parallel,
      fail_fast,
    })
  }

  /// A `for_each` known from the file alone must be a list within the item limit.
  fn check_items(&mut self, node: &Node, source: &Input) {
    match (&node.value, source) {
      (_, Input::Expr(_)) | (NodeValue::Null, _) => {}
      (NodeValue::Seq(items), _) => {
        if items.len() > MAX_ITEMS {
          self.error(node.span, ErrorKind::TooManyItems { count: items.len() });
        }
      }
      _ => self.wrong_type(node, "for_each", "a list or an expression giving one"),
    }
  }

  /// A `matrix` written out: dimensions are lists, `exclude` and `include` lists of mappings.
  fn check_matrix(&mut self, node: &Node, source: &Input) {
    if matches!(source, Input::Expr(_)) {
      return;
    }
    let Some(map) = self.mapping(node, "matrix", None) else {
      return;
    };
    if map.entries.is_empty() {
      self.error(node.span, ErrorKind::EmptyMatrix);
    }
    let is_expr =
      |key: &str| matches!(source, Input::Map(m) if matches!(m.get(key), Some(Input::Expr(_))));
    let mut count: usize = 1;
    for (key, _, value) in &map.entries {
      let field = format!("matrix.{key}");
      match (*key, &value.value) {
        (k, NodeValue::String { .. }) if is_expr(k) => {}
        ("exclude" | "include", NodeValue::Seq(entries)) => {
          for entry in entries {
            if !matches!(entry.value, NodeValue::Map(_)) {
              self.wrong_type(entry, &field, "a mapping of dimension values");
            }
          }
        }
        ("exclude" | "include", _) => self.wrong_type(value, &field, "a list of mappings"),
        (_, NodeValue::Seq(values)) => count = count.saturating_mul(values.len()),
        _ => self.wrong_type(value, &field, "a list of values"),
      }
    }
    if count > MAX_ITEMS {
      self.error(node.span, ErrorKind::TooManyItems { count });
    }
  }

  /// A skill name with its position; empty names are reported.
  pub(super) fn skill_name(&mut self, node: &Node) -> Option<(String, Span)> {
    let name = self.strict_string(node, "uses")?;
    if name.trim().is_empty() {
      self.error(node.span, ErrorKind::EmptySkill);
      return None;
    }
    Some((name, node.span))
  }

  /// A `with` mapping: its inputs, and where each key is written.
  pub(super) fn with(&mut self, node: &Node) -> (IndexMap<String, Input>, IndexMap<String, Span>) {
    let Some(map) = self.mapping(node, "with", None) else {
      return Default::default();
    };
    let spans = map
      .entries
      .iter()
      .map(|(k, key, _)| ((*k).to_string(), key.span))
      .collect();
    let inputs = map
      .entries
      .iter()
      .map(|(k, _, v)| ((*k).to_string(), self.input(v, "with")))
      .collect();
    (inputs, spans)
  }

  pub(super) fn compensate(&mut self, node: &Node) -> Option<SkillCall> {
    // `compensate: skill-name` is shorthand for `compensate: { uses: skill-name }`.
    if node.as_str().is_some() {
      let (uses, span) = self.skill_name(node)?;
      return Some(SkillCall {
        uses,
        span,
        with: IndexMap::new(),
        with_spans: IndexMap::new(),
      });
    }
    let map = self.mapping(node, "compensate", Some(COMPENSATE_KEYS))?;
    let Some(uses) = map.get("uses") else {
      self.error(
        node.span,
        ErrorKind::MissingKey {
          key: "uses",
          context: "compensate".into(),
        },
      );
      return None;
    };
    let (uses, span) = self.skill_name(uses)?;
    let (with, with_spans) = map.get("with").map(|n| self.with(n)).unwrap_or_default();
    Some(SkillCall {
      uses,
      span,
      with,
      with_spans,
    })
  }

  pub(super) fn gate(&mut self, node: &Node) -> Option<Gate> {
    let mut gate = Gate::default();
    // `gate: "message"` and `gate: {}` are both accepted.
    if let NodeValue::String { text, .. } = &node.value {
      gate.message = Some(
        self
          .template(node, text)
          .unwrap_or_else(|| literal_expression(node, text)),
      );
      return Some(gate);
    }
    if node.value == NodeValue::Null {
      return Some(gate);
    }
    let map = self.mapping(node, "gate", Some(GATE_KEYS))?;
    if let Some(n) = map.get("message")
      && let Some(text) = self.strict_string(n, "message")
    {
      gate.message = Some(
        self
          .template(n, &text)
          .unwrap_or_else(|| literal_expression(n, &text)),
      );
    }
    if let Some(n) = map.get("timeout") {
      gate.timeout = self.limit(n, "timeout");
    }
    if let Some(n) = map.get("on_timeout")
      && let Some(i) = self.choice(n, "on_timeout", GATE_DECISIONS)
    {
      gate.on_timeout = [GateDecision::Reject, GateDecision::Approve][i];
    }
    if let Some(n) = map.get("policy") {
      gate.policy = self.strict_string(n, "policy");
      gate.policy_span = n.span;
    }
    if let Some(n) = map.get("approvers") {
      gate.approvers = self
        .string_list(n, "approvers")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    }
    if let Some(n) = map.get("inputs") {
      gate.inputs = self.fields(n, "inputs", false);
    }
    Some(gate)
  }

  /// An output contract or gate inputs: `name: type` or `name: { type, required, description }`.
  pub(super) fn fields(
    &mut self,
    node: &Node,
    field: &str,
    allow_any: bool,
  ) -> IndexMap<String, OutputField> {
    let mut out = IndexMap::new();
    let Some(map) = self.mapping(node, field, None) else {
      return out;
    };
    let types: &'static [&'static str] = if allow_any {
      ValueType::NAMES
    } else {
      PARAMETER_TYPES
    };
    for (name, _, value) in &map.entries {
      let (type_node, spec) = match &value.value {
        NodeValue::String { .. } => (Some(*value), None),
        _ => {
          let Some(spec) = self.mapping(value, &format!("{field}.{name}"), Some(FIELD_KEYS)) else {
            continue;
          };
          (spec.get("type"), Some(spec))
        }
      };
      let Some(type_node) = type_node else {
        self.error(
          value.span,
          ErrorKind::MissingKey {
            key: "type",
            context: format!("{field}.{name}"),
          },
        );
        continue;
      };
      let Some(ty) = self
        .choice(type_node, "type", types)
        .and_then(|i| ValueType::from_name(types[i]))
      else {
        continue;
      };
      let mut output = OutputField {
        ty,
        required: true,
        description: None,
      };
      if let Some(spec) = spec {
        if let Some(n) = spec.get("required") {
          output.required = self.bool(n, "required").unwrap_or(true);
        }
        if let Some(n) = spec.get("description") {
          output.description = self.string(n, "description");
        }
      }
      out.insert((*name).to_string(), output);
    }
    out
  }
}
