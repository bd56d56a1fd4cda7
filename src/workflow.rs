//! The typed model of a workflow file (docs/workflow-format.md), with defaults applied.
use super::*;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize, Serializer};
use std::time::Duration;

/// A loaded, checked workflow.
#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
  /// The file it came from.
  #[serde(skip)]
  pub source: Arc<Source>,
  /// Format version (always 1).
  pub swdl: u32,
  /// `[a-z0-9][a-z0-9_-]*`.
  pub name: String,
  /// Free text.
  pub description: Option<String>,
  /// The workflow's own version string.
  pub version: Option<String>,
  /// Typed inputs set with `--param`.
  pub parameters: IndexMap<String, Parameter>,
  /// Run-wide settings.
  pub config: Config,
  /// The stages in file order.
  pub stages: Vec<Stage>,
  /// Expressions evaluated when the run ends.
  pub outputs: IndexMap<String, Input>,
  /// Which stages each stage's expressions read, worked out once on first use.
  #[serde(skip)]
  pub reads: std::sync::OnceLock<Vec<StageReads>>,
  /// The dependency graph, built once on first use.
  #[serde(skip)]
  pub dag: std::sync::OnceLock<dag::Dag>,
}

/// The stages one stage's `if`, `with`, gate message and compensation read.
#[derive(Debug, Clone, Default)]
pub struct StageReads {
  /// Positions of the stages named as `stages.<id>`.
  pub stages: Vec<usize>,
  /// `stages` is indexed dynamically, so every stage must be visible.
  pub all: bool,
}

impl Workflow {
  /// Stage positions by id.
  pub fn stage_index(&self) -> std::collections::HashMap<&str, usize> {
    self
      .stages
      .iter()
      .enumerate()
      .map(|(i, s)| (s.id.as_str(), i))
      .collect()
  }

  /// For each stage, the stages its expressions read (computed once, then cached).
  pub fn reads(&self) -> &[StageReads] {
    self.reads.get_or_init(|| {
      let index = self.stage_index();
      self.stages.iter().map(|s| s.reads(&index)).collect()
    })
  }

  /// The dependency graph of the stages (built once, then cached).
  pub fn dag(&self) -> &dag::Dag {
    self.dag.get_or_init(|| dag::Dag::new(self))
  }

  /// The stage with this id.
  pub fn stage(&self, id: &str) -> Option<&Stage> {
    self.stages.iter().find(|s| s.id == id)
  }
}

/// A declared parameter.
#[derive(Debug, Clone, Serialize)]
pub struct Parameter {
  /// The parameter's name.
  pub name: String,
  /// Declared type.
  #[serde(rename = "type")]
  pub ty: ValueType,
  /// Value used when none is given.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub default: Option<serde_json::Value>,
  /// A run without it is rejected.
  pub required: bool,
  /// Free text.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub description: Option<String>,
  /// Allowed values, when restricted.
  #[serde(rename = "enum", skip_serializing_if = "Option::is_none")]
  pub allowed: Option<Vec<serde_json::Value>>,
  /// Masked as `***` wherever it would be shown.
  pub secret: bool,
  /// Where the declaration is, for errors about missing or bad values.
  #[serde(skip)]
  pub span: Span,
}

/// The types a parameter, gate input or output field can declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
  /// Text.
  String,
  /// Any number.
  Number,
  /// A whole number.
  Integer,
  /// `true` or `false`.
  Boolean,
  /// A list.
  Array,
  /// A mapping.
  Object,
  /// Anything (output contracts only).
  Any,
}

impl ValueType {
  /// Names accepted in files, in the order they are documented.
  pub const NAMES: &'static [&'static str] = &[
    "string", "number", "integer", "boolean", "array", "object", "any",
  ];

  /// Parses a type name.
  pub fn from_name(name: &str) -> Option<Self> {
    Some(match name {
      "string" => Self::String,
      "number" => Self::Number,
      "integer" => Self::Integer,
      "boolean" => Self::Boolean,
      "array" => Self::Array,
      "object" => Self::Object,
      "any" => Self::Any,
      _ => return None,
    })
  }

  /// The name used in files.
  pub fn name(self) -> &'static str {
    match self {
      Self::String => "string",
      Self::Number => "number",
      Self::Integer => "integer",
      Self::Boolean => "boolean",
      Self::Array => "array",
      Self::Object => "object",
      Self::Any => "any",
    }
  }

  /// Whether a JSON value is of this type.
  pub fn accepts(self, value: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match self {
      Self::String => value.is_string(),
      Self::Number => value.is_number(),
      Self::Integer => match value {
        J::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
      },
      Self::Boolean => value.is_boolean(),
      Self::Array => value.is_array(),
      Self::Object => value.is_object(),
      Self::Any => true,
    }
  }
}

