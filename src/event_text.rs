//! Events as text for people: styled lines cut to a width by visible characters, the pieces
//! of stage output that are safe to print, and the one-line account of an event that the
//! REPL prints and the progress display's records share their look with.
use crate::{decision::GateDecision, event::Event};

/// The colours events are shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
  /// No colour.
  Plain,
  /// Done well.
  Green,
  /// Failed.
  Red,
  /// Under way or waiting.
  Yellow,
  /// Of less interest.
  Dim,
}

impl Style {
  /// The ANSI escape that starts the colour.
  pub(crate) fn code(self) -> &'static str {
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
pub(crate) struct Line(Vec<(String, Style)>);

impl Line {
  /// An empty line.
  pub(crate) fn new() -> Self {
    Self::default()
  }

  /// The line with `text` in `style` added.
  pub(crate) fn push(mut self, text: impl Into<String>, style: Style) -> Self {
    self.0.push((text.into(), style));
    self
  }

  /// The line with `other`'s pieces after its own.
  pub(crate) fn append(mut self, other: Self) -> Self {
    self.0.extend(other.0);
    self
  }

  /// Visible characters.
  pub(crate) fn width(&self) -> usize {
    self.0.iter().map(|(text, _)| text.chars().count()).sum()
  }

  /// The text, cut to `max` characters (the last one an ellipsis when cut), coloured when
  /// `color`.
  pub(crate) fn render(&self, color: bool, max: usize) -> String {
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
pub(crate) fn time_of(ts: &str) -> &str {
  let time = ts.split_once('T').map_or(ts, |(_, time)| time);
  let end = time
    .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == '.'))
    .unwrap_or(time.len());
  time.get(..end).filter(|t| !t.is_empty()).unwrap_or(ts)
}

/// The first non-empty line of a message, made safe to print.
pub(crate) fn first_line(text: &str) -> String {
  let line = text
    .lines()
    .map(str::trim)
    .find(|line| !line.is_empty())
    .unwrap_or("");
  clean(line)
}

/// What a terminal would show of a log line: the text after its last carriage return (a
/// stage's own progress bar), made safe to print.
pub(crate) fn last_segment(text: &str) -> String {
  let text = text.trim_end_matches(['\r', '\n']);
  let segment = text
    .rsplit(['\r', '\n'])
    .find(|s| !s.trim().is_empty())
    .unwrap_or("");
  clean(segment).trim_end().to_owned()
}

/// Drops escape sequences and control characters from text that came from stages, so their
/// output can neither move our cursor nor break our one-line layout.
pub(crate) fn clean(text: &str) -> String {
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

/// `text`'s first line, cut to `width` characters (the last one `…` when it was longer).
pub(crate) fn one_line(text: &str, width: usize) -> String {
  truncate(text.lines().next().unwrap_or_default(), width)
}

/// `text` cut to `width` characters, the last one `…` when it was longer.
pub(crate) fn truncate(text: &str, width: usize) -> String {
  if text.chars().count() <= width {
    return text.to_string();
  }
  let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
  out.push('…');
  out
}

/// One compact line for an event worth showing on its own (the REPL's account of a run), or
/// `None` for events that only matter to the fold.
pub(crate) fn describe(event: &Event) -> Option<Line> {
  let (text, style) = match event {
    Event::StageStarted {
      stage,
      attempt,
      uses,
      ..
    } => (
      format!("▶ {stage} started (attempt {attempt}, {uses})"),
      Style::Plain,
    ),
    Event::StageCompleted {
      stage,
      outputs,
      duration_ms,
      ..
    } => (
      format!(
        "✓ {stage} completed in {duration_ms}ms {}",
        one_line(&outputs.to_string(), 80)
      ),
      Style::Green,
    ),
    Event::StageFailed { stage, error, .. } => (
      format!("✗ {stage} failed: {}", one_line(error, 80)),
      Style::Red,
    ),
    Event::StageTimedOut {
      stage, timeout_ms, ..
    } => (
      format!("✗ {stage} timed out after {timeout_ms}ms"),
      Style::Red,
    ),
    Event::StageRetrying {
      stage,
      attempt,
      delay_ms,
      error,
      ..
    } => (
      format!(
        "↻ {stage} attempt {attempt} failed ({}); retry in {delay_ms}ms",
        one_line(error, 60)
      ),
      Style::Plain,
    ),
    Event::StageSkipped { stage, reason } => {
      (format!("- {stage} skipped ({reason})"), Style::Plain)
    }
    Event::StageCancelled { stage, reason, .. } => {
      (format!("- {stage} cancelled ({reason})"), Style::Plain)
    }
    Event::GateWaiting { stage, message, .. } => (
      format!(
        "? {stage} waits for a decision{}",
        message
          .as_deref()
          .map_or_else(String::new, |m| format!(": {m}"))
      ),
      Style::Yellow,
    ),
    Event::GateDecided {
      stage,
      decision,
      decided_by,
      ..
    } => (
      format!(
        "{stage} {} by {decided_by}",
        match decision {
          GateDecision::Approve => "approved",
          GateDecision::Reject => "rejected",
        }
      ),
      Style::Plain,
    ),
    Event::RecoveryDecided {
      stage,
      strategy,
      action,
      ..
    } => (
      format!("{stage}: recovery `{strategy}` chose {action}"),
      Style::Plain,
    ),
    Event::Log { stage, message, .. } => (
      format!("  {stage}: {}", one_line(message, 100)),
      Style::Plain,
    ),
    Event::RunPaused {
      reason,
      stage: Some(stage),
    } if reason == "breakpoint" => (format!("⏸ breakpoint before {stage}"), Style::Yellow),
    Event::RunCompleted { status, error, .. } => (
      format!(
        "run {}{}",
        status.as_str(),
        error
          .as_deref()
          .map_or_else(String::new, |e| format!(": {}", one_line(e, 80)))
      ),
      Style::Plain,
    ),
    Event::CompensationStarted { stage, uses } => {
      (format!("↺ compensating {stage} with {uses}"), Style::Plain)
    }
    _ => return None,
  };
  Some(Line::new().push(text, style))
}
