//! The skill registry: built-in skills and the skills found on a workflow's skills path, with
//! their metadata (`NAME/skill.yaml`), selection by domain, language and token budget, and the
//! name checks `swdl validate` runs.
use super::*;
pub(crate) use crate::loader::SkillMeta;
use crate::workflow::{SkillCall, Workflow};
use serde::Serialize;
use std::{
  collections::BTreeMap,
  path::{Path, PathBuf},
};

/// Skills every swdl binary provides.
pub(crate) use crate::builtin::NAMES as BUILTINS;

/// One-line descriptions of the built-ins, in `BUILTINS` order.
const BUILTIN_DESCRIPTIONS: &[&str] = &[
  "Return the inputs as outputs",
  "Wait `ms` milliseconds",
  "Fail, or fail the first `times` attempts (for testing recovery)",
  "Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines",
  "Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json",
  "Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage",
];

/// The skill names visible to one workflow, with where discovered ones live.
#[derive(Debug, Clone, Default)]
pub(crate) struct SkillIndex {
  /// The directory relative paths are resolved against.
  pub base: PathBuf,
  /// Discovered skills: name → the Lua file to load (`NAME.lua` or `NAME/init.lua`).
  pub discovered: BTreeMap<String, PathBuf>,
}

impl SkillIndex {
  /// Scans `skills_path` (relative to `base`) for `NAME.lua` and `NAME/init.lua`; the first
  /// directory that has a name wins.
  pub(crate) fn discover(base: &Path, skills_path: &[String]) -> Self {
    let mut discovered = BTreeMap::new();
    for dir in skills_path {
      let Ok(entries) = std::fs::read_dir(base.join(dir)) else {
        continue;
      };
      let mut found: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
          let path = entry.path();
          let (name, file) = if path.is_dir() && path.join("init.lua").is_file() {
            (path.file_name()?, path.join("init.lua"))
          } else if path.extension().is_some_and(|e| e == "lua") {
            (path.file_stem()?, path.clone())
          } else {
            return None;
          };
          Some((name.to_str()?.to_string(), file))
        })
        .collect();
      found.sort();
      for (name, file) in found {
        discovered.entry(name).or_insert(file);
      }
    }
    Self {
      base: base.to_path_buf(),
      discovered,
    }
  }

  /// The Lua file of `uses`: a discovered name, or a `./path.lua` relative to the base.
  pub(crate) fn file(&self, uses: &str) -> Option<PathBuf> {
    if is_path(uses) {
      let path = self.base.join(uses);
      return path.is_file().then_some(path);
    }
    self.discovered.get(uses).cloned()
  }

  /// Whether `uses` names something that exists; paths must exist as files.
  fn check(&self, uses: &str) -> Result<(), ErrorKind> {
    if is_path(uses) {
      return match self.file(uses) {
        Some(_) => Ok(()),
        None => Err(ErrorKind::MissingSkillFile(uses.to_string())),
      };
    }
    if BUILTINS.contains(&uses) || self.discovered.contains_key(uses) {
      return Ok(());
    }
    let known = BUILTINS
      .iter()
      .copied()
      .chain(self.discovered.keys().map(String::as_str));
    Err(ErrorKind::UnknownSkill {
      name: uses.to_string(),
      suggestion: suggest::suggest(uses, known).map(str::to_string),
    })
  }

  /// Reports every `uses`, `fallback` and `compensate` naming a skill that does not exist.
  pub(crate) fn check_workflow(&self, workflow: &Workflow) -> Diagnostics {
    let mut out = Diagnostics::default();
    let mut report = |name: &str, span: Span| {
      // An empty name was already reported by the loader.
      if name.is_empty() {
        return;
      }
      if let Err(kind) = self.check(name) {
        out.push(Diagnostic::new(&workflow.source, span, kind));
      }
    };
    for stage in &workflow.stages {
      if let Some(call) = stage.skill() {
        report(&call.uses, call.span);
      }
      for (name, &span) in stage.fallback.iter().zip(&stage.fallback_spans) {
        report(name, span);
      }
      if let Some(call) = &stage.compensate {
        report(&call.uses, call.span);
      }
    }
    out
  }
}

