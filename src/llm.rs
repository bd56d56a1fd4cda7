//! Model calls (docs/models.md): an OpenAI-compatible `/chat/completions` endpoint, as
//! llama.cpp's server, vLLM, Ollama and hosted APIs serve it. The base URL (with `/v1`), the
//! model and the API key come from `SWDL_LLM_URL`, `SWDL_LLM_MODEL` and `SWDL_LLM_API_KEY`,
//! or from the call. The key travels only in the `Authorization` header and is masked out of
//! anything swdl reports. Each run's model tokens are counted against `config.budget.tokens`.
use std::{
  collections::HashMap,
  sync::{
    Arc, Mutex, PoisonError,
    atomic::{AtomicU64, Ordering},
  },
  time::Duration,
};

/// Where and how to call the model.
#[derive(Clone)]
pub(crate) struct Endpoint {
  /// Base URL including `/v1`, e.g. `http://127.0.0.1:8080/v1`.
  pub url: String,
  /// Model name sent with each request.
  pub model: String,
  /// Bearer token, if the server wants one.
  pub api_key: Option<String>,
  /// Limit for each try.
  pub timeout: Duration,
}

impl std::fmt::Debug for Endpoint {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.debug_struct("Endpoint")
      .field("url", &self.url)
      .field("model", &self.model)
      .field("api_key", &self.api_key.as_ref().map(|_| "***"))
      .finish_non_exhaustive()
  }
}

impl Endpoint {
  /// From the environment, with `url` and `model` overriding it when given.
  ///
  /// # Errors
  ///
  /// No URL or no model anywhere.
  /// The person running swdl chose `url` (`swdl decompose --url`), so the key may go there.
  pub(crate) fn from_env(url: Option<&str>, model: Option<&str>) -> Result<Self, String> {
    let mut endpoint = Self::resolve(url, model, &[])?;
    if endpoint.api_key.is_none() {
      endpoint.api_key = std::env::var("SWDL_LLM_API_KEY")
        .ok()
        .filter(|v| !v.trim().is_empty());
    }
    Ok(endpoint)
  }

  /// For a stage or a skill: the call's `url` and `model`, else the workflow's `config.env`
  /// (`SWDL_LLM_URL`, `SWDL_LLM_MODEL`), else the process environment. The key comes from the
  /// process environment only (never from a workflow file), and is sent only to the server
  /// `SWDL_LLM_URL` in the environment names.
  ///
  /// # Errors
  ///
  /// No URL or no model anywhere.
  pub(crate) fn resolve(
    url: Option<&str>,
    model: Option<&str>,
    config_env: &[(&str, &str)],
  ) -> Result<Self, String> {
    let process = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let env = |name: &str| {
      config_env
        .iter()
        .find(|(k, v)| *k == name && !v.trim().is_empty())
        .map(|(_, v)| (*v).to_string())
        .or_else(|| process(name))
    };
    let url = url
      .map(str::to_string)
      .or_else(|| env("SWDL_LLM_URL"))
      .ok_or("no model server: set SWDL_LLM_URL (the base URL with /v1, e.g. http://127.0.0.1:8080/v1) or give `url`")?;
    let model = model
      .map(str::to_string)
      .or_else(|| env("SWDL_LLM_MODEL"))
      .ok_or("no model: set SWDL_LLM_MODEL or give `model`")?;
    let url = url.trim_end_matches('/').to_string();
    // The key goes only to the server the environment names: a URL from a stage, a parameter,
    // a workflow file or a Lua skill must not be able to collect it.
    let trusted = process("SWDL_LLM_URL").is_some_and(|env_url| same_origin(&env_url, &url));
    Ok(Self {
      url,
      model,
      api_key: process("SWDL_LLM_API_KEY").filter(|_| trusted),
      timeout: Duration::from_mins(2),
    })
  }

  /// `text` with the API key replaced by `***`, then cut to `limit` characters (masking
  /// first, so a cut cannot leave part of the key).
  fn masked(&self, text: &str, limit: usize) -> String {
    self.mask(text).chars().take(limit).collect()
  }

  /// `text` with the API key replaced by `***`.
  fn mask(&self, text: &str) -> String {
    match &self.api_key {
      Some(key) if !key.is_empty() => text.replace(key.as_str(), crate::mask::MASK),
      _ => text.to_string(),
    }
  }
}

/// One chat completion request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Completion {
  /// `(role, content)` pairs: `system`, `user`, `assistant`.
  pub messages: Vec<(String, String)>,
  /// Sampling temperature.
  pub temperature: Option<f64>,
  /// Completion length limit.
  pub max_tokens: Option<u64>,
  /// Ask for a JSON object (`response_format: {type: json_object}`).
  pub json: bool,
}