impl fmt::Display for ValueType {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(self.name())
  }
}

/// The type name of a JSON value as output contracts spell types.
pub fn json_kind(value: &serde_json::Value) -> &'static str {
  match value {
    serde_json::Value::Null => "null",
    serde_json::Value::Bool(_) => "boolean",
    serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
    serde_json::Value::Number(_) => "number",
    serde_json::Value::String(_) => "string",
    serde_json::Value::Array(_) => "array",
    serde_json::Value::Object(_) => "object",
  }
}

/// JSON equality that compares numbers by value, so `1` equals `1.0`.
pub fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
  use serde_json::Value as J;
  match (a, b) {
    (J::Number(x), J::Number(y)) => x.as_f64() == y.as_f64(),
    (J::Array(x), J::Array(y)) => {
      x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
    }
    (J::Object(x), J::Object(y)) => {
      x.len() == y.len()
        && x
          .iter()
          .all(|(k, v)| y.get(k).is_some_and(|w| same_value(v, w)))
    }
    _ => a == b,
  }
}

/// Run-wide settings from `config:`.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
  /// Stages executing at once.
  pub max_parallel: usize,
  /// Limit for the whole run.
  #[serde(serialize_with = "ser_opt_duration")]
  pub timeout: Option<Duration>,
  /// Variables visible as `env.*` and to shell skills; values may be expressions.
  pub env: IndexMap<String, Input>,
  /// Lua files loaded before the run, relative to the workflow file.
  pub hooks: Vec<String>,
  /// Directories searched for skills, relative to the workflow file.
  pub skills_path: Vec<String>,
  /// Risk-based approval.
  pub approval: Option<Approval>,
  /// Grants to Lua skills by skill name.
  pub permissions: IndexMap<String, Vec<Permission>>,
  /// Environment variables whose values are masked.
  pub secrets: Vec<String>,
  /// Model token budget for the run.
  pub budget_tokens: Option<u64>,
}

impl Default for Config {
  fn default() -> Self {
    Self {
      max_parallel: 3,
      timeout: None,
      env: IndexMap::new(),
      hooks: Vec::new(),
      skills_path: vec!["skills".into()],
      approval: None,
      permissions: IndexMap::new(),
      secrets: Vec::new(),
      budget_tokens: None,
    }
  }
}

/// `config.approval`.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
  /// A Lua approval policy name.
  pub policy: Option<String>,
  /// Where `policy` is written.
  #[serde(skip)]
  pub policy_span: Span,
  /// Stages at or above this risk go through the gate path.
  pub require_for: Option<Risk>,
}

/// What a Lua skill may be granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
  /// Run programs.
  Exec,
  /// Network access.
  Net,
  /// File system access.
  Fs,
}

impl Permission {
  /// Names accepted in files.
  pub const NAMES: &'static [&'static str] = &["exec", "net", "fs"];
}

/// Risk levels, ordered `low < medium < high < critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
  /// Low.
  Low,
  /// Medium.
  Medium,
  /// High.
  High,
  /// Critical.
  Critical,
}

impl Risk {
  /// Names accepted in files.
  pub const NAMES: &'static [&'static str] = &["low", "medium", "high", "critical"];
}

