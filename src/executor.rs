//! The seam between the runtime and whatever runs a skill. The runtime never calls a skill
//! directly: it hands a serialisable [`StageTask`] to a [`StageExecutor`] and gets a
//! [`StageResult`] back, so executors can later live on other machines.
use super::*;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::{
  future::Future,
  pin::Pin,
  sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering},
  },
};
use tokio::sync::mpsc;

/// A boxed future that can be spawned.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Everything an executor needs to run one attempt; no paths, clocks or Lua values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageTask {
  /// Run id.
  pub run: String,
  /// Stage id.
  pub stage: String,
  /// 1-based attempt number.
  pub attempt: u32,
  /// Stable across retries of one stage in one run, so side effects can be de-duplicated.
  pub idempotency_key: String,
  /// The skill to run.
  pub skill: String,
  /// Resolved inputs (a JSON object).
  pub inputs: Arc<serde_json::Value>,
  /// Attempt limit; the runtime enforces it, executors may use it to size their own waits.
  pub timeout_ms: u64,
  /// Grants from `config.permissions` for this skill.
  pub permissions: Vec<workflow::Permission>,
  /// Resolved `config.env`.
  pub env: IndexMap<String, String>,
  /// Working memory: one entry per stage finished before this attempt started.
  pub memory: MemoryView,
  /// Outputs the stage's contract declares as strings: a shell stage's `$SWDL_OUTPUT` keeps
  /// them as written (`commit=2506175` stays `"2506175"`, `v=1.10` stays `"1.10"`).
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub text_outputs: Vec<String>,
}

/// One working-memory entry (docs/running.md, "Working memory").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
  /// Stage id.
  pub stage: String,
  /// Final status.
  pub status: event::StageStatus,
  /// The skill of the last attempt, if the stage ran one.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub uses: Option<String>,
  /// The skill's summary, if it gave one.
  #[serde(default, skip_serializing_if = "Option::is_none")]
  pub summary: Option<String>,
  /// What the skill produced outside its outputs, if anything.
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub artifacts: Vec<serde_json::Value>,
  /// The skill's advice for later stages, if any.
  #[serde(default, skip_serializing_if = "Vec::is_empty")]
  pub hints: Vec<serde_json::Value>,
  /// The stage's outputs.
  pub outputs: Arc<serde_json::Value>,
  /// Wall time of the stage.
  pub duration_ms: u64,
}

/// The run's working memory: an append-only log shared by every attempt.
#[derive(Debug, Clone, Default)]
pub struct Memory(Arc<RwLock<Vec<MemoryEntry>>>);

impl Memory {
  /// Adds the entry of a finished stage.
  pub fn push(&self, entry: MemoryEntry) {
    if let Ok(mut log) = self.0.write() {
      log.push(entry);
    }
  }

  /// What has been logged so far, as seen by an attempt starting now.
  pub fn view(&self) -> MemoryView {
    let len = self.0.read().map_or(0, |log| log.len());
    MemoryView {
      log: self.clone(),
      len,
    }
  }
}

/// The first `len` entries of a [`Memory`]: a snapshot that costs nothing to take, which keeps
/// handing memory to every attempt linear in the number of stages.
#[derive(Debug, Clone, Default)]
pub struct MemoryView {
  log: Memory,
  len: usize,
}

impl MemoryView {
  /// The entries in the snapshot.
  pub fn entries(&self) -> Vec<MemoryEntry> {
    self
      .log
      .0
      .read()
      .map(|log| log[..self.len.min(log.len())].to_vec())
      .unwrap_or_default()
  }

  /// Number of entries.
  pub fn len(&self) -> usize {
    self.len
  }

  /// True when no stage had finished.
  pub fn is_empty(&self) -> bool {
    self.len == 0
  }

  /// Compact text for prompts: one line per entry, `stage [status] summary`.
  pub fn text(&self) -> String {
    let mut out = String::new();
    for entry in self.entries() {
      let summary = entry.summary.clone().unwrap_or_else(|| {
        let outputs = entry.outputs.to_string();
        if outputs.len() > 120 {
          format!("{}...", outputs.chars().take(117).collect::<String>())
        } else {
          outputs
        }
      });
      out.push_str(&format!(
        "{} [{}] {summary}\n",
        entry.stage,
        entry.status.as_str()
      ));
    }
    out
  }
}

impl Serialize for MemoryView {
  fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    self.entries().serialize(serializer)
  }
}

impl<'de> Deserialize<'de> for MemoryView {
  fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
    let entries = Vec::<MemoryEntry>::deserialize(deserializer)?;
    let len = entries.len();
    Ok(Self {
      log: Memory(Arc::new(RwLock::new(entries))),
      len,
    })
  }
}

/// What an attempt produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StageResult {
  /// The skill succeeded.
  Completed {
    /// Outputs (a JSON object).
    outputs: serde_json::Map<String, serde_json::Value>,
    /// One-line summary for working memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    /// Files or references the skill produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    artifacts: Vec<serde_json::Value>,
    /// Advice for later stages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hints: Vec<serde_json::Value>,
  },
  /// The skill failed.
  Failed {
    /// Why, for people.
    error: String,
  },
}

impl StageResult {
  /// A success with these outputs and nothing else.
  pub fn outputs(outputs: serde_json::Map<String, serde_json::Value>) -> Self {
    Self::Completed {
      outputs,
      summary: None,
      artifacts: Vec::new(),
      hints: Vec::new(),
    }
  }

