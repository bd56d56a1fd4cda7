//! The progress display of `swdl run` (SPEC sections 2, 7 and 10): a block of active stages and
//! a bar redrawn in place on a TTY, one timestamped line per event elsewhere, or nothing. It
//! reads only the event stream and writes only to stderr (or to a writer given for tests).
use super::*;
use crate::{
  decision::GateDecision,
  duration::format_duration,
  event::{Event, EventRecord, EventSink, RunStatus, StageStatus},
};
use indexmap::IndexMap;
use std::{
  collections::{HashMap, HashSet},
  io::{IsTerminal, Write},
  sync::{Mutex, MutexGuard, PoisonError, mpsc},
  thread::JoinHandle,
  time::{Duration, Instant},
};

/// How often the live block is redrawn when no event arrives, so elapsed times tick.
const TICK: Duration = Duration::from_millis(100);
/// The least time between two redraws asked for by `flush`, so a flood of events cannot turn
/// into a flood of redraws; the ticker catches up within one tick.
const MIN_FLUSH_REDRAW: Duration = Duration::from_millis(50);
/// Width of the `[#####-----]` bar when the terminal has room.
const BAR_WIDTH: usize = 20;
/// Below this many columns the bar says nothing; the counts are shown alone.
const MIN_BAR_WIDTH: usize = 5;
/// Widest stage id column in the live block; longer ids push their line to the right.
const MAX_ID_COLUMN: usize = 30;
/// Spinner frames of running stages.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
  /// A block redrawn in place with ANSI escapes: for a terminal.
  Live,
  /// One timestamped line per event, no escapes: for pipes and CI.
  Plain,
  /// Nothing.
  None,
}

impl ProgressMode {
  /// The mode `--progress auto` means here: live when stderr is a capable terminal, else plain.
  pub fn auto() -> Self {
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    if std::io::stderr().is_terminal() && !dumb {
      Self::Live
    } else {
      Self::Plain
    }
  }

  /// The mode for a `--progress` value (`auto`, `plain`, `none`, also `live`).
  pub fn from_flag(flag: &str) -> Option<Self> {
    match flag {
      "auto" => Some(Self::auto()),
      "live" => Some(Self::Live),
      "plain" => Some(Self::Plain),
      "none" => Some(Self::None),
      _ => None,
    }
  }
}

/// Starts a progress display writing to `out` (normally `Box::new(std::io::stderr())`); `color`
/// only matters in live mode. Hand the sink to the runtime and call
/// [`ProgressHandle::finish`] once the run is over.
pub fn start(
  mode: ProgressMode,
  workflow: &str,
  total_stages: usize,
  color: bool,
  out: Box<dyn Write + Send>,
) -> (ProgressSink, ProgressHandle) {
  start_with(mode, workflow, total_stages, color, out, terminal_size)
}

/// `start` with the terminal size source chosen, so tests do not depend on the terminal.
fn start_with(
  mode: ProgressMode,
  workflow: &str,
  total_stages: usize,
  color: bool,
  out: Box<dyn Write + Send>,
  size: fn() -> (usize, usize),
) -> (ProgressSink, ProgressHandle) {
  let now = Instant::now();
  let shared = Arc::new(Shared {
    mode,
    size,
    state: Mutex::new(State::new(
      mode,
      color && mode == ProgressMode::Live,
      workflow,
      total_stages,
      now,
    )),
    output: Mutex::new(Output {
      out,
      drawn: 0,
      last_block: Vec::new(),
      last_paint: None,
      suspended: false,
    }),
  });
  let (stop, ticker) = if mode == ProgressMode::Live {
    let (stop, stopped) = mpsc::channel::<()>();
    let ticking = Arc::clone(&shared);
    // Without a ticker the display still works, redrawn on `flush` only.
    let ticker = std::thread::Builder::new()
      .name("swdl-progress".into())
      .spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
          paint(&ticking, Instant::now(), Paint::Tick);
        }
      })
      .ok();
    (Some(stop), ticker)
  } else {
    (None, None)
  };
  let sink = ProgressSink {
    shared: Arc::clone(&shared),
    ticking: ticker.is_some(),
  };
  let handle = ProgressHandle {
    shared,
    stop,
    ticker,
    finished: false,
  };
  (sink, handle)
}

/// The event sink of the progress display; give it to the runtime.
pub struct ProgressSink {
  shared: Arc<Shared>,
  ticking: bool,
}

impl ProgressSink {
  /// Sets how many attempts each stage may take (retries plus fallbacks), so lines can read
  /// `attempt 2/3`; stages left out show `attempt N` from their second attempt on.
  pub fn with_attempt_limits<I>(self, limits: I) -> Self
  where
    I: IntoIterator<Item = (String, u32)>,
  {
    lock(&self.shared.state).limits.extend(limits);
    self
  }
}

impl EventSink for ProgressSink {
  fn emit(&mut self, record: &EventRecord) {
    if self.shared.mode == ProgressMode::None {
      return;
    }
    let now = Instant::now();
    lock(&self.shared.state).handle(record, now);
    // Live output waits for the next redraw; plain lines go out as they come.
    if self.shared.mode == ProgressMode::Plain {
      paint(&self.shared, now, Paint::Now);
    }
  }

  fn flush(&mut self) {
    if self.shared.mode == ProgressMode::None {
      return;
    }
    lock(&self.shared.state).resolve_held(None);
    let how = if self.shared.mode == ProgressMode::Live && self.ticking {
      Paint::Soon
    } else {
      Paint::Now
    };
    paint(&self.shared, Instant::now(), how);
  }
}

/// Controls the display from outside the runtime: finishing it, and stepping aside for a
/// prompt or a message.
pub struct ProgressHandle {
  shared: Arc<Shared>,
  stop: Option<mpsc::Sender<()>>,
  ticker: Option<JoinHandle<()>>,
  finished: bool,
}

impl ProgressHandle {
  /// Stops redrawing, erases the live block and writes the final summary line.
  pub fn finish(mut self) {
    self.close();
  }

  /// Writes a line above the live block (or as a plain line) without breaking the display.
  pub fn print_line(&self, line: &str) {
    lock(&self.shared.state).pending.push(clean(line));
    paint(&self.shared, Instant::now(), Paint::Now);
  }

  /// Erases the live block and stops redrawing until the guard is dropped, so an interactive
  /// prompt (a gate decision) can use the terminal.
  pub fn suspend(&self) -> Suspended<'_> {
    let mut output = lock(&self.shared.output);
    output.suspended = true;
    if output.drawn > 0 {
      let erase = format!("\r\x1b[{}A\x1b[J", output.drawn);
      output.write(&erase);
      output.drawn = 0;
      output.last_block.clear();
    }
    Suspended {
      shared: &self.shared,
    }
  }

  /// Stops the ticker and writes the end of the display, once.
  fn close(&mut self) {
    if self.finished {
      return;
    }
    self.finished = true;
    // Dropping the sender wakes the ticker at once.
    drop(self.stop.take());
    if let Some(ticker) = self.ticker.take() {
      let _ = ticker.join();
    }
    if self.shared.mode == ProgressMode::None {
      return;
    }
    let now = Instant::now();
    {
      let mut state = lock(&self.shared.state);
      state.resolve_held(None);
      if let Some(summary) = state.summary(now) {
        state.pending.push(summary);
      }
    }
    lock(&self.shared.output).suspended = false;
    paint(&self.shared, now, Paint::Final);
  }
}

