//! `swdl run`: loads a workflow, wires events to the chosen outputs, runs it on tokio, and turns
//! the outcome into an exit code.
use super::*;
use crate::{
  cli::{OutputArg, ProgressArg, ResumeArgs, RunArgs},
  commands::Error,
  event::{EventRecord, EventSink},
  mask::Masker,
  runtime::{Control, RunOptions},
  workflow::{GateDecision, Workflow},
};
use indexmap::IndexMap;
use std::{
  io::{BufWriter, IsTerminal, Write},
  path::{Path, PathBuf},
  sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
  },
};
use tokio::sync::mpsc;

/// Runs `swdl run` and returns the exit code.
pub(crate) fn run(args: &RunArgs) -> Result<i32, Error> {
  if args.events.as_deref() == Some("-") && args.output.is_some() {
    return Err(both_on_stdout());
  }
  let workflow = Arc::new(loader::load_file(&args.file)?);
  let mut given = Vec::new();
  if let Some(path) = &args.params_file {
    given.extend(params_from_file(&workflow, path)?);
  }
  given.extend(args.params.iter().cloned());
  let params = params::resolve(&workflow, &given).map_err(Error::Diagnostics)?;
  let masker = masker(&workflow, &params)?;
  let mut run_id = store::new_run_id();
  let max_parallel = args
    .max_parallel
    .map_or(workflow.config.max_parallel, |n| n as usize);
  // Check the hooks before anything is recorded: a run that cannot start leaves no trace.
  let lua = start_lua(&workflow, &args.file, &args.lua)?;
  let store = match store::resolve_dir(args.store.as_deref()) {
    None => None,
    Some(dir) => {
      let mut store = store::Store::open(&dir)?;
      // The absolute path, so `swdl resume` finds skills and hooks from any directory.
      let file = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
      let options = serde_json::json!({
        "max_parallel": max_parallel,
        "approve": args.approve,
        "reject": args.reject,
        "approve_all": args.approve_all,
        "lua": args.lua.iter().map(|p| absolute(p)).collect::<Vec<_>>(),
      });
      run_id = store.create_run(&store::NewRun {
        id: &run_id,
        workflow: &workflow.name,
        file: &file.display().to_string(),
        // The file as it was read, so it parses again on resume: the store is private to its
        // owner like the file itself (docs/runs.md, "Secrets and audit").
        source: workflow.source.text(),
        params: &{
          let mut stored = serde_json::Value::Object(params.clone().into_iter().collect());
          masker.mask_params(&mut stored);
          stored
        },
        options: &options,
      })?;
      Some((store, dir, 1))
    }
  };
  execute(Execution {
    workflow,
    lua,
    options: RunOptions {
      run_id,
      max_parallel,
      params,
      approve: args.approve.iter().cloned().collect(),
      reject: args.reject.iter().cloned().collect(),
      approve_all: args.approve_all,
      interactive: false,
      masker,
      hooks: None,
      resume: None,
      start_paused: false,
    },
    events: args.events.clone(),
    progress: args.progress,
    output: args.output,
    store,
  })
}

