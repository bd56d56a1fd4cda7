//! Values crossing the boundary: JSON to Lua and back, the types skills declare, and Lua errors
//! turned into messages that name the file and line.
//!
//! The conversion is written out rather than done through serde so that its choices are
//! explicit: JSON `null` is `nil` in an object (an absent field reads as absent) but
//! `swdl.json.null` inside an array (so positions survive); arrays carry a metatable so an empty
//! array comes back as `[]`; object keys come back sorted, as Lua tables have no order.
use {super::*, serde_json::Value as Json};

/// How deeply a value may nest; deeper is almost always a table that contains itself.
const MAX_DEPTH: usize = 100;

/// Registry key of the metatable that marks a table as a JSON array.
const ARRAY_METATABLE: &str = "swdl.array";

/// Creates the array metatable. Its `__metatable` field keeps sandboxed code from changing it
/// for every array in the state.
pub(super) fn install(lua: &Lua) -> mlua::Result<()> {
  let metatable = lua.create_table()?;
  metatable.set("__metatable", "swdl.json.array")?;
  lua.set_named_registry_value(ARRAY_METATABLE, metatable)
}

/// The metatable marking JSON arrays.
pub(super) fn array_metatable(lua: &Lua) -> mlua::Result<Table> {
  lua.named_registry_value(ARRAY_METATABLE)
}

/// JSON to Lua; a top-level `null` is `nil`.
pub(super) fn to_lua(lua: &Lua, value: &Json) -> mlua::Result<LuaValue> {
  if value.is_null() {
    return Ok(LuaValue::Nil);
  }
  to_lua_at(lua, &array_metatable(lua)?, value, 0)
}

fn to_lua_at(lua: &Lua, arrays: &Table, value: &Json, depth: usize) -> mlua::Result<LuaValue> {
  if depth > MAX_DEPTH {
    return Err(mlua::Error::runtime(format!(
      "a value nested more than {MAX_DEPTH} levels deep cannot be handed to Lua"
    )));
  }
  Ok(match value {
    Json::Null => LuaValue::NULL,
    Json::Bool(b) => LuaValue::Boolean(*b),
    Json::Number(n) => match n.as_i64() {
      Some(i) => LuaValue::Integer(i),
      None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
    },
    Json::String(s) => LuaValue::String(lua.create_string(s)?),
    Json::Array(items) => {
      let table = lua.create_table_with_capacity(items.len(), 0)?;
      for (i, item) in items.iter().enumerate() {
        table.raw_set(i + 1, to_lua_at(lua, arrays, item, depth + 1)?)?;
      }
      table.set_metatable(Some(arrays.clone()))?;
      LuaValue::Table(table)
    }
    Json::Object(map) => {
      let table = lua.create_table_with_capacity(0, map.len())?;
      for (key, item) in map {
        if !item.is_null() {
          table.raw_set(key.as_str(), to_lua_at(lua, arrays, item, depth + 1)?)?;
        }
      }
      LuaValue::Table(table)
    }
  })
}

/// What to do with values JSON cannot hold (functions, coroutines, userdata).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unsupported {
  /// Fail, naming where the value was.
  Fail,
  /// Write their `tostring`, for showing a value to a person.
  Describe,
}

/// Why a Lua value could not become JSON, and where in it.
#[derive(Debug)]
pub(super) struct ConvertError {
  path: Vec<String>,
  message: String,
}

impl ConvertError {
  fn new(message: impl Into<String>) -> Self {
    Self {
      path: Vec::new(),
      message: message.into(),
    }
  }

  fn at(mut self, step: String) -> Self {
    self.path.push(step);
    self
  }

  /// The message, with the path below `root` (`outputs.items[2]`) when there is one.
  pub(super) fn describe(&self, root: &str) -> String {
    if self.path.is_empty() {
      return self.message.clone();
    }
    let mut path = root.to_string();
    for step in self.path.iter().rev() {
      path.push_str(step);
    }
    format!("`{path}`: {}", self.message)
  }
}

