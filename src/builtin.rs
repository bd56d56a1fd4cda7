//! The skills every swdl binary runs without Lua: `echo`, `sleep`, `fail` and `shell`
//! (SPEC sections 6 and 10). `http` and `llm` are listed by the analyzer but arrive later.
use super::*;
use crate::executor::{BoxFuture, LogStream, StageExecutor, StageResult, StageTask, TaskIo};
use crate::process::ProcessGroup;
use serde_json::{Map, Value};
use std::{
  io::ErrorKind as IoErrorKind,
  os::unix::process::ExitStatusExt,
  path::{Path, PathBuf},
  process::Stdio,
  sync::atomic::{AtomicU64, Ordering},
  time::Duration,
};
use tokio::{
  io::{AsyncRead, AsyncReadExt},
  process::Command,
};

/// The built-in skills this module implements.
pub const NAMES: &[&str] = &["echo", "sleep", "fail", "shell", "http", "llm"];

/// How much of the start of each of a shell's streams is kept for its outputs.
pub const CAPTURE_HEAD: usize = 64 * 1024;

/// How much of the end of each stream is kept, after the head, when the stream is longer.
pub const CAPTURE_TAIL: usize = 64 * 1024;

/// The largest `$SWDL_OUTPUT` file a shell stage may leave behind.
const OUTPUT_FILE_LIMIT: u64 = 8 * 1024 * 1024;

/// A line longer than this is logged in pieces, so output without line breaks cannot make a
/// log line (and the memory held for it) grow without bound.
const LOG_LINE_LIMIT: usize = 64 * 1024;

/// How long to keep reading a shell's pipes after its process group was killed. Only a process
/// that left the group (`setsid`, a daemon) can still hold them open then; without this limit
/// such a process would keep the stage running for as long as it lives.
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// The longest stderr line quoted in a failure message.
const QUOTED_LINE_LIMIT: usize = 500;

/// Runs the built-in skills; dispatches on [`StageTask::skill`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Builtins;

impl Builtins {
  /// An executor for the built-in skills.
  pub fn new() -> Self {
    Self
  }
}

impl StageExecutor for Builtins {
  fn execute(&self, task: StageTask, io: TaskIo) -> BoxFuture<StageResult> {
    Box::pin(async move {
      match task.skill.as_str() {
        "echo" => echo(&task),
        "sleep" => sleep(&task).await,
        "fail" => fail(&task),
        "shell" => shell(&task, &io).await,
        "http" => http_skill(&task, &io).await,
        "llm" => llm_skill(&task, &io).await,
        other => StageResult::failed(unavailable(other)),
      }
    })
  }
}

/// The message for a skill this executor does not run.
fn unavailable(skill: &str) -> String {
  let known = match NAMES {
    [] => String::new(),
    [one] => (*one).to_string(),
    [init @ .., last] => format!("{} and {last}", init.join(", ")),
  };
  format!("skill `{skill}` is not available: built-in skills are {known}")
}

/// An input, with `null` counting as absent (an interpolated optional value may be `null`).
fn input<'a>(task: &'a StageTask, name: &str) -> Option<&'a Value> {
  task.inputs.get(name).filter(|value| !value.is_null())
}

/// `echo`: the inputs, unchanged, as outputs.
fn echo(task: &StageTask) -> StageResult {
  match &*task.inputs {
    Value::Object(inputs) => StageResult::outputs(inputs.clone()),
    _ => StageResult::outputs(Map::new()),
  }
}

/// `sleep`: waits `ms` and reports how long.
async fn sleep(task: &StageTask) -> StageResult {
  let duration = match input(task, "ms").map(sleep_duration) {
    None => {
      return StageResult::failed(
        "sleep needs `ms`: a number of milliseconds or a duration like \"250ms\"",
      );
    }
    Some(Err(error)) => return StageResult::failed(error),
    Some(Ok(duration)) => duration,
  };
  // tokio's sleep, not std's: dropping this future (timeout, cancel) ends the wait at once.
  // A zero wait returns on the first poll instead of costing a timer tick (about 1 ms).
  if !duration.is_zero() {
    tokio::time::sleep(duration).await;
  }
  let slept_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
  let mut outputs = Map::new();
  outputs.insert("slept_ms".into(), slept_ms.into());
  StageResult::outputs(outputs)
}

