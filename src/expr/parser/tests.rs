//! Tests of the expression parser: the grammar, positions and messages of every error.
use super::*;

/// 1-based column (in characters) of a byte offset.
fn column(text: &str, offset: usize) -> usize {
  text.get(..offset).map_or(0, |s| s.chars().count()) + 1
}

/// `input => printed form` for inputs that parse.
macro_rules! parses {
  ($($text:expr => $printed:expr),* $(,)?) => {$(
    match parse($text) {
      Ok(expr) => assert_eq!(expr.to_string(), $printed, "parsing {:?}", $text),
      Err(e) => panic!("{:?} should parse, got {e} at column {}", $text, column($text, e.span.offset)),
    }
  )*};
}

/// `input => message, column` for inputs that do not.
macro_rules! fails {
  ($($text:expr => $message:expr, $column:expr);* $(;)?) => {$(
    match parse($text) {
      Ok(expr) => panic!("{:?} should fail, parsed as {expr}", $text),
      Err(e) => assert_eq!(
        (e.to_string(), column($text, e.span.offset)),
        ($message.to_string(), $column),
        "parsing {:?}", $text
      ),
    }
  )*};
}

#[test]
fn literals() {
  parses! {
    "" => "null", "   " => "null", "null" => "null", "true" => "true", "false" => "false",
    "NaN" => "NaN", "Infinity" => "Infinity", "-Infinity" => "-Infinity", "+Infinity" => "Infinity",
    "1" => "1", "-1" => "-1", "+2" => "2", "1.5" => "1.5", ".5" => "0.5", "5." => "5",
    "1e3" => "1000", "1E-3" => "0.001", "2.5e+2" => "250", "0x1F" => "31", "0xff" => "255",
    "0o17" => "15", "1e20" => "1E+20", "-0" => "0",
    "'it''s'" => "'it''s'", "''" => "''", "'a\"b'" => "'a\"b'",
    r#""tab\there""# => "'tab\there'", r#""q\"\\\'\0""# => "'q\"\\''\0'",
    r#""\u{48}\u{1F600}""# => "'H\u{1F600}'", r#""""# => "''",
    "'multi\nline'" => "'multi\nline'",
  }
}

#[test]
fn names_properties_indexes_filters() {
  parses! {
    "parameters" => "parameters", "my-name_2" => "my-name_2", "_x" => "_x",
    "True" => "True", "nulls" => "nulls",
    "a.b.c" => "a.b.c", "a . b" => "a.b", "a.null" => "a.null", "a.b-c" => "a.b-c",
    "a['b']" => "a['b']", "a[0]" => "a[0]", "a[ 1 ][x.y]" => "a[1][x.y]",
    "a.*" => "a.*", "a[*]" => "a.*", "a.*.b" => "a.*.b", "a[*][0]" => "a.*[0]",
    "[1, 2][0]" => "[1, 2][0]", "fromJSON('{}').a" => "fromJSON('{}').a", "'s'.x" => "'s'.x",
  }
}

#[test]
fn calls() {
  parses! {
    "success()" => "success()", "SUCCESS( )" => "success()", "Always()" => "always()",
    "contains(a, 'b')" => "contains(a, 'b')", "fromjson(x)" => "fromJSON(x)",
    "TOJSON(x)" => "toJSON(x)", "startswith(a,b)" => "startsWith(a, b)",
    "join(a)" => "join(a)", "join(a, '-')" => "join(a, '-')",
    "format('{0}{1}', a, b, c, d)" => "format('{0}{1}', a, b, c, d)",
    "length([])" => "length([])", "contains (a, b)" => "contains(a, b)",
  }
}

#[test]
fn arrays_and_objects() {
  parses! {
    "[]" => "[]", "[1]" => "[1]", "[1, 'a', [true]]" => "[1, 'a', [true]]", "[1, 2,]" => "[1, 2]",
    "{}" => "{}", "{a: 1}" => "{a: 1}", "{'b c': 2, \"d\": x.y,}" => "{'b c': 2, d: x.y}",
    "{null: 1, true: 2}" => "{null: 1, true: 2}", "{a: {b: [1]}}" => "{a: {b: [1]}}",
  }
}

