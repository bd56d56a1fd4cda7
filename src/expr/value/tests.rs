//! Tests of the expression values: coercion, comparison, numbers as text.
use {super::*, serde_json::json};

macro_rules! text {
  ($($n:expr => $text:expr),* $(,)?) => {$(
    assert_eq!(number_to_text($n), $text, "number_to_text({})", $n);
  )*};
}

#[test]
fn json_len_is_the_length_of_the_json_text() {
  let value = Value::from(
    json!({"a": [1, 2.5, null, true, false, "q\"\\\n\u{1}é\u{2028}"], "": {}, "e": [], "o": {"k": [[]]}}),
  );
  for pretty in [false, true] {
    assert_eq!(
      value.json_len(pretty),
      value.to_json_text(pretty).len(),
      "pretty {pretty}"
    );
  }
}

#[test]
fn numbers_print_like_github() {
  text! {
    0.0 => "0", -0.0 => "0", 1.0 => "1", -1.0 => "-1", 1.5 => "1.5", 0.1 => "0.1",
    0.1 + 0.2 => "0.3", 0.300_000_000_000_000_04 => "0.3", 1.0 / 3.0 => "0.333333333333333",
    1.234_567_890_123_456_7 => "1.23456789012346", 123.456 => "123.456",
    999_999_999_999_999.0 => "999999999999999", 1e15 => "1E+15", 1e20 => "1E+20",
    123_456_789_012_345_680.0 => "1.23456789012346E+17", -1.5e300 => "-1.5E+300",
    0.0001 => "0.0001", 0.00001 => "1E-05", 1.5e-7 => "1.5E-07", 0.000_123 => "0.000123",
    999_999_999_999_999.9 => "1E+15", f64::NAN => "NaN", f64::INFINITY => "Infinity",
    f64::NEG_INFINITY => "-Infinity", 2_147_483_647.0 => "2147483647", 12.0e3 => "12000",
  }
}

#[track_caller]
fn number(text: &str, expected: f64) {
  let n = number_from_text(text);
  if expected.is_nan() {
    assert!(n.is_nan(), "{text:?} -> {n}, want NaN");
  } else {
    #[expect(
      clippy::float_cmp,
      reason = "parsing must give exactly the nearest double"
    )]
    {
      assert_eq!(n, expected, "{text:?}");
    }
  }
}

#[test]
fn strings_parse_as_numbers_like_github() {
  number("", 0.0);
  number("   ", 0.0);
  number(" 42 ", 42.0);
  number("-1.5", -1.5);
  number("+3", 3.0);
  number(".5", 0.5);
  number("5.", 5.0);
  number("1e3", 1000.0);
  number("1E-2", 0.01);
  number("1e+2", 100.0);
  number("0x1F", 31.0);
  number("0xff", 255.0);
  number("0xFFFFFFFF", -1.0);
  number("0x100000000", f64::NAN);
  number("0X1F", f64::NAN);
  number("0x", f64::NAN);
  number("-0x10", f64::NAN);
  number("0o17", 15.0);
  number("0o8", f64::NAN);
  number("Infinity", f64::INFINITY);
  number("-Infinity", f64::NEG_INFINITY);
  number("infinity", f64::NAN);
  number("inf", f64::NAN);
  number("NaN", f64::NAN);
  number("1e", f64::NAN);
  number(".", f64::NAN);
  number("1.2.3", f64::NAN);
  number("abc", f64::NAN);
  number("1_000", f64::NAN);
}

#[test]
fn truthiness() {
  let falsy = [json!(null), json!(false), json!(0), json!(-0.0), json!("")];
  for v in falsy {
    assert!(!Value::from(&v).is_truthy(), "{v}");
  }
  assert!(!Value::Number(f64::NAN).is_truthy());
  let truthy = [
    json!(true),
    json!(1),
    json!(-1),
    json!("0"),
    json!("false"),
    json!([]),
    json!({}),
  ];
  for v in truthy {
    assert!(Value::from(&v).is_truthy(), "{v}");
  }
}

#[test]
fn text_of_every_kind() {
  assert_eq!(Value::Null.to_text(), "");
  assert_eq!(Value::Bool(true).to_text(), "true");
  assert_eq!(Value::from("x").to_text(), "x");
  assert_eq!(Value::from(json!([1])).to_text(), "Array");
  assert_eq!(Value::from(json!({"a": 1})).to_text(), "Object");
}

#[test]
fn json_text_pretty_and_compact() {
  let v = Value::from(json!({"b": [1, 2.5, "x\"y"], "a": {}, "c": [], "d": {"e": null}}));
  assert_eq!(
    v.to_json_text(true),
    "{\n  \"b\": [\n    1,\n    2.5,\n    \"x\\\"y\"\n  ],\n  \"a\": {},\n  \"c\": [],\n  \"d\": {\n    \"e\": null\n  }\n}"
  );
  assert_eq!(
    v.to_json_text(false),
    r#"{"b":[1,2.5,"x\"y"],"a":{},"c":[],"d":{"e":null}}"#
  );
  assert_eq!(Value::Number(f64::NAN).to_json_text(true), "NaN");
  assert_eq!(
    Value::from(vec![Value::Number(f64::NEG_INFINITY)]).to_json_text(false),
    "[-Infinity]"
  );
  assert_eq!(
    Value::from("a\u{1}\n").to_json_text(false),
    r#""a\u0001\n""#
  );
}

#[test]
fn json_round_trip() {
  let j = json!({"n": 1, "f": 1.5, "s": "x", "a": [true, null], "o": {"k": "v"}});
  assert_eq!(Value::from(&j).to_json(), j);
  assert_eq!(Value::Number(f64::INFINITY).to_json(), json!(null));
  assert_eq!(serde_json::to_value(Value::from(&j)).ok(), Some(j.clone()));
  let back: Value = serde_json::from_value(j.clone()).unwrap_or_default();
  assert_eq!(back, Value::from(j));
}

#[test]
fn get_ignores_case() {
  let v = Value::from(json!({"Name": 1, "name2": 2}));
  assert_eq!(v.get("name"), Value::Number(1.0));
  assert_eq!(v.get("NAME2"), Value::Number(2.0));
  assert_eq!(v.get("missing"), Value::Null);
  assert_eq!(Value::from("s").get("x"), Value::Null);
  assert_eq!(v.kind_name(), "object");
}

#[test]
fn case_insensitive_helpers() {
  assert!(eq_ignore_case("ÄbC", "äBc"));
  assert!(contains_ignore_case("Hello World", "O W"));
  assert!(contains_ignore_case("ÄÖÜ", "öü"));
  assert!(contains_ignore_case("abc", ""));
  assert!(!contains_ignore_case("abc", "abcd"));
  assert!(starts_with_ignore_case("Straße", "STRA"));
  assert!(!ends_with_ignore_case("Straße", "ASSE"));
  assert!(ends_with_ignore_case("Straße", "ßE"));
  assert_eq!(cmp_ignore_case("a", "B"), Ordering::Less);
  // Upper-case folding puts letters before `_`, as .NET does.
  assert_eq!(cmp_ignore_case("a", "_"), Ordering::Less);
}
