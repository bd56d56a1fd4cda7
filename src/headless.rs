//! `swdl run`: loads a workflow, wires events to the chosen outputs, runs it on tokio, and turns
//! the outcome into an exit code.
use super::*;
use crate::{
  cli::{OutputArg, ProgressArg, RunArgs},
  commands::Error,
  event::{EventRecord, EventSink},
  mask::Masker,
  runtime::{Control, RunOptions},
  workflow::{GateDecision, Workflow},
};
use indexmap::IndexMap;
use std::{
  io::{BufWriter, IsTerminal, Write},
  path::Path,
  sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
  },
};
use tokio::sync::mpsc;

/// Runs `swdl run` and returns the exit code.
pub(crate) fn run(args: &RunArgs) -> Result<i32, Error> {
  if args.events.as_deref() == Some("-") && args.output.is_some() {
    return Err(Error::Usage(
      "`--events -` and `--output json` both write to stdout: send the events to a file".into(),
    ));
  }
  let workflow = Arc::new(loader::load_file(&args.file)?);
  let lua = start_lua(&workflow, &args.file, &args.lua)?;
  let mut given = Vec::new();
  if let Some(path) = &args.params_file {
    given.extend(params_from_file(&workflow, path)?);
  }
  given.extend(args.params.iter().cloned());
  let params = params::resolve(&workflow, &given).map_err(Error::Diagnostics)?;
  let masker = masker(&workflow, &params);
  let run_id = new_run_id();

  let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
  match args.events.as_deref() {
    None => {}
    Some("-") => sinks.push(Box::new(JsonLines::new(Box::new(std::io::stdout())))),
    Some(path) => {
      let file = std::fs::File::create(path).map_err(|e| Error::Io {
        path: path.to_string(),
        message: e.to_string(),
      })?;
      sinks.push(Box::new(JsonLines::new(Box::new(file))));
    }
  }
  let stderr_tty = std::io::stderr().is_terminal();
  let mode = match args.progress {
    ProgressArg::None => progress::ProgressMode::None,
    ProgressArg::Plain => progress::ProgressMode::Plain,
    ProgressArg::Auto if stderr_tty => progress::ProgressMode::Live,
    ProgressArg::Auto => progress::ProgressMode::Plain,
  };
  let color = stderr_tty && std::env::var_os("NO_COLOR").is_none();
  let (progress_sink, progress) = progress::start(
    mode,
    &workflow.name,
    workflow.stages.len(),
    color,
    Box::new(std::io::stderr()),
  );
  // Attempt numbers count fallbacks, so the limit shown is retries plus fallbacks.
  let limits = workflow.stages.iter().map(|s| {
    let fallbacks = u32::try_from(s.fallback.len()).unwrap_or(u32::MAX);
    (s.id.clone(), s.retry.max_attempts.saturating_add(fallbacks))
  });
  sinks.push(Box::new(progress_sink.with_attempt_limits(limits)));
  let progress = Arc::new(progress);

  let (control_tx, control_rx) = mpsc::unbounded_channel();
  // Gates are asked on the terminal only when someone can answer there.
  let interactive = std::io::stdin().is_terminal() && stderr_tty;
  if interactive {
    let decided: std::collections::HashSet<String> =
      args.approve.iter().chain(&args.reject).cloned().collect();
    if !args.approve_all {
      sinks.push(Box::new(GatePrompter::new(
        control_tx.clone(),
        decided,
        Arc::clone(&progress),
      )));
    }
  }
  let options = RunOptions {
    run_id,
    max_parallel: args
      .max_parallel
      .map_or(workflow.config.max_parallel, |n| n as usize),
    params,
    approve: args.approve.iter().cloned().collect(),
    reject: args.reject.iter().cloned().collect(),
    approve_all: args.approve_all,
    interactive,
    masker,
    hooks: lua
      .as_ref()
      .map(|(host, _)| Arc::new(host.clone()) as Arc<dyn hooks::Hooks>),
  };
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .enable_all()
    .build()
    .map_err(|e| Error::Io {
      path: "tokio runtime".into(),
      message: e.to_string(),
    })?;
  let outcome = runtime.block_on(async {
    tokio::spawn(watch_interrupts(control_tx.clone()));
    let executor: Arc<dyn executor::StageExecutor> = match &lua {
      Some((host, skills)) => Arc::new(lua::Executor::new(host.clone(), skills.clone())),
      None => Arc::new(builtin::Builtins),
    };
    runtime::execute(Arc::clone(&workflow), options, executor, sinks, control_rx).await
  });
  // Attempts still running (cancelled ones) must not outlive the command.
  runtime.shutdown_timeout(std::time::Duration::from_millis(100));
  // The prompt thread may still hold the display while it waits for an answer nobody gives.
  if let Ok(progress) = Arc::try_unwrap(progress) {
    progress.finish();
  }
  if !outcome.waiting.is_empty() {
    let flags: Vec<String> = outcome
      .waiting
      .iter()
      .map(|s| format!("--approve {s}"))
      .collect();
    let _ = writeln!(
      std::io::stderr(),
      "run {} is suspended at {}: decide it up front with `{}` (or `--reject`) and run again",
      outcome.state.run,
      outcome.waiting.join(", "),
      flags.join(" ")
    );
  }
  if args.output == Some(OutputArg::Json) {
    let mut text = serde_json::to_string_pretty(&outcome.state).unwrap_or_default();
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
  }
  Ok(outcome.exit_code())
}

