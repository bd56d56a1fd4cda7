//! HTTP requests for the `http` skill and `swdl.http` (docs/models.md): reqwest with rustls,
//! retries on 429 and 5xx that honour `Retry-After`, a timeout per try, and a bounded response
//! body.
use indexmap::IndexMap;
use serde_json::Value;
use std::time::Duration;

/// Responses larger than this fail unless the request allows more.
pub(crate) const DEFAULT_MAX_BYTES: usize = 10 * 1024 * 1024;
/// A try that has not answered by then fails (and may be retried).
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries after the first one, for 429, 5xx and connection failures.
pub(crate) const DEFAULT_RETRIES: u32 = 3;
/// The longest wait between tries, whatever `Retry-After` asks.
const MAX_RETRY_WAIT: Duration = Duration::from_mins(1);

/// One request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
  /// `GET`, `POST`, ...
  pub method: String,
  /// Absolute `http` or `https` URL.
  pub url: String,
  /// Header names and values.
  pub headers: Vec<(String, String)>,
  /// The body, if any.
  pub body: Option<Vec<u8>>,
  /// Limit for each try.
  pub timeout: Duration,
  /// Tries after the first.
  pub retries: u32,
  /// Largest response body accepted.
  pub max_bytes: usize,
  /// Retry whatever failed (5xx, timeouts, dropped connections). Off, only what surely did
  /// not reach the server's logic is retried: 429, 503 and connections that never opened.
  /// On by default for methods that may be repeated (GET, HEAD, PUT, DELETE, OPTIONS).
  pub retry_all: Option<bool>,
  /// Retry a try that timed out (with `retry_all`); a slow model would only be asked again.
  pub retry_timeouts: bool,
}

impl Request {
  /// A `GET` of `url` with the defaults.
  pub(crate) fn get(url: impl Into<String>) -> Self {
    Self {
      method: "GET".into(),
      url: url.into(),
      headers: Vec::new(),
      body: None,
      timeout: DEFAULT_TIMEOUT,
      retries: DEFAULT_RETRIES,
      max_bytes: DEFAULT_MAX_BYTES,
      retry_all: None,
      retry_timeouts: true,
    }
  }

  /// The request the `http` skill's inputs describe (also `swdl.http`'s options): `url`,
  /// `method`, `headers`, `body` or `json`, `timeout`, `retries`, `max_bytes`. Each try ends
  /// before `stage_timeout_ms` (when not 0) does.
  ///
  /// # Errors
  ///
  /// A missing `url`, or a field of the wrong type.
  pub(crate) fn from_inputs(inputs: &Value, stage_timeout_ms: u64) -> Result<Self, String> {
    // A null field is an absent one, as everywhere in skill inputs.
    let input = |name: &str| inputs.get(name).filter(|value| !value.is_null());
    let url = match input("url") {
      Some(Value::String(url)) => url.clone(),
      Some(other) => return Err(format!("`url` must be a string, got {other}")),
      None => return Err("needs `url`".into()),
    };
    let mut request = Self::get(url);
    if let Some(method) = input("method") {
      request.method = method
        .as_str()
        .ok_or_else(|| format!("`method` must be a string, got {method}"))?
        .to_string();
    }
    match input("headers") {
      None | Some(Value::Null) => {}
      Some(Value::Object(map)) => {
        for (name, value) in map {
          let value = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
          };
          request.headers.push((name.clone(), value));
        }
      }
      Some(other) => return Err(format!("`headers` must be a mapping, got {other}")),
    }
    match (input("body"), input("json")) {
      (Some(_), Some(_)) => return Err("give `body` or `json`, not both".into()),
      (Some(Value::String(body)), None) => request.body = Some(body.clone().into_bytes()),
      (Some(other), None) => {
        return Err(format!(
          "`body` must be text, got {other}; use `json` for data"
        ));
      }
      (None, Some(json)) => request = request.json(json),
      (None, None) => {}
    }
    if let Some(timeout) = input("timeout") {
      request.timeout = match timeout {
        Value::Number(n) => n
          .as_u64()
          .map(Duration::from_millis)
          .ok_or_else(|| format!("`timeout` must be a whole number of milliseconds, got {n}"))?,
        Value::String(s) => {
          crate::duration::parse_duration(s).map_err(|e| format!("`timeout`: {e}"))?
        }
        other => return Err(format!("`timeout` must be a duration, got {other}")),
      };
    }
    // Each try must end before the stage's own timeout does.
    if stage_timeout_ms > 0 {
      request.timeout = request.timeout.min(Duration::from_millis(stage_timeout_ms));
    }
    for (key, slot) in [("retries", 0usize), ("max_bytes", 1)] {
      if let Some(value) = input(key) {
        let n = value
          .as_u64()
          .ok_or_else(|| format!("`{key}` must be a whole number, got {value}"))?;
        if slot == 0 {
          request.retries = u32::try_from(n).unwrap_or(u32::MAX);
        } else {
          request.max_bytes = usize::try_from(n).unwrap_or(usize::MAX);
        }
      }
    }
    Ok(request)
  }

  /// This request with a JSON body (and its content type).
  pub(crate) fn json(mut self, body: &serde_json::Value) -> Self {
    self.body = Some(body.to_string().into_bytes());
    if !self
      .headers
      .iter()
      .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
      self
        .headers
        .push(("content-type".into(), "application/json".into()));
    }
    self
  }
}