  /// A failure with this message.
  pub fn failed(error: impl Into<String>) -> Self {
    Self::Failed {
      error: error.into(),
    }
  }
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
  /// A process's standard output.
  Stdout,
  /// A process's standard error.
  Stderr,
  /// A message the skill logged itself.
  Log,
}

impl LogStream {
  /// The name used in `log` events.
  pub fn as_str(self) -> &'static str {
    match self {
      Self::Stdout => "stdout",
      Self::Stderr => "stderr",
      Self::Log => "log",
    }
  }
}

/// What a running attempt may send back while it runs.
#[derive(Debug)]
pub struct LogLine {
  /// Index of the stage in the workflow.
  pub stage: usize,
  /// The attempt.
  pub attempt: u32,
  /// Which stream.
  pub stream: LogStream,
  /// The line, without its line break.
  pub message: String,
  /// Logged by the stage's compensation rather than an attempt.
  pub compensation: bool,
  /// The model tokens a call this line reports on used (the `llm` skill, `swdl.llm`).
  pub tokens: Option<u64>,
}

/// The most log lines one attempt records; later ones are counted, not kept.
pub const MAX_LOG_LINES: u64 = 5_000;

/// The most bytes of log text one attempt records.
pub const MAX_LOG_BYTES: u64 = 256 * 1024;

/// What one attempt has logged, shared by the clones of its [`TaskIo`].
#[derive(Debug, Default)]
pub struct LogBudget {
  lines: AtomicU64,
  bytes: AtomicU64,
  dropped_lines: AtomicU64,
  dropped_bytes: AtomicU64,
}

impl LogBudget {
  /// Takes room for one line of `len` bytes; false (and counted as dropped) once full.
  fn take(&self, len: usize) -> bool {
    let len = len as u64;
    // Only what is kept counts: one oversized line must not silence the short ones after it.
    // (Clones log from one task at a time, so load-then-add does not race in practice, and
    // a race would only let a line or two more through.)
    let lines = self.lines.load(Ordering::Relaxed);
    let bytes = self.bytes.load(Ordering::Relaxed);
    if lines < MAX_LOG_LINES && bytes + len <= MAX_LOG_BYTES {
      self.lines.fetch_add(1, Ordering::Relaxed);
      self.bytes.fetch_add(len, Ordering::Relaxed);
      return true;
    }
    self.dropped_lines.fetch_add(1, Ordering::Relaxed);
    self.dropped_bytes.fetch_add(len, Ordering::Relaxed);
    false
  }

  /// The line that says what was dropped, if anything was.
  pub fn dropped_note(&self) -> Option<String> {
    let lines = self.dropped_lines.load(Ordering::Relaxed);
    (lines > 0).then(|| {
      format!(
        "{lines} more log lines ({} bytes) were not recorded: an attempt records at most \
         {MAX_LOG_LINES} lines and {} KiB of logs",
        self.dropped_bytes.load(Ordering::Relaxed),
        MAX_LOG_BYTES >> 10
      )
    })
  }
}

/// The channel an attempt logs through; dropping it is fine. Lines past the attempt's
/// [`LogBudget`] are dropped here, before they cost a message, an event or a row.
#[derive(Debug, Clone)]
pub struct TaskIo {
  stage: usize,
  attempt: u32,
  sender: Option<mpsc::UnboundedSender<LogLine>>,
  budget: Arc<LogBudget>,
  compensation: bool,
}

impl TaskIo {
  /// Logs for stage `stage` (its index) and `attempt` through `sender`.
  pub fn new(stage: usize, attempt: u32, sender: mpsc::UnboundedSender<LogLine>) -> Self {
    Self {
      stage,
      attempt,
      sender: Some(sender),
      budget: Arc::default(),
      compensation: false,
    }
  }

  /// Logs for the compensation of stage `stage` (its index) through `sender`.
  pub fn compensation(stage: usize, sender: mpsc::UnboundedSender<LogLine>) -> Self {
    Self {
      compensation: true,
      ..Self::new(stage, 1, sender)
    }
  }

  /// An io that discards everything (tests, benchmarks).
  pub fn discard() -> Self {
    Self {
      stage: 0,
      attempt: 0,
      sender: None,
      budget: Arc::default(),
      compensation: false,
    }
  }

  /// What this attempt has logged so far.
  pub fn budget(&self) -> Arc<LogBudget> {
    Arc::clone(&self.budget)
  }

  /// Sends one line; lost if the run has already moved on or the attempt's budget is spent.
  pub fn log(&self, stream: LogStream, message: impl Into<String>) {
    let message = message.into();
    if self.sender.is_some() && self.budget.take(message.len()) {
      self.send(stream, message, None);
    }
  }

  /// Sends the line that reports a model call's `tokens`; it is kept past the log budget,
  /// because the run's token total is counted from these lines.
  pub fn usage(&self, tokens: u64, message: impl Into<String>) {
    self.send(LogStream::Log, message.into(), Some(tokens));
  }

  fn send(&self, stream: LogStream, message: String, tokens: Option<u64>) {
    if let Some(sender) = &self.sender {
      let _ = sender.send(LogLine {
        stage: self.stage,
        attempt: self.attempt,
        stream,
        message,
        compensation: self.compensation,
        tokens,
      });
    }
  }
}

/// Runs attempts. Dropping the returned future must stop the attempt and release everything it
/// holds (a shell skill kills its process group): that is how timeouts and cancellation work.
pub trait StageExecutor: Send + Sync {
  /// Starts one attempt.
  fn execute(&self, task: StageTask, io: TaskIo) -> BoxFuture<StageResult>;
}