/// Runs `swdl resume`: continues a suspended or crashed run in this process, or asks the
/// process executing a paused run to go on.
pub(crate) fn resume(args: &ResumeArgs) -> Result<i32, Error> {
  if args.events.as_deref() == Some("-") && args.output.is_some() {
    return Err(both_on_stdout());
  }
  let dir = store::resolve_dir(args.store.as_deref()).ok_or_else(no_store)?;
  let mut store = store::Store::open(&dir)?;
  let row = store.run(&args.run_id)?;
  if row.is_live() {
    if row.status != "paused" {
      return Err(Error::Store(store::StoreError::Refused(format!(
        "run `{}` is running in process {}; nothing to resume",
        row.id,
        row.pid.unwrap_or_default()
      ))));
    }
    store.request(&row.id, &store::Request::Resume)?;
    let _ = writeln!(
      std::io::stderr(),
      "asked run {} (process {}) to resume",
      row.id,
      row.pid.unwrap_or_default()
    );
    return Ok(exit::OK);
  }
  if matches!(row.effective_status(), "completed" | "failed" | "cancelled") {
    return Err(Error::Store(store::StoreError::Refused(format!(
      "run `{}` already finished ({}); a finished run cannot be resumed",
      row.id, row.status
    ))));
  }
  let file = PathBuf::from(&row.file);
  let workflow = Arc::new(loader::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?);
  // The store keeps secrets masked: their values must be given again.
  let mut params: IndexMap<String, serde_json::Value> = match &row.params {
    serde_json::Value::Object(map) => map.clone().into_iter().collect(),
    _ => IndexMap::new(),
  };
  let given = params::resolve_given(&workflow, &args.params).map_err(Error::Diagnostics)?;
  params.extend(given);
  let missing: Vec<&str> = workflow
    .parameters
    .values()
    .filter(|p| p.secret && params.get(&p.name).is_some_and(|v| *v == mask::MASK))
    .map(|p| p.name.as_str())
    .collect();
  if !missing.is_empty() {
    return Err(Error::Usage(format!(
      "run `{}` has secret parameters the store does not keep: give them again with {}",
      row.id,
      missing
        .iter()
        .map(|name| format!("--param {name}=..."))
        .collect::<Vec<_>>()
        .join(" ")
    )));
  }
  let masker = masker(&workflow, &params)?;
  let options = &row.options;
  let strings = |key: &str| -> Vec<String> {
    options[key]
      .as_array()
      .map(|items| {
        items
          .iter()
          .filter_map(|v| v.as_str().map(str::to_string))
          .collect()
      })
      .unwrap_or_default()
  };
  let lua_files: Vec<PathBuf> = strings("lua").into_iter().map(PathBuf::from).collect();
  let lua = start_lua(&workflow, &file, &lua_files)?;
  let (row, attempt) = store.claim(&args.run_id)?;
  let events = store.events(&row.id)?;
  let resume = runtime::Resume {
    events,
    decisions: store.pending_decisions(&row.id)?,
    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
  };
  let seq = store.next_seq(&row.id)?;
  execute(Execution {
    workflow,
    lua,
    options: RunOptions {
      run_id: row.id.clone(),
      max_parallel: options["max_parallel"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .max(1),
      params,
      approve: strings("approve")
        .into_iter()
        .chain(args.approve.iter().cloned())
        .collect(),
      reject: strings("reject")
        .into_iter()
        .chain(args.reject.iter().cloned())
        .collect(),
      approve_all: args.approve_all || options["approve_all"].as_bool().unwrap_or(false),
      interactive: false,
      masker,
      hooks: None,
      resume: Some(resume),
      start_paused: false,
    },
    events: args.events.clone(),
    progress: args.progress,
    output: args.output,
    store: Some((store, dir, seq)),
  })
}

fn both_on_stdout() -> Error {
  Error::Usage(
    "`--events -` and `--output json` both write to stdout: send the events to a file".into(),
  )
}

fn no_store() -> Error {
  Error::Usage("`--store none` keeps no runs: there is nothing to resume".into())
}

fn absolute(path: &Path) -> String {
  std::fs::canonicalize(path)
    .unwrap_or_else(|_| path.to_path_buf())
    .display()
    .to_string()
}

/// A run ready to execute, new or resumed.
struct Execution {
  workflow: Arc<Workflow>,
  lua: Option<Lua>,
  /// Everything but `interactive` and `hooks`, which are decided here.
  options: RunOptions,
  events: Option<String>,
  progress: ProgressArg,
  output: Option<OutputArg>,
  /// The store, its directory, and the number of the next event.
  store: Option<(store::Store, PathBuf, i64)>,
}

/// Wires the sinks, runs the workflow on tokio and turns the outcome into an exit code.
fn execute(run: Execution) -> Result<i32, Error> {
  let Execution {
    workflow,
    lua,
    mut options,
    events,
    progress,
    output,
    store,
  } = run;
  let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
  let store_error = Arc::new(Mutex::new(None));
  let mut store_dir = None;
  if let Some((store, dir, seq)) = store {
    // First, so an event is committed before anything else sees it.
    sinks.push(Box::new(store::StoreSink::new(
      store,
      seq,
      Arc::clone(&store_error),
    )));
    // Scripts a crashed process left running must not run beside their re-run attempts.
    let groups = dir.join("groups").join(&options.run_id);
    let killed = process::kill_recorded_groups(&groups);
    if killed > 0 {
      let _ = writeln!(
        std::io::stderr(),
        "killed {killed} process group(s) the run's previous process left running"
      );
    }
    process::record_groups_in(Some(groups));
    store_dir = Some(dir);
  }
  match events.as_deref() {
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
  let mode = match progress {
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
  if interactive && !options.approve_all {
    let decided: std::collections::HashSet<String> = options
      .approve
      .iter()
      .chain(&options.reject)
      .cloned()
      .collect();
    sinks.push(Box::new(GatePrompter::new(
      control_tx.clone(),
      decided,
      Arc::clone(&progress),
    )));
  }
  options.interactive = interactive;
  options.hooks = lua
    .as_ref()
    .map(|(host, _)| Arc::new(host.clone()) as Arc<dyn hooks::Hooks>);
  let run_id = options.run_id.clone();
  let spent = options
    .resume
    .as_ref()
    .map_or(0, |resume| llm::tokens_in(&resume.events));
  let budget = llm::open_budget(&run_id, workflow.config.budget_tokens, spent);
  let poller = store_dir
    .as_ref()
    .map(|dir| RequestPoller::start(dir.clone(), run_id.clone(), control_tx.clone()));
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .enable_all()
    .build()
    .map_err(|e| Error::Io {
      path: "tokio runtime".into(),
      message: e.to_string(),
    })?;
  let outcome = runtime.block_on(async {
    tokio::spawn(watch_interrupts(control_tx.clone()));
    runtime::execute(
      Arc::clone(&workflow),
      options,
      executor(lua.as_ref()),
      sinks,
      control_rx,
    )
    .await
  });
  drop(poller);
  llm::close_budget(&run_id);
  // Attempts still running (cancelled ones) must not outlive the command.
  runtime.shutdown_timeout(std::time::Duration::from_millis(100));
  // A guard still armed now belongs to an attempt whose cancellation had not reached it (a
  // Lua call ends on its own thread): nothing of the run may outlive the command.
  process::kill_all_process_groups();
  // Every script group this process started is gone now: nothing is left to kill later.
  if let Some(dir) = &store_dir {
    process::record_groups_in(None);
    let _ = std::fs::remove_file(dir.join("groups").join(&run_id));
  }
  // The prompt thread may still hold the display while it waits for an answer nobody gives.
  if let Ok(progress) = Arc::try_unwrap(progress) {
    progress.finish();
  }
  let mut stderr = std::io::stderr();
  if budget.used() > 0 {
    let of = budget
      .limit
      .map_or_else(String::new, |limit| format!(" of a budget of {limit}"));
    let _ = writeln!(
      stderr,
      "model tokens used by this run: {}{of}",
      budget.used()
    );
  }
  if !outcome.waiting.is_empty() {
    let gates = outcome.waiting.join(", ");
    let _ = if store_dir.is_some() {
      let store_flag = store_flag(store_dir.as_deref());
      let commands: Vec<String> = outcome
        .waiting
        .iter()
        .map(|s| format!("`swdl approve{store_flag} {run_id} {s}`"))
        .collect();
      writeln!(
        stderr,
        "run {run_id} is suspended at {gates}: approve with {} (or `swdl reject ...`), then \
         continue it with `swdl resume{store_flag} {run_id}`",
        commands.join(", ")
      )
    } else {
      let flags: Vec<String> = outcome
        .waiting
        .iter()
        .map(|s| format!("--approve {s}"))
        .collect();
      writeln!(
        stderr,
        "run {run_id} is suspended at {gates}: decide it up front with `{}` (or `--reject`) and \
         run again",
        flags.join(" ")
      )
    };
  }
  let write_error = store_error
    .lock()
    .unwrap_or_else(std::sync::PoisonError::into_inner)
    .take();
  if output == Some(OutputArg::Json) {
    let mut text = serde_json::to_string_pretty(&outcome.state).unwrap_or_default();
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
  }
  if let Some(error) = write_error {
    let _ = writeln!(
      stderr,
      "error: the run store could not record this run: {error}; `swdl resume` may repeat work"
    );
    return Ok(exit::FAILED.max(outcome.exit_code()));
  }
  Ok(outcome.exit_code())
}

/// What runs a workflow's stages: the Lua host's executor (built-ins included) when the
/// workflow needs Lua, else the built-ins alone. Making one looks at the skill files afresh.
pub(crate) fn executor(lua: Option<&Lua>) -> Arc<dyn executor::StageExecutor> {
  match lua {
    Some((host, skills)) => Arc::new(lua::Executor::new(host.clone(), skills.clone())),
    None => Arc::new(builtin::Builtins),
  }
}

/// ` --store DIR` when the store is not the default one, for commands suggested to the user.
fn store_flag(dir: Option<&Path>) -> String {
  match dir {
    Some(dir) if dir != Path::new(".swdl") && std::env::var_os("SWDL_STORE").is_none() => {
      format!(" --store {}", dir.display())
    }
    _ => String::new(),
  }
}

/// Hands requests other processes leave in the store for this run (`swdl cancel`, `pause`,
/// `resume`, `approve`, `reject`) to the run's control channel. It polls from its own thread
/// with its own connection, so a busy store never holds up the runtime; it stops when dropped.
struct RequestPoller {
  stop: Arc<std::sync::atomic::AtomicBool>,
}

/// How often a live run looks for requests.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl RequestPoller {
  fn start(dir: PathBuf, run_id: String, control: mpsc::UnboundedSender<Control>) -> Self {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
      let Ok(mut store) = store::Store::open(&dir) else {
        return;
      };
      while !stopped.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_EVERY);
        let Ok(requests) = store.take_requests(&run_id) else {
          continue;
        };
        for request in requests {
          let message = match request {
            store::Request::Cancel => Control::Cancel,
            store::Request::Pause => Control::Pause,
            store::Request::Resume => Control::Resume,
            store::Request::Decide { stage, decision } => Control::Decide {
              stage,
              decision: decision.decision,
              by: decision.by,
              reason: decision.reason,
              inputs: decision.inputs,
            },
          };
          if control.send(message).is_err() {
            return;
          }
        }
      }
    });
    Self { stop }
  }
}

