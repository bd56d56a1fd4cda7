//! `swdl repl` (docs/repl.md): a stepping debugger for workflows. The REPL holds a live run:
//! the runtime executing on a tokio task, started paused and steered through its control
//! channel, its events folded into a run state the commands read. Commands that rewrite
//! history (`retry`, `skip`, `set`, `reload`) edit the recorded events and continue from them
//! in a fresh engine, exactly as `swdl resume` continues a stored run.
use super::*;
use crate::{
  cli::ParamArgs,
  commands::Error,
  event::{Event, EventRecord, EventSink, StageStatus},
  event_text::{self, Known, Line, Style, one_line},
  launch::{Launch, Lua, Settings},
  runtime::{Control, Resume, Snapshot, Steer},
  state::RunState,
  workflow::Workflow,
};
use std::{
  collections::{BTreeSet, HashMap, HashSet},
  io::{BufRead, IsTerminal, Write},
  path::{Path, PathBuf},
  sync::mpsc as std_mpsc,
  time::Duration,
};
use tokio::sync::mpsc;

mod complete;
mod rewrite;
mod steer;
mod view;

/// Every command, with its arguments and what it does (for `help` and completion).
pub(crate) const COMMANDS: &[(&str, &str, &str)] = &[
  (
    "load",
    "FILE",
    "load a workflow file and start a fresh run of it",
  ),
  (
    "param",
    "NAME=VALUE",
    "set a parameter (applies now if nothing ran yet, else at `restart`)",
  ),
  (
    "validate",
    "",
    "check the file again: schema, expressions, DAG",
  ),
  (
    "plan",
    "",
    "the plan: batches, critical path, gates, estimate",
  ),
  ("graph", "", "the DAG by level, with each stage's status"),
  ("break", "STAGE", "pause before STAGE starts"),
  ("unbreak", "STAGE", "remove a breakpoint"),
  ("step", "", "start the next ready stage and wait for it"),
  ("continue", "", "run until a breakpoint, a gate or the end"),
  ("status", "", "the run and every stage, one line each"),
  (
    "inspect",
    "STAGE",
    "a stage's inputs, outputs, attempts, logs and timings",
  ),
  (
    "eval",
    "EXPR",
    "evaluate an expression against the run so far",
  ),
  (
    "lua",
    "CODE",
    "run Lua in the host the skills use (globals persist)",
  ),
  (
    "approve",
    "STAGE [REASON]",
    "approve a waiting gate or risky stage",
  ),
  (
    "reject",
    "STAGE [REASON]",
    "reject a waiting gate or risky stage",
  ),
  (
    "retry",
    "STAGE",
    "run a finished stage (and what follows it) again",
  ),
  (
    "skip",
    "STAGE",
    "mark a failed or pending stage skipped; what follows may run",
  ),
  (
    "set",
    "STAGE.outputs.KEY = VALUE",
    "change a completed stage's output (what if?)",
  ),
  (
    "reload",
    "",
    "re-read the file and skills; keep finished stages that did not change",
  ),
  ("restart", "", "start the run again from nothing"),
  ("help", "[COMMAND]", "this list, or one command"),
  ("quit", "", "leave (also `exit`, Ctrl-D)"),
];

/// How long `step` and `continue` wait for the run before giving the prompt back.
const WAIT_LIMIT: Duration = Duration::from_hours(1);

/// Runs `swdl repl [FILE]`.
pub(crate) fn run(file: Option<&Path>, params: &ParamArgs) -> Result<commands::Done, Error> {
  // A file named on the command line that does not load ends the command, as with `run`;
  // one given to `load` later is only an error message in the session.
  let params = match file {
    Some(file) => params.given(&compose::load_file(file)?)?,
    None if params.params_file.is_some() => {
      return Err(Error::Usage(
        "`--params FILE` needs the workflow: `swdl repl WORKFLOW --params FILE`".into(),
      ));
    }
    None => params.params.clone(),
  };
  let interactive = std::io::stdin().is_terminal();
  let color = crate::color::stdout();
  let runtime = launch::runtime()?;
  let mut session = Session {
    file: None,
    workflow: None,
    params,
    runtime,
    live: None,
    lua: None,
    breakpoints: BTreeSet::new(),
    passed: BTreeSet::new(),
    color,
    out: Box::new(std::io::stdout()),
    runs: 0,
  };
  if let Some(file) = file
    && let Err(message) = session.load(file)
  {
    session.say(&format!("error: {message}"));
  }
  if interactive {
    interactive_loop(&mut session);
  } else {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
      let Ok(line) = line else { break };
      let line = line.trim();
      if line.is_empty() || line.starts_with('#') {
        continue;
      }
      session.say(&format!("swdl> {line}"));
      if !session.command(line) {
        break;
      }
    }
  }
  session.stop();
  Ok(commands::Done::Ok)
}

