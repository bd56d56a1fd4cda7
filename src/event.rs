//! The event stream (docs/running.md, "Events"): the source of truth for a run. The run's state is a fold
//! over these events, and the events file, progress display, store and REPL all read them.
use super::*;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// One event with its timestamp and run id; serialises to one JSON Lines record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
  /// RFC 3339 UTC time with milliseconds.
  pub ts: String,
  /// The run id.
  pub run: Arc<str>,
  /// The item of a fanned-out stage the event is about (0-based), absent for the stage itself.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub item: Option<u32>,
  /// That item's key: the item when a string, else its compact JSON; a matrix item's values
  /// joined by `,`.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub key: Option<Arc<str>>,
  /// What happened.
  #[serde(flatten)]
  pub event: Event,
}

impl EventRecord {
  /// The event as people read it: an item's event names its unit, `test[3]`, as its stage.
  pub fn for_display(&self) -> std::borrow::Cow<'_, Event> {
    let Some(item) = self.item else {
      return std::borrow::Cow::Borrowed(&self.event);
    };
    let mut event = self.event.clone();
    if let Some(stage) = event.stage_mut() {
      *stage = format!("{stage}[{item}]");
    }
    std::borrow::Cow::Owned(event)
  }
}

/// Everything that can happen in a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
  /// The run began.
  RunStarted {
    /// Workflow name.
    workflow: String,
    /// Resolved parameters (secrets masked).
    params: serde_json::Value,
    /// Effective parallelism.
    max_parallel: usize,
    /// Number of stages.
    stages: usize,
    /// Seed of the run's random choices (retry jitter), so that replaying it decides the same.
    #[serde(default)]
    seed: u64,
  },
  /// An attempt began.
  StageStarted {
    /// Stage id.
    stage: String,
    /// 1-based attempt number, counting fallbacks.
    attempt: u32,
    /// The skill this attempt runs (a fallback's name for fallback attempts).
    uses: String,
    /// Resolved inputs (shared with the attempt's task and the run state).
    inputs: Arc<serde_json::Value>,
  },
  /// An attempt failed and another will follow after a delay.
  StageRetrying {
    /// Stage id.
    stage: String,
    /// The attempt that failed.
    attempt: u32,
    /// Delay before the next attempt.
    delay_ms: u64,
    /// When the next attempt is due (RFC 3339).
    due: String,
    /// What the failed attempt reported.
    error: String,
  },
  /// An attempt succeeded; the stage is completed.
  StageCompleted {
    /// Stage id.
    stage: String,
    /// The attempt.
    attempt: u32,
    /// The skill that succeeded.
    uses: String,
    /// The skill's outputs (shared with the run state and working memory).
    outputs: Arc<serde_json::Value>,
    /// One-line summary for working memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    /// What the skill produced outside its outputs (file paths, for example).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    artifacts: Vec<serde_json::Value>,
    /// The skill's advice for later stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hints: Vec<serde_json::Value>,
    /// Attempt wall time.
    duration_ms: u64,
    /// `swdl retry`: the run whose outputs this stage reused instead of running (attempt 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reused_from: Option<String>,
    /// The resolved inputs the reuse matched (secrets masked), so a later retry can match
    /// them again; only on a reused stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<Arc<serde_json::Value>>,
  },
  /// An attempt failed (a `stage_retrying` follows when it will be retried).
  StageFailed {
    /// Stage id.
    stage: String,
    /// The attempt, absent when the stage failed without running (a rejected gate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    /// The skill that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<String>,
    /// Why.
    error: String,
    /// Machine-readable reason: `error`, `contract`, `rejected`.
    reason: String,
    /// Attempt wall time.
    #[serde(default)]
    duration_ms: u64,
  },
  /// An attempt ran out of time.
  StageTimedOut {
    /// Stage id.
    stage: String,
    /// The attempt.
    attempt: u32,
    /// The skill.
    uses: String,
    /// The limit that expired.
    timeout_ms: u64,
    /// Attempt wall time.
    duration_ms: u64,
  },
  /// The stage will not run.
  StageSkipped {
    /// Stage id.
    stage: String,
    /// `condition` (its own `if` was false) or `dependency` (something upstream failed).
    reason: String,
  },
  /// The stage was stopped or never started because the run stopped.
  StageCancelled {
    /// Stage id.
    stage: String,
    /// The attempt in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    /// `halt`, `cancel` or `timeout`.
    reason: String,
  },
  /// A gate (or a risky stage needing approval) waits for a decision.
  GateWaiting {
    /// Stage id.
    stage: String,
    /// The rendered message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    /// `gate`, or `approval` for a skill stage whose risk needs approval.
    kind: String,
    /// Decision deadline, if the gate has a timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
  },
  /// A gate was decided.
  GateDecided {
    /// Stage id.
    stage: String,
    /// `approve` or `reject`.
    decision: decision::GateDecision,
    /// Who or what decided: `flag`, `prompt`, `timeout`, `policy:NAME`, a user name.
    decided_by: String,
    /// Why, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Values for the gate's declared `inputs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inputs: Option<serde_json::Value>,
  },
  /// A recovery strategy decided what follows a failed attempt.
  RecoveryDecided {
    /// Stage id.
    stage: String,
    /// The attempt that failed.
    attempt: u32,
    /// The strategy consulted.
    strategy: String,
    /// `retry`, `fallback`, `skip`, `abort`, `compensate`, or `error` when the strategy failed.
    action: String,
    /// Delay before a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delay_ms: Option<u64>,
    /// The fallback skill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<String>,
    /// Inputs replaced for a retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    with: Option<serde_json::Value>,
    /// Why the strategy failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
  },
  /// A line of output from a running attempt.
  Log {
    /// Stage id.
    stage: String,
    /// The attempt.
    attempt: u32,
    /// `stdout`, `stderr` or `log`.
    stream: String,
    /// The line.
    message: String,
    /// Logged by the stage's compensation rather than an attempt.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    compensation: bool,
    /// The model tokens the call this line reports on used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokens: Option<u64>,
  },
  /// The run stopped starting stages.
  RunPaused {
    /// `pause` or `breakpoint`.
    reason: String,
    /// The stage whose breakpoint paused the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stage: Option<String>,
  },
  /// The run starts stages again.
  RunResumed {},
  /// A compensation began.
  CompensationStarted {
    /// The stage being compensated.
    stage: String,
    /// The compensating skill.
    uses: String,
  },
  /// A compensation succeeded.
  CompensationCompleted {
    /// The stage compensated.
    stage: String,
    /// The compensating skill.
    uses: String,
    /// Wall time.
    duration_ms: u64,
  },
  /// A compensation failed (logged, never lost; the run's status does not change).
  CompensationFailed {
    /// The stage.
    stage: String,
    /// The compensating skill.
    uses: String,
    /// Why.
    error: String,
  },
  /// The run ended.
  RunCompleted {
    /// Final status.
    status: RunStatus,
    /// Workflow outputs.
    outputs: serde_json::Value,
    /// Final status of every stage.
    stages: IndexMap<String, StageStatus>,
    /// Why the run did not complete, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Run wall time.
    duration_ms: u64,
  },
}

