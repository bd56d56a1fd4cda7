//! The skills every swdl binary runs without Lua: `echo`, `sleep`, `fail`, `http`, `llm` and
//! `shell` (docs/running.md, "Built-in skills"; `http` and `llm` in docs/models.md). The shell skill, with its pipes and `$SWDL_OUTPUT`, is in
//! [`shell`].
use super::*;
use crate::executor::{BoxFuture, LogStream, StageExecutor, StageResult, StageTask, TaskIo};
use serde_json::{Map, Value};
use std::time::Duration;

mod shell;
#[cfg(test)]
mod tests;

use shell::shell;
pub use shell::{CAPTURE_HEAD, CAPTURE_TAIL};

/// The built-in skills this module implements.
pub const NAMES: &[&str] = &["echo", "sleep", "fail", "shell", "http", "llm"];

/// The `with` keys a built-in reads: each group of `required` needs one of its keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inputs {
  /// Groups of alternatives, one of each needed (`prompt` or `messages`).
  pub required: &'static [&'static [&'static str]],
  /// Keys that may be given.
  pub optional: &'static [&'static str],
  /// Names other tools use for one of the keys, suggested in their place (`cmd` → `run`).
  pub aliases: &'static [(&'static str, &'static str)],
}

impl Inputs {
  /// Every key the skill reads, required first.
  pub(crate) fn keys(self) -> impl Iterator<Item = &'static str> {
    self
      .required
      .iter()
      .flat_map(|group| group.iter().copied())
      .chain(self.optional.iter().copied())
  }
}

/// The inputs built-in `name` reads, kept beside the code that reads them; `None` for names
/// that are not built-ins and for `echo` and `fail`, which stand in for other skills and so
/// take any keys (a fallback may read them).
pub(crate) fn inputs(name: &str) -> Option<Inputs> {
  let mut aliases: &[(&str, &str)] = &[];
  let (required, optional): (&[&[&str]], &[&str]) = match name {
    "sleep" => (&[&["ms"]], &[]),
    "shell" => {
      aliases = &[
        ("cmd", "run"),
        ("command", "run"),
        ("script", "run"),
        ("working-directory", "cwd"),
        ("working_directory", "cwd"),
      ];
      (&[&["run"]], &["shell", "cwd", "env"])
    }
    "http" => (
      &[&["url"]],
      &[
        "method",
        "headers",
        "body",
        "json",
        "timeout",
        "retries",
        "max_bytes",
        "fail_on_error",
      ],
    ),
    "llm" => (
      &[&["prompt", "messages"]],
      &[
        "system",
        "url",
        "model",
        "temperature",
        "max_tokens",
        "json",
      ],
    ),
    _ => return None,
  };
  Some(Inputs {
    required,
    optional,
    aliases,
  })
}

/// Runs the built-in skills; dispatches on [`StageTask::skill`].
#[derive(Debug, Clone, Default)]
pub struct Builtins {
  /// What a relative shell `cwd` is relative to: the workflow file's directory.
  base: Option<Arc<std::path::Path>>,
}

impl Builtins {
  /// An executor for the built-in skills; a relative `cwd` is relative to the current
  /// directory.
  pub fn new() -> Self {
    Self::default()
  }

  /// An executor whose relative shell `cwd`s are relative to `dir` (the workflow file's
  /// directory).
  pub fn in_dir(dir: &std::path::Path) -> Self {
    Self {
      base: Some(Arc::from(dir)),
    }
  }
}

impl StageExecutor for Builtins {
  fn execute(&self, task: StageTask, io: TaskIo) -> BoxFuture<StageResult> {
    let base = self.base.clone();
    Box::pin(async move {
      match task.skill.as_str() {
        "echo" => echo(&task),
        "sleep" => sleep(&task).await,
        "fail" => fail(&task),
        "shell" => shell(&task, &io, base.as_deref()).await,
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

/// `http`: one request (docs/models.md). Inputs: `url`; optional `method` (GET), `headers`,
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

/// `llm`: one chat completion (docs/models.md). Inputs: `prompt` and/or `messages`, `system`,
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
      io.usage(answer.usage.total, usage_line(&answer, &budget));
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
/// alone counts as milliseconds, like a number, because the field is named `ms` (bare
/// integer durations mean seconds only where a field holds a duration of no stated unit).
#[expect(
  clippy::cast_possible_truncation,
  clippy::cast_sign_loss,
  reason = "finite, non-negative and rounded just before"
)]
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
#[expect(
  clippy::cast_possible_truncation,
  clippy::cast_sign_loss,
  reason = "a whole number within `u64`, checked just before"
)]
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