#[test]
fn precedence_and_associativity() {
  parses! {
    "a || b && c" => "(a || (b && c))",
    "a && b || c" => "((a && b) || c)",
    "a && b && c && d" => "(a && b && c && d)",
    "(a && b) && (c && d)" => "(a && b && c && d)",
    "a || b || c" => "(a || b || c)",
    "a == b && c != d" => "((a == b) && (c != d))",
    "a < b == c > d" => "((a < b) == (c > d))",
    "3 < 2 < 1" => "((3 < 2) < 1)",
    "a == b == c" => "((a == b) == c)",
    "!a == b" => "(!a == b)",
    "!a.b[0]" => "!a.b[0]",
    "!!a" => "!!a",
    "!(a == b)" => "!(a == b)",
    "a <= b >= c" => "((a <= b) >= c)",
    "a ? b : c" => "(a ? b : c)",
    "a ? b : c ? d : e" => "(a ? b : (c ? d : e))",
    "a ? b ? c : d : e" => "(a ? (b ? c : d) : e)",
    "a || b ? c && d : e" => "((a || b) ? (c && d) : e)",
    "x == 1?2:3" => "((x == 1) ? 2 : 3)",
    "c ? {a: 1} : [2]" => "(c ? {a: 1} : [2])",
    "stages.a.outputs.x == 'y' && parameters.n > 2" => "((stages.a.outputs.x == 'y') && (parameters.n > 2))",
  }
}

#[test]
fn syntax_errors() {
  fails! {
    "a ==" => "expected an expression, found end of expression", 5;
    "a b" => "expected an operator or end of expression, found `b`", 3;
    "a = b" => "expected an operator or end of expression, found `=`", 3;
    "(a" => "expected `)`, found end of expression", 3;
    "(a b)" => "expected `)`, found `b`", 4;
    ")" => "expected an expression, found `)`", 1;
    "a.1" => "expected a property name or `*`, found `1`", 3;
    "a." => "expected a property name or `*`, found end of expression", 3;
    "a[" => "expected an expression, found end of expression", 3;
    "a[0" => "expected `]`, found end of expression", 4;
    "a[*" => "expected `]`, found end of expression", 4;
    "[1 2]" => "expected `,` or `]`, found `2`", 4;
    "[1,,2]" => "expected an expression, found `,`", 4;
    "{a 1}" => "expected `:`, found `1`", 4;
    "{1: 2}" => "expected a key, found `1`", 2;
    "{a: 1, A: 2}" => "duplicate key `A` in object literal", 8;
    "contains(a b)" => "expected `,` or `)`, found `b`", 12;
    "contains(a,)" => "expected an expression, found `)`", 12;
    "a ? b" => "expected `:`, found end of expression", 6;
    "a ? : c" => "expected an expression, found `:`", 5;
    "#" => "expected an expression, found `#`", 1;
    "a && @" => "expected an expression, found `@`", 6;
    "a & b" => "expected an operator or end of expression, found `&`", 3;
    "!" => "expected an expression, found end of expression", 2;
    "a != " => "expected an expression, found end of expression", 6;
    "é" => "expected an expression, found `é`", 1;
    "x == é" => "expected an expression, found `é`", 6;
  }
}

#[test]
fn bad_tokens() {
  fails! {
    "1.2.3" => "invalid number `1.2.3`", 1;
    "12abc" => "invalid number `12abc`", 1;
    "1e" => "invalid number `1e`", 1;
    "0x" => "invalid number `0x`", 1;
    "0xZZ" => "invalid number `0xZZ`", 1;
    "-0x10" => "invalid number `-0x10`", 1;
    "a == 1.2-" => "expected an expression, found end of expression", 10;
    "1e-2x" => "invalid number `1e-2x`", 1;
    "'abc" => "unterminated string", 1;
    "x == 'it''s" => "unterminated string", 6;
    "\"abc" => "unterminated string", 1;
    "\"abc\\" => "unterminated string", 1;
    "\"abc\\\"" => "unterminated string", 1;
    r#"a == "\q""# => r#"invalid escape `\q` in string (valid: \n \t \r \\ \" \' \0 \u{XXXX})"#, 7;
    r#""\u{110000}""# => r#"invalid escape `\u{110000}` in string (valid: \n \t \r \\ \" \' \0 \u{XXXX})"#, 2;
    r#""\u{}""# => r#"invalid escape `\u{}` in string (valid: \n \t \r \\ \" \' \0 \u{XXXX})"#, 2;
    r#""\u0041""# => r#"invalid escape `\u` in string (valid: \n \t \r \\ \" \' \0 \u{XXXX})"#, 2;
    r#""\é""# => r#"invalid escape `\é` in string (valid: \n \t \r \\ \" \' \0 \u{XXXX})"#, 2;
  }
}

/// What every unknown-function message ends with.
const FUNCTION_LIST: &str = "the functions are contains, startsWith, endsWith, format, join, \
                             toJSON, fromJSON, case, length, success, failure, always, cancelled";

#[test]
fn unknown_functions_and_arity() {
  let unknown = |text: &str| format!("unknown function {text}: {FUNCTION_LIST}");
  fails! {
    "fromJson2(x)" => unknown("`fromJson2` (did you mean `fromJSON`?)"), 1;
    "a && lenght(x)" => unknown("`lenght` (did you mean `length`?)"), 6;
    "frobnicate(x)" => unknown("`frobnicate`"), 1;
    "parameters (x)" => unknown("`parameters`"), 1;
    "contains(a)" => "`contains` takes 2 arguments, got 1", 1;
    "x || contains(a, b, c)" => "`contains` takes 2 arguments, got 3", 6;
    "success(1)" => "`success` takes no arguments, got 1", 1;
    "join()" => "`join` takes 1 to 2 arguments, got 0", 1;
    "format()" => "`format` takes at least 1 argument, got 0", 1;
    "toJSON(a, b)" => "`toJSON` takes 1 argument, got 2", 1;
  }
}

