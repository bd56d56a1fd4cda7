//! Hides secret values (secret parameters, env variables listed in `config.secrets`) in
//! everything a run emits: events, logs, progress and stored outputs.
//!
//! A secret is masked as written and in the forms it takes when it crosses a boundary: JSON
//! string escaping, URL (percent and form) encoding, base64 (standard and URL-safe, at each
//! of the three alignments it can have inside a longer encoded text) and hex. Values shorter
//! than [`MIN_SECRET_LEN`] characters are refused: masking them would hide ordinary text
//! (`1` inside every address, `ab` inside every word).
use crate::event::Event;
use crate::workflow::Workflow;
use base64::Engine as _;
use indexmap::IndexMap;
use serde_json::Value;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The fewest characters a secret value (or each string or number inside an array or object
/// secret) may have.
pub const MIN_SECRET_LEN: usize = 4;

/// A secret that cannot be masked safely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
  /// A value shorter than [`MIN_SECRET_LEN`] characters.
  #[error(
    "{what} is shorter than {MIN_SECRET_LEN} characters: a secret that short cannot be masked \
     without hiding ordinary text; use a longer value"
  )]
  TooShort {
    /// Which parameter or variable (never its value).
    what: String,
  },
}

/// The secret values of one run.
#[derive(Debug, Clone, Default)]
pub struct Masker {
  /// Every form of every secret, longest first, so a secret containing another is masked whole.
  patterns: Vec<String>,
  /// Names of secret parameters: their values are replaced whole wherever parameters are listed.
  params: Vec<String>,
}

impl Masker {
  /// A masker for these values (each masked in all its forms); empty values are ignored.
  pub fn new(values: impl IntoIterator<Item = String>) -> Self {
    let mut patterns: Vec<String> = Vec::new();
    for value in values.into_iter().filter(|v| !v.is_empty()) {
      forms(&value, &mut patterns);
    }
    patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    patterns.dedup();
    Self {
      patterns,
      params: Vec::new(),
    }
  }

  /// The masker of a run: secret parameters' values (every string and number inside them)
  /// and the values of the variables `config.secrets` names.
  ///
  /// # Errors
  ///
  /// A secret value shorter than [`MIN_SECRET_LEN`] characters, named by its parameter or
  /// variable.
  pub fn for_run(
    workflow: &Workflow,
    params: &IndexMap<String, Value>,
  ) -> Result<Self, SecretError> {
    let mut values = Vec::new();
    let mut names = Vec::new();
    for param in workflow.parameters.values().filter(|p| p.secret) {
      names.push(param.name.clone());
      if let Some(value) = params.get(&param.name) {
        let what = format!("the value of secret parameter `{}`", param.name);
        leaves(value, &what, &mut values)?;
      }
    }
    for name in &workflow.config.secrets {
      let Ok(value) = std::env::var(name) else {
        continue;
      };
      if value.is_empty() {
        continue;
      }
      if value.chars().count() < MIN_SECRET_LEN {
        return Err(SecretError::TooShort {
          what: format!("environment variable `{name}` (listed in `config.secrets`)"),
        });
      }
      values.push(value);
    }
    // The model API key is a secret whether or not the workflow lists it. Placeholder keys
    // that local servers accept (`EMPTY`, `ollama`) would mask ordinary words.
    if let Ok(key) = std::env::var("SWDL_LLM_API_KEY")
      && key.len() >= 12
    {
      values.push(key);
    }
    let mut masker = Self::new(values);
    masker.params = names;
    Ok(masker)
  }

  /// True when there is nothing to hide.
  pub fn is_empty(&self) -> bool {
    self.patterns.is_empty() && self.params.is_empty()
  }

  fn holds_secret(&self, text: &str) -> bool {
    self.patterns.iter().any(|p| text.contains(p.as_str()))
  }

  /// The text with every secret replaced by `***`.
  pub fn mask_str(&self, text: &str) -> String {
    let mut out = text.to_string();
    self.mask_string(&mut out);
    out
  }

