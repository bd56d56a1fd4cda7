//! [`Test`]: one scenario against the real `swdl` binary, written as a specification.
//!
//! ```ignore
//! Test::new()
//!   .workflow(r#"
//!     name: hello
//!     stages:
//!       - { id: a, uses: nope }
//!   "#)
//!   .args(["validate", "wf.yaml"])
//!   .stdout("")
//!   .stderr(r#"
//!     wf.yaml:3:22: error: unknown skill `nope`
//!     ...
//!   "#)
//!   .status(2)
//!   .run();
//! ```
//!
//! Files and expectations are raw strings unindented with [`unindent`]: the first newline and
//! the indentation common to all non-blank lines go, as with `indoc`.
//!
//! The command runs in a fresh temporary directory (or the one given to [`Test::at`]) with
//! `NO_COLOR=1`, stdin closed unless [`Test::stdin`] gives it, and the run store `.swdl` in that
//! directory unless the test sets `SWDL_STORE` (a test run from the repository root shares
//! [`test_store`]). `events.jsonl` in the directory is read back after the command into
//! [`Output::events`], so `--events events.jsonl` is how a test sees the events; a command told
//! to write it has an earlier one removed first.
//!
//! A watchdog kills a command still running after [`Test::timeout`] (60 s unless set) and fails
//! the test.
//!
//! Before comparing, the actual streams are normalised: the test's directory becomes `[DIR]`,
//! the repository root `[ROOT]`, the shared store `[STORE]`. In expected text, `[..]` matches
//! any text within one line, and a line holding only `...` matches any number of lines (the
//! conventions of snapbox and trycmd). Everything else must be equal, the final newline too.
//! Status, stdout and stderr are compared together, and one failure shows a diff of each stream
//! that differs (`-` expected, `+` actual) and the whole of each stream no expectation covers.
use crate::common::{TempDir, events_named, read_events, root, test_store};
use serde_json::Value;
use std::{
  ffi::OsString,
  fmt::Write as _,
  io::Write as _,
  path::{Path, PathBuf},
  process::{Command, Stdio},
  rc::Rc,
  sync::mpsc,
  time::{Duration, Instant},
};

/// How long a command may run before the watchdog kills it: far above what any test needs,
/// so only a hang trips it.
const WATCHDOG: Duration = Duration::from_mins(1);

/// Where a test runs: a temporary directory it owns, or an existing one.
enum Dir {
  Temp(TempDir),
  At(PathBuf),
}

impl Dir {
  fn path(&self) -> &Path {
    match self {
      Dir::Temp(dir) => dir.path(),
      Dir::At(path) => path,
    }
  }
}

/// One `swdl` invocation and what it must print and return; a clone shares the directory.
#[derive(Clone)]
#[must_use = "a Test does nothing until `.run()`"]
pub struct Test {
  dir: Rc<Dir>,
  args: Vec<OsString>,
  env: Vec<(OsString, Option<OsString>)>,
  stdin: Option<Vec<u8>>,
  stdout: Option<String>,
  stderr: Option<String>,
  status: Option<i32>,
  timeout: Duration,
  memory_limit: Option<u64>,
}

impl Default for Test {
  fn default() -> Self {
    Self::new()
  }
}

impl Test {
  /// A test in a fresh temporary directory, removed when the last `Test` or `Output` using it
  /// goes.
  pub fn new() -> Self {
    Self::in_dir(Rc::new(Dir::Temp(TempDir::new())))
  }

  /// A test run in an existing directory (such as [`root`]), which it never removes; the run
  /// store is the shared [`test_store`].
  pub fn at(dir: impl Into<PathBuf>) -> Self {
    Self::in_dir(Rc::new(Dir::At(dir.into()))).env("SWDL_STORE", test_store())
  }

  fn in_dir(dir: Rc<Dir>) -> Self {
    Self {
      dir,
      args: Vec::new(),
      env: Vec::new(),
      stdin: None,
      stdout: None,
      stderr: None,
      status: None,
      timeout: WATCHDOG,
      memory_limit: None,
    }
  }

  /// The directory the command runs in.
  pub fn path(&self) -> &Path {
    self.dir.path()
  }

  /// Writes `yaml`, unindented, as `wf.yaml`.
  pub fn workflow(self, yaml: &str) -> Self {
    self.file("wf.yaml", yaml)
  }