impl Drop for RequestPoller {
  fn drop(&mut self) {
    self.stop.store(true, Ordering::Relaxed);
  }
}

/// Lua skills by name, and the host that runs them and the hooks.
pub(crate) type Lua = (
  lua::LuaHost,
  std::collections::HashMap<String, std::path::PathBuf>,
);

/// Starts the Lua host when the workflow needs one (Lua skills, hooks, recovery strategies or
/// approval policies), and checks every policy and strategy name against what the hooks
/// registered, with positions, before anything runs.
pub(crate) fn start_lua(
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
      if param.secret {
        // Point at the key of a file whose text, from the key on, has the value masked.
        let text = source.text();
        let at = key.span.offset.min(text.len());
        let masked = format!("{}{}", &text[..at], text[at..].replace(&raw, mask::MASK));
        let shown = Source::new(source.name(), masked);
        return Err(Error::Diagnostics(Diagnostics(vec![Diagnostic::new(
          &shown,
          key.span,
          ErrorKind::ParamConversion {
            name: param.name.clone(),
            expected: param.ty,
            value: mask::MASK.to_string(),
          },
        )])));
      }
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

/// The run's masker; a secret too short to mask is a usage error.
pub(crate) fn masker(
  workflow: &Workflow,
  params: &IndexMap<String, serde_json::Value>,
) -> Result<Masker, Error> {
  Masker::for_run(workflow, params).map_err(|e| Error::Usage(e.to_string()))
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
      process::kill_all_process_groups();
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
        let by = std::env::var("USER")
          .ok()
          .filter(|u| !u.is_empty())
          .unwrap_or_else(|| "unknown".into());
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