/// One stage.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
  /// Unique id.
  pub id: String,
  /// Position in the file's stage list.
  #[serde(skip)]
  pub index: usize,
  /// Where the id is written.
  #[serde(skip)]
  pub span: Span,
  /// Free text.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub description: Option<String>,
  /// Ids of the stages this one waits for.
  pub depends_on: Vec<String>,
  /// Where each `depends_on` entry is written.
  #[serde(skip)]
  pub depends_on_spans: Vec<Span>,
  /// A skill call or a gate.
  #[serde(flatten)]
  pub kind: StageKind,
  /// The `if` condition.
  #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
  pub condition: Option<Expression>,
  /// Variables added to `config.env` for this stage only.
  #[serde(skip_serializing_if = "IndexMap::is_empty")]
  pub env: IndexMap<String, Input>,
  /// Limit for one attempt.
  #[serde(serialize_with = "ser_duration")]
  pub timeout: Duration,
  /// Retry settings.
  pub retry: Retry,
  /// What a failure does to the run.
  pub on_failure: OnFailure,
  /// Skills tried in order once retries are spent.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub fallback: Vec<String>,
  /// Where each fallback is written.
  #[serde(skip)]
  pub fallback_spans: Vec<Span>,
  /// Undo action run on halt.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub compensate: Option<SkillCall>,
  /// A Lua recovery strategy consulted after each failed attempt.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub recover: Option<String>,
  /// Where `recover` is written.
  #[serde(skip)]
  pub recover_span: Span,
  /// Feeds approval policies.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub risk: Option<Risk>,
  /// The output contract.
  #[serde(skip_serializing_if = "IndexMap::is_empty")]
  pub outputs: IndexMap<String, OutputField>,
  /// `for_each` or `matrix`: the stage runs once per item.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub fan_out: Option<FanOut>,
}

/// Most items one fanned-out stage may have (SPEC section 11).
pub const MAX_ITEMS: usize = 10_000;

/// Running a stage once per item: `for_each` or `matrix` (docs/workflow-format.md, "Fan-out").
#[derive(Debug, Clone, Serialize)]
pub struct FanOut {
  /// Which of the two keys it is.
  pub kind: FanKind,
  /// The list (`for_each`) or the dimensions (`matrix`), as written.
  #[serde(serialize_with = "ser_input")]
  pub source: Input,
  /// Where the key is written.
  #[serde(skip)]
  pub span: Span,
  /// Items of this stage under way at once; `None` is the run's `max_parallel`.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub max_parallel: Option<usize>,
  /// The first item that fails for good cancels the rest.
  pub fail_fast: bool,
}

/// `for_each` or `matrix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FanKind {
  /// One item per list element.
  ForEach,
  /// One item per combination of the dimensions.
  Matrix,
}

impl FanOut {
  /// The matrix dimensions and `include` keys known from the file alone, for the checks of
  /// `matrix.X`; `None` when the matrix is an expression (or this is a `for_each`).
  pub fn matrix_keys(&self) -> Option<Vec<String>> {
    if self.kind != FanKind::Matrix {
      return None;
    }
    let entries: Vec<(String, serde_json::Value)> = match &self.source {
      Input::Map(entries) => entries
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect(),
      Input::Literal(serde_json::Value::Object(map)) => {
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
      }
      _ => return None,
    };
    let mut keys = Vec::new();
    for (key, value) in entries {
      match key.as_str() {
        "exclude" => {}
        "include" => match value {
          serde_json::Value::Array(list) => {
            for entry in list {
              let serde_json::Value::Object(map) = entry else {
                return None;
              };
              keys.extend(map.keys().cloned());
            }
          }
          _ => return None,
        },
        _ => keys.push(key),
      }
    }
    let mut unique = Vec::with_capacity(keys.len());
    for key in keys {
      if !unique.contains(&key) {
        unique.push(key);
      }
    }
    Some(unique)
  }
}

fn ser_input<S: serde::Serializer>(input: &Input, s: S) -> Result<S::Ok, S::Error> {
  input.to_json().serialize(s)
}

impl Stage {
  /// Every expression of the stage: `if`, `for_each`/`matrix`, `env`, `with`, gate message and
  /// compensation.
  pub fn expressions(&self) -> Vec<&Expression> {
    let mut exprs: Vec<&Expression> = self.condition.iter().collect();
    if let Some(fan) = &self.fan_out {
      exprs.extend(fan.source.expressions());
    }
    exprs.extend(self.env.values().flat_map(Input::expressions));
    if let Some(call) = self.skill() {
      exprs.extend(call.with.values().flat_map(Input::expressions));
    }
    if let Some(call) = &self.compensate {
      exprs.extend(call.with.values().flat_map(Input::expressions));
    }
    if let Some(message) = self.gate().and_then(|g| g.message.as_ref()) {
      exprs.push(message);
    }
    exprs
  }