fn interactive_loop(session: &mut Session) {
  let config = rustyline::Config::builder()
    .auto_add_history(true)
    .completion_type(rustyline::CompletionType::List)
    .build();
  let mut editor =
    match rustyline::Editor::<complete::Helper, rustyline::history::FileHistory>::with_config(
      config,
    ) {
      Ok(editor) => editor,
      Err(e) => {
        session.say(&format!("error: cannot open the terminal: {e}"));
        return;
      }
    };
  let history = history_file();
  if let Some(path) = &history {
    let _ = editor.load_history(path);
  }
  session.say("swdl repl: `help` lists the commands, Tab completes them, Ctrl-D leaves.");
  loop {
    editor.set_helper(Some(complete::Helper::new(session.completion_names())));
    let prompt = session.prompt();
    match editor.readline(&prompt) {
      Ok(line) => {
        let line = line.trim();
        if line.is_empty() {
          continue;
        }
        if !session.command(line) {
          break;
        }
      }
      Err(rustyline::error::ReadlineError::Interrupted) => {}
      Err(_) => break,
    }
  }
  if let Some(path) = &history {
    if let Some(dir) = path.parent() {
      let _ = std::fs::create_dir_all(dir);
    }
    let _ = editor.save_history(path);
  }
}

/// `$SWDL_HISTORY`, else `$XDG_STATE_HOME/swdl/history`, else `~/.local/state/swdl/history`.
fn history_file() -> Option<PathBuf> {
  if let Some(path) = std::env::var_os("SWDL_HISTORY") {
    return Some(PathBuf::from(path));
  }
  let state = std::env::var_os("XDG_STATE_HOME")
    .map(PathBuf::from)
    .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
  Some(state.join("swdl").join("history"))
}

/// Sends every event to the REPL.
struct ChannelSink(std_mpsc::Sender<EventRecord>);

impl EventSink for ChannelSink {
  fn emit(&mut self, record: &EventRecord) {
    let _ = self.0.send(record.clone());
  }
}

/// The run the REPL steers.
struct Live {
  /// Counts the run's model tokens until the run is dropped.
  _budget: launch::BudgetGuard,
  control: mpsc::UnboundedSender<Control>,
  events: std_mpsc::Receiver<EventRecord>,
  handle: tokio::task::JoinHandle<runtime::RunOutcome>,
  /// Every event of the run, including those carried over from before a rebuild.
  log: Vec<EventRecord>,
  state: RunState,
}

struct Session {
  file: Option<PathBuf>,
  workflow: Option<Arc<Workflow>>,
  params: Vec<String>,
  runtime: tokio::runtime::Runtime,
  live: Option<Live>,
  lua: Option<Lua>,
  breakpoints: BTreeSet<String>,
  /// Breakpoints this run already stopped at: a rebuilt engine does not stop at them again.
  passed: BTreeSet<String>,
  color: bool,
  out: Box<dyn Write>,
  runs: usize,
}

/// A breakpoint the run stopped at, from its event.
fn stopped_at(event: &Event) -> Option<&str> {
  match event {
    Event::RunPaused {
      reason,
      stage: Some(stage),
    } if reason == "breakpoint" => Some(stage),
    _ => None,
  }
}

type Outcome = Result<(), String>;

impl Session {
  fn say(&mut self, text: &str) {
    let _ = writeln!(self.out, "{text}");
    let _ = self.out.flush();
  }

  fn prompt(&self) -> String {
    match &self.live {
      Some(live) => format!("swdl:{}> ", live.state.status.as_str()),
      None => "swdl> ".into(),
    }
  }

