//! The store's file: creating it private to its owner, the schema and its migrations, and
//! opening it (with the checks for damage SQLite would not report).
use super::*;
use rusqlite::Connection;

/// Marks a SQLite file as a swdl store (`PRAGMA application_id`, "swdl" in ASCII).
pub(super) const APPLICATION_ID: i64 = 0x7377_646c;

/// The most bytes the write-ahead log keeps once checkpointed.
pub(super) const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Schema migrations; the store's `user_version` is how many have been applied.
pub(super) const MIGRATIONS: &[&str] = &[
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
  // 4: the run's own measure of how long it took (its `run_completed`), so `swdl runs` says
  // what the run's last line said rather than the time since the row was made.
  "ALTER TABLE runs ADD COLUMN duration_ms INTEGER;",
  // 5: large strings are stored once, by hash (see `values`): a 50 MB output repeated in
  // five events wrote 250 MB.
  "CREATE TABLE blobs (hash TEXT PRIMARY KEY, body TEXT NOT NULL);
   ALTER TABLE events ADD COLUMN refs TEXT;
   ALTER TABLE runs ADD COLUMN outputs_refs TEXT;",
];

impl Store {
  /// Opens the store at `dir` only if there is one: read-only commands never create a store.
  ///
  /// # Errors
  /// As [`Store::open`].
  pub fn open_existing(dir: &Path) -> Result<Option<Self>, StoreError> {
    if dir.join(STORE_FILE).exists() {
      Self::open(dir).map(Some)
    } else {
      Ok(None)
    }
  }

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
    // After a checkpoint the log is cut back to this size: one large commit must not leave a
    // log of its size behind for good.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
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
  pub(super) fn check_after_crash(&mut self) -> Result<(), StoreError> {
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
}

/// Creates a new, empty store at `file`: its directory readable by its owner only (0700),
/// the database likewise (0600; SQLite gives its `-wal` and `-shm` files the database's mode),
/// already holding its schema. The store keeps workflow files as written, so it is as private
/// as they are (docs/runs.md).
///
/// The database is built under a temporary name and linked into place, so a store file that
/// exists always has a schema: an empty one can only be a damaged one (see `damage`).
pub(super) fn create(dir: &Path, file: &Path) -> Result<(), StoreError> {
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
pub(super) fn make_private(dir: &Path, file: &Path) {
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