  /// Writes `text`, unindented, to `path` under the directory, making its parents.
  pub fn file(self, path: &str, text: &str) -> Self {
    self.bytes(path, unindent(text).as_bytes())
  }

  /// Writes `bytes` as they are to `path` under the directory, making its parents.
  pub fn bytes(self, path: &str, bytes: &[u8]) -> Self {
    let path = self.path().join(path);
    if let Some(parent) = path.parent() {
      std::fs::create_dir_all(parent).expect("create parent dirs");
    }
    let mut file = std::fs::File::create(&path).expect("create file");
    file.write_all(bytes).expect("write file");
    self
  }

  /// Writes `text`, unindented, as the skill `skills/NAME`.
  pub fn skill(self, name: &str, text: &str) -> Self {
    self.file(&format!("skills/{name}"), text)
  }

  /// Appends arguments to the command line.
  pub fn args<I, S>(mut self, args: I) -> Self
  where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
  {
    self.args.extend(args.into_iter().map(Into::into));
    self
  }

  /// Sets an environment variable for the command.
  pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
    self.env.push((key.into(), Some(value.into())));
    self
  }

  /// Removes an environment variable from the command's environment.
  pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
    self.env.push((key.into(), None));
    self
  }

  /// Feeds `text` (as it is, not unindented) to the command's stdin.
  pub fn stdin(mut self, text: &str) -> Self {
    self.stdin = Some(text.as_bytes().to_vec());
    self
  }

  /// Expects this stdout (unindented; wildcards allowed).
  pub fn stdout(mut self, expected: &str) -> Self {
    self.stdout = Some(unindent(expected));
    self
  }

  /// Expects this stderr (unindented; wildcards allowed).
  pub fn stderr(mut self, expected: &str) -> Self {
    self.stderr = Some(unindent(expected));
    self
  }

  /// Expects this exit code.
  pub fn status(mut self, code: i32) -> Self {
    self.status = Some(code);
    self
  }

  /// Lets the command run for up to `limit` before the watchdog kills it and fails the test.
  pub fn timeout(mut self, limit: Duration) -> Self {
    self.timeout = limit;
    self
  }

  /// Runs the command under an address-space limit of `bytes`, so that building gigabytes
  /// fails to allocate instead of passing.
  pub fn memory_limit(mut self, bytes: u64) -> Self {
    self.memory_limit = Some(bytes);
    self
  }

  /// The configured command, for tests that spawn it and talk to it while it runs; nothing
  /// is checked.
  pub fn command(&self) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swdl"));
    command
      .args(&self.args)
      .current_dir(self.path())
      .env("NO_COLOR", "1")
      .env_remove("SWDL_STORE")
      .stdin(Stdio::null());
    for (key, value) in &self.env {
      match value {
        Some(value) => command.env(key, value),
        None => command.env_remove(key),
      };
    }
    if let Some(bytes) = self.memory_limit {
      use std::os::unix::process::CommandExt;
      // SAFETY: setrlimit only changes this child's limits; it runs between fork and exec and
      // touches no memory shared with the parent.
      unsafe {
        command.pre_exec(move || {
          let limit = libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
          };
          if libc::setrlimit(libc::RLIMIT_AS, &raw const limit) != 0 {
            return Err(std::io::Error::last_os_error());
          }
          Ok(())
        });
      }
    }
    command
  }

  /// Runs the command to its end and checks every expectation set, panicking with one report
  /// of everything that differs.
  #[track_caller]
  pub fn run(self) -> Output {
    let events = self.path().join("events.jsonl");
    if self
      .args
      .iter()
      .any(|a| Path::new(a) == events || a == "events.jsonl")
    {
      // A file left by an earlier command must not pass for this one's events.
      let _ = std::fs::remove_file(&events);
    }
    let mut command = self.command();
    if self.stdin.is_some() {
      command.stdin(Stdio::piped());
    }
    let start = Instant::now();
    let mut child = command
      .stdout(Stdio::piped())
      .stderr(Stdio::piped())
      .spawn()
      .expect("swdl starts");
    if let Some(input) = &self.stdin {
      let mut pipe = child.stdin.take().expect("stdin is piped");
      // The command may exit without reading all of it; that is its business.
      let _ = pipe.write_all(input);
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let mut status = None;
    let finished = crate::common::wait_for(self.timeout, || {
      status = child.try_wait().expect("try_wait");
      status.is_some()
    });
    let elapsed = start.elapsed();
    if !finished {
      let _ = child.kill();
      let _ = child.wait();
    }
    // A process the command left behind may hold a pipe open; do not wait for it forever.
    let collect =
      |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    let out = Output {
      status: status.and_then(|s| s.code()).unwrap_or(-1),
      stdout: String::from_utf8_lossy(&collect(stdout)).into_owned(),
      stderr: String::from_utf8_lossy(&collect(stderr)).into_owned(),
      events: read_events(&events),
      elapsed,
      dir: Rc::clone(&self.dir),
    };
    assert!(
      finished,
      "`swdl {}` did not finish within {:?}\n{}",
      self.shown_args(),
      self.timeout,
      out.dump()
    );
    self.check(&out);
    out
  }

  fn shown_args(&self) -> String {
    let args: Vec<String> = self
      .args
      .iter()
      .map(|a| a.to_string_lossy().into_owned())
      .collect();
    args.join(" ")
  }

  #[track_caller]
  fn check(&self, out: &Output) {
    let stdout = out.normalised(&out.stdout);
    let stderr = out.normalised(&out.stderr);
    if std::env::var_os("SWDL_SHOW").is_some() {
      eprintln!(
        "SHOWRUN {}\n{}\n\x01\n{}\n\x01\n{}\nEND",
        std::panic::Location::caller(),
        stdout,
        stderr,
        out.status
      );
      return;
    }
    let mut report = String::new();
    if let Some(code) = self.status.filter(|code| *code != out.status) {
      let _ = writeln!(report, "exit status: expected {code}, got {}", out.status);
    }
    for (name, expected, actual) in [
      ("stdout", &self.stdout, &stdout),
      ("stderr", &self.stderr, &stderr),
    ] {
      if let Some(expected) = expected
        && let Some(diff) = diff(expected, actual)
      {
        let _ = write!(report, "--- {name} (-expected +actual)\n{diff}");
      }
    }
    if report.is_empty() {
      return;
    }
    for (name, expected, actual) in [
      ("stdout", &self.stdout, &stdout),
      ("stderr", &self.stderr, &stderr),
    ] {
      if expected.is_none() {
        let _ = write!(report, "--- {name} (not checked)\n{actual}");
        if !actual.is_empty() && !actual.ends_with('\n') {
          report.push('\n');
        }
      }
    }
    panic!(
      "`swdl {}` in {} did not do as expected\n{report}",
      self.shown_args(),
      self.path().display()
    );
  }
}

