//! The workflow's top level: name, parameters, config, defaults, retry and the other settings
//! stages share.
use super::*;
use indexmap::IndexMap;
use std::time::Duration;
use yaml::{Node, NodeValue};

use nodes::Loader;

impl Loader {
  pub(super) fn workflow(&mut self, root: &Node) -> Option<Workflow> {
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

  pub(super) fn parameters(&mut self, node: &Node) -> IndexMap<String, Parameter> {
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

  pub(super) fn parameter(&mut self, name: &str, key: &Node, node: &Node) -> Option<Parameter> {
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

  /// An `env` mapping (of `config` or of a stage): names to scalar values or templates.
  pub(super) fn env(&mut self, node: &Node) -> IndexMap<String, Input> {
    let mut vars = IndexMap::new();
    let Some(env) = self.mapping(node, "env", None) else {
      return vars;
    };
    for (key, _, value) in &env.entries {
      let input = match &value.value {
        NodeValue::Seq(_) | NodeValue::Map(_) => {
          self.wrong_type(value, &format!("env.{key}"), "a string");
          continue;
        }
        _ => self.input(value, "env"),
      };
      vars.insert((*key).to_string(), input);
    }
    vars
  }

  pub(super) fn config(&mut self, node: &Node, config: &mut Config) {
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
    if let Some(n) = map.get("env") {
      config.env = self.env(n);
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
  pub(super) fn permissions(&mut self, node: &Node) -> Vec<Permission> {
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

  pub(super) fn risk(&mut self, node: &Node, field: &str) -> Option<Risk> {
    let i = self.choice(node, field, Risk::NAMES)?;
    Some([Risk::Low, Risk::Medium, Risk::High, Risk::Critical][i])
  }

  pub(super) fn defaults(&mut self, node: &Node) -> StageDefaults {
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

  pub(super) fn on_failure(&mut self, node: &Node) -> Option<OnFailure> {
    let i = self.choice(node, "on_failure", OnFailure::NAMES)?;
    Some([OnFailure::Halt, OnFailure::Continue, OnFailure::Ignore][i])
  }

  /// A `retry` mapping merged field by field over `base`.
  pub(super) fn retry(&mut self, node: &Node, base: &Retry) -> Option<Retry> {
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
}

/// Stage settings from `defaults:`.
#[derive(Debug, Clone, Default)]
pub(super) struct StageDefaults {
  pub(super) timeout: Option<Duration>,
  pub(super) retry: Option<Retry>,
  pub(super) on_failure: Option<OnFailure>,
}

/// Integer parameters hold integers: a whole `2.0` is stored as `2`.
#[expect(
  clippy::cast_possible_truncation,
  reason = "a whole number below 2^53, checked just before"
)]
fn normalize(ty: ValueType, value: serde_json::Value) -> serde_json::Value {
  match (&value, ty) {
    (serde_json::Value::Number(n), ValueType::Integer) if !n.is_i64() && !n.is_u64() => n
      .as_f64()
      .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
      .map_or(value, |f| serde_json::Value::from(f as i64)),
    _ => value,
  }
}
