//! The run store (SPEC sections 2 and 5): one SQLite file in WAL mode holding every run's
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
mod requests;

pub(crate) use requests::RequestPoller;
use std::{
  collections::HashMap,
  path::{Path, PathBuf},
  sync::Mutex,
  time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The store's file inside its directory.
pub const STORE_FILE: &str = "swdl.db";

/// Marks a SQLite file as a swdl store (`PRAGMA application_id`, "swdl" in ASCII).
const APPLICATION_ID: i64 = 0x7377_646c;

/// How long a write waits for another process holding the store's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Schema migrations; the store's `user_version` is how many have been applied.
const MIGRATIONS: &[&str] = &[
  // 1: the first schema.
  "CREATE TABLE runs (
     id TEXT PRIMARY KEY,
     workflow TEXT NOT NULL,
     file TEXT NOT NULL,
     source TEXT NOT NULL,
     params TEXT NOT NULL,
     options TEXT NOT NULL,
     status TEXT NOT NULL,
     attempt INTEGER NOT NULL DEFAULT 1,
     pid INTEGER,
     host TEXT,
     created_ms INTEGER NOT NULL,
     updated_ms INTEGER NOT NULL,
     finished_ms INTEGER,
     outputs TEXT,
     error TEXT
   );
   CREATE INDEX runs_by_status ON runs (status, created_ms);
   CREATE TABLE events (
     run TEXT NOT NULL REFERENCES runs (id),
     seq INTEGER NOT NULL,
     ts TEXT NOT NULL,
     ts_ms INTEGER NOT NULL,
     event TEXT NOT NULL,
     stage TEXT,
     body TEXT NOT NULL,
     PRIMARY KEY (run, seq)
   ) WITHOUT ROWID;
   CREATE TABLE attempts (
     run TEXT NOT NULL REFERENCES runs (id),
     stage TEXT NOT NULL,
     attempt INTEGER NOT NULL,
     uses TEXT NOT NULL,
     status TEXT NOT NULL,
     inputs TEXT,
     outputs TEXT,
     error TEXT,
     started_ms INTEGER NOT NULL,
     finished_ms INTEGER,
     duration_ms INTEGER,
     PRIMARY KEY (run, stage, attempt)
   ) WITHOUT ROWID;
   CREATE TABLE logs (
     run TEXT NOT NULL REFERENCES runs (id),
     seq INTEGER NOT NULL,
     stage TEXT NOT NULL,
     attempt INTEGER NOT NULL,
     stream TEXT NOT NULL,
     message TEXT NOT NULL,
     ts_ms INTEGER NOT NULL,
     PRIMARY KEY (run, seq)
   ) WITHOUT ROWID;
   CREATE TABLE decisions (
     run TEXT NOT NULL REFERENCES runs (id),
     seq INTEGER NOT NULL,
     stage TEXT NOT NULL,
     kind TEXT NOT NULL,
     decision TEXT NOT NULL,
     decided_by TEXT NOT NULL,
     reason TEXT,
     detail TEXT,
     ts_ms INTEGER NOT NULL,
     PRIMARY KEY (run, seq)
   ) WITHOUT ROWID;
   CREATE TABLE pending_decisions (
     run TEXT NOT NULL REFERENCES runs (id),
     stage TEXT NOT NULL,
     decision TEXT NOT NULL,
     decided_by TEXT NOT NULL,
     reason TEXT,
     inputs TEXT,
     ts_ms INTEGER NOT NULL,
     PRIMARY KEY (run, stage)
   ) WITHOUT ROWID;
   CREATE TABLE requests (
     id INTEGER PRIMARY KEY,
     run TEXT NOT NULL REFERENCES runs (id),
     kind TEXT NOT NULL,
     body TEXT,
     ts_ms INTEGER NOT NULL,
     done_ms INTEGER
   );
   CREATE INDEX requests_open ON requests (run, done_ms);",
  // 2: attempts, log lines and decisions are read from the events (one record, one fold);
  // writing them again per event doubled the cost of every commit.
  "DROP TABLE attempts;
   DROP TABLE logs;
   DROP TABLE decisions;",
  // 3: whether the integrity check has run since the run's process was found gone.
  "ALTER TABLE runs ADD COLUMN checked INTEGER NOT NULL DEFAULT 0;",
];

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