/// A finished command: what it printed and returned, its events, and its directory.
pub struct Output {
  /// The exit code (`-1` when killed by a signal).
  pub status: i32,
  /// Stdout as printed (not normalised).
  pub stdout: String,
  /// Stderr as printed (not normalised).
  pub stderr: String,
  /// The events the command wrote to `events.jsonl`, if it did.
  pub events: Vec<Value>,
  /// Wall time of the whole command, start-up included.
  pub elapsed: Duration,
  dir: Rc<Dir>,
}

/// Reads all of `pipe` on a thread of its own; the bytes arrive on the channel at its end.
fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
  let (tx, rx) = mpsc::channel();
  std::thread::spawn(move || {
    let mut bytes = Vec::new();
    if let Some(mut pipe) = pipe {
      let _ = pipe.read_to_end(&mut bytes);
    }
    let _ = tx.send(bytes);
  });
  rx
}

impl Output {
  /// The directory the command ran in.
  pub fn path(&self) -> &Path {
    self.dir.path()
  }

  /// A new test in the same directory, to run another command on what this one left.
  pub fn then(&self) -> Test {
    let test = Test::in_dir(Rc::clone(&self.dir));
    match *self.dir {
      Dir::At(_) => test.env("SWDL_STORE", test_store()),
      Dir::Temp(_) => test,
    }
  }

  /// Stdout parsed as JSON.
  #[track_caller]
  pub fn json(&self) -> Value {
    serde_json::from_str(&self.stdout)
      .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
  }

  /// The `run_completed` event, which must be the last one.
  #[track_caller]
  pub fn completed(&self) -> &Value {
    match self.events.last() {
      Some(last) if last["event"] == "run_completed" => last,
      _ => panic!("the last event is not run_completed\n{}", self.dump()),
    }
  }

  /// A stage's final status, from `run_completed.stages`.
  #[track_caller]
  pub fn final_status(&self, stage: &str) -> &str {
    self.completed()["stages"][stage]
      .as_str()
      .unwrap_or_else(|| panic!("no final status for `{stage}`\n{}", self.dump()))
  }

