//! Runs a parsed command line; the one place that prints errors and picks exit codes.
use super::*;
use crate::{
  cli::{Cli, Command, Format, PlanFormat},
  loader::LoadError,
};
use clap::Parser as _;
use indexmap::IndexMap;
use std::{
  ffi::OsString,
  io::{IsTerminal, Write},
  path::Path,
};

/// Failures of a command, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
  /// Errors with positions in a file or argument.
  #[error("{0}")]
  Diagnostics(Diagnostics),
  /// A file that could not be read.
  #[error("{path}: {message}")]
  Io {
    /// The path.
    path: String,
    /// The reason.
    message: String,
  },
  /// Options that cannot be used together.
  #[error("{0}")]
  Usage(String),
  /// Writing output failed (a closed pipe, usually).
  #[error("cannot write output: {0}")]
  Output(#[from] std::io::Error),
  /// The run store refused or failed.
  #[error("{0}")]
  Store(#[from] store::StoreError),
  /// The command ran but could not do its job (`decompose` found no valid workflow).
  #[error("{0}")]
  Failed(String),
}

impl From<LoadError> for Error {
  fn from(error: LoadError) -> Self {
    match error {
      LoadError::Io { path, error } => Self::Io {
        path,
        message: error.to_string(),
      },
      LoadError::Invalid(d) => Self::Diagnostics(d),
    }
  }
}

impl Error {
  fn exit_code(&self) -> i32 {
    match self {
      Self::Diagnostics(_) | Self::Io { .. } | Self::Usage(_) | Self::Store(_) => exit::INVALID,
      Self::Output(_) | Self::Failed(_) => exit::FAILED,
    }
  }
}

/// Whether to colour text written to stderr.
fn stderr_color() -> bool {
  std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether to colour text written to stdout.
fn stdout_color() -> bool {
  std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Parses `args` (program name first), runs the command and returns the process exit code.
pub fn run<I, T>(args: I) -> i32
where
  I: IntoIterator<Item = T>,
  T: Into<OsString> + Clone,
{
  let cli = match Cli::try_parse_from(args) {
    Ok(cli) => cli,
    Err(error) => {
      let _ = error.print();
      return error.exit_code();
    }
  };
  let result = match cli.command {
    Command::Validate { files, format } => validate(&files, format),
    Command::Plan {
      file,
      params,
      format,
    } => plan(&file, &params, format),
    Command::Run(args) => headless::run(&args),
    Command::Resume(args) => headless::resume(&args),
    Command::Runs {
      run_id,
      status,
      format,
      store,
    } => runs::list_or_show(
      run_id.as_deref(),
      status.as_deref(),
      format,
      store.as_deref(),
    ),
    Command::Approve(args) => runs::decide(&args, workflow::GateDecision::Approve),
    Command::Reject(args) => runs::decide(&args, workflow::GateDecision::Reject),
    Command::Cancel { run_id, store } => runs::cancel(&run_id, store.as_deref()),
    Command::Pause { run_id, store } => runs::pause(&run_id, store.as_deref()),
    Command::Repl { file, params } => repl::run(file.as_deref(), &params),
    Command::Watch { file, run } => watch::run(&file, run),
    Command::Decompose {
      task,
      skills,
      output,
      repairs,
      model,
      url,
    } => decompose::run(&decompose::Args {
      task: &task,
      skills: &skills,
      output: output.as_deref(),
      repairs,
      model: model.as_deref(),
      url: url.as_deref(),
    }),
    Command::Skills {
      action,
      dirs,
      format,
    } => skills_command(action, &dirs, format),
    Command::Eval { expr, context } => eval(&expr, context.as_deref()),
  };
  match result {
    Ok(code) => code,
    Err(error) => {
      let text = match &error {
        Error::Diagnostics(d) => d.render(stderr_color()),
        // Store errors hold paths and commands to copy: those are never cut.
        Error::Store(store) => format!("error: {store}\n"),
        other => format!("error: {}\n", diagnostic::shorten(&other.to_string())),
      };
      let _ = std::io::stderr().write_all(text.as_bytes());
      error.exit_code()
    }
  }
}

fn validate(files: &[std::path::PathBuf], format: Format) -> Result<i32, Error> {
  let mut reports = Vec::new();
  let mut all_valid = true;
  let mut stdout = std::io::stdout().lock();
  let mut stderr = std::io::stderr().lock();
  for file in files {
    let name = file.display().to_string();
    match loader::load_file(file) {
      Ok(workflow) => {
        let plan = plan::plan(&workflow, &params::defaults(&workflow));
        if format == Format::Text {
          writeln!(
            stdout,
            "{name}: valid ({} stages, {} batches)",
            workflow.stages.len(),
            plan.batches.len()
          )?;
        }
        reports.push(serde_json::json!({ "file": name, "valid": true, "errors": [] }));
      }
      Err(error) => {
        all_valid = false;
        let errors: Vec<serde_json::Value> = match &error {
          LoadError::Invalid(d) => d.0.iter().map(Diagnostic::to_json).collect(),
          LoadError::Io { .. } => {
            vec![serde_json::json!({ "file": name, "message": error.to_string() })]
          }
        };
        if format == Format::Text {
          let text = match &error {
            LoadError::Invalid(d) => d.render(stderr_color()),
            LoadError::Io { .. } => format!("error: {error}\n"),
          };
          stderr.write_all(text.as_bytes())?;
        }
        reports.push(serde_json::json!({ "file": name, "valid": false, "errors": errors }));
      }
    }
  }
  if format == Format::Json {
    let doc = serde_json::json!({ "valid": all_valid, "files": reports });
    writeln!(
      stdout,
      "{}",
      serde_json::to_string_pretty(&doc).unwrap_or_default()
    )?;
  }
  Ok(if all_valid { exit::OK } else { exit::INVALID })
}

fn plan(file: &Path, params: &[String], format: PlanFormat) -> Result<i32, Error> {
  let workflow = loader::load_file(file)?;
  let values = params::resolve(&workflow, params).map_err(Error::Diagnostics)?;
  let plan = plan::plan(&workflow, &values);
  let text = match format {
    PlanFormat::Text => plan.to_text(stdout_color()),
    PlanFormat::Json => {
      let mut json = serde_json::to_string_pretty(&plan).unwrap_or_default();
      json.push('\n');
      json
    }
    PlanFormat::Dot => plan.to_dot(),
    PlanFormat::Mermaid => plan.to_mermaid(),
  };
  std::io::stdout().lock().write_all(text.as_bytes())?;
  Ok(exit::OK)
}

fn eval(text: &str, context: Option<&Path>) -> Result<i32, Error> {
  let mut names: IndexMap<String, expr::Value> = IndexMap::new();
  if let Some(path) = context {
    names = read_context(path)?;
  }
  let source = Source::new("<expr>", text);
  let fail = |span: Span, kind: expr::ExprErrorKind| {
    Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
      &source,
      span,
      ErrorKind::Expr(kind),
    )]))
  };
  // With delimiters the argument is a template (so text around them interpolates).
  let template = if text.contains("$<<") {
    expr::Template::parse(text).map_err(|e| fail(e.span, e.kind))?
  } else {
    let parsed = expr::parse(text).map_err(|e| fail(e.span, e.kind))?;
    expr::Template {
      segments: vec![expr::Segment::Expr {
        expr: parsed,
        offset: 0,
      }],
    }
  };
  let known = |name: &str| {
    expr::NAMESPACES
      .iter()
      .any(|n| n.eq_ignore_ascii_case(name))
      || names.keys().any(|k| k.eq_ignore_ascii_case(name))
  };
  let mut unknown = Diagnostics::default();
  for (e, offset) in template.exprs() {
    for error in e.check_names(&known) {
      unknown.push(Diagnostic::new(
        &source,
        error.span.shifted(offset),
        ErrorKind::Expr(error.kind),
      ));
    }
  }
  if !unknown.is_empty() {
    return Err(Error::Diagnostics(unknown));
  }
  let ctx = expr::MapContext::new(names);
  // Evaluate each part on its own first so an error points into the right `$<< >>`.
  for (e, offset) in template.exprs() {
    if let Err(error) = e.eval(&ctx) {
      return Err(fail(error.span.shifted(offset), error.kind));
    }
  }
  let value = template
    .eval(&ctx)
    .map_err(|error| fail(error.span, error.kind))?;
  writeln!(std::io::stdout().lock(), "{}", value.to_json_text(true))?;
  Ok(exit::OK)
}