/// The store directory: `--store`, else `SWDL_STORE`, else `.swdl`; `None` for `none`.
pub fn resolve_dir(flag: Option<&Path>) -> Option<PathBuf> {
  let dir = flag
    .map(Path::to_path_buf)
    .or_else(|| std::env::var_os("SWDL_STORE").map(PathBuf::from))
    .unwrap_or_else(|| PathBuf::from(".swdl"));
  (dir.as_os_str() != "none").then_some(dir)
}

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

/// A request made of a live run by another process.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
  /// Stop it (`swdl cancel`).
  Cancel,
  /// Stop starting stages (`swdl pause`).
  Pause,
  /// Start stages again (`swdl resume` of a paused run).
  Resume,
  /// Decide a gate it is waiting at (`swdl approve|reject`).
  Decide {
    /// The gate.
    stage: String,
    /// The decision.
    decision: PriorDecision,
  },
}

/// An open store.
#[derive(Debug)]
pub struct Store {
  conn: Connection,
  path: PathBuf,
}

impl Store {
  /// Opens the store in `dir`, creating the directory and the schema when missing and applying
  /// migrations.
  ///
  /// # Errors
  ///
  /// The directory cannot be made, the file is not a swdl store or is damaged, or it was
  /// written by a newer swdl.
  pub fn open(dir: &Path) -> Result<Self, StoreError> {
    let path = dir.join(STORE_FILE);
    let label = path.display().to_string();
    let open_error = |message: String| StoreError::Open {
      path: label.clone(),
      message,
    };
    if let Ok(mut opened) = OPENED.lock() {
      *opened = Some(label.clone());
    }
    if !path.exists() {
      create(dir, &path).map_err(|e| open_error(e.to_string()))?;
    }
    if let Some(why) = damage::check_empty(&path) {
      return Err(StoreError::Damaged { path: label, why });
    }
    make_private(dir, &path);
    let mut conn = Connection::open(&path).map_err(|e| open_error(e.to_string()))?;
    conn
      .busy_timeout(BUSY_TIMEOUT)
      .map_err(|e| open_error(e.to_string()))?;
    let classify = |e: rusqlite::Error| match e.sqlite_error_code() {
      Some(rusqlite::ErrorCode::NotADatabase) => StoreError::Foreign {
        path: label.clone(),
        why: e.to_string(),
      },
      _ => StoreError::Open {
        path: label.clone(),
        message: e.to_string(),
      },
    };
    // Reading the header is the first thing that fails on a file that is not a database.
    // Switching to WAL takes an exclusive lock; when several processes create the store at
    // once SQLite reports "locked" here without waiting, so wait here.
    let application_id: i64 =
      retry_locked(|| conn.query_row("PRAGMA application_id", [], |row| row.get(0)))
        .map_err(classify)?;
    let mode: String =
      retry_locked(|| conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0)))
        .map_err(classify)?;
    if !mode.eq_ignore_ascii_case("wal") {
      return Err(open_error(format!(
        "cannot use write-ahead logging (journal mode stays {mode})"
      )));
    }
    // In WAL mode NORMAL survives a crashed process (kill -9); only a power cut may lose the
    // last commits. See docs/runs.md.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let tables: i64 = tx.query_row(
      "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
      [],
      |row| row.get(0),
    )?;
    let application_id = if application_id == 0 {
      tx.query_row("PRAGMA application_id", [], |row| row.get(0))?
    } else {
      application_id
    };
    if application_id != APPLICATION_ID && (application_id != 0 || tables > 0) {
      return Err(StoreError::Foreign {
        path: label,
        why: if application_id == 0 {
          format!("a SQLite database with {tables} tables of another program")
        } else {
          format!("a SQLite database of another program (application id {application_id:#x})")
        },
      });
    }
    // Under the write lock this transaction holds, the log cannot change while it is read.
    if let Some(why) = damage::check_log(&path) {
      return Err(StoreError::Damaged { path: label, why });
    }
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
      return Err(StoreError::Newer {
        path: label,
        found: version,
        known,
      });
    }
    for (n, migration) in MIGRATIONS
      .iter()
      .enumerate()
      .skip(usize::try_from(version).unwrap_or(0))
    {
      tx.execute_batch(migration)?;
      tx.pragma_update(None, "user_version", n + 1)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    let mut store = Self { conn, path };
    store.check_after_crash()?;
    Ok(store)
  }

  /// Runs SQLite's integrity check once after a run's process is found gone (a crash may
  /// have hit the disk too), and refuses a store that fails it.
  fn check_after_crash(&mut self) -> Result<(), StoreError> {
    let mut stmt = self.conn.prepare_cached(
      "SELECT id, pid, host FROM runs WHERE status IN ('running', 'paused') AND checked = 0",
    )?;
    let rows = stmt
      .query_map([], |row| {
        Ok((
          row.get::<_, String>(0)?,
          row.get::<_, Option<i64>>(1)?,
          row.get::<_, Option<String>>(2)?,
        ))
      })?
      .collect::<Result<Vec<_>, _>>()?;
    drop(stmt);
    let here = hostname();
    let gone: Vec<String> = rows
      .into_iter()
      .filter(|(_, pid, host)| host.as_deref() == Some(here.as_str()) && !pid.is_some_and(alive))
      .map(|(id, ..)| id)
      .collect();
    if gone.is_empty() {
      return Ok(());
    }
    let problems: Vec<String> = {
      let mut stmt = self.conn.prepare("PRAGMA quick_check(5)")?;
      stmt
        .query_map([], |row| row.get::<_, String>(0))?
        .collect::<Result<_, _>>()?
    };
    if problems.iter().any(|p| p != "ok") {
      return Err(StoreError::Damaged {
        path: self.path.display().to_string(),
        why: format!("its integrity check found: {}", problems.join("; ")),
      });
    }
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    for id in &gone {
      tx.execute("UPDATE runs SET checked = 1 WHERE id = ?1", params![id])?;
    }
    tx.commit()?;
    Ok(())
  }

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
    for row in rows {
      let row = row?;
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
      .prepare("SELECT seq, body FROM events WHERE run = ?1 ORDER BY seq")?;
    let rows = statement.query_map([id], |row| {
      Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut events = Vec::new();
    for row in rows {
      let (seq, body) = row?;
      let record = serde_json::from_str(&body).map_err(|e| {
        StoreError::Refused(format!(
          "{}: event {seq} of run `{id}` is damaged: {e}",
          self.path.display()
        ))
      })?;
      events.push(record);
    }
    Ok(events)
  }

  /// The attempts of run `id`, in the order they started (see [`attempts_of`]).
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn attempts(&self, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    Ok(attempts_of(&self.events(id)?))
  }

  /// The log lines of run `id`: (stage, attempt, stream, message).
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn logs(&self, id: &str) -> Result<Vec<(String, i64, String, String)>, StoreError> {
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

  /// The decision already made on gate `stage` of run `id` and not yet applied (recorded for
  /// `swdl resume`, or asked of the live run and not yet taken), as `approve by user:x`.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn undecided_decision(&self, id: &str, stage: &str) -> Result<Option<String>, StoreError> {
    let recorded: Option<(String, String)> = self
      .conn
      .query_row(
        "SELECT decision, decided_by FROM pending_decisions WHERE run = ?1 AND stage = ?2",
        params![id, stage],
        |row| Ok((row.get(0)?, row.get(1)?)),
      )
      .optional()?;
    if let Some((decision, by)) = recorded {
      return Ok(Some(format!("{decision} by {by}")));
    }
    let mut statement = self.conn.prepare(
      "SELECT body FROM requests WHERE run = ?1 AND kind = 'decide' AND done_ms IS NULL",
    )?;
    let bodies = statement
      .query_map([id], |row| row.get::<_, Option<String>>(0))?
      .collect::<Result<Vec<_>, _>>()?;
    Ok(bodies.into_iter().flatten().find_map(|body| {
      let body: serde_json::Value = serde_json::from_str(&body).ok()?;
      (body["stage"] == stage).then(|| {
        format!(
          "{} by {}",
          body["decision"].as_str().unwrap_or("a decision"),
          body["by"].as_str().unwrap_or("someone")
        )
      })
    }))
  }

  /// Records a decision on a gate of a run that is not executing, for `swdl resume` to apply.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn record_decision(
    &mut self,
    id: &str,
    stage: &str,
    decision: &PriorDecision,
  ) -> Result<(), StoreError> {
    self.conn.execute(
      "INSERT INTO pending_decisions (run, stage, decision, decided_by, reason, inputs,
                                                 ts_ms)
       VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
      params![
        id,
        stage,
        decision_name(decision.decision),
        decision.by,
        decision.reason,
        decision.inputs.as_ref().map(ToString::to_string),
        now_ms()
      ],
    )?;
    Ok(())
  }

  /// Decisions recorded by [`Store::record_decision`] for run `id`, by stage.
  ///
  /// # Errors
  ///
  /// A failed read.
  pub fn pending_decisions(&self, id: &str) -> Result<HashMap<String, PriorDecision>, StoreError> {
    let mut statement = self.conn.prepare(
      "SELECT stage, decision, decided_by, reason, inputs FROM pending_decisions WHERE run = ?1",
    )?;
    let rows = statement.query_map([id], |row| {
      let decision: String = row.get(1)?;
      Ok((
        row.get::<_, String>(0)?,
        PriorDecision {
          decision: if decision == "approve" {
            GateDecision::Approve
          } else {
            GateDecision::Reject
          },
          by: row.get(2)?,
          reason: row.get(3)?,
          inputs: json_column(row.get(4)?),
        },
      ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
  }

  /// Asks the process executing run `id` to do something; it looks every few hundred ms.
  ///
  /// # Errors
  ///
  /// A failed write.
  pub fn request(&mut self, id: &str, request: &Request) -> Result<(), StoreError> {
    let (kind, body) = match request {
      Request::Cancel => ("cancel", None),
      Request::Pause => ("pause", None),
      Request::Resume => ("resume", None),
      Request::Decide { stage, decision } => (
        "decide",
        Some(
          serde_json::json!({
            "stage": stage,
            "decision": decision_name(decision.decision),
            "by": decision.by,
            "reason": decision.reason,
            "inputs": decision.inputs,
          })
          .to_string(),
        ),
      ),
    };
    self.conn.execute(
      "INSERT INTO requests (run, kind, body, ts_ms) VALUES (?1, ?2, ?3, ?4)",
      params![id, kind, body, now_ms()],
    )?;
    Ok(())
  }

  /// Takes the requests made of run `id` since the last call, oldest first.
  ///
  /// # Errors
  ///
  /// A failed read or write.
  pub fn take_requests(&mut self, id: &str) -> Result<Vec<Request>, StoreError> {
    let tx = self
      .conn
      .transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut requests = Vec::new();
    {
      let mut statement = tx.prepare(
        "SELECT id, kind, body FROM requests WHERE run = ?1 AND done_ms IS NULL ORDER BY id",
      )?;
      let rows = statement.query_map([id], |row| {
        Ok((
          row.get::<_, i64>(0)?,
          row.get::<_, String>(1)?,
          row.get::<_, Option<String>>(2)?,
        ))
      })?;
      for row in rows {
        let (_, kind, body) = row?;
        let request = match kind.as_str() {
          "cancel" => Request::Cancel,
          "pause" => Request::Pause,
          "resume" => Request::Resume,
          "decide" => {
            let body: serde_json::Value = body
              .as_deref()
              .and_then(|b| serde_json::from_str(b).ok())
              .unwrap_or_default();
            Request::Decide {
              stage: body["stage"].as_str().unwrap_or_default().to_string(),
              decision: PriorDecision {
                decision: if body["decision"] == "approve" {
                  GateDecision::Approve
                } else {
                  GateDecision::Reject
                },
                by: body["by"].as_str().unwrap_or("user").to_string(),
                reason: body["reason"].as_str().map(str::to_string),
                inputs: Some(body["inputs"].clone()).filter(|v| !v.is_null()),
              },
            }
          }
          _ => continue,
        };
        requests.push(request);
      }
    }
    if !requests.is_empty() {
      tx.execute(
        "UPDATE requests SET done_ms = ?2 WHERE run = ?1 AND done_ms IS NULL",
        params![id, now_ms()],
      )?;
    }
    tx.commit()?;
    Ok(requests)
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

/// Rows per multi-row `INSERT` of events.
const ROWS_PER_INSERT: usize = 32;

/// An event ready to be written: its columns, and what it changes in the run's row.
struct Encoded {
  seq: i64,
  run: Arc<str>,
  ts: String,
  name: &'static str,
  stage: Option<String>,
  body: String,
  effect: Option<Effect>,
}

/// What an event changes besides the events table.
enum Effect {
  /// A decision recorded while the run was suspended has been applied.
  Decided(String),
  /// The run's status, and with `run_completed` its end.
  Status {
    status: &'static str,
    finished: bool,
    outputs: Option<String>,
    error: Option<String>,
  },
}

impl Encoded {
  fn new(seq: i64, record: &EventRecord) -> Result<Self, StoreError> {
    let body = serde_json::to_string(record).map_err(|e| StoreError::Refused(e.to_string()))?;
    Ok(Self::with_body(seq, record, body))
  }

  /// `record` with `body`, its JSON as [`serde_json::to_string`] writes it.
  fn with_body(seq: i64, record: &EventRecord, body: String) -> Self {
    let status = |status: &'static str| Effect::Status {
      status,
      finished: false,
      outputs: None,
      error: None,
    };
    let effect = match &record.event {
      Event::GateDecided { stage, .. } => Some(Effect::Decided(stage.clone())),
      Event::RunPaused { .. } => Some(status("paused")),
      Event::RunResumed {} => Some(status("running")),
      Event::RunCompleted {
        status,
        outputs,
        error,
        ..
      } => Some(Effect::Status {
        status: status.as_str(),
        finished: *status != RunStatus::Waiting,
        outputs: Some(outputs.to_string()),
        error: error.clone(),
      }),
      _ => None,
    };
    Self {
      seq,
      run: Arc::clone(&record.run),
      ts: record.ts.clone(),
      name: record.event.name(),
      stage: record.event.stage().map(str::to_string),
      body,
      effect,
    }
  }
}

/// Inserts events inside `tx`, all in one statement.
fn insert_rows(
  tx: &rusqlite::Transaction<'_>,
  events: &[Encoded],
  ts_ms: i64,
) -> Result<(), StoreError> {
  let mut sql =
    String::from("INSERT INTO events (run, seq, ts, ts_ms, event, stage, body) VALUES ");
  for k in 0..events.len() {
    if k > 0 {
      sql.push(',');
    }
    sql.push_str("(?,?,?,?,?,?,?)");
  }
  let runs: Vec<&str> = events.iter().map(|e| &*e.run).collect();
  let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(events.len() * 7);
  for (event, run) in events.iter().zip(&runs) {
    values.extend([
      run as &dyn rusqlite::ToSql,
      &event.seq,
      &event.ts,
      &ts_ms,
      &event.name,
      &event.stage,
      &event.body,
    ]);
  }
  tx.prepare_cached(&sql)?
    .execute(rusqlite::params_from_iter(values))?;
  Ok(())
}

/// Applies what an event changes in the run's row or its pending decisions.
fn apply_effect(
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
      error,
    } => {
      tx.prepare_cached(
        "UPDATE runs SET status = ?2, updated_ms = ?3, finished_ms = ?4, outputs = ?5,
                         error = ?6, pid = NULL
         WHERE id = ?1",
      )?
      .execute(params![
        run,
        status,
        ts_ms,
        finished.then_some(ts_ms),
        outputs,
        error
      ])?;
    }
  }
  Ok(())
}

/// The attempts recorded in a run's events, in the order they started: each `stage_started`
/// and how it ended. A gate's decision (attempt 0) is not an attempt.
pub fn attempts_of(events: &[EventRecord]) -> Vec<AttemptRow> {
  let mut rows: Vec<AttemptRow> = Vec::new();
  let mut started: Vec<Option<u64>> = Vec::new();
  let mut index: HashMap<(&str, u32), usize> = HashMap::new();
  for record in events {
    let at = event::parse_rfc3339(&record.ts);
    let (stage, attempt, status, error, outputs, duration) = match &record.event {
      Event::StageStarted {
        stage,
        attempt,
        uses,
        inputs,
      } => {
        index.insert((stage.as_str(), *attempt), rows.len());
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
    let Some(&i) = index.get(&(stage.as_str(), attempt)) else {
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

/// The log lines recorded in a run's events: (stage, attempt, stream, message).
pub fn logs_of(events: &[EventRecord]) -> Vec<(String, i64, String, String)> {
  events
    .iter()
    .filter_map(|record| match &record.event {
      Event::Log {
        stage,
        attempt,
        stream,
        message,
      } => Some((
        stage.clone(),
        i64::from(*attempt),
        stream.clone(),
        message.clone(),
      )),
      _ => None,
    })
    .collect()
}

/// The gate, approval and recovery decisions recorded in a run's events, in order.
pub fn decisions_of(events: &[EventRecord]) -> Vec<DecisionRow> {
  events
    .iter()
    .filter_map(|record| match &record.event {
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

/// Creates a new, empty store at `file`: its directory readable by its owner only (0700),
/// the database likewise (0600; SQLite gives its `-wal` and `-shm` files the database's mode),
/// already holding its schema. The store keeps workflow files as written, so it is as private
/// as they are (docs/runs.md).
///
/// The database is built under a temporary name and linked into place, so a store file that
/// exists always has a schema: an empty one can only be a damaged one (see `damage`).
fn create(dir: &Path, file: &Path) -> Result<(), StoreError> {
  let io = |e: std::io::Error| StoreError::Open {
    path: file.display().to_string(),
    message: e.to_string(),
  };
  #[cfg(unix)]
  {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
      std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    }
  }
  #[cfg(not(unix))]
  std::fs::create_dir_all(dir).map_err(io)?;
  let temp = dir.join(format!(".{STORE_FILE}.{}.new", std::process::id()));
  let _ = std::fs::remove_file(&temp);
  let built = (|| -> Result<(), StoreError> {
    #[cfg(unix)]
    {
      use std::os::unix::fs::OpenOptionsExt;
      std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    }
    let conn = Connection::open(&temp)?;
    let tx = conn.unchecked_transaction()?;
    for migration in MIGRATIONS {
      tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len())?;
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.commit()?;
    // Persistent in the file's header: every later connection opens it in WAL mode.
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
    conn.close().map_err(|(_, e)| StoreError::from(e))?;
    Ok(())
  })();
  let linked = built.and_then(|()| match std::fs::hard_link(&temp, file) {
    // Another process created the store first: use theirs.
    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
    other => other.map_err(io),
  });
  for leftover in ["", "-wal", "-shm"] {
    let _ = std::fs::remove_file(format!("{}{leftover}", temp.display()));
  }
  linked
}

/// Makes an existing store private to its owner again (directory 0700, files 0600): stores
/// made before swdl created them so may be readable by others, and the store keeps workflow
/// files as written. Files of another owner are left as they are (changing them fails).
fn make_private(dir: &Path, file: &Path) {
  #[cfg(unix)]
  {
    use std::os::unix::fs::PermissionsExt;
    let tighten = |path: &Path, mode: u32| {
      if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
      {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
      }
    };
    tighten(dir, 0o700);
    for suffix in ["", "-wal", "-shm"] {
      tighten(Path::new(&format!("{}{suffix}", file.display())), 0o600);
    }
  }
  #[cfg(not(unix))]
  let _ = (dir, file);
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

const RUN_COLUMNS: &str = "SELECT id, workflow, file, status, attempt, pid, host, created_ms, \
                           updated_ms, finished_ms, outputs, error, params, options, source \
                           FROM runs";

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
  Ok(RunRow {
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
  })
}

fn load_run(conn: &Connection, id: &str) -> Result<RunRow, StoreError> {
  let found = conn
    .query_row(&format!("{RUN_COLUMNS} WHERE id = ?1"), [id], run_row)
    .optional()?;
  match found {
    Some(run) => Ok(run),
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

/// Records every event of a run in the store. Events are buffered and committed together,
/// in one transaction, whenever the runtime's store thread flushes: once per batch, and a
/// batch is everything that arrived while the previous commit ran. A failed write is kept
/// (the first one) for the command to report: the run goes on, but ends as failed.
pub struct StoreSink {
  store: Store,
  seq: i64,
  /// Encoded on arrival: one string per event instead of a copy of the record.
  pending: Vec<Encoded>,
  failed: bool,
  error: Arc<Mutex<Option<String>>>,
}

impl StoreSink {
  /// A sink appending to `store` from event number `seq`; write errors go to `error`.
  pub fn new(store: Store, seq: i64, error: Arc<Mutex<Option<String>>>) -> Self {
    // The sink only appends events of the run it was made for, which exists before the sink
    // does and is never deleted: checking `events.run` against `runs` on every row would
    // double the cost of a commit. Every other connection keeps enforcing the reference.
    let _ = store.conn.pragma_update(None, "foreign_keys", "OFF");
    // Closing the last connection would checkpoint the whole write-ahead log while the run
    // waits for its sink to go away; commits are durable without it, and later commits (or
    // the next process) checkpoint as the log grows.
    let _ = store.conn.set_db_config(
      rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
      true,
    );
    Self {
      store,
      seq,
      pending: Vec::new(),
      failed: false,
      error,
    }
  }
}

impl StoreSink {
  /// Remembers the first failure for the command to report.
  fn fail(&mut self, e: &StoreError) {
    self.failed = true;
    let mut error = self
      .error
      .lock()
      .unwrap_or_else(std::sync::PoisonError::into_inner);
    error.get_or_insert_with(|| e.to_string());
  }
}

impl EventSink for StoreSink {
  fn emit(&mut self, record: &EventRecord) {
    match Encoded::new(self.seq, record) {
      Ok(encoded) => self.pending.push(encoded),
      Err(e) => self.fail(&e),
    }
    self.seq += 1;
  }

  fn emit_encoded(&mut self, record: &EventRecord, json: String) {
    self
      .pending
      .push(Encoded::with_body(self.seq, record, json));
    self.seq += 1;
  }

  fn flush(&mut self) {
    if self.pending.is_empty() {
      return;
    }
    match self.store.write(&self.pending) {
      Ok(()) => self.pending.clear(),
      // Kept, in order, for the next flush: a store that recovers loses nothing.
      Err(e) => self.fail(&e),
    }
  }

  fn durable(&self) -> bool {
    true
  }

  fn healthy(&self) -> bool {
    !self.failed
  }
}

impl Drop for StoreSink {
  fn drop(&mut self) {
    self.flush();
  }
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
  fn events_round_trip_and_give_attempts_logs_and_decisions() {
    let dir = Dir::new("roundtrip");
    let mut store = Store::open(&dir.0).expect("open");
    new_run(&mut store, "r1");
    let record = |event: Event| EventRecord {
      ts: "2026-11-22T10:00:00.000Z".into(),
      run: Arc::from("r1"),
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
      }),
      record(Event::StageCompleted {
        stage: "a".into(),
        attempt: 1,
        uses: "echo".into(),
        outputs: Arc::new(serde_json::json!({"x": 1})),
        summary: None,
        duration_ms: 3,
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
    assert_eq!(
      store.logs("r1").expect("logs"),
      vec![("a".into(), 1, "stdout".into(), "hi".into())]
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