impl Event {
  /// The stage the event is about, if any.
  pub fn stage(&self) -> Option<&str> {
    match self {
      Self::StageStarted { stage, .. }
      | Self::StageRetrying { stage, .. }
      | Self::StageCompleted { stage, .. }
      | Self::StageFailed { stage, .. }
      | Self::StageTimedOut { stage, .. }
      | Self::StageSkipped { stage, .. }
      | Self::StageCancelled { stage, .. }
      | Self::GateWaiting { stage, .. }
      | Self::GateDecided { stage, .. }
      | Self::RecoveryDecided { stage, .. }
      | Self::Log { stage, .. }
      | Self::CompensationStarted { stage, .. }
      | Self::CompensationCompleted { stage, .. }
      | Self::CompensationFailed { stage, .. } => Some(stage),
      Self::RunPaused { stage, .. } => stage.as_deref(),
      Self::RunStarted { .. } | Self::RunResumed {} | Self::RunCompleted { .. } => None,
    }
  }

  /// The stage the event is about, to rename it.
  fn stage_mut(&mut self) -> Option<&mut String> {
    match self {
      Self::StageStarted { stage, .. }
      | Self::StageRetrying { stage, .. }
      | Self::StageCompleted { stage, .. }
      | Self::StageFailed { stage, .. }
      | Self::StageTimedOut { stage, .. }
      | Self::StageSkipped { stage, .. }
      | Self::StageCancelled { stage, .. }
      | Self::GateWaiting { stage, .. }
      | Self::GateDecided { stage, .. }
      | Self::RecoveryDecided { stage, .. }
      | Self::Log { stage, .. }
      | Self::CompensationStarted { stage, .. }
      | Self::CompensationCompleted { stage, .. }
      | Self::CompensationFailed { stage, .. } => Some(stage),
      Self::RunPaused { stage, .. } => stage.as_mut(),
      Self::RunStarted { .. } | Self::RunResumed {} | Self::RunCompleted { .. } => None,
    }
  }