/// `http`: one request (SPEC section 9). Inputs: `url`; optional `method` (GET), `headers`,
/// `body` (text) or `json` (any value, sent as JSON), `timeout` (per try: a duration string or
/// milliseconds; 30s), `retries` (3), `max_bytes` (10 MiB) and `fail_on_error` (true: a final
/// status of 400 or more fails the attempt). Outputs: `status`, `headers`, `body`, `json` (the
/// body parsed, or null) and `tries`.
async fn http_skill(task: &StageTask, io: &TaskIo) -> StageResult {
  let request = match crate::http::Request::from_inputs(&task.inputs, task.timeout_ms) {
    Ok(request) => request,
    Err(error) => return StageResult::failed(format!("http: {error}")),
  };
  let fail_on_error = match input(task, "fail_on_error") {
    None | Some(Value::Null) => true,
    Some(Value::Bool(on)) => *on,
    Some(other) => {
      return StageResult::failed(format!(
        "http: `fail_on_error` must be true or false, got {other}"
      ));
    }
  };
  match crate::http::send(&request).await {
    Ok(response) => {
      if response.tries > 1 {
        io.log(
          LogStream::Log,
          format!(
            "{} {} answered after {} tries",
            request.method, request.url, response.tries
          ),
        );
      }
      if fail_on_error && response.status >= 400 {
        // Cut at a space, so a secret the body repeats is not cut in two (the run masks whole
        // values only).
        let mut snippet: String = response.body.chars().take(300).collect();
        if response.body.chars().count() > 300
          && let Some(space) = snippet.rfind(char::is_whitespace)
        {
          snippet.truncate(space);
        }
        return StageResult::failed(format!(
          "http: {} {} answered {}: {snippet}",
          request.method, request.url, response.status
        ));
      }
      StageResult::outputs(response.to_json())
    }
    Err(error) => StageResult::failed(format!("http: {error}")),
  }
}

/// `llm`: one chat completion (SPEC section 9). Inputs: `prompt` and/or `messages`, `system`,
/// `temperature`, `max_tokens`, `json` (ask for a JSON object), and `model` / `url` to
/// override `SWDL_LLM_MODEL` / `SWDL_LLM_URL`. Outputs: `text`, `json`, `model`, `usage`.
async fn llm_skill(task: &StageTask, io: &TaskIo) -> StageResult {
  let config_env: Vec<(&str, &str)> = task
    .env
    .iter()
    .map(|(k, v)| (k.as_str(), v.as_str()))
    .collect();
  let prepared = crate::llm::prepare(&task.inputs, &config_env, task.timeout_ms);
  let (endpoint, completion) = match prepared {
    Ok(prepared) => prepared,
    Err(error) => return StageResult::failed(format!("llm: {error}")),
  };
  let budget = crate::llm::budget(&task.run);
  match crate::llm::complete(&endpoint, &completion, &budget).await {
    Ok(answer) => {
      io.log(LogStream::Log, usage_line(&answer, &budget));
      StageResult::outputs(crate::llm::outputs(&answer))
    }
    Err(error) => StageResult::failed(format!("llm: {error}")),
  }
}

/// `llm: 130 tokens (prompt 100, completion 30; run 412 of 200000)`.
pub(crate) fn usage_line(answer: &crate::llm::Answer, budget: &crate::llm::Budget) -> String {
  let of = budget
    .limit
    .map_or_else(String::new, |limit| format!(" of {limit}"));
  format!(
    "llm: {} tokens (prompt {}, completion {}; run {}{of}) from {}",
    answer.usage.total,
    answer.usage.prompt,
    answer.usage.completion,
    budget.used(),
    answer.model
  )
}

