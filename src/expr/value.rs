use {super::*, std::fmt::Write as _};

/// A value an expression produces or reads from a context.
///
/// Arrays and objects sit behind an `Arc` so clones are cheap and so `==` can tell whether two
/// of them are the same instance, which is what GitHub's `==` checks for them.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
  /// `null`.
  #[default]
  Null,
  /// `true` or `false`.
  Bool(bool),
  /// A number; every number is a double, as in GitHub Actions.
  Number(f64),
  /// A string.
  String(Arc<str>),
  /// An array.
  Array(Arc<Vec<Value>>),
  /// An object whose keys keep their insertion order.
  Object(Arc<IndexMap<String, Value>>),
}

impl Value {
  /// Whether the value counts as true (`false 0 -0 "" null NaN` do not).
  pub fn is_truthy(&self) -> bool {
    match self {
      Self::Null => false,
      Self::Bool(b) => *b,
      Self::Number(n) => !(*n == 0.0 || n.is_nan()),
      Self::String(s) => !s.is_empty(),
      Self::Array(_) | Self::Object(_) => true,
    }
  }

  /// GitHub's conversion to text: `''` for null, at most 15 significant digits for numbers,
  /// `Array` / `Object` for collections.
  pub fn to_text(&self) -> String {
    self.text().into_owned()
  }

  /// Like [`Value::to_text`] but borrows strings instead of copying them.
  pub(super) fn text(&self) -> Cow<'_, str> {
    match self {
      Self::Null => Cow::Borrowed(""),
      Self::Bool(true) => Cow::Borrowed("true"),
      Self::Bool(false) => Cow::Borrowed("false"),
      Self::Number(n) => Cow::Owned(number_to_text(*n)),
      Self::String(s) => Cow::Borrowed(s),
      Self::Array(_) => Cow::Borrowed("Array"),
      Self::Object(_) => Cow::Borrowed("Object"),
    }
  }

  /// The value as JSON; non-finite numbers become `null` because JSON cannot hold them.
  pub fn to_json(&self) -> serde_json::Value {
    match self {
      Self::Null => serde_json::Value::Null,
      Self::Bool(b) => serde_json::Value::Bool(*b),
      Self::Number(n) => json_number(*n),
      Self::String(s) => serde_json::Value::String(s.to_string()),
      Self::Array(items) => serde_json::Value::Array(items.iter().map(Self::to_json).collect()),
      Self::Object(map) => {
        serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
      }
    }
  }

  /// JSON text as `toJSON` writes it (`pretty`: 2-space indent) or compact; keys keep their
  /// order and non-finite numbers print as bare `NaN`, `Infinity`, `-Infinity`.
  pub fn to_json_text(&self, pretty: bool) -> String {
    let mut out = String::new();
    write_json(&mut out, self, pretty.then_some(0));
    out
  }

  /// The length of [`Value::to_json_text`]'s result, found without building it, so a budget
  /// can refuse a large text before it exists.
  pub(super) fn json_len(&self, pretty: bool) -> usize {
    json_len(self, pretty.then_some(0))
  }

  /// Reads property `key` of an object, ignoring case; `Null` when missing or not an object.
  #[must_use]
  pub fn get(&self, key: &str) -> Value {
    self.get_ref(key).cloned().unwrap_or(Value::Null)
  }

  /// The property `key` of an object, ignoring case, without cloning it.
  pub(super) fn get_ref(&self, key: &str) -> Option<&Value> {
    match self {
      Self::Object(map) => object_get(map, key),
      _ => None,
    }
  }

  /// The kind as a word: `null`, `boolean`, `number`, `string`, `array` or `object`.
  pub fn kind_name(&self) -> &'static str {
    match self {
      Self::Null => "null",
      Self::Bool(_) => "boolean",
      Self::Number(_) => "number",
      Self::String(_) => "string",
      Self::Array(_) => "array",
      Self::Object(_) => "object",
    }
  }

  /// Whether the value is null, a boolean, a number or a string.
  pub fn is_primitive(&self) -> bool {
    !matches!(self, Self::Array(_) | Self::Object(_))
  }

  /// The string inside, if this is a string.
  pub fn as_str(&self) -> Option<&str> {
    match self {
      Self::String(s) => Some(s),
      _ => None,
    }
  }

  /// GitHub's conversion to a number: null 0, booleans 1/0, strings parsed, collections NaN.
  pub fn to_number(&self) -> f64 {
    match self {
      Self::Null => 0.0,
      Self::Bool(b) => f64::from(u8::from(*b)),
      Self::Number(n) => *n,
      Self::String(s) => number_from_text(s),
      Self::Array(_) | Self::Object(_) => f64::NAN,
    }
  }

  /// GitHub's loose `==`.
  pub(super) fn loose_eq(&self, other: &Value) -> bool {
    match coerce(self, other) {
      Some((Coerced::Null, Coerced::Null)) => true,
      Some((Coerced::Bool(a), Coerced::Bool(b))) => a == b,
      // NaN is never equal, which `==` on f64 already gives.
      Some((Coerced::Number(a), Coerced::Number(b))) => a == b,
      Some((Coerced::Str(a), Coerced::Str(b))) => eq_ignore_case(a, b),
      Some((Coerced::Array(a), Coerced::Array(b))) => Arc::ptr_eq(a, b),
      Some((Coerced::Object(a), Coerced::Object(b))) => Arc::ptr_eq(a, b),
      _ => false,
    }
  }

  /// GitHub's loose `<`: false whenever the kinds still differ after coercion, or for NaN,
  /// null, arrays and objects.
  pub(super) fn loose_lt(&self, other: &Value) -> bool {
    match coerce(self, other) {
      Some((Coerced::Bool(a), Coerced::Bool(b))) => !a && b,
      Some((Coerced::Number(a), Coerced::Number(b))) => a < b,
      Some((Coerced::Str(a), Coerced::Str(b))) => cmp_ignore_case(a, b) == Ordering::Less,
      _ => false,
    }
  }

  /// GitHub's loose `>`.
  pub(super) fn loose_gt(&self, other: &Value) -> bool {
    other.loose_lt(self)
  }
}

