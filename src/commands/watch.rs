//! `swdl watch FILE [--run]`: re-validates and re-plans (or re-runs) a workflow whenever the
//! file, one of its skills or one of its hook files changes, printing only what changed.
//!
//! Directories are watched rather than files, because editors save by writing a new file and
//! renaming it over the old one (which would end a watch on the old file). Changes are
//! gathered for [`SETTLE`] so one save that touches a file several times is handled once.
use super::*;
use crate::commands::Error;
use notify::{RecursiveMode, Watcher};
use std::{
  collections::BTreeSet,
  io::Write,
  path::{Path, PathBuf},
  process::{Child, Command},
  sync::{
    atomic::{AtomicBool, Ordering},
    mpsc,
  },
  time::Duration,
};

/// How long after a change the watch waits for more before acting.
const SETTLE: Duration = Duration::from_millis(100);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
  INTERRUPTED.store(true, Ordering::SeqCst);
}

/// What the watch looks at, from the workflow as last loaded.
#[derive(Debug, Default, PartialEq)]
struct Watched {
  /// Directories to watch, and whether recursively.
  dirs: BTreeSet<(PathBuf, bool)>,
  /// Files whose change matters (the workflow, hook files); anything under `trees` matters too.
  files: BTreeSet<PathBuf>,
  trees: BTreeSet<PathBuf>,
}

impl Watched {
  fn of(file: &Path, workflow: Option<&workflow::Workflow>) -> Self {
    let mut watched = Self::default();
    let file = absolute(file);
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    watched.dirs.insert((base.clone(), false));
    watched.files.insert(file);
    let (skills, hooks) = workflow.map_or_else(
      || (vec!["skills".to_string()], Vec::new()),
      |w| (w.config.skills_path.clone(), w.config.hooks.clone()),
    );
    for dir in skills {
      let dir = absolute(&base.join(dir));
      if dir.is_dir() {
        watched.dirs.insert((dir.clone(), true));
        watched.trees.insert(dir);
      }
    }
    for hook in hooks {
      let hook = absolute(&base.join(hook));
      if let Some(parent) = hook.parent() {
        watched.dirs.insert((parent.to_path_buf(), false));
      }
      watched.files.insert(hook);
    }
    watched
  }

  fn matters(&self, path: &Path) -> bool {
    let path = absolute(path);
    self.files.contains(&path) || self.trees.iter().any(|t| path.starts_with(t))
  }
}

fn absolute(path: &Path) -> PathBuf {
  if let Ok(canonical) = std::fs::canonicalize(path) {
    return canonical;
  }
  // A file that does not exist (yet): canonicalise its directory.
  match (path.parent(), path.file_name()) {
    (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
      std::fs::canonicalize(parent).map_or_else(|_| path.to_path_buf(), |p| p.join(name))
    }
    _ => std::env::current_dir().map_or_else(|_| path.to_path_buf(), |d| d.join(path)),
  }
}

/// Runs `swdl watch`; returns 0 when interrupted.
pub(super) fn watch(file: &Path, run: bool) -> Result<Done, Error> {
  // A broken file is watched until it is fixed, but one that is not there is a mistake in the
  // command line: fail at once, as `run` would.
  std::fs::metadata(file).map_err(|e| Error::Io {
    path: file.display().to_string(),
    message: e.to_string(),
  })?;
  // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
  unsafe {
    libc::signal(
      libc::SIGINT,
      on_interrupt as *const () as libc::sighandler_t,
    );
    libc::signal(
      libc::SIGTERM,
      on_interrupt as *const () as libc::sighandler_t,
    );
  }
  let (tx, rx) = mpsc::channel();
  let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
    // Reading a file (as the watch itself does) is an event too; only writes matter.
    if let Ok(event) = event
      && matches!(
        event.kind,
        notify::EventKind::Create(_) | notify::EventKind::Modify(_) | notify::EventKind::Remove(_)
      )
    {
      let _ = tx.send(event.paths);
    }
  })
  .map_err(|e| Error::Usage(format!("cannot watch files: {e}")))?;
  let mut state = State {
    file: file.to_path_buf(),
    run,
    last: None,
    child: None,
  };
  let mut watched = Watched::default();
  let mut out = std::io::stdout();
  let _ = writeln!(
    out,
    "watching {} with its skills and hooks; Ctrl-C to stop",
    file.display()
  );
  let _ = out.flush();
  let workflow = state.check(&[]);
  rewatch(
    &mut watcher,
    &mut watched,
    Watched::of(file, workflow.as_ref()),
  );
  while !INTERRUPTED.load(Ordering::SeqCst) {
    let paths = match rx.recv_timeout(Duration::from_millis(100)) {
      Ok(paths) => paths,
      Err(mpsc::RecvTimeoutError::Timeout) => {
        state.reap();
        continue;
      }
      Err(mpsc::RecvTimeoutError::Disconnected) => break,
    };
    let mut changed: BTreeSet<PathBuf> = paths.into_iter().filter(|p| watched.matters(p)).collect();
    // Gather the rest of this burst.
    let until = std::time::Instant::now() + SETTLE;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
      match rx.recv_timeout(left) {
        Ok(paths) => changed.extend(paths.into_iter().filter(|p| watched.matters(p))),
        Err(_) => break,
      }
    }
    if changed.is_empty() {
      continue;
    }
    // Named as the user would: the file as given, the others relative to its directory.
    let own = absolute(file);
    let base = own.parent().map(Path::to_path_buf).unwrap_or_default();
    let names: Vec<String> = changed
      .iter()
      .map(|p| {
        let p = absolute(p);
        if p == own {
          file.display().to_string()
        } else {
          p.strip_prefix(&base).unwrap_or(&p).display().to_string()
        }
      })
      .collect();
    let workflow = state.check(&names);
    rewatch(
      &mut watcher,
      &mut watched,
      Watched::of(file, workflow.as_ref()),
    );
  }
  state.stop_child();
  let _ = writeln!(out, "watch stopped");
  Ok(Done::Ok)
}

