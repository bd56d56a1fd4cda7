//! Events as text for people: the one sentence that tells each event (the progress display's
//! plain lines and the REPL print it), styled lines cut to a width by visible characters, and
//! the pieces of stage output that are safe to print.
use crate::{
  decision::GateDecision,
  duration::format_duration,
  event::{Event, RunStatus},
  workflow::{Stage, Workflow},
};
use std::time::Duration;

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

/// `1 stage`, `2 stages`: a count with its noun in the right number.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
  if n == 1 {
    format!("1 {one}")
  } else {
    format!("{n} {many}")
  }
}

/// How an attempt is named: `attempt 2/3` when the stage may take more than one (`limit`, see
/// [`attempt_limit`]), `attempt N` past its limit or from a second attempt on; `None` for the
/// only attempt of a stage that has one.
pub(crate) fn attempt_label(attempt: u32, limit: u32) -> Option<String> {
  if limit > 1 && attempt <= limit {
    Some(format!("attempt {attempt}/{limit}"))
  } else if attempt > 1 {
    Some(format!("attempt {attempt}"))
  } else {
    None
  }
}

/// How many attempts a stage may take. Attempt numbers count fallbacks, so the limit is
/// retries plus fallbacks.
pub(crate) fn attempt_limit(stage: &Stage) -> u32 {
  let fallbacks = u32::try_from(stage.fallback.len()).unwrap_or(u32::MAX);
  stage.retry.max_attempts.saturating_add(fallbacks)
}

/// What a display knows about an event's stage beyond the event itself.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Known {
  /// The attempts the stage may take ([`attempt_limit`]); 0 when not known.
  pub(crate) limit: u32,
  /// Whether a decided stage is a gate (rather than a stage that needed a risk approval).
  pub(crate) gate: bool,
  /// Whether the stage fans out (its completion tells its items, not an attempt).
  pub(crate) fanned: bool,
}

impl Known {
  /// What `workflow` says about the stage of `event`.
  pub(crate) fn of(workflow: &Workflow, event: &Event) -> Self {
    let stage = event.stage().and_then(|id| workflow.stage(id));
    Self {
      limit: stage.map_or(0, attempt_limit),
      gate: stage.is_some_and(|s| s.gate().is_some()),
      fanned: stage.is_some_and(|s| s.fan_out.is_some()),
    }
  }
}

fn took(ms: u64) -> String {
  format_duration(Duration::from_millis(ms))
}