impl fmt::Display for Value {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str(&self.text())
  }
}

impl From<&serde_json::Value> for Value {
  fn from(json: &serde_json::Value) -> Self {
    match json {
      serde_json::Value::Null => Self::Null,
      serde_json::Value::Bool(b) => Self::Bool(*b),
      serde_json::Value::Number(n) => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
      serde_json::Value::String(s) => Self::String(Arc::from(s.as_str())),
      serde_json::Value::Array(items) => {
        Self::Array(Arc::new(items.iter().map(Self::from).collect()))
      }
      serde_json::Value::Object(map) => Self::Object(Arc::new(
        map
          .iter()
          .map(|(k, v)| (k.clone(), Self::from(v)))
          .collect(),
      )),
    }
  }
}

impl From<serde_json::Value> for Value {
  fn from(json: serde_json::Value) -> Self {
    Self::from(&json)
  }
}

impl From<bool> for Value {
  fn from(b: bool) -> Self {
    Self::Bool(b)
  }
}

impl From<f64> for Value {
  fn from(n: f64) -> Self {
    Self::Number(n)
  }
}

impl From<&str> for Value {
  fn from(s: &str) -> Self {
    Self::String(Arc::from(s))
  }
}

impl From<String> for Value {
  fn from(s: String) -> Self {
    Self::String(Arc::from(s))
  }
}

impl From<Vec<Value>> for Value {
  fn from(items: Vec<Value>) -> Self {
    Self::Array(Arc::new(items))
  }
}

impl From<IndexMap<String, Value>> for Value {
  fn from(map: IndexMap<String, Value>) -> Self {
    Self::Object(Arc::new(map))
  }
}

impl serde::Serialize for Value {
  fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::{SerializeMap, SerializeSeq};
    match self {
      Self::Null => serializer.serialize_unit(),
      Self::Bool(b) => serializer.serialize_bool(*b),
      Self::Number(n) => json_number(*n).serialize(serializer),
      Self::String(s) => serializer.serialize_str(s),
      Self::Array(items) => {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items.iter() {
          seq.serialize_element(item)?;
        }
        seq.end()
      }
      Self::Object(entries) => {
        let mut map = serializer.serialize_map(Some(entries.len()))?;
        for (k, v) in entries.iter() {
          map.serialize_entry(k, v)?;
        }
        map.end()
      }
    }
  }
}

impl<'de> serde::Deserialize<'de> for Value {
  fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Self::from)
  }
}

