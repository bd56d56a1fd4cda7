//! Large values stored once. A string of more than [`LARGE`] bytes inside an event (a stage's
//! outputs, the inputs of the stage that reads them, the workflow outputs that repeat them) is
//! kept in the `blobs` table under its SHA-256, and the event keeps the hash in its place plus
//! a list of where the hashes stand (`refs`, JSON pointer → hash). A value that appears in
//! five events is then written once instead of five times, and commits stay small.
use super::*;
use serde_json::Value;

/// Strings longer than this many bytes are stored once, by hash.
pub(super) const LARGE: usize = 64 * 1024;

/// An event body (or a runs row's outputs) with its large strings taken out.
#[derive(Debug, Default)]
pub(super) struct Split {
  /// The JSON, large strings replaced by their hash.
  pub(super) body: String,
  /// Where the hashes stand: a JSON object of pointer → hash; `None` when nothing was taken.
  pub(super) refs: Option<String>,
  /// The strings taken out, by hash (each once).
  pub(super) blobs: Vec<(String, String)>,
}

impl Split {
  /// `body` as it is: nothing in it is large.
  pub(super) fn whole(body: String) -> Self {
    Self {
      body,
      refs: None,
      blobs: Vec::new(),
    }
  }
}

/// Takes the large strings out of `value`, replacing each by its hash; returns where they
/// stood (pointer → hash) and the strings, each once.
pub(super) fn take_large(
  value: &mut Value,
) -> (serde_json::Map<String, Value>, Vec<(String, String)>) {
  let mut refs = serde_json::Map::new();
  let mut blobs: Vec<(String, String)> = Vec::new();
  let mut path = String::new();
  walk(value, &mut path, &mut refs, &mut blobs);
  (refs, blobs)
}

fn walk(
  value: &mut Value,
  path: &mut String,
  refs: &mut serde_json::Map<String, Value>,
  blobs: &mut Vec<(String, String)>,
) {
  match value {
    Value::String(text) if text.len() > LARGE => {
      let hash = hash(text);
      let text = std::mem::replace(text, hash.clone());
      refs.insert(path.clone(), Value::String(hash.clone()));
      if !blobs.iter().any(|(h, _)| *h == hash) {
        blobs.push((hash, text));
      }
    }
    Value::Array(items) => {
      for (i, item) in items.iter_mut().enumerate() {
        let len = path.len();
        path.push('/');
        path.push_str(&i.to_string());
        walk(item, path, refs, blobs);
        path.truncate(len);
      }
    }
    Value::Object(map) => {
      for (key, item) in map.iter_mut() {
        let len = path.len();
        path.push('/');
        // JSON pointer escaping (RFC 6901): `~` as `~0`, `/` as `~1`.
        path.push_str(&key.replace('~', "~0").replace('/', "~1"));
        walk(item, path, refs, blobs);
        path.truncate(len);
      }
    }
    _ => {}
  }
}

/// `sha256:` and the hex digest of `text`.
fn hash(text: &str) -> String {
  let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
  let mut out = String::with_capacity(7 + 64);
  out.push_str("sha256:");
  for byte in digest.as_ref() {
    out.push_str(&format!("{byte:02x}"));
  }
  out
}

/// Splits a JSON `body` when it is long enough to hold a large string; a shorter one (nearly
/// every event) is kept as it is, without being parsed.
pub(super) fn split(body: String) -> Split {
  if body.len() <= LARGE {
    return Split::whole(body);
  }
  let Ok(mut value) = serde_json::from_str::<Value>(&body) else {
    return Split::whole(body);
  };
  let (refs, blobs) = take_large(&mut value);
  if refs.is_empty() {
    return Split::whole(body);
  }
  Split {
    body: value.to_string(),
    refs: Some(Value::Object(refs).to_string()),
    blobs,
  }
}

/// The member `key` (a pointer like `/outputs`) of a split `body`, with the refs that fall
/// inside it re-rooted: `(json, refs)`.
pub(super) fn part(body: &str, refs: &str, key: &str) -> (String, Option<String>) {
  let value: Value = serde_json::from_str(body).unwrap_or_default();
  let member = value.pointer(key).cloned().unwrap_or_default();
  let refs: serde_json::Map<String, Value> = serde_json::from_str(refs).unwrap_or_default();
  let inside: serde_json::Map<String, Value> = refs
    .into_iter()
    .filter_map(|(pointer, hash)| {
      let rest = pointer.strip_prefix(key)?;
      (rest.is_empty() || rest.starts_with('/')).then(|| (rest.to_string(), hash))
    })
    .collect();
  let refs = (!inside.is_empty()).then(|| Value::Object(inside).to_string());
  (member.to_string(), refs)
}