  /// Every `name` event about `stage`, in order.
  pub fn named(&self, name: &str, stage: &str) -> Vec<&Value> {
    events_named(&self.events, name, stage)
  }

  /// The only `name` event about `stage`.
  #[track_caller]
  pub fn one(&self, name: &str, stage: &str) -> &Value {
    let found = self.named(name, stage);
    assert!(
      found.len() == 1,
      "expected one `{name}` for `{stage}`, found {}\n{}",
      found.len(),
      self.dump()
    );
    found[0]
  }

  /// The error of the (last) `stage_failed` of `stage`.
  #[track_caller]
  pub fn error_of(&self, stage: &str) -> &str {
    self
      .named("stage_failed", stage)
      .last()
      .and_then(|e| e["error"].as_str())
      .unwrap_or_else(|| panic!("no stage_failed for `{stage}`\n{}", self.dump()))
  }

  /// The outputs of `stage`'s only `stage_completed`.
  #[track_caller]
  pub fn outputs(&self, stage: &str) -> &Value {
    &self.one("stage_completed", stage)["outputs"]
  }

  /// Index of the first `name` event about `stage`.
  #[track_caller]
  pub fn index(&self, name: &str, stage: &str) -> usize {
    self
      .events
      .iter()
      .position(|e| e["event"] == name && e["stage"] == stage)
      .unwrap_or_else(|| panic!("no `{name}` for `{stage}`\n{}", self.dump()))
  }

  /// How many events have this name.
  pub fn count(&self, name: &str) -> usize {
    self.events.iter().filter(|e| e["event"] == name).count()
  }

  /// The events, stdout and stderr, for failure messages.
  pub fn dump(&self) -> String {
    let lines: Vec<String> = self.events.iter().map(Value::to_string).collect();
    format!(
      "exit status {}\n--- events\n{}\n--- stdout\n{}\n--- stderr\n{}",
      self.status,
      lines.join("\n"),
      self.stdout,
      self.stderr
    )
  }

  /// `text` with the varying paths replaced by their placeholders.
  pub fn normalised(&self, text: &str) -> String {
    normalise(text, self.path())
  }
}

/// `text` with `dir` as `[DIR]`, the repository root as `[ROOT]`, the shared store as
/// `[STORE]`.
pub fn normalise(text: &str, dir: &Path) -> String {
  let mut text = text.to_string();
  let mut paths = vec![(test_store(), "[STORE]")];
  if dir != root() {
    paths.push((dir.to_path_buf(), "[DIR]"));
  }
  paths.push((root(), "[ROOT]"));
  for (path, name) in paths {
    let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
    for path in [canonical, path] {
      let path = path.display().to_string();
      if !path.is_empty() {
        text = text.replace(&path, name);
      }
    }
  }
  text
}

/// Drops a first newline and the indentation common to all non-blank lines; whitespace-only
/// lines become empty, and a whitespace-only last line (the closing quote's indentation) goes.
pub fn unindent(text: &str) -> String {
  let text = text.strip_prefix('\n').unwrap_or(text);
  let indent = text
    .lines()
    .filter(|l| !l.trim().is_empty())
    .map(|l| l.len() - l.trim_start_matches(' ').len())
    .min()
    .unwrap_or(0);
  let mut out = String::with_capacity(text.len());
  for line in text.split_inclusive('\n') {
    if line.trim().is_empty() {
      if line.ends_with('\n') {
        out.push('\n');
      }
    } else {
      out.push_str(&line[indent..]);
    }
  }
  out
}

/// Asserts that `actual` (say, an error in an event) matches the pattern `expected`,
/// unindented and with the same wildcards as the streams, showing a diff when it does not. A
/// final newline on either side does not count.
#[track_caller]
pub fn assert_matches(expected: &str, actual: &str) {
  if std::env::var_os("SWDL_SHOW").is_some() {
    eprintln!("SHOW {}\n{actual}\nEND", std::panic::Location::caller());
    return;
  }
  let expected = unindent(expected);
  let expected = expected.strip_suffix('\n').unwrap_or(&expected);
  if let Some(diff) = diff(expected, actual.strip_suffix('\n').unwrap_or(actual)) {
    panic!("text differs (-expected +actual)\n{diff}");
  }
}