impl Drop for ProgressHandle {
  // An early return or a panic in the caller must not leave the terminal mid-redraw.
  fn drop(&mut self) {
    self.close();
  }
}

/// While alive, the live block is hidden and not redrawn (see [`ProgressHandle::suspend`]).
pub struct Suspended<'a> {
  shared: &'a Shared,
}

impl Drop for Suspended<'_> {
  fn drop(&mut self) {
    lock(&self.shared.output).suspended = false;
    paint(self.shared, Instant::now(), Paint::Now);
  }
}

/// What the sink, the handle and the ticker share. Events only take `state`, briefly; writing
/// takes `output` first, so redraws never interleave and a slow terminal never blocks `emit`.
struct Shared {
  mode: ProgressMode,
  size: fn() -> (usize, usize),
  state: Mutex<State>,
  output: Mutex<Output>,
}

/// The writer and what is on the screen.
struct Output {
  out: Box<dyn Write + Send>,
  /// Lines of the live block currently on screen, under the cursor's line.
  drawn: usize,
  last_block: Vec<String>,
  last_paint: Option<Instant>,
  suspended: bool,
}

impl Output {
  fn write(&mut self, text: &str) {
    // Progress is best effort: a closed stderr must not fail or stop the run.
    let _ = self.out.write_all(text.as_bytes());
    let _ = self.out.flush();
  }
}

/// Why a redraw happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Paint {
  /// The ticker: redraw the block if it changed.
  Tick,
  /// A flush with a ticker running: redraw unless one happened a moment ago.
  Soon,
  /// Write now.
  Now,
  /// The end: write pending lines and erase the block for good.
  Final,
}

/// Writes pending lines and, in live mode, redraws the block under them.
fn paint(shared: &Shared, now: Instant, how: Paint) {
  let mut output = lock(&shared.output);
  if output.suspended {
    return;
  }
  if how == Paint::Soon
    && output
      .last_paint
      .is_some_and(|last| now.saturating_duration_since(last) < MIN_FLUSH_REDRAW)
  {
    return;
  }
  let live = shared.mode == ProgressMode::Live;
  let (pending, block) = {
    let mut state = lock(&shared.state);
    let pending = std::mem::take(&mut state.pending);
    let block = if live && how != Paint::Final {
      let (cols, rows) = (shared.size)();
      state.block(now, cols, rows)
    } else {
      Vec::new()
    };
    (pending, block)
  };
  if pending.is_empty() && (!live || (block == output.last_block && how != Paint::Final)) {
    return;
  }
  let mut frame = String::new();
  if live && output.drawn > 0 {
    // Back to the block's first line: pending lines overwrite it, then the block follows.
    frame.push_str(&format!("\r\x1b[{}A", output.drawn));
  }
  for line in &pending {
    frame.push_str(line);
    if live {
      frame.push_str("\x1b[K");
    }
    frame.push('\n');
  }
  for line in &block {
    frame.push_str(line);
    frame.push_str("\x1b[K\n");
  }
  if live {
    // Clears what is left of a taller previous block.
    frame.push_str("\x1b[J");
  }
  output.write(&frame);
  output.drawn = block.len();
  output.last_block = block;
  output.last_paint = Some(now);
}

/// What the display knows about the run: a fold over its events.
struct State {
  mode: ProgressMode,
  color: bool,
  workflow: String,
  total: usize,
  started: Instant,
  /// Attempts allowed per stage, when the caller told.
  limits: HashMap<String, u32>,
  /// Stages with something under way, in the order they started.
  active: IndexMap<String, Active>,
  /// Final statuses seen so far.
  settled: IndexMap<String, StageStatus>,
  /// Gate kind (`gate` or `approval`) of stages that waited for a decision.
  gates: HashMap<String, String>,
  /// Stages whose final record the gate decision line already told (live mode).
  told: HashSet<String>,
  /// A failed or timed-out attempt whose meaning (retry, fallback or final) the next event
  /// tells.
  held: Option<Held>,
  paused: Option<String>,
  outcome: Option<Outcome>,
  seen_events: bool,
  /// Finished lines waiting to be written (plain lines, or records above the live block).
  pending: Vec<String>,
}

/// A stage with something under way.
struct Active {
  attempt: u32,
  since: Instant,
  phase: Phase,
  /// The last log line, gate message or retry error, shown dimmed.
  detail: Option<String>,
}

/// What an active stage is doing.
enum Phase {
  Running,
  Retrying { due: Instant },
  Waiting { approval: bool },
  Compensating { uses: String },
}

/// A failed or timed-out attempt not yet known to be final.
struct Held {
  ts: String,
  stage: String,
  attempt: Option<u32>,
  what: HeldWhat,
}

enum HeldWhat {
  Failed { error: String, reason: String },
  TimedOut { timeout_ms: u64 },
}

/// The run's end, from `run_completed`.
struct Outcome {
  status: RunStatus,
  stages: IndexMap<String, StageStatus>,
  duration_ms: u64,
}

impl State {
  fn new(mode: ProgressMode, color: bool, workflow: &str, total: usize, now: Instant) -> Self {
    Self {
      mode,
      color,
      workflow: workflow.to_owned(),
      total,
      started: now,
      limits: HashMap::new(),
      active: IndexMap::new(),
      settled: IndexMap::new(),
      gates: HashMap::new(),
      told: HashSet::new(),
      held: None,
      paused: None,
      outcome: None,
      seen_events: false,
      pending: Vec::new(),
    }
  }

  /// Queues a plain-mode line stamped with the event's time.
  fn plain(&mut self, ts: &str, text: &str) {
    if self.mode == ProgressMode::Plain {
      self.pending.push(format!("{} {text}", time_of(ts)));
    }
  }

  /// Queues a live-mode record to scroll above the block.
  fn record(&mut self, line: Line) {
    if self.mode == ProgressMode::Live {
      self.pending.push(line.render(self.color, usize::MAX));
    }
  }

  fn attempt_label(&self, stage: &str, attempt: u32) -> Option<String> {
    let limit = self.limits.get(stage).copied().unwrap_or(0);
    if limit > 1 && attempt <= limit {
      Some(format!("attempt {attempt}/{limit}"))
    } else if attempt > 1 {
      Some(format!("attempt {attempt}"))
    } else {
      None
    }
  }

  fn settle(&mut self, stage: &str, status: StageStatus) {
    self.active.shift_remove(stage);
    self.settled.insert(stage.to_owned(), status);
  }

  /// Marks a stage active (again), keeping its place in the block.
  fn activate(
    &mut self,
    stage: &str,
    attempt: u32,
    phase: Phase,
    detail: Option<String>,
    now: Instant,
  ) {
    self.settled.shift_remove(stage);
    self.active.insert(
      stage.to_owned(),
      Active {
        attempt,
        since: now,
        phase,
        detail,
      },
    );
  }

