//! `swdl run`: loads a workflow, records the run in the store, and runs it headless: events
//! to the chosen outputs, gates to the terminal or the store, the outcome to an exit code.
//! `swdl resume` continues through the same [`execute`].
use super::*;
use crate::{
  cli::{OutputArg, ProgressArg, RunArgs, RunFlags},
  decision::GateDecision,
  event::{EventSink, JsonLines},
  launch::{Launch, Lua, Settings},
  mask::Masker,
  runtime::{Control, Steer},
  workflow::Workflow,
};
use std::{
  io::{IsTerminal, Write},
  path::{Path, PathBuf},
  sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
  },
};
use tokio::sync::mpsc;

/// Runs `swdl run`.
pub(crate) fn run(args: &RunArgs) -> Result<Done, Error> {
  args.flags.check()?;
  let workflow = Arc::new(compose::load_file(&args.file)?);
  let given = args.params.given(&workflow)?;
  let params = params::resolve(&workflow, &given).map_err(Error::Diagnostics)?;
  let masker = launch::masker(&workflow, &params)?;
  let mut run_id = store::new_run_id();
  let max_parallel = args
    .max_parallel
    .map_or(workflow.config.max_parallel, |n| n as usize);
  // Check the hooks before anything is recorded: a run that cannot start leaves no trace.
  let lua = launch::start_lua(&workflow, &args.file, &args.lua)?;
  let flags = &args.flags;
  let store = match store::resolve_dir(flags.store.as_deref()) {
    None => None,
    Some(dir) => {
      let mut store = store::Store::open(&dir)?;
      // The absolute path, so `swdl resume` finds skills and hooks from any directory.
      let file = std::fs::canonicalize(&args.file).unwrap_or_else(|_| args.file.clone());
      let options = serde_json::json!({
        "max_parallel": max_parallel,
        "approve": flags.approve,
        "reject": flags.reject,
        "approve_all": flags.approve_all,
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
      Some(Stored {
        store,
        dir,
        next_seq: 1,
      })
    }
  };
  execute(Headless {
    workflow,
    lua,
    masker,
    settings: Settings {
      run_id,
      max_parallel,
      params,
      approve: flags.approve.iter().cloned().collect(),
      reject: flags.reject.iter().cloned().collect(),
      approve_all: flags.approve_all,
      interactive: false,
      resume: None,
      start_paused: false,
      reuse: None,
    },
    flags,
    store,
  })
}

impl RunFlags {
  /// Refuses flags that cannot go together.
  pub(super) fn check(&self) -> Result<(), Error> {
    if self.events.as_deref() == Some("-") && self.output.is_some() {
      return Err(Error::Usage(
        "`--events -` and `--output json` both write to stdout: send the events to a file".into(),
      ));
    }
    if self.wait && self.store.as_deref() == Some(Path::new("none")) {
      return Err(Error::Usage(
        "`--wait` waits for `swdl approve|reject` from another process, which finds the run in \
         the store: drop `--store none`"
          .into(),
      ));
    }
    Ok(())
  }
}

fn absolute(path: &Path) -> String {
  std::fs::canonicalize(path)
    .unwrap_or_else(|_| path.to_path_buf())
    .display()
    .to_string()
}

/// The run's place in the store.
pub(super) struct Stored {
  /// The open store.
  pub(super) store: store::Store,
  /// Its directory.
  pub(super) dir: PathBuf,
  /// The number of the run's next event.
  pub(super) next_seq: i64,
}

/// A run, new or resumed, ready to execute headless.
pub(super) struct Headless<'a> {
  /// The checked workflow.
  pub(super) workflow: Arc<Workflow>,
  /// Its Lua host, when it needs one.
  pub(super) lua: Option<Lua>,
  /// Hides the run's secrets.
  pub(super) masker: Masker,
  /// Everything but `interactive`, which is decided here.
  pub(super) settings: Settings,
  /// Where events, progress and the record go.
  pub(super) flags: &'a RunFlags,
  /// The store, unless `--store none`.
  pub(super) store: Option<Stored>,
}

/// Wires the sinks, runs the workflow on tokio and turns the outcome into an exit code.
pub(super) fn execute(run: Headless<'_>) -> Result<Done, Error> {
  let Headless {
    workflow,
    lua,
    masker,
    mut settings,
    flags,
    store,
  } = run;
  let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
  let store_error = Arc::new(Mutex::new(None));
  let mut store_dir = None;
  if let Some(Stored {
    store,
    dir,
    next_seq,
  }) = store
  {
    // First, so an event is committed before anything else sees it.
    sinks.push(Box::new(store::StoreSink::new(
      store,
      next_seq,
      Arc::clone(&store_error),
    )));
    // Scripts a crashed process left running must not run beside their re-run attempts.
    let groups = dir.join("groups").join(&settings.run_id);
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
  match flags.events.as_deref() {
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
  let mode = match flags.progress {
    ProgressArg::None => progress::ProgressMode::None,
    ProgressArg::Plain => progress::ProgressMode::Plain,
    ProgressArg::Auto => progress::ProgressMode::auto(),
  };
  let color = color::stderr();
  let (progress_sink, progress) = progress::start(
    mode,
    &workflow.name,
    workflow.stages.len(),
    color,
    Box::new(std::io::stderr()),
  );
  let limits = workflow
    .stages
    .iter()
    .map(|s| (s.id.clone(), event_text::attempt_limit(s)));
  let fanned = workflow
    .stages
    .iter()
    .filter(|s| s.fan_out.is_some())
    .map(|s| s.id.clone());
  sinks.push(Box::new(
    progress_sink
      .with_attempt_limits(limits)
      .with_fanned(fanned),
  ));
  let progress = Arc::new(progress);

  let (control_tx, control_rx) = mpsc::unbounded_channel();
  // Gates are asked on the terminal only when someone can answer there.
  let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
  if interactive && !settings.approve_all {
    let decided: std::collections::HashSet<String> = settings
      .approve
      .iter()
      .chain(&settings.reject)
      .cloned()
      .collect();
    sinks.push(Box::new(prompt::GatePrompter::new(
      control_tx.clone(),
      decided,
      Arc::clone(&progress),
      Arc::clone(&workflow),
    )));
  }
  // `--wait` makes another process the one who decides: this one tells them how.
  if flags.wait
    && !interactive
    && let Some(dir) = &store_dir
  {
    sinks.push(Box::new(GateHint {
      run_id: settings.run_id.clone(),
      store_flag: store_flag(Some(dir)),
      progress: Arc::clone(&progress),
      open: Vec::new(),
    }));
  }
  settings.interactive = interactive || flags.wait;
  let run_id = settings.run_id.clone();
  let launch = Launch::with_masker(Arc::clone(&workflow), lua.as_ref(), settings, masker);
  let budget = launch.budget();
  let poller = store_dir
    .as_ref()
    .map(|dir| launch::RequestPoller::start(dir.clone(), run_id.clone(), control_tx.clone()));
  let runtime = launch::runtime()?;
  let outcome = runtime.block_on(async {
    tokio::spawn(watch_interrupts(control_tx.clone()));
    launch.execute(sinks, control_rx).await
  });
  drop(poller);
  let used = budget.budget().used();
  let limit = budget.budget().limit;
  drop(budget);
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
  // The prompt thread has let go of the display: its prompter joined it when the run ended.
  if let Ok(progress) = Arc::try_unwrap(progress) {
    progress.finish();
  }
  let mut stderr = std::io::stderr();
  // What the runtime found wrong in the file itself is shown like a load error, caret and all.
  for diagnostic in &outcome.diagnostics {
    let _ = stderr.write_all(diagnostic.render(color::stderr()).as_bytes());
  }
  if used > 0 {
    let of = limit.map_or_else(String::new, |limit| format!(" of a budget of {limit}"));
    let _ = writeln!(stderr, "model tokens used by this run: {used}{of}");
  }
  if !outcome.waiting.is_empty() {
    let _ = stderr
      .write_all(suspended_message(&workflow, &outcome, &run_id, store_dir.as_deref()).as_bytes());
  }
  let write_error = store_error
    .lock()
    .unwrap_or_else(std::sync::PoisonError::into_inner)
    .take();
  if flags.output == Some(OutputArg::Json) {
    let mut text = serde_json::to_string_pretty(&outcome.state).unwrap_or_default();
    text.push('\n');
    std::io::stdout().lock().write_all(text.as_bytes())?;
  }
  if let Some(error) = write_error {
    let _ = writeln!(
      stderr,
      "error: the run store could not record this run: {error}; `swdl resume` may repeat work"
    );
    return Ok(Done::run(&outcome, true));
  }
  Ok(Done::run(&outcome, false))
}

/// What to do about a run suspended at its gates: the exact commands that decide each one and
/// continue the run (or, without a store, the flags that decide them up front), and when a
/// gate's timeout decides it instead.
fn suspended_message(
  workflow: &Workflow,
  outcome: &runtime::RunOutcome,
  run_id: &str,
  store_dir: Option<&Path>,
) -> String {
  let gates = outcome.waiting.join(", ");
  let mut text = format!("run {run_id} is suspended at {gates}\n");
  let Some(dir) = store_dir else {
    for stage in &outcome.waiting {
      text.push_str(&format!(
        "  decide {stage} up front: `--approve {stage}` or `--reject {stage}`, and run again\n"
      ));
    }
    return text;
  };
  let store = store_flag(Some(dir));
  for stage in &outcome.waiting {
    text.push_str(&format!(
      "  decide {stage}: `swdl approve{store} {run_id} {stage}` or `swdl reject{store} {run_id} {stage}`\n"
    ));
  }
  text.push_str(&format!(
    "  then continue it: `swdl resume{store} {run_id}`\n"
  ));
  for stage in &outcome.waiting {
    let Some(&at) = outcome.deadlines.get(stage) else {
      continue;
    };
    let on_timeout = workflow
      .stage(stage)
      .and_then(|s| s.gate())
      .map_or(GateDecision::Reject, |g| g.on_timeout);
    text.push_str(&format!(
      "  {stage} times out at {}: a resume after that {} it (its `on_timeout`)\n",
      event::rfc3339_ms(at),
      match on_timeout {
        GateDecision::Approve => "approves",
        GateDecision::Reject => "rejects",
      }
    ));
  }
  text
}

/// Tells whoever watches a `--wait` run how to decide the gates it waits at: once per gate,
/// when the run has nothing else to do but wait (a gate decided in the same batch it opened,
/// by a flag or a policy, is never mentioned).
struct GateHint {
  run_id: String,
  store_flag: String,
  progress: Arc<progress::ProgressHandle>,
  /// Gates opened and not yet decided.
  open: Vec<String>,
}

impl EventSink for GateHint {
  fn emit(&mut self, record: &event::EventRecord) {
    match &record.event {
      event::Event::GateWaiting { stage, .. } if !self.open.contains(stage) => {
        self.open.push(stage.clone());
      }
      event::Event::GateDecided { stage, .. } => self.open.retain(|s| s != stage),
      _ => {}
    }
  }

  fn flush(&mut self) {
    if self.open.is_empty() {
      return;
    }
    let _hidden = self.progress.suspend();
    let mut stderr = std::io::stderr().lock();
    let (run_id, store) = (&self.run_id, &self.store_flag);
    for stage in self.open.drain(..) {
      let _ = writeln!(
        stderr,
        "run {run_id} waits at {stage}: decide it from another terminal with `swdl approve{store} \
         {run_id} {stage}` or `swdl reject{store} {run_id} {stage}` (if this process stops, `swdl \
         resume{store} {run_id}` continues the run)"
      );
    }
  }
}

/// ` --store DIR` when the store is not the default one, for commands suggested to the user.
fn store_flag(dir: Option<&Path>) -> String {
  match dir {
    // Where the next command would look anyway (the nearest `.swdl/`), no flag is needed.
    Some(dir)
      if std::env::var_os("SWDL_STORE").is_none()
        && store::resolve_dir(None).as_deref() != Some(dir) =>
    {
      format!(" --store {}", dir.display())
    }
    _ => String::new(),
  }
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
      let _ = control.send(Control::Steer(Steer::Cancel));
    } else {
      process::kill_all_process_groups();
      std::process::exit(exit::CANCELLED);
    }
  }
}