  /// Names for completion: stage ids and parameter names of the loaded workflow.
  fn completion_names(&self) -> complete::Names {
    let workflow = self.workflow.as_deref();
    complete::Names {
      stages: workflow
        .map(|w| w.stages.iter().map(|s| s.id.clone()).collect())
        .unwrap_or_default(),
      params: workflow
        .map(|w| w.parameters.keys().cloned().collect())
        .unwrap_or_default(),
      outputs: self
        .live
        .as_ref()
        .map(|live| {
          live
            .state
            .stages
            .iter()
            .map(|(id, s)| {
              let keys = s
                .outputs
                .as_deref()
                .and_then(serde_json::Value::as_object)
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
              (id.clone(), keys)
            })
            .collect()
        })
        .unwrap_or_default(),
    }
  }

  /// Runs one command line; false when the REPL should end.
  fn command(&mut self, line: &str) -> bool {
    let (name, rest) = line
      .split_once(char::is_whitespace)
      .map_or((line, ""), |(n, r)| (n, r.trim()));
    let result = match name {
      "quit" | "exit" | "q" => return false,
      "help" | "?" => {
        self.help(rest);
        Ok(())
      }
      "load" => self.load(Path::new(rest)),
      "param" => self.param(rest),
      "validate" => self.validate(),
      "plan" => self.plan(),
      "graph" => self.graph(),
      "break" | "b" => self.set_break(rest, true),
      "unbreak" => self.set_break(rest, false),
      "step" | "s" => self.step(),
      "continue" | "c" => self.cont(),
      "status" | "st" => self.status(),
      "inspect" | "i" => self.inspect(rest),
      "eval" | "e" => self.eval(rest),
      "lua" => self.lua(rest),
      "approve" => self.decide(rest, GateDecision::Approve),
      "reject" => self.decide(rest, GateDecision::Reject),
      "retry" => self.retry(rest),
      "skip" => self.skip(rest),
      "set" => self.set(rest),
      "reload" => self.reload(),
      "restart" => self.restart(),
      _ => {
        let hint = suggest::hint(name, COMMANDS.iter().map(|c| c.0));
        Err(format!("unknown command `{name}`{hint}; `help` lists them"))
      }
    };
    if let Err(message) = result {
      self.say(&format!("error: {message}"));
    }
    true
  }

  fn help(&mut self, topic: &str) {
    if !topic.is_empty() {
      match COMMANDS.iter().find(|c| c.0 == topic) {
        Some((name, args, what)) => self.say(&format!("{name} {args}\n  {what}")),
        None => self.say(&format!("error: no command `{topic}`; `help` lists them")),
      }
      return;
    }
    let lines: Vec<String> = COMMANDS
      .iter()
      .map(|(name, args, what)| format!("  {:<34} {what}", format!("{name} {args}")))
      .collect();
    self.say(&format!("commands:\n{}", lines.join("\n")));
  }

  fn workflow(&self) -> Result<Arc<Workflow>, String> {
    self
      .workflow
      .clone()
      .ok_or_else(|| "no workflow loaded: `load FILE`".to_string())
  }

  /// Loads `file` and starts a fresh run of it.
  fn load(&mut self, file: &Path) -> Outcome {
    if file.as_os_str().is_empty() {
      return Err("load needs a file: `load FILE`".into());
    }
    let workflow = load_workflow(file, self.color)?;
    self.lua = launch::start_lua(&workflow, file, &[]).map_err(|e| render(&e, self.color))?;
    // Parameters set for another workflow that this one does not declare are dropped.
    self.params.retain(|p| {
      p.split_once('=').is_some_and(|(name, _)| {
        workflow
          .parameters
          .keys()
          .any(|k| k.eq_ignore_ascii_case(name.trim()))
      })
    });
    self.file = Some(file.to_path_buf());
    self.workflow = Some(Arc::new(workflow));
    self.breakpoints.clear();
    self.start(Vec::new())?;
    let workflow = self.workflow()?;
    self.say(&format!(
      "loaded {} ({}); `step`, `continue`, or `help`",
      workflow.name,
      event_text::count(workflow.stages.len(), "stage", "stages")
    ));
    Ok(())
  }