/// Both sides of a comparison after GitHub's coercion, when they ended up of the same kind.
enum Coerced<'a> {
  Null,
  Bool(bool),
  Number(f64),
  Str(&'a str),
  Array(&'a Arc<Vec<Value>>),
  Object(&'a Arc<IndexMap<String, Value>>),
}

impl<'a> Coerced<'a> {
  fn of(value: &'a Value) -> Self {
    match value {
      Value::Null => Self::Null,
      Value::Bool(b) => Self::Bool(*b),
      Value::Number(n) => Self::Number(*n),
      Value::String(s) => Self::Str(s),
      Value::Array(a) => Self::Array(a),
      Value::Object(o) => Self::Object(o),
    }
  }

  fn to_number(&self) -> f64 {
    match self {
      Self::Null => 0.0,
      Self::Bool(b) => f64::from(u8::from(*b)),
      Self::Number(n) => *n,
      Self::Str(s) => number_from_text(s),
      Self::Array(_) | Self::Object(_) => f64::NAN,
    }
  }

  fn same_kind(&self, other: &Self) -> bool {
    std::mem::discriminant(self) == std::mem::discriminant(other)
  }
}

/// GitHub's `CoerceTypes`: number vs string parses the string; a boolean or null on either side
/// becomes a number and coercion runs again. `None` when the kinds still differ.
fn coerce<'a>(left: &'a Value, right: &'a Value) -> Option<(Coerced<'a>, Coerced<'a>)> {
  let (mut l, mut r) = (Coerced::of(left), Coerced::of(right));
  // At most three rounds: each one turns a boolean or null into a number.
  for _ in 0..3 {
    if l.same_kind(&r) {
      return Some((l, r));
    }
    #[expect(
      clippy::match_same_arms,
      reason = "the arms' order is GitHub's order of coercion"
    )]
    match (&l, &r) {
      (Coerced::Number(_), Coerced::Str(_)) => r = Coerced::Number(r.to_number()),
      (Coerced::Str(_), Coerced::Number(_)) | (Coerced::Bool(_) | Coerced::Null, _) => {
        l = Coerced::Number(l.to_number());
      }
      (_, Coerced::Bool(_) | Coerced::Null) => r = Coerced::Number(r.to_number()),
      _ => return None,
    }
  }
  l.same_kind(&r).then_some((l, r))
}

/// Looks `key` up in an object: the exact key first, then ignoring case.
pub(super) fn object_get<'a>(map: &'a IndexMap<String, Value>, key: &str) -> Option<&'a Value> {
  // For the small objects contexts are made of, one scan is cheaper than hashing the key.
  if map.len() <= 8 {
    let mut folded = None;
    for (k, v) in map {
      if k == key {
        return Some(v);
      }
      if folded.is_none() && eq_ignore_case(k, key) {
        folded = Some(v);
      }
    }
    return folded;
  }
  map.get(key).or_else(|| {
    map
      .iter()
      .find(|(k, _)| eq_ignore_case(k, key))
      .map(|(_, v)| v)
  })
}

/// The simple upper-case mapping .NET's `OrdinalIgnoreCase` uses: one char to one char, and
/// never from outside ASCII into it (`ı` and `ſ` stay themselves, so `'ı' == 'I'` is false,
/// as in GitHub).
fn fold(c: char) -> char {
  if c.is_ascii() {
    return c.to_ascii_uppercase();
  }
  let mut upper = c.to_uppercase();
  match (upper.next(), upper.next()) {
    (Some(u), None) if !u.is_ascii() => u,
    _ => c,
  }
}

/// Case-insensitive string equality, without allocating.
pub(super) fn eq_ignore_case(a: &str, b: &str) -> bool {
  if a.eq_ignore_ascii_case(b) {
    return true;
  }
  if a.is_ascii() && b.is_ascii() {
    return false;
  }
  a.chars().map(fold).eq(b.chars().map(fold))
}

/// Case-insensitive ordering (upper-case folding, as `OrdinalIgnoreCase` compares).
pub(super) fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
  a.chars().map(fold).cmp(b.chars().map(fold))
}

/// Whether `haystack` starts with `needle`, ignoring case.
pub(super) fn starts_with_ignore_case(haystack: &str, needle: &str) -> bool {
  let mut h = haystack.chars().map(fold);
  needle.chars().map(fold).all(|n| h.next() == Some(n))
}

/// Whether `haystack` ends with `needle`, ignoring case.
pub(super) fn ends_with_ignore_case(haystack: &str, needle: &str) -> bool {
  let mut h = haystack.chars().rev().map(fold);
  needle.chars().rev().map(fold).all(|n| h.next() == Some(n))
}

