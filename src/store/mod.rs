//! The run store (docs/runs.md): one SQLite file in WAL mode holding every run's
//! events, and tables derived from them for querying (runs, attempts, logs, decisions), plus
//! requests other processes make of a live run (cancel, pause, resume, a gate decision).
//!
//! The event log is the source of truth: [`StoreSink`] commits each event (with its derived
//! rows, in one transaction) before the runtime takes its next step, and `swdl resume` folds the
//! events back into a run state. Writes take the lock at once (`BEGIN IMMEDIATE`) and wait for
//! it (busy timeout), so many processes can share one store.
use super::*;
use crate::{
  decision::GateDecision,
  decision::PriorDecision,
  event::{self, Event, EventRecord, EventSink, RunStatus},
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

mod damage;
mod projection;
mod requests;
mod schema;
mod sink;
mod values;

use projection::{Encoded, ROWS_PER_INSERT, apply_effect, insert_rows};
use std::{
  collections::HashMap,
  path::{Path, PathBuf},
  sync::Mutex,
  time::{Duration, SystemTime, UNIX_EPOCH},
};
pub use {
  projection::{AttemptRow, DecisionRow, LogRow, attempts_of, decisions_of, logs_of},
  requests::Request,
  sink::StoreSink,
};

/// The store's file inside its directory.
pub const STORE_FILE: &str = "swdl.db";

/// How long a write waits for another process holding the store's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_mins(1);

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
  /// The store cannot be opened or created.
  #[error("{path}: cannot open the run store: {message}")]
  Open {
    /// The store file.
    path: String,
    /// Why.
    message: String,
  },
  /// The file is not a swdl store (another program's database, or not a database at all).
  #[error("{path}: not a swdl run store ({why}); point --store or SWDL_STORE elsewhere")]
  Foreign {
    /// The store file.
    path: String,
    /// What was found.
    why: String,
  },
  /// The store was written by a newer swdl.
  #[error(
    "{path}: the run store has schema version {found}, newer than this swdl knows ({known}); \
     use a newer swdl"
  )]
  Newer {
    /// The store file.
    path: String,
    /// Its schema version.
    found: i64,
    /// The newest this build knows.
    known: i64,
  },
  /// A query failed (a full disk, a lock held too long).
  #[error("run store: {0}")]
  Sql(rusqlite::Error),
  /// The store's files are damaged.
  #[error(
    "{path}: the run store is damaged: {why}. Nothing was changed; keep a copy of the store's \
     files, then try `sqlite3 {path} .recover`, or move them away to start a new store"
  )]
  Damaged {
    /// The store file.
    path: String,
    /// What was found.
    why: String,
  },
  /// No such run.
  #[error("no run `{id}` in the run store{hint}")]
  UnknownRun {
    /// The id asked for.
    id: String,
    /// ` (did you mean ...?)` or empty.
    hint: String,
  },
  /// The request does not fit the run's state (resume a finished run, approve a stage that is
  /// not waiting).
  #[error("{0}")]
  Refused(String),
}

/// The store file this process opened last, to name it in errors converted from SQLite's:
/// a process uses one store, and threading the path through every query would only repeat it.
static OPENED: Mutex<Option<String>> = Mutex::new(None);