  fn handle(&mut self, record: &EventRecord, now: Instant) {
    self.seen_events = true;
    self.resolve_held(Some(&record.event));
    let ts = record.ts.as_str();
    match &record.event {
      Event::RunStarted {
        workflow,
        max_parallel,
        stages,
        ..
      } => {
        self.workflow.clone_from(workflow);
        self.total = *stages;
        self.started = now;
        let noun = if *stages == 1 { "stage" } else { "stages" };
        let text = format!(
          "run {} started ({stages} {noun}, max_parallel {max_parallel})",
          self.workflow
        );
        self.plain(ts, &text);
        self.record(Line::new().push(format!("▶ {text}"), Style::Dim));
      }
      Event::StageStarted {
        stage,
        attempt,
        uses,
        ..
      } => {
        self.activate(stage, *attempt, Phase::Running, None, now);
        let label = self
          .attempt_label(stage, *attempt)
          .unwrap_or_else(|| format!("attempt {attempt}"));
        self.plain(ts, &format!("stage {stage} started ({label}, uses {uses})"));
      }
      Event::StageRetrying {
        stage,
        attempt,
        delay_ms,
        error,
        ..
      } => {
        let error = first_line(error);
        let due = now + Duration::from_millis(*delay_ms);
        let delay = format_duration(Duration::from_millis(*delay_ms));
        let text = format!("stage {stage} retrying in {delay} after attempt {attempt}: {error}");
        self.activate(stage, *attempt, Phase::Retrying { due }, Some(error), now);
        self.plain(ts, &text);
      }
      Event::StageCompleted {
        stage,
        attempt,
        duration_ms,
        ..
      } => {
        self.settle(stage, StageStatus::Completed);
        let took = format_duration(Duration::from_millis(*duration_ms));
        let on = if *attempt > 1 {
          format!(" (attempt {attempt})")
        } else {
          String::new()
        };
        self.plain(ts, &format!("stage {stage} completed in {took}{on}"));
        if !self.told.remove(stage.as_str()) {
          self.record(
            Line::new()
              .push("✓", Style::Green)
              .push(format!(" {stage}  "), Style::Plain)
              .push(format!("{took}{on}"), Style::Dim),
          );
        }
      }
      Event::StageFailed {
        stage,
        attempt,
        error,
        reason,
        ..
      } => {
        self.held = Some(Held {
          ts: record.ts.clone(),
          stage: stage.clone(),
          attempt: *attempt,
          what: HeldWhat::Failed {
            error: first_line(error),
            reason: reason.clone(),
          },
        });
      }
      Event::StageTimedOut {
        stage,
        attempt,
        timeout_ms,
        ..
      } => {
        self.held = Some(Held {
          ts: record.ts.clone(),
          stage: stage.clone(),
          attempt: Some(*attempt),
          what: HeldWhat::TimedOut {
            timeout_ms: *timeout_ms,
          },
        });
      }
      Event::StageSkipped { stage, reason } => {
        self.settle(stage, StageStatus::Skipped);
        self.plain(ts, &format!("stage {stage} skipped ({reason})"));
        self.record(Line::new().push(format!("- {stage} skipped ({reason})"), Style::Dim));
      }
      Event::StageCancelled { stage, reason, .. } => {
        self.settle(stage, StageStatus::Cancelled);
        self.plain(ts, &format!("stage {stage} cancelled ({reason})"));
        self.record(Line::new().push(format!("⊘ {stage} cancelled"), Style::Yellow));
      }
      Event::GateWaiting {
        stage,
        message,
        kind,
        timeout_ms,
      } => {
        let approval = kind == "approval";
        self.gates.insert(stage.clone(), kind.clone());
        let message = message.as_deref().map(first_line).filter(|m| !m.is_empty());
        let mut text = if approval {
          format!("stage {stage} waiting for approval")
        } else {
          format!("gate {stage} waiting")
        };
        if let Some(timeout) = timeout_ms {
          text.push_str(&format!(
            " (timeout {})",
            format_duration(Duration::from_millis(*timeout))
          ));
        }
        if let Some(message) = &message {
          text.push_str(&format!(": {message}"));
        }
        self.activate(stage, 0, Phase::Waiting { approval }, message, now);
        self.plain(ts, &text);
      }
      Event::GateDecided {
        stage,
        decision,
        decided_by,
        reason,
        ..
      } => {
        let gate = self.gates.get(stage).is_none_or(|kind| kind != "approval");
        let approved = *decision == GateDecision::Approve;
        let mut text = format!(
          "{} by {decided_by}",
          if approved { "approved" } else { "rejected" }
        );
        if let Some(reason) = reason.as_deref().map(first_line).filter(|r| !r.is_empty()) {
          text.push_str(&format!(": {reason}"));
        }
        let noun = if gate { "gate" } else { "stage" };
        self.plain(ts, &format!("{noun} {stage} {text}"));
        // The decision line stands for the stage's final record: a gate's completion, or any
        // rejection's failure.
        if approved && gate {
          self.settle(stage, StageStatus::Completed);
          self.told.insert(stage.clone());
        } else if approved {
          self.active.shift_remove(stage.as_str());
        } else {
          self.settle(stage, StageStatus::Failed);
          self.told.insert(stage.clone());
        }
        let (mark, style) = if approved {
          ("✓", Style::Green)
        } else {
          ("✗", Style::Red)
        };
        self.record(
          Line::new()
            .push(mark, style)
            .push(format!(" {stage} {text}"), Style::Plain),
        );
      }
      Event::Log {
        stage,
        stream,
        message,
        ..
      } => {
        let line = last_segment(message);
        let text = if stream == "stderr" {
          format!("stage {stage} stderr: {line}")
        } else {
          format!("stage {stage}: {line}")
        };
        self.plain(ts, &text);
        if let Some(active) = self.active.get_mut(stage.as_str())
          && matches!(active.phase, Phase::Running)
          && !line.trim().is_empty()
        {
          active.detail = Some(line.trim().to_owned());
        }
      }
      Event::RunPaused { reason, stage } => {
        let text = match stage {
          Some(stage) if reason == "breakpoint" => format!("paused at breakpoint (stage {stage})"),
          _ => format!("paused ({reason})"),
        };
        self.plain(ts, &format!("run {text}"));
        self.paused = Some(text);
      }
      Event::RunResumed {} => {
        self.paused = None;
        self.plain(ts, "run resumed");
      }
      Event::RecoveryDecided {
        stage,
        strategy,
        action,
        delay_ms,
        uses,
        error,
        ..
      } => {
        let mut text = format!("stage {stage} recovery {strategy}: {action}");
        if let Some(delay) = delay_ms {
          text.push_str(&format!(
            " in {}",
            format_duration(Duration::from_millis(*delay))
          ));
        }
        if let Some(uses) = uses {
          text.push_str(&format!(" with {uses}"));
        }
        if let Some(error) = error {
          text.push_str(&format!(": {}", first_line(error)));
        }
        self.plain(ts, &text);
      }
      Event::CompensationStarted { stage, uses } => {
        self.plain(
          ts,
          &format!("compensation for {stage} started (uses {uses})"),
        );
        // A compensated stage has settled: show the compensation without unsettling it.
        self.active.insert(
          stage.clone(),
          Active {
            attempt: 0,
            since: now,
            phase: Phase::Compensating { uses: uses.clone() },
            detail: None,
          },
        );
      }
      Event::CompensationCompleted {
        stage,
        uses,
        duration_ms,
      } => {
        self.end_compensation(stage);
        let took = format_duration(Duration::from_millis(*duration_ms));
        self.plain(ts, &format!("compensation for {stage} completed in {took}"));
        self.record(Line::new().push(
          format!("↺ {stage} compensated by {uses} in {took}"),
          Style::Dim,
        ));
      }
      Event::CompensationFailed { stage, uses, error } => {
        self.end_compensation(stage);
        let error = first_line(error);
        self.plain(ts, &format!("compensation for {stage} failed: {error}"));
        self.record(Line::new().push("✗", Style::Red).push(
          format!(" {stage} compensation {uses} failed: {error}"),
          Style::Red,
        ));
      }
      Event::RunCompleted {
        status,
        stages,
        error,
        duration_ms,
        ..
      } => {
        for (stage, stage_status) in stages {
          if stage_status.is_settled() {
            self.settled.insert(stage.clone(), *stage_status);
          }
        }
        self.active.clear();
        self.paused = None;
        let word = status_word(*status);
        let error = error.as_deref().map(first_line).filter(|e| !e.is_empty());
        let took = format_duration(Duration::from_millis(*duration_ms));
        let text = match (&error, *status) {
          (_, RunStatus::Completed) | (None, _) => format!("run {word} in {took}"),
          (Some(error), _) => format!("run {word}: {error}"),
        };
        self.plain(ts, &text);
        if let (Some(error), false) = (&error, *status == RunStatus::Completed) {
          let style = status_style(Some(*status));
          self.record(Line::new().push(format!("run {word}: {error}"), style));
        }
        self.outcome = Some(Outcome {
          status: *status,
          stages: stages.clone(),
          duration_ms: *duration_ms,
        });
      }
    }
  }

