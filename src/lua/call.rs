//! The call a state is running: its deadline, its cancel flag and what the `swdl` module may do
//! for it. Each state lives on its own OS thread and runs one call's Lua code at a time, so the
//! current call is a thread-local set around every poll of that call's future ([`Scoped`]).
//!
//! One global instruction hook serves every call. A per-coroutine hook would not reach
//! coroutines that Lua code creates itself (`coroutine.wrap(function() while true do end end)()`
//! would escape it), while Lua 5.4 copies the global hook into every new coroutine.
use {
  super::*,
  mlua::{FromLuaMulti, HookTriggers, IntoLuaMulti, VmState},
  std::{
    ffi::c_void,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Wake, Waker},
  },
};

/// How long after its stage timeout a skill is stopped by the host itself.
const SKILL_DEADLINE_GRACE: Duration = Duration::from_millis(250);
/// How many VM instructions run between two checks of the deadline and the cancel flag.
const HOOK_EVERY: u32 = 10_000;

/// How long one call may keep the CPU before the other calls on its state get a turn.
const SLICE: Duration = Duration::from_millis(10);

thread_local! {
  static CURRENT: RefCell<Option<Rc<Call>>> = const { RefCell::new(None) };
}

/// What a call is for; decides what the `swdl` module allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
  /// A skill's `run`, or loading a skill file.
  Skill,
  /// Loading a hook file: the only time `swdl.policy` and `swdl.recovery` work.
  HookFile,
  /// An approval policy or a recovery strategy.
  Hook,
  /// The REPL's `lua` command.
  Eval,
}

/// One request running on a state.
pub(super) struct Call {
  pub(super) purpose: Purpose,
  /// "the stage", "policy `by-risk`": what timed out or was cancelled, for messages.
  what: String,
  /// The file being loaded or run, for messages and log lines without a stage.
  pub(super) label: String,
  deadline: Option<Instant>,
  limit: Option<Duration>,
  cancelled: Arc<AtomicBool>,
  /// Where `ctx.log`, `swdl.log` and `print` go; standard error when `None`.
  pub(super) io: Option<TaskIo>,
  pub(super) permissions: Vec<Permission>,
  /// Extra environment for `swdl.exec`.
  pub(super) env: Vec<(String, String)>,
  /// Working memory behind a skill's `ctx.memory` and `ctx.memory_text`.
  pub(super) memory: Option<executor::MemoryView>,
  /// The run a skill's call belongs to (whose model-token budget `swdl.llm` uses).
  pub(super) run: Option<String>,
  /// Namespaces for `swdl.eval`, made on first use.
  names: Option<Box<dyn Fn() -> serde_json::Value>>,
  context: std::cell::OnceCell<expr::MapContext>,
  /// The coroutine the call runs in; only it may be paused at the end of a slice.
  thread: Cell<*const c_void>,
  slice_started: Cell<Instant>,
  /// Set when the hook paused the coroutine at the end of its slice.
  paused: Cell<bool>,
}

impl Call {
  /// A call that may run for `limit` from now and stops once `cancelled` is set.
  pub(super) fn new(
    purpose: Purpose,
    what: impl Into<String>,
    label: impl Into<String>,
    limit: Option<Duration>,
    cancelled: Arc<AtomicBool>,
  ) -> Self {
    let now = Instant::now();
    Self {
      purpose,
      what: what.into(),
      label: label.into(),
      // A skill's own deadline is a backstop a little after its stage timeout: the runtime's
      // timer normally ends the attempt first and reports it as timed out, and must not lose
      // that race to the host turning the timeout into an ordinary failure.
      deadline: limit.and_then(|limit| {
        let grace = if purpose == Purpose::Skill {
          SKILL_DEADLINE_GRACE
        } else {
          Duration::ZERO
        };
        now.checked_add(limit + grace)
      }),
      limit,
      cancelled,
      io: None,
      permissions: Vec::new(),
      env: Vec::new(),
      memory: None,
      run: None,
      names: None,
      context: std::cell::OnceCell::new(),
      thread: Cell::new(std::ptr::null()),
      slice_started: Cell::new(now),
      paused: Cell::new(false),
    }
  }

  /// This call, logging through `io`.
  pub(super) fn with_io(mut self, io: TaskIo) -> Self {
    self.io = Some(io);
    self
  }

  /// This call, with `swdl.eval` seeing the keys of the JSON object `names()` as namespaces.
  pub(super) fn with_names(mut self, names: impl Fn() -> serde_json::Value + 'static) -> Self {
    self.names = Some(Box::new(names));
    self
  }

  /// When the call must stop.
  pub(super) fn deadline(&self) -> Option<Instant> {
    self.deadline
  }