/// Whether `actual` matches the one-line pattern `expected`, where `[..]` is any text.
pub fn line_matches(expected: &str, actual: &str) -> bool {
  let parts: Vec<&str> = expected.split("[..]").collect();
  let [first, middle @ .., last] = parts.as_slice() else {
    return expected == actual;
  };
  let Some(rest) = actual.strip_prefix(first) else {
    return false;
  };
  let Some(mut rest) = rest.strip_suffix(last) else {
    return false;
  };
  for part in middle {
    match rest.find(part) {
      Some(at) => rest = &rest[at + part.len()..],
      None => return false,
    }
  }
  true
}

/// Whether `actual` matches `expected` as a whole, wildcards included.
pub fn matches(expected: &str, actual: &str) -> bool {
  diff(expected, actual).is_none()
}

/// A line diff of `actual` against the pattern `expected`, or `None` when they match.
#[expect(
  clippy::many_single_char_names,
  reason = "the textbook names of an edit-distance table"
)]
pub fn diff(expected: &str, actual: &str) -> Option<String> {
  let e: Vec<&str> = expected.lines().collect();
  let a: Vec<&str> = actual.lines().collect();
  let (n, m) = (e.len(), a.len());
  // cost[i][j]: the fewest lines to add or remove to match e[i..] with a[j..].
  let mut cost = vec![vec![0usize; m + 1]; n + 1];
  for i in (0..=n).rev() {
    for j in (0..=m).rev() {
      cost[i][j] = if i == n {
        m - j
      } else if e[i] == "..." {
        let skip = cost[i + 1][j];
        if j < m {
          skip.min(cost[i][j + 1])
        } else {
          skip
        }
      } else if j == m {
        1 + cost[i + 1][j]
      } else {
        let mut best = 1 + cost[i + 1][j].min(cost[i][j + 1]);
        if line_matches(e[i], a[j]) {
          best = best.min(cost[i + 1][j + 1]);
        }
        best
      };
    }
  }
  let ends_open = e.last() == Some(&"...");
  // Told apart only when the lines match: otherwise the diff says enough.
  let newline_differs = cost[0][0] == 0
    && !ends_open
    && !(expected.is_empty() && actual.is_empty())
    && expected.ends_with('\n') != actual.ends_with('\n');
  if cost[0][0] == 0 && !newline_differs {
    return None;
  }
  let mut out = String::new();
  let (mut i, mut j) = (0, 0);
  while i < n || j < m {
    if i < n && e[i] == "..." {
      if j < m && cost[i][j] == cost[i][j + 1] {
        j += 1;
      } else {
        let _ = writeln!(out, " ...");
        i += 1;
      }
    } else if i < n && j < m && line_matches(e[i], a[j]) && cost[i][j] == cost[i + 1][j + 1] {
      let _ = writeln!(out, " {}", a[j]);
      i += 1;
      j += 1;
    } else if i < n && cost[i][j] == 1 + cost[i + 1][j] {
      let _ = writeln!(out, "-{}", e[i]);
      i += 1;
    } else {
      let _ = writeln!(out, "+{}", a[j]);
      j += 1;
    }
  }
  if newline_differs {
    let _ = writeln!(
      out,
      "(the final newline: expected {}, actual {})",
      if expected.ends_with('\n') {
        "yes"
      } else {
        "no"
      },
      if actual.ends_with('\n') { "yes" } else { "no" }
    );
  }
  Some(out)
}

#[test]
fn unindent_strips_the_common_indentation_and_the_first_newline() {
  assert_eq!(unindent("\n    a\n      b\n\n    c\n    "), "a\n  b\n\nc\n");
  assert_eq!(unindent("one line\n"), "one line\n");
  assert_eq!(unindent(""), "");
}

#[test]
fn wildcards_match_within_a_line_and_across_lines() {
  assert!(line_matches("run [..] took [..]s", "run abc took 0.01s"));
  assert!(line_matches("[..]", ""));
  assert!(!line_matches("a[..]a", "a"));
  assert!(!line_matches("run [..]", "ran x"));
  assert!(matches("a\n...\nz\n", "a\nb\nc\nz\n"));
  assert!(matches("a\n...\nz\n", "a\nz\n"));
  assert!(matches("a\n...\n", "a\nb"));
  assert!(!matches("a\n", "a"));
  assert!(!matches("a\nb\n", "a\nc\n"));
  assert_eq!(
    diff("a\nb\nc\n", "a\nx\nc\n").as_deref(),
    Some(" a\n-b\n+x\n c\n")
  );
}
