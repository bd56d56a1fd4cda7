//! `swdl watch`: edits to the workflow and to a skill are noticed and re-planned; errors do
//! not stop the watch; Ctrl-C ends it with exit 0.
use crate::test::{Test, line_matches};
use std::{
  io::{BufRead, BufReader},
  process::{Child, Command, Stdio},
  sync::mpsc,
  time::Duration,
};

const WF: &str = "name: watched\nstages:\n  - id: a\n    uses: echo\n  - id: b\n    uses: echo\n    depends_on: [a]\n";

/// Starts `swdl watch wf.yaml EXTRA` in `test`'s directory; its stdout arrives line by line.
fn watch(test: &Test, extra: &[&str]) -> (Child, mpsc::Receiver<String>) {
  // A raw command: the test reads the watch while it runs and ends it with SIGINT.
  let mut child = test
    .clone()
    .args(["watch", "wf.yaml"])
    .args(extra)
    .command()
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("swdl watch starts");
  let stdout = child.stdout.take().expect("stdout");
  let (tx, lines) = mpsc::channel();
  std::thread::spawn(move || {
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
      if tx.send(line).is_err() {
        break;
      }
    }
  });
  (child, lines)
}

/// Waits for a line matching `wanted` (where `[..]` is any text); every line read up to it
/// goes to `seen`. Which lines come before it depends on how the file events are grouped, so
/// the stream is not compared whole.
#[track_caller]
fn expect_line(lines: &mpsc::Receiver<String>, wanted: &str, seen: &mut Vec<String>) {
  let deadline = std::time::Instant::now() + Duration::from_secs(15);
  while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
    match lines.recv_timeout(left) {
      Ok(line) => {
        let found = line_matches(wanted, &line);
        seen.push(line);
        if found {
          return;
        }
      }
      Err(_) => break,
    }
  }
  panic!("no line with {wanted:?} in:\n{}", seen.join("\n"));
}

#[test]
fn edits_are_replanned_errors_reported_and_the_watch_goes_on() {
  let test = Test::new().file("wf.yaml", WF);
  std::fs::create_dir_all(test.path().join("skills")).expect("skills dir");
  let file = test.path().join("wf.yaml");
  let (mut child, lines) = watch(&test, &[]);
  let mut seen = Vec::new();
  expect_line(&lines, "critical path: a -> b", &mut seen);
  // Give the watcher a moment to be in place after printing the first plan.
  std::thread::sleep(Duration::from_millis(200));

  std::fs::write(
    &file,
    format!("{WF}  - id: c\n    uses: echo\n    depends_on: [b]\n"),
  )
  .expect("edit");
  expect_line(&lines, "plan changed:", &mut seen);
  expect_line(&lines, "+ critical path: a -> b -> c", &mut seen);
  assert!(
    seen.iter().any(|l| l == "- critical path: a -> b"),
    "only what changed is printed:\n{}",
    seen.join("\n")
  );
  assert!(
    !seen.iter().any(|l| l.starts_with("+ batch 1")),
    "unchanged lines are not repeated:\n{}",
    seen.join("\n")
  );

  std::fs::write(
    &file,
    format!("{WF}  - id: c\n    uses: echo\n    depends_on: [zz]\n"),
  )
  .expect("break it");
  expect_line(
    &lines,
    "wf.yaml:10:18: error: stage `c` depends on unknown stage `zz`",
    &mut seen,
  );
  std::fs::write(&file, WF).expect("fix it");
  expect_line(&lines, "valid again:", &mut seen);
  expect_line(&lines, "critical path: a -> b", &mut seen);

  // A skill appearing counts too.
  std::fs::write(
    test.path().join("skills/tidy.lua"),
    "return { run = function() return {} end }\n",
  )
  .expect("skill");
  expect_line(
    &lines,
    "[[..]] changed: skills/tidy.lua (plan unchanged)",
    &mut seen,
  );

  // Files that are none of those do not wake it. (Whatever a wake-up prints would name the
  // file; nothing else is known about it.)
  std::fs::write(test.path().join("notes.txt"), "x").expect("unrelated");
  std::thread::sleep(Duration::from_millis(400));
  while let Ok(line) = lines.try_recv() {
    assert!(!line.contains("notes.txt"), "{line}");
  }

  let _ = Command::new("kill")
    .args(["-INT", &child.id().to_string()])
    .status();
  expect_line(&lines, "watch stopped", &mut seen);
  let status = child.wait().expect("watch ends");
  assert_eq!(status.code(), Some(0));
}

#[test]
fn with_run_each_valid_version_is_run() {
  let test = Test::new().file("wf.yaml", WF);
  let file = test.path().join("wf.yaml");
  let (mut child, lines) = watch(&test, &["--run"]);
  let mut seen = Vec::new();
  expect_line(&lines, "run exited with 0", &mut seen);
  std::fs::write(
    &file,
    format!("{WF}  - id: boom\n    uses: fail\n    depends_on: [b]\n"),
  )
  .expect("edit");
  expect_line(&lines, "plan changed:", &mut seen);
  expect_line(&lines, "run exited with 1", &mut seen);
  let _ = Command::new("kill")
    .args(["-INT", &child.id().to_string()])
    .status();
  expect_line(&lines, "watch stopped", &mut seen);
  assert_eq!(child.wait().expect("watch ends").code(), Some(0));
}
