//! The store as an event sink: each batch committed before anything else sees it.
use super::*;

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
  pub(super) fn fail(&mut self, e: &StoreError) {
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