  fn reads(&self, index: &std::collections::HashMap<&str, usize>) -> StageReads {
    let mut reads = StageReads::default();
    for e in self.expressions() {
      for (expr, _) in e.template.exprs() {
        for path in expr.paths() {
          let mut segments = path.segments.iter().map(|(s, _)| s.as_str());
          if !segments
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("stages"))
          {
            continue;
          }
          let Some(id) = segments.next() else {
            reads.all = true;
            continue;
          };
          let found = index
            .get(id)
            .or_else(|| index.get(id.to_ascii_lowercase().as_str()));
          if let Some(&r) = found
            && !reads.stages.contains(&r)
          {
            reads.stages.push(r);
          }
        }
      }
    }
    reads
  }

  /// The gate, if this is a gate stage.
  pub fn gate(&self) -> Option<&Gate> {
    match &self.kind {
      StageKind::Gate(gate) => Some(gate),
      StageKind::Skill(_) => None,
    }
  }

  /// The skill call, if this is a skill stage.
  pub fn skill(&self) -> Option<&SkillCall> {
    match &self.kind {
      StageKind::Skill(call) => Some(call),
      StageKind::Gate(_) => None,
    }
  }
}

/// What a stage does.
#[derive(Debug, Clone, Serialize)]
pub enum StageKind {
  /// Calls a skill.
  #[serde(rename = "skill")]
  Skill(SkillCall),
  /// Waits for a decision.
  #[serde(rename = "gate")]
  Gate(Gate),
}

/// A skill name and its inputs.
#[derive(Debug, Clone, Serialize)]
pub struct SkillCall {
  /// Built-in, registry name, or `./path.lua`.
  pub uses: String,
  /// Where `uses` is written.
  #[serde(skip)]
  pub span: Span,
  /// Inputs; strings may hold expressions.
  pub with: IndexMap<String, Input>,
  /// Where each key of `with` is written.
  #[serde(skip)]
  pub with_spans: IndexMap<String, Span>,
}

/// A human or policy decision point.
#[derive(Debug, Clone, Serialize)]
pub struct Gate {
  /// Shown to the approver.
  pub message: Option<Expression>,
  /// How long to wait.
  #[serde(serialize_with = "ser_opt_duration")]
  pub timeout: Option<Duration>,
  /// Decision taken when the timeout expires.
  pub on_timeout: GateDecision,
  /// A Lua approval policy name.
  pub policy: Option<String>,
  /// Where `policy` is written.
  #[serde(skip)]
  pub policy_span: Span,
  /// Names recorded with the decision.
  pub approvers: Vec<String>,
  /// Fields the approver supplies, readable as `stages.<gate>.outputs.<field>`.
  pub inputs: IndexMap<String, OutputField>,
}

impl Default for Gate {
  fn default() -> Self {
    Self {
      message: None,
      timeout: None,
      on_timeout: GateDecision::Reject,
      policy: None,
      policy_span: Span::default(),
      approvers: Vec::new(),
      inputs: IndexMap::new(),
    }
  }
}

/// One field of an output contract or gate input.
#[derive(Debug, Clone, Serialize)]
pub struct OutputField {
  /// Declared type.
  #[serde(rename = "type")]
  pub ty: ValueType,
  /// A result without it breaks the contract.
  pub required: bool,
  /// Free text.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub description: Option<String>,
}

/// Retry settings after defaults are merged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Retry {
  /// Total attempts, at least 1.
  pub max_attempts: u32,
  /// How the delay grows.
  pub backoff: Backoff,
  /// First delay.
  #[serde(serialize_with = "ser_duration")]
  pub delay: Duration,
  /// Cap on any delay.
  #[serde(serialize_with = "ser_opt_duration")]
  pub max_delay: Option<Duration>,
  /// Randomise each delay.
  pub jitter: bool,
  /// Which failures are retried.
  pub on: Vec<RetryOn>,
}

impl Default for Retry {
  fn default() -> Self {
    Self {
      max_attempts: 1,
      backoff: Backoff::Fixed,
      delay: Duration::from_secs(1),
      max_delay: None,
      jitter: false,
      on: vec![RetryOn::Error, RetryOn::Timeout],
    }
  }
}

