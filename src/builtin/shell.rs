//! The `shell` skill: a script in its own process group, its pipes logged line by line and
//! kept (head and tail) as outputs, `$SWDL_OUTPUT` read back as more outputs.
use super::*;
use crate::process::ProcessGroup;
use std::{
  io::ErrorKind as IoErrorKind,
  os::unix::process::ExitStatusExt,
  path::{Path, PathBuf},
  process::Stdio,
  sync::atomic::{AtomicU64, Ordering},
};
use tokio::{
  io::{AsyncRead, AsyncReadExt},
  process::Command,
};

/// How much of the start of each of a shell's streams is kept for its outputs.
pub const CAPTURE_HEAD: usize = 64 * 1024;

/// How much of the end of each stream is kept, after the head, when the stream is longer.
pub const CAPTURE_TAIL: usize = 64 * 1024;

/// The largest `$SWDL_OUTPUT` file a shell stage may leave behind.
pub(super) const OUTPUT_FILE_LIMIT: u64 = 8 * 1024 * 1024;

/// A line longer than this is logged in pieces, so output without line breaks cannot make a
/// log line (and the memory held for it) grow without bound.
pub(super) const LOG_LINE_LIMIT: usize = 64 * 1024;

/// How long to keep reading a shell's pipes after its process group was killed. Only a process
/// that left the group (`setsid`, a daemon) can still hold them open then; without this limit
/// such a process would keep the stage running for as long as it lives.
pub(super) const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The longest stderr line quoted in a failure message.
pub(super) const QUOTED_LINE_LIMIT: usize = 500;

/// What a `shell` stage asked for, checked before anything starts.
#[derive(Debug)]
pub(super) struct ShellSpec {
  run: String,
  shell: String,
  cwd: Option<PathBuf>,
  env: Vec<(String, String)>,
}

impl ShellSpec {
  /// Reads and checks `run`, `shell`, `cwd` and `env`.
  pub(super) fn parse(task: &StageTask) -> Result<Self, String> {
    let run = match input(task, "run") {
      None => return Err("shell needs `run`: the script to run".into()),
      Some(Value::String(run)) if run.trim().is_empty() => {
        return Err("shell: `run` is empty".into());
      }
      Some(Value::String(run)) => run.clone(),
      Some(other) => return Err(format!("shell: `run` must be a string, got {other}")),
    };
    let shell = match input(task, "shell") {
      None => "sh".to_string(),
      Some(Value::String(shell)) if shell.trim().is_empty() => {
        return Err("shell: `shell` is empty".into());
      }
      Some(Value::String(shell)) => shell.clone(),
      Some(other) => return Err(format!("shell: `shell` must be a string, got {other}")),
    };
    let cwd = match input(task, "cwd") {
      None => None,
      Some(Value::String(cwd)) if cwd.is_empty() => return Err("shell: `cwd` is empty".into()),
      Some(Value::String(cwd)) => Some(PathBuf::from(cwd)),
      Some(other) => return Err(format!("shell: `cwd` must be a string, got {other}")),
    };
    let env = match input(task, "env") {
      None => Vec::new(),
      // A null value (an optional output or gate input nobody supplied) leaves the variable unset.
      Some(Value::Object(vars)) => vars
        .iter()
        .filter(|(_, value)| !value.is_null())
        .map(|(name, value)| env_var(name, value))
        .collect::<Result<_, _>>()?,
      Some(other) => {
        return Err(format!(
          "shell: `env` must be an object of strings, numbers or booleans, got {other}"
        ));
      }
    };
    Ok(Self {
      run,
      shell,
      cwd,
      env,
    })
  }
}