/// The one sentence that tells an event, as the progress display's plain lines and the REPL
/// print it: `stage build completed in 1.2s`. A failure or a timeout is told for its attempt;
/// once a display knows it was the stage's last, it says so with [`final_failure`] or
/// [`final_timeout`].
pub(crate) fn sentence(event: &Event, known: Known) -> String {
  match event {
    Event::RunStarted {
      workflow,
      max_parallel,
      stages,
      ..
    } => {
      format!(
        "run {workflow} started ({}, max_parallel {max_parallel})",
        count(*stages, "stage", "stages")
      )
    }
    Event::StageStarted {
      stage,
      attempt,
      uses,
      ..
    } => {
      let label =
        attempt_label(*attempt, known.limit).unwrap_or_else(|| format!("attempt {attempt}"));
      format!("stage {stage} started ({label}, uses {uses})")
    }
    Event::StageRetrying {
      stage,
      attempt,
      delay_ms,
      error,
      ..
    } => format!(
      "stage {stage} retrying in {} after attempt {attempt}: {}",
      took(*delay_ms),
      first_line(error)
    ),
    Event::StageCompleted {
      stage,
      reused_from: Some(run),
      ..
    } => format!("stage {stage} reused the outputs of run {run}"),
    Event::StageCompleted {
      stage,
      duration_ms,
      summary: Some(summary),
      ..
    } if known.fanned => format!(
      "stage {stage} completed in {} ({summary})",
      took(*duration_ms)
    ),
    Event::StageCompleted {
      stage,
      attempt,
      duration_ms,
      ..
    } => format!(
      "stage {stage} completed in {}{}",
      took(*duration_ms),
      on_attempt(*attempt, " (attempt {})")
    ),
    Event::StageFailed {
      stage,
      attempt,
      error,
      ..
    } => format!(
      "stage {stage} {}failed: {}",
      which_attempt(attempt.unwrap_or(1), known),
      first_line(error)
    ),
    Event::StageTimedOut {
      stage,
      attempt,
      timeout_ms,
      ..
    } => format!(
      "stage {stage} {}timed out after {}",
      which_attempt(*attempt, known),
      took(*timeout_ms)
    ),
    Event::StageSkipped { stage, reason } => format!("stage {stage} skipped ({reason})"),
    Event::StageCancelled { stage, reason, .. } => format!("stage {stage} cancelled ({reason})"),
    Event::GateWaiting {
      stage,
      message,
      kind,
      timeout_ms,
    } => {
      let mut text = if kind == "approval" {
        format!("stage {stage} waiting for approval")
      } else {
        format!("gate {stage} waiting")
      };
      if let Some(timeout) = timeout_ms {
        text.push_str(&format!(" (timeout {})", took(*timeout)));
      }
      if let Some(message) = message.as_deref().map(first_line).filter(|m| !m.is_empty()) {
        text.push_str(&format!(": {message}"));
      }
      text
    }
    Event::GateDecided {
      stage,
      decision,
      decided_by,
      reason,
      ..
    } => {
      let noun = if known.gate { "gate" } else { "stage" };
      let verb = match decision {
        GateDecision::Approve => "approved",
        GateDecision::Reject => "rejected",
      };
      let mut text = format!("{noun} {stage} {verb} by {decided_by}");
      if let Some(reason) = reason.as_deref().map(first_line).filter(|r| !r.is_empty()) {
        text.push_str(&format!(": {reason}"));
      }
      text
    }
    Event::Log {
      stage,
      stream,
      message,
      compensation,
      ..
    } => {
      let line = last_segment(message);
      let source = if *compensation { " compensation" } else { "" };
      if stream == "stderr" {
        format!("stage {stage}{source} stderr: {line}")
      } else {
        format!("stage {stage}{source}: {line}")
      }
    }
    Event::RunPaused { reason, stage } => format!("run {}", paused(reason, stage.as_deref())),
    Event::RunResumed {} => "run resumed".to_string(),
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
        text.push_str(&format!(" in {}", took(*delay)));
      }
      if let Some(uses) = uses {
        text.push_str(&format!(" with {uses}"));
      }
      if let Some(error) = error {
        text.push_str(&format!(": {}", first_line(error)));
      }
      text
    }
    Event::CompensationStarted { stage, uses } => {
      format!("compensation for {stage} started (uses {uses})")
    }
    Event::CompensationCompleted {
      stage, duration_ms, ..
    } => format!(
      "compensation for {stage} completed in {}",
      took(*duration_ms)
    ),
    Event::CompensationFailed { stage, error, .. } => {
      format!("compensation for {stage} failed: {}", first_line(error))
    }
    Event::RunCompleted {
      status,
      error,
      duration_ms,
      ..
    } => {
      let word = run_word(*status);
      match error.as_deref().map(first_line).filter(|e| !e.is_empty()) {
        Some(error) if *status != RunStatus::Completed => {
          // "suspended: waiting for ..." is not said as "run suspended: suspended: waiting ...".
          let error = error
            .strip_prefix(word)
            .and_then(|rest| rest.strip_prefix(": "))
            .unwrap_or(&error);
          format!("run {word}: {error}")
        }
        _ => format!("run {word} in {}", took(*duration_ms)),
      }
    }
  }
}

