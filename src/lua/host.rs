//! [`LuaHost`]: the threads that own the Lua states, and how work reaches them.
//!
//! A state never leaves its thread. Requests travel as boxed closures over a channel; the
//! thread spawns each on its `LocalSet`, where it runs as a Lua coroutine beside the others.
//! The caller waits on a oneshot; dropping its future sets the call's cancel flag (which the
//! instruction hook sees) and closes the oneshot (which ends the task on the state's side).
use {
  super::*,
  call::Heartbeat,
  std::{
    future::Future,
    pin::Pin,
    sync::{
      Mutex, PoisonError,
      atomic::{AtomicU8, AtomicU64, AtomicUsize},
      mpsc as std_mpsc,
    },
  },
  tokio::{
    sync::{mpsc, oneshot},
    task::{JoinSet, LocalSet},
  },
};

/// How long hook files, policies, recovery strategies, `skill_info` and `eval` may run.
pub(super) const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long past a call's deadline its caller waits for the state's answer. A state that has not
/// answered by then is stuck in a C function no hook can interrupt (a pathological pattern
/// match); it is replaced, and the stuck thread is left to finish on its own.
const GRACE: Duration = Duration::from_secs(1);

/// A state busy this long without reaching an instruction hook is presumed stuck the same way
/// and replaced before more work is sent to it. Replacing costs a new state only: the old one
/// still finishes (and answers) what it was running.
const STALL: Duration = Duration::from_secs(2);

type LocalFuture = Pin<Box<dyn Future<Output = ()>>>;

/// Work for a state: made on the caller's side, run on the state's thread.
type Job = Box<dyn FnOnce(Rc<State>) -> LocalFuture + Send>;

/// Runs Lua skills, approval policies and recovery strategies on a pool of sandboxed Lua
/// states, each on its own thread. Cloning shares the pool.
#[derive(Clone)]
pub struct LuaHost {
  inner: Arc<Inner>,
}

struct Inner {
  shared: Arc<Shared>,
  slots: Mutex<Vec<Slot>>,
  next: AtomicUsize,
  policies: Vec<String>,
  recoveries: Vec<String>,
}

/// What every state is made from.
pub(super) struct Shared {
  memory_limit: usize,
  /// Bumped by [`LuaHost::refresh_skills`]; a state trusts a skill it loaded until this moves.
  skills_epoch: Arc<AtomicU64>,
  hooks: Vec<HookFile>,
  epoch: Instant,
}

/// A hook file, read once at start so every state (and every replacement) loads the same text.
pub(super) struct HookFile {
  pub(super) label: String,
  pub(super) source: String,
}

/// One state's thread, as the host sees it.
struct Slot {
  jobs: mpsc::UnboundedSender<Job>,
  heartbeat: Heartbeat,
  generation: u64,
}

impl fmt::Debug for LuaHost {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.debug_struct("LuaHost")
      .field("policies", &self.inner.policies)
      .field("recoveries", &self.inner.recoveries)
      .finish_non_exhaustive()
  }
}

impl LuaHost {
  /// Starts `config.states` states and loads the hook files into each; blocks until they are
  /// loaded.
  ///
  /// # Errors
  ///
  /// A hook file that cannot be read, does not compile or fails while loading (the message
  /// names `file:line`), or a thread that cannot be started.
  pub fn start(config: HostConfig) -> Result<Self, LuaError> {
    let hooks = config
      .hooks
      .iter()
      .map(|path| {
        let label = path.display().to_string();
        match crate::source::read_text(path) {
          Ok(source) => Ok(HookFile { label, source }),
          Err(e) => Err(LuaError::File {
            path: label,
            message: e.to_string(),
          }),
        }
      })
      .collect::<Result<Vec<_>, _>>()?;
    let shared = Arc::new(Shared {
      memory_limit: config.memory_limit,
      hooks,
      skills_epoch: Arc::new(AtomicU64::new(0)),
      epoch: Instant::now(),
    });
    let mut slots = Vec::new();
    let mut ready = Vec::new();
    for index in 0..config.states.max(1) {
      let (tx, rx) = std_mpsc::channel();
      slots.push(spawn(index, &shared, 0, Some(tx))?);
      ready.push(rx);
    }
    let mut names = None;
    for rx in ready {
      match rx.recv() {
        Ok(Ok(loaded)) => {
          names.get_or_insert(loaded);
        }
        Ok(Err(error)) => return Err(error),
        Err(_) => return Err(LuaError::Host("a Lua state stopped while starting".into())),
      }
    }
    let names: api::HookNames = names.unwrap_or_default();
    let first = |list: Vec<(String, String)>| list.into_iter().map(|(name, _)| name).collect();
    Ok(Self {
      inner: Arc::new(Inner {
        shared,
        slots: Mutex::new(slots),
        next: AtomicUsize::new(0),
        policies: first(names.policies),
        recoveries: first(names.recoveries),
      }),
    })
  }

