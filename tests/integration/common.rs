use std::{
  io::Write,
  path::{Path, PathBuf},
};

/// The repository root, where `examples/` and `tests/` live.
pub fn root() -> PathBuf {
  PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The run store every test's runs share (unless a test names its own): inside Cargo's
/// scratch directory for tests, emptied once per test process.
pub fn test_store() -> PathBuf {
  static STORE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
  STORE
    .get_or_init(|| {
      let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("store");
      let _ = std::fs::remove_dir_all(&dir);
      dir
    })
    .clone()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
  pub fn new() -> Self {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
      "swdl-test-{}-{}",
      std::process::id(),
      COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    no_store_above(&dir);
    Self(dir)
  }

  /// Writes a file under the directory and returns its path.
  pub fn write(&self, name: &str, text: &str) -> PathBuf {
    let path = self.0.join(name);
    let mut file = std::fs::File::create(&path).expect("create file");
    file.write_all(text.as_bytes()).expect("write file");
    path
  }
}

impl TempDir {
  /// The directory.
  pub fn path(&self) -> &std::path::Path {
    &self.0
  }
}

impl Drop for TempDir {
  fn drop(&mut self) {
    let _ = std::fs::remove_dir_all(&self.0);
  }
}

/// Every `name` event about `stage`, in order.
pub fn events_named<'a>(
  events: &'a [serde_json::Value],
  name: &str,
  stage: &str,
) -> Vec<&'a serde_json::Value> {
  events
    .iter()
    .filter(|e| e["event"] == name && e["stage"] == stage)
    .collect()
}

/// Parses a JSON Lines events file; a missing file is no events, and a last line still being
/// written is skipped, but any other bad line fails the test.
#[track_caller]
pub fn read_events(path: &Path) -> Vec<serde_json::Value> {
  let text = std::fs::read_to_string(path).unwrap_or_default();
  let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
  let last = lines.len().saturating_sub(1);
  lines
    .iter()
    .enumerate()
    .filter_map(|(i, l)| match serde_json::from_str(l) {
      Ok(value) => Some(value),
      Err(_) if i == last && !text.ends_with('\n') => None,
      Err(e) => panic!("bad event line ({e}): {l}"),
    })
    .collect()
}

/// Polls `done` every 10 ms for up to `limit`.
pub fn wait_for(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
  let start = std::time::Instant::now();
  loop {
    if done() {
      return true;
    }
    if start.elapsed() > limit {
      return false;
    }
    std::thread::sleep(std::time::Duration::from_millis(10));
  }
}

/// Fails when a `.swdl/` sits above the temporary directories: commands look for the nearest
/// one (as git looks for `.git`), so every test would share it instead of its own.
fn no_store_above(dir: &Path) {
  static CHECKED: std::sync::Once = std::sync::Once::new();
  CHECKED.call_once(|| {
    if let Some(found) = dir
      .ancestors()
      .skip(1)
      .map(|d| d.join(".swdl"))
      .find(|d| d.is_dir())
    {
      panic!(
        "{} exists above the tests' temporary directories; commands would use it instead of \
         each test's own store: remove it (or set TMPDIR elsewhere)",
        found.display()
      );
    }
  });
}