/// Reports the `with` keys a built-in would not read, and those it needs but is not given.
pub(crate) fn check_builtin_inputs(workflow: &Workflow) -> Diagnostics {
  let mut out = Diagnostics::default();
  // A fallback gets the stage's `with`, written for the stage's own skill: only `uses` and
  // `compensate` are checked against what their skill reads.
  let calls = workflow
    .stages
    .iter()
    .flat_map(|s| s.skill().into_iter().chain(s.compensate.as_ref()));
  for call in calls {
    if let Some(inputs) = builtin::inputs(&call.uses) {
      out.0.extend(
        check_inputs(
          &call.uses,
          call,
          inputs.required,
          &inputs.keys().collect::<Vec<_>>(),
          inputs.aliases,
        )
        .into_iter()
        .map(|(span, kind)| Diagnostic::new(&workflow.source, span, kind)),
      );
    }
  }
  out
}

/// The problems of `call`'s `with` for a skill that reads `keys`, of which one of each group of
/// `required` must be given: unknown keys at their position (suggesting the key an alias
/// stands for, else the closest), missing ones at the skill's name.
pub(crate) fn check_inputs(
  skill: &str,
  call: &SkillCall,
  required: &[&[&str]],
  keys: &[&str],
  aliases: &[(&str, &str)],
) -> Vec<(Span, ErrorKind)> {
  let mut out = Vec::new();
  for (key, &span) in &call.with_spans {
    if !keys.contains(&key.as_str()) {
      out.push((
        span,
        ErrorKind::UnknownInput {
          skill: skill.to_string(),
          key: key.clone(),
          suggestion: aliases
            .iter()
            .find(|(alias, _)| alias == key)
            .map(|(_, ours)| *ours)
            .or_else(|| suggest::suggest(key, keys.iter().copied()))
            .map(str::to_string),
          known: keys.iter().map(|k| (*k).to_string()).collect(),
        },
      ));
    }
  }
  for group in required {
    if !group.iter().any(|k| call.with_spans.contains_key(*k)) {
      out.push((
        call.span,
        ErrorKind::MissingInput {
          skill: skill.to_string(),
          keys: group.iter().map(|k| (*k).to_string()).collect(),
        },
      ));
    }
  }
  out
}

/// `./x.lua`, `../x.lua` and absolute paths name files rather than registry entries.
fn is_path(uses: &str) -> bool {
  uses.starts_with("./") || uses.starts_with("../") || uses.starts_with('/')
}

/// One entry of the registry.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Skill {
  /// The name used in `uses:`.
  pub name: String,
  /// `builtin`, or the Lua file.
  pub source: String,
  /// Metadata.
  #[serde(flatten)]
  pub meta: SkillMeta,
  /// Why the skill's file does not load, when it does not.
  #[serde(skip_serializing_if = "Option::is_none")]
  pub broken: Option<String>,
}

/// Built-ins plus discovered skills with their metadata.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Registry {
  /// Entries: built-ins first, then discovered skills by name.
  pub skills: Vec<Skill>,
}

impl Registry {
  /// Reads the metadata of every skill in `index`; bad `skill.yaml` files are reported with
  /// positions.
  pub(crate) fn load(index: &SkillIndex) -> Result<Self, Diagnostics> {
    let mut skills: Vec<Skill> = BUILTINS
      .iter()
      .zip(BUILTIN_DESCRIPTIONS)
      .map(|(name, description)| Skill {
        name: (*name).to_string(),
        source: "builtin".into(),
        meta: SkillMeta {
          description: Some((*description).to_string()),
          ..SkillMeta::default()
        },
        broken: None,
      })
      .collect();
    let mut problems = Diagnostics::default();
    for (name, file) in &index.discovered {
      let meta_file = file.with_file_name("skill.yaml");
      let meta = if file.ends_with("init.lua") && meta_file.is_file() {
        match crate::source::read_text(&meta_file) {
          Ok(text) => match loader::load_skill_meta(&meta_file.display().to_string(), &text) {
            Ok(meta) => meta,
            Err(d) => {
              problems.0.extend(d.0);
              continue;
            }
          },
          Err(_) => SkillMeta::default(),
        }
      } else {
        SkillMeta::default()
      };
      skills.push(Skill {
        name: name.clone(),
        source: file.display().to_string(),
        meta,
        broken: None,
      });
    }
    if problems.is_empty() {
      Ok(Self { skills })
    } else {
      Err(problems)
    }
  }

  /// The entry named `name`.
  pub(crate) fn get(&self, name: &str) -> Option<&Skill> {
    self.skills.iter().find(|s| s.name == name)
  }

  /// The closest name to `name`, for "did you mean".
  pub(crate) fn suggest(&self, name: &str) -> Option<&str> {
    suggest::suggest(name, self.skills.iter().map(|s| s.name.as_str()))
  }

