//! The run store through the binary: history, suspended gates decided by `swdl approve|reject`
//! and continued by `swdl resume`, steering a live run from another process, crash safety
//! under `kill -9`, many processes sharing one store, and secrets kept out of it.

mod crash;
mod fanout;
mod gates;
mod large;
mod retry;
mod sharing;

use crate::{
  common::{read_events, root, wait_for},
  test::{Test, assert_matches, normalise},
};
use std::{
  collections::HashMap,
  ffi::OsStr,
  path::{Path, PathBuf},
  process::{Child, Command, Stdio},
  time::Duration,
};

/// A project directory with its own store, `store/`, named on every command line (so the
/// commands the binary suggests carry `--store [DIR]/store`); each command is a [`Test`].
pub(crate) struct Project(Test);

impl Project {
  pub(crate) fn new() -> Self {
    Self(Test::new())
  }

  pub(crate) fn path(&self) -> &Path {
    self.0.path()
  }

  pub(crate) fn store(&self) -> PathBuf {
    self.path().join("store")
  }

  /// Writes `text` as it is to `name` in the project and returns its path.
  pub(crate) fn write(&self, name: &str, text: &str) -> PathBuf {
    let path = self.path().join(name);
    std::fs::write(&path, text).expect("write file");
    path
  }

  /// `swdl ARGS` in the project directory, with no store of its own.
  pub(crate) fn bare(&self, args: &[&str]) -> Test {
    self.0.clone().args(args.iter().copied())
  }

  /// `swdl ARGS --store STORE` in the project directory.
  pub(crate) fn swdl(&self, args: &[&str]) -> Test {
    self
      .bare(args)
      .args([OsStr::new("--store"), self.store().as_os_str()])
  }

  /// [`Project::swdl`] as a command, to spawn.
  pub(crate) fn command(&self, args: &[&str]) -> Command {
    self.swdl(args).command()
  }

  /// Starts `swdl run FILE --progress none` in the background.
  pub(crate) fn spawn_run(&self, file: &str, extra: &[&str]) -> Child {
    let mut args = vec!["run", file, "--progress", "none"];
    args.extend_from_slice(extra);
    self
      .command(&args)
      .stdout(Stdio::null())
      .stderr(Stdio::piped())
      .spawn()
      .expect("spawn swdl")
  }

  /// Every run in the store, newest first.
  pub(crate) fn runs(&self) -> Vec<serde_json::Value> {
    let out = self.swdl(&["runs", "--format", "json"]).status(0).run();
    out.json().as_array().cloned().unwrap_or_default()
  }

  /// The only run's id, once it is in the store.
  #[track_caller]
  pub(crate) fn wait_run_id(&self) -> String {
    let mut id = None;
    let found = wait_for(Duration::from_secs(20), || {
      if !self.store().join("swdl.db").exists() {
        return false;
      }
      id = self
        .runs()
        .first()
        .and_then(|r| r["id"].as_str().map(str::to_string));
      id.is_some()
    });
    assert!(found, "no run appeared in the store");
    id.unwrap_or_default()
  }

  /// `swdl runs ID --format json`.
  pub(crate) fn detail(&self, id: &str) -> serde_json::Value {
    let out = self.swdl(&["runs", id, "--format", "json"]).status(0).run();
    out.json()
  }
}

/// The run's id from its `run ID is suspended at ...` message.
#[track_caller]
pub(crate) fn run_id_in(stderr: &str) -> String {
  let id = stderr
    .lines()
    .find(|l| l.contains(" is suspended at "))
    .and_then(|l| l.strip_prefix("run "))
    .and_then(|l| l.split_whitespace().next());
  match id {
    Some(id) => id.to_string(),
    None => panic!("no suspension message in:\n{stderr}"),
  }
}