/// Reads `ms`: a non-negative number of milliseconds or a duration string. A string of digits
/// alone counts as milliseconds, like a number, because the field is named `ms` (SPEC's bare
/// integer durations mean seconds only where a field holds a duration of no stated unit).
fn sleep_duration(value: &Value) -> Result<Duration, String> {
  let bad = |why: &str| format!("sleep: `ms` {why}, got {value}");
  match value {
    Value::Number(number) => {
      if let Some(ms) = number.as_u64() {
        Ok(Duration::from_millis(ms))
      } else {
        match number.as_f64() {
          // Fractions are rounded to whole milliseconds, the unit of every other duration.
          Some(ms) if ms.is_finite() && ms >= 0.0 => Ok(Duration::from_millis(ms.round() as u64)),
          _ => Err(bad("must not be negative")),
        }
      }
    }
    Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
      .parse::<u64>()
      .map(Duration::from_millis)
      .map_err(|_| bad("is too large")),
    Value::String(text) => {
      duration::parse_duration(text).map_err(|error| format!("sleep: `ms`: {error}"))
    }
    _ => Err(bad(
      "must be a number of milliseconds or a duration like \"250ms\"",
    )),
  }
}

/// `fail`: fails the first `times` attempts (every attempt without `times`) with `message`.
fn fail(task: &StageTask) -> StageResult {
  let message = match input(task, "message") {
    None => "fail skill failed as asked".to_string(),
    Some(Value::String(message)) => message.clone(),
    // Any other value is still a message someone wanted to see; show it as JSON.
    Some(other) => other.to_string(),
  };
  let times = match input(task, "times").map(fail_times) {
    None => None,
    Some(Ok(times)) => Some(times),
    Some(Err(error)) => return StageResult::failed(error),
  };
  match times {
    Some(times) if u64::from(task.attempt) > times => {
      let mut outputs = Map::new();
      outputs.insert("attempt".into(), task.attempt.into());
      StageResult::outputs(outputs)
    }
    _ => StageResult::failed(message),
  }
}

/// Reads `times`: a non-negative integer (a string of digits too, as interpolation gives).
fn fail_times(value: &Value) -> Result<u64, String> {
  let times = match value {
    Value::Number(number) => number.as_u64().or_else(|| {
      number
        .as_f64()
        .filter(|n| n.fract() == 0.0 && *n >= 0.0 && *n <= u64::MAX as f64)
        .map(|n| n as u64)
    }),
    Value::String(text) => text.trim().parse().ok(),
    _ => None,
  };
  times.ok_or_else(|| format!("fail: `times` must be a non-negative integer, got {value}"))
}

/// What a `shell` stage asked for, checked before anything starts.
#[derive(Debug)]
struct ShellSpec {
  run: String,
  shell: String,
  cwd: Option<PathBuf>,
  env: Vec<(String, String)>,
}