  /// The event's name as written in the stream (`stage_started`, ...).
  pub fn name(&self) -> &'static str {
    match self {
      Self::RunStarted { .. } => "run_started",
      Self::StageStarted { .. } => "stage_started",
      Self::StageRetrying { .. } => "stage_retrying",
      Self::StageCompleted { .. } => "stage_completed",
      Self::StageFailed { .. } => "stage_failed",
      Self::StageTimedOut { .. } => "stage_timed_out",
      Self::StageSkipped { .. } => "stage_skipped",
      Self::StageCancelled { .. } => "stage_cancelled",
      Self::GateWaiting { .. } => "gate_waiting",
      Self::GateDecided { .. } => "gate_decided",
      Self::RecoveryDecided { .. } => "recovery_decided",
      Self::Log { .. } => "log",
      Self::RunPaused { .. } => "run_paused",
      Self::RunResumed {} => "run_resumed",
      Self::CompensationStarted { .. } => "compensation_started",
      Self::CompensationCompleted { .. } => "compensation_completed",
      Self::CompensationFailed { .. } => "compensation_failed",
      Self::RunCompleted { .. } => "run_completed",
    }
  }
}

/// Stage statuses (docs/running.md, "Stage statuses").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
  /// Not started.
  #[default]
  Pending,
  /// An attempt is executing.
  Running,
  /// A gate waits for a decision.
  Waiting,
  /// Succeeded.
  Completed,
  /// Failed (including a rejected gate).
  Failed,
  /// The last attempt ran out of time.
  TimedOut,
  /// Not run: its condition was false or something upstream failed.
  Skipped,
  /// Stopped or never started because the run stopped.
  Cancelled,
}

impl StageStatus {
  /// The status as written in events and output.
  pub fn as_str(self) -> &'static str {
    match self {
      Self::Pending => "pending",
      Self::Running => "running",
      Self::Waiting => "waiting",
      Self::Completed => "completed",
      Self::Failed => "failed",
      Self::TimedOut => "timed_out",
      Self::Skipped => "skipped",
      Self::Cancelled => "cancelled",
    }
  }

  /// True once nothing more will happen to the stage.
  pub fn is_settled(self) -> bool {
    matches!(
      self,
      Self::Completed | Self::Failed | Self::TimedOut | Self::Skipped | Self::Cancelled
    )
  }
}

/// Run statuses (docs/running.md, "Stage statuses").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
  /// Stages are being started.
  Running,
  /// No new stages start until resumed.
  Paused,
  /// Suspended at a gate nobody decided.
  Waiting,
  /// Every stage succeeded (or was skipped or ignored).
  Completed,
  /// A stage failed, a gate rejected or the run timed out.
  Failed,
  /// Cancelled by the user.
  Cancelled,
}

impl RunStatus {
  /// The status as written in events and output.
  pub fn as_str(self) -> &'static str {
    match self {
      Self::Running => "running",
      Self::Paused => "paused",
      Self::Waiting => "waiting",
      Self::Completed => "completed",
      Self::Failed => "failed",
      Self::Cancelled => "cancelled",
    }
  }
}

/// Something that receives every event of a run, in order: an events file, the progress
/// display, the run store, the REPL.
pub trait EventSink: Send {
  /// Called once per event, in order; must not block for long. When the run has a durable
  /// sink, every sink is called from the run's store thread, otherwise from the runtime's task.
  fn emit(&mut self, record: &EventRecord);
  /// [`EventSink::emit`] for a durable sink, with the record's JSON (as `serde_json` writes it)
  /// already made, so that the store thread does not have to.
  fn emit_encoded(&mut self, record: &EventRecord, json: String) {
    drop(json);
    self.emit(record);
  }
  /// Called when nothing more is to be emitted for now, and at the end of the run.
  fn flush(&mut self) {}
  /// A durable sink (the run store) makes events permanent in `flush`. When a run has one, the
  /// other sinks get each event only after a durable flush; attempts do not wait for it.
  fn durable(&self) -> bool {
    false
  }
  /// False once a durable sink failed to make events permanent (the run then stops).
  fn healthy(&self) -> bool {
    true
  }
}

/// Current UTC time as RFC 3339 with milliseconds (`2026-11-22T14:03:07.123Z`).
pub fn now_rfc3339() -> String {
  let now = std::time::SystemTime::now();
  let since = now
    .duration_since(std::time::UNIX_EPOCH)
    .unwrap_or_default();
  // Every event needs a timestamp; the date and time up to the second rarely change between
  // two events, so they are formatted once per second and reused.
  thread_local! {
    static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
  }
  CACHE.with(|cache| {
    let mut cache = cache.borrow_mut();
    if cache.0 != since.as_secs() {
      let full = rfc3339(now);
      *cache = (since.as_secs(), full[..19].to_string());
    }
    format!("{}.{:03}Z", cache.1, since.subsec_millis())
  })
}