/// Lua skills by name, and the host that runs them and the hooks.
type Lua = (
  lua::LuaHost,
  std::collections::HashMap<String, std::path::PathBuf>,
);

/// Starts the Lua host when the workflow needs one (Lua skills, hooks, recovery strategies or
/// approval policies), and checks every policy and strategy name against what the hooks
/// registered, with positions, before anything runs.
fn start_lua(
  workflow: &Workflow,
  file: &Path,
  extra_hooks: &[std::path::PathBuf],
) -> Result<Option<Lua>, Error> {
  let base = file.parent().unwrap_or_else(|| Path::new(""));
  let index = skills::SkillIndex::discover(base, &workflow.config.skills_path);
  let mut skills: std::collections::HashMap<String, std::path::PathBuf> =
    index.discovered.clone().into_iter().collect();
  let mut uses_lua = false;
  for stage in &workflow.stages {
    let names = stage
      .skill()
      .map(|c| c.uses.as_str())
      .into_iter()
      .chain(stage.fallback.iter().map(String::as_str))
      .chain(stage.compensate.as_ref().map(|c| c.uses.as_str()));
    for name in names {
      if builtin::NAMES.contains(&name) {
        continue;
      }
      uses_lua = true;
      if let Some(path) = index.file(name) {
        skills.insert(name.to_string(), path);
      }
    }
  }
  let hooks: Vec<std::path::PathBuf> = workflow
    .config
    .hooks
    .iter()
    .map(|h| base.join(h))
    .chain(extra_hooks.iter().cloned())
    .collect();
  let policies: Vec<(&str, Span)> = workflow
    .stages
    .iter()
    .filter_map(|s| {
      s.gate()
        .and_then(|g| g.policy.as_deref().map(|p| (p, g.policy_span)))
    })
    .chain(
      workflow
        .config
        .approval
        .as_ref()
        .and_then(|a| a.policy.as_deref().map(|p| (p, a.policy_span))),
    )
    .collect();
  let recoveries: Vec<(&str, Span)> = workflow
    .stages
    .iter()
    .filter_map(|s| s.recover.as_deref().map(|r| (r, s.recover_span)))
    .collect();
  if !uses_lua && hooks.is_empty() && policies.is_empty() && recoveries.is_empty() {
    return Ok(None);
  }
  let host = lua::LuaHost::start(lua::HostConfig {
    hooks,
    ..lua::HostConfig::default()
  })
  .map_err(|e| Error::Usage(e.to_string()))?;
  let mut problems = Diagnostics::default();
  let registered = [
    ("approval policy", &policies, host.policies()),
    ("recovery strategy", &recoveries, host.recoveries()),
  ];
  for (what, wanted, known) in registered {
    for (name, span) in wanted.iter() {
      if !known.iter().any(|k| k == name) {
        problems.push(Diagnostic::new(
          &workflow.source,
          *span,
          ErrorKind::UnknownHook {
            what,
            name: (*name).to_string(),
            suggestion: suggest::suggest(name, known.iter().map(String::as_str))
              .map(str::to_string),
            registered: known.clone(),
          },
        ));
      }
    }
  }
  if problems.is_empty() {
    Ok(Some((host, skills)))
  } else {
    Err(Error::Diagnostics(problems))
  }
}

/// Reads `--params FILE` (YAML or JSON) into `name=value` arguments checked like `--param`.
fn params_from_file(workflow: &Workflow, path: &Path) -> Result<Vec<String>, Error> {
  let source = commands::read_source(path)?;
  let fail = |span: Span, kind: ErrorKind| {
    Error::Diagnostics(Diagnostics(vec![Diagnostic::new(&source, span, kind)]))
  };
  let root =
    yaml::parse(&source).map_err(|e| fail(Span::new(e.offset, 0), ErrorKind::Yaml(e.message)))?;
  let yaml::NodeValue::Map(entries) = &root.value else {
    return Err(fail(
      root.span,
      ErrorKind::WrongType {
        field: "--params".into(),
        expected: "a mapping of parameter names to values",
        found: root.kind_name(),
      },
    ));
  };
  let mut out = Vec::new();
  for (key, value) in entries {
    let key_text = key.key_text();
    let declared = workflow
      .parameters
      .values()
      .find(|p| p.name.eq_ignore_ascii_case(&key_text));
    let Some(param) = declared else {
      return Err(fail(
        key.span,
        ErrorKind::UnknownParamArg {
          suggestion: suggest::suggest(&key_text, workflow.parameters.keys().map(String::as_str))
            .map(str::to_string),
          name: key_text,
        },
      ));
    };
    // Typed YAML values are passed on in their JSON form, strings as they are.
    let raw = match value.to_json() {
      serde_json::Value::String(s) => s,
      other => other.to_string(),
    };
    if params::convert(param.ty, &raw).is_none() {
      return Err(fail(
        value.span,
        ErrorKind::ParamConversion {
          name: param.name.clone(),
          expected: param.ty,
          value: raw,
        },
      ));
    }
    out.push(format!("{}={raw}", param.name));
  }
  Ok(out)
}