/// What the model answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Answer {
  /// The assistant message.
  pub text: String,
  /// The model that answered, as the server names it.
  pub model: String,
  /// Prompt tokens, completion tokens and their total, as the server reports them.
  pub usage: Usage,
}

/// Token counts reported by the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
  /// Tokens of the prompt.
  pub prompt: u64,
  /// Tokens of the answer.
  pub completion: u64,
  /// Their sum (as reported, or computed).
  pub total: u64,
}

impl Usage {
  /// As JSON: `{prompt_tokens, completion_tokens, total_tokens}`.
  pub(crate) fn to_json(self) -> serde_json::Value {
    serde_json::json!({
      "prompt_tokens": self.prompt,
      "completion_tokens": self.completion,
      "total_tokens": self.total,
    })
  }
}

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
  match (reqwest::Url::parse(a), reqwest::Url::parse(b)) {
    (Ok(a), Ok(b)) => {
      a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
    }
    _ => false,
  }
}

/// A run's model-token budget: every call's usage is added; once `limit` is reached no new
/// call starts.
#[derive(Debug, Default)]
pub(crate) struct Budget {
  /// `config.budget.tokens`, if set.
  pub limit: Option<u64>,
  used: AtomicU64,
}

impl Budget {
  /// Tokens used so far.
  pub(crate) fn used(&self) -> u64 {
    self.used.load(Ordering::Relaxed)
  }

  fn check(&self) -> Result<(), String> {
    match self.limit {
      Some(limit) if self.used() >= limit => Err(format!(
        "the run's model token budget is spent: {} of {limit} tokens used (config.budget.tokens); no new model calls start",
        self.used()
      )),
      _ => Ok(()),
    }
  }
}

static BUDGETS: Mutex<Option<HashMap<String, Arc<Budget>>>> = Mutex::new(None);

/// Starts counting run `run`'s tokens against `limit`, `used` of them already spent (by the
/// run before it was resumed); returns its budget.
pub(crate) fn open_budget(run: &str, limit: Option<u64>, used: u64) -> Arc<Budget> {
  let budget = Arc::new(Budget {
    limit,
    used: AtomicU64::new(used),
  });
  let mut budgets = BUDGETS.lock().unwrap_or_else(PoisonError::into_inner);
  budgets
    .get_or_insert_with(HashMap::new)
    .insert(run.to_string(), Arc::clone(&budget));
  budget
}

/// Stops counting run `run`'s tokens.
pub(crate) fn close_budget(run: &str) {
  let mut budgets = BUDGETS.lock().unwrap_or_else(PoisonError::into_inner);
  if let Some(budgets) = budgets.as_mut() {
    budgets.remove(run);
  }
}

/// Run `run`'s budget (an unlimited one when the run opened none, as in tests).
pub(crate) fn budget(run: &str) -> Arc<Budget> {
  let budgets = BUDGETS.lock().unwrap_or_else(PoisonError::into_inner);
  budgets
    .as_ref()
    .and_then(|b| b.get(run).cloned())
    .unwrap_or_default()
}