  /// Why the call must stop now, if it must.
  pub(super) fn stop_reason(&self) -> Option<String> {
    if self.cancelled.load(Ordering::Relaxed) {
      return Some(format!("stopped: {} was cancelled", self.what));
    }
    match (self.deadline, self.limit) {
      (Some(deadline), Some(limit)) if Instant::now() >= deadline => Some(format!(
        "stopped: {} timed out after {}",
        self.what,
        duration::format_duration(limit)
      )),
      _ => None,
    }
  }

  /// Evaluates a `swdl.eval` expression (with or without `$<< >>`).
  pub(super) fn eval(&self, text: &str) -> Result<expr::Value, String> {
    let context = self.context.get_or_init(|| {
      self
        .names
        .as_ref()
        .map(|names| expr::MapContext::from_json(&names()))
        .unwrap_or_default()
    });
    let result = if text.contains("$<<") {
      expr::Template::parse(text).and_then(|template| template.eval(context))
    } else {
      expr::parse(text).and_then(|expr| expr.eval(context))
    };
    result.map_err(|e| {
      let column = text.get(..e.span.offset).map_or(0, |s| s.chars().count()) + 1;
      format!("swdl.eval: {e} at column {column} of `{text}`")
    })
  }
}

/// The call running on this thread, if any.
pub(super) fn current() -> Option<Rc<Call>> {
  CURRENT.with(|current| current.borrow().clone())
}

/// Whether the current call must stop (the sandbox's `pcall` rethrows then).
pub(super) fn stopping() -> bool {
  current().is_some_and(|call| call.stop_reason().is_some())
}

/// Sends a line to the current call's log, or to standard error outside a stage.
pub(super) fn log(line: String) {
  emit(line, |io, line| io.log(LogStream::Log, line));
}

/// Sends the line that reports a model call's `tokens` (see [`TaskIo::usage`]).
pub(super) fn usage(tokens: u64, line: String) {
  emit(line, |io, line| io.usage(tokens, line));
}

fn emit(line: String, send: impl FnOnce(&TaskIo, String)) {
  match current() {
    Some(call) => match &call.io {
      Some(io) => send(io, line),
      None => eprintln!("{}: {line}", call.label),
    },
    None => eprintln!("lua: {line}"),
  }
}

/// The current call, if it was granted `permission`.
pub(super) fn granted(permission: Permission) -> Option<Rc<Call>> {
  current().filter(|call| call.permissions.contains(&permission))
}

/// When a state last showed signs of life while busy, so a state stuck inside a C function
/// (which no hook can interrupt) can be recognised and replaced.
#[derive(Debug, Clone)]
pub(super) struct Heartbeat {
  epoch: Instant,
  /// Milliseconds since `epoch` plus one; zero while the state is idle.
  busy: Arc<AtomicU64>,
}

impl Heartbeat {
  /// A heartbeat counting from `epoch`.
  pub(super) fn new(epoch: Instant) -> Self {
    Self {
      epoch,
      busy: Arc::new(AtomicU64::new(0)),
    }
  }

  fn beat(&self) {
    let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
    self.busy.store(ms + 1, Ordering::Relaxed);
  }

  fn idle(&self) {
    self.busy.store(0, Ordering::Relaxed);
  }

  /// Busy for longer than `limit` without a sign of life.
  pub(super) fn stalled(&self, limit: Duration) -> bool {
    match self.busy.load(Ordering::Relaxed) {
      0 => false,
      since => {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(since - 1) > u64::try_from(limit.as_millis()).unwrap_or(u64::MAX)
      }
    }
  }
}

/// Installs the instruction hook that stops calls and shares the CPU between them.
pub(super) fn install_hook(lua: &Lua, heartbeat: Heartbeat) -> mlua::Result<()> {
  let triggers = HookTriggers::new().every_nth_instruction(HOOK_EVERY);
  lua.set_global_hook(triggers, move |lua, _| check(lua, &heartbeat))
}

fn check(lua: &Lua, heartbeat: &Heartbeat) -> mlua::Result<VmState> {
  let Some(call) = current() else {
    return Ok(VmState::Continue);
  };
  heartbeat.beat();
  if let Some(reason) = call.stop_reason() {
    return Err(mlua::Error::runtime(reason));
  }
  let now = Instant::now();
  // Only the call's own coroutine is paused: pausing one the skill made would look to the skill
  // like a spurious `coroutine.yield`.
  if now.duration_since(call.slice_started.get()) >= SLICE
    && lua.current_thread().to_pointer() == call.thread.get()
  {
    call.slice_started.set(now);
    call.paused.set(true);
    return Ok(VmState::Yield);
  }
  Ok(VmState::Continue)
}

