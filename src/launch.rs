//! The one way a run starts. `swdl run`, `swdl resume` and the REPL (and `swdl watch --run`,
//! which runs `swdl run`) put the same pieces together here: the checked workflow, its Lua host,
//! the masker, the executor, the run options and the model-token budget.
use super::*;
use crate::{
  commands::Error,
  event::EventSink,
  executor::StageExecutor,
  mask::Masker,
  runtime::{Control, Resume, RunOptions, RunOutcome, Steer},
  workflow::Workflow,
};
use indexmap::IndexMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::{
  collections::{HashMap, HashSet},
  path::{Path, PathBuf},
};
use tokio::sync::mpsc;

/// The Lua host a workflow needs, with its Lua skills' files by name.
#[derive(Clone)]
pub(crate) struct Lua {
  /// The host that runs the skills, the policies and the recovery strategies.
  pub(crate) host: lua::LuaHost,
  /// Each Lua skill the workflow uses, by name.
  pub(crate) skills: HashMap<String, PathBuf>,
}

/// What a run is asked to do beyond what its workflow says.
pub(crate) struct Settings {
  /// The run's id.
  pub(crate) run_id: String,
  /// Stages executing at once.
  pub(crate) max_parallel: usize,
  /// Resolved parameter values.
  pub(crate) params: IndexMap<String, serde_json::Value>,
  /// Gates and approvals approved up front.
  pub(crate) approve: HashSet<String>,
  /// Gates and approvals rejected up front.
  pub(crate) reject: HashSet<String>,
  /// Approve every gate and approval.
  pub(crate) approve_all: bool,
  /// Someone can answer gates as they open.
  pub(crate) interactive: bool,
  /// The recorded events to continue from.
  pub(crate) resume: Option<Resume>,
  /// Nothing starts before a step or resume (the REPL).
  pub(crate) start_paused: bool,
  /// `swdl retry`: completed stages of the retried run that need not run again.
  pub(crate) reuse: Option<Arc<runtime::Reuse>>,
}

/// A run ready to start: its workflow, options and executor.
pub(crate) struct Launch {
  /// The checked workflow.
  pub(crate) workflow: Arc<Workflow>,
  /// Everything the runtime is told.
  pub(crate) options: RunOptions,
  executor: Arc<dyn StageExecutor>,
}

impl Launch {
  /// Puts a run together; a secret too short to mask is a usage error.
  pub(crate) fn new(
    workflow: Arc<Workflow>,
    lua: Option<&Lua>,
    settings: Settings,
  ) -> Result<Self, Error> {
    let masker = masker(&workflow, &settings.params)?;
    Ok(Self::with_masker(workflow, lua, settings, masker))
  }

  /// [`Launch::new`] with the masker already made (`swdl run` needs it before the run exists).
  pub(crate) fn with_masker(
    workflow: Arc<Workflow>,
    lua: Option<&Lua>,
    settings: Settings,
    masker: Masker,
  ) -> Self {
    let Settings {
      run_id,
      max_parallel,
      params,
      approve,
      reject,
      approve_all,
      interactive,
      resume,
      start_paused,
      reuse,
    } = settings;
    let options = RunOptions {
      run_id,
      max_parallel,
      params,
      approve,
      reject,
      approve_all,
      interactive,
      masker,
      hooks: lua.map(|lua| Arc::new(lua.host.clone()) as Arc<dyn hooks::Hooks>),
      resume,
      start_paused,
      reuse,
    };
    let executor = executor(&workflow, lua);
    Self {
      workflow,
      options,
      executor,
    }
  }

  /// Starts counting the run's model tokens against `config.budget.tokens`, from what its
  /// recorded events already spent; counting stops when the guard drops.
  pub(crate) fn budget(&self) -> BudgetGuard {
    let spent = self
      .options
      .resume
      .as_ref()
      .map_or(0, |resume| llm::tokens_in(&resume.events));
    let run = self.options.run_id.clone();
    let budget = llm::open_budget(&run, self.workflow.config.budget_tokens, spent);
    BudgetGuard { run, budget }
  }

  /// Runs it to its end on the current tokio runtime.
  pub(crate) async fn execute(
    self,
    sinks: Vec<Box<dyn EventSink>>,
    control: mpsc::UnboundedReceiver<Control>,
  ) -> RunOutcome {
    runtime::execute(self.workflow, self.options, self.executor, sinks, control).await
  }
}

/// A run's open token budget; dropping it stops the counting.
pub(crate) struct BudgetGuard {
  run: String,
  budget: Arc<llm::Budget>,
}

impl BudgetGuard {
  /// The budget being counted.
  pub(crate) fn budget(&self) -> &llm::Budget {
    &self.budget
  }
}

impl Drop for BudgetGuard {
  fn drop(&mut self) {
    llm::close_budget(&self.run);
  }
}