/// One `env` entry as a variable, or why it cannot be one.
pub(super) fn env_var(name: &str, value: &Value) -> Result<(String, String), String> {
  if name.is_empty() || name.contains(['=', '\0']) {
    return Err(format!(
      "shell: `env` key `{name}` is not a valid variable name"
    ));
  }
  let text = match value {
    Value::String(text) => text.clone(),
    Value::Number(number) => number.to_string(),
    Value::Bool(flag) => flag.to_string(),
    other => {
      return Err(format!(
        "shell: `env.{name}` must be a string, number or boolean, got {other}"
      ));
    }
  };
  if text.contains('\0') {
    return Err(format!("shell: `env.{name}` contains a NUL byte"));
  }
  Ok((name.to_string(), text))
}

/// `shell`: runs `run` with `<shell> -c` in its own process group.
pub(super) async fn shell(task: &StageTask, io: &TaskIo, base: Option<&Path>) -> StageResult {
  match run_shell(task, io, base).await {
    Ok(outputs) => StageResult::outputs(outputs),
    Err(error) => StageResult::failed(error),
  }
}

/// Runs the script and collects its outputs; every error is a message for people.
pub(super) async fn run_shell(
  task: &StageTask,
  io: &TaskIo,
  base: Option<&Path>,
) -> Result<Map<String, Value>, String> {
  let mut spec = ShellSpec::parse(task)?;
  // A relative `cwd` is relative to the workflow file's directory, like every path in it.
  if let (Some(base), Some(cwd)) = (base, &spec.cwd)
    && cwd.is_relative()
  {
    spec.cwd = Some(base.join(cwd));
  }
  // Checked here so that "No such file or directory" from spawning can only mean the shell.
  if let Some(cwd) = &spec.cwd {
    match tokio::fs::metadata(cwd).await {
      Ok(meta) if meta.is_dir() => {}
      Ok(_) => {
        return Err(format!(
          "shell: `cwd` `{}` is not a directory",
          cwd.display()
        ));
      }
      Err(error) => return Err(format!("shell: `cwd` `{}`: {error}", cwd.display())),
    }
  }
  let output_file = OutputFile::create()
    .map_err(|error| format!("shell: cannot create the $SWDL_OUTPUT file: {error}"))?;

  let mut command = Command::new(&spec.shell);
  command
    .arg("-c")
    .arg(&spec.run)
    .envs(&task.env)
    .envs(spec.env.iter().map(|(name, value)| (name, value)))
    // Set last so a workflow cannot make a stage lie about who it is.
    .env("SWDL_RUN_ID", &task.run)
    .env("SWDL_STAGE", &task.stage)
    .env("SWDL_ATTEMPT", task.attempt.to_string())
    .env("SWDL_IDEMPOTENCY_KEY", &task.idempotency_key)
    .env("SWDL_OUTPUT", output_file.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Its own group, so one signal reaches everything the script started, and so a Ctrl-C
    // at the terminal reaches swdl (which then cancels the stage) rather than the script.
    .process_group(0);
  if let Some(cwd) = &spec.cwd {
    command.current_dir(cwd);
  }
  let child = command
    .spawn()
    .map_err(|error| format!("shell: cannot start `{}`: {error}", spec.shell))?;
  let mut group = ProcessGroup::new(child).map_err(|e| format!("shell: {e}"))?;
  let (Some(stdout), Some(stderr)) = (group.child.stdout.take(), group.child.stderr.take()) else {
    return Err("shell: the script's output pipes are missing".into());
  };

  let mut out = Capture::default();
  let mut err = Capture::default();
  let status = {
    let readers = async {
      tokio::join!(
        pump(stdout, LogStream::Stdout, io, &mut out),
        pump(stderr, LogStream::Stderr, io, &mut err),
      )
    };
    tokio::pin!(readers);
    // Read while waiting, or a script that fills a pipe would never exit.
    let mut drained = false;
    let status = loop {
      tokio::select! {
        status = group.child.wait() => break status,
        _ = &mut readers, if !drained => drained = true,
      }
    };
    // The script is done, but background jobs it started may live on and hold the pipes:
    // a stage never leaks processes, so whatever is left of its group dies with it.
    group.finish();
    if !drained
      && tokio::time::timeout(DRAIN_GRACE, &mut readers)
        .await
        .is_err()
    {
      io.log(
        LogStream::Log,
        "stopped reading the script's output: a process that left its process group still holds it open",
      );
    }
    status.map_err(|error| format!("shell: cannot wait for `{}`: {error}", spec.shell))?
  };

  if let Some(signal) = status.signal() {
    return Err(format!("shell was killed by signal {signal}"));
  }
  let code = status.code().unwrap_or(-1);
  if code != 0 {
    return Err(match err.last_line.as_str() {
      "" => format!("shell exited with status {code}"),
      line => format!("shell exited with status {code}: {line}"),
    });
  }

  let mut outputs = Map::new();
  outputs.insert("stdout".into(), out.text("stdout").into());
  outputs.insert("stderr".into(), err.text("stderr").into());
  outputs.insert("exit_code".into(), code.into());
  for (key, value) in output_file.read(&task.text_outputs).await? {
    if matches!(key.as_str(), "stdout" | "stderr" | "exit_code") {
      io.log(
        LogStream::Log,
        format!("ignored `{key}` from $SWDL_OUTPUT: the shell skill sets `{key}` itself"),
      );
      continue;
    }
    outputs.insert(key, value);
  }
  Ok(outputs)
}

/// The first [`CAPTURE_HEAD`] and last [`CAPTURE_TAIL`] bytes of one stream, and its last
/// non-empty line.
#[derive(Debug, Default)]
pub(super) struct Capture {
  head: Vec<u8>,
  tail: std::collections::VecDeque<u8>,
  /// Bytes between the head and the tail that were not kept.
  cut: u64,
  last_line: String,
}

impl Capture {
  /// Keeps what fits in the head, then the latest bytes in the tail, and counts the rest.
  pub(super) fn push(&mut self, data: &[u8]) {
    let room = CAPTURE_HEAD.saturating_sub(self.head.len());
    let (head, mut rest) = data.split_at(room.min(data.len()));
    self.head.extend_from_slice(head);
    if rest.len() > CAPTURE_TAIL {
      self.cut += (self.tail.len() + rest.len() - CAPTURE_TAIL) as u64;
      self.tail.clear();
      rest = &rest[rest.len() - CAPTURE_TAIL..];
    } else {
      let over = (self.tail.len() + rest.len()).saturating_sub(CAPTURE_TAIL);
      self.cut += over as u64;
      self.tail.drain(..over);
    }
    self.tail.extend(rest);
  }

  /// The stream as an output: one trailing line break trimmed, and where bytes were cut, a
  /// line that says how many.
  pub(super) fn text(&self, name: &str) -> String {
    let mut bytes = self.head.clone();
    let (front, back) = self.tail.as_slices();
    let mut text = if self.cut == 0 {
      // Nothing was cut: head and tail are one text, decoded together.
      bytes.extend_from_slice(front);
      bytes.extend_from_slice(back);
      text_of(&bytes)
    } else {
      let mut tail = front.to_vec();
      tail.extend_from_slice(back);
      // Cut at line breaks near the cuts when there are some, so neither a character nor
      // (usually) a secret is split, and a half of one cannot escape its masking.
      let head_end = bytes[bytes.len().saturating_sub(CUT_WINDOW)..]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(bytes.len(), |i| {
          bytes.len().saturating_sub(CUT_WINDOW) + i + 1
        });
      let tail_start = tail[..tail.len().min(CUT_WINDOW)]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
      let mut head_end = head_end;
      // Without a line break, at least no character is split.
      if let Err(e) = std::str::from_utf8(&bytes[..head_end])
        && e.error_len().is_none()
      {
        head_end = e.valid_up_to();
      }
      let mut tail_start = tail_start;
      while tail_start < tail.len() && tail[tail_start] & 0xc0 == 0x80 {
        tail_start += 1;
      }
      let cut = self.cut + (bytes.len() - head_end) as u64 + tail_start as u64;
      let mut text = text_of(&bytes[..head_end]);
      if !text.ends_with('\n') {
        text.push('\n');
      }
      text.push_str(&format!(
        "[... {cut} bytes of {name} cut: outputs keep the first {} KiB and the last {} KiB ...]\n",
        CAPTURE_HEAD >> 10,
        CAPTURE_TAIL >> 10
      ));
      text.push_str(&text_of(&tail[tail_start..]));
      text
    };
    if text.ends_with('\n') {
      text.pop();
      if text.ends_with('\r') {
        text.pop();
      }
    }
    text
  }
}

/// How far from a cut [`Capture::text`] looks for a line break to cut at instead.
pub(super) const CUT_WINDOW: usize = 1024;

/// Bytes as text: invalid UTF-8 and NUL bytes (which no text holds, and which JSON would store
/// as six bytes each) become U+FFFD.
pub(super) fn text_of(bytes: &[u8]) -> String {
  let text = String::from_utf8_lossy(bytes);
  if text.contains('\0') {
    text.replace('\0', "\u{fffd}")
  } else {
    text.into_owned()
  }
}

/// Copies one pipe into `capture` and logs it line by line as it arrives, until end of file.
pub(super) async fn pump(
  mut reader: impl AsyncRead + Unpin,
  stream: LogStream,
  io: &TaskIo,
  capture: &mut Capture,
) {
  let mut line = Vec::new();
  crate::process::read_pipe(&mut reader, |data| {
    capture.push(data);
    for piece in data.split_inclusive(|&b| b == b'\n') {
      line.extend_from_slice(piece);
      if line.ends_with(b"\n") || line.len() >= LOG_LINE_LIMIT {
        emit(&line, stream, io, capture);
        line.clear();
      }
    }
  })
  .await;
  if !line.is_empty() {
    emit(&line, stream, io, capture);
  }
}

/// Logs one line without its line break and remembers it if it says anything.
pub(super) fn emit(line: &[u8], stream: LogStream, io: &TaskIo, capture: &mut Capture) {
  let line = line.strip_suffix(b"\n").unwrap_or(line);
  let line = line.strip_suffix(b"\r").unwrap_or(line);
  let text = text_of(line);
  let trimmed = text.trim();
  if !trimmed.is_empty() {
    capture.last_line = if trimmed.len() > QUOTED_LINE_LIMIT {
      let cut = (0..=QUOTED_LINE_LIMIT)
        .rev()
        .find(|&i| trimmed.is_char_boundary(i))
        .unwrap_or(0);
      format!("{}...", &trimmed[..cut])
    } else {
      trimmed.to_string()
    };
  }
  io.log(stream, text);
}

/// The fresh, empty file a script names in `$SWDL_OUTPUT`; removed when dropped.
#[derive(Debug)]
pub(super) struct OutputFile {
  path: PathBuf,
}

impl OutputFile {
  /// Creates a file of a new name in the temporary directory, readable by us alone.
  pub(super) fn create() -> std::io::Result<Self> {
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
      .duration_since(std::time::UNIX_EPOCH)
      .map_or(0, |since| since.subsec_nanos());
    let mut tries = 0;
    loop {
      let path = std::env::temp_dir().join(format!(
        "swdl-output-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
      ));
      // `create_new` so a file someone else placed under this name is never used.
      match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
      {
        Ok(_) => return Ok(Self { path }),
        Err(error) if error.kind() == IoErrorKind::AlreadyExists && tries < 16 => tries += 1,
        Err(error) => return Err(error),
      }
    }
  }

  /// Where the file is.
  pub(super) fn path(&self) -> &Path {
    &self.path
  }

  /// The `key=value` and `key<<DELIMITER` entries the script wrote, in order; `text` names
  /// the keys kept as text (see [`parse_output_file`]).
  async fn read(&self, text: &[String]) -> Result<Vec<(String, Value)>, String> {
    let mut bytes = Vec::new();
    let file = tokio::fs::File::open(&self.path)
      .await
      .map_err(|error| format!("shell: cannot read the $SWDL_OUTPUT file: {error}"))?;
    file
      .take(OUTPUT_FILE_LIMIT + 1)
      .read_to_end(&mut bytes)
      .await
      .map_err(|error| format!("shell: cannot read the $SWDL_OUTPUT file: {error}"))?;
    // Cutting it would silently corrupt a value; an oversized file is a mistake to report.
    if bytes.len() as u64 > OUTPUT_FILE_LIMIT {
      return Err("shell: the $SWDL_OUTPUT file holds more than 8 MiB".into());
    }
    parse_output_file(&String::from_utf8_lossy(&bytes), text)
  }
}

impl Drop for OutputFile {
  fn drop(&mut self) {
    let _ = std::fs::remove_file(&self.path);
  }
}

/// Parses GitHub's `$GITHUB_OUTPUT` format: `key=value` lines and `key<<DELIMITER` blocks
/// ending at a line holding only the delimiter. Blank lines are ignored; anything else is an
/// error, since a silently dropped line would surface much later as a missing output.
///
/// A line's value that is JSON (`n=3`, `ok=true`, `xs=[1,2]`, `s="text"`) is that value;
/// any other value, every block, and the value of a key in `as_text` (outputs the stage's
/// contract declares as strings) is text.
pub(super) fn parse_output_file(
  text: &str,
  as_text: &[String],
) -> Result<Vec<(String, Value)>, String> {
  let mut entries = Vec::new();
  let mut lines = text
    .split('\n')
    .map(|line| line.strip_suffix('\r').unwrap_or(line))
    .enumerate();
  while let Some((index, line)) = lines.next() {
    if line.trim().is_empty() {
      continue;
    }
    let equals = line.find('=');
    let heredoc = line.find("<<");
    let bad = |why: &str| format!("shell: $SWDL_OUTPUT line {}: {why}", index + 1);
    match (equals, heredoc) {
      (Some(eq), heredoc) if heredoc.is_none_or(|h| eq < h) => {
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        if !is_output_key(key) {
          return Err(bad(&format!(
            "`{key}` is not a valid output name (letters, digits, `_` and `-`, not starting with a digit)"
          )));
        }
        let typed = if as_text.iter().any(|k| k == key) {
          Value::from(value)
        } else {
          serde_json::from_str(value).unwrap_or_else(|_| Value::from(value))
        };
        entries.push((key.to_string(), typed));
      }
      (_, Some(h)) => {
        let (key, delimiter) = (&line[..h], &line[h + 2..]);
        if !is_output_key(key) {
          return Err(bad(&format!(
            "`{key}` is not a valid output name (letters, digits, `_` and `-`, not starting with a digit)"
          )));
        }
        if delimiter.is_empty() {
          return Err(bad(&format!(
            "`{key}<<` needs a delimiter, like `{key}<<EOF`"
          )));
        }
        let mut value = Vec::new();
        loop {
          match lines.next() {
            Some((_, body)) if body == delimiter => break,
            Some((_, body)) => value.push(body),
            None => {
              return Err(bad(&format!(
                "`{key}<<{delimiter}` has no closing `{delimiter}` line"
              )));
            }
          }
        }
        entries.push((key.to_string(), Value::from(value.join("\n"))));
      }
      _ => {
        return Err(bad(&format!(
          "`{line}` is neither `key=value` nor `key<<DELIMITER`"
        )));
      }
    }
  }
  Ok(entries)
}

/// Whether `key` matches `[A-Za-z_][A-Za-z0-9_-]*`.
pub(super) fn is_output_key(key: &str) -> bool {
  let mut bytes = key.bytes();
  bytes
    .next()
    .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
    && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
