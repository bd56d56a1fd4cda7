//! The display's knowledge of the run: a fold over its events into active stages, settled
//! ones, a failure held until the next event tells whether it was final, and the lines
//! waiting to be written.
use super::*;
use crate::event_text::{Line, Style, first_line, last_segment, time_of};
use view::{status_style, status_word};

/// What the display knows about the run: a fold over its events.
pub(super) struct State {
  pub(super) mode: ProgressMode,
  pub(super) color: bool,
  pub(super) workflow: String,
  pub(super) total: usize,
  pub(super) started: Instant,
  /// Attempts allowed per stage, when the caller told.
  pub(super) limits: HashMap<String, u32>,
  /// Stages with something under way, in the order they started.
  pub(super) active: IndexMap<String, Active>,
  /// Final statuses seen so far.
  pub(super) settled: IndexMap<String, StageStatus>,
  /// Gate kind (`gate` or `approval`) of stages that waited for a decision.
  pub(super) gates: HashMap<String, String>,
  /// Stages whose final record the gate decision line already told (live mode).
  pub(super) told: HashSet<String>,
  /// A failed or timed-out attempt whose meaning (retry, fallback or final) the next event
  /// tells.
  pub(super) held: Option<Held>,
  pub(super) paused: Option<String>,
  pub(super) outcome: Option<Outcome>,
  pub(super) seen_events: bool,
  /// Finished lines waiting to be written (plain lines, or records above the live block).
  pub(super) pending: Vec<String>,
}

/// A stage with something under way.
pub(super) struct Active {
  pub(super) attempt: u32,
  pub(super) since: Instant,
  pub(super) phase: Phase,
  /// The last log line, gate message or retry error, shown dimmed.
  pub(super) detail: Option<String>,
}

/// What an active stage is doing.
pub(super) enum Phase {
  Running,
  Retrying { due: Instant },
  Waiting { approval: bool },
  Compensating { uses: String },
}

/// A failed or timed-out attempt not yet known to be final.
pub(super) struct Held {
  pub(super) ts: String,
  pub(super) stage: String,
  pub(super) attempt: Option<u32>,
  pub(super) what: HeldWhat,
}

pub(super) enum HeldWhat {
  Failed { error: String, reason: String },
  TimedOut { timeout_ms: u64 },
}

/// The run's end, from `run_completed`.
pub(super) struct Outcome {
  pub(super) status: RunStatus,
  pub(super) stages: IndexMap<String, StageStatus>,
  pub(super) duration_ms: u64,
}

impl State {
  pub(super) fn new(
    mode: ProgressMode,
    color: bool,
    workflow: &str,
    total: usize,
    now: Instant,
  ) -> Self {
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
  pub(super) fn plain(&mut self, ts: &str, text: &str) {
    if self.mode == ProgressMode::Plain {
      self.pending.push(format!("{} {text}", time_of(ts)));
    }
  }

  /// Queues a live-mode record to scroll above the block.
  pub(super) fn record(&mut self, line: Line) {
    if self.mode == ProgressMode::Live {
      self.pending.push(line.render(self.color, usize::MAX));
    }
  }

  pub(super) fn attempt_label(&self, stage: &str, attempt: u32) -> Option<String> {
    let limit = self.limits.get(stage).copied().unwrap_or(0);
    if limit > 1 && attempt <= limit {
      Some(format!("attempt {attempt}/{limit}"))
    } else if attempt > 1 {
      Some(format!("attempt {attempt}"))
    } else {
      None
    }
  }

  pub(super) fn settle(&mut self, stage: &str, status: StageStatus) {
    self.active.shift_remove(stage);
    self.settled.insert(stage.to_owned(), status);
  }

  /// Marks a stage active (again), keeping its place in the block.
  pub(super) fn activate(
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

  pub(super) fn handle(&mut self, record: &EventRecord, now: Instant) {
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

  pub(super) fn end_compensation(&mut self, stage: &str) {
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
  pub(super) fn resolve_held(&mut self, next: Option<&Event>) {
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

  pub(super) fn settle_held(&mut self, held: Held) {
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
}