impl ShellSpec {
  /// Reads and checks `run`, `shell`, `cwd` and `env`.
  fn parse(task: &StageTask) -> Result<Self, String> {
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
fn env_var(name: &str, value: &Value) -> Result<(String, String), String> {
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
async fn shell(task: &StageTask, io: &TaskIo) -> StageResult {
  match run_shell(task, io).await {
    Ok(outputs) => StageResult::outputs(outputs),
    Err(error) => StageResult::failed(error),
  }
}

/// Runs the script and collects its outputs; every error is a message for people.
async fn run_shell(task: &StageTask, io: &TaskIo) -> Result<Map<String, Value>, String> {
  let spec = ShellSpec::parse(task)?;
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
  for (key, value) in output_file.read().await? {
    if matches!(key.as_str(), "stdout" | "stderr" | "exit_code") {
      io.log(
        LogStream::Log,
        format!("ignored `{key}` from $SWDL_OUTPUT: the shell skill sets `{key}` itself"),
      );
      continue;
    }
    outputs.insert(key, value.into());
  }
  Ok(outputs)
}

/// The first [`CAPTURE_HEAD`] and last [`CAPTURE_TAIL`] bytes of one stream, and its last
/// non-empty line.
#[derive(Debug, Default)]
struct Capture {
  head: Vec<u8>,
  tail: std::collections::VecDeque<u8>,
  /// Bytes between the head and the tail that were not kept.
  cut: u64,
  last_line: String,
}

impl Capture {
  /// Keeps what fits in the head, then the latest bytes in the tail, and counts the rest.
  fn push(&mut self, data: &[u8]) {
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
  fn text(&self, name: &str) -> String {
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
const CUT_WINDOW: usize = 1024;

/// Bytes as text: invalid UTF-8 and NUL bytes (which no text holds, and which JSON would store
/// as six bytes each) become U+FFFD.
fn text_of(bytes: &[u8]) -> String {
  let text = String::from_utf8_lossy(bytes);
  if text.contains('\0') {
    text.replace('\0', "\u{fffd}")
  } else {
    text.into_owned()
  }
}

/// Copies one pipe into `capture` and logs it line by line as it arrives, until end of file.
async fn pump(
  mut reader: impl AsyncRead + Unpin,
  stream: LogStream,
  io: &TaskIo,
  capture: &mut Capture,
) {
  let mut chunk = vec![0; 8192];
  let mut line = Vec::new();
  loop {
    let read = match reader.read(&mut chunk).await {
      Ok(0) | Err(_) => break,
      Ok(read) => read,
    };
    let data = &chunk[..read];
    capture.push(data);
    for piece in data.split_inclusive(|&b| b == b'\n') {
      line.extend_from_slice(piece);
      if line.ends_with(b"\n") || line.len() >= LOG_LINE_LIMIT {
        emit(&line, stream, io, capture);
        line.clear();
      }
    }
  }
  if !line.is_empty() {
    emit(&line, stream, io, capture);
  }
}

/// Logs one line without its line break and remembers it if it says anything.
fn emit(line: &[u8], stream: LogStream, io: &TaskIo, capture: &mut Capture) {
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
struct OutputFile {
  path: PathBuf,
}

impl OutputFile {
  /// Creates a file of a new name in the temporary directory, readable by us alone.
  fn create() -> std::io::Result<Self> {
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
  fn path(&self) -> &Path {
    &self.path
  }

  /// The `key=value` and `key<<DELIMITER` entries the script wrote, in order.
  async fn read(&self) -> Result<Vec<(String, String)>, String> {
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
    parse_output_file(&String::from_utf8_lossy(&bytes))
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
fn parse_output_file(text: &str) -> Result<Vec<(String, String)>, String> {
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
        entries.push((key.to_string(), value.to_string()));
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
        entries.push((key.to_string(), value.join("\n")));
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
fn is_output_key(key: &str) -> bool {
  let mut bytes = key.bytes();
  bytes
    .next()
    .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
    && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::executor::{LogLine, MemoryView};
  use indexmap::IndexMap;
  use serde_json::json;
  use std::time::Instant;
  use tokio::sync::mpsc;

  fn task(skill: &str, inputs: Value) -> StageTask {
    StageTask {
      run: "run-1".into(),
      stage: "build".into(),
      attempt: 1,
      idempotency_key: "run-1/build".into(),
      skill: skill.into(),
      inputs: Arc::new(inputs),
      timeout_ms: 60_000,
      permissions: Vec::new(),
      env: IndexMap::new(),
      memory: MemoryView::default(),
    }
  }

  async fn run(task: StageTask) -> StageResult {
    Builtins::new().execute(task, TaskIo::discard()).await
  }

  fn outputs(result: StageResult) -> Map<String, Value> {
    match result {
      StageResult::Completed { outputs, .. } => outputs,
      StageResult::Failed { error } => panic!("expected success, got failure: {error}"),
    }
  }

  fn error(result: StageResult) -> String {
    match result {
      StageResult::Failed { error } => error,
      StageResult::Completed { outputs, .. } => panic!("expected failure, got {outputs:?}"),
    }
  }

  #[tokio::test]
  async fn http_refuses_a_fail_on_error_that_is_not_true_or_false() {
    let task = task(
      "http",
      json!({"url": "http://127.0.0.1:9/", "fail_on_error": "yes"}),
    );
    assert_eq!(
      error(run(task).await),
      "http: `fail_on_error` must be true or false, got \"yes\""
    );
  }

  /// A fresh directory for one test.
  fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("swdl-builtin-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
  }

  /// Whether `pid` is a live process. A zombie counts as gone: once its parent is dead it
  /// waits for init to reap it, which a container's init may never do.
  fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(pid, 0) } != 0 {
      return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
      .rsplit(')')
      .next()
      .and_then(|rest| rest.trim().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
  }

  async fn gone_within(pid: libc::pid_t, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
      if !alive(pid) {
        return true;
      }
      tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !alive(pid)
  }

  /// The two pids a test script writes, waiting up to 10 s for them.
  async fn read_pids(path: &Path) -> Vec<libc::pid_t> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
      assert!(
        Instant::now() < deadline,
        "{} never appeared",
        path.display()
      );
      if let Ok(text) = std::fs::read_to_string(path) {
        let pids: Vec<libc::pid_t> = text
          .split_whitespace()
          .filter_map(|p| p.parse().ok())
          .collect();
        if pids.len() == 2 {
          return pids;
        }
      }
      tokio::time::sleep(Duration::from_millis(10)).await;
    }
  }

  #[tokio::test]
  async fn builtin_echo_returns_its_inputs() {
    let inputs = json!({"b": 1, "a": [true, null], "nested": {"x": "y"}});
    let out = outputs(run(task("echo", inputs.clone())).await);
    assert_eq!(Value::Object(out), inputs);
    assert!(outputs(run(task("echo", json!("text"))).await).is_empty());
  }

  #[tokio::test]
  async fn builtin_sleep_waits() {
    let start = Instant::now();
    let out = outputs(run(task("sleep", json!({"ms": 60}))).await);
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(60), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    assert_eq!(out["slept_ms"], json!(60));

    let start = Instant::now();
    let out = outputs(run(task("sleep", json!({"ms": "20ms"}))).await);
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert_eq!(out["slept_ms"], json!(20));
    let out = outputs(run(task("sleep", json!({"ms": "15"}))).await);
    assert_eq!(out["slept_ms"], json!(15));
    let out = outputs(run(task("sleep", json!({"ms": 0}))).await);
    assert_eq!(out["slept_ms"], json!(0));
  }

  #[test]
  fn a_zero_sleep_is_done_on_its_first_poll() {
    use std::future::Future as _;
    let mut future = Box::pin(run(task("sleep", json!({"ms": 0}))));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
      std::task::Poll::Ready(result) => assert_eq!(outputs(result)["slept_ms"], json!(0)),
      std::task::Poll::Pending => panic!("sleep 0 waited for a timer"),
    }
  }

  #[tokio::test]
  async fn builtin_sleep_rejects_bad_ms() {
    for inputs in [
      json!({}),
      json!({"ms": null}),
      json!({"ms": -5}),
      json!({"ms": "soon"}),
      json!({"ms": "-3s"}),
      json!({"ms": true}),
      json!({"ms": [1]}),
      json!("ms"),
    ] {
      let message = error(run(task("sleep", inputs.clone())).await);
      assert!(message.contains("`ms`"), "{inputs}: {message}");
    }
  }

  #[tokio::test]
  async fn builtin_sleep_stops_when_dropped() {
    let start = Instant::now();
    let sleeping = run(task("sleep", json!({"ms": "10s"})));
    assert!(
      tokio::time::timeout(Duration::from_millis(30), sleeping)
        .await
        .is_err()
    );
    assert!(start.elapsed() < Duration::from_secs(2));
  }

  #[tokio::test]
  async fn builtin_fail_fails_the_first_attempts() {
    for attempt in 1..=2 {
      let mut t = task("fail", json!({"message": "flaky", "times": 2}));
      t.attempt = attempt;
      assert_eq!(error(run(t).await), "flaky");
    }
    let mut t = task("fail", json!({"message": "flaky", "times": 2}));
    t.attempt = 3;
    assert_eq!(outputs(run(t).await)["attempt"], json!(3));

    let mut t = task("fail", json!({"times": "1"}));
    t.attempt = 2;
    assert_eq!(outputs(run(t).await)["attempt"], json!(2));
    assert_eq!(
      outputs(run(task("fail", json!({"times": 0}))).await)["attempt"],
      json!(1)
    );
  }

  #[tokio::test]
  async fn builtin_fail_without_times_always_fails() {
    for attempt in [1, 5, 100] {
      let mut t = task("fail", json!({}));
      t.attempt = attempt;
      assert_eq!(error(run(t).await), "fail skill failed as asked");
    }
    for times in [json!(-1), json!(1.5), json!("twice"), json!(true)] {
      let message = error(run(task("fail", json!({"times": times}))).await);
      assert!(message.contains("`times`"), "{message}");
    }
  }

  #[tokio::test]
  async fn builtin_unknown_skills_are_reported() {
    assert_eq!(
      error(run(task("nope", json!({}))).await),
      "skill `nope` is not available: built-in skills are echo, sleep, fail, shell, http and llm"
    );
    assert_eq!(
      error(run(task("http", json!({}))).await),
      "http: needs `url`"
    );
    assert!(error(run(task("llm", json!({}))).await).starts_with("llm: "));
  }

  #[tokio::test]
  async fn builtin_shell_captures_output() {
    let (sender, mut receiver) = mpsc::unbounded_channel::<LogLine>();
    let script = r#"
      echo out
      echo err >&2
      echo "greeting=hi there" >> "$SWDL_OUTPUT"
      echo "count=1" >> "$SWDL_OUTPUT"
      echo "count=2" >> "$SWDL_OUTPUT"
      printf 'body<<EOF\nline 1\n\nline=3\nEOF\n' >> "$SWDL_OUTPUT"
      echo "path=$SWDL_OUTPUT" >> "$SWDL_OUTPUT"
      echo "ids=$SWDL_RUN_ID $SWDL_STAGE $SWDL_ATTEMPT $SWDL_IDEMPOTENCY_KEY" >> "$SWDL_OUTPUT"
      echo "stdout=spoofed" >> "$SWDL_OUTPUT"
    "#;
    let result = Builtins::new()
      .execute(
        task("shell", json!({"run": script})),
        TaskIo::new(0, 1, sender),
      )
      .await;
    let out = outputs(result);
    assert_eq!(out["stdout"], json!("out"));
    assert_eq!(out["stderr"], json!("err"));
    assert_eq!(out["exit_code"], json!(0));
    assert_eq!(out["greeting"], json!("hi there"));
    assert_eq!(out["count"], json!("2"));
    assert_eq!(out["body"], json!("line 1\n\nline=3"));
    assert_eq!(out["ids"], json!("run-1 build 1 run-1/build"));
    let path = out["path"].as_str().unwrap();
    assert!(!Path::new(path).exists(), "{path} was not removed");

    let mut lines = Vec::new();
    while let Ok(line) = receiver.try_recv() {
      lines.push((line.stream, line.message));
    }
    assert!(
      lines.contains(&(LogStream::Stdout, "out".into())),
      "{lines:?}"
    );
    assert!(
      lines.contains(&(LogStream::Stderr, "err".into())),
      "{lines:?}"
    );
    assert!(
      lines.iter().any(|(stream, _)| *stream == LogStream::Log),
      "{lines:?}"
    );
  }

  #[tokio::test]
  async fn builtin_shell_nonzero_exit_fails() {
    let script = "echo first >&2; echo 'it broke' >&2; echo >&2; exit 3";
    assert_eq!(
      error(run(task("shell", json!({"run": script}))).await),
      "shell exited with status 3: it broke"
    );
    assert_eq!(
      error(run(task("shell", json!({"run": "exit 1"}))).await),
      "shell exited with status 1"
    );
    assert_eq!(
      error(run(task("shell", json!({"run": "kill -TERM $$"}))).await),
      "shell was killed by signal 15"
    );
  }

  #[tokio::test]
  async fn builtin_shell_cwd_and_env() {
    let dir = scratch("cwd");
    let mut t = task(
      "shell",
      json!({
        "run": "pwd; echo \"$GREETING $N $FLAG $FROM_CONFIG $OVERRIDDEN\"",
        "cwd": dir.to_str().unwrap(),
        "env": {"GREETING": "hi", "N": 3, "FLAG": true, "OVERRIDDEN": "by with"},
      }),
    );
    t.env.insert("FROM_CONFIG".into(), "config".into());
    t.env.insert("OVERRIDDEN".into(), "by config".into());
    let out = outputs(run(t).await);
    let expected = format!(
      "{}\nhi 3 true config by with",
      dir.canonicalize().unwrap().display()
    );
    assert_eq!(out["stdout"], json!(expected));

    let message = error(run(task("shell", json!({"run": "true", "cwd": "/no/such/dir"}))).await);
    assert!(message.contains("`cwd`"), "{message}");
    let message = error(run(task("shell", json!({"run": "true", "env": {"A": [1]}}))).await);
    assert!(message.contains("`env.A`"), "{message}");
    let _ = std::fs::remove_dir_all(dir);
  }

  #[tokio::test]
  async fn builtin_shell_bad_inputs_fail() {
    for inputs in [json!({}), json!({"run": ""}), json!({"run": 5})] {
      let message = error(run(task("shell", inputs)).await);
      assert!(message.contains("`run`"), "{message}");
    }
    let message = error(
      run(task(
        "shell",
        json!({"run": "true", "shell": "no-such-shell-here"}),
      ))
      .await,
    );
    assert!(
      message.contains("cannot start `no-such-shell-here`"),
      "{message}"
    );
    let message = error(
      run(task(
        "shell",
        json!({"run": "echo 'not an output' >> $SWDL_OUTPUT"}),
      ))
      .await,
    );
    assert!(message.contains("$SWDL_OUTPUT line 1"), "{message}");
    let message = error(
      run(task(
        "shell",
        json!({"run": "echo 'x<<EOF' >> $SWDL_OUTPUT"}),
      ))
      .await,
    );
    assert!(message.contains("no closing `EOF`"), "{message}");
  }

  #[tokio::test]
  async fn builtin_shell_other_shells() {
    let out = outputs(
      run(task(
        "shell",
        json!({"run": "echo ${BASH_VERSION:+bash}", "shell": "bash"}),
      ))
      .await,
    );
    assert_eq!(out["stdout"], json!("bash"));
  }

  #[tokio::test]
  async fn builtin_shell_keeps_the_head_and_tail_of_huge_output() {
    let script = "head -c 9000000 /dev/zero | tr '\\0' a; printf 'END\\0'";
    let out = outputs(run(task("shell", json!({"run": script}))).await);
    let stdout = out["stdout"].as_str().unwrap();
    let note = format!(
      "\n[... {} bytes of stdout cut: outputs keep the first 64 KiB and the last 64 KiB ...]\n",
      9_000_004 - CAPTURE_HEAD - CAPTURE_TAIL
    );
    let expected = format!(
      "{}{note}{}END\u{fffd}",
      "a".repeat(CAPTURE_HEAD),
      "a".repeat(CAPTURE_TAIL - 4)
    );
    assert!(
      stdout == expected,
      "{}...{}",
      &stdout[..100],
      &stdout[stdout.len() - 200..]
    );
  }

  #[test]
  fn captures_split_no_character_and_cut_at_line_breaks() {
    let mut whole = Capture::default();
    whole.push(format!("{}é{}", "a".repeat(CAPTURE_HEAD - 1), "b".repeat(10)).as_bytes());
    assert_eq!(
      whole.text("stdout"),
      format!("{}é{}", "a".repeat(CAPTURE_HEAD - 1), "b".repeat(10))
    );
    let mut long = Capture::default();
    let line = format!("{}secret-value\n", "x".repeat(50));
    for _ in 0..5_000 {
      long.push(line.as_bytes());
    }
    let text = long.text("stdout");
    // Every line kept is whole.
    assert!(
      text
        .lines()
        .all(|l| l == line.trim_end() || l.starts_with("[... ")),
      "{text}"
    );
  }

  #[tokio::test]
  async fn builtin_shell_kills_background_jobs_when_done() {
    let dir = scratch("background");
    let pidfile = dir.join("pids");
    let script = format!(
      "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}",
      pidfile.display()
    );
    let start = Instant::now();
    let out = outputs(run(task("shell", json!({"run": script}))).await);
    assert_eq!(out["exit_code"], json!(0));
    // The background job held stdout open; the stage still ended promptly.
    assert!(
      start.elapsed() < Duration::from_secs(5),
      "{:?}",
      start.elapsed()
    );
    for pid in read_pids(&pidfile).await {
      assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "{pid} survived"
      );
    }
    let _ = std::fs::remove_dir_all(dir);
  }

  #[tokio::test]
  async fn builtin_shell_drop_kills_the_whole_group() {
    let dir = scratch("drop");
    let pidfile = dir.join("pids");
    let script = format!(
      "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}; sleep 100",
      pidfile.display()
    );
    let (sender, _receiver) = mpsc::unbounded_channel();
    let running = Builtins::new().execute(
      task("shell", json!({"run": script})),
      TaskIo::new(0, 1, sender),
    );
    // Whichever branch loses is dropped: here, the running stage.
    let pids = tokio::select! {
      result = running => panic!("the script ended early: {result:?}"),
      pids = read_pids(&pidfile) => pids,
    };
    for pid in pids {
      assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "{pid} survived"
      );
    }

    // The same through a timeout, as the runtime does it.
    let _ = std::fs::remove_file(&pidfile);
    let script = format!(
      "sleep 100 & echo \"$! $$\" > {0}.tmp && mv {0}.tmp {0}; sleep 100",
      pidfile.display()
    );
    let running = run(task("shell", json!({"run": script})));
    assert!(
      tokio::time::timeout(Duration::from_secs(1), running)
        .await
        .is_err()
    );
    for pid in read_pids(&pidfile).await {
      assert!(
        gone_within(pid, Duration::from_secs(2)).await,
        "{pid} survived"
      );
    }
    let _ = std::fs::remove_dir_all(dir);
  }

  #[test]
  fn builtin_output_file_format() {
    let parsed = parse_output_file("a=1\r\n\nb-c=x=y\nmulti<<END\n1\r\n2\nEND\na=3\n").unwrap();
    let expected = [("a", "1"), ("b-c", "x=y"), ("multi", "1\n2"), ("a", "3")];
    assert_eq!(
      parsed,
      expected
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec()
    );
    assert!(parse_output_file("1a=x").is_err());
    assert!(parse_output_file("=x").is_err());
    assert!(parse_output_file("k<<").is_err());
    assert!(is_output_key("_a-1"));
    assert!(!is_output_key("a.b"));
  }
}