impl From<rusqlite::Error> for StoreError {
  fn from(error: rusqlite::Error) -> Self {
    use rusqlite::{Error as E, ErrorCode as C};
    let damaged = match &error {
      E::SqliteFailure(e, _) => matches!(e.code, C::DatabaseCorrupt | C::NotADatabase),
      // Text that is not UTF-8 or does not convert comes from damaged pages (swdl writes
      // every column itself).
      E::FromSqlConversionFailure(..) | E::Utf8Error(..) => true,
      _ => false,
    };
    if damaged {
      let path = OPENED
        .lock()
        .ok()
        .and_then(|p| p.clone())
        .unwrap_or_else(|| STORE_FILE.to_string());
      Self::Damaged {
        path,
        why: error.to_string(),
      }
    } else {
      Self::Sql(error)
    }
  }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
  SystemTime::now()
    .duration_since(UNIX_EPOCH)
    .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The store directory: `--store`, else `SWDL_STORE`, else the nearest `.swdl/` in the current
/// directory or one of its parents (the way git finds `.git`), else `.swdl` in the current
/// directory; `None` for `none`.
pub fn resolve_dir(flag: Option<&Path>) -> Option<PathBuf> {
  let dir = flag
    .map(Path::to_path_buf)
    .or_else(|| std::env::var_os("SWDL_STORE").map(PathBuf::from))
    .unwrap_or_else(nearest);
  (dir.as_os_str() != "none").then_some(dir)
}

/// The nearest `.swdl/` at or above the current directory; `.swdl` (here) when there is none.
/// One found here stays the relative `.swdl`, so messages name it as the user would.
fn nearest() -> PathBuf {
  let here = PathBuf::from(DEFAULT_DIR);
  if here.is_dir() {
    return here;
  }
  std::env::current_dir()
    .ok()
    .and_then(|cwd| {
      cwd
        .ancestors()
        .skip(1)
        .map(|dir| dir.join(DEFAULT_DIR))
        .find(|dir| dir.is_dir())
    })
    .unwrap_or(here)
}

/// The name of the store directory that commands look for.
pub const DEFAULT_DIR: &str = ".swdl";

/// One row of `runs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
  /// Run id.
  pub id: String,
  /// Workflow name.
  pub workflow: String,
  /// The workflow file as given when the run started.
  pub file: String,
  /// Stored status; see [`RunRow::effective_status`].
  pub status: String,
  /// One more than the number of times it was resumed.
  pub attempt: i64,
  /// The process executing it, while one does.
  pub pid: Option<i64>,
  /// The host of that process.
  pub host: Option<String>,
  /// When it was created (Unix ms).
  pub created_ms: i64,
  /// When it last changed (Unix ms).
  pub updated_ms: i64,
  /// When it finished (Unix ms).
  pub finished_ms: Option<i64>,
  /// How long it took by its own measure (`run_completed`), once it ended or suspended.
  pub duration_ms: Option<i64>,
  /// Workflow outputs (JSON), once finished.
  pub outputs: Option<serde_json::Value>,
  /// Why it did not complete.
  pub error: Option<String>,
  /// Resolved parameters, secrets masked.
  pub params: serde_json::Value,
  /// How it was started: `max_parallel`, gate flags, extra hook files.
  pub options: serde_json::Value,
  /// The workflow text it runs.
  #[serde(skip)]
  pub source: String,
}

impl RunRow {
  /// Whether a process is executing the run now.
  pub fn is_live(&self) -> bool {
    matches!(self.status.as_str(), "running" | "paused")
      && self
        .pid
        .is_some_and(|pid| self.host.as_deref() == Some(hostname().as_str()) && alive(pid))
  }

  /// The status to show: `crashed` for a run recorded as executing whose process is gone.
  pub fn effective_status(&self) -> &str {
    if matches!(self.status.as_str(), "running" | "paused") && !self.is_live() {
      "crashed"
    } else {
      &self.status
    }
  }
}

/// An open store.
#[derive(Debug)]
pub struct Store {
  conn: Connection,
  path: PathBuf,
}

impl Store {
  /// The store file.
  pub fn path(&self) -> &Path {
    &self.path
  }