#[test]
fn spans_cover_nodes() {
  let expr = parse("  a.b == 'x'  ");
  assert_eq!(expr.map(|e| e.span), Ok(Span::new(2, 10)));
  let arity = parse("x || contains(a, b, c)").map_err(|e| e.span);
  assert_eq!(arity, Err(Span::new(5, 17)));
  let unknown = parse("fromJson2(x)").map_err(|e| e.span);
  assert_eq!(unknown, Err(Span::new(0, 9)));
}

#[test]
fn depth_limit() {
  let nested =
    |open: &str, close: &str, n: usize| format!("{}x{}", open.repeat(n), close.repeat(n));
  // 49 wrappers around a leaf make 50 levels: allowed; one more is not.
  assert!(parse(&nested("[", "]", 49)).is_ok());
  assert_eq!(
    parse(&nested("[", "]", 50)).map_err(|e| e.kind),
    Err(ExprErrorKind::TooDeep)
  );
  assert!(parse(&nested("!", "", 49)).is_ok());
  assert!(parse(&nested("!", "", 50)).is_err());
  assert!(parse(&nested("length(", ")", 49)).is_ok());
  assert!(parse(&nested("length(", ")", 50)).is_err());
  // Long `&&` / `||` chains are flattened, as GitHub does, so they stay shallow.
  assert!(parse(&vec!["a"; 5000].join(" && ")).is_ok());
  assert!(parse(&vec!["a"; 5000].join(" || ")).is_ok());
  // Chains that really nest are bounded whatever their length.
  assert_eq!(
    parse(&format!("a{}", ".b".repeat(49))).map(|e| e.too_deep(1)),
    Ok(None)
  );
  for hostile in [
    nested("(", ")", 100_000),
    nested("[", "]", 100_000),
    nested("{a:", "}", 100_000),
    nested("!", "", 100_000),
    nested("x ? ", " : y", 100_000),
    format!("a{}", ".b".repeat(100_000)),
    format!("a{}", "[0]".repeat(100_000)),
    vec!["a"; 100_000].join(" == "),
    "(".repeat(100_000),
    "[".repeat(100_000),
  ] {
    let result = parse(&hostile);
    assert_eq!(
      result.map_err(|e| e.kind),
      Err(ExprErrorKind::TooDeep),
      "{}",
      &hostile[..20]
    );
  }
  fails! {
    &nested("(", ")", 51) => "expression nests more than 50 levels deep", 51;
  }
}

#[test]
fn arithmetic() {
  parses! {
    "1 + 2 * 3" => "(1 + (2 * 3))",
    "(1 + 2) * 3" => "((1 + 2) * 3)",
    "a - b - c" => "((a - b) - c)",
    "a / b % c" => "((a / b) % c)",
    "a + b < c * d" => "((a + b) < (c * d))",
    "a == b + 1 && c" => "((a == (b + 1)) && c)",
    "-a.b" => "-a.b",
    "-a * b" => "(-a * b)",
    "- 1" => "-1",
    "-(1)" => "-1",
    "--a" => "--a",
    "!-a" => "!-a",
    "-!a" => "-!a",
    "(-a).b" => "(-a).b",
    // After an operand `-` and `+` are binary, even before a digit.
    "a -1" => "(a - 1)",
    "2 -1" => "(2 - 1)",
    "a +1" => "(a + 1)",
    "1-2" => "(1 - 2)",
    "1e-3-1" => "(0.001 - 1)",
    // Between name characters `-` is part of the name.
    "a-b" => "a-b",
    "a-b - c" => "(a-b - c)",
    "stages.my-step.outputs.n * 2" => "(stages.my-step.outputs.n * 2)",
  }
  fails! {
    "1 / 0" => "division by zero in `1 / 0`", 1;
    "x + 4 % 0.0" => "division by zero in `4 % 0`", 5;
    "1 +" => "expected an expression, found end of expression", 4;
    "* 2" => "expected an expression, found `*`", 1;
    "-" => "expected an expression, found end of expression", 2;
  }
  // Long arithmetic chains are bounded like comparison chains.
  assert_eq!(
    parse(&vec!["a"; 100_000].join(" + ")).map_err(|e| e.kind),
    Err(ExprErrorKind::TooDeep)
  );
  assert!(parse(&vec!["a"; 40].join(" - ")).is_ok());
  assert_eq!(
    parse(&"-".repeat(100_000)).map_err(|e| e.kind),
    Err(ExprErrorKind::TooDeep)
  );
}
