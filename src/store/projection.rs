//! What the store derives from the events: the rows written beside each event (the run's
//! status, applied decisions), and the attempts, log lines and decisions `swdl runs RUN_ID`
//! shows, read back from the events rather than written twice.
use super::*;
use rusqlite::params;

impl Store {
  /// The attempts of run `id`, in the order they started (see [`attempts_of`]).
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(attempts_of(&self.events(id)?))
  }

  /// The log lines of run `id`, in order.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn logs(&self, id: &str) -> Result<Vec<LogRow>, StoreError> {
    Ok(logs_of(&self.events(id)?))
  }

  /// Every gate, approval and recovery decision of run `id`, in order.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn decisions(&self, id: &str) -> Result<Vec<DecisionRow>, StoreError> {
    Ok(decisions_of(&self.events(id)?))
  }
}

/// Rows per multi-row `INSERT` of events.
pub(super) const ROWS_PER_INSERT: usize = 32;

/// An event ready to be written: its columns, and what it changes in the run's row.
pub(super) struct Encoded {
  pub(super) seq: i64,
  pub(super) run: Arc<str>,
  pub(super) ts: String,
  pub(super) name: &'static str,
  pub(super) stage: Option<String>,
  /// The event's JSON, its large strings replaced by their hash.
  pub(super) body: String,
  /// Where those hashes stand, if any (see [`values`]).
  pub(super) refs: Option<String>,
  /// The large strings taken out of the event (and of its effect's outputs), by hash.
  pub(super) blobs: Vec<(String, String)>,
  pub(super) effect: Option<Effect>,
}

/// What an event changes besides the events table.
pub(super) enum Effect {
  /// A decision recorded while the run was suspended has been applied.
  Decided(String),
  /// The run's status, and with `run_completed` its end.
  Status {
    status: &'static str,
    finished: bool,
    /// The workflow outputs' JSON, large strings replaced by their hash.
    outputs: Option<String>,
    /// Where those hashes stand, if any.
    outputs_refs: Option<String>,
    error: Option<String>,
    /// The run's duration as `run_completed` gives it.
    duration_ms: Option<u64>,
  },
}

impl Encoded {
  pub(super) fn new(seq: i64, record: &EventRecord) -> Result<Self, StoreError> {
    let body = serde_json::to_string(record).map_err(|e| StoreError::Refused(e.to_string()))?;
    Ok(Self::with_body(seq, record, body))
  }

  /// `record` with `body`, its JSON as [`serde_json::to_string`] writes it.
  pub(super) fn with_body(seq: i64, record: &EventRecord, body: String) -> Self {
    let status = |status: &'static str| Effect::Status {
      status,
      finished: false,
      outputs: None,
      outputs_refs: None,
      error: None,
      duration_ms: None,
    };
    let split = values::split(body);
    let effect = match &record.event {
      Event::GateDecided { stage, .. } => Some(Effect::Decided(stage.clone())),
      Event::RunPaused { .. } => Some(status("paused")),
      Event::RunResumed {} => Some(status("running")),
      Event::RunCompleted {
        status,
        outputs,
        error,
        duration_ms,
        ..
      } => {
        // The outputs' large strings are among the event's, already hashed: the row takes
        // the event's outputs as split.
        let (outputs, outputs_refs) = match &split.refs {
          None => (outputs.to_string(), None),
          Some(refs) => values::part(&split.body, refs, "/outputs"),
        };
        Some(Effect::Status {
          status: status.as_str(),
          finished: *status != RunStatus::Waiting,
          outputs: Some(outputs),
          outputs_refs,
          error: error.clone(),
          duration_ms: Some(*duration_ms),
        })
      }
      _ => None,
    };
    Self {
      seq,
      run: Arc::clone(&record.run),
      ts: record.ts.clone(),
      name: record.event.name(),
      stage: record.event.stage().map(str::to_string),
      body: split.body,
      refs: split.refs,
      blobs: split.blobs,
      effect,
    }
  }
}