  fn end_compensation(&mut self, stage: &str) {
    if self
      .active
      .get(stage)
      .is_some_and(|a| matches!(a.phase, Phase::Compensating { .. }))
    {
      self.active.shift_remove(stage);
    }
  }

  /// Decides what a held failure meant, given the event that follows it (`None` at a flush or
  /// at the end): a retry's line tells the error itself, a fallback starting makes it one
  /// failed attempt, anything else makes it the stage's final failure.
  fn resolve_held(&mut self, next: Option<&Event>) {
    let Some(held) = self.held.take() else {
      return;
    };
    let same_stage = next.and_then(Event::stage) == Some(held.stage.as_str());
    match next {
      Some(Event::StageRetrying { .. }) if same_stage => {}
      Some(Event::StageStarted { .. }) if same_stage => {
        let attempt = held.attempt.unwrap_or(1);
        let what = match &held.what {
          HeldWhat::Failed { error, .. } => format!("failed: {error}"),
          HeldWhat::TimedOut { timeout_ms } => {
            format!(
              "timed out after {}",
              format_duration(Duration::from_millis(*timeout_ms))
            )
          }
        };
        let text = format!("stage {} attempt {attempt} {what}", held.stage);
        self.plain(&held.ts, &text);
      }
      _ => self.settle_held(held),
    }
  }

  fn settle_held(&mut self, held: Held) {
    let stage = held.stage.as_str();
    let attempt = held.attempt.unwrap_or(1);
    match &held.what {
      HeldWhat::Failed { error, reason } => {
        self.settle(stage, StageStatus::Failed);
        let what = if reason == "rejected" {
          format!("rejected: {error}")
        } else {
          let kind = if reason == "error" {
            String::new()
          } else {
            format!(" ({reason})")
          };
          let after = if attempt > 1 {
            format!(" after {attempt} attempts")
          } else {
            String::new()
          };
          format!("failed{kind}{after}: {error}")
        };
        self.plain(&held.ts, &format!("stage {stage} {what}"));
        if !self.told.remove(stage) {
          self.record(
            Line::new()
              .push("✗", Style::Red)
              .push(format!(" {stage}  {what}"), Style::Red),
          );
        }
      }
      HeldWhat::TimedOut { timeout_ms } => {
        self.settle(stage, StageStatus::TimedOut);
        let limit = format_duration(Duration::from_millis(*timeout_ms));
        let on = if attempt > 1 {
          format!(" on attempt {attempt}")
        } else {
          String::new()
        };
        let what = format!("timed out after {limit}{on}");
        self.plain(&held.ts, &format!("stage {stage} {what}"));
        self.record(Line::new().push(format!("⏱ {stage} {what}"), Style::Red));
      }
    }
  }

  /// The closing line: the run's status and a tally of the stages, `None` when nothing
  /// happened at all.
  fn summary(&self, now: Instant) -> Option<String> {
    if !self.seen_events {
      return None;
    }
    let outcome = self.outcome.as_ref();
    let stages = match outcome {
      Some(outcome) if !outcome.stages.is_empty() => &outcome.stages,
      _ => &self.settled,
    };
    let count = |status: StageStatus| stages.values().filter(|s| **s == status).count();
    let waiting = if outcome.is_some() {
      count(StageStatus::Waiting)
    } else {
      self
        .active
        .values()
        .filter(|a| matches!(a.phase, Phase::Waiting { .. }))
        .count()
    };
    let total = self.total.max(stages.len());
    let mut text = format!("completed {}/{total} stages", count(StageStatus::Completed));
    for (n, what) in [
      (count(StageStatus::Failed), "failed"),
      (count(StageStatus::TimedOut), "timed out"),
      (count(StageStatus::Skipped), "skipped"),
      (count(StageStatus::Cancelled), "cancelled"),
      (waiting, "waiting"),
    ] {
      if n > 0 {
        text.push_str(&format!(", {n} {what}"));
      }
    }
    let took = match outcome {
      Some(outcome) => Duration::from_millis(outcome.duration_ms),
      None => now.saturating_duration_since(self.started),
    };
    text.push_str(&format!(" in {}", format_duration(took)));
    let status = outcome.map(|o| o.status);
    let text = match status {
      Some(RunStatus::Completed) => text,
      Some(status) => format!("run {}: {text}", status_word(status)),
      None => format!("run stopped: {text}"),
    };
    Some(
      Line::new()
        .push(text, status_style(status))
        .render(self.color, usize::MAX),
    )
  }

