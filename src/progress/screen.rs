//! The terminal side: the writer and what is on screen, redraws in place, the terminal size.
use super::*;

/// The writer and what is on the screen.
pub(super) struct Output {
  pub(super) out: Box<dyn Write + Send>,
  /// Lines of the live block currently on screen, under the cursor's line.
  pub(super) drawn: usize,
  pub(super) last_block: Vec<String>,
  pub(super) last_paint: Option<Instant>,
  pub(super) suspended: bool,
}

impl Output {
  pub(super) fn write(&mut self, text: &str) {
    // Progress is best effort: a closed stderr must not fail or stop the run.
    let _ = self.out.write_all(text.as_bytes());
    let _ = self.out.flush();
  }
}

/// Why a redraw happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Paint {
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
pub(super) fn paint(shared: &Shared, now: Instant, how: Paint) {
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

/// Columns and rows of the terminal on stderr, 80x24 when it has none.
pub(super) fn terminal_size() -> (usize, usize) {
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
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
  mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