  /// Makes every state look at its skill files again before their next use, and load the ones
  /// that changed. Until then a state runs the version it loaded without touching the file: a
  /// run uses one version of each skill however many stages call it.
  pub fn refresh_skills(&self) {
    self
      .inner
      .shared
      .skills_epoch
      .fetch_add(1, Ordering::Relaxed);
  }

  /// Names of the approval policies the hook files registered, in order.
  pub fn policies(&self) -> Vec<String> {
    self.inner.policies.clone()
  }

  /// Names of the recovery strategies the hook files registered, in order.
  pub fn recoveries(&self) -> Vec<String> {
    self.inner.recoveries.clone()
  }

  /// Runs one attempt of the Lua skill at `path`. Never fails: problems are
  /// [`StageResult::Failed`] with the Lua file, line and traceback. Dropping the future stops
  /// the skill.
  pub async fn run_skill(&self, path: &Path, task: StageTask, io: TaskIo) -> StageResult {
    let limit = (task.timeout_ms > 0).then(|| Duration::from_millis(task.timeout_ms));
    let path = path.to_path_buf();
    let result =
      self
        .request(
          None,
          limit,
          "the stage",
          move |state, cancelled| async move {
            Ok(skill::run(&state, &path, task, io, cancelled).await)
          },
        )
        .await;
    result.unwrap_or_else(|error| StageResult::failed(error.to_string()))
  }

  /// What the skill at `path` declares, without running `run` (its file's top level runs).
  ///
  /// # Errors
  ///
  /// The file cannot be read, does not compile, fails while loading or returns something that
  /// is not a skill table.
  pub async fn skill_info(&self, path: &Path) -> Result<SkillInfo, LuaError> {
    let path = path.to_path_buf();
    self
      .request(
        None,
        Some(HOOK_TIMEOUT),
        "loading the skill",
        move |state, cancelled| async move { hooks::skill_info(&state, &path, cancelled).await },
      )
      .await
  }

  /// Asks approval policy `policy` about `stage`.
  ///
  /// # Errors
  ///
  /// An unknown policy, a Lua error, a timeout, or an answer other than approve, reject or ask.
  pub async fn decide(&self, policy: &str, stage: PolicyStage) -> Result<PolicyDecision, LuaError> {
    Self::known(api::HookKind::Policy, policy, &self.inner.policies)?;
    let name = policy.to_string();
    let what = format!("policy `{policy}`");
    // Policies and strategies always run on the first state, so state they keep between calls
    // (a circuit breaker, a trust counter) is one copy, not one per state.
    self
      .request(
        Some(0),
        Some(HOOK_TIMEOUT),
        &what,
        move |state, cancelled| async move { hooks::decide(&state, &name, stage, cancelled).await },
      )
      .await
  }

  /// Asks recovery strategy `strategy` what to do about `failure`.
  ///
  /// # Errors
  ///
  /// An unknown strategy, a Lua error, a timeout, or a returned value that is not an action.
  pub async fn recover(
    &self,
    strategy: &str,
    failure: Failure,
  ) -> Result<RecoveryAction, LuaError> {
    Self::known(api::HookKind::Recovery, strategy, &self.inner.recoveries)?;
    let name = strategy.to_string();
    let what = format!("recovery strategy `{strategy}`");
    self
      .request(Some(0), Some(HOOK_TIMEOUT), &what, move |state, cancelled| async move {
        hooks::recover(&state, &name, failure, cancelled).await
      })
      .await
  }