  /// The live block: one line per active stage (as many as fit) and the bar.
  fn block(&self, now: Instant, cols: usize, rows: usize) -> Vec<String> {
    // One column short of the width, so no line ever wraps and breaks the cursor arithmetic.
    let width = cols.saturating_sub(1).max(1);
    // The block plus the cursor's line must fit on the screen to be redrawn in place.
    let slots = rows.saturating_sub(2);
    let (shown, more) = if self.active.len() > slots {
      let shown = slots.saturating_sub(1);
      (shown, self.active.len() - shown)
    } else {
      (self.active.len(), 0)
    };
    let id_width = self
      .active
      .keys()
      .take(shown)
      .map(|id| id.chars().count())
      .max()
      .unwrap_or(0)
      .min(MAX_ID_COLUMN);
    let tick = now.saturating_duration_since(self.started).as_millis() / TICK.as_millis();
    let spinner = SPINNER
      .get(usize::try_from(tick).unwrap_or(0) % SPINNER.len())
      .copied()
      .unwrap_or('*');
    let mut lines = Vec::with_capacity(shown + 2);
    for (stage, active) in self.active.iter().take(shown) {
      let line = self.stage_line(stage, active, id_width, spinner, now);
      lines.push(line.render(self.color, width));
    }
    if more > 0 && slots > 0 {
      let line = Line::new().push(format!("  … and {more} more running"), Style::Dim);
      lines.push(line.render(self.color, width));
    }
    lines.push(self.bar(now, width).render(self.color, width));
    lines
  }

  fn stage_line(
    &self,
    stage: &str,
    active: &Active,
    id_width: usize,
    spinner: char,
    now: Instant,
  ) -> Line {
    let (mark, status, mark_style) = match &active.phase {
      Phase::Running => (spinner.to_string(), "running".to_owned(), Style::Yellow),
      Phase::Retrying { due } => {
        let left = due.saturating_duration_since(now);
        let secs = left.as_millis().div_ceil(1_000);
        let status = if secs == 0 {
          "retrying now".to_owned()
        } else {
          let secs = u64::try_from(secs).unwrap_or(u64::MAX);
          format!("retrying in {}", format_duration(Duration::from_secs(secs)))
        };
        ("↻".to_owned(), status, Style::Yellow)
      }
      Phase::Waiting { approval: true } => (
        "?".to_owned(),
        "waiting for approval".to_owned(),
        Style::Yellow,
      ),
      Phase::Waiting { approval: false } => (
        "?".to_owned(),
        "waiting for a decision".to_owned(),
        Style::Yellow,
      ),
      Phase::Compensating { uses } => {
        ("↺".to_owned(), format!("compensating ({uses})"), Style::Dim)
      }
    };
    let padding = id_width.saturating_sub(stage.chars().count());
    let mut line = Line::new()
      .push(format!("{mark} "), mark_style)
      .push(format!("{stage}{}  ", " ".repeat(padding)), Style::Plain)
      .push(status, Style::Plain);
    if active.attempt > 0
      && let Some(label) = self.attempt_label(stage, active.attempt)
    {
      line = line.push(format!("  {label}"), Style::Plain);
    }
    if !matches!(active.phase, Phase::Retrying { .. }) {
      let elapsed = now.saturating_duration_since(active.since);
      line = line.push(format!("  {}", ticking(elapsed)), Style::Plain);
    }
    if let Some(detail) = &active.detail {
      line = line.push(format!("  {detail}"), Style::Dim);
    }
    line
  }

  /// The run's bar line; the bar narrows (or goes) so the counts and clock fit in `width`.
  fn bar(&self, now: Instant, width: usize) -> Line {
    let done = self.settled.len();
    let count = |f: fn(&Phase) -> bool| self.active.values().filter(|a| f(&a.phase)).count();
    let running = count(|p| matches!(p, Phase::Running));
    let waiting = count(|p| matches!(p, Phase::Waiting { .. }));
    let retrying = count(|p| matches!(p, Phase::Retrying { .. }));
    let failed = self
      .settled
      .values()
      .filter(|s| matches!(s, StageStatus::Failed | StageStatus::TimedOut))
      .count();
    let mut tail = Line::new().push(
      format!("{done}/{} stages  {running} running", self.total),
      Style::Plain,
    );
    if retrying > 0 {
      tail = tail.push(format!("  {retrying} retrying"), Style::Yellow);
    }
    if waiting > 0 {
      tail = tail.push(format!("  {waiting} waiting"), Style::Yellow);
    }
    if failed > 0 {
      tail = tail.push(format!("  {failed} failed"), Style::Red);
    }
    tail = tail.push(
      format!("  {}", clock(now.saturating_duration_since(self.started))),
      Style::Dim,
    );
    if let Some(paused) = &self.paused {
      tail = tail.push(format!("  {paused}"), Style::Yellow);
    }
    // `[` + bar + `] ` around the tail.
    let bar_width = BAR_WIDTH.min(width.saturating_sub(tail.width() + 3));
    if bar_width < MIN_BAR_WIDTH {
      return tail;
    }
    let filled = (done * bar_width)
      .checked_div(self.total)
      .unwrap_or(0)
      .min(bar_width);
    let mut line = Line::new()
      .push("[", Style::Plain)
      .push("#".repeat(filled), Style::Green)
      .push("-".repeat(bar_width - filled), Style::Dim)
      .push("] ", Style::Plain);
    line.0.extend(tail.0);
    line
  }
}

/// How the run's status reads in lines (`waiting` at the end means suspended at a gate).
fn status_word(status: RunStatus) -> &'static str {
  match status {
    RunStatus::Waiting => "suspended",
    other => other.as_str(),
  }
}

fn status_style(status: Option<RunStatus>) -> Style {
  match status {
    Some(RunStatus::Completed) => Style::Green,
    Some(RunStatus::Failed) => Style::Red,
    _ => Style::Yellow,
  }
}

/// Colours of the live display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
  Plain,
  Green,
  Red,
  Yellow,
  Dim,
}

impl Style {
  fn code(self) -> &'static str {
    match self {
      Self::Plain => "",
      Self::Green => "\x1b[32m",
      Self::Red => "\x1b[31m",
      Self::Yellow => "\x1b[33m",
      Self::Dim => "\x1b[2m",
    }
  }
}

/// A line built from styled pieces, so it can be cut to the terminal width by visible
/// characters before any escape code is added.
#[derive(Debug, Default)]
struct Line(Vec<(String, Style)>);

impl Line {
  fn new() -> Self {
    Self::default()
  }

  fn push(mut self, text: impl Into<String>, style: Style) -> Self {
    self.0.push((text.into(), style));
    self
  }

  /// Visible characters.
  fn width(&self) -> usize {
    self.0.iter().map(|(text, _)| text.chars().count()).sum()
  }

  /// The text, cut to `max` characters (the last one an ellipsis when cut), coloured when
  /// `color`.
  fn render(&self, color: bool, max: usize) -> String {
    let cut = self.width() > max;
    let mut budget = if cut { max.saturating_sub(1) } else { max };
    let mut out = String::new();
    for (text, style) in &self.0 {
      if budget == 0 {
        break;
      }
      let part: String = text.chars().take(budget).collect();
      budget -= part.chars().count();
      if part.is_empty() {
        continue;
      }
      if color && *style != Style::Plain {
        out.push_str(style.code());
        out.push_str(&part);
        out.push_str("\x1b[0m");
      } else {
        out.push_str(&part);
      }
    }
    if cut && max > 0 {
      out.push('…');
    }
    out
  }
}