  /// Replaces every place any secret form matches in the original text, overlaps merged,
  /// so two secrets that share characters cannot leave a piece of either behind.
  fn mask_string(&self, text: &mut String) {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for pattern in &self.patterns {
      spans.extend(
        text
          .match_indices(pattern.as_str())
          .map(|(at, found)| (at, at + found.len())),
      );
    }
    if spans.is_empty() {
      return;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut done = 0;
    let mut open: Option<(usize, usize)> = None;
    for (start, end) in spans {
      match &mut open {
        Some((_, last)) if start <= *last => *last = (*last).max(end),
        _ => {
          if let Some((from, to)) = open.take() {
            out.push_str(&text[done..from]);
            out.push_str(MASK);
            done = to;
          }
          open = Some((start, end));
        }
      }
    }
    if let Some((from, to)) = open {
      out.push_str(&text[done..from]);
      out.push_str(MASK);
      done = to;
    }
    out.push_str(&text[done..]);
    *text = out;
  }

  /// Whether any string or number inside a JSON value (keys included) holds a secret.
  pub fn contains_secret(&self, value: &Value) -> bool {
    match value {
      Value::String(s) => self.holds_secret(s),
      Value::Number(n) => self.holds_secret(&n.to_string()),
      Value::Array(items) => items.iter().any(|v| self.contains_secret(v)),
      Value::Object(map) => map
        .iter()
        .any(|(k, v)| self.holds_secret(k) || self.contains_secret(v)),
      Value::Bool(_) | Value::Null => false,
    }
  }

  /// Masks every string inside a JSON value, keys included; a number holding a secret
  /// becomes the string `***`.
  pub fn mask_json(&self, value: &mut Value) {
    if self.patterns.is_empty() {
      return;
    }
    match value {
      Value::String(s) => self.mask_string(s),
      Value::Number(n) => {
        if self.holds_secret(&n.to_string()) {
          *value = Value::from(MASK);
        }
      }
      Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
      Value::Object(map) => {
        if map.keys().any(|k| self.holds_secret(k)) {
          let entries = std::mem::take(map);
          *map = entries
            .into_iter()
            .map(|(k, mut v)| {
              self.mask_json(&mut v);
              (self.mask_str(&k), v)
            })
            .collect();
        } else {
          map.values_mut().for_each(|v| self.mask_json(v));
        }
      }
      Value::Bool(_) | Value::Null => {}
    }
  }

  /// Masks a run's parameters: a secret parameter's value is replaced whole (whatever its
  /// type), and secrets inside the others are masked as everywhere.
  pub fn mask_params(&self, params: &mut Value) {
    if let Value::Object(map) = params {
      for name in &self.params {
        if let Some(value) = map.get_mut(name)
          && !value.is_null()
        {
          *value = Value::from(MASK);
        }
      }
    }
    self.mask_json(params);
  }

  /// Masks every text field of an event.
  pub fn mask_event(&self, event: &mut Event) {
    if self.is_empty() {
      return;
    }
    match event {
      Event::RunStarted { params, .. } => self.mask_params(params),
      Event::StageStarted { inputs, .. } => {
        if self.contains_secret(inputs) {
          self.mask_json(std::sync::Arc::make_mut(inputs));
        }
      }
      Event::StageRetrying { error, .. }
      | Event::StageFailed { error, .. }
      | Event::CompensationFailed { error, .. } => self.mask_string(error),
      Event::StageCompleted {
        outputs, summary, ..
      } => {
        // Copy-on-write: the runtime keeps the real values it shares this with.
        if self.contains_secret(outputs) {
          self.mask_json(std::sync::Arc::make_mut(outputs));
        }
        if let Some(s) = summary {
          self.mask_string(s);
        }
      }
      Event::GateWaiting { message, .. } => {
        if let Some(m) = message {
          self.mask_string(m);
        }
      }
      Event::GateDecided { reason, inputs, .. } => {
        if let Some(r) = reason {
          self.mask_string(r);
        }
        if let Some(i) = inputs {
          self.mask_json(i);
        }
      }
      Event::Log { message, .. } => self.mask_string(message),
      Event::RecoveryDecided { with, error, .. } => {
        if let Some(w) = with {
          self.mask_json(w);
        }
        if let Some(e) = error {
          self.mask_string(e);
        }
      }
      Event::RunCompleted { outputs, error, .. } => {
        self.mask_json(outputs);
        if let Some(e) = error {
          self.mask_string(e);
        }
      }
      Event::StageTimedOut { .. }
      | Event::StageSkipped { .. }
      | Event::StageCancelled { .. }
      | Event::RunPaused { .. }
      | Event::RunResumed {}
      | Event::CompensationStarted { .. }
      | Event::CompensationCompleted { .. } => {}
    }
  }
}

/// Collects the strings and numbers inside a secret value, refusing short ones. Booleans and
/// nulls are masked only where parameters are listed: their text is in every other message.
fn leaves(value: &Value, what: &str, out: &mut Vec<String>) -> Result<(), SecretError> {
  let text = match value {
    Value::String(s) => s.clone(),
    Value::Number(n) => {
      // Also as expressions write it (`1e5` is `100000` there, `1e15` is `1e+15`).
      if let Some(f) = n.as_f64() {
        let rendered = crate::expr::Value::Number(f).to_text();
        if rendered != n.to_string() && rendered.chars().count() >= MIN_SECRET_LEN {
          out.push(rendered);
        }
      }
      n.to_string()
    }
    Value::Array(items) => {
      return items.iter().try_for_each(|v| leaves(v, what, out));
    }
    Value::Object(map) => return map.values().try_for_each(|v| leaves(v, what, out)),
    Value::Bool(_) | Value::Null => return Ok(()),
  };
  if text.is_empty() {
    return Ok(());
  }
  if text.chars().count() < MIN_SECRET_LEN {
    return Err(SecretError::TooShort {
      what: what.to_string(),
    });
  }
  out.push(text);
  Ok(())
}

/// Pushes a secret and the forms it commonly takes outside the run.
fn forms(secret: &str, out: &mut Vec<String>) {
  out.push(secret.to_string());
  // JSON string escaping as serde writes it, and as stricter encoders do (`\/`, ASCII only).
  let json = serde_json::to_string(secret).unwrap_or_default();
  out.push(json[1..json.len() - 1].to_string());
  for upper in [false, true] {
    let mut ascii = String::new();
    for c in secret.chars() {
      match c {
        '/' => ascii.push_str("\\/"),
        c if c.is_ascii() => {
          let escaped = serde_json::to_string(&c.to_string()).unwrap_or_default();
          ascii.push_str(&escaped[1..escaped.len() - 1]);
        }
        c => {
          let mut units = [0u16; 2];
          for unit in c.encode_utf16(&mut units) {
            ascii.push_str(&if upper {
              format!("\\u{unit:04X}")
            } else {
              format!("\\u{unit:04x}")
            });
          }
        }
      }
    }
    out.push(ascii);
  }
  // URL encoding: RFC 3986 percent-encoding (either case of hex digits) and form encoding.
  let url = percent_encoding::utf8_percent_encode(secret, URL_RESERVED).to_string();
  out.push(url.replace("%20", "+"));
  out.push(lower_escapes(&url));
  out.push(url);
  // Base64 whole, and at each alignment inside a longer text: only the characters fixed by
  // the secret's bytes alone.
  let bytes = secret.as_bytes();
  out.push(base64::engine::general_purpose::STANDARD.encode(bytes));
  out.push(base64::engine::general_purpose::URL_SAFE.encode(bytes));
  for engine in [
    &base64::engine::general_purpose::STANDARD_NO_PAD,
    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
  ] {
    for shift in 0..3 {
      let mut shifted = vec![0u8; shift];
      shifted.extend_from_slice(bytes);
      let encoded = engine.encode(&shifted);
      let start = [0, 2, 3][shift];
      let end = shifted.len() / 3 * 4 + [0, 1, 2][shifted.len() % 3];
      if let Some(core) = encoded.get(start..end)
        && core.len() >= 6
      {
        out.push(core.to_string());
      }
    }
  }
  // Hex, as digests and dumps write it.
  let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
  out.push(hex.to_uppercase());
  out.push(hex);
}

/// Everything but RFC 3986's unreserved characters is percent-encoded.
const URL_RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
  .remove(b'-')
  .remove(b'.')
  .remove(b'_')
  .remove(b'~');

/// `%2F` → `%2f`: some encoders write lowercase hex digits.
fn lower_escapes(url: &str) -> String {
  let mut out = String::with_capacity(url.len());
  let mut chars = url.chars();
  while let Some(c) = chars.next() {
    out.push(c);
    if c == '%' {
      out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
    }
  }
  out
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn secrets_are_masked_in_strings_keys_and_nested_values() {
    let masker = Masker::new([
      "hunter2".to_string(),
      String::new(),
      "hunter2-long".to_string(),
    ]);
    assert_eq!(
      masker.mask_str("pw=hunter2-long and hunter2"),
      "pw=*** and ***"
    );
    let mut value = json!({"a": ["x hunter2 y", 3], "hunter2": {"b": "hunter2"}});
    masker.mask_json(&mut value);
    assert_eq!(value, json!({"a": ["x *** y", 3], "***": {"b": "***"}}));
    assert!(Masker::new([String::new()]).is_empty());
  }

  #[test]
  fn overlapping_secrets_leave_nothing_behind() {
    let masker = Masker::new(["password1".to_string(), "word1234".to_string()]);
    assert_eq!(masker.mask_str("x password1234 y word1234"), "x *** y ***");
    let floats = Masker::for_run(
      &crate::compose::load_str(
        "t.yaml",
        "name: t\nparameters:\n  n: { type: number, secret: true }\nstages:\n  - { id: a, uses: echo }\n",
      )
      .expect("loads"),
      &[("n".to_string(), json!(100_000.0))].into_iter().collect(),
    )
    .expect("long enough");
    assert_eq!(floats.mask_str("n=100000"), "n=***");
  }

  #[test]
  fn numbers_and_strings_inside_arrays_are_masked() {
    let masker = Masker::new(["987654321".to_string(), "ArrSecretElem".to_string()]);
    let mut value = json!({"n": 987_654_321, "m": 19_876_543_210_i64, "a": ["ArrSecretElem", 5]});
    masker.mask_json(&mut value);
    assert_eq!(value, json!({"n": "***", "m": "***", "a": ["***", 5]}));
  }

  #[test]
  fn encoded_forms_are_masked() {
    use base64::Engine as _;
    let secret = "q\"w\\e/é+x y";
    let masker = Masker::new([secret.to_string()]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let json = serde_json::to_string(secret).unwrap_or_default();
    let cases = [
      json.clone(),
      "q\\\"w\\\\e\\/\\u00e9+x y".to_string(),
      "q\\\"w\\\\e\\/\\u00E9+x y".to_string(),
      "q%22w%5Ce%2F%C3%A9%2Bx%20y".to_string(),
      "q%22w%5ce%2f%c3%a9%2bx%20y".to_string(),
      "q%22w%5Ce%2F%C3%A9%2Bx+y".to_string(),
      b64.encode(secret),
      b64.encode(format!("a{secret}b")),
      b64.encode(format!("ab{secret}")),
      b64.encode(format!("abc{secret}de")),
      base64::engine::general_purpose::URL_SAFE.encode(format!("a{secret}")),
      secret.bytes().map(|b| format!("{b:02x}")).collect(),
      secret.bytes().map(|b| format!("{b:02X}")).collect(),
    ];
    for case in cases {
      let masked = masker.mask_str(&format!("<<{case}>>"));
      assert!(masked.contains(MASK), "{case} became {masked}");
      assert!(!masked.contains(&case), "{case} stayed in {masked}");
    }
    // Text without the secret is left alone.
    assert_eq!(
      masker.mask_str("http://127.0.0.1:8080/x"),
      "http://127.0.0.1:8080/x"
    );
  }

  #[test]
  fn short_secrets_are_refused_and_parameters_are_replaced_whole() {
    let source = "name: t\nparameters:\n  pin: { type: integer, secret: true }\n  list: { type: array, secret: true }\n  flag: { type: boolean, secret: true }\nstages:\n  - { id: a, uses: echo }\n";
    let workflow = crate::compose::load_str("t.yaml", source).expect("loads");
    let params = |pin: Value, list: Value| -> IndexMap<String, Value> {
      [
        ("pin".to_string(), pin),
        ("list".to_string(), list),
        ("flag".to_string(), json!(true)),
      ]
      .into_iter()
      .collect()
    };
    let err = Masker::for_run(&workflow, &params(json!(1), json!([]))).expect_err("short");
    assert_eq!(
      err.to_string(),
      "the value of secret parameter `pin` is shorter than 4 characters: a secret that short \
       cannot be masked without hiding ordinary text; use a longer value"
    );
    assert!(Masker::for_run(&workflow, &params(json!(1234), json!(["abc"]))).is_err());
    let masker = Masker::for_run(
      &workflow,
      &params(json!(98765), json!(["ArrSecretElem", {"k": "deep-value"}])),
    )
    .expect("long enough");
    let mut all = json!({"pin": 98765, "list": ["ArrSecretElem", {"k": "deep-value"}], "flag": true, "other": "x deep-value"});
    masker.mask_params(&mut all);
    assert_eq!(
      all,
      json!({"pin": "***", "list": "***", "flag": "***", "other": "x ***"})
    );
    assert_eq!(masker.mask_str("true at 98765"), "true at ***");
  }
}