impl Retry {
  /// The delay before attempt `attempt + 1` after attempt `attempt` (1-based) failed, without jitter.
  pub fn delay_after(&self, attempt: u32) -> Duration {
    let n = attempt.max(1);
    let delay = match self.backoff {
      Backoff::Fixed => self.delay,
      Backoff::Linear => self.delay.saturating_mul(n),
      Backoff::Exponential => self
        .delay
        .saturating_mul(2u32.saturating_pow((n - 1).min(31))),
    };
    self.max_delay.map_or(delay, |max| delay.min(max))
  }
}

/// Backoff shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
  /// Same delay each time.
  Fixed,
  /// delay × attempt.
  Linear,
  /// delay × 2^(attempt-1).
  Exponential,
}

impl Backoff {
  /// Names accepted in files.
  pub const NAMES: &'static [&'static str] = &["fixed", "linear", "exponential"];
}

/// Kinds of failure `retry.on` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryOn {
  /// The skill failed.
  Error,
  /// The attempt ran out of time.
  Timeout,
}

/// `on_failure` policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
  /// Stop the run, compensate, fail.
  Halt,
  /// Skip dependents, let other branches go on, fail at the end.
  Continue,
  /// Mark failed but count as success.
  Ignore,
}

impl OnFailure {
  /// Names accepted in files.
  pub const NAMES: &'static [&'static str] = &["halt", "continue", "ignore"];
}

/// A value from the file whose strings may hold `$<< >>` expressions.
#[derive(Debug, Clone)]
pub enum Input {
  /// Plain data with no expressions in it.
  Literal(serde_json::Value),
  /// A string with expressions.
  Expr(Box<Expression>),
  /// A list with expressions somewhere inside.
  List(Vec<Input>),
  /// A mapping with expressions somewhere inside.
  Map(IndexMap<String, Input>),
}

impl Input {
  /// Every expression inside, in file order.
  pub fn expressions(&self) -> Vec<&Expression> {
    let mut out = Vec::new();
    self.collect(&mut out);
    out
  }

  fn collect<'a>(&'a self, out: &mut Vec<&'a Expression>) {
    match self {
      Self::Literal(_) => {}
      Self::Expr(e) => out.push(e),
      Self::List(items) => items.iter().for_each(|i| i.collect(out)),
      Self::Map(entries) => entries.values().for_each(|i| i.collect(out)),
    }
  }

  /// Data as written, expressions kept as their source text.
  pub fn to_json(&self) -> serde_json::Value {
    match self {
      Self::Literal(v) => v.clone(),
      Self::Expr(e) => serde_json::Value::String(e.text.clone()),
      Self::List(items) => items.iter().map(Input::to_json).collect(),
      Self::Map(entries) => entries
        .iter()
        .map(|(k, v)| (k.clone(), v.to_json()))
        .collect::<serde_json::Map<_, _>>()
        .into(),
    }
  }

  /// The literal value, when the input holds no expressions.
  pub fn as_literal(&self) -> Option<&serde_json::Value> {
    match self {
      Self::Literal(v) => Some(v),
      _ => None,
    }
  }
}

impl Serialize for Input {
  fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    self.to_json().serialize(serializer)
  }
}

/// A string from the file holding one or more `$<< >>` parts, with its position.
#[derive(Debug, Clone)]
pub struct Expression {
  /// The parsed template.
  pub template: expr::Template,
  /// The string as written.
  pub text: String,
  /// The YAML string node, to map positions inside the string back into the file.
  pub node: yaml::Node,
  /// True for a bare `if: a == b`, parsed as if written `$<<a == b>>`.
  pub wrapped: bool,
}

impl Expression {
  /// The file span of a span inside an expression body that starts at `body_offset` in the string.
  pub fn file_span(&self, source: &Source, body_offset: usize, inner: Span) -> Span {
    let offset = (body_offset + inner.offset).saturating_sub(if self.wrapped { 3 } else { 0 });
    let start = self.node.file_offset(source, offset);
    Span::new(start, inner.len)
  }
}

impl Serialize for Expression {
  fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&self.text)
  }
}

fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
  s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[expect(
  clippy::ref_option,
  reason = "serde's `serialize_with` passes the field by reference"
)]
fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
  match d {
    Some(d) => ser_duration(d, s),
    None => s.serialize_none(),
  }
}