/// The time of day of an RFC 3339 timestamp (`14:03:07.123`); the whole text if it has none.
fn time_of(ts: &str) -> &str {
  let time = ts.split_once('T').map_or(ts, |(_, time)| time);
  let end = time
    .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
    .unwrap_or(time.len());
  time.get(..end).filter(|t| !t.is_empty()).unwrap_or(ts)
}

/// A stage's elapsed time in steady tenths (`0.4s`, `12.3s`), then as `format_duration` does.
fn ticking(elapsed: Duration) -> String {
  if elapsed < Duration::from_secs(60) {
    format!("{}.{}s", elapsed.as_secs(), elapsed.subsec_millis() / 100)
  } else {
    format_duration(elapsed)
  }
}

/// Elapsed run time as on a stopwatch: `00:14`, `1:02:03`.
fn clock(elapsed: Duration) -> String {
  let secs = elapsed.as_secs();
  let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
  if h > 0 {
    format!("{h}:{m:02}:{s:02}")
  } else {
    format!("{m:02}:{s:02}")
  }
}

/// The first non-empty line of a message, made safe to print.
fn first_line(text: &str) -> String {
  let line = text
    .lines()
    .map(str::trim)
    .find(|line| !line.is_empty())
    .unwrap_or("");
  clean(line)
}

/// What a terminal would show of a log line: the text after its last carriage return (a
/// stage's own progress bar), made safe to print.
fn last_segment(text: &str) -> String {
  let text = text.trim_end_matches(['\r', '\n']);
  let segment = text
    .rsplit(['\r', '\n'])
    .find(|s| !s.trim().is_empty())
    .unwrap_or("");
  clean(segment).trim_end().to_owned()
}

/// Drops escape sequences and control characters from text that came from stages, so their
/// output can neither move our cursor nor break our one-line layout.
fn clean(text: &str) -> String {
  let mut out = String::with_capacity(text.len());
  let mut chars = text.chars().peekable();
  while let Some(c) = chars.next() {
    if c == '\x1b' {
      match chars.next() {
        // CSI: parameters up to a final byte in `@`..=`~`.
        Some('[') => {
          for c in chars.by_ref() {
            if ('@'..='~').contains(&c) {
              break;
            }
          }
        }
        // OSC (titles, hyperlinks): up to BEL or ESC `\`.
        Some(']') => {
          while let Some(c) = chars.next() {
            if c == '\x07' {
              break;
            }
            if c == '\x1b' {
              chars.next_if_eq(&'\\');
              break;
            }
          }
        }
        _ => {}
      }
    } else if c == '\t' {
      out.push(' ');
    } else if !c.is_control() {
      out.push(c);
    }
  }
  out
}