  /// Records a new run, executing in this process, and returns its id: `run.id`, or a fresh
  /// one from [`new_run_id`] when another process took that id first.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn create_run(&mut self, run: &NewRun<'_>) -> Result<String, StoreError> {
    let now = now_ms();
    let mut id = run.id.to_string();
    let params = run.params.to_string();
    let options = run.options.to_string();
    for _ in 0..ID_TRIES {
      let inserted = self.conn.execute(
        "INSERT INTO runs (id, workflow, file, source, params, options, status, attempt, pid, host,
                           created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 1, ?7, ?8, ?9, ?9)
         ON CONFLICT (id) DO NOTHING",
        params![
          id,
          run.workflow,
          run.file,
          run.source,
          params,
          options,
          i64::from(std::process::id()),
          hostname(),
          now
        ],
      )?;
      if inserted == 1 {
        return Ok(id);
      }
      id = new_run_id();
    }
    Err(StoreError::Refused(format!(
      "no free run id after {ID_TRIES} tries (last `{id}`)"
    )))
  }

  /// Takes over run `id` for this process to resume it: refuses a finished run and one that
  /// another live process executes. Returns the run as it was, and its new attempt number.
  ///
  /// # Errors
  ///
  /// Unknown run, a run that cannot be resumed, a failed write.
  pub fn claim(&mut self, id: &str) -> Result<(RunRow, i64), StoreError> {
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let run = load_run(&tx, id)?;
    match run.effective_status() {
      "running" | "paused" => {
        return Err(StoreError::Refused(format!(
          "run `{id}` is being executed by process {} on {}; `swdl resume` continues a paused \
           one (it is {}), `swdl cancel` stops it",
          run.pid.unwrap_or_default(),
          run.host.as_deref().unwrap_or("?"),
          run.status
        )));
      }
      "completed" | "failed" | "cancelled" => {
        return Err(StoreError::Refused(format!(
          "run `{id}` already finished ({}); a finished run cannot be resumed",
          run.status
        )));
      }
      _ => {}
    }
    let attempt = run.attempt + 1;
    // Requests made of an earlier process (a cancel that arrived as it died) do not carry over.
    tx.execute(
      "UPDATE requests SET done_ms = ?2 WHERE run = ?1 AND done_ms IS NULL",
      params![id, now_ms()],
    )?;
    tx.execute(
      "UPDATE runs SET status = 'running', attempt = ?2, pid = ?3, host = ?4, updated_ms = ?5,
                       checked = 0
       WHERE id = ?1",
      params![
        id,
        attempt,
        i64::from(std::process::id()),
        hostname(),
        now_ms()
      ],
    )?;
    tx.commit()?;
    Ok((run, attempt))
  }

  /// Run `id`.
  ///
  /// # Errors
  ///
  /// Unknown run (with the closest id), a failed read.
  pub fn run(&self, id: &str) -> Result<RunRow, StoreError> {
    load_run(&self.conn, id)
  }

  /// Runs, newest first, optionally only those whose (effective) status is `status`.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn runs(&self, status: Option<&str>) -> Result<Vec<RunRow>, StoreError> {
    let mut statement = self
      .conn
      .prepare(&format!("{RUN_COLUMNS} ORDER BY created_ms DESC, id DESC"))?;
    let rows = statement.query_map([], run_row)?;
    let mut runs = Vec::new();
    let mut cache = HashMap::new();
    for row in rows {
      let row = whole_run(&self.conn, row?, &mut cache)?;
      if status.is_none_or(|s| row.effective_status() == s) {
        runs.push(row);
      }
    }
    Ok(runs)
  }

  /// Every event of run `id`, in order.
  ///
  /// # Errors
  ///
  /// A failed read, or an event that does not parse (a damaged store).
  pub fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
    let mut statement = self
      .conn
      .prepare("SELECT seq, body, refs FROM events WHERE run = ?1 ORDER BY seq")?;
    let rows = statement.query_map([id], |row| {
      Ok((
        row.get::<_, i64>(0)?,
        row.get::<_, String>(1)?,
        row.get::<_, Option<String>>(2)?,
      ))
    })?;
    let damaged = |seq: i64, why: String| {
      StoreError::Refused(format!(
        "{}: event {seq} of run `{id}` is damaged: {why}",
        self.path.display()
      ))
    };
    let mut events = Vec::new();
    let mut cache = HashMap::new();
    for row in rows {
      let (seq, body, refs) = row?;
      let record = match refs {
        None => serde_json::from_str(&body).map_err(|e| damaged(seq, e.to_string()))?,
        Some(refs) => {
          let mut value = serde_json::from_str(&body).map_err(|e| damaged(seq, e.to_string()))?;
          values::restore(&self.conn, &mut value, &refs, &mut cache)
            .map_err(|why| damaged(seq, why))?;
          serde_json::from_value(value).map_err(|e| damaged(seq, e.to_string()))?
        }
      };
      events.push(record);
    }
    Ok(events)
  }

  /// Appends event number `seq` of its run and its derived rows, in one transaction.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn append(&mut self, seq: i64, record: &EventRecord) -> Result<(), StoreError> {
    self.append_all(std::slice::from_ref(&(seq, record.clone())))
  }

  /// Appends numbered events and their derived rows, all in one transaction.
  ///
  /// # Errors
  ///
  /// A failed write; then none of them is recorded.
  pub fn append_all(&mut self, records: &[(i64, EventRecord)]) -> Result<(), StoreError> {
    let encoded = records
      .iter()
      .map(|(seq, record)| Encoded::new(*seq, record))
      .collect::<Result<Vec<_>, _>>()?;
    self.write(&encoded)
  }

  /// Writes encoded events and their effects on the run's row, all in one transaction.
  fn write(&mut self, events: &[Encoded]) -> Result<(), StoreError> {
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let ts_ms = now_ms();
    for event in events {
      values::insert_blobs(&tx, &event.blobs)?;
    }
    // Many rows per statement: a statement's set-up costs about as much as a row.
    let mut chunks = events.chunks_exact(ROWS_PER_INSERT);
    for chunk in &mut chunks {
      insert_rows(&tx, chunk, ts_ms)?;
    }
    for event in chunks.remainder() {
      insert_rows(&tx, std::slice::from_ref(event), ts_ms)?;
    }
    for event in events {
      if let Some(effect) = &event.effect {
        apply_effect(&tx, &event.run, effect, ts_ms)?;
      }
    }
    tx.commit()?;
    Ok(())
  }

  /// The number the next event of run `id` gets.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn next_seq(&self, id: &str) -> Result<i64, StoreError> {
    Ok(self.conn.query_row(
      "SELECT coalesce(max(seq), 0) + 1 FROM events WHERE run = ?1",
      [id],
      |row| row.get(0),
    )?)
  }
}