fn skills_command(
  action: Option<cli::SkillsAction>,
  dirs: &[std::path::PathBuf],
  format: Format,
) -> Result<i32, Error> {
  let dirs: Vec<String> = if dirs.is_empty() {
    vec!["skills".into()]
  } else {
    dirs.iter().map(|d| d.display().to_string()).collect()
  };
  let index = skills::SkillIndex::discover(Path::new(""), &dirs);
  let mut registry = skills::Registry::load(&index).map_err(Error::Diagnostics)?;
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
        return Ok(exit::OK);
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
          skill.meta.description.as_deref().unwrap_or("")
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
        return Ok(exit::OK);
      }
      let meta = &skill.meta;
      writeln!(out, "{}", skill.name)?;
      writeln!(out, "  source       {}", skill.source)?;
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
  Ok(exit::OK)
}

/// Fills in what `skill.yaml` left out (description, inputs, outputs) from the table each Lua
/// skill returns; a skill that does not load keeps what it had.
pub(crate) fn describe_from_lua(registry: &mut skills::Registry) {
  let missing: Vec<usize> = registry
    .skills
    .iter()
    .enumerate()
    .filter(|(_, s)| {
      s.source != "builtin"
        && (s.meta.description.is_none() || s.meta.inputs.is_empty() || s.meta.outputs.is_empty())
    })
    .map(|(i, _)| i)
    .collect();
  if missing.is_empty() {
    return;
  }
  let Ok(host) = lua::LuaHost::start(lua::HostConfig {
    states: 1,
    ..lua::HostConfig::default()
  }) else {
    return;
  };
  let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
  else {
    return;
  };
  for i in missing {
    let path = std::path::PathBuf::from(&registry.skills[i].source);
    let Ok(info) = runtime.block_on(host.skill_info(&path)) else {
      continue;
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

/// Reads a file given on the command line into a [`Source`] for positioned errors.
pub(crate) fn read_source(path: &Path) -> Result<Arc<Source>, Error> {
  let name = path.display().to_string();
  let text = source::read_text(path).map_err(|e| Error::Io {
    path: name.clone(),
    message: e.to_string(),
  })?;
  Ok(Source::new(name, text))
}

/// Reads a JSON object whose keys become expression namespaces.
fn read_context(path: &Path) -> Result<IndexMap<String, expr::Value>, Error> {
  let source = read_source(path)?;
  match serde_json::from_str::<serde_json::Value>(source.text()) {
    Ok(serde_json::Value::Object(map)) => Ok(
      map
        .into_iter()
        .map(|(k, v)| (k, expr::Value::from(v)))
        .collect(),
    ),
    Ok(other) => Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
      &source,
      Span::new(0, 1),
      ErrorKind::WrongType {
        field: "--context".into(),
        expected: "a JSON object",
        found: workflow::json_kind(&other),
      },
    )]))),
    Err(error) => {
      let offset = line_col_offset(&source, error.line(), error.column());
      Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
        &source,
        Span::new(offset, 1),
        ErrorKind::InvalidJson(error.to_string()),
      )])))
    }
  }
}

/// Byte offset of a 1-based line and column.
fn line_col_offset(source: &Source, line: usize, column: usize) -> usize {
  let start: usize = source
    .text()
    .split_inclusive('\n')
    .take(line.saturating_sub(1))
    .map(str::len)
    .sum();
  (start + column.saturating_sub(1)).min(source.text().len())
}