  /// Runs `code` (an expression, or statements) in a REPL environment that keeps its globals
  /// between calls, and returns its value(s) as JSON (non-JSON values as their `tostring`).
  ///
  /// # Errors
  ///
  /// A syntax or runtime error, with its traceback, or a timeout.
  pub async fn eval(&self, code: &str) -> Result<serde_json::Value, LuaError> {
    let code = code.to_string();
    // Always the first state, so globals set by one command are there for the next.
    self
      .request(
        Some(0),
        Some(HOOK_TIMEOUT),
        "the Lua code",
        move |state, cancelled| async move { hooks::eval(&state, &code, cancelled).await },
      )
      .await
  }

  /// An error unless `name` is a registered hook of `kind`.
  fn known(kind: api::HookKind, name: &str, names: &[String]) -> Result<(), LuaError> {
    if names.iter().any(|known| known == name) {
      return Ok(());
    }
    Err(LuaError::Unknown {
      kind: kind.noun(),
      name: name.to_string(),
      suggestion: crate::suggest::suggest(name, names.iter().map(String::as_str))
        .map(str::to_string),
    })
  }

  /// Sends `work` to a state (`pin`, or the next in turn) and waits for its answer, at most
  /// `limit` plus [`GRACE`]. Work that has not started yet when its state gets stuck inside a
  /// library function is taken back and sent to another state, so one stuck call cannot hold
  /// up the calls queued behind it.
  async fn request<T, F, Fut>(
    &self,
    pin: Option<usize>,
    limit: Option<Duration>,
    what: &str,
    work: F,
  ) -> Result<T, LuaError>
  where
    T: Send + 'static,
    F: FnOnce(Rc<State>, Arc<AtomicBool>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, LuaError>> + 'static,
  {
    let cancelled = Arc::new(AtomicBool::new(false));
    let _cancel_on_drop = CancelOnDrop(Arc::clone(&cancelled));
    let deadline = limit.map(|limit| tokio::time::Instant::now() + limit.saturating_add(GRACE));
    loop {
      let (reply, mut answer) = oneshot::channel();
      let flag = Arc::clone(&cancelled);
      // QUEUED until the state starts the job or the caller takes it back, whichever is first.
      let progress = Arc::new(AtomicU8::new(QUEUED));
      let job_progress = Arc::clone(&progress);
      let work = work.clone();
      let job: Job = Box::new(move |state| {
        Box::pin(async move {
          if job_progress
            .compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
          {
            return;
          }
          let mut reply = reply;
          let work = work(state, Arc::clone(&flag));
          let result = tokio::select! {
            biased;
            () = reply.closed() => None,
            result = work => Some(result),
          };
          match result {
            Some(result) => {
              let _ = reply.send(result);
            }
            None => flag.store(true, Ordering::Relaxed),
          }
        })
      });
      let (index, generation) = self.inner.dispatch(pin, job)?;
      // One timer per call serves both the deadline and, for calls that may move to another
      // state, the periodic look at whether their state is stuck: timers cost a lock each.
      let next_wake = |now: tokio::time::Instant| {
        let check = pin.is_none().then(|| now + REDISPATCH_CHECK);
        match (check, deadline) {
          (Some(c), Some(d)) => Some(c.min(d)),
          (c, d) => c.or(d),
        }
      };
      let mut wake = next_wake(tokio::time::Instant::now());
      let mut timer = std::pin::pin!(sleep_until(wake));
      loop {
        tokio::select! {
          answer = &mut answer => {
            return answer.unwrap_or_else(|_| {
              Err(LuaError::Host("the Lua state stopped during the call".into()))
            });
          }
          () = &mut timer => {
            let now = tokio::time::Instant::now();
            if deadline.is_some_and(|d| now >= d) {
              self.inner.replace(index, generation);
              return Err(LuaError::Stopped(format!(
                "stopped: {what} timed out after {}; its Lua state was stuck in a library \
                 function that cannot be interrupted (a long pattern match?) and has been \
                 replaced",
                duration::format_duration(limit.unwrap_or_default())
              )));
            }
            if pin.is_none()
              && self.inner.stalled(index, generation, REDISPATCH_STALL)
              && progress
                .compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
              break;
            }
            wake = next_wake(now);
            timer.set(sleep_until(wake));
          }
        }
      }
    }
  }
}

