//! A damaged store is an error that names the file; after a crash it is checked before use.
use super::*;

/// Overwrites `len` bytes of `path` at `at` with garbage.
fn scribble(path: &std::path::Path, at: u64, len: usize) {
  use std::io::{Seek, SeekFrom, Write};
  let mut file = std::fs::OpenOptions::new()
    .write(true)
    .open(path)
    .expect("open for damage");
  file.seek(SeekFrom::Start(at)).expect("seek");
  let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13).to_le_bytes()[0]).collect();
  file.write_all(&garbage).expect("write garbage");
}

/// Runs `test`, which must fail on the damaged store for the reason `why` (a pattern, which
/// may span lines) with the advice that follows every such error.
#[track_caller]
fn assert_damaged(test: Test, why: &str) {
  test
    .stdout("")
    .stderr(&format!(
      "error: [DIR]/store/swdl.db: the run store is damaged: {why}. Nothing was changed; keep a \
       copy of the store's files, then try `sqlite3 [DIR]/store/swdl.db .recover`, or move them \
       away to start a new store\n"
    ))
    .status(2)
    .run();
}

#[test]
fn damage_to_the_store_is_an_error_that_names_the_file() {
  let p = Project::new();
  p.write("w.yaml", "name: w\nstages:\n  - { id: a, uses: echo, with: { x: 1 } }\n  - { id: b, uses: echo, depends_on: a }\n");
  for _ in 0..5 {
    p.swdl(&["run", "w.yaml", "--progress", "none"])
      .stdout("")
      .stderr("")
      .status(0)
      .run();
  }
  let db = p.store().join("swdl.db");
  let wal = p.store().join("swdl.db-wal");
  // Garbage inside the log: SQLite would stop at the bad frame and show fewer runs.
  let page = 4096;
  let frames = std::fs::metadata(&wal).map_or(0, |m| m.len()) / (24 + page);
  assert!(frames >= 3, "{frames} frames in the log");
  let saved = std::fs::read(&wal).expect("wal");
  scribble(&wal, 32 + 24 + page + 100, 64);
  assert_damaged(
    p.swdl(&["runs"]),
    "frame 2 of the write-ahead log is damaged and a commit of the same log follows it (frame \
     4): the commits after frame 2 would be lost",
  );
  // A garbled header.
  std::fs::write(&wal, &saved).expect("restore");
  scribble(&wal, 0, 8);
  assert_damaged(
    p.swdl(&["runs"]),
    "the write-ahead log's header is not a SQLite log header",
  );
  std::fs::write(&wal, &saved).expect("restore");
  assert_eq!(p.runs().len(), 5);
  // A damaged page of the database itself (after `runs` folded the log into it).
  let saved_db = std::fs::read(&db).expect("db");
  let pages = saved_db.len() as u64 / page;
  assert!(pages >= 3, "{pages} pages");
  for n in 1..pages {
    scribble(&db, n * page + 16, 3000);
  }
  // SQLite's own word for it, not a conversion error from reading garbage as a row.
  assert_damaged(p.swdl(&["runs"]), "database disk image is malformed");
  // Truncated to nothing.
  std::fs::write(&db, b"").expect("truncate");
  let _ = std::fs::remove_file(&wal);
  assert_damaged(
    p.swdl(&["runs"]),
    "the database file is empty: it was truncated",
  );
  assert_damaged(
    p.swdl(&["run", "w.yaml", "--progress", "none"]),
    "the database file is empty: it was truncated",
  );
}

#[test]
fn after_a_crash_the_store_is_checked_before_it_is_used() {
  let p = Project::new();
  p.write(
    "w.yaml",
    "name: w\nstages:\n  - { id: a, uses: echo, with: { x: 1 } }\n",
  );
  for _ in 0..30 {
    p.swdl(&["run", "w.yaml", "--progress", "none"])
      .stdout("")
      .stderr("")
      .status(0)
      .run();
  }
  // Fold the log into the database.
  p.swdl(&["runs"])
    .stdout(
      r"
      RUN                          STATUS     WORKFLOW                 STARTED (UTC)         DURATION
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      ",
    )
    .stderr("")
    .status(0)
    .run();
  let db = p.store().join("swdl.db");
  let pages = std::fs::metadata(&db).map_or(0, |m| m.len()) / 4096;
  p.write(
    "slow.yaml",
    "name: slow\nstages:\n  - { id: a, uses: sleep, with: { ms: 60000 } }\n",
  );
  let mut child = p.spawn_run("slow.yaml", &[]);
  crate::common::wait_for(std::time::Duration::from_secs(20), || {
    p.runs().iter().any(|r| r["workflow"] == "slow")
  });
  child.kill().expect("kill -9");
  let _ = child.wait();
  // The crash (say) also hit a page that listing runs never reads, and one the log does not
  // hold a newer copy of.
  let wal = std::fs::read(p.store().join("swdl.db-wal")).unwrap_or_default();
  let in_log: std::collections::HashSet<u64> = wal
    .get(32..)
    .unwrap_or_default()
    .chunks(24 + 4096)
    .filter(|f| f.len() >= 4)
    .map(|f| u64::from(u32::from_be_bytes([f[0], f[1], f[2], f[3]])))
    .collect();
  let page = (2..=pages)
    .rev()
    .find(|n| !in_log.contains(n))
    .expect("a page outside the log");
  scribble(&db, (page - 1) * 4096 + 8, 4000);
  assert_damaged(
    p.swdl(&["runs", "--status", "completed"]),
    // What the check lists depends on where the damaged page falls.
    "its integrity check found: *** in database main ***\n...\n[..]",
  );
}