/// Asks the model, counting the tokens against `budget`.
///
/// # Errors
///
/// The budget is spent, the server cannot be reached or answers with an error status, or its
/// reply is not a chat completion. Messages never contain the API key.
pub(crate) async fn complete(
  endpoint: &Endpoint,
  completion: &Completion,
  budget: &Budget,
) -> Result<Answer, String> {
  budget.check()?;
  let mut body = serde_json::json!({
    "model": endpoint.model,
    "messages": completion
      .messages
      .iter()
      .map(|(role, content)| serde_json::json!({ "role": role, "content": content }))
      .collect::<Vec<_>>(),
  });
  if let Some(t) = completion.temperature {
    body["temperature"] = t.into();
  }
  if let Some(n) = completion.max_tokens {
    body["max_tokens"] = n.into();
  }
  if completion.json {
    body["response_format"] = serde_json::json!({ "type": "json_object" });
  }
  let url = format!("{}/chat/completions", endpoint.url);
  let mut request = crate::http::Request::get(&url).json(&body);
  request.method = "POST".into();
  request.timeout = endpoint.timeout;
  // Asking again after an error answer is safe; after a timeout it only doubles the wait.
  request.retry_all = Some(true);
  request.retry_timeouts = false;
  if let Some(key) = &endpoint.api_key {
    request
      .headers
      .push(("authorization".into(), format!("Bearer {key}")));
  }
  let response = crate::http::send(&request)
    .await
    .map_err(|e| endpoint.mask(&format!("model call failed: {e}")))?;
  if response.status >= 400 {
    return Err(format!(
      "the model server answered {} at {url}: {}",
      response.status,
      endpoint.masked(&response.body, 300)
    ));
  }
  let reply = response.json.ok_or_else(|| {
    format!(
      "the model server's reply is not JSON: {}",
      endpoint.masked(&response.body, 200)
    )
  })?;
  let text = reply["choices"][0]["message"]["content"]
    .as_str()
    .ok_or_else(|| {
      format!(
        "the model server's reply has no choices[0].message.content: {}",
        endpoint.masked(&reply.to_string(), 200)
      )
    })?
    .to_string();
  let count = |key: &str| reply["usage"][key].as_u64().unwrap_or(0);
  let (prompt, answer) = (count("prompt_tokens"), count("completion_tokens"));
  let total = reply["usage"]["total_tokens"]
    .as_u64()
    .unwrap_or_else(|| prompt.saturating_add(answer));
  // Server-reported counts are not trusted to fit: the count saturates instead of wrapping.
  let _ = budget
    .used
    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
      Some(used.saturating_add(total))
    });
  Ok(Answer {
    text,
    model: reply["model"]
      .as_str()
      .unwrap_or(&endpoint.model)
      .to_string(),
    usage: Usage {
      prompt,
      completion: answer,
      total,
    },
  })
}

/// Tokens a run spent according to its events: the `tokens` of the log line each model call
/// leaves.
pub(crate) fn tokens_in(events: &[crate::event::EventRecord]) -> u64 {
  events
    .iter()
    .filter_map(|r| match &r.event {
      crate::event::Event::Log { tokens, .. } => *tokens,
      _ => None,
    })
    .fold(0, u64::saturating_add)
}

/// Where to send a completion and what it asks, from the `llm` skill's inputs (also
/// `swdl.llm.complete`'s options): the endpoint from `url`/`model`, `config_env` and the
/// environment ([`Endpoint::resolve`]), each try ending before `stage_timeout_ms` (when not
/// 0) does.
///
/// # Errors
///
/// No server or model configured, or inputs that do not describe a completion.
pub(crate) fn prepare(
  inputs: &serde_json::Value,
  config_env: &[(&str, &str)],
  stage_timeout_ms: u64,
) -> Result<(Endpoint, Completion), String> {
  // A value of the wrong type is an error, not a reason to fall back to the environment.
  let text = |key: &str| -> Result<Option<&str>, String> {
    match inputs.get(key) {
      None | Some(serde_json::Value::Null) => Ok(None),
      Some(serde_json::Value::String(s)) => Ok(Some(s)),
      Some(other) => Err(format!("`{key}` must be text, got {other}")),
    }
  };
  let mut endpoint = Endpoint::resolve(text("url")?, text("model")?, config_env)?;
  if stage_timeout_ms > 0 {
    endpoint.timeout = endpoint
      .timeout
      .min(Duration::from_millis(stage_timeout_ms));
  }
  Ok((endpoint, completion_from(inputs)?))
}

/// Reads a completion from JSON inputs (the `llm` skill's `with`, or a Lua table as JSON):
/// `prompt` and/or `messages`, `system`, `temperature`, `max_tokens`, `json`.
///
/// # Errors
///
/// Neither `prompt` nor `messages`, or a field of the wrong type.
pub(crate) fn completion_from(inputs: &serde_json::Value) -> Result<Completion, String> {
  let mut completion = Completion::default();
  if let Some(system) = inputs.get("system") {
    let system = system
      .as_str()
      .ok_or_else(|| format!("`system` must be text, got {system}"))?;
    completion
      .messages
      .push(("system".into(), system.to_string()));
  }
  if let Some(messages) = inputs.get("messages") {
    let list = messages
      .as_array()
      .ok_or_else(|| format!("`messages` must be a list of {{role, content}}, got {messages}"))?;
    for message in list {
      let role = message["role"].as_str();
      let content = message["content"].as_str();
      match (role, content) {
        (Some(role), Some(content)) => completion
          .messages
          .push((role.to_string(), content.to_string())),
        _ => {
          return Err(format!(
            "each message needs text `role` and `content`, got {message}"
          ));
        }
      }
    }
  }
  if let Some(prompt) = inputs.get("prompt") {
    let prompt = match prompt {
      serde_json::Value::String(s) => s.clone(),
      other => other.to_string(),
    };
    completion.messages.push(("user".into(), prompt));
  }
  if !completion.messages.iter().any(|(role, _)| role != "system") {
    return Err("needs `prompt` (or `messages`)".into());
  }
  if let Some(t) = inputs.get("temperature") {
    completion.temperature = Some(
      t.as_f64()
        .ok_or_else(|| format!("`temperature` must be a number, got {t}"))?,
    );
  }
  if let Some(n) = inputs.get("max_tokens") {
    completion.max_tokens = Some(
      n.as_u64()
        .ok_or_else(|| format!("`max_tokens` must be a whole number, got {n}"))?,
    );
  }
  if let Some(json) = inputs.get("json") {
    completion.json = json
      .as_bool()
      .ok_or_else(|| format!("`json` must be true or false, got {json}"))?;
  }
  Ok(completion)
}