/// Runs `step` again while the database is busy or locked, up to [`BUSY_TIMEOUT`].
fn retry_locked<T>(mut step: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
  let started = std::time::Instant::now();
  loop {
    match step() {
      Err(e)
        if matches!(
          e.sqlite_error_code(),
          Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        ) && started.elapsed() < BUSY_TIMEOUT =>
      {
        std::thread::sleep(Duration::from_millis(20));
      }
      other => return other,
    }
  }
}

/// How many ids [`Store::create_run`] tries before giving up (a collision of 48 random bits
/// within one second is already rarer than a disk error).
const ID_TRIES: usize = 16;

/// A new run id that sorts by start time: `20261122-140307-3fa9c21b0d6e` (UTC date and time,
/// then 48 random bits).
pub fn new_run_id() -> String {
  use std::hash::{BuildHasher, Hasher};
  let ts = crate::event::now_rfc3339();
  let digits: String = ts.chars().filter(char::is_ascii_digit).collect();
  // `RandomState` is seeded from the operating system's randomness once per process and
  // stepped for each instance; the time and process id separate processes further.
  let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
  let nanos = std::time::SystemTime::now()
    .duration_since(std::time::UNIX_EPOCH)
    .map_or(0, |d| d.as_nanos());
  hasher.write_u128(nanos);
  hasher.write_u32(std::process::id());
  let salt = hasher.finish() & 0xffff_ffff_ffff;
  format!("{}-{}-{salt:012x}", &digits[..8], &digits[8..14])
}

/// A run about to start, for [`Store::create_run`].
#[derive(Debug)]
pub struct NewRun<'a> {
  /// The run id wanted (another is chosen if it is taken).
  pub id: &'a str,
  /// Workflow name.
  pub workflow: &'a str,
  /// The workflow file as given.
  pub file: &'a str,
  /// Its text, so a resume runs the same workflow even if the file changed.
  pub source: &'a str,
  /// Resolved parameters, secrets masked.
  pub params: &'a serde_json::Value,
  /// How it was started (what resume needs again).
  pub options: &'a serde_json::Value,
}

const RUN_COLUMNS: &str = "SELECT id, workflow, file, status, attempt, pid, host, created_ms, \
                           updated_ms, finished_ms, outputs, error, params, options, source, \
                           duration_ms, outputs_refs FROM runs";

/// A run's row and where the hashes of its outputs' large strings stand, if any.
fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(RunRow, Option<String>)> {
  let run = RunRow {
    id: row.get(0)?,
    workflow: row.get(1)?,
    file: row.get(2)?,
    status: row.get(3)?,
    attempt: row.get(4)?,
    pid: row.get(5)?,
    host: row.get(6)?,
    created_ms: row.get(7)?,
    updated_ms: row.get(8)?,
    finished_ms: row.get(9)?,
    outputs: json_column(row.get(10)?),
    error: row.get(11)?,
    params: json_column(row.get(12)?).unwrap_or_default(),
    options: json_column(row.get(13)?).unwrap_or_default(),
    source: row.get(14)?,
    duration_ms: row.get(15)?,
  };
  Ok((run, row.get(16)?))
}