/// Whether `haystack` contains `needle`, ignoring case.
pub(super) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
  if haystack.is_ascii() && needle.is_ascii() {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
  }
  haystack
    .char_indices()
    .map(|(i, _)| &haystack[i..])
    .chain(std::iter::once(""))
    .any(|rest| starts_with_ignore_case(rest, needle))
}

/// GitHub's number-to-text conversion (.NET `G15`): 15 significant digits, no trailing zeros,
/// `-0` as `0`, exponent form from 1e15 up and below 1e-4, written as GitHub writes it: a
/// capital `E`, a sign and at least two digits (`1E+20`, `1E-07`).
pub(super) fn number_to_text(n: f64) -> String {
  if n.is_nan() {
    return "NaN".to_owned();
  }
  if n.is_infinite() {
    return if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
  }
  if n == 0.0 {
    return "0".to_owned();
  }
  // Integers below 1e15 have at most 15 digits and print exactly.
  if n.fract() == 0.0 && n.abs() < 1e15 {
    #[allow(clippy::cast_possible_truncation)]
    return (n as i64).to_string();
  }
  // `{:.14e}` rounds to 15 significant digits: `-1.23450000000000e3`.
  let scientific = format!("{n:.14e}");
  let Some((mantissa, exponent)) = scientific.split_once('e') else {
    return scientific;
  };
  let Ok(exponent) = exponent.parse::<i32>() else {
    return scientific;
  };
  let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
  let digits = digits.trim_end_matches('0');
  let mut out = String::with_capacity(24);
  if n < 0.0 {
    out.push('-');
  }
  if !(-5 < exponent && exponent < 15) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
      out.push('.');
      out.push_str(&digits[1..]);
    }
    out.push('E');
    out.push(if exponent < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exponent.unsigned_abs()));
  } else if exponent >= 0 {
    let int_len = exponent.unsigned_abs() as usize + 1;
    if digits.len() <= int_len {
      out.push_str(digits);
      out.extend(std::iter::repeat_n('0', int_len - digits.len()));
    } else {
      out.push_str(&digits[..int_len]);
      out.push('.');
      out.push_str(&digits[int_len..]);
    }
  } else {
    out.push_str("0.");
    out.extend(std::iter::repeat_n(
      '0',
      exponent.unsigned_abs() as usize - 1,
    ));
    out.push_str(digits);
  }
  out
}

/// GitHub's text-to-number conversion (JavaScript's `Number()` with .NET details): trimmed,
/// empty is 0, decimal with optional sign, point and exponent, `0x` hex and `0o` octal read as
/// 32-bit integers, `Infinity` / `-Infinity`; anything else is NaN.
pub(super) fn number_from_text(text: &str) -> f64 {
  let text = text.trim();
  if text.is_empty() {
    return 0.0;
  }
  if is_decimal(text) {
    return text.parse().unwrap_or(f64::NAN);
  }
  if let Some(hex) = text.strip_prefix("0x") {
    return radix_i32(hex, 16);
  }
  if let Some(octal) = text.strip_prefix("0o") {
    return radix_i32(octal, 8);
  }
  match text {
    "Infinity" | "+Infinity" => f64::INFINITY,
    "-Infinity" => f64::NEG_INFINITY,
    _ => f64::NAN,
  }
}

/// `[+-]? digits* (. digits*)? ([eE] [+-]? digits+)?` with at least one mantissa digit, the
/// shape .NET's `Double.TryParse` accepts with the styles GitHub passes.
fn is_decimal(text: &str) -> bool {
  let bytes = text.as_bytes();
  let mut i = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
  let digits = |i: &mut usize| {
    let start = *i;
    while bytes.get(*i).is_some_and(u8::is_ascii_digit) {
      *i += 1;
    }
    *i - start
  };
  let mut mantissa = digits(&mut i);
  if bytes.get(i) == Some(&b'.') {
    i += 1;
    mantissa += digits(&mut i);
  }
  if mantissa == 0 {
    return false;
  }
  if matches!(bytes.get(i), Some(b'e' | b'E')) {
    i += 1;
    if matches!(bytes.get(i), Some(b'+' | b'-')) {
      i += 1;
    }
    if digits(&mut i) == 0 {
      return false;
    }
  }
  i == bytes.len()
}

/// Hex or octal digits as .NET's `Int32` parsing reads them: up to 32 bits, two's complement.
fn radix_i32(digits: &str, radix: u32) -> f64 {
  if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
    return f64::NAN;
  }
  match u32::from_str_radix(digits, radix) {
    #[allow(clippy::cast_possible_wrap)]
    Ok(n) => f64::from(n as i32),
    Err(_) => f64::NAN,
  }
}

