//! Turns a YAML [`Node`](yaml::Node) tree into a typed [`Workflow`], collecting every error.
use super::*;
use crate::workflow::*;
use indexmap::IndexMap;
use std::{path::Path, time::Duration};
use yaml::{Node, NodeValue};

const WORKFLOW_KEYS: &[&str] = &[
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
const PARAMETER_KEYS: &[&str] = &[
  "type",
  "default",
  "required",
  "description",
  "enum",
  "secret",
];
const CONFIG_KEYS: &[&str] = &[
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
const APPROVAL_KEYS: &[&str] = &["policy", "require_for"];
const BUDGET_KEYS: &[&str] = &["tokens"];
const DEFAULTS_KEYS: &[&str] = &["timeout", "retry", "on_failure"];
const RETRY_KEYS: &[&str] = &[
  "max_attempts",
  "backoff",
  "delay",
  "max_delay",
  "jitter",
  "on",
];
const STAGE_KEYS: &[&str] = &[
  "id",
  "description",
  "depends_on",
  "uses",
  "with",
  "gate",
  "if",
  "timeout",
  "retry",
  "on_failure",
  "fallback",
  "compensate",
  "recover",
  "risk",
  "outputs",
];
/// Keys that only make sense on a skill stage.
const SKILL_ONLY_KEYS: &[&str] = &[
  "with",
  "retry",
  "fallback",
  "compensate",
  "recover",
  "outputs",
  "timeout",
];
const GATE_KEYS: &[&str] = &[
  "message",
  "timeout",
  "on_timeout",
  "policy",
  "approvers",
  "inputs",
];
const COMPENSATE_KEYS: &[&str] = &["uses", "with"];
const FIELD_KEYS: &[&str] = &["type", "required", "description"];
const RETRY_ON: &[&str] = &["error", "timeout"];
const GATE_DECISIONS: &[&str] = &["reject", "approve"];
const PARAMETER_TYPES: &[&str] = &["string", "number", "integer", "boolean", "array", "object"];

/// Default stage timeout when neither the stage nor `defaults` sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2 * 3600);

/// Reads and loads a workflow file; I/O problems become [`LoadError::Io`].
pub fn load_file(path: &Path) -> Result<Workflow, LoadError> {
  let text = crate::source::read_text(path).map_err(|error| LoadError::Io {
    path: path.display().to_string(),
    error,
  })?;
  let base = path.parent().unwrap_or_else(|| Path::new(""));
  load(&path.display().to_string(), &text, Some(base)).map_err(LoadError::Invalid)
}

/// Loads and checks a workflow from text; `name` is used in error positions. Skill names are
/// checked only by [`load_file`], which knows where to look for them.
pub fn load_str(name: &str, text: &str) -> Result<Workflow, Diagnostics> {
  load(name, text, None)
}

/// Loads from text; with a base directory, skill names are checked against it too.
fn load(name: &str, text: &str, base: Option<&Path>) -> Result<Workflow, Diagnostics> {
  let source = Source::new(name, text);
  let root = match yaml::parse(&source) {
    Ok(root) => root,
    Err(error) => {
      return Err(Diagnostics(vec![Diagnostic::new(
        &source,
        Span::new(error.offset, 0),
        ErrorKind::Yaml(error.message),
      )]));
    }
  };
  let mut loader = Loader {
    source: Arc::clone(&source),
    diagnostics: Diagnostics::default(),
  };
  let workflow = loader.workflow(&root);
  let mut diagnostics = loader.diagnostics;
  if let Some(workflow) = &workflow {
    diagnostics.0.extend(analyzer::analyze(workflow).0);
    if let Some(base) = base {
      let index = skills::SkillIndex::discover(base, &workflow.config.skills_path);
      diagnostics.0.extend(index.check_workflow(workflow).0);
    }
  }
  match workflow {
    Some(workflow) if diagnostics.is_empty() => Ok(workflow),
    _ => {
      diagnostics.sort();
      Err(diagnostics)
    }
  }
}

/// The typed model of `text` without the cross-stage checks (for tests of those checks' parts).
#[cfg(test)]
pub(crate) fn load_unchecked(name: &str, text: &str) -> Option<Workflow> {
  let source = Source::new(name, text);
  let root = yaml::parse(&source).ok()?;
  let mut loader = Loader {
    source: Arc::clone(&source),
    diagnostics: Diagnostics::default(),
  };
  loader.workflow(&root)
}

/// Keys of a skill's `skill.yaml`.
const SKILL_META_KEYS: &[&str] = &[
  "description",
  "domains",
  "languages",
  "risk",
  "tokens",
  "permissions",
  "inputs",
  "outputs",
];

/// Reads a skill's `skill.yaml` metadata, reporting every problem with its position.
pub fn load_skill_meta(name: &str, text: &str) -> Result<skills::SkillMeta, Diagnostics> {
  let source = Source::new(name, text);
  let root = yaml::parse(&source).map_err(|error| {
    Diagnostics(vec![Diagnostic::new(
      &source,
      Span::new(error.offset, 0),
      ErrorKind::Yaml(error.message),
    )])
  })?;
  let mut loader = Loader {
    source: Arc::clone(&source),
    diagnostics: Diagnostics::default(),
  };
  let mut meta = skills::SkillMeta::default();
  if root.value != NodeValue::Null
    && let Some(map) = loader.mapping(&root, "skill.yaml", Some(SKILL_META_KEYS))
  {
    if let Some(n) = map.get("description") {
      meta.description = loader.string(n, "description");
    }
    let list = |loader: &mut Loader, key: &str| -> Vec<String> {
      map
        .get(key)
        .map(|n| {
          loader
            .string_list(n, key)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
        })
        .unwrap_or_default()
    };
    meta.domains = list(&mut loader, "domains");
    meta.languages = list(&mut loader, "languages");
    if let Some(n) = map.get("risk") {
      meta.risk = loader.risk(n, "risk");
    }
    if let Some(n) = map.get("tokens") {
      meta.tokens = loader.integer(n, "tokens", 0).unwrap_or(0);
    }
    if let Some(n) = map.get("permissions") {
      meta.permissions = loader.permissions(n);
    }
    if let Some(n) = map.get("inputs") {
      for (name, field) in loader.fields(n, "inputs", true) {
        meta.inputs.insert(name, field.ty.name().to_string());
      }
    }
    if let Some(n) = map.get("outputs") {
      for (name, field) in loader.fields(n, "outputs", true) {
        meta.outputs.insert(name, field.ty.name().to_string());
      }
    }
  }
  if loader.diagnostics.is_empty() {
    Ok(meta)
  } else {
    loader.diagnostics.sort();
    Err(loader.diagnostics)
  }
}

/// Why a workflow could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
  /// The file could not be read.
  #[error("{path}: {error}")]
  Io {
    /// The path as given.
    path: String,
    /// The OS error.
    error: std::io::Error,
  },
  /// The file has errors.
  #[error("{0}")]
  Invalid(Diagnostics),
}

/// The entries of a mapping node, after unknown and duplicate keys were reported.
struct Mapping<'a> {
  entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> Mapping<'a> {
  fn get(&self, key: &str) -> Option<&'a Node> {
    self
      .entries
      .iter()
      .find(|(k, _, _)| *k == key)
      .map(|(_, _, v)| *v)
  }

  fn key_node(&self, key: &str) -> Option<&'a Node> {
    self
      .entries
      .iter()
      .find(|(k, _, _)| *k == key)
      .map(|(_, k, _)| *k)
  }
}