/// The `llm` skill's outputs for an answer: `text`, `json` (the text parsed, when it is
/// JSON), `model` and `usage`.
pub(crate) fn outputs(answer: &Answer) -> serde_json::Map<String, serde_json::Value> {
  let mut out = serde_json::Map::new();
  out.insert("text".into(), answer.text.clone().into());
  out.insert(
    "json".into(),
    serde_json::from_str(&answer.text).unwrap_or(serde_json::Value::Null),
  );
  out.insert("model".into(), answer.model.clone().into());
  out.insert("usage".into(), answer.usage.to_json());
  out
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_url_or_model_of_the_wrong_type_is_an_error_not_a_fallback() {
    let refused = |inputs: serde_json::Value| prepare(&inputs, &[], 0).err();
    assert_eq!(
      refused(serde_json::json!({"prompt": "hi", "model": 3})),
      Some("`model` must be text, got 3".to_string())
    );
    assert_eq!(
      refused(serde_json::json!({"prompt": "hi", "url": ["x"]})),
      Some("`url` must be text, got [\"x\"]".to_string())
    );
  }

  #[test]
  fn completions_read_prompt_system_messages_and_options() {
    let c = completion_from(&serde_json::json!({
      "system": "be brief", "prompt": "hi", "temperature": 0.2, "max_tokens": 50, "json": true
    }))
    .expect("valid");
    assert_eq!(
      c.messages,
      [
        ("system".into(), "be brief".into()),
        ("user".into(), "hi".into())
      ]
    );
    assert_eq!(
      (c.temperature, c.max_tokens, c.json),
      (Some(0.2), Some(50), true)
    );
    assert!(completion_from(&serde_json::json!({"system": "x"})).is_err());
    assert!(completion_from(&serde_json::json!({"prompt": "x", "max_tokens": -1})).is_err());
  }

  #[test]
  fn tokens_are_counted_back_from_the_log_lines_of_earlier_calls() {
    let log = |message: &str, tokens: Option<u64>| crate::event::EventRecord {
      ts: String::new(),
      run: Arc::from("r"),
      item: None,
      key: None,
      event: crate::event::Event::Log {
        stage: "s".into(),
        attempt: 1,
        stream: "log".into(),
        message: message.into(),
        compensation: false,
        tokens,
      },
    };
    let events = [
      log(
        "llm: 120 tokens (prompt 100, completion 20; run 120) from m",
        Some(120),
      ),
      log("something else", None),
      // Only the field counts: a skill that prints a look-alike line adds nothing.
      log("llm: 999 tokens", None),
      log(
        "llm: 30 tokens (prompt 20, completion 10; run 150) from m",
        Some(30),
      ),
    ];
    assert_eq!(tokens_in(&events), 150);
    assert!(same_origin(
      "http://127.0.0.1:8080/v1",
      "http://127.0.0.1:8080/v1/"
    ));
    assert!(!same_origin(
      "http://127.0.0.1:8080/v1",
      "http://127.0.0.1:9090/v1"
    ));
    assert!(!same_origin(
      "https://api.example.com/v1",
      "http://api.example.com/v1"
    ));
  }

  #[test]
  fn a_spent_budget_refuses_new_calls_and_the_key_is_never_shown() {
    let budget = Budget {
      limit: Some(10),
      used: AtomicU64::new(10),
    };
    let error = budget.check().expect_err("spent");
    assert!(error.contains("10 of 10 tokens"), "{error}");
    let endpoint = Endpoint {
      url: "http://x/v1".into(),
      model: "m".into(),
      api_key: Some("sk-secret".into()),
      timeout: Duration::from_secs(1),
    };
    assert_eq!(endpoint.mask("bad key sk-secret"), "bad key ***");
    assert!(!format!("{endpoint:?}").contains("sk-secret"));
  }
}