/// Lua to JSON.
pub(super) fn to_json(
  lua: &Lua,
  value: &LuaValue,
  unsupported: Unsupported,
) -> Result<Json, ConvertError> {
  let arrays = array_metatable(lua).map_err(|e| ConvertError::new(e.to_string()))?;
  to_json_at(lua, &arrays, value, unsupported, 0)
}

fn to_json_at(
  lua: &Lua,
  arrays: &Table,
  value: &LuaValue,
  unsupported: Unsupported,
  depth: usize,
) -> Result<Json, ConvertError> {
  if depth > MAX_DEPTH {
    return Err(ConvertError::new(format!(
      "nested more than {MAX_DEPTH} levels deep (a table that contains itself?)"
    )));
  }
  match value {
    LuaValue::Nil => Ok(Json::Null),
    LuaValue::LightUserData(data) if data.0.is_null() => Ok(Json::Null),
    LuaValue::Boolean(b) => Ok(Json::Bool(*b)),
    LuaValue::Integer(i) => Ok(Json::from(*i)),
    LuaValue::Number(n) => number(*n),
    LuaValue::String(s) => Ok(Json::String(s.to_string_lossy())),
    LuaValue::Table(table) => table_to_json(lua, arrays, table, unsupported, depth),
    other => match unsupported {
      Unsupported::Describe => Ok(Json::String(display(lua, other))),
      Unsupported::Fail => Err(ConvertError::new(format!(
        "a {} cannot be converted to JSON",
        other.type_name()
      ))),
    },
  }
}

/// A float as JSON; whole numbers become integers, as `n / 2` gives a float in Lua 5.4 and
/// `3.0` would read oddly in outputs.
#[expect(
  clippy::cast_possible_truncation,
  reason = "a whole number below 2^53, checked just before"
)]
fn number(n: f64) -> Result<Json, ConvertError> {
  const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
  if n.fract() == 0.0 && n.abs() < EXACT {
    return Ok(Json::from(n as i64));
  }
  serde_json::Number::from_f64(n)
    .map(Json::Number)
    .ok_or_else(|| ConvertError::new(format!("{n} cannot be represented in JSON")))
}

fn table_to_json(
  lua: &Lua,
  arrays: &Table,
  table: &Table,
  unsupported: Unsupported,
  depth: usize,
) -> Result<Json, ConvertError> {
  let mut pairs = Vec::new();
  for pair in table.pairs::<LuaValue, LuaValue>() {
    pairs.push(pair.map_err(|e| ConvertError::new(e.to_string()))?);
  }
  let marked = table
    .metatable()
    .is_some_and(|m| m.to_pointer() == arrays.to_pointer());
  if pairs.is_empty() {
    return Ok(if marked {
      Json::Array(Vec::new())
    } else {
      Json::Object(serde_json::Map::new())
    });
  }
  let len = table.raw_len();
  let is_sequence = pairs.len() == len
    && pairs.iter().all(|(key, _)| {
      matches!(key, LuaValue::Integer(i) if *i >= 1 && usize::try_from(*i).is_ok_and(|i| i <= len))
    });
  if is_sequence {
    let mut items = vec![Json::Null; len];
    for (key, item) in &pairs {
      if let LuaValue::Integer(i) = key {
        let index = usize::try_from(*i - 1).unwrap_or(0);
        items[index] = to_json_at(lua, arrays, item, unsupported, depth + 1)
          .map_err(|e| e.at(format!("[{i}]")))?;
      }
    }
    return Ok(Json::Array(items));
  }
  let mut entries = Vec::with_capacity(pairs.len());
  for (key, item) in &pairs {
    let key = match key {
      LuaValue::String(s) => s.to_string_lossy(),
      LuaValue::Integer(i) => i.to_string(),
      LuaValue::Number(n) => match number(*n) {
        Ok(n) => n.to_string(),
        Err(e) => return Err(e),
      },
      other => {
        return Err(ConvertError::new(format!(
          "a table with a {} key cannot be converted to JSON (keys must be strings or numbers)",
          other.type_name()
        )));
      }
    };
    let item = to_json_at(lua, arrays, item, unsupported, depth + 1).map_err(|e| {
      let step = if is_identifier(&key) {
        format!(".{key}")
      } else {
        format!("[{key:?}]")
      };
      e.at(step)
    })?;
    entries.push((key, item));
  }
  entries.sort_by(|a, b| a.0.cmp(&b.0));
  if let Some(pair) = entries.windows(2).find(|pair| pair[0].0 == pair[1].0) {
    return Err(ConvertError::new(format!(
      "the table has both a number and a string key `{}`",
      pair[0].0
    )));
  }
  Ok(Json::Object(entries.into_iter().collect()))
}