/// Formats a time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(time: std::time::SystemTime) -> String {
  let since = time
    .duration_since(std::time::UNIX_EPOCH)
    .unwrap_or_default();
  let secs = since.as_secs();
  let (days, rem) = (secs / 86_400, secs % 86_400);
  let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(0));
  format!(
    "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
    rem / 3_600,
    rem / 60 % 60,
    rem % 60,
    since.subsec_millis()
  )
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
  rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time as events carry it
/// (`2026-11-22T14:03:07.123Z`; fractions and a `Z` or `+00:00` suffix are optional).
pub fn parse_rfc3339(text: &str) -> Option<u64> {
  let b = text.as_bytes();
  let num = |range: std::ops::Range<usize>| -> Option<i64> {
    let part = text.get(range)?;
    part
      .bytes()
      .all(|c| c.is_ascii_digit())
      .then(|| part.parse().ok())?
  };
  if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
    return None;
  }
  let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
  let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
  if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
    return None;
  }
  let mut millis = 0;
  let mut rest = &text[19..];
  if let Some(fraction) = rest.strip_prefix('.') {
    let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
    let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
    millis = padded.parse::<i64>().ok()?;
    rest = &fraction[digits..];
  }
  if !matches!(rest, "Z" | "z" | "+00:00" | "") {
    return None;
  }
  // Days from civil (Howard Hinnant's algorithm), the inverse of `civil_from_days`.
  let y = if month <= 2 { year - 1 } else { year };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let mp = (month + 9) % 12;
  let doy = (153 * mp + 2) / 5 + day - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  let days = era * 146_097 + doe - 719_468;
  let ms = ((days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000) + millis;
  u64::try_from(ms).ok()
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
  let z = days + 719_468;
  let era = z.div_euclid(146_097);
  let doe = z.rem_euclid(146_097);
  let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
  let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  let mp = (5 * doy + 2) / 153;
  let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
  let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
  let year = yoe + era * 400 + i64::from(month <= 2);
  (year, month, day)
}

/// Writes each event as one JSON line.
pub struct JsonLines {
  out: std::io::BufWriter<Box<dyn std::io::Write + Send>>,
}

impl JsonLines {
  /// Writes to `out`, buffered.
  pub fn new(out: Box<dyn std::io::Write + Send>) -> Self {
    Self {
      out: std::io::BufWriter::new(out),
    }
  }
}

impl EventSink for JsonLines {
  fn emit(&mut self, record: &EventRecord) {
    use std::io::Write as _;
    if serde_json::to_writer(&mut self.out, record).is_ok() {
      let _ = self.out.write_all(b"\n");
    }
  }

  fn flush(&mut self) {
    use std::io::Write as _;
    let _ = self.out.flush();
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::{Duration, UNIX_EPOCH};

  #[test]
  fn cached_now_matches_a_full_format() {
    let now = now_rfc3339();
    assert_eq!(now.len(), 24);
    assert!(now.ends_with('Z') && now.as_bytes()[19] == b'.');
  }

  #[test]
  fn timestamps_are_rfc3339_utc() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    let t = UNIX_EPOCH + Duration::from_millis(1_795_874_587_123);
    assert_eq!(rfc3339(t), "2026-11-28T14:03:07.123Z");
    #[expect(
      clippy::duration_suboptimal_units,
      reason = "a Unix timestamp counts seconds"
    )]
    let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
    assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
  }

  #[test]
  fn rfc3339_parses_back_to_the_same_millisecond() {
    for ms in [0, 951_782_400_000, 1_795_874_587_123, 4_102_444_799_999] {
      assert_eq!(parse_rfc3339(&rfc3339_ms(ms)), Some(ms));
    }
    assert_eq!(
      parse_rfc3339("2026-11-28T14:03:07Z"),
      Some(1_795_874_587_000)
    );
    assert_eq!(
      parse_rfc3339("2026-11-28T14:03:07.1Z"),
      Some(1_795_874_587_100)
    );
    assert_eq!(parse_rfc3339("2026-13-28T14:03:07Z"), None);
    assert_eq!(parse_rfc3339("yesterday"), None);
    assert_eq!(parse_rfc3339("2026-11-28T14:03:07+02:00"), None);
  }

  #[test]
  fn records_serialise_flat_with_the_event_name() {
    let record = EventRecord {
      ts: "t".into(),
      run: Arc::from("r"),
      item: None,
      key: None,
      event: Event::StageStarted {
        stage: "a".into(),
        attempt: 2,
        uses: "echo".into(),
        inputs: Arc::new(serde_json::json!({})),
      },
    };
    let text = serde_json::to_string(&record).unwrap_or_default();
    assert_eq!(
      text,
      r#"{"ts":"t","run":"r","event":"stage_started","stage":"a","attempt":2,"uses":"echo","inputs":{}}"#
    );
    let back: EventRecord = serde_json::from_str(&text).expect("round trip");
    assert_eq!(back, record);
  }
}