/// Puts the stored strings back into `value` where `refs` says they stood, reading each from
/// the store once.
pub(super) fn restore(
  conn: &rusqlite::Connection,
  value: &mut Value,
  refs: &str,
  cache: &mut HashMap<String, Arc<str>>,
) -> Result<(), String> {
  let refs: serde_json::Map<String, Value> =
    serde_json::from_str(refs).map_err(|e| format!("its list of stored values is damaged: {e}"))?;
  for (pointer, hash) in refs {
    let Some(hash) = hash.as_str() else {
      return Err(format!("its stored value at {pointer} has no hash"));
    };
    let text = match cache.get(hash) {
      Some(text) => Arc::clone(text),
      None => {
        let text: Option<String> = conn
          .query_row("SELECT body FROM blobs WHERE hash = ?1", [hash], |row| {
            row.get(0)
          })
          .optional()
          .map_err(|e| e.to_string())?;
        let Some(text) = text else {
          return Err(format!("the stored value {hash} it refers to is missing"));
        };
        let text: Arc<str> = Arc::from(text);
        cache.insert(hash.to_string(), Arc::clone(&text));
        text
      }
    };
    match value.pointer_mut(&pointer) {
      Some(slot) => *slot = Value::String(text.to_string()),
      None => return Err(format!("it has no value at {pointer}")),
    }
  }
  Ok(())
}

/// Writes `blobs` (hash, text) inside `tx`; a hash already stored is kept as it is.
pub(super) fn insert_blobs(
  tx: &rusqlite::Transaction<'_>,
  blobs: &[(String, String)],
) -> Result<(), StoreError> {
  for (hash, text) in blobs {
    tx.prepare_cached("INSERT OR IGNORE INTO blobs (hash, body) VALUES (?1, ?2)")?
      .execute(params![hash, text])?;
  }
  Ok(())
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn large_strings_are_taken_out_once_and_put_back_where_they_stood() {
    let big = "x".repeat(LARGE + 1);
    let body = serde_json::json!({
      "event": "stage_completed",
      "outputs": { "a/b~c": big, "small": "kept", "list": [1, big] },
    })
    .to_string();
    let split = split(body.clone());
    assert_eq!(split.blobs.len(), 1, "one string, stored once");
    assert!(split.body.len() < 300, "{}", split.body);
    let refs: Value =
      serde_json::from_str(split.refs.as_deref().unwrap_or("{}")).unwrap_or_default();
    let pointers: Vec<&String> = refs
      .as_object()
      .map(|m| m.keys().collect())
      .unwrap_or_default();
    assert_eq!(pointers, ["/outputs/a~1b~0c", "/outputs/list/1"]);
    let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
    conn
      .execute_batch("CREATE TABLE blobs (hash TEXT PRIMARY KEY, body TEXT NOT NULL);")
      .unwrap_or_else(|e| panic!("{e}"));
    for (hash, text) in &split.blobs {
      conn
        .execute("INSERT INTO blobs VALUES (?1, ?2)", params![hash, text])
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut value: Value = serde_json::from_str(&split.body).unwrap_or_default();
    let mut cache = HashMap::new();
    restore(
      &conn,
      &mut value,
      split.refs.as_deref().unwrap_or("{}"),
      &mut cache,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(value.to_string(), body);
    // A body with nothing large is kept as it was, unparsed.
    let small = split_of_small();
    assert!(small.refs.is_none() && small.blobs.is_empty());
  }

  fn split_of_small() -> Split {
    split(serde_json::json!({"outputs": {"x": "y".repeat(LARGE)}}).to_string())
  }

  #[test]
  fn a_missing_stored_value_is_an_error_not_a_hole() {
    let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
    conn
      .execute_batch("CREATE TABLE blobs (hash TEXT PRIMARY KEY, body TEXT NOT NULL);")
      .unwrap_or_else(|e| panic!("{e}"));
    let mut value = serde_json::json!({"outputs": {"x": "sha256:00"}});
    let error = restore(
      &conn,
      &mut value,
      r#"{"/outputs/x": "sha256:00"}"#,
      &mut HashMap::new(),
    )
    .expect_err("missing");
    assert_eq!(error, "the stored value sha256:00 it refers to is missing");
  }
}