/// Inserts events inside `tx`, all in one statement.
pub(super) fn insert_rows(
  tx: &rusqlite::Transaction<'_>,
  events: &[Encoded],
  ts_ms: i64,
) -> Result<(), StoreError> {
  let mut sql =
    String::from("INSERT INTO events (run, seq, ts, ts_ms, event, stage, body, refs) VALUES ");
  for k in 0..events.len() {
    if k > 0 {
      sql.push(',');
    }
    sql.push_str("(?,?,?,?,?,?,?,?)");
  }
  let runs: Vec<&str> = events.iter().map(|e| &*e.run).collect();
  let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(events.len() * 8);
  for (event, run) in events.iter().zip(&runs) {
    values.extend([
      run as &dyn rusqlite::ToSql,
      &event.seq,
      &event.ts,
      &ts_ms,
      &event.name,
      &event.stage,
      &event.body,
      &event.refs,
    ]);
  }
  tx.prepare_cached(&sql)?
    .execute(rusqlite::params_from_iter(values))?;
  Ok(())
}

/// Applies what an event changes in the run's row or its pending decisions.
pub(super) fn apply_effect(
  tx: &rusqlite::Transaction<'_>,
  run: &str,
  effect: &Effect,
  ts_ms: i64,
) -> Result<(), StoreError> {
  match effect {
    Effect::Decided(stage) => {
      tx.prepare_cached("DELETE FROM pending_decisions WHERE run = ?1 AND stage = ?2")?
        .execute(params![run, stage])?;
    }
    Effect::Status {
      status,
      finished: false,
      outputs: None,
      ..
    } => {
      tx.prepare_cached("UPDATE runs SET status = ?2, updated_ms = ?3 WHERE id = ?1")?
        .execute(params![run, status, ts_ms])?;
    }
    Effect::Status {
      status,
      finished,
      outputs,
      outputs_refs,
      error,
      duration_ms,
    } => {
      tx.prepare_cached(
        "UPDATE runs SET status = ?2, updated_ms = ?3, finished_ms = ?4, outputs = ?5,
                         error = ?6, pid = NULL, duration_ms = ?7, outputs_refs = ?8
         WHERE id = ?1",
      )?
      .execute(params![
        run,
        status,
        ts_ms,
        finished.then_some(ts_ms),
        outputs,
        error,
        duration_ms.and_then(|ms| i64::try_from(ms).ok()),
        outputs_refs
      ])?;
    }
  }
  Ok(())
}

/// The attempts recorded in a run's events, in the order they started: each `stage_started`
/// and how it ended. A gate's decision (attempt 0) is not an attempt. An item's attempts are
/// named by their unit, `test[3]`; the summary event of a fanned-out stage is no attempt.
pub fn attempts_of(events: &[EventRecord]) -> Vec<AttemptRow> {
  let mut rows: Vec<AttemptRow> = Vec::new();
  let mut started: Vec<Option<u64>> = Vec::new();
  let mut index: HashMap<(String, u32), usize> = HashMap::new();
  for record in events {
    let at = event::parse_rfc3339(&record.ts);
    let event = record.for_display();
    let (stage, attempt, status, error, outputs, duration) = match &*event {
      Event::StageStarted {
        stage,
        attempt,
        uses,
        inputs,
      } => {
        index.insert((stage.clone(), *attempt), rows.len());
        started.push(at);
        rows.push(AttemptRow {
          stage: stage.clone(),
          attempt: i64::from(*attempt),
          uses: uses.clone(),
          status: "running".into(),
          inputs: Some(inputs.as_ref().clone()),
          outputs: None,
          error: None,
          duration_ms: None,
        });
        continue;
      }
      // A stage reused by `swdl retry` made no attempt.
      Event::StageCompleted {
        reused_from: Some(_),
        ..
      } => continue,
      Event::StageCompleted {
        stage,
        attempt,
        outputs,
        duration_ms,
        ..
      } => (
        stage,
        *attempt,
        "completed",
        None,
        Some(outputs),
        Some(*duration_ms),
      ),
      Event::StageFailed {
        stage,
        attempt: Some(attempt),
        error,
        duration_ms,
        ..
      } => (
        stage,
        *attempt,
        "failed",
        Some(error.as_str()),
        None,
        Some(*duration_ms),
      ),
      Event::StageTimedOut {
        stage,
        attempt,
        duration_ms,
        ..
      } => (
        stage,
        *attempt,
        "timed_out",
        Some("timed out"),
        None,
        Some(*duration_ms),
      ),
      Event::StageCancelled {
        stage,
        attempt: Some(attempt),
        reason,
      } => (
        stage,
        *attempt,
        "cancelled",
        Some(reason.as_str()),
        None,
        None,
      ),
      _ => continue,
    };
    let Some(&i) = index.get(&(stage.clone(), attempt)) else {
      continue;
    };
    let row = &mut rows[i];
    row.status = status.into();
    if let Some(error) = error {
      row.error = Some(error.to_string());
    }
    if let Some(outputs) = outputs {
      row.outputs = Some(outputs.as_ref().clone());
    }
    let elapsed = started[i].zip(at).map(|(from, to)| to.saturating_sub(from));
    row.duration_ms = duration.or(elapsed).and_then(|ms| i64::try_from(ms).ok());
  }
  rows
}