/// A queued job's progress: not started, started, or taken back by its caller.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;
/// How often a caller checks whether the state its job waits on is stuck.
const REDISPATCH_CHECK: Duration = Duration::from_millis(100);
/// How long a state may stay inside one library call before queued jobs go elsewhere; a
/// healthy state passes through the instruction hook many times a millisecond.
const REDISPATCH_STALL: Duration = Duration::from_millis(300);

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
  match deadline {
    Some(deadline) => tokio::time::sleep_until(deadline).await,
    None => std::future::pending().await,
  }
}

/// Sets a call's cancel flag when the caller's future is dropped (or done: then it is moot).
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
  fn drop(&mut self) {
    self.0.store(true, Ordering::Relaxed);
  }
}

impl Inner {
  /// Sends `job` to a state; returns which, and which generation of it.
  fn dispatch(&self, pin: Option<usize>, job: Job) -> Result<(usize, u64), LuaError> {
    let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
    if slots.is_empty() {
      return Err(LuaError::Host("the Lua host has no states".into()));
    }
    let mut index = pin.unwrap_or_else(|| self.next.fetch_add(1, Ordering::Relaxed)) % slots.len();
    if pin.is_none() {
      // Prefer a state that is not stuck inside a library call.
      if let Some(free) = (0..slots.len())
        .map(|k| (index + k) % slots.len())
        .find(|&i| !slots[i].heartbeat.stalled(REDISPATCH_STALL))
      {
        index = free;
      }
    }
    if slots[index].jobs.is_closed() || slots[index].heartbeat.stalled(STALL) {
      self.respawn(&mut slots, index);
    }
    let slot = &slots[index];
    slot
      .jobs
      .send(job)
      .map_err(|_| LuaError::Host("the Lua state has stopped".into()))?;
    Ok((index, slot.generation))
  }

  /// Whether state `index`, still at `generation`, has been inside one library call for `limit`.
  fn stalled(&self, index: usize, generation: u64, limit: Duration) -> bool {
    let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
    slots
      .get(index)
      .is_some_and(|slot| slot.generation == generation && slot.heartbeat.stalled(limit))
  }

  /// Replaces state `index` unless it was already replaced since `generation`.
  fn replace(&self, index: usize, generation: u64) {
    let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
    if slots
      .get(index)
      .is_some_and(|slot| slot.generation == generation)
    {
      self.respawn(&mut slots, index);
    }
  }

  fn respawn(&self, slots: &mut [Slot], index: usize) {
    // If no thread can be started the old slot stays; sending to it reports the problem.
    if let Ok(slot) = spawn(index, &self.shared, slots[index].generation + 1, None) {
      slots[index] = slot;
    }
  }
}

/// Starts a state's thread. `ready` hears whether the hooks loaded (and their names).
fn spawn(
  index: usize,
  shared: &Arc<Shared>,
  generation: u64,
  ready: Option<std_mpsc::Sender<Result<api::HookNames, LuaError>>>,
) -> Result<Slot, LuaError> {
  let (jobs, queue) = mpsc::unbounded_channel();
  let heartbeat = Heartbeat::new(shared.epoch);
  let thread_shared = Arc::clone(shared);
  let thread_heartbeat = heartbeat.clone();
  std::thread::Builder::new()
    .name(format!("swdl-lua-{index}"))
    .spawn(move || serve(&thread_shared, thread_heartbeat, queue, ready))
    .map_err(|e| LuaError::Host(format!("cannot start a thread for a Lua state: {e}")))?;
  Ok(Slot {
    jobs,
    heartbeat,
    generation,
  })
}

/// A state's thread: makes the state, then runs jobs until the host is gone and they are done.
fn serve(
  shared: &Shared,
  heartbeat: Heartbeat,
  mut queue: mpsc::UnboundedReceiver<Job>,
  ready: Option<std_mpsc::Sender<Result<api::HookNames, LuaError>>>,
) {
  let tell = |result: Result<api::HookNames, LuaError>| {
    if let Some(ready) = &ready {
      let _ = ready.send(result);
    }
  };
  let runtime = match tokio::runtime::Builder::new_current_thread()
    .enable_all()
    .build()
  {
    Ok(runtime) => runtime,
    Err(e) => {
      tell(Err(LuaError::Host(format!(
        "cannot start a Lua state's runtime: {e}"
      ))));
      return;
    }
  };
  let local = LocalSet::new();
  local.block_on(&runtime, async move {
    let state = match State::start(shared, heartbeat).await {
      Ok(state) => state,
      Err(error) => {
        tell(Err(error));
        return;
      }
    };
    tell(Ok(
      state
        .lua
        .app_data_ref::<api::HookNames>()
        .map(|names| names.clone())
        .unwrap_or_default(),
    ));
    let state = Rc::new(state);
    let mut running = JoinSet::new();
    loop {
      tokio::select! {
        job = queue.recv() => match job {
          Some(job) => {
            running.spawn_local(job(Rc::clone(&state)));
          }
          None => break,
        },
        Some(_) = running.join_next(), if !running.is_empty() => {}
      }
    }
    // The host is gone (or replaced this state): finish what was started.
    while running.join_next().await.is_some() {}
  });
}

