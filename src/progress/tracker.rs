//! The display's knowledge of the run: a fold over its events into active stages, settled
//! ones, a failure held until the next event tells whether it was final, and the lines
//! waiting to be written.
use super::*;
use crate::event_text::{
  self, Known, Line, Style, final_failure, final_timeout, first_line, last_segment, time_of,
};
use view::status_style;

/// What the display knows about the run: a fold over its events.
pub(super) struct State {
  pub(super) mode: ProgressMode,
  pub(super) color: bool,
  pub(super) workflow: String,
  pub(super) total: usize,
  pub(super) started: Instant,
  /// Attempts allowed per stage, when the caller told.
  pub(super) limits: HashMap<String, u32>,
  /// Stages with `for_each` or `matrix`.
  pub(super) fanned: HashSet<String>,
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
  /// The attempt's own sentence, told if the next event makes it one failed attempt of many.
  pub(super) sentence: String,
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
  /// The workflow's outputs, masked like every event.
  pub(super) outputs: serde_json::Value,
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
      fanned: HashSet::new(),
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
    event_text::attempt_label(attempt, self.limits.get(stage).copied().unwrap_or(0))
  }

  /// What the display knows of an event's stage, for wording the event.
  fn known(&self, event: &Event) -> Known {
    let stage = event.stage().unwrap_or_default();
    Known {
      limit: self.limits.get(stage).copied().unwrap_or(0),
      gate: self.gates.get(stage).is_none_or(|kind| kind != "approval"),
      fanned: self.fanned.contains(stage),
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

  /// A stage (or item) waits out a retry delay.
  fn retrying(&mut self, stage: &str, attempt: u32, delay_ms: u64, error: &str, now: Instant) {
    let due = now + Duration::from_millis(delay_ms);
    self.activate(
      stage,
      attempt,
      Phase::Retrying { due },
      Some(first_line(error)),
      now,
    );
  }

  /// A running stage's (or item's) latest line becomes its detail.
  fn logged(&mut self, stage: &str, message: &str) {
    let line = last_segment(message);
    if let Some(active) = self.active.get_mut(stage)
      && matches!(active.phase, Phase::Running)
      && !line.trim().is_empty()
    {
      active.detail = Some(line.trim().to_owned());
    }
  }

  /// An item of a fanned-out stage: shown as `test[3]` while it runs, a line of its own when it
  /// fails; its stage's own events count it among the stages.
  fn handle_item(&mut self, record: &EventRecord, now: Instant) {
    let event = record.for_display();
    let known = self.known(&record.event);
    let sentence = event_text::sentence(&event, known);
    self.plain(&record.ts, &sentence);
    match &*event {
      Event::StageStarted { stage, attempt, .. } => {
        self.activate(stage, *attempt, Phase::Running, None, now);
      }
      Event::StageRetrying {
        stage,
        attempt,
        delay_ms,
        error,
        ..
      } => self.retrying(stage, *attempt, *delay_ms, error, now),
      Event::StageCompleted { stage, .. }
      | Event::StageSkipped { stage, .. }
      | Event::StageCancelled { stage, .. } => {
        self.active.shift_remove(stage.as_str());
      }
      Event::StageFailed { stage, error, .. } => {
        self.active.shift_remove(stage.as_str());
        self.record(Line::new().push("✗", Style::Red).push(
          format!(" {stage} failed: {}", first_line(error)),
          Style::Plain,
        ));
      }
      Event::StageTimedOut { stage, .. } => {
        self.active.shift_remove(stage.as_str());
        self.record(
          Line::new()
            .push("⏱", Style::Red)
            .push(format!(" {stage} timed out"), Style::Plain),
        );
      }
      Event::Log { stage, message, .. } => self.logged(stage, message),
      _ => {}
    }
  }

  pub(super) fn handle(&mut self, record: &EventRecord, now: Instant) {
    self.seen_events = true;
    if record.item.is_some() {
      self.handle_item(record, now);
      return;
    }
    self.resolve_held(Some(&record.event));
    let ts = record.ts.as_str();
    let sentence = event_text::sentence(&record.event, self.known(&record.event));
    // A failure or timeout waits in `held` until the next event says what it meant.
    let held = matches!(
      record.event,
      Event::StageFailed { .. } | Event::StageTimedOut { .. }
    );
    if !held {
      self.plain(ts, &sentence);
    }
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
        self.record(Line::new().push(format!("▶ {text}"), Style::Dim));
      }
      Event::StageStarted { stage, attempt, .. } => {
        self.activate(stage, *attempt, Phase::Running, None, now);
      }
      Event::StageRetrying {
        stage,
        attempt,
        delay_ms,
        error,
        ..
      } => self.retrying(stage, *attempt, *delay_ms, error, now),
      Event::StageCompleted {
        stage,
        attempt,
        duration_ms,
        summary,
        ..
      } => {
        self.settle(stage, StageStatus::Completed);
        let took = format_duration(Duration::from_millis(*duration_ms));
        let on = if let (true, Some(summary)) = (self.fanned.contains(stage.as_str()), summary) {
          format!(" ({summary})")
        } else if *attempt > 1 {
          format!(" (attempt {attempt})")
        } else {
          String::new()
        };
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
          sentence: sentence.clone(),
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
          sentence: sentence.clone(),
          stage: stage.clone(),
          attempt: Some(*attempt),
          what: HeldWhat::TimedOut {
            timeout_ms: *timeout_ms,
          },
        });
      }
      Event::StageSkipped { stage, reason } => {
        self.settle(stage, StageStatus::Skipped);
        self.record(Line::new().push(format!("- {stage} skipped ({reason})"), Style::Dim));
      }
      Event::StageCancelled { stage, .. } => {
        self.settle(stage, StageStatus::Cancelled);
        self.record(Line::new().push(format!("⊘ {stage} cancelled"), Style::Yellow));
      }
      Event::GateWaiting {
        stage,
        message,
        kind,
        ..
      } => {
        let approval = kind == "approval";
        self.gates.insert(stage.clone(), kind.clone());
        let message = message.as_deref().map(first_line).filter(|m| !m.is_empty());
        self.activate(stage, 0, Phase::Waiting { approval }, message, now);
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
      Event::Log { stage, message, .. } => self.logged(stage, message),
      Event::RunPaused { reason, stage } => {
        self.paused = Some(event_text::paused(reason, stage.as_deref()));
      }
      Event::RunResumed {} => {
        self.paused = None;
      }
      Event::RecoveryDecided { .. } => {}
      Event::CompensationStarted { stage, uses } => {
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
        self.record(Line::new().push(
          format!("↺ {stage} compensated by {uses} in {took}"),
          Style::Dim,
        ));
      }
      Event::CompensationFailed { stage, uses, error } => {
        self.end_compensation(stage);
        let error = first_line(error);
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
        outputs,
      } => {
        for (stage, stage_status) in stages {
          if stage_status.is_settled() {
            self.settled.insert(stage.clone(), *stage_status);
          }
        }
        self.active.clear();
        self.paused = None;
        let failed_with_error = error.as_deref().is_some_and(|e| !first_line(e).is_empty());
        if failed_with_error && *status != RunStatus::Completed {
          let style = status_style(Some(*status));
          self.record(Line::new().push(sentence.clone(), style));
        }
        self.outcome = Some(Outcome {
          status: *status,
          stages: stages.clone(),
          duration_ms: *duration_ms,
          outputs: outputs.clone(),
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
        self.plain(&held.ts, &held.sentence);
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
        let what = final_failure(attempt, reason, error);
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
        let what = final_timeout(attempt, *timeout_ms);
        self.plain(&held.ts, &format!("stage {stage} {what}"));
        self.record(Line::new().push(format!("⏱ {stage} {what}"), Style::Red));
      }
    }
  }
}