  fn param(&mut self, arg: &str) -> Outcome {
    let workflow = self.workflow()?;
    let Some((name, _)) = arg.split_once('=') else {
      return Err("param needs `NAME=VALUE`".into());
    };
    let name = name.trim();
    params::resolve_given(&workflow, &[arg.to_string()]).map_err(|d| d.render(false))?;
    self.params.retain(|p| {
      p.split_once('=')
        .is_none_or(|(n, _)| !n.trim().eq_ignore_ascii_case(name))
    });
    self.params.push(arg.to_string());
    let untouched = self
      .live
      .as_ref()
      .is_none_or(|live| live.log.iter().all(|r| r.event.stage().is_none()));
    if untouched {
      self.start(Vec::new())?;
      self.say(&format!("{name} set"));
    } else {
      self.say(&format!("{name} set; it applies from the next `restart`"));
    }
    Ok(())
  }

  fn validate(&mut self) -> Outcome {
    let file = self.file.clone().ok_or("no workflow loaded: `load FILE`")?;
    let workflow = load_workflow(&file, self.color)?;
    let batches = plan::plan(&workflow, &params::defaults(&workflow))
      .batches
      .len();
    self.say(&format!(
      "{}: valid ({}, {})",
      file.display(),
      event_text::count(workflow.stages.len(), "stage", "stages"),
      event_text::count(batches, "batch", "batches")
    ));
    Ok(())
  }

  fn plan(&mut self) -> Outcome {
    let workflow = self.workflow()?;
    let values = params::resolve(&workflow, &self.params).map_err(|d| d.render(false))?;
    let text = plan::plan(&workflow, &values).to_text(self.color);
    self.say(text.trim_end());
    Ok(())
  }

  /// Starts a run, paused; `prior` are events to continue from (empty: a fresh run).
  fn start(&mut self, prior: Vec<EventRecord>) -> Outcome {
    self.stop();
    let workflow = self.workflow()?;
    let params = params::resolve(&workflow, &self.params).map_err(|d| d.render(false))?;
    let run_id = match prior.first() {
      Some(record) => record.run.to_string(),
      None => {
        self.runs += 1;
        format!("repl-{}", self.runs)
      }
    };
    let (control, control_rx) = mpsc::unbounded_channel();
    let (sender, events) = std_mpsc::channel();
    let resume = (!prior.is_empty()).then(|| Resume {
      events: prior.clone(),
      decisions: HashMap::new(),
      attempt: 1,
    });
    let launch = Launch::new(
      Arc::clone(&workflow),
      self.lua.as_ref(),
      Settings {
        run_id: run_id.clone(),
        max_parallel: workflow.config.max_parallel,
        params,
        approve: HashSet::new(),
        reject: HashSet::new(),
        approve_all: false,
        interactive: true,
        resume,
        start_paused: true,
        reuse: None,
      },
    )
    .map_err(|e| render(&e, self.color))?;
    if prior.is_empty() {
      self.passed.clear();
    }
    for stage in self.breakpoints.difference(&self.passed) {
      let _ = control.send(Control::Steer(Steer::Break(stage.clone())));
    }
    // The REPL's runs count model tokens against the workflow's budget too.
    let budget = launch.budget();
    let handle = {
      let _guard = self.runtime.enter();
      tokio::spawn(launch.execute(vec![Box::new(ChannelSink(sender))], control_rx))
    };
    let mut state = RunState::new(&workflow, &run_id);
    for record in &prior {
      state.apply(record);
    }
    self.live = Some(Live {
      _budget: budget,
      control,
      events,
      handle,
      log: prior,
      state,
    });
    self.sync(false);
    Ok(())
  }

  /// Ends the live run, if any, without recording anything more.
  fn stop(&mut self) {
    if let Some(live) = self.live.take() {
      live.handle.abort();
      let _ = self.runtime.block_on(live.handle);
    }
  }

  fn live(&mut self) -> Result<&mut Live, String> {
    self
      .live
      .as_mut()
      .ok_or_else(|| "no run: `load FILE` first".to_string())
  }

