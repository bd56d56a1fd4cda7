//! A skill's `skill.yaml`: its description, domains, languages, risk, token estimate,
//! permissions, inputs and outputs, read with the same node readers as workflows.
use super::*;
use crate::workflow::{Permission, Risk};
use indexmap::IndexMap;
use nodes::Loader;
use serde::Serialize;
use yaml::NodeValue;

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

/// Metadata from `NAME/skill.yaml` (all optional).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SkillMeta {
  /// What the skill does.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub description: Option<String>,
  /// Areas it helps with, for selection.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub domains: Vec<String>,
  /// Programming languages it understands, for selection.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub languages: Vec<String>,
  /// How risky running it is.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub risk: Option<Risk>,
  /// Estimated model tokens one use costs.
  pub tokens: u64,
  /// What it asks to be granted.
  #[serde(skip_serializing_if = "Vec::is_empty")]
  pub permissions: Vec<Permission>,
  /// Declared inputs: name → type.
  #[serde(skip_serializing_if = "IndexMap::is_empty")]
  pub inputs: IndexMap<String, String>,
  /// Declared outputs: name → type.
  #[serde(skip_serializing_if = "IndexMap::is_empty")]
  pub outputs: IndexMap<String, String>,
}

/// Reads a skill's `skill.yaml` metadata, reporting every problem with its position.
pub(crate) fn load_skill_meta(name: &str, text: &str) -> Result<SkillMeta, Diagnostics> {
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
  let mut meta = SkillMeta::default();
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