/// The run of [`run_row`] with its outputs whole again.
fn whole_run(
  conn: &Connection,
  (mut run, refs): (RunRow, Option<String>),
  cache: &mut HashMap<String, Arc<str>>,
) -> Result<RunRow, StoreError> {
  if let (Some(refs), Some(outputs)) = (refs, run.outputs.as_mut()) {
    values::restore(conn, outputs, &refs, cache).map_err(|why| {
      StoreError::Refused(format!(
        "the outputs of run `{}` are damaged: {why}",
        run.id
      ))
    })?;
  }
  Ok(run)
}

fn load_run(conn: &Connection, id: &str) -> Result<RunRow, StoreError> {
  let found = conn
    .query_row(&format!("{RUN_COLUMNS} WHERE id = ?1"), [id], run_row)
    .optional()?;
  match found {
    Some(run) => whole_run(conn, run, &mut HashMap::new()),
    None => {
      let mut statement =
        conn.prepare("SELECT id FROM runs ORDER BY created_ms DESC LIMIT 1000")?;
      let ids: Vec<String> = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
      let hint = crate::suggest::hint(id, ids.iter().map(String::as_str));
      Err(StoreError::UnknownRun {
        id: id.to_string(),
        hint,
      })
    }
  }
}

fn json_column(text: Option<String>) -> Option<serde_json::Value> {
  text.and_then(|t| serde_json::from_str(&t).ok())
}

fn decision_name(decision: GateDecision) -> &'static str {
  match decision {
    GateDecision::Approve => "approve",
    GateDecision::Reject => "reject",
  }
}