  /// Takes the events that arrived, printing the notable ones when `show`.
  fn pump(&mut self, show: bool) {
    let (workflow, color) = (self.workflow.clone(), self.color);
    let Some(live) = self.live.as_mut() else {
      return;
    };
    let mut lines = Vec::new();
    while let Ok(record) = live.events.try_recv() {
      if show && let Some(line) = shown(workflow.as_deref(), color, &record.event) {
        lines.push(line);
      }
      if let Some(stage) = stopped_at(&record.event) {
        self.passed.insert(stage.to_string());
      }
      live.state.apply(&record);
      live.log.push(record);
    }
    for line in lines {
      self.say(&line);
    }
  }

  /// Waits until the engine has handled everything sent so far; returns where it stands.
  fn sync(&mut self, show: bool) -> Option<Snapshot> {
    let live = self.live.as_ref()?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let snapshot = if live.control.send(Control::Query(reply)).is_ok() {
      self
        .runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), answer).await })
        .ok()
        .and_then(Result::ok)
    } else {
      None
    };
    self.pump(show);
    snapshot
  }

  fn finished(&self) -> bool {
    self.live.as_ref().is_none_or(|live| {
      live
        .log
        .iter()
        .any(|r| matches!(r.event, Event::RunCompleted { .. }))
    })
  }

  fn ensure_running(&mut self) -> Outcome {
    self.live()?;
    if self.finished() {
      let status = self
        .live
        .as_ref()
        .map_or("over", |l| l.state.status.as_str());
      return Err(format!(
        "the run is over ({status}): `restart`, or `retry STAGE` / `skip STAGE`"
      ));
    }
    Ok(())
  }

  /// Waits (printing events) until `stop` says so, the run ends, nothing is left that could
  /// move without a decision (a gate waits and nothing runs), or the wait limit.
  fn wait(&mut self, mut stop: impl FnMut(&Event) -> bool) {
    let started = std::time::Instant::now();
    let mut quiet = 0;
    let (workflow, color) = (self.workflow.clone(), self.color);
    while started.elapsed() < WAIT_LIMIT {
      let Some(live) = self.live.as_mut() else {
        return;
      };
      match live.events.recv_timeout(Duration::from_millis(50)) {
        Ok(record) => {
          quiet = 0;
          if let Some(line) = shown(workflow.as_deref(), color, &record.event) {
            let _ = writeln!(self.out, "{line}");
          }
          if let Some(stage) = stopped_at(&record.event) {
            self.passed.insert(stage.to_string());
          }
          let done = stop(&record.event) || matches!(record.event, Event::RunCompleted { .. });
          live.state.apply(&record);
          live.log.push(record);
          if done {
            let _ = self.out.flush();
            return;
          }
        }
        Err(std_mpsc::RecvTimeoutError::Timeout) => {
          if live.handle.is_finished() {
            return;
          }
          quiet += 1;
          if quiet % 4 == 0
            && let Some(s) = self.sync(true)
            && s.running.is_empty()
            && s.delayed.is_empty()
            && (s.runnable.is_empty() || s.paused)
          {
            return;
          }
        }
        Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
      }
    }
  }
}

fn load_workflow(file: &Path, color: bool) -> Result<Workflow, String> {
  compose::load_file(file).map_err(|e| render(&Error::from(e), color))
}

fn render(error: &Error, color: bool) -> String {
  match error {
    Error::Diagnostics(d) => d.render(color).trim_end().to_string(),
    other => other.to_string(),
  }
}

/// The colour a status reads in.
fn status_style(status: &str) -> Style {
  match status {
    "completed" => Style::Green,
    "failed" | "timed_out" => Style::Red,
    "running" | "waiting" | "paused" => Style::Yellow,
    _ => Style::Dim,
  }
}

fn paint(text: &str, style: Style, color: bool) -> String {
  Line::new().push(text, style).render(color, usize::MAX)
}

/// An event as the REPL prints it while the run goes on, or `None` for the events it leaves to
/// `status` and `inspect`.
fn shown(workflow: Option<&Workflow>, color: bool, event: &Event) -> Option<String> {
  let known = workflow.map(|w| Known::of(w, event)).unwrap_or_default();
  event_text::describe(event, known).map(|line| line.render(color, usize::MAX))
}