/// Watches what `next` says, if it differs from what is watched.
fn rewatch(watcher: &mut impl Watcher, watched: &mut Watched, next: Watched) {
  if *watched == next {
    return;
  }
  for (dir, _) in &watched.dirs {
    let _ = watcher.unwatch(dir);
  }
  for (dir, recursive) in &next.dirs {
    let mode = if *recursive {
      RecursiveMode::Recursive
    } else {
      RecursiveMode::NonRecursive
    };
    let _ = watcher.watch(dir, mode);
  }
  *watched = next;
}

struct State {
  file: PathBuf,
  run: bool,
  /// What was printed last time (the plan, or the errors), and whether the file was valid.
  last: Option<(String, bool)>,
  child: Option<Child>,
}

impl State {
  /// Validates and plans (or runs) the workflow again, printing what changed since last time.
  fn check(&mut self, changed: &[String]) -> Option<workflow::Workflow> {
    let mut out = std::io::stdout();
    let time = event::now_rfc3339();
    let time = time.get(11..19).unwrap_or_default();
    if !changed.is_empty() {
      let _ = write!(out, "\n[{time}] changed: {}", changed.join(", "));
    }
    let (text, workflow) = match compose::load_file(&self.file) {
      Ok(workflow) => {
        let values = params::defaults(&workflow);
        (
          crate::plan::plan(&workflow, &values).to_text(false),
          Some(workflow),
        )
      }
      Err(compose::LoadError::Invalid(d)) => (d.render(false), None),
      Err(e) => (format!("error: {e}\n"), None),
    };
    let valid = workflow.is_some();
    match &self.last {
      None => {
        let _ = write!(out, "{text}");
      }
      Some((last, _)) if *last == text => {
        let _ = writeln!(
          out,
          " ({})",
          if valid {
            "plan unchanged"
          } else {
            "still invalid"
          }
        );
      }
      Some((last, true)) if valid => {
        let _ = writeln!(out, "\nplan changed:");
        let _ = write!(out, "{}", diff(last, &text));
      }
      Some((_, false)) if valid => {
        let _ = writeln!(out, "\nvalid again:");
        let _ = write!(out, "{text}");
      }
      Some(_) => {
        let _ = write!(out, "\n{text}");
      }
    }
    let _ = out.flush();
    self.last = Some((text, valid));
    if self.run && workflow.is_some() {
      self.start_child();
    }
    workflow
  }

  /// Runs the workflow in a child `swdl run`, stopping one still running from a change before.
  fn start_child(&mut self) {
    self.stop_child();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("swdl"));
    let child = Command::new(exe)
      .args(["run", "--progress", "plain", "--store", "none"])
      .arg(&self.file)
      .stdin(std::process::Stdio::null())
      .spawn();
    match child {
      Ok(child) => self.child = Some(child),
      Err(e) => println!("error: cannot start the run: {e}"),
    }
  }

  fn stop_child(&mut self) {
    if let Some(mut child) = self.child.take()
      && matches!(child.try_wait(), Ok(None))
    {
      println!("stopping the previous run");
      let _ = child.kill();
      let _ = child.wait();
    }
  }

  /// Reports a finished run.
  fn reap(&mut self) {
    if let Some(child) = &mut self.child
      && let Ok(Some(status)) = child.try_wait()
    {
      println!("run exited with {}", status.code().unwrap_or(-1));
      let _ = std::io::stdout().flush();
      self.child = None;
    }
  }
}

/// Lines only in `new` as `+ line`, lines only in `old` as `- line`, in order.
fn diff(old: &str, new: &str) -> String {
  let old_lines: Vec<&str> = old.lines().collect();
  let new_lines: Vec<&str> = new.lines().collect();
  let mut out = String::new();
  for line in &old_lines {
    if !new_lines.contains(line) {
      out.push_str(&format!("- {line}\n"));
    }
  }
  for line in &new_lines {
    if !old_lines.contains(line) {
      out.push_str(&format!("+ {line}\n"));
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn diff_lists_removed_then_added_lines() {
    assert_eq!(diff("a\nb\nc\n", "a\nc\nd\n"), "- b\n+ d\n");
    assert_eq!(diff("a\n", "a\n"), "");
  }

  #[test]
  fn only_the_workflow_its_hooks_and_its_skills_matter() {
    let dir = std::env::temp_dir().join(format!("swdl-watch-{}", std::process::id()));
    let _ = std::fs::create_dir_all(dir.join("skills"));
    let file = dir.join("wf.yaml");
    let _ = std::fs::write(&file, "name: x\nstages: []\n");
    let watched = Watched::of(&file, None);
    assert!(watched.matters(&file));
    assert!(watched.matters(&dir.join("skills/new.lua")));
    assert!(!watched.matters(&dir.join("events.jsonl")));
    assert!(!watched.matters(&dir.join(".swdl/swdl.db")));
    let _ = std::fs::remove_dir_all(&dir);
  }
}