/// One Lua state and what is loaded into it.
pub(super) struct State {
  pub(super) lua: Lua,
  pub(super) sandbox: sandbox::Sandbox,
  pub(super) heartbeat: Heartbeat,
  pub(super) skills: RefCell<HashMap<PathBuf, Rc<skill::Skill>>>,
  /// See [`LuaHost::refresh_skills`].
  pub(super) skills_epoch: Arc<AtomicU64>,
  /// Every skill's `ctx.log`.
  pub(super) ctx_log: Function,
  /// Every skill's `ctx` metatable.
  pub(super) ctx_meta: Table,
  memory_limit: usize,
  repl: RefCell<Option<Table>>,
}

impl State {
  /// Opens a state and loads the hook files into it.
  async fn start(shared: &Shared, heartbeat: Heartbeat) -> Result<Self, LuaError> {
    let opened = sandbox::Sandbox::open(shared.memory_limit).and_then(|(lua, sandbox)| {
      call::install_hook(&lua, heartbeat.clone()).map(|()| (lua, sandbox))
    });
    let opened = opened.and_then(|(lua, sandbox)| {
      let log = skill::log_function(&lua)?;
      let meta = skill::context_meta(&lua)?;
      Ok((lua, sandbox, log, meta))
    });
    let (lua, sandbox, ctx_log, ctx_meta) =
      opened.map_err(|e| LuaError::Host(format!("cannot open a Lua state: {e}")))?;
    let state = Self {
      lua,
      sandbox,
      heartbeat,
      skills: RefCell::new(HashMap::new()),
      skills_epoch: Arc::clone(&shared.skills_epoch),
      ctx_log,
      ctx_meta,
      memory_limit: shared.memory_limit,
      repl: RefCell::new(None),
    };
    for file in &shared.hooks {
      hooks::load(&state, file).await?;
    }
    Ok(state)
  }

  /// Collects garbage before a call when memory is nearly used up, so the call does not fail
  /// on memory that is only garbage (see [`State::error`]).
  pub(super) fn tidy(&self) {
    if self.lua.used_memory() > self.memory_limit / 10 * 9 {
      let _ = self.lua.gc_collect();
    }
  }

  /// The REPL's environment, made on first use.
  pub(super) fn repl_env(&self) -> mlua::Result<Table> {
    if let Some(env) = &*self.repl.borrow() {
      return Ok(env.clone());
    }
    let env = self.sandbox.env()?;
    *self.repl.borrow_mut() = Some(env.clone());
    Ok(env)
  }

  /// A Lua error from running `label` as a [`LuaError`] whose message names the file.
  pub(super) fn error(&self, error: &mlua::Error, label: &str) -> LuaError {
    if convert::is_memory_error(error) {
      // Collect now. Besides freeing what the failed call left, this keeps the state healthy:
      // when an allocation failed while finalizers of Rust callbacks were pending, later
      // allocations were seen failing without an emergency collection, although the memory
      // was garbage (the tests cover it). A full collection puts the collector right.
      let _ = self.lua.gc_collect();
      return LuaError::Script(format!(
        "{label}: not enough memory: the Lua memory limit of {} was reached",
        sandbox::human_bytes(self.memory_limit)
      ));
    }
    let message = convert::describe(error);
    // Lua shortens long chunk names from the left, so look for the file's own name.
    let name = Path::new(label).file_name().map_or_else(
      || label.to_string(),
      |name| name.to_string_lossy().into_owned(),
    );
    if message.contains(&name) {
      LuaError::Script(message)
    } else {
      LuaError::Script(format!("{label}: {message}"))
    }
  }
}