/// `attempt N ` before what happened to one attempt, unless the stage has only the one.
fn which_attempt(attempt: u32, known: Known) -> String {
  if known.limit == 1 && attempt == 1 {
    String::new()
  } else {
    format!("attempt {attempt} ")
  }
}

/// ` (attempt N)` (or another `pattern` with `{}`) from a second attempt on, else nothing.
fn on_attempt(attempt: u32, pattern: &str) -> String {
  if attempt > 1 {
    pattern.replace("{}", &attempt.to_string())
  } else {
    String::new()
  }
}

/// Why a run paused, as the progress display and the REPL say it.
pub(crate) fn paused(reason: &str, stage: Option<&str>) -> String {
  match stage {
    Some(stage) if reason == "breakpoint" => format!("paused at breakpoint (stage {stage})"),
    _ => format!("paused ({reason})"),
  }
}

/// A run status as a word in a sentence: a waiting run is `suspended`.
pub(crate) fn run_word(status: RunStatus) -> &'static str {
  match status {
    RunStatus::Waiting => "suspended",
    other => other.as_str(),
  }
}

/// What a stage's last failure was, after `attempt` attempts: `failed (contract) after 3
/// attempts: ...`, or `rejected: ...` for a rejected approval.
pub(crate) fn final_failure(attempt: u32, reason: &str, error: &str) -> String {
  if reason == "rejected" {
    return format!("rejected: {error}");
  }
  let kind = if reason == "error" {
    String::new()
  } else {
    format!(" ({reason})")
  };
  format!(
    "failed{kind}{}: {error}",
    on_attempt(attempt, " after {} attempts")
  )
}

/// What a stage's last attempt running out of time was: `timed out after 30s on attempt 2`.
pub(crate) fn final_timeout(attempt: u32, timeout_ms: u64) -> String {
  format!(
    "timed out after {}{}",
    took(timeout_ms),
    on_attempt(attempt, " on attempt {}")
  )
}

/// An event as the REPL prints it while a run is stepped: a mark in the event's colour, then
/// its [`sentence`]; a completed stage also shows its outputs, as a debugger would. `None`
/// for the events the REPL leaves to `status` and `inspect`.
pub(crate) fn describe(event: &Event, known: Known) -> Option<Line> {
  #[expect(
    clippy::match_same_arms,
    reason = "one arm per kind of event reads best"
  )]
  let (mark, style) = match event {
    Event::StageStarted { .. } => ("▶", Style::Plain),
    Event::StageCompleted { .. } => ("✓", Style::Green),
    Event::StageFailed { .. } => ("✗", Style::Red),
    Event::StageTimedOut { .. } => ("⏱", Style::Red),
    Event::StageRetrying { .. } | Event::RecoveryDecided { .. } => ("↻", Style::Plain),
    Event::StageSkipped { .. } => ("-", Style::Plain),
    Event::StageCancelled { .. } => ("⊘", Style::Yellow),
    Event::GateWaiting { .. } => ("?", Style::Yellow),
    Event::GateDecided {
      decision: GateDecision::Approve,
      ..
    } => ("✓", Style::Green),
    Event::GateDecided { .. } => ("✗", Style::Red),
    Event::Log { .. } => (" ", Style::Plain),
    Event::RunPaused { reason, .. } if reason == "breakpoint" => ("⏸", Style::Yellow),
    Event::RunCompleted {
      status: RunStatus::Completed,
      ..
    } => ("✓", Style::Green),
    Event::RunCompleted { .. } => ("✗", Style::Red),
    Event::CompensationStarted { .. } => ("↺", Style::Plain),
    _ => return None,
  };
  let mut line = Line::new()
    .push(mark, style)
    .push(format!(" {}", sentence(event, known)), Style::Plain);
  if let Event::StageCompleted { outputs, .. } = event {
    line = line.push(
      format!(" {}", one_line(&outputs.to_string(), 80)),
      Style::Dim,
    );
  }
  Some(line)
}