/// Runs `f(args)` as a new coroutine of the current call, so it can wait (`swdl.sleep`) and be
/// paused by the hook.
pub(super) async fn run_thread<R: FromLuaMulti>(
  lua: &Lua,
  f: Function,
  args: impl IntoLuaMulti,
) -> mlua::Result<R> {
  let thread = lua.create_thread(f)?;
  if let Some(call) = current() {
    call.thread.set(thread.to_pointer());
  }
  thread.into_async::<R>(args)?.await
}

/// `work` run as `call`: the call is current while the work is polled (and dropped, so Lua
/// that runs while a coroutine is closed is still stopped), and it ends at the deadline even
/// when Lua is waiting rather than running.
pub(super) async fn scoped<T>(
  heartbeat: &Heartbeat,
  call: Rc<Call>,
  work: impl Future<Output = Result<T, LuaError>>,
) -> Result<T, LuaError> {
  let deadline = call.deadline();
  let work = Scoped {
    call: Rc::clone(&call),
    heartbeat: heartbeat.clone(),
    work: Some(Box::pin(work)),
    pause: None,
  };
  let result = match deadline {
    Some(deadline) => tokio::select! {
      result = work => Some(result),
      () = tokio::time::sleep_until(deadline.into()) => None,
    },
    None => Some(work.await),
  };
  // The hook stops Lua with an error whose wording depends on where it struck; report the
  // reason itself.
  match (result, call.stop_reason()) {
    (Some(Ok(value)), _) => Ok(value),
    (Some(Err(error)), None) => Err(error),
    (_, Some(reason)) => Err(LuaError::Stopped(reason)),
    (None, None) => Err(LuaError::Stopped(format!(
      "stopped: {} timed out",
      call.what
    ))),
  }
}

/// A future polled with its call current.
struct Scoped<F> {
  call: Rc<Call>,
  heartbeat: Heartbeat,
  work: Option<Pin<Box<F>>>,
  /// After a slice: waits until the runtime has looked at its timers and IO.
  pause: Option<Pin<Box<dyn Future<Output = ()>>>>,
}

impl<F: Future> Future for Scoped<F> {
  type Output = F::Output;

  fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
    let this = &mut *self;
    if let Some(pause) = this.pause.as_mut() {
      if pause.as_mut().poll(cx).is_pending() {
        return Poll::Pending;
      }
      this.pause = None;
    }
    let Some(work) = this.work.as_mut() else {
      return Poll::Pending;
    };
    let _enter = Enter::new(&this.call, &this.heartbeat);
    let gate = Arc::new(Gate {
      waker: cx.waker().clone(),
      polling: AtomicBool::new(true),
      held: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&gate));
    this.call.paused.set(false);
    let result = work.as_mut().poll(&mut Context::from_waker(&waker));
    gate.polling.store(false, Ordering::SeqCst);
    if result.is_pending() && gate.held.load(Ordering::SeqCst) {
      // mlua wakes a coroutine paused by the hook at once, which would put it straight back at
      // the head of the `LocalSet`: other calls would get their turn, but timers and IO (their
      // `swdl.sleep`, new requests) only after dozens of slices. `yield_now` resumes it after
      // the runtime has polled its driver instead.
      if this.call.paused.get() {
        let mut pause: Pin<Box<dyn Future<Output = ()>>> = Box::pin(tokio::task::yield_now());
        if pause.as_mut().poll(cx).is_pending() {
          this.pause = Some(pause);
        } else {
          cx.waker().wake_by_ref();
        }
      } else {
        cx.waker().wake_by_ref();
      }
    }
    result
  }
}

/// The waker the work is polled with: wakes during the poll are held, to be acted on after it.
struct Gate {
  waker: Waker,
  polling: AtomicBool,
  held: AtomicBool,
}

impl Wake for Gate {
  fn wake(self: Arc<Self>) {
    self.wake_by_ref();
  }

  fn wake_by_ref(self: &Arc<Self>) {
    if self.polling.load(Ordering::SeqCst) {
      self.held.store(true, Ordering::SeqCst);
    } else {
      self.waker.wake_by_ref();
    }
  }
}

impl<F> Drop for Scoped<F> {
  fn drop(&mut self) {
    let _enter = Enter::new(&self.call, &self.heartbeat);
    self.work.take();
  }
}

/// Makes a call current until dropped.
struct Enter<'a> {
  previous: Option<Rc<Call>>,
  heartbeat: &'a Heartbeat,
}

impl<'a> Enter<'a> {
  fn new(call: &Rc<Call>, heartbeat: &'a Heartbeat) -> Self {
    heartbeat.beat();
    call.slice_started.set(Instant::now());
    let previous = CURRENT.with(|current| current.replace(Some(Rc::clone(call))));
    Self {
      previous,
      heartbeat,
    }
  }
}

impl Drop for Enter<'_> {
  fn drop(&mut self) {
    let previous = self.previous.take();
    CURRENT.with(|current| *current.borrow_mut() = previous);
    self.heartbeat.idle();
  }
}
