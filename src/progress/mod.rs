//! The progress display of `swdl run` (docs/running.md): a block of active stages and
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

mod screen;
#[cfg(test)]
mod tests;
mod tracker;
mod view;

use screen::{Output, Paint, lock, paint, terminal_size};
use tracker::State;

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProgressMode {
  /// A block redrawn in place with ANSI escapes: for a terminal.
  Live,
  /// One timestamped line per event, no escapes: for pipes and CI.
  Plain,
  /// Nothing.
  None,
}

impl ProgressMode {
  /// The mode `--progress auto` means here: live when stderr is a capable terminal, else plain.
  pub(crate) fn auto() -> Self {
    let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
    if std::io::stderr().is_terminal() && !dumb {
      Self::Live
    } else {
      Self::Plain
    }
  }
}

/// Starts a progress display writing to `out` (normally `Box::new(std::io::stderr())`); `color`
/// only matters in live mode. Hand the sink to the runtime and call
/// [`ProgressHandle::finish`] once the run is over.
pub(crate) fn start(
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
pub(crate) struct ProgressSink {
  shared: Arc<Shared>,
  ticking: bool,
}

impl ProgressSink {
  /// Sets how many attempts each stage may take (retries plus fallbacks), so lines can read
  /// `attempt 2/3`; stages left out show `attempt N` from their second attempt on.
  pub(crate) fn with_attempt_limits<I>(self, limits: I) -> Self
  where
    I: IntoIterator<Item = (String, u32)>,
  {
    lock(&self.shared.state).limits.extend(limits);
    self
  }

  /// Names the stages that fan out, whose completion counts items rather than attempts.
  pub(crate) fn with_fanned<I>(self, stages: I) -> Self
  where
    I: IntoIterator<Item = String>,
  {
    lock(&self.shared.state).fanned.extend(stages);
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
pub(crate) struct ProgressHandle {
  shared: Arc<Shared>,
  stop: Option<mpsc::Sender<()>>,
  ticker: Option<JoinHandle<()>>,
  finished: bool,
}

impl ProgressHandle {
  /// Stops redrawing, erases the live block and writes the final summary line.
  pub(crate) fn finish(mut self) {
    self.close();
  }

  /// Erases the live block and stops redrawing until the guard is dropped, so an interactive
  /// prompt (a gate decision) can use the terminal.
  pub(crate) fn suspend(&self) -> Suspended<'_> {
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
pub(crate) struct Suspended<'a> {
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
