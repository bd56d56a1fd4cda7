//! The README, checked: its tour runs as written, line by line and in order, in a directory laid
//! out like the repository; its example workflow and its example mistake are what the files
//! and the binary really say.
use crate::{
  common::{TempDir, root},
  models::{VALID, completion},
  server::Server,
};
use std::{
  io::{BufRead, BufReader, Read},
  path::Path,
  process::{Child, Command, Stdio},
  sync::mpsc,
  time::{Duration, Instant},
};

/// Far above what any line needs; only a hang reaches it.
const LIMIT: Duration = Duration::from_mins(1);

fn readme() -> String {
  std::fs::read_to_string(root().join("README.md")).expect("README.md")
}

/// The first fenced block after the line `heading` (its text, without the fences).
fn block_after(text: &str, heading: &str) -> String {
  let after = text
    .split_once(heading)
    .unwrap_or_else(|| panic!("README has no `{heading}`"))
    .1;
  let open = after.find("```").expect("a block follows");
  let body = &after[open..];
  let body = &body[body.find('\n').expect("a fence line") + 1..];
  body[..body.find("```").expect("the block closes")].to_string()
}

/// The tour's commands: each line of its block without the comment after it.
fn tour() -> Vec<String> {
  block_after(&readme(), "## A short tour")
    .lines()
    .map(|line| line.split_once("  #").map_or(line, |(command, _)| command))
    .map(|command| command.trim().to_string())
    .filter(|command| !command.is_empty())
    .collect()
}

/// A directory laid out like the repository, for the tour to run in without touching it.
fn sandbox() -> TempDir {
  let dir = TempDir::new();
  for name in ["examples", "skills", "hooks"] {
    std::os::unix::fs::symlink(root().join(name), dir.path().join(name)).expect("symlink");
  }
  dir
}

/// `line` run by `sh` in `dir`, as a reader would type it, with this build's `swdl` first on
/// the `PATH` and no model configured.
fn shell(dir: &Path, line: &str) -> Command {
  let bin = Path::new(env!("CARGO_BIN_EXE_swdl"))
    .parent()
    .expect("the binary's directory");
  let path = std::env::var("PATH").unwrap_or_default();
  let mut command = Command::new("sh");
  command
    .args(["-c", line])
    .current_dir(dir)
    .env("PATH", format!("{}:{path}", bin.display()))
    .env("NO_COLOR", "1")
    .env_remove("SWDL_STORE")
    .env_remove("SWDL_LLM_URL")
    .env_remove("SWDL_LLM_MODEL")
    .env_remove("SWDL_LLM_API_KEY")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
  command
}

/// Waits for `child` to exit (killing it past [`LIMIT`]) and returns its exit code and
/// output streams.
fn finish(line: &str, mut child: Child) -> (i32, String, String) {
  let drain = |stream: Option<Box<dyn Read + Send>>| {
    std::thread::spawn(move || {
      let mut text = String::new();
      if let Some(mut stream) = stream {
        let _ = stream.read_to_string(&mut text);
      }
      text
    })
  };
  let stdout = drain(
    child
      .stdout
      .take()
      .map(|s| Box::new(s) as Box<dyn Read + Send>),
  );
  let stderr = drain(
    child
      .stderr
      .take()
      .map(|s| Box::new(s) as Box<dyn Read + Send>),
  );
  let started = Instant::now();
  let status = loop {
    if let Some(status) = child.try_wait().expect("wait") {
      break status;
    }
    if started.elapsed() > LIMIT {
      let _ = child.kill();
      let _ = child.wait();
      panic!(
        "`{line}` did not finish within {LIMIT:?}\nstderr:\n{}",
        stderr.join().unwrap_or_default()
      );
    }
    std::thread::sleep(Duration::from_millis(10));
  };
  (
    status.code().unwrap_or(-1),
    stdout.join().unwrap_or_default(),
    stderr.join().unwrap_or_default(),
  )
}

/// Runs `line` to its end and checks its exit code.
#[track_caller]
fn expect(dir: &Path, line: &str, code: i32) -> String {
  let child = shell(dir, line).spawn().expect("sh starts");
  let (status, out, err) = finish(line, child);
  assert_eq!(
    status, code,
    "`{line}` exited {status}, the README promises {code}\nstdout:\n{out}\nstderr:\n{err}"
  );
  out
}

/// A command left running: its stderr (or stdout) lines arrive on a channel.
struct Running {
  child: Child,
  lines: mpsc::Receiver<String>,
}

impl Running {
  fn start(dir: &Path, line: &str, watch_stdout: bool) -> Self {
    // `exec`, so that killing the child kills swdl itself rather than the shell around it.
    let mut child = shell(dir, &format!("exec {line}"))
      .spawn()
      .expect("sh starts");
    let (tx, lines) = mpsc::channel();
    let stream: Box<dyn Read + Send> = if watch_stdout {
      Box::new(child.stdout.take().expect("stdout"))
    } else {
      Box::new(child.stderr.take().expect("stderr"))
    };
    std::thread::spawn(move || {
      for line in BufReader::new(stream).lines().map_while(Result::ok) {
        if tx.send(line).is_err() {
          return;
        }
      }
    });
    Self { child, lines }
  }