/// Columns and rows of the terminal on stderr, 80x24 when it has none.
fn terminal_size() -> (usize, usize) {
  #[cfg(unix)]
  {
    let mut size = libc::winsize {
      ws_row: 0,
      ws_col: 0,
      ws_xpixel: 0,
      ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` into the struct passed, which outlives the call.
    let status = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) };
    if status == 0 && size.ws_col > 0 && size.ws_row > 0 {
      return (usize::from(size.ws_col), usize::from(size.ws_row));
    }
  }
  (80, 24)
}

/// Locks a mutex, going on with the data if a holder panicked: a progress display has nothing
/// to protect that is worth a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  /// A writer tests can read back.
  #[derive(Clone, Default)]
  struct Buffer(Arc<Mutex<Vec<u8>>>);

  impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
      lock(&self.0).extend_from_slice(bytes);
      Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
      Ok(())
    }
  }

  impl Buffer {
    fn text(&self) -> String {
      String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
  }

  fn fixed_size() -> (usize, usize) {
    (80, 24)
  }

  fn rec(second: u32, event: Event) -> EventRecord {
    EventRecord {
      ts: format!("2026-11-22T14:03:{second:02}.123Z"),
      run: "r1".into(),
      event,
    }
  }

  fn started(stage: &str, attempt: u32, uses: &str) -> Event {
    Event::StageStarted {
      stage: stage.into(),
      attempt,
      uses: uses.into(),
      inputs: Arc::new(json!({})),
    }
  }

  fn completed(stage: &str, attempt: u32, duration_ms: u64) -> Event {
    Event::StageCompleted {
      stage: stage.into(),
      attempt,
      uses: "x".into(),
      outputs: Arc::new(json!({})),
      summary: None,
      duration_ms,
    }
  }

  fn failed(stage: &str, attempt: u32, error: &str) -> Event {
    Event::StageFailed {
      stage: stage.into(),
      attempt: Some(attempt),
      uses: Some("x".into()),
      error: error.into(),
      reason: "error".into(),
      duration_ms: 10,
    }
  }

  fn retrying(stage: &str, attempt: u32, delay_ms: u64, error: &str) -> Event {
    Event::StageRetrying {
      stage: stage.into(),
      attempt,
      delay_ms,
      due: "2026-11-22T14:03:09.000Z".into(),
      error: error.into(),
    }
  }

  fn log(stage: &str, stream: &str, message: &str) -> Event {
    Event::Log {
      stage: stage.into(),
      attempt: 1,
      stream: stream.into(),
      message: message.into(),
    }
  }

  fn run_started(stages: usize) -> Event {
    Event::RunStarted {
      workflow: "code-review".into(),
      params: json!({}),
      max_parallel: 3,
      stages,
      seed: 0,
    }
  }

  fn run_completed(
    status: RunStatus,
    stages: &[(&str, StageStatus)],
    error: Option<&str>,
    ms: u64,
  ) -> Event {
    Event::RunCompleted {
      status,
      outputs: json!({}),
      stages: stages
        .iter()
        .map(|(s, st)| ((*s).to_owned(), *st))
        .collect(),
      error: error.map(str::to_owned),
      duration_ms: ms,
    }
  }

  /// Runs events through a display into a buffer and returns what it wrote.
  fn drive(mode: ProgressMode, color: bool, events: Vec<EventRecord>) -> String {
    let buffer = Buffer::default();
    let (mut sink, handle) = start_with(
      mode,
      "code-review",
      5,
      color,
      Box::new(buffer.clone()),
      fixed_size,
    );
    for record in &events {
      sink.emit(record);
    }
    sink.flush();
    handle.finish();
    buffer.text()
  }

  /// Whether the text holds an SGR (colour) escape.
  fn has_sgr(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|rest| {
      rest
        .strip_prefix('[')
        .and_then(|rest| {
          rest
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .map(|end| rest[end..].starts_with('m'))
        })
        .unwrap_or(false)
    })
  }

  fn small_run() -> Vec<EventRecord> {
    vec![
      rec(7, run_started(5)),
      rec(7, started("style", 1, "code-style")),
      rec(7, started("security", 1, "scan")),
      rec(8, log("style", "stdout", "checked 12 files")),
      rec(8, log("security", "stderr", "\x1b[33mwarning\x1b[0m: slow")),
      rec(9, failed("security", 1, "exit status 1\nmore detail")),
      rec(
        9,
        retrying("security", 1, 2_000, "exit status 1\nmore detail"),
      ),
      rec(9, completed("style", 1, 1_200)),
      rec(11, started("security", 2, "scan")),
      rec(12, failed("security", 2, "exit status 2")),
      rec(
        12,
        Event::StageSkipped {
          stage: "docs".into(),
          reason: "condition".into(),
        },
      ),
      rec(
        12,
        Event::GateWaiting {
          stage: "signoff".into(),
          message: Some("Ship it?".into()),
          kind: "gate".into(),
          timeout_ms: None,
        },
      ),
      rec(
        13,
        Event::GateDecided {
          stage: "signoff".into(),
          decision: GateDecision::Approve,
          decided_by: "flag".into(),
          reason: None,
          inputs: None,
        },
      ),
      rec(13, started("perf", 1, "bench")),
      rec(14, completed("perf", 1, 250)),
      rec(
        14,
        run_completed(
          RunStatus::Completed,
          &[
            ("style", StageStatus::Completed),
            ("security", StageStatus::Failed),
            ("docs", StageStatus::Skipped),
            ("signoff", StageStatus::Completed),
            ("perf", StageStatus::Completed),
          ],
          None,
          3_400,
        ),
      ),
    ]
  }

  #[test]
  fn plain_mode_prints_one_line_per_event() {
    let text = drive(ProgressMode::Plain, true, small_run());
    let expected = [
      "14:03:07.123 run code-review started (5 stages, max_parallel 3)",
      "14:03:07.123 stage style started (attempt 1, uses code-style)",
      "14:03:07.123 stage security started (attempt 1, uses scan)",
      "14:03:08.123 stage style: checked 12 files",
      "14:03:08.123 stage security stderr: warning: slow",
      "14:03:09.123 stage security retrying in 2s after attempt 1: exit status 1",
      "14:03:09.123 stage style completed in 1.2s",
      "14:03:11.123 stage security started (attempt 2, uses scan)",
      "14:03:12.123 stage security failed after 2 attempts: exit status 2",
      "14:03:12.123 stage docs skipped (condition)",
      "14:03:12.123 gate signoff waiting: Ship it?",
      "14:03:13.123 gate signoff approved by flag",
      "14:03:13.123 stage perf started (attempt 1, uses bench)",
      "14:03:14.123 stage perf completed in 250ms",
      "14:03:14.123 run completed in 3.4s",
      "completed 3/5 stages, 1 failed, 1 skipped in 3.4s",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    assert!(!text.contains('\x1b'));
  }

  #[test]
  fn plain_mode_reports_timeouts_fallbacks_cancellation_and_failed_runs() {
    let events = vec![
      rec(1, run_started(3)),
      rec(1, started("slow", 1, "shell")),
      rec(
        2,
        Event::StageTimedOut {
          stage: "slow".into(),
          attempt: 1,
          uses: "shell".into(),
          timeout_ms: 30_000,
          duration_ms: 30_000,
        },
      ),
      rec(2, started("fetch", 1, "http")),
      rec(3, failed("fetch", 1, "503")),
      rec(3, started("fetch", 2, "cache")),
      rec(
        4,
        Event::StageCancelled {
          stage: "fetch".into(),
          attempt: Some(2),
          reason: "halt".into(),
        },
      ),
      rec(
        4,
        Event::CompensationStarted {
          stage: "setup".into(),
          uses: "teardown".into(),
        },
      ),
      rec(
        5,
        Event::CompensationFailed {
          stage: "setup".into(),
          uses: "teardown".into(),
          error: "gone".into(),
        },
      ),
      rec(
        5,
        run_completed(
          RunStatus::Failed,
          &[
            ("slow", StageStatus::TimedOut),
            ("fetch", StageStatus::Cancelled),
            ("setup", StageStatus::Completed),
          ],
          Some("stage slow timed out"),
          5_000,
        ),
      ),
    ];
    let text = drive(ProgressMode::Plain, false, events);
    let expected = [
      "14:03:01.123 run code-review started (3 stages, max_parallel 3)",
      "14:03:01.123 stage slow started (attempt 1, uses shell)",
      "14:03:02.123 stage slow timed out after 30s",
      "14:03:02.123 stage fetch started (attempt 1, uses http)",
      "14:03:03.123 stage fetch attempt 1 failed: 503",
      "14:03:03.123 stage fetch started (attempt 2, uses cache)",
      "14:03:04.123 stage fetch cancelled (halt)",
      "14:03:04.123 compensation for setup started (uses teardown)",
      "14:03:05.123 compensation for setup failed: gone",
      "14:03:05.123 run failed: stage slow timed out",
      "run failed: completed 1/3 stages, 1 timed out, 1 cancelled in 5s",
    ];
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
  }

  #[test]
  fn a_failure_is_final_when_flushed_and_attempt_limits_show() {
    let buffer = Buffer::default();
    let (sink, handle) = start_with(
      ProgressMode::Plain,
      "wf",
      1,
      false,
      Box::new(buffer.clone()),
      fixed_size,
    );
    let mut sink = sink.with_attempt_limits([("a".to_owned(), 3)]);
    sink.emit(&rec(1, started("a", 1, "echo")));
    sink.emit(&rec(2, failed("a", 1, "boom")));
    // Held until the next event or a flush tells whether a retry follows.
    assert_eq!(buffer.text().lines().count(), 1);
    sink.flush();
    drop(handle);
    let expected = [
      "14:03:01.123 stage a started (attempt 1/3, uses echo)",
      "14:03:02.123 stage a failed: boom",
    ];
    let text = buffer.text();
    assert_eq!(text.lines().take(2).collect::<Vec<_>>(), expected);
    assert!(text.contains("\nrun stopped: completed 0/1 stages, 1 failed in "));
  }

  fn live_run() -> Vec<EventRecord> {
    vec![
      rec(0, run_started(5)),
      rec(0, started("build", 1, "cargo")),
      rec(1, completed("build", 1, 1_200)),
      rec(1, started("test", 3, "cargo")),
      rec(2, failed("test", 3, "boom\nstack")),
      rec(
        2,
        Event::StageSkipped {
          stage: "docs".into(),
          reason: "condition".into(),
        },
      ),
      rec(
        2,
        Event::StageCancelled {
          stage: "deploy".into(),
          attempt: None,
          reason: "halt".into(),
        },
      ),
      rec(2, started("slow", 1, "shell")),
      rec(
        3,
        Event::StageTimedOut {
          stage: "slow".into(),
          attempt: 1,
          uses: "shell".into(),
          timeout_ms: 30_000,
          duration_ms: 30_000,
        },
      ),
      rec(
        4,
        run_completed(
          RunStatus::Failed,
          &[
            ("build", StageStatus::Completed),
            ("test", StageStatus::Failed),
            ("docs", StageStatus::Skipped),
            ("deploy", StageStatus::Cancelled),
            ("slow", StageStatus::TimedOut),
          ],
          Some("stage test failed"),
          14_200,
        ),
      ),
    ]
  }

  #[test]
  fn live_mode_scrolls_finished_stages_and_ends_with_a_summary() {
    let text = drive(ProgressMode::Live, false, live_run());
    for record in [
      "▶ run code-review started (5 stages, max_parallel 3)",
      "✓ build  1.2s",
      "✗ test  failed after 3 attempts: boom",
      "- docs skipped (condition)",
      "⊘ deploy cancelled",
      "⏱ slow timed out after 30s",
      "run failed: stage test failed",
    ] {
      assert!(
        text.contains(&format!("{record}\x1b[K\n")),
        "{record} in {text:?}"
      );
    }
    assert!(text.ends_with(
      "run failed: completed 1/5 stages, 1 failed, 1 timed out, 1 skipped, 1 cancelled in 14.2s\x1b[K\n\x1b[J"
    ));
    assert!(!has_sgr(&text), "{text:?}");
  }

  #[test]
  fn live_mode_draws_the_bar_and_colours_only_when_asked() {
    let buffer = Buffer::default();
    let (mut sink, handle) = start_with(
      ProgressMode::Live,
      "wf",
      4,
      false,
      Box::new(buffer.clone()),
      fixed_size,
    );
    sink.emit(&rec(0, run_started(4)));
    sink.emit(&rec(0, started("build", 1, "cargo")));
    sink.emit(&rec(0, started("lint", 1, "clippy")));
    sink.emit(&rec(1, completed("lint", 1, 300)));
    sink.flush();
    let text = buffer.text();
    assert!(text.contains("] 1/4 stages  1 running  00:0"), "{text:?}");
    assert!(text.contains(" build  running  "), "{text:?}");
    assert!(!has_sgr(&text));
    handle.finish();
    assert!(!has_sgr(&buffer.text()));

    let colored = drive(ProgressMode::Live, true, live_run());
    assert!(
      colored.contains("\x1b[32m✓\x1b[0m build  \x1b[2m1.2s\x1b[0m"),
      "{colored:?}"
    );
    assert!(has_sgr(&colored));
  }

  #[test]
  fn live_block_shows_stage_lines_and_the_bar() {
    let t0 = Instant::now();
    let mut state = State::new(ProgressMode::Live, false, "wf", 4, t0);
    state.limits.insert("test".into(), 3);
    state.handle(&rec(0, run_started(4)), t0);
    state.handle(&rec(0, started("build", 1, "cargo")), t0);
    state.handle(
      &rec(0, log("build", "stdout", "Compiling foo\r Compiling bar\n")),
      t0,
    );
    state.handle(&rec(0, started("test", 1, "cargo")), t0);
    state.handle(&rec(1, failed("test", 1, "flaky")), t0);
    state.handle(
      &rec(1, retrying("test", 1, 15_000, "flaky")),
      t0 + Duration::from_secs(1),
    );
    state.handle(
      &rec(
        2,
        Event::GateWaiting {
          stage: "approve-deploy".into(),
          message: Some("Deploy?".into()),
          kind: "approval".into(),
          timeout_ms: Some(60_000),
        },
      ),
      t0 + Duration::from_secs(2),
    );
    state.handle(&rec(2, completed("lint", 1, 10)), t0);
    let lines = state.block(t0 + Duration::from_millis(14_500), 80, 24);
    assert_eq!(
      lines,
      [
        "⠴ build           running  14.5s  Compiling bar",
        "↻ test            retrying in 2s  attempt 1/3  flaky",
        "? approve-deploy  waiting for approval  12.5s  Deploy?",
        "[#####---------------] 1/4 stages  1 running  1 retrying  1 waiting  00:14",
      ]
    );
    assert!(lines.iter().all(|line| !line.contains('\x1b')));
  }

  #[test]
  fn live_block_fits_the_terminal() {
    let t0 = Instant::now();
    let mut state = State::new(ProgressMode::Live, true, "wf", 40, t0);
    for i in 0..30 {
      state.handle(&rec(0, started(&format!("stage-{i:02}"), 1, "echo")), t0);
      state.handle(
        &rec(0, log(&format!("stage-{i:02}"), "stdout", &"x".repeat(200))),
        t0,
      );
    }
    let lines = state.block(t0 + Duration::from_secs(1), 40, 10);
    assert_eq!(lines.len(), 9);
    assert!(
      lines
        .get(7)
        .is_some_and(|l| l.contains("… and 23 more running")),
      "{lines:?}"
    );
    let visible = |line: &String| clean(line).chars().count();
    assert!(lines.iter().all(|line| visible(line) <= 39), "{lines:?}");
    // The bar narrows so the counts and the clock stay visible.
    let bar = lines.last().map(|line| clean(line)).unwrap_or_default();
    assert_eq!(bar, "[------] 0/40 stages  30 running  00:01");
    let tiny = state.block(t0, 40, 2);
    assert_eq!(tiny.len(), 1);
  }

  #[test]
  fn the_handle_steps_aside_for_prompts_and_cleans_up_when_dropped() {
    let buffer = Buffer::default();
    let (mut sink, handle) = start_with(
      ProgressMode::Live,
      "wf",
      2,
      false,
      Box::new(buffer.clone()),
      fixed_size,
    );
    sink.emit(&rec(0, started("a", 1, "echo")));
    sink.flush();
    {
      let _prompt = handle.suspend();
      // The stage line and the bar are erased, and nothing is redrawn meanwhile.
      let erased = buffer.text();
      assert!(erased.ends_with("\r\x1b[2A\x1b[J"), "{erased:?}");
      sink.flush();
      handle.print_line("queued while suspended");
      assert_eq!(buffer.text(), erased);
    }
    let text = buffer.text();
    assert!(text.contains("queued while suspended\x1b[K\n"), "{text:?}");
    drop(handle);
    let text = buffer.text();
    assert!(
      text.contains("run stopped: completed 0/2 stages in "),
      "{text:?}"
    );
    assert!(text.ends_with("\x1b[K\n\x1b[J"), "{text:?}");
  }

  #[test]
  fn none_mode_prints_nothing() {
    assert_eq!(drive(ProgressMode::None, true, small_run()), "");
  }

  #[test]
  fn helpers_format_times_and_clean_text() {
    assert_eq!(time_of("2026-11-22T14:03:07.123Z"), "14:03:07.123");
    assert_eq!(time_of("2026-11-22T14:03:07.123+01:00"), "14:03:07.123");
    assert_eq!(time_of("junk"), "junk");
    assert_eq!(clock(Duration::from_secs(14)), "00:14");
    assert_eq!(ticking(Duration::from_millis(402)), "0.4s");
    assert_eq!(ticking(Duration::from_secs(150)), "2m 30s");
    assert_eq!(clock(Duration::from_secs(3_723)), "1:02:03");
    assert_eq!(
      clean("a\x1b[1;31mb\x1b[0m\tc\x07\x1b]0;title\x07d"),
      "ab cd"
    );
    assert_eq!(first_line("\n  first\nsecond"), "first");
    assert_eq!(last_segment("10%\r50%\r\n"), "50%");
    assert_eq!(
      Line::new().push("abcdef", Style::Red).render(false, 4),
      "abc…"
    );
    assert_eq!(
      Line::new().push("abc", Style::Red).render(true, 9),
      "\x1b[31mabc\x1b[0m"
    );
    assert_eq!(ProgressMode::from_flag("plain"), Some(ProgressMode::Plain));
    assert_eq!(ProgressMode::from_flag("fancy"), None);
  }
}