/// A response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Response {
  /// Status code.
  pub status: u16,
  /// Headers (lower-case names; repeated headers joined with `, `).
  pub headers: IndexMap<String, String>,
  /// The body as text (invalid UTF-8 replaced).
  pub body: String,
  /// The body parsed as JSON, when it is JSON.
  pub json: Option<serde_json::Value>,
  /// How many tries it took.
  pub tries: u32,
}

impl Response {
  /// The response as the `http` skill's outputs.
  pub(crate) fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    out.insert("status".into(), self.status.into());
    out.insert(
      "headers".into(),
      serde_json::Value::Object(
        self
          .headers
          .iter()
          .map(|(k, v)| (k.clone(), v.clone().into()))
          .collect(),
      ),
    );
    out.insert("body".into(), self.body.clone().into());
    out.insert(
      "json".into(),
      self.json.clone().unwrap_or(serde_json::Value::Null),
    );
    out.insert("tries".into(), self.tries.into());
    out
  }
}

/// `tried once`, `tried 3 times`.
fn tries_text(tries: u32) -> String {
  if tries == 1 {
    "tried once".to_string()
  } else {
    format!("tried {tries} times")
  }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum HttpError {
  /// The request itself is wrong (bad URL, method or header).
  #[error("{0}")]
  Invalid(String),
  /// No answer within the timeout, on every try.
  #[error("{url}: no response within {} ({})", crate::duration::format_duration(*.timeout), tries_text(*.tries))]
  Timeout {
    /// The URL.
    url: String,
    /// The limit per try.
    timeout: Duration,
    /// Tries made.
    tries: u32,
  },
  /// The body is larger than allowed.
  #[error("{url}: the response is larger than {limit} bytes (raise `max_bytes` to accept it)")]
  TooLarge {
    /// The URL.
    url: String,
    /// The limit.
    limit: usize,
  },
  /// The connection failed on every try.
  #[error("{url}: {message} ({})", tries_text(*.tries))]
  Transport {
    /// The URL.
    url: String,
    /// What failed.
    message: String,
    /// Tries made.
    tries: u32,
  },
}

thread_local! {
  // A client per thread, so its TLS set-up is made once. Idle connections are not kept: a
  // pooled connection belongs to the runtime that opened it, and one thread may run several
  // runtimes in turn (commands, tests), where a connection from a finished runtime is dead.
  static CLIENT: std::cell::OnceCell<reqwest::Client> = const { std::cell::OnceCell::new() };
}

fn client() -> Result<reqwest::Client, HttpError> {
  CLIENT.with(|cell| {
    if let Some(client) = cell.get() {
      return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
      .user_agent(concat!("swdl/", env!("CARGO_PKG_VERSION")))
      .pool_max_idle_per_host(0)
      .build()
      .map_err(|e| HttpError::Invalid(format!("cannot make an HTTP client: {e}")))?;
    Ok(cell.get_or_init(|| client).clone())
  })
}

/// Sends `request`, retrying 429, 5xx and connection failures as configured. A final 429 or 5xx
/// is returned as a response, not an error: the caller decides what a status means.
///
/// # Errors
///
/// An invalid request, a timeout or connection failure on every try, or a body over the limit.
pub(crate) async fn send(request: &Request) -> Result<Response, HttpError> {
  let method = reqwest::Method::from_bytes(request.method.to_ascii_uppercase().as_bytes())
    .map_err(|_| HttpError::Invalid(format!("`{}` is not an HTTP method", request.method)))?;
  let url = reqwest::Url::parse(&request.url)
    .map_err(|e| HttpError::Invalid(format!("`{}` is not a URL: {e}", request.url)))?;
  if !matches!(url.scheme(), "http" | "https") {
    return Err(HttpError::Invalid(format!(
      "`{}`: only http and https URLs are supported",
      request.url
    )));
  }
  let client = client()?;
  let retry_all = request.retry_all.unwrap_or(matches!(
    method,
    reqwest::Method::GET
      | reqwest::Method::HEAD
      | reqwest::Method::PUT
      | reqwest::Method::DELETE
      | reqwest::Method::OPTIONS
  ));
  let mut tries = 0;
  loop {
    tries += 1;
    let mut builder = client
      .request(method.clone(), url.clone())
      .timeout(request.timeout);
    for (name, value) in &request.headers {
      builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(body) = &request.body {
      builder = builder.body(body.clone());
    }
    let last = tries > request.retries;
    let wait = match builder.send().await {
      Ok(response) => {
        let status = response.status().as_u16();
        let retryable =
          status == 429 || status == 503 || (retry_all && (500..600).contains(&status));
        if !retryable || last {
          return read(response, request, tries).await;
        }
        retry_after(&response).unwrap_or_else(|| backoff(tries))
      }
      Err(error)
        if last
          || !(error.is_connect()
            || (retry_all && (!error.is_timeout() || request.retry_timeouts))) =>
      {
        return Err(if error.is_timeout() {
          HttpError::Timeout {
            url: request.url.clone(),
            timeout: request.timeout,
            tries,
          }
        } else if error.is_builder() {
          HttpError::Invalid(format!("{}: {error}", request.url))
        } else {
          HttpError::Transport {
            url: request.url.clone(),
            message: describe(&error),
            tries,
          }
        });
      }
      Err(error) if error.is_builder() => {
        return Err(HttpError::Invalid(format!("{}: {error}", request.url)));
      }
      Err(_) => backoff(tries),
    };
    tokio::time::sleep(wait.min(MAX_RETRY_WAIT)).await;
  }
}

/// The error and its causes, which reqwest keeps apart.
fn describe(error: &reqwest::Error) -> String {
  let mut text = error.to_string();
  let mut source = std::error::Error::source(error);
  while let Some(cause) = source {
    text.push_str(": ");
    text.push_str(&cause.to_string());
    source = cause.source();
  }
  text
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the APIs swdl talks to; it
/// falls back to the backoff).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
  let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
  retry_after_text(value.to_str().ok()?)
}

fn retry_after_text(text: &str) -> Option<Duration> {
  let seconds: f64 = text.trim().parse().ok().filter(|s: &f64| !s.is_nan())?;
  // A server's number is not trusted to fit: anything past the cap is the cap.
  Duration::try_from_secs_f64(seconds.min(MAX_RETRY_WAIT.as_secs_f64())).ok()
}

/// 250 ms, 500 ms, 1 s, ... after the first, second, third failed try.
fn backoff(tries: u32) -> Duration {
  Duration::from_millis(250u64.saturating_mul(1 << tries.saturating_sub(1).min(8)))
}

async fn read(
  mut response: reqwest::Response,
  request: &Request,
  tries: u32,
) -> Result<Response, HttpError> {
  let status = response.status().as_u16();
  let mut headers: IndexMap<String, String> = IndexMap::new();
  for (name, value) in response.headers() {
    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
    headers
      .entry(name.as_str().to_string())
      .and_modify(|v| {
        v.push_str(", ");
        v.push_str(&value);
      })
      .or_insert(value);
  }
  let too_large = || HttpError::TooLarge {
    url: request.url.clone(),
    limit: request.max_bytes,
  };
  if response
    .content_length()
    .is_some_and(|n| n > request.max_bytes as u64)
  {
    return Err(too_large());
  }
  let mut body = Vec::new();
  loop {
    match response.chunk().await {
      Ok(Some(chunk)) => {
        if body.len() + chunk.len() > request.max_bytes {
          return Err(too_large());
        }
        body.extend_from_slice(&chunk);
      }
      Ok(None) => break,
      Err(error) if error.is_timeout() => {
        return Err(HttpError::Timeout {
          url: request.url.clone(),
          timeout: request.timeout,
          tries,
        });
      }
      Err(error) => {
        return Err(HttpError::Transport {
          url: request.url.clone(),
          message: describe(&error),
          tries,
        });
      }
    }
  }
  let json = serde_json::from_slice(&body).ok();
  Ok(Response {
    status,
    headers,
    body: String::from_utf8_lossy(&body).into_owned(),
    json,
    tries,
  })
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn retry_after_is_read_in_seconds_and_capped() {
    assert_eq!(retry_after_text("2"), Some(Duration::from_secs(2)));
    assert_eq!(retry_after_text(" 0.5 "), Some(Duration::from_millis(500)));
    assert_eq!(retry_after_text("1e20"), Some(MAX_RETRY_WAIT));
    assert_eq!(retry_after_text("inf"), Some(MAX_RETRY_WAIT));
    assert_eq!(retry_after_text("-1"), None);
    assert_eq!(retry_after_text("NaN"), None);
    assert_eq!(retry_after_text("Wed, 21 Oct 2015 07:28:00 GMT"), None);
  }

  #[test]
  fn backoff_doubles_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_millis(250));
    assert_eq!(backoff(2), Duration::from_millis(500));
    assert_eq!(backoff(3), Duration::from_secs(1));
    assert!(backoff(40) <= Duration::from_secs(64));
  }

  #[tokio::test]
  async fn bad_requests_are_refused_before_anything_is_sent() {
    let error = send(&Request::get("ftp://example.com/x")).await;
    assert!(matches!(error, Err(HttpError::Invalid(m)) if m.contains("only http and https")));
    let error = send(&Request::get("not a url")).await;
    assert!(matches!(error, Err(HttpError::Invalid(m)) if m.contains("is not a URL")));
    let mut request = Request::get("http://127.0.0.1:9/");
    request.method = "BR EW".into();
    let error = send(&request).await;
    assert!(matches!(error, Err(HttpError::Invalid(m)) if m.contains("not an HTTP method")));
  }
}