/// A JSON number; integral values print without a fraction.
fn json_number(n: f64) -> serde_json::Value {
  // 2^53: every integer below it is exact in an f64 and in an i64.
  if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
    #[allow(clippy::cast_possible_truncation)]
    return serde_json::Value::from(n as i64);
  }
  serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
}

/// Writes `value` as JSON; `indent` is the current level when pretty-printing.
fn write_json(out: &mut String, value: &Value, indent: Option<usize>) {
  let newline = |out: &mut String, level: usize| {
    out.push('\n');
    out.extend(std::iter::repeat_n(' ', level * 2));
  };
  match value {
    Value::Null => out.push_str("null"),
    Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
    Value::Number(n) => out.push_str(&number_to_text(*n)),
    Value::String(s) => write_json_string(out, s),
    Value::Array(items) if items.is_empty() => out.push_str("[]"),
    Value::Object(map) if map.is_empty() => out.push_str("{}"),
    Value::Array(items) => {
      out.push('[');
      for (i, item) in items.iter().enumerate() {
        if i > 0 {
          out.push(',');
        }
        if let Some(level) = indent {
          newline(out, level + 1);
        }
        write_json(out, item, indent.map(|level| level + 1));
      }
      if let Some(level) = indent {
        newline(out, level);
      }
      out.push(']');
    }
    Value::Object(map) => {
      out.push('{');
      for (i, (key, item)) in map.iter().enumerate() {
        if i > 0 {
          out.push(',');
        }
        if let Some(level) = indent {
          newline(out, level + 1);
        }
        write_json_string(out, key);
        out.push_str(if indent.is_some() { ": " } else { ":" });
        write_json(out, item, indent.map(|level| level + 1));
      }
      if let Some(level) = indent {
        newline(out, level);
      }
      out.push('}');
    }
  }
}

/// A JSON string literal, escaped as Newtonsoft's `JsonConvert.ToString` does.
/// What [`write_json`] would write, in bytes.
fn json_len(value: &Value, indent: Option<usize>) -> usize {
  let newline = |level: usize| 1 + level * 2;
  match value {
    Value::Null => 4,
    Value::Bool(b) => {
      if *b {
        4
      } else {
        5
      }
    }
    Value::Number(n) => number_to_text(*n).len(),
    Value::String(s) => json_string_len(s),
    Value::Array(items) if items.is_empty() => 2,
    Value::Object(map) if map.is_empty() => 2,
    Value::Array(items) => {
      let inner = indent.map(|level| level + 1);
      let items: usize = items
        .iter()
        .map(|item| inner.map_or(0, newline) + json_len(item, inner))
        .sum();
      2 + items + value_count(value).saturating_sub(1) + indent.map_or(0, newline)
    }
    Value::Object(map) => {
      let inner = indent.map(|level| level + 1);
      let colon = if indent.is_some() { 2 } else { 1 };
      let entries: usize = map
        .iter()
        .map(|(key, item)| {
          inner.map_or(0, newline) + json_string_len(key) + colon + json_len(item, inner)
        })
        .sum();
      2 + entries + value_count(value).saturating_sub(1) + indent.map_or(0, newline)
    }
  }
}

fn value_count(value: &Value) -> usize {
  match value {
    Value::Array(items) => items.len(),
    Value::Object(map) => map.len(),
    _ => 0,
  }
}

/// What [`write_json_string`] would write, in bytes.
fn json_string_len(s: &str) -> usize {
  2 + s
    .chars()
    .map(|c| match c {
      '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
      c if c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => 6,
      c => c.len_utf8(),
    })
    .sum::<usize>()
}

fn write_json_string(out: &mut String, s: &str) {
  out.push('"');
  for c in s.chars() {
    match c {
      '"' => out.push_str("\\\""),
      '\\' => out.push_str("\\\\"),
      '\n' => out.push_str("\\n"),
      '\r' => out.push_str("\\r"),
      '\t' => out.push_str("\\t"),
      '\u{8}' => out.push_str("\\b"),
      '\u{c}' => out.push_str("\\f"),
      // Newtonsoft also escapes NEL and the Unicode line and paragraph separators.
      c if c < ' ' || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
        let _ = write!(out, "\\u{:04x}", u32::from(c));
      }
      c => out.push(c),
    }
  }
  out.push('"');
}

#[cfg(test)]
mod tests;