  /// Skills matching any of `domains` and any of `languages` (empty filters match all), taken
  /// in registry order while their `tokens` fit in `max_tokens`.
  pub(crate) fn select(
    &self,
    domains: &[String],
    languages: &[String],
    max_tokens: Option<u64>,
  ) -> Vec<&Skill> {
    let mut budget = max_tokens.unwrap_or(u64::MAX);
    let any = |wanted: &[String], have: &[String]| {
      wanted.is_empty()
        || wanted
          .iter()
          .any(|w| have.iter().any(|h| h.eq_ignore_ascii_case(w)))
    };
    self
      .skills
      .iter()
      .filter(|s| any(domains, &s.meta.domains) && any(languages, &s.meta.languages))
      .filter(|s| {
        let fits = s.meta.tokens <= budget;
        if fits {
          budget -= s.meta.tokens;
        }
        fits
      })
      .collect()
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn registry(files: &[(&str, &str)]) -> (PathBuf, Result<Registry, Diagnostics>) {
    let dir = std::env::temp_dir().join(format!(
      "swdl-skills-{}-{}",
      std::process::id(),
      files.len()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
      let path = dir.join("skills").join(path);
      if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
      }
      let _ = std::fs::write(&path, text);
    }
    let index = SkillIndex::discover(&dir, &["skills".to_string()]);
    let registry = Registry::load(&index);
    (dir, registry)
  }

  #[test]
  fn discovers_files_and_folders_with_metadata() {
    let (dir, registry) = registry(&[
      ("word-count.lua", "return {}"),
      ("review/init.lua", "return {}"),
      (
        "review/skill.yaml",
        "description: Review code\ndomains: [code-quality]\nlanguages: [python]\ntokens: 300\nrisk: medium\npermissions: [exec]\ninputs: { text: string }\n",
      ),
      ("notes.txt", "not a skill"),
    ]);
    let registry = registry.expect("valid metadata");
    let names: Vec<&str> = registry.skills.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(&names[BUILTINS.len()..], ["review", "word-count"]);
    let review = registry.get("review").expect("review");
    assert_eq!(review.meta.tokens, 300);
    assert_eq!(review.meta.risk, Some(crate::workflow::Risk::Medium));
    assert_eq!(
      review.meta.permissions,
      vec![crate::workflow::Permission::Exec]
    );
    assert_eq!(
      review.meta.inputs.get("text").map(String::as_str),
      Some("string")
    );
    assert!(review.source.ends_with("init.lua"));
    let _ = std::fs::remove_dir_all(dir);
  }

  #[test]
  fn selection_filters_by_domain_and_language_within_the_token_budget() {
    let (dir, registry) = registry(&[
      ("a/init.lua", "return {}"),
      (
        "a/skill.yaml",
        "domains: [testing]\nlanguages: [python]\ntokens: 400\n",
      ),
      ("b/init.lua", "return {}"),
      (
        "b/skill.yaml",
        "domains: [testing, implementation]\nlanguages: [go]\ntokens: 300\n",
      ),
      ("c/init.lua", "return {}"),
      ("c/skill.yaml", "domains: [docs]\ntokens: 100\n"),
    ]);
    let registry = registry.expect("valid");
    let names = |v: Vec<&Skill>| v.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    assert_eq!(
      names(registry.select(&["testing".into()], &[], Some(500))),
      ["a"]
    );
    assert_eq!(
      names(registry.select(&["testing".into()], &[], Some(1000))),
      ["a", "b"]
    );
    assert_eq!(names(registry.select(&[], &["GO".into()], None)), ["b"]);
    let _ = std::fs::remove_dir_all(dir);
  }

  #[test]
  fn bad_metadata_is_reported_with_positions() {
    let (dir, registry) = registry(&[
      ("a/init.lua", "return {}"),
      ("a/skill.yaml", "domains: [x]\ntokenz: 3\nrisk: extreme\n"),
    ]);
    let errors = registry.expect_err("invalid").to_string();
    assert!(
      errors.contains(
        "skill.yaml:2:1: error: unknown key `tokenz` in skill.yaml, did you mean `tokens`?"
      ),
      "{errors}"
    );
    assert!(
      errors.contains("skill.yaml:3:7: error: `risk` must be one of low, medium, high, critical"),
      "{errors}"
    );
    let _ = std::fs::remove_dir_all(dir);
  }
}
