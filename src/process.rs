//! Child processes in their own process group, for the `shell` skill and Lua's `swdl.exec`:
//! a guard that kills the whole group when an attempt is dropped (timeout, cancel), the list
//! an immediate exit kills, and the record under the run store that lets a resume kill what a
//! crashed process left running.
use std::path::{Path, PathBuf};
use tokio::process::Child;

/// Process groups of scripts still running, so an immediate exit (a second Ctrl-C, which skips
/// every destructor) can still kill them.
static LIVE_GROUPS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

/// Where this process records the process groups it starts, so that a later process can kill
/// what a crash left running (see [`kill_recorded_groups`]).
static GROUP_FILE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Records every script process group started from now on in `file` (one `PGID START` line
/// each, START being the leader's start time, so a recycled id is never mistaken for it);
/// `None` stops recording.
pub(crate) fn record_groups_in(file: Option<PathBuf>) {
  if let Some(dir) = file.as_ref().and_then(|f| f.parent()) {
    let _ = std::fs::create_dir_all(dir);
  }
  if let Ok(mut slot) = GROUP_FILE.lock() {
    *slot = file;
  }
}

/// Kills the process groups recorded in `file` by a process that died (`kill -9`) while its
/// scripts ran, when their leader is still the process that was recorded; then removes the
/// file. Returns how many groups were killed.
pub(crate) fn kill_recorded_groups(file: &Path) -> usize {
  let Ok(text) = std::fs::read_to_string(file) else {
    return 0;
  };
  let mut killed = 0;
  for line in text.lines() {
    let mut words = line.split_whitespace();
    let (Some(Ok(pgid)), Some(Ok(start))) = (
      words.next().map(str::parse::<libc::pid_t>),
      words.next().map(str::parse::<u64>),
    ) else {
      continue;
    };
    if pgid > 1 && start_time(pgid) == Some(start) {
      // SAFETY: killpg only sends a signal. The group's leader is alive and started when the
      // recorded one did, so it is the script the dead process started, not a reused id.
      unsafe {
        libc::killpg(pgid, libc::SIGKILL);
      }
      killed += 1;
    }
  }
  let _ = std::fs::remove_file(file);
  killed
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`, field 22).
fn start_time(pid: libc::pid_t) -> Option<u64> {
  let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
  // The command name (field 2) may hold spaces and parentheses: count from its end.
  let after = &stat[stat.rfind(')')? + 1..];
  after.split_whitespace().nth(19)?.parse().ok()
}

fn record_group(pgid: libc::pid_t) {
  use std::io::Write as _;
  let Some(file) = GROUP_FILE.lock().ok().and_then(|f| f.clone()) else {
    return;
  };
  let Some(start) = start_time(pgid) else {
    return;
  };
  if let Ok(mut out) = std::fs::OpenOptions::new()
    .create(true)
    .append(true)
    .open(file)
  {
    let _ = writeln!(out, "{pgid} {start}");
  }
}

/// Kills every script process group still running; for exiting at once.
pub(crate) fn kill_all_process_groups() {
  let groups = LIVE_GROUPS.lock().map(|g| g.clone()).unwrap_or_default();
  for pgid in groups.into_iter().filter(|&g| g > 1) {
    // SAFETY: killpg only sends a signal and reads no memory of ours; the ids are groups our
    // own children lead, removed from the list when their guard is done with them.
    unsafe {
      libc::killpg(pgid, libc::SIGKILL);
    }
  }
}

/// A running script's process group, killed with SIGKILL when this is dropped while armed:
/// dropping the attempt's future is how the runtime times out and cancels a stage, and the
/// script's children and grandchildren must not outlive it.
pub(crate) struct ProcessGroup {
  /// The group's leader.
  pub(crate) child: Child,
  pgid: libc::pid_t,
  armed: bool,
}

impl ProcessGroup {
  /// Guards `child`, which leads its own process group.
  pub(crate) fn new(mut child: Child) -> Result<Self, String> {
    // Some right after spawning; only a child already waited for has no id.
    let Some(pgid) = child.id().and_then(|id| libc::pid_t::try_from(id).ok()) else {
      let _ = child.start_kill();
      return Err("the process started without a process id".into());
    };
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
      groups.push(pgid);
    }
    record_group(pgid);
    Ok(Self {
      child,
      pgid,
      armed: true,
    })
  }

  fn forget(&self) {
    if let Ok(mut groups) = LIVE_GROUPS.lock() {
      groups.retain(|&g| g != self.pgid);
    }
  }

  /// Sends SIGKILL to every process left in the group.
  fn kill(&self) {
    // 0 would mean our own group and 1 is init: never a child's group, but refuse both
    // rather than take the engine down with the stage.
    if self.pgid > 1 {
      // SAFETY: killpg only sends a signal; it reads no memory of ours. The group is the one
      // our child leads, and while any member (or the unreaped leader) is left its id cannot
      // be reused. Once the leader is reaped and the group is empty the id could in principle
      // be recycled, but that needs the pid space to wrap around in between.
      unsafe {
        libc::killpg(self.pgid, libc::SIGKILL);
      }
    }
  }

  /// After the leader exited: disarms the guard and leaves the rest of the group alone.
  pub(crate) fn disarm(&mut self) {
    self.forget();
    self.armed = false;
  }

  /// After the script exited: kills whatever it left running and disarms the guard.
  pub(crate) fn finish(&mut self) {
    self.kill();
    self.forget();
    self.armed = false;
  }
}

impl Drop for ProcessGroup {
  fn drop(&mut self) {
    if self.armed {
      self.kill();
      self.forget();
      // In case the script moved itself to another group; the group kill covers the rest.
      let _ = self.child.start_kill();
      // Dropping `child` next hands it to tokio's orphan queue, which reaps it.
    }
  }
}

/// Reads a child's pipe to its end, handing each chunk to `take` as it arrives; a read error
/// ends the stream like end of file. Both `shell` and `swdl.exec` read their pipes so, and
/// must keep reading: a child blocked on a full pipe never exits.
pub(crate) async fn read_pipe(
  reader: &mut (impl tokio::io::AsyncRead + Unpin),
  mut take: impl FnMut(&[u8]),
) {
  use tokio::io::AsyncReadExt as _;
  let mut chunk = vec![0; 8192];
  loop {
    match reader.read(&mut chunk).await {
      Ok(0) | Err(_) => break,
      Ok(read) => take(&chunk[..read]),
    }
  }
}