fn is_identifier(key: &str) -> bool {
  let mut chars = key.chars();
  chars
    .next()
    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What `tostring` gives, as Lua would print it.
pub(super) fn display(lua: &Lua, value: &LuaValue) -> String {
  match value {
    LuaValue::String(s) => s.to_string_lossy(),
    // Lua's own formatting (`%.14g`, `1.0` for whole floats), not Rust's.
    LuaValue::Number(_) => lua
      .coerce_string(value.clone())
      .ok()
      .flatten()
      .map_or_else(|| "nan".into(), |s| s.to_string_lossy()),
    other => other
      .to_string()
      .unwrap_or_else(|_| other.type_name().into()),
  }
}

/// The arguments of `print(...)` or `ctx.log(...)` as one line.
pub(super) fn join(lua: &Lua, values: &[LuaValue], separator: &str) -> String {
  values
    .iter()
    .map(|value| display(lua, value))
    .collect::<Vec<_>>()
    .join(separator)
}

/// The JSON kind of a value, for messages: `string`, `integer`, `array`...
pub(super) use crate::workflow::json_kind as kind_of;

/// A type a skill declares for an input or output: the same types as output contracts.
pub(super) use crate::workflow::ValueType as Kind;

/// One declared input or output: `text = "string"`, or `"string?"` when it may be absent.
#[derive(Debug, Clone)]
pub(super) struct Decl {
  pub(super) name: String,
  pub(super) kind: Kind,
  pub(super) optional: bool,
  /// The type as written, for [`SkillInfo`].
  pub(super) written: String,
}

impl Decl {
  /// Reads a declaration table; `what` is `inputs` or `outputs`, for messages.
  pub(super) fn parse_all(value: LuaValue, what: &str) -> Result<Vec<Self>, String> {
    let table = match value {
      LuaValue::Nil => return Ok(Vec::new()),
      LuaValue::Table(table) => table,
      other => {
        return Err(format!(
          "`{what}` must be a table like {{ text = \"string\" }}, got a {}",
          other.type_name()
        ));
      }
    };
    let mut decls = Vec::new();
    for pair in table.pairs::<LuaValue, LuaValue>() {
      let (name, written) = pair.map_err(|e| e.to_string())?;
      let LuaValue::String(name) = name else {
        return Err(format!(
          "`{what}` must map names to types, like {{ text = \"string\" }}; found a {} key",
          name.type_name()
        ));
      };
      let name = name.to_string_lossy();
      let LuaValue::String(written) = written else {
        return Err(format!(
          "`{what}.{name}` must be a type name such as \"string\", got a {}",
          written.type_name()
        ));
      };
      let written = written.to_string_lossy();
      let (base, optional) = match written.strip_suffix('?') {
        Some(base) => (base, true),
        None => (written.as_str(), false),
      };
      let Some(kind) = Kind::from_name(base) else {
        let hint = crate::suggest::hint(base, Kind::NAMES.iter().copied());
        return Err(format!(
          "`{what}.{name}` has unknown type `{written}`{hint}: use {}, with `?` for optional",
          Kind::NAMES.join(", ")
        ));
      };
      decls.push(Self {
        name,
        kind,
        optional,
        written,
      });
    }
    decls.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(decls)
  }

  /// Checks `value` (absent or `null` when missing) against the declaration; `what` is
  /// `input` or `output`.
  pub(super) fn check(&self, value: Option<&Json>, what: &str) -> Result<(), String> {
    match value.filter(|v| !v.is_null()) {
      None if self.optional => Ok(()),
      None => Err(format!(
        "{what} `{}` is missing (declared as {})",
        self.name,
        self.kind.name()
      )),
      Some(value) if self.kind.accepts(value) => Ok(()),
      Some(value) => Err(format!(
        "{what} `{}` must be {} {}, got {} {}",
        self.name,
        article(self.kind.name()),
        self.kind.name(),
        article(kind_of(value)),
        preview(value)
      )),
    }
  }
}

fn article(word: &str) -> &'static str {
  if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
    "an"
  } else {
    "a"
  }
}