/// This machine's name, to tell whether a recorded process is one we can see.
pub fn hostname() -> String {
  let mut buffer = [0u8; 256];
  // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
  let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
  if !ok {
    return String::new();
  }
  let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
  String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// Whether process `pid` exists.
fn alive(pid: i64) -> bool {
  let Ok(pid) = libc::pid_t::try_from(pid) else {
    return false;
  };
  if pid <= 0 {
    return false;
  }
  // SAFETY: signal 0 checks for the process without sending anything.
  let result = unsafe { libc::kill(pid, 0) };
  result == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
  use super::*;

  struct Dir(PathBuf);

  impl Dir {
    fn new(name: &str) -> Self {
      let dir = std::env::temp_dir().join(format!("swdl-store-{name}-{}", std::process::id()));
      let _ = std::fs::remove_dir_all(&dir);
      Self(dir)
    }
  }

  impl Drop for Dir {
    fn drop(&mut self) {
      let _ = std::fs::remove_dir_all(&self.0);
    }
  }

  fn new_run(store: &mut Store, id: &str) {
    let params = serde_json::json!({"n": 1});
    let options = serde_json::json!({});
    store
      .create_run(&NewRun {
        id,
        workflow: "wf",
        file: "wf.yaml",
        source: "name: wf\n",
        params: &params,
        options: &options,
      })
      .expect("create");
  }

  #[test]
  fn a_taken_run_id_is_replaced_not_an_error() {
    let dir = Dir::new("collide");
    let mut store = Store::open(&dir.0).expect("open");
    let params = serde_json::json!({});
    let run = NewRun {
      id: "20261203-120000-000000000000",
      workflow: "wf",
      file: "wf.yaml",
      source: "name: wf\n",
      params: &params,
      options: &params,
    };
    let first = store.create_run(&run).expect("first");
    let second = store.create_run(&run).expect("second");
    assert_eq!(first, run.id);
    assert_ne!(second, first);
    assert_eq!(second.len(), first.len());
  }

  #[test]
  #[expect(clippy::cast_possible_wrap, reason = "a handful of test events")]
  fn events_round_trip_and_give_attempts_logs_and_decisions() {
    let dir = Dir::new("roundtrip");
    let mut store = Store::open(&dir.0).expect("open");
    new_run(&mut store, "r1");
    let record = |event: Event| EventRecord {
      ts: "2026-11-22T10:00:00.000Z".into(),
      run: Arc::from("r1"),
      item: None,
      key: None,
      event,
    };
    let events = vec![
      record(Event::StageStarted {
        stage: "a".into(),
        attempt: 1,
        uses: "echo".into(),
        inputs: Arc::new(serde_json::json!({"x": 1})),
      }),
      record(Event::Log {
        stage: "a".into(),
        attempt: 1,
        stream: "stdout".into(),
        message: "hi".into(),
        compensation: false,
        tokens: None,
      }),
      record(Event::StageCompleted {
        stage: "a".into(),
        attempt: 1,
        uses: "echo".into(),
        outputs: Arc::new(serde_json::json!({"x": 1})),
        summary: None,
        duration_ms: 3,
        artifacts: Vec::new(),
        hints: Vec::new(),
        reused_from: None,
        inputs: None,
      }),
      record(Event::GateDecided {
        stage: "g".into(),
        decision: GateDecision::Approve,
        decided_by: "user".into(),
        reason: Some("looks fine".into()),
        inputs: None,
      }),
    ];
    for (seq, event) in events.iter().enumerate() {
      store.append(seq as i64 + 1, event).expect("append");
    }
    assert_eq!(store.events("r1").expect("events"), events);
    assert_eq!(store.next_seq("r1").expect("seq"), 5);
    let attempts = store.attempts("r1").expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, "completed");
    assert_eq!(attempts[0].outputs, Some(serde_json::json!({"x": 1})));
    let logs = store.logs("r1").expect("logs");
    assert_eq!(logs.len(), 1);
    assert_eq!(
      (
        logs[0].stage.as_str(),
        logs[0].attempt,
        logs[0].stream.as_str(),
        logs[0].message.as_str(),
        logs[0].compensation
      ),
      ("a", 1, "stdout", "hi", false)
    );
    let decisions = store.decisions("r1").expect("decisions");
    assert_eq!(decisions[0].decided_by, "user");
    assert_eq!(decisions[0].reason.as_deref(), Some("looks fine"));
  }

  #[test]
  fn requests_are_taken_once_in_order() {
    let dir = Dir::new("requests");
    let mut store = Store::open(&dir.0).expect("open");
    new_run(&mut store, "r1");
    store.request("r1", &Request::Pause).expect("request");
    store.request("r1", &Request::Cancel).expect("request");
    assert_eq!(
      store.take_requests("r1").expect("take"),
      vec![Request::Pause, Request::Cancel]
    );
    assert!(store.take_requests("r1").expect("take").is_empty());
  }

  #[test]
  fn a_foreign_or_damaged_file_is_refused_clearly() {
    let dir = Dir::new("foreign");
    std::fs::create_dir_all(&dir.0).expect("dir");
    let path = dir.0.join(STORE_FILE);
    std::fs::write(
      &path,
      b"this is not a database, just some text that is long enough",
    )
    .expect("write");
    let error = Store::open(&dir.0)
      .expect_err("garbage must be refused")
      .to_string();
    assert!(error.contains("not a swdl run store"), "{error}");
    std::fs::remove_file(&path).expect("remove");
    {
      let conn = Connection::open(&path).expect("sqlite");
      conn
        .execute_batch("CREATE TABLE songs (title TEXT);")
        .expect("table");
    }
    let error = Store::open(&dir.0)
      .expect_err("another program's database")
      .to_string();
    assert!(error.contains("another program"), "{error}");
  }

  #[test]
  fn a_newer_schema_is_refused_and_an_unknown_run_gets_a_suggestion() {
    let dir = Dir::new("newer");
    let mut store = Store::open(&dir.0).expect("open");
    new_run(&mut store, "20261122-100000-abcd");
    let error = store
      .run("20261122-100000-abce")
      .expect_err("unknown")
      .to_string();
    assert!(
      error.contains("did you mean `20261122-100000-abcd`"),
      "{error}"
    );
    store
      .conn
      .pragma_update(None, "user_version", 99)
      .expect("bump");
    drop(store);
    let error = Store::open(&dir.0).expect_err("newer").to_string();
    assert!(error.contains("schema version 99"), "{error}");
  }
}