/// State while converting one file.
struct Loader {
  source: Arc<Source>,
  diagnostics: Diagnostics,
}

impl Loader {
  fn error(&mut self, span: Span, kind: ErrorKind) {
    self
      .diagnostics
      .push(Diagnostic::new(&self.source, span, kind));
  }

  fn wrong_type(&mut self, node: &Node, field: &str, expected: &'static str) {
    self.error(
      node.span,
      ErrorKind::WrongType {
        field: field.to_string(),
        expected,
        found: node.kind_name(),
      },
    );
  }

  /// Checks that `node` is a mapping whose keys are all in `allowed` and unique.
  fn mapping<'a>(
    &mut self,
    node: &'a Node,
    field: &str,
    allowed: Option<&[&str]>,
  ) -> Option<Mapping<'a>> {
    let NodeValue::Map(pairs) = &node.value else {
      self.wrong_type(node, field, "a mapping");
      return None;
    };
    let mut entries: Vec<(&'a str, &'a Node, &'a Node)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
      let Some(name) = key.as_str() else {
        self.error(
          key.span,
          ErrorKind::NonStringKey {
            context: field.to_string(),
            found: key.kind_name(),
          },
        );
        continue;
      };
      if entries.iter().any(|(k, _, _)| *k == name) {
        self.error(
          key.span,
          ErrorKind::DuplicateKey {
            key: name.to_string(),
          },
        );
        continue;
      }
      if let Some(allowed) = allowed
        && !allowed.contains(&name)
      {
        self.error(
          key.span,
          ErrorKind::UnknownKey {
            key: name.to_string(),
            context: field.to_string(),
            suggestion: suggest::suggest(name, allowed.iter().copied()).map(str::to_string),
          },
        );
        continue;
      }
      entries.push((name, key, value));
    }
    Some(Mapping { entries })
  }

  fn string(&mut self, node: &Node, field: &str) -> Option<String> {
    if let Some(s) = node.as_str() {
      return Some(s.to_string());
    }
    // Numbers and booleans are accepted where text is expected (`version: 1.10` is common),
    // as written: converting the parsed number back would turn `1.10` into `1.1`.
    match &node.value {
      NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => self
        .source
        .text()
        .get(node.span.offset..node.span.end())
        .map(|t| t.trim().to_string()),
      _ => {
        self.wrong_type(node, field, "a string");
        None
      }
    }
  }

  fn strict_string(&mut self, node: &Node, field: &str) -> Option<String> {
    if let Some(s) = node.as_str() {
      Some(s.to_string())
    } else {
      self.wrong_type(node, field, "a string");
      None
    }
  }

  fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
    if let NodeValue::Bool(b) = node.value {
      Some(b)
    } else {
      self.wrong_type(node, field, "true or false");
      None
    }
  }

  fn integer(&mut self, node: &Node, field: &str, min: i64) -> Option<u64> {
    let NodeValue::Int(i) = node.value else {
      self.wrong_type(node, field, "a whole number");
      return None;
    };
    if i < min {
      self.error(
        node.span,
        ErrorKind::OutOfRange {
          field: field.to_string(),
          message: format!("must be at least {min}, found {i}"),
        },
      );
      return None;
    }
    u64::try_from(i).ok()
  }

  fn duration(&mut self, node: &Node, field: &str) -> Option<Duration> {
    let text = match &node.value {
      NodeValue::Int(i) if *i >= 0 => i.to_string(),
      NodeValue::String { text, .. } => text.clone(),
      NodeValue::Int(i) => {
        self.error(
          node.span,
          ErrorKind::InvalidDuration(format!("invalid duration `{i}`")),
        );
        return None;
      }
      NodeValue::Float(f) => {
        self.error(
          node.span,
          ErrorKind::InvalidDuration(format!(
            "invalid duration `{f}`: use whole units like 1500ms or 1h30m"
          )),
        );
        return None;
      }
      _ => {
        self.wrong_type(node, field, "a duration");
        return None;
      }
    };
    match duration::parse_duration(&text) {
      Ok(d) => Some(d),
      Err(message) => {
        self.error(node.span, ErrorKind::InvalidDuration(message));
        None
      }
    }
  }

  /// A duration that must be more than zero (a limit of zero would fail everything at once).
  fn limit(&mut self, node: &Node, field: &str) -> Option<Duration> {
    let duration = self.duration(node, field)?;
    if duration.is_zero() {
      self.error(
        node.span,
        ErrorKind::OutOfRange {
          field: field.to_string(),
          message: "must be more than 0".into(),
        },
      );
      return None;
    }
    Some(duration)
  }

  /// A string that must be one of `allowed`.
  fn choice(
    &mut self,
    node: &Node,
    field: &str,
    allowed: &'static [&'static str],
  ) -> Option<usize> {
    let text = self.strict_string(node, field)?;
    if let Some(i) = allowed.iter().position(|a| *a == text) {
      return Some(i);
    }
    self.error(
      node.span,
      ErrorKind::InvalidChoice {
        field: field.to_string(),
        value: text.clone(),
        allowed,
        suggestion: suggest::suggest(&text, allowed.iter().copied()).map(str::to_string),
      },
    );
    None
  }

  /// A list of strings; a single string is accepted as a one-item list.
  fn string_list(&mut self, node: &Node, field: &str) -> Vec<(String, Span)> {
    match &node.value {
      NodeValue::String { text, .. } => vec![(text.clone(), node.span)],
      NodeValue::Seq(items) => items
        .iter()
        .filter_map(|item| {
          let s = self.strict_string(item, field)?;
          Some((s, item.span))
        })
        .collect(),
      NodeValue::Null => Vec::new(),
      _ => {
        self.wrong_type(node, field, "a list of strings");
        Vec::new()
      }
    }
  }

  fn name(&mut self, node: &Node, what: &'static str) -> Option<String> {
    // `name: 2024` is a valid name that YAML reads as a number: take it as written.
    let text = match node.value {
      NodeValue::Int(_) => self.string(node, what)?,
      _ => self.strict_string(node, what)?,
    };
    if is_valid_name(&text) {
      Some(text)
    } else {
      self.error(node.span, ErrorKind::InvalidName { what, name: text });
      None
    }
  }

  /// Any data; strings holding `$<< >>` become expressions.
  fn input(&mut self, node: &Node, field: &str) -> Input {
    match &node.value {
      NodeValue::String { text, .. } => match self.template(node, text) {
        Some(expression) => Input::Expr(Box::new(expression)),
        None => Input::Literal(serde_json::Value::String(unescape_dollar(text))),
      },
      NodeValue::Seq(items) => {
        let items: Vec<Input> = items.iter().map(|i| self.input(i, field)).collect();
        if items.iter().all(|i| matches!(i, Input::Literal(_))) {
          Input::Literal(
            items
              .iter()
              .filter_map(|i| i.as_literal().cloned())
              .collect(),
          )
        } else {
          Input::List(items)
        }
      }
      NodeValue::Map(_) => {
        let Some(map) = self.mapping(node, field, None) else {
          return Input::Literal(serde_json::Value::Null);
        };
        let entries: IndexMap<String, Input> = map
          .entries
          .iter()
          .map(|(k, _, v)| ((*k).to_string(), self.input(v, field)))
          .collect();
        if entries.values().all(|i| matches!(i, Input::Literal(_))) {
          Input::Literal(
            entries
              .into_iter()
              .filter_map(|(k, v)| v.as_literal().cloned().map(|v| (k, v)))
              .collect::<serde_json::Map<_, _>>()
              .into(),
          )
        } else {
          Input::Map(entries)
        }
      }
      _ => Input::Literal(node.to_json()),
    }
  }

  /// Parses a string's `$<< >>` parts; `None` when it holds none (or on error, reported).
  fn template(&mut self, node: &Node, text: &str) -> Option<Expression> {
    if !text.contains("$<<") {
      return None;
    }
    match expr::Template::parse(text) {
      Ok(template) if template.is_literal() => None,
      Ok(template) => Some(Expression {
        template,
        text: text.to_string(),
        node: node.clone(),
        wrapped: false,
      }),
      Err(error) => {
        let start = node.file_offset(&self.source, error.span.offset);
        self.error(
          Span::new(start, error.span.len),
          ErrorKind::Expr(error.kind),
        );
        None
      }
    }
  }

  /// An expression field such as `if`: a bare expression or a `$<< >>` string.
  fn condition(&mut self, node: &Node) -> Option<Expression> {
    let text = match &node.value {
      NodeValue::String { text, .. } if text.contains("$<<") => {
        let before = self.diagnostics.0.len();
        let Some(expression) = self.template(node, text) else {
          // Only escaped `$$<<`: text, which as a condition would always be true.
          if self.diagnostics.0.len() == before {
            self.error(node.span, ErrorKind::ConditionNotSingle);
          }
          return None;
        };
        // Text around the expression would make the condition a non-empty string: always true.
        if expression.template.single().is_none() {
          self.error(node.span, ErrorKind::ConditionNotSingle);
          return None;
        }
        return Some(expression);
      }
      NodeValue::String { text, .. } => text.clone(),
      NodeValue::Bool(b) => b.to_string(),
      _ => {
        self.wrong_type(node, "if", "an expression");
        return None;
      }
    };
    // A bare `if: a == b` is read as if written `$<<a == b>>`, as GitHub Actions does.
    match expr::Template::parse(&format!("$<<{text}>>")) {
      Ok(template) => Some(Expression {
        template,
        text,
        node: node.clone(),
        wrapped: true,
      }),
      Err(error) => {
        let start = node.file_offset(&self.source, error.span.offset.saturating_sub(3));
        self.error(
          Span::new(start, error.span.len),
          ErrorKind::Expr(error.kind),
        );
        None
      }
    }
  }

  fn workflow(&mut self, root: &Node) -> Option<Workflow> {
    if root.value == NodeValue::Null {
      self.error(root.span, ErrorKind::EmptyFile);
      return None;
    }
    let map = self.mapping(root, "workflow", Some(WORKFLOW_KEYS))?;
    let mut workflow = Workflow {
      source: Arc::clone(&self.source),
      swdl: 1,
      name: String::new(),
      description: None,
      version: None,
      parameters: IndexMap::new(),
      config: Config::default(),
      stages: Vec::new(),
      outputs: IndexMap::new(),
      reads: std::sync::OnceLock::new(),
      dag: std::sync::OnceLock::new(),
    };
    if let Some(node) = map.get("swdl") {
      match node.value {
        NodeValue::Int(1) => {}
        _ => self.error(
          node.span,
          ErrorKind::UnsupportedVersion(node.to_json().to_string()),
        ),
      }
    }
    match map.get("name") {
      Some(node) => {
        if let Some(name) = self.name(node, "workflow name") {
          workflow.name = name;
        }
      }
      None => self.error(
        root.span,
        ErrorKind::MissingKey {
          key: "name",
          context: "workflow".into(),
        },
      ),
    }
    if let Some(node) = map.get("description") {
      workflow.description = self.string(node, "description");
    }
    if let Some(node) = map.get("version") {
      workflow.version = self.string(node, "version");
    }
    if let Some(node) = map.get("parameters") {
      workflow.parameters = self.parameters(node);
    }
    if let Some(node) = map.get("config") {
      self.config(node, &mut workflow.config);
    }
    let defaults = map
      .get("defaults")
      .map(|node| self.defaults(node))
      .unwrap_or_default();
    match map.get("stages") {
      Some(node) => workflow.stages = self.stages(node, &defaults),
      None => self.error(
        root.span,
        ErrorKind::MissingKey {
          key: "stages",
          context: "workflow".into(),
        },
      ),
    }
    if let Some(node) = map.get("outputs")
      && let Some(outputs) = self.mapping(node, "outputs", None)
    {
      for (key, _, value) in &outputs.entries {
        let input = self.input(value, "outputs");
        workflow.outputs.insert((*key).to_string(), input);
      }
    }
    Some(workflow)
  }

  fn parameters(&mut self, node: &Node) -> IndexMap<String, Parameter> {
    let mut out = IndexMap::new();
    let Some(map) = self.mapping(node, "parameters", None) else {
      return out;
    };
    for (name, key, value) in &map.entries {
      if !is_valid_param_name(name) {
        self.error(
          key.span,
          ErrorKind::InvalidName {
            what: "parameter name",
            name: (*name).to_string(),
          },
        );
        continue;
      }
      if let Some(param) = self.parameter(name, key, value) {
        out.insert((*name).to_string(), param);
      }
    }
    out
  }

  fn parameter(&mut self, name: &str, key: &Node, node: &Node) -> Option<Parameter> {
    let field = format!("parameters.{name}");
    let map = self.mapping(node, &field, Some(PARAMETER_KEYS))?;
    let ty = match map.get("type") {
      Some(t) => PARAMETER_TYPES
        .get(self.choice(t, "type", PARAMETER_TYPES)?)
        .and_then(|n| ValueType::from_name(n))?,
      None => {
        self.error(
          key.span,
          ErrorKind::MissingKey {
            key: "type",
            context: format!("parameter `{name}`"),
          },
        );
        return None;
      }
    };
    let mut param = Parameter {
      name: name.to_string(),
      ty,
      default: None,
      required: false,
      description: None,
      allowed: None,
      secret: false,
      span: key.span,
    };
    if let Some(n) = map.get("required") {
      param.required = self.bool(n, "required").unwrap_or(false);
    }
    if let Some(n) = map.get("secret") {
      param.secret = self.bool(n, "secret").unwrap_or(false);
    }
    if let Some(n) = map.get("description") {
      param.description = self.string(n, "description");
    }
    if let Some(n) = map.get("enum") {
      if let NodeValue::Seq(items) = &n.value {
        let mut values = Vec::new();
        for item in items {
          let value = normalize(ty, item.to_json());
          if ty.accepts(&value) {
            values.push(value);
          } else {
            self.error(
              item.span,
              ErrorKind::ParameterType {
                name: name.to_string(),
                what: "enum value",
                expected: ty,
                found: value.to_string(),
              },
            );
          }
        }
        param.allowed = Some(values);
      } else {
        self.wrong_type(n, "enum", "a list");
      }
    }
    if let Some(n) = map.get("default") {
      let value = normalize(ty, n.to_json());
      if !ty.accepts(&value) {
        self.error(
          n.span,
          ErrorKind::ParameterType {
            name: name.to_string(),
            what: "default",
            expected: ty,
            found: value.to_string(),
          },
        );
      } else if param
        .allowed
        .as_ref()
        .is_some_and(|allowed| !allowed.iter().any(|a| same_value(a, &value)))
      {
        self.error(
          n.span,
          ErrorKind::NotInEnum {
            name: name.to_string(),
            value: value.to_string(),
          },
        );
      } else {
        param.default = Some(value);
      }
    }
    Some(param)
  }

  fn config(&mut self, node: &Node, config: &mut Config) {
    let Some(map) = self.mapping(node, "config", Some(CONFIG_KEYS)) else {
      return;
    };
    if let Some(n) = map.get("max_parallel")
      && let Some(v) = self.integer(n, "max_parallel", 1)
    {
      config.max_parallel = usize::try_from(v).unwrap_or(usize::MAX);
    }
    if let Some(n) = map.get("timeout") {
      config.timeout = self.limit(n, "timeout");
    }
    if let Some(n) = map.get("env")
      && let Some(env) = self.mapping(n, "env", None)
    {
      for (key, _, value) in &env.entries {
        let input = match &value.value {
          NodeValue::Seq(_) | NodeValue::Map(_) => {
            self.wrong_type(value, &format!("env.{key}"), "a string");
            continue;
          }
          _ => self.input(value, "env"),
        };
        config.env.insert((*key).to_string(), input);
      }
    }
    if let Some(n) = map.get("hooks") {
      config.hooks = self
        .string_list(n, "hooks")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    }
    if let Some(n) = map.get("skills_path") {
      config.skills_path = self
        .string_list(n, "skills_path")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    }
    if let Some(n) = map.get("secrets") {
      config.secrets = self
        .string_list(n, "secrets")
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    }
    if let Some(n) = map.get("approval")
      && let Some(approval) = self.mapping(n, "approval", Some(APPROVAL_KEYS))
    {
      let policy = approval
        .get("policy")
        .and_then(|p| self.strict_string(p, "policy"));
      let require_for = approval
        .get("require_for")
        .and_then(|r| self.risk(r, "require_for"));
      config.approval = Some(Approval {
        policy,
        policy_span: approval.get("policy").map_or(n.span, |p| p.span),
        require_for,
      });
    }
    if let Some(n) = map.get("permissions")
      && let Some(perms) = self.mapping(n, "permissions", None)
    {
      for (skill, _, value) in &perms.entries {
        let grants = self.permissions(value);
        config.permissions.insert((*skill).to_string(), grants);
      }
    }
    if let Some(n) = map.get("budget")
      && let Some(budget) = self.mapping(n, "budget", Some(BUDGET_KEYS))
    {
      config.budget_tokens = budget
        .get("tokens")
        .and_then(|t| self.integer(t, "tokens", 0));
    }
  }

  /// A list of permission names (`exec`, `net`, `fs`).
  fn permissions(&mut self, node: &Node) -> Vec<Permission> {
    self
      .string_list(node, "permissions")
      .into_iter()
      .filter_map(|(p, span)| {
        let i = Permission::NAMES.iter().position(|n| *n == p);
        if i.is_none() {
          self.error(
            span,
            ErrorKind::InvalidChoice {
              field: "permission".into(),
              suggestion: suggest::suggest(&p, Permission::NAMES.iter().copied())
                .map(str::to_string),
              value: p,
              allowed: Permission::NAMES,
            },
          );
        }
        i.map(|i| [Permission::Exec, Permission::Net, Permission::Fs][i])
      })
      .collect()
  }

  fn risk(&mut self, node: &Node, field: &str) -> Option<Risk> {
    let i = self.choice(node, field, Risk::NAMES)?;
    Some([Risk::Low, Risk::Medium, Risk::High, Risk::Critical][i])
  }

  fn defaults(&mut self, node: &Node) -> StageDefaults {
    let mut defaults = StageDefaults::default();
    let Some(map) = self.mapping(node, "defaults", Some(DEFAULTS_KEYS)) else {
      return defaults;
    };
    if let Some(n) = map.get("timeout") {
      defaults.timeout = self.limit(n, "timeout");
    }
    if let Some(n) = map.get("on_failure") {
      defaults.on_failure = self.on_failure(n);
    }
    if let Some(n) = map.get("retry") {
      defaults.retry = self.retry(n, &Retry::default());
    }
    defaults
  }

  fn on_failure(&mut self, node: &Node) -> Option<OnFailure> {
    let i = self.choice(node, "on_failure", OnFailure::NAMES)?;
    Some([OnFailure::Halt, OnFailure::Continue, OnFailure::Ignore][i])
  }

  /// A `retry` mapping merged field by field over `base`.
  fn retry(&mut self, node: &Node, base: &Retry) -> Option<Retry> {
    let map = self.mapping(node, "retry", Some(RETRY_KEYS))?;
    let mut retry = base.clone();
    if let Some(n) = map.get("max_attempts")
      && let Some(v) = self.integer(n, "max_attempts", 1)
    {
      retry.max_attempts = u32::try_from(v).unwrap_or(u32::MAX);
    }
    if let Some(n) = map.get("backoff")
      && let Some(i) = self.choice(n, "backoff", Backoff::NAMES)
    {
      retry.backoff = [Backoff::Fixed, Backoff::Linear, Backoff::Exponential][i];
    }
    if let Some(n) = map.get("delay")
      && let Some(d) = self.duration(n, "delay")
    {
      retry.delay = d;
    }
    if let Some(n) = map.get("max_delay") {
      retry.max_delay = self.duration(n, "max_delay");
    }
    if let Some(n) = map.get("jitter")
      && let Some(b) = self.bool(n, "jitter")
    {
      retry.jitter = b;
    }
    if let Some(n) = map.get("on") {
      let mut on = Vec::new();
      for (text, span) in self.string_list(n, "on") {
        match RETRY_ON.iter().position(|r| *r == text) {
          Some(0) => on.push(RetryOn::Error),
          Some(_) => on.push(RetryOn::Timeout),
          None => self.error(
            span,
            ErrorKind::InvalidChoice {
              field: "retry.on".into(),
              suggestion: suggest::suggest(&text, RETRY_ON.iter().copied()).map(str::to_string),
              value: text,
              allowed: RETRY_ON,
            },
          ),
        }
      }
      retry.on = on;
    }
    Some(retry)
  }

  fn stages(&mut self, node: &Node, defaults: &StageDefaults) -> Vec<Stage> {
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

  fn stage(&mut self, node: &Node, index: usize, defaults: &StageDefaults) -> Option<Stage> {
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
      let with = map.get("with").map(|n| loader.with(n)).unwrap_or_default();
      StageKind::Skill(SkillCall { uses, span, with })
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
    };
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

  /// A skill name with its position; empty names are reported.
  fn skill_name(&mut self, node: &Node) -> Option<(String, Span)> {
    let name = self.strict_string(node, "uses")?;
    if name.trim().is_empty() {
      self.error(node.span, ErrorKind::EmptySkill);
      return None;
    }
    Some((name, node.span))
  }

  fn with(&mut self, node: &Node) -> IndexMap<String, Input> {
    let Some(map) = self.mapping(node, "with", None) else {
      return IndexMap::new();
    };
    map
      .entries
      .iter()
      .map(|(k, _, v)| ((*k).to_string(), self.input(v, "with")))
      .collect()
  }

  fn compensate(&mut self, node: &Node) -> Option<SkillCall> {
    // `compensate: skill-name` is shorthand for `compensate: { uses: skill-name }`.
    if node.as_str().is_some() {
      let (uses, span) = self.skill_name(node)?;
      return Some(SkillCall {
        uses,
        span,
        with: IndexMap::new(),
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
    let with = map.get("with").map(|n| self.with(n)).unwrap_or_default();
    Some(SkillCall { uses, span, with })
  }

  fn gate(&mut self, node: &Node) -> Option<Gate> {
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
  fn fields(&mut self, node: &Node, field: &str, allow_any: bool) -> IndexMap<String, OutputField> {
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

/// Stage settings from `defaults:`.
#[derive(Debug, Clone, Default)]
struct StageDefaults {
  timeout: Option<Duration>,
  retry: Option<Retry>,
  on_failure: Option<OnFailure>,
}

/// A plain string wrapped as an expression-free template, so gate messages have one type.
fn literal_expression(node: &Node, text: &str) -> Expression {
  Expression {
    template: expr::Template {
      segments: vec![expr::Segment::Text(unescape_dollar(text))],
    },
    text: text.to_string(),
    node: node.clone(),
    wrapped: false,
  }
}

/// `$$<<` in a string without expressions still means a literal `$<<`.
fn unescape_dollar(text: &str) -> String {
  if text.contains("$$<<") {
    text.replace("$$<<", "$<<")
  } else {
    text.to_string()
  }
}

/// Integer parameters hold integers: a whole `2.0` is stored as `2`.
fn normalize(ty: ValueType, value: serde_json::Value) -> serde_json::Value {
  match (&value, ty) {
    (serde_json::Value::Number(n), ValueType::Integer) if !n.is_i64() && !n.is_u64() => n
      .as_f64()
      .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
      .map_or(value, |f| serde_json::Value::from(f as i64)),
    _ => value,
  }
}

/// Workflow names and stage ids: `[a-z0-9][a-z0-9_-]*`.
pub fn is_valid_name(name: &str) -> bool {
  let mut bytes = name.bytes();
  bytes
    .next()
    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parameter names are read through expressions, so they follow expression name rules.
fn is_valid_param_name(name: &str) -> bool {
  let mut bytes = name.bytes();
  bytes
    .next()
    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
    && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
  use super::*;
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
    assert_eq!(a.timeout, Duration::from_secs(7_200));
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
    assert_eq!(a.retry.max_delay, Some(Duration::from_secs(60)));
    assert!(a.retry.jitter);
    assert_eq!(a.timeout, Duration::from_secs(1_800));
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