/// The checks that need each Lua skill loaded, for `swdl validate`: every Lua skill a stage
/// names loads, and each `uses` or `compensate` gives the skill's declared inputs (a key close
/// to a declared input but not one is a misspelling; other keys pass, as the skill may read
/// them). A run loads its skills as stages reach them, so it does not pay for these.
pub(crate) fn check_lua_skills(workflow: &Workflow, lua: &Lua) -> Diagnostics {
  let mut problems = Diagnostics::default();
  let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
  else {
    return problems;
  };
  let mut infos: HashMap<PathBuf, Result<lua::SkillInfo, String>> = HashMap::new();
  let mut info = |name: &str| {
    let path = lua.skills.get(name)?;
    Some(
      infos
        .entry(path.clone())
        .or_insert_with(|| {
          runtime
            .block_on(lua.host.skill_info(path))
            .map_err(|e| e.to_string())
        })
        .clone(),
    )
  };
  for stage in &workflow.stages {
    let calls = stage.skill().into_iter().chain(stage.compensate.as_ref());
    let names = calls.map(|c| (c.uses.as_str(), c.span, Some(c))).chain(
      stage
        .fallback
        .iter()
        .zip(&stage.fallback_spans)
        .map(|(name, &span)| (name.as_str(), span, None)),
    );
    for (name, span, call) in names {
      if builtin::NAMES.contains(&name) {
        continue;
      }
      let found = match info(name) {
        None => continue,
        Some(Err(message)) => {
          let kind = ErrorKind::BrokenSkill {
            name: name.to_string(),
            message,
          };
          problems.push(Diagnostic::new(&workflow.source, span, kind));
          continue;
        }
        Some(Ok(found)) => found,
      };
      let Some(call) = call.filter(|_| !found.inputs.is_empty()) else {
        continue;
      };
      let keys: Vec<&str> = found.inputs.keys().map(String::as_str).collect();
      let required: Vec<&[&str]> = keys
        .iter()
        .zip(found.inputs.values())
        .filter(|(_, written)| !written.ends_with('?'))
        .map(|(key, _)| std::slice::from_ref(key))
        .collect();
      for (span, kind) in skills::check_inputs(name, call, &required, &keys, &[]) {
        // A missing input always counts; an undeclared key only when it is one edit from a
        // declared one, since the skill may read other keys from `input`.
        let reported = match &kind {
          ErrorKind::UnknownInput {
            key,
            suggestion: Some(near),
            ..
          } => suggest::edit_distance(&key.to_lowercase(), &near.to_lowercase()) <= 1,
          ErrorKind::UnknownInput { .. } => false,
          _ => true,
        };
        if reported {
          problems.push(Diagnostic::new(&workflow.source, span, kind));
        }
      }
    }
  }
  problems
}

/// What runs a workflow's stages: the Lua host's executor (built-ins included) when the
/// workflow needs Lua, else the built-ins alone. Making one looks at the skill files afresh.
/// The executor of a run of `workflow`: built-ins (a relative shell `cwd` taken from the
/// workflow file's directory), and Lua skills when there is a host.
fn executor(workflow: &Workflow, lua: Option<&Lua>) -> Arc<dyn StageExecutor> {
  let dir = Path::new(workflow.source.name()).parent();
  let builtins = dir.map_or_else(builtin::Builtins::new, builtin::Builtins::in_dir);
  match lua {
    Some(lua) => {
      Arc::new(lua::Executor::new(lua.host.clone(), lua.skills.clone()).with_builtins(builtins))
    }
    None => Arc::new(builtins),
  }
}

/// The run's masker; a secret too short to mask is a usage error.
pub(crate) fn masker(
  workflow: &Workflow,
  params: &IndexMap<String, serde_json::Value>,
) -> Result<Masker, Error> {
  Masker::for_run(workflow, params).map_err(|e| Error::Usage(e.to_string()))
}

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
    for (name, span) in wanted {
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
    Ok(Some(Lua { host, skills }))
  } else {
    Err(Error::Diagnostics(problems))
  }
}

/// The multi-threaded tokio runtime a run executes on.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Error> {
  tokio::runtime::Builder::new_multi_thread()
    .enable_all()
    .build()
    .map_err(|e| Error::Io {
      path: "tokio runtime".into(),
      message: e.to_string(),
    })
}

/// Hands requests other processes leave in the store for this run (`swdl cancel`, `pause`,
/// `resume`, `approve`, `reject`) to the run's control channel. It polls from its own thread
/// with its own connection, so a busy store never holds up the runtime; it stops when dropped.
pub(crate) struct RequestPoller {
  stop: Arc<AtomicBool>,
}

/// How often a live run looks for requests.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl RequestPoller {
  /// Starts polling for `run_id`'s requests in the store at `dir`.
  pub(crate) fn start(
    dir: PathBuf,
    run_id: String,
    control: mpsc::UnboundedSender<Control>,
  ) -> Self {
    let stop = Arc::new(AtomicBool::new(false));
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
            store::Request::Cancel => Control::Steer(Steer::Cancel),
            store::Request::Pause => Control::Steer(Steer::Pause),
            store::Request::Resume => Control::Steer(Steer::Resume),
            store::Request::Decide { stage, decision } => Control::Steer(Steer::Decide {
              stage,
              decision: decision.decision,
              by: decision.by,
              reason: decision.reason,
              inputs: decision.inputs,
            }),
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