/// One log line, as `swdl runs RUN_ID` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogRow {
  /// Stage id.
  pub stage: String,
  /// The attempt that logged it.
  pub attempt: u32,
  /// `stdout`, `stderr` or `log`.
  pub stream: String,
  /// The line.
  pub message: String,
  /// Logged by the stage's compensation rather than an attempt.
  #[serde(skip_serializing_if = "std::ops::Not::not")]
  pub compensation: bool,
}

/// The log lines recorded in a run's events, in order.
pub fn logs_of(events: &[EventRecord]) -> Vec<LogRow> {
  events
    .iter()
    .filter_map(|record| match &*record.for_display() {
      Event::Log {
        stage,
        attempt,
        stream,
        message,
        compensation,
        ..
      } => Some(LogRow {
        stage: stage.clone(),
        attempt: *attempt,
        stream: stream.clone(),
        message: message.clone(),
        compensation: *compensation,
      }),
      _ => None,
    })
    .collect()
}

/// The gate, approval and recovery decisions recorded in a run's events, in order.
pub fn decisions_of(events: &[EventRecord]) -> Vec<DecisionRow> {
  events
    .iter()
    .filter_map(|record| match &*record.for_display() {
      Event::GateDecided {
        stage,
        decision,
        decided_by,
        reason,
        inputs,
      } => Some(DecisionRow {
        stage: stage.clone(),
        kind: "gate".into(),
        decision: decision_name(*decision).into(),
        decided_by: decided_by.clone(),
        reason: reason.clone(),
        detail: inputs.clone(),
      }),
      Event::RecoveryDecided {
        stage,
        attempt,
        strategy,
        action,
        delay_ms,
        uses,
        with,
        error,
      } => Some(DecisionRow {
        stage: stage.clone(),
        kind: "recovery".into(),
        decision: action.clone(),
        decided_by: format!("recovery:{strategy}"),
        reason: error.clone(),
        detail: Some(serde_json::json!({
          "attempt": attempt, "delay_ms": delay_ms, "uses": uses, "with": with, "error": error,
        })),
      }),
      _ => None,
    })
    .collect()
}

/// One attempt, as `swdl runs RUN_ID` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AttemptRow {
  /// Stage id.
  pub stage: String,
  /// Attempt number (0 for a gate's decision).
  pub attempt: i64,
  /// The skill it ran.
  pub uses: String,
  /// `running`, `completed`, `failed`, `timed_out` or `cancelled`.
  pub status: String,
  /// Resolved inputs.
  pub inputs: Option<serde_json::Value>,
  /// Outputs, when completed.
  pub outputs: Option<serde_json::Value>,
  /// What went wrong.
  pub error: Option<String>,
  /// Wall time.
  pub duration_ms: Option<i64>,
}

/// One recorded decision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionRow {
  /// Stage id.
  pub stage: String,
  /// `gate` (gates and risk approvals) or `recovery`.
  pub kind: String,
  /// `approve`, `reject`, or the recovery action.
  pub decision: String,
  /// `flag`, `user`, `timeout`, `policy:NAME`, `recovery:NAME`...
  pub decided_by: String,
  /// Why.
  pub reason: Option<String>,
  /// Gate inputs, or the recovery action's details.
  pub detail: Option<serde_json::Value>,
}
