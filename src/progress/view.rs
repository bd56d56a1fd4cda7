//! What the display draws from the tracker: the live block (a line per active stage and the
//! bar) and the closing summary.
use super::*;
use crate::event_text::{Line, Style};
use tracker::{Active, Phase, State};

impl State {
  /// The closing line: the run's status and a tally of the stages, `None` when nothing
  /// happened at all.
  pub(super) fn summary(&self, now: Instant) -> Option<String> {
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
      Some(status) => format!("run {}: {text}", crate::event_text::run_word(status)),
      None => format!("run stopped: {text}"),
    };
    let mut summary = Line::new()
      .push(text, status_style(status))
      .render(self.color, usize::MAX);
    if let Some(serde_json::Value::Object(outputs)) = outcome.map(|o| &o.outputs)
      && !outputs.is_empty()
    {
      summary.push_str("\noutputs:");
      for (name, value) in outputs {
        summary.push_str(&format!("\n  {name}: {}", output_text(value)));
      }
    }
    Some(summary)
  }

  /// The live block: one line per active stage (as many as fit) and the bar.
  pub(super) fn block(&self, now: Instant, cols: usize, rows: usize) -> Vec<String> {
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

  pub(super) fn stage_line(
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
  pub(super) fn bar(&self, now: Instant, width: usize) -> Line {
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
    Line::new()
      .push("[", Style::Plain)
      .push("#".repeat(filled), Style::Green)
      .push("-".repeat(bar_width - filled), Style::Dim)
      .push("] ", Style::Plain)
      .append(tail)
  }
}

pub(super) fn status_style(status: Option<RunStatus>) -> Style {
  match status {
    Some(RunStatus::Completed) => Style::Green,
    Some(RunStatus::Failed) => Style::Red,
    _ => Style::Yellow,
  }
}

/// A stage's elapsed time in steady tenths (`0.4s`, `12.3s`), then as `format_duration` does.
pub(super) fn ticking(elapsed: Duration) -> String {
  if elapsed < Duration::from_mins(1) {
    format!("{}.{}s", elapsed.as_secs(), elapsed.subsec_millis() / 100)
  } else {
    format_duration(elapsed)
  }
}

/// Elapsed run time as on a stopwatch: `00:14`, `1:02:03`.
pub(super) fn clock(elapsed: Duration) -> String {
  let secs = elapsed.as_secs();
  let (h, m, s) = (secs / 3_600, secs / 60 % 60, secs % 60);
  if h > 0 {
    format!("{h}:{m:02}:{s:02}")
  } else {
    format!("{m:02}:{s:02}")
  }
}

/// The most of an output's text the summary shows; `--output json` has the rest.
pub(super) const OUTPUT_CHARS: usize = 200;

/// One output as the summary shows it: text as it is, other values as compact JSON, cut to
/// its first line and [`OUTPUT_CHARS`] characters with a note of what was left out.
fn output_text(value: &serde_json::Value) -> String {
  let text = match value {
    serde_json::Value::String(s) => s.clone(),
    other => other.to_string(),
  };
  let first = text.lines().next().unwrap_or_default();
  let mut shown: String = first.chars().take(OUTPUT_CHARS).collect();
  let total = text.chars().count();
  let left = total - shown.chars().count();
  if left > 0 {
    let lines = text.lines().count();
    let what = if lines > 1 {
      format!("{lines} lines, {total} characters")
    } else {
      format!("{total} characters")
    };
    shown.push_str(&format!(
      " … (cut: {what}; `--output json` prints it whole)"
    ));
  }
  shown
}