  /// Waits for a line containing `text`.
  fn wait_for(&self, what: &str, text: &str) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < LIMIT {
      match self.lines.recv_timeout(Duration::from_millis(100)) {
        Ok(line) if line.contains(text) => return,
        Ok(line) => seen.push(line),
        Err(mpsc::RecvTimeoutError::Timeout) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => break,
      }
    }
    panic!(
      "`{what}` never printed `{text}`; it printed:\n{}",
      seen.join("\n")
    );
  }
}

/// The id of the newest run of `workflow` in the store of `dir`.
fn newest_run(dir: &Path, workflow: &str) -> String {
  let out = expect(dir, "swdl runs --format json", 0);
  let runs: serde_json::Value = serde_json::from_str(&out).expect("runs as JSON");
  runs
    .as_array()
    .and_then(|runs| runs.iter().find(|run| run["workflow"] == workflow))
    .and_then(|run| run["id"].as_str())
    .unwrap_or_else(|| panic!("no run of {workflow} in:\n{out}"))
    .to_string()
}

/// The line that starts the gated demo: it waits at `signoff` without a terminal.
const GATED: &str = "swdl run examples/code-review.yaml --wait";

#[test]
fn the_tour_runs_as_written() {
  let dir = sandbox();
  let dir = dir.path();
  let lines = tour();
  assert!(lines.len() >= 10, "the tour is short: {lines:?}");
  // The run the next `approve` decides, and the id the following lines mean by RUN_ID.
  let mut waiting: Option<Running> = None;
  let mut run_id = String::new();
  for line in &lines {
    assert!(
      line.starts_with("swdl "),
      "a tour line that is not swdl: `{line}`"
    );
    let verb = line.split_whitespace().nth(1).unwrap_or_default();
    let with_id = line.replace("RUN_ID", &run_id);
    match verb {
      "run" if line == GATED => {
        let run = Running::start(dir, line, false);
        run.wait_for(line, "gate signoff waiting");
        run_id = newest_run(dir, "code-review");
        waiting = Some(run);
      }
      "approve" => {
        let mut run = waiting.take().expect("`approve` follows a waiting run");
        expect(dir, &with_id, 0);
        // Decided from this other process, the waiting run goes on and completes.
        let started = Instant::now();
        let status = loop {
          if let Some(status) = run.child.try_wait().expect("wait") {
            break status;
          }
          assert!(started.elapsed() < LIMIT, "the approved run never ended");
          std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "the approved run's exit code");
      }
      "resume" => {
        // The crashed case: the waiting process dies (kill -9), the gate is decided while
        // nothing runs, and `resume` continues from the store.
        let mut run = Running::start(dir, GATED, false);
        run.wait_for(GATED, "gate signoff waiting");
        run_id = newest_run(dir, "code-review");
        run.child.kill().expect("kill -9");
        run.child.wait().expect("reaped");
        expect(dir, &format!("swdl approve {run_id} signoff"), 0);
        expect(dir, &line.replace("RUN_ID", &run_id), 0);
      }
      "watch" => {
        let mut watch = Running::start(dir, line, true);
        watch.wait_for(line, "plan diamond");
        let _ = watch.child.kill();
        let _ = watch.child.wait();
      }
      "decompose" => {
        let server = Server::start(vec![completion(VALID, 120)]);
        let mut command = shell(dir, line);
        command
          .env("SWDL_LLM_URL", format!("{}/v1", server.url))
          .env("SWDL_LLM_MODEL", "test-model");
        let (status, _, err) = finish(line, command.spawn().expect("sh starts"));
        assert_eq!(status, 0, "`{line}`\nstderr:\n{err}");
        expect(dir, "swdl validate wf.yaml", 0);
      }
      "validate" if line.contains("examples/broken/") => {
        expect(dir, line, 2);
      }
      _ => {
        expect(dir, &with_id, 0);
      }
    }
  }
  assert!(waiting.is_none(), "a waiting run was never decided");
}

#[test]
fn the_example_workflow_is_the_file_it_names() {
  let shown = block_after(
    &readme(),
    "A workflow looks like this (`examples/hello.yaml`):",
  );
  let file = std::fs::read_to_string(root().join("examples/hello.yaml")).expect("hello.yaml");
  assert_eq!(shown, file);
}

#[test]
fn the_example_mistake_is_what_validate_prints() {
  let shown = block_after(
    &readme(),
    "A mistake looks like this (`swdl validate examples/broken/typo.yaml`):",
  );
  let child = shell(&root(), "swdl validate examples/broken/typo.yaml")
    .spawn()
    .expect("sh starts");
  let (status, out, err) = finish("validate", child);
  assert_eq!(
    (status, out.as_str(), err.as_str()),
    (2, "", shown.as_str())
  );
}
