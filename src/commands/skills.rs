//! `swdl skills`: the registry of built-in and discovered skills, listed or shown one by one.
use super::*;
use crate::cli::Format;
use std::{io::Write, path::Path};

/// Runs `swdl skills [list|show NAME]`.
pub(super) fn skills(
  action: Option<cli::SkillsAction>,
  dirs: &[std::path::PathBuf],
  format: Format,
) -> Result<Done, Error> {
  let dirs: Vec<String> = if dirs.is_empty() {
    vec!["skills".into()]
  } else {
    dirs.iter().map(|d| d.display().to_string()).collect()
  };
  let index = crate::skills::SkillIndex::discover(Path::new(""), &dirs);
  let mut registry = crate::skills::Registry::load(&index).map_err(Error::Diagnostics)?;
  describe_from_lua(&mut registry);
  let mut out = std::io::stdout().lock();
  match action.unwrap_or(cli::SkillsAction::List {
    domains: Vec::new(),
    languages: Vec::new(),
    max_tokens: None,
  }) {
    cli::SkillsAction::List {
      domains,
      languages,
      max_tokens,
    } => {
      let selected = registry.select(&domains, &languages, max_tokens);
      if format == Format::Json {
        writeln!(
          out,
          "{}",
          serde_json::to_string_pretty(&selected).unwrap_or_default()
        )?;
        return Ok(Done::Ok);
      }
      let width = selected
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
      writeln!(
        out,
        "{:width$}  {:>6}  {:<24}  DESCRIPTION",
        "NAME", "TOKENS", "DOMAINS"
      )?;
      for skill in &selected {
        writeln!(
          out,
          "{:width$}  {:>6}  {:<24}  {}",
          skill.name,
          skill.meta.tokens,
          skill.meta.domains.join(","),
          match &skill.broken {
            Some(why) => format!("broken: {}", why.lines().next().unwrap_or_default()),
            None => skill.meta.description.clone().unwrap_or_default(),
          }
        )?;
      }
      let tokens: u64 = selected.iter().map(|s| s.meta.tokens).sum();
      writeln!(out, "\n{} skills, {tokens} tokens", selected.len())?;
    }
    cli::SkillsAction::Show { name } => {
      let Some(skill) = registry.get(&name) else {
        let hint = registry
          .suggest(&name)
          .map_or_else(String::new, |s| format!(", did you mean `{s}`?"));
        return Err(Error::Usage(format!("unknown skill `{name}`{hint}")));
      };
      if format == Format::Json {
        writeln!(
          out,
          "{}",
          serde_json::to_string_pretty(skill).unwrap_or_default()
        )?;
        return Ok(Done::Ok);
      }
      let meta = &skill.meta;
      writeln!(out, "{}", skill.name)?;
      writeln!(out, "  source       {}", skill.source)?;
      if let Some(why) = &skill.broken {
        writeln!(out, "  broken       {why}")?;
      }
      if let Some(d) = &meta.description {
        writeln!(out, "  description  {d}")?;
      }
      let list = |v: &[String]| {
        if v.is_empty() {
          "-".to_string()
        } else {
          v.join(", ")
        }
      };
      writeln!(out, "  domains      {}", list(&meta.domains))?;
      writeln!(out, "  languages    {}", list(&meta.languages))?;
      writeln!(out, "  tokens       {}", meta.tokens)?;
      if let Some(risk) = meta.risk {
        writeln!(
          out,
          "  risk         {}",
          serde_json::to_value(risk)
            .unwrap_or_default()
            .as_str()
            .unwrap_or("")
        )?;
      }
      if !meta.permissions.is_empty() {
        let names: Vec<String> = meta
          .permissions
          .iter()
          .map(|p| {
            serde_json::to_value(p)
              .unwrap_or_default()
              .as_str()
              .unwrap_or("")
              .to_string()
          })
          .collect();
        writeln!(out, "  permissions  {}", names.join(", "))?;
      }
      for (title, fields) in [("inputs", &meta.inputs), ("outputs", &meta.outputs)] {
        if !fields.is_empty() {
          let text: Vec<String> = fields.iter().map(|(k, t)| format!("{k}: {t}")).collect();
          writeln!(out, "  {title:<12} {}", text.join(", "))?;
        }
      }
      if skill.source != "builtin"
        && let Ok(code) = std::fs::read_to_string(&skill.source)
      {
        writeln!(out, "\n{code}")?;
      }
    }
  }
  Ok(Done::Ok)
}

/// Loads every Lua skill: one that does not load is marked broken with Lua's reason, the others
/// fill in what `skill.yaml` left out (description, inputs, outputs) from the table they return.
pub(crate) fn describe_from_lua(registry: &mut crate::skills::Registry) {
  let lua_skills: Vec<usize> = registry
    .skills
    .iter()
    .enumerate()
    .filter(|(_, s)| s.source != "builtin")
    .map(|(i, _)| i)
    .collect();
  if lua_skills.is_empty() {
    return;
  }
  let started = lua::LuaHost::start(lua::HostConfig {
    states: 1,
    ..lua::HostConfig::default()
  });
  let runtime = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build();
  let (Ok(host), Ok(runtime)) = (started, runtime) else {
    return;
  };
  for i in lua_skills {
    let path = std::path::PathBuf::from(&registry.skills[i].source);
    let info = match runtime.block_on(host.skill_info(&path)) {
      Ok(info) => info,
      Err(error) => {
        registry.skills[i].broken = Some(error.to_string());
        continue;
      }
    };
    let meta = &mut registry.skills[i].meta;
    if meta.description.is_none() {
      meta.description = info.description;
    }
    if meta.inputs.is_empty() {
      meta.inputs = info.inputs;
    }
    if meta.outputs.is_empty() {
      meta.outputs = info.outputs;
    }
  }
}
