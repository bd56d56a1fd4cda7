//! Hides secret values (secret parameters, env variables listed in `config.secrets`) in
//! everything a run emits: events, logs, progress and stored outputs.
use crate::event::Event;

/// What a secret is replaced with.
pub const MASK: &str = "***";

/// The secret values of one run.
#[derive(Debug, Clone, Default)]
pub struct Masker {
  /// Longest first, so a secret containing another is masked whole.
  secrets: Vec<String>,
}

impl Masker {
  /// A masker for these values; empty values are ignored (they would mask everything).
  pub fn new(values: impl IntoIterator<Item = String>) -> Self {
    let mut secrets: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    Self { secrets }
  }

  /// True when there is nothing to hide.
  pub fn is_empty(&self) -> bool {
    self.secrets.is_empty()
  }

  /// The text with every secret replaced by `***`.
  pub fn mask_str(&self, text: &str) -> String {
    let mut out = text.to_string();
    for secret in &self.secrets {
      if out.contains(secret.as_str()) {
        out = out.replace(secret.as_str(), MASK);
      }
    }
    out
  }

  fn mask_string(&self, text: &mut String) {
    if self.secrets.iter().any(|s| text.contains(s.as_str())) {
      *text = self.mask_str(text);
    }
  }

  /// Whether any string inside a JSON value (keys included) holds a secret.
  pub fn contains_secret(&self, value: &serde_json::Value) -> bool {
    match value {
      serde_json::Value::String(s) => self.secrets.iter().any(|x| s.contains(x.as_str())),
      serde_json::Value::Array(items) => items.iter().any(|v| self.contains_secret(v)),
      serde_json::Value::Object(map) => map.iter().any(|(k, v)| {
        self.secrets.iter().any(|x| k.contains(x.as_str())) || self.contains_secret(v)
      }),
      _ => false,
    }
  }

  /// Masks every string inside a JSON value, keys included.
  pub fn mask_json(&self, value: &mut serde_json::Value) {
    if self.is_empty() {
      return;
    }
    match value {
      serde_json::Value::String(s) => self.mask_string(s),
      serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
      serde_json::Value::Object(map) => {
        if map
          .keys()
          .any(|k| self.secrets.iter().any(|s| k.contains(s.as_str())))
        {
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
      _ => {}
    }
  }

  /// Masks every text field of an event.
  pub fn mask_event(&self, event: &mut Event) {
    if self.is_empty() {
      return;
    }
    match event {
      Event::RunStarted { params, .. } => self.mask_json(params),
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
}