/// `integer 3`, `string "abc"`, `object {...}`: a value shown briefly.
fn preview(value: &Json) -> String {
  let text = value.to_string();
  let text = if text.chars().count() > 60 {
    format!("{}...", text.chars().take(57).collect::<String>())
  } else {
    text
  };
  format!("{} {text}", kind_of(value))
}

/// A Lua error as a message: the Lua file and line first, then the traceback.
pub(super) fn describe(error: &mlua::Error) -> String {
  match error {
    mlua::Error::SyntaxError { message, .. } => message.clone(),
    mlua::Error::MemoryError(_) => "not enough memory".into(),
    mlua::Error::RuntimeError(text) => {
      let (message, traceback) = split_traceback(text);
      tidy(message, traceback)
    }
    mlua::Error::CallbackError { traceback, cause } => {
      // The innermost traceback is the one closest to where things went wrong.
      let (mut cause, mut traceback) = (cause, traceback);
      while let mlua::Error::CallbackError {
        cause: inner,
        traceback: inner_traceback,
      } = &**cause
      {
        cause = inner;
        traceback = inner_traceback;
      }
      let message = describe(cause);
      if message.contains(TRACEBACK) {
        message
      } else {
        tidy(&message, Some(traceback))
      }
    }
    mlua::Error::WithContext { context, cause } => format!("{context}: {}", describe(cause)),
    other => other.to_string(),
  }
}

const TRACEBACK: &str = "stack traceback:";

/// The message and the traceback mlua appended to it.
fn split_traceback(text: &str) -> (&str, Option<&str>) {
  match text.find(&format!("\n{TRACEBACK}")) {
    Some(at) => (&text[..at], Some(&text[at + 1..])),
    None => (text, None),
  }
}

/// Puts the user's file and line in front of a message that lacks them (errors raised by Rust
/// functions, `error(x, 0)`), instead of mlua's internal chunk, and drops mlua's own frames.
fn tidy(message: &str, traceback: Option<&str>) -> String {
  let message = match message.split_once(": ") {
    Some((place, rest)) if place.starts_with("__mlua") => rest,
    _ => message,
  };
  let traceback = traceback.map(|traceback| {
    traceback
      .lines()
      .filter(|line| !line.contains("__mlua"))
      .collect::<Vec<_>>()
      .join("\n")
  });
  let has_place = message
    .split_once(": ")
    .is_some_and(|(place, _)| is_user_place(place));
  let message = match traceback.as_deref().and_then(location) {
    Some(at) if !has_place => format!("{at}: {message}"),
    _ => message.to_string(),
  };
  match traceback {
    Some(traceback) => format!("{message}\n{traceback}"),
    None => message,
  }
}

/// `skills/foo.lua:12`, not `[C]` or mlua's and swdl's own chunks.
fn is_user_place(place: &str) -> bool {
  let Some((file, line)) = place.rsplit_once(':') else {
    return false;
  };
  let internal = file.is_empty() || file.starts_with('[') || file.starts_with("__mlua");
  !internal && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
}

/// Whether the error is Lua running out of memory.
pub(super) fn is_memory_error(error: &mlua::Error) -> bool {
  match error {
    mlua::Error::MemoryError(_) => true,
    mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } => {
      is_memory_error(cause)
    }
    mlua::Error::RuntimeError(message) => message.starts_with("not enough memory"),
    _ => false,
  }
}

/// `skills/foo.lua:12`: the first frame of a traceback that is user code.
pub(super) fn location(traceback: &str) -> Option<String> {
  traceback.lines().find_map(|line| {
    let (place, _) = line.trim().split_once(": ")?;
    is_user_place(place).then(|| place.to_string())
  })
}