/// Secret parameter values and the values of env variables listed in `config.secrets`.
fn masker(workflow: &Workflow, params: &IndexMap<String, serde_json::Value>) -> Masker {
  let from_params = workflow
    .parameters
    .values()
    .filter(|p| p.secret)
    .filter_map(|p| params.get(&p.name))
    .map(|v| match v {
      serde_json::Value::String(s) => s.clone(),
      other => other.to_string(),
    });
  let from_env = workflow
    .config
    .secrets
    .iter()
    .filter_map(|name| std::env::var(name).ok());
  Masker::new(from_params.chain(from_env).collect::<Vec<_>>())
}

/// A run id that sorts by start time: `20261122-140307-3fa9`.
fn new_run_id() -> String {
  let ts = event::now_rfc3339();
  let digits: String = ts.chars().filter(char::is_ascii_digit).collect();
  let nanos = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.subsec_nanos());
  let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
  format!("{}-{}-{salt:04x}", &digits[..8], &digits[8..14])
}

/// First Ctrl-C cancels gracefully; the second ends the process at once.
async fn watch_interrupts(control: mpsc::UnboundedSender<Control>) {
  static PRESSES: AtomicUsize = AtomicUsize::new(0);
  loop {
    if tokio::signal::ctrl_c().await.is_err() {
      return;
    }
    if PRESSES.fetch_add(1, Ordering::SeqCst) == 0 {
      let _ = writeln!(
        std::io::stderr(),
        "\ncancelling: waiting for running stages to stop (Ctrl-C again to exit at once)"
      );
      let _ = control.send(Control::Cancel);
    } else {
      builtin::kill_all_process_groups();
      std::process::exit(exit::CANCELLED);
    }
  }
}

/// Writes each event as one JSON line.
struct JsonLines {
  out: BufWriter<Box<dyn Write + Send>>,
}

impl JsonLines {
  fn new(out: Box<dyn Write + Send>) -> Self {
    Self {
      out: BufWriter::new(out),
    }
  }
}

impl EventSink for JsonLines {
  fn emit(&mut self, record: &EventRecord) {
    if serde_json::to_writer(&mut self.out, record).is_ok() {
      let _ = self.out.write_all(b"\n");
    }
  }

  fn flush(&mut self) {
    let _ = self.out.flush();
  }
}

/// Asks on the terminal when a gate waits, one question at a time.
struct GatePrompter {
  questions: std::sync::mpsc::Sender<(String, Option<String>)>,
  /// Gates decided by flags, which must not be asked about.
  decided: std::collections::HashSet<String>,
}

impl GatePrompter {
  fn new(
    control: mpsc::UnboundedSender<Control>,
    decided: std::collections::HashSet<String>,
    progress: Arc<progress::ProgressHandle>,
  ) -> Self {
    let (questions, asked) = std::sync::mpsc::channel::<(String, Option<String>)>();
    // Reading the terminal blocks, so it happens on its own thread, never on a tokio worker.
    std::thread::spawn(move || {
      static LOCK: Mutex<()> = Mutex::new(());
      for (stage, message) in asked {
        let _guard = LOCK.lock();
        // The live display is hidden while the question waits for an answer.
        let _hidden = progress.suspend();
        let mut stderr = std::io::stderr();
        let _ = write!(
          stderr,
          "\n{} Approve `{stage}`? [y/N] ",
          message.unwrap_or_else(|| format!("Gate `{stage}` is waiting."))
        );
        let _ = stderr.flush();
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
          return;
        }
        let answer = line.trim().to_ascii_lowercase();
        let decision = if answer == "y" || answer == "yes" {
          GateDecision::Approve
        } else {
          GateDecision::Reject
        };
        let by = std::env::var("USER").unwrap_or_else(|_| "prompt".into());
        let _ = control.send(Control::Decide {
          stage,
          decision,
          by,
          reason: Some("answered at the prompt".into()),
          inputs: None,
        });
      }
    });
    Self { questions, decided }
  }
}

impl EventSink for GatePrompter {
  fn emit(&mut self, record: &EventRecord) {
    if let event::Event::GateWaiting { stage, message, .. } = &record.event
      && !self.decided.contains(stage)
    {
      let _ = self.questions.send((stage.clone(), message.clone()));
    }
  }
}
