use super::*;

/// A built-in function: canonical name, accepted argument counts and a line of help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionInfo {
  /// The canonical spelling; calls may use any case.
  pub name: &'static str,
  /// Fewest arguments accepted.
  pub min_args: usize,
  /// Most arguments accepted; `None` when there is no limit.
  pub max_args: Option<usize>,
  /// How a call looks, for help texts.
  pub signature: &'static str,
  /// What the function returns.
  pub summary: &'static str,
}

/// Every built-in function, for validation, help and completion.
pub const FUNCTIONS: &[FunctionInfo] = &[
  FunctionInfo {
    name: "contains",
    min_args: 2,
    max_args: Some(2),
    signature: "contains(search, item)",
    summary: "whether a string contains a substring, or an array an element (loose ==); ignores case",
  },
  FunctionInfo {
    name: "startsWith",
    min_args: 2,
    max_args: Some(2),
    signature: "startsWith(text, prefix)",
    summary: "whether text starts with prefix, ignoring case",
  },
  FunctionInfo {
    name: "endsWith",
    min_args: 2,
    max_args: Some(2),
    signature: "endsWith(text, suffix)",
    summary: "whether text ends with suffix, ignoring case",
  },
  FunctionInfo {
    name: "format",
    min_args: 1,
    max_args: None,
    signature: "format(text, value0, value1, ...)",
    summary: "text with {0}, {1}, ... replaced by the values; {{ and }} for literal braces",
  },
  FunctionInfo {
    name: "join",
    min_args: 1,
    max_args: Some(2),
    signature: "join(array, separator = ',')",
    summary: "the elements of an array as text, separated by separator",
  },
  FunctionInfo {
    name: "toJSON",
    min_args: 1,
    max_args: Some(1),
    signature: "toJSON(value)",
    summary: "the value as pretty-printed JSON",
  },
  FunctionInfo {
    name: "fromJSON",
    min_args: 1,
    max_args: Some(1),
    signature: "fromJSON(text)",
    summary: "the value a JSON text describes",
  },
  FunctionInfo {
    name: "case",
    min_args: 3,
    max_args: None,
    signature: "case(condition, value, ..., default)",
    summary: "the value after the first true condition, else the default (an odd number of arguments)",
  },
  FunctionInfo {
    name: "length",
    min_args: 1,
    max_args: Some(1),
    signature: "length(value)",
    summary: "characters of a string, elements of an array, entries of an object",
  },
  FunctionInfo {
    name: "success",
    min_args: 0,
    max_args: Some(0),
    signature: "success()",
    summary: "true when no ancestor stage failed, timed out or was cancelled",
  },
  FunctionInfo {
    name: "failure",
    min_args: 0,
    max_args: Some(0),
    signature: "failure()",
    summary: "true when some ancestor stage failed or timed out",
  },
  FunctionInfo {
    name: "always",
    min_args: 0,
    max_args: Some(0),
    signature: "always()",
    summary: "true",
  },
  FunctionInfo {
    name: "cancelled",
    min_args: 0,
    max_args: Some(0),
    signature: "cancelled()",
    summary: "true while the run is being cancelled",
  },
];

/// The built-in function called `name`, ignoring case.
pub fn function(name: &str) -> Option<&'static FunctionInfo> {
  FUNCTIONS.iter().find(|f| f.name.eq_ignore_ascii_case(name))
}

/// Calls function `name` (canonical spelling) on unevaluated `args`; `span` is the call's.
///
/// Arguments are evaluated only when needed, in GitHub's order, so an error in an argument the
/// function never looks at does not surface.
pub(super) fn call(
  name: &str,
  args: &[Expr],
  span: Span,
  ctx: &dyn Context,
) -> Result<Value, ExprError> {
  let arg = |i: usize| args.get(i).map_or(Ok(Value::Null), |a| eval(a, ctx));
  match name {
    "contains" => {
      let search = arg(0)?;
      let found = match &search {
        Value::Array(items) if !items.is_empty() => {
          let item = arg(1)?;
          items.iter().any(|element| item.loose_eq(element))
        }
        search if search.is_primitive() => {
          let item = arg(1)?;
          item.is_primitive() && contains_ignore_case(&search.text(), &item.text())
        }
        _ => false,
      };
      Ok(Value::Bool(found))
    }
    "startsWith" | "endsWith" => {
      let text = arg(0)?;
      if !text.is_primitive() {
        return Ok(Value::Bool(false));
      }
      let affix = arg(1)?;
      let test = if name == "startsWith" {
        starts_with_ignore_case
      } else {
        ends_with_ignore_case
      };
      Ok(Value::Bool(
        affix.is_primitive() && test(&text.text(), &affix.text()),
      ))
    }
    "format" => format(args, span, ctx),
    "join" => {
      let items = arg(0)?;
      let text = match &items {
        Value::Array(list) if !list.is_empty() => {
          let separator = if list.len() > 1 {
            match args.get(1) {
              Some(separator) => {
                let separator = eval(separator, ctx)?;
                // A collection as separator falls back to the default, as in GitHub.
                if separator.is_primitive() {
                  separator.to_text()
                } else {
                  ",".to_owned()
                }
              }
              None => ",".to_owned(),
            }
          } else {
            String::new()
          };
          let mut out = String::new();
          for (i, item) in list.iter().enumerate() {
            let text = item.text();
            let separator = if i > 0 { separator.as_str() } else { "" };
            super::eval::charge(separator.len() + text.len(), span)?;
            out.push_str(separator);
            out.push_str(&text);
          }
          out
        }
        items if items.is_primitive() => items.to_text(),
        _ => String::new(),
      };
      Ok(Value::from(text))
    }
    "toJSON" => {
      let value = arg(0)?;
      // Counted before the text is built, so a value with deep indentation cannot allocate
      // far more than the budget first.
      super::eval::charge(value.json_len(true), span)?;
      Ok(Value::from(value.to_json_text(true)))
    }
    "fromJSON" => {
      let text = arg(0)?;
      match serde_json::from_str::<serde_json::Value>(&text.text()) {
        Ok(json) => Ok(Value::from(json)),
        Err(e) => Err(ExprError::new(
          span,
          ExprErrorKind::FromJson {
            message: e.to_string(),
          },
        )),
      }
    }
    "case" => {
      // Pairs of condition and value, then the default; only what is needed is evaluated.
      let Some((default, pairs)) = args.split_last() else {
        return Ok(Value::Null);
      };
      for pair in pairs.chunks(2) {
        let [condition, value] = pair else { break };
        match eval(condition, ctx)? {
          Value::Bool(true) => return eval(value, ctx),
          Value::Bool(false) => {}
          other => {
            return Err(ExprError::new(
              condition.span,
              ExprErrorKind::CaseCondition {
                kind: other.kind_name(),
              },
            ));
          }
        }
      }
      eval(default, ctx)
    }
    "length" => {
      let n = match arg(0)? {
        Value::Null => 0,
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        scalar => scalar.text().chars().count(),
      };
      #[allow(clippy::cast_precision_loss)]
      Ok(Value::Number(n as f64))
    }
    "success" => Ok(Value::Bool(ctx.status().success)),
    "failure" => Ok(Value::Bool(ctx.status().failure)),
    "cancelled" => Ok(Value::Bool(ctx.status().cancelled)),
    "always" => Ok(Value::Bool(true)),
    // The parser only builds calls of known functions; a hand-built call of another is null.
    _ => Ok(Value::Null),
  }
}

/// One piece of a parsed format string.
enum Piece<'f> {
  Text(&'f str),
  /// Argument number, and its format specifier when there is a non-empty one.
  Arg(usize, Option<&'f str>),
}

/// GitHub's `format`: `{N}` inserts value N as text, `{{` / `}}` write braces, anything else
/// with a brace is an error. The whole format string is checked before any value is read.
fn format(args: &[Expr], span: Span, ctx: &dyn Context) -> Result<Value, ExprError> {
  let Some((first, values)) = args.split_first() else {
    return Ok(Value::from(""));
  };
  let format = eval(first, ctx)?.to_text();
  let error = |kind| Err(ExprError::new(first.span, kind));
  let invalid = || {
    error(ExprErrorKind::InvalidFormat {
      format: format.clone(),
    })
  };
  let mut pieces = Vec::new();
  let mut rest = format.as_str();
  while !rest.is_empty() {
    let left = rest.find('{');
    let right = rest.find('}');
    match (left, right) {
      (Some(l), r) if r.is_none_or(|r| r > l) => {
        if rest[l + 1..].starts_with('{') {
          pieces.push(Piece::Text(&rest[..=l]));
          rest = &rest[l + 2..];
          continue;
        }
        let Some((index, specifier, len)) = read_placeholder(&rest[l..]) else {
          return invalid();
        };
        if index >= values.len() {
          return error(ExprErrorKind::MissingFormatArgument {
            format: format.clone(),
            index,
            given: values.len(),
          });
        }
        pieces.push(Piece::Text(&rest[..l]));
        pieces.push(Piece::Arg(index, specifier.then_some(&rest[l..l + len])));
        rest = &rest[l + len..];
      }
      (_, Some(r)) => {
        if !rest[r + 1..].starts_with('}') {
          return invalid();
        }
        pieces.push(Piece::Text(&rest[..=r]));
        rest = &rest[r + 2..];
      }
      (_, None) => {
        pieces.push(Piece::Text(rest));
        rest = "";
      }
    }
  }
  // Each value is evaluated once, the first time a placeholder asks for it.
  let mut cache: Vec<Option<String>> = vec![None; values.len()];
  let mut out = String::with_capacity(format.len());
  for piece in pieces {
    match piece {
      Piece::Text(text) => {
        super::eval::charge(text.len(), span)?;
        out.push_str(text);
      }
      Piece::Arg(index, specifier) => {
        let Some(slot) = cache.get_mut(index) else {
          continue;
        };
        if slot.is_none() {
          let value = values
            .get(index)
            .map_or(Ok(Value::Null), |v| eval(v, ctx))?;
          *slot = Some(value.to_text());
        }
        if let Some(specifier) = specifier {
          return error(ExprErrorKind::FormatSpecifier {
            specifier: specifier.to_owned(),
          });
        }
        let text = slot.as_deref().unwrap_or_default();
        super::eval::charge(text.len(), span)?;
        out.push_str(text);
      }
    }
  }
  Ok(Value::from(out))
}

/// Reads `{N}` or `{N:specifiers}` at the start of `text` (which starts with `{`): the argument
/// number, whether a non-empty specifier was given, and the placeholder's length in bytes.
fn read_placeholder(text: &str) -> Option<(usize, bool, usize)> {
  let digits = text[1..]
    .find(|c: char| !c.is_ascii_digit())
    .unwrap_or(text.len() - 1);
  if digits == 0 {
    return None;
  }
  let index = text[1..=digits].parse::<usize>().ok()?;
  let after = &text[1 + digits..];
  if after.starts_with('}') {
    return Some((index, false, digits + 2));
  }
  let specifiers = after.strip_prefix(':')?;
  // Specifiers run to the first `}` that is not doubled.
  let mut i = 0;
  let bytes = specifiers.as_bytes();
  loop {
    match bytes.get(i) {
      None => return None,
      Some(b'}') if bytes.get(i + 1) == Some(&b'}') => i += 2,
      Some(b'}') => return Some((index, i > 0, 1 + digits + 1 + i + 1)),
      Some(_) => i += 1,
    }
  }
}

#[cfg(test)]
mod tests {
  use crate::expr::test_support::sample;

  #[test]
  fn contains_starts_with_ends_with() {
    evals! { sample();
      "contains('Hello World', 'WORLD')" => true, "contains('abc', 'd')" => false,
      "contains('abc', '')" => true, "contains(123, 2)" => true, "contains(true, 'RU')" => true,
      "contains(null, '')" => true, "contains(parameters.names, 'b')" => true,
      "contains(parameters.list, '2')" => true, "contains(parameters.list, 4)" => false,
      "contains([], 1)" => false, "contains(parameters.obj, 'Key')" => false,
      "contains('abc', parameters.list)" => false, "contains([null], null)" => true,
      "contains([[1]], [1])" => false, "contains(['1e1'], 10)" => true,
      "CONTAINS('a', 'A')" => true,
      "startsWith('Hello', 'he')" => true, "startsWith('Hello', 'lo')" => false,
      "endsWith('Hello', 'LO')" => true, "endsWith(12.5, '.5')" => true,
      "startsWith(parameters.list, '1')" => false, "startsWith('abc', parameters.list)" => false,
      "startsWith('', '')" => true, "endsWith(null, '')" => true, "startswith('Äb', 'ä')" => true,
      "endsWith('a', 'ba')" => false,
    }
  }

  #[test]
  fn format_inserts_text() {
    evals! { sample();
      "format('Hello {0}!', 'you')" => "Hello you!", "format('{0}{1}{0}', 'a', 'b')" => "aba",
      "format('{{0}}', 1)" => "{0}", "format('{{ {0} }}', 1)" => "{ 1 }",
      "format('{0}', null)" => "", "format('{0} {1}', [1], {})" => "Array Object",
      "format('{0}', 1.50)" => "1.5", "format('{0}', '{1}')" => "{1}", "format('x')" => "x",
      "format('{0:}', 'a')" => "a", "format(123)" => "123", "format('}}{{')" => "}{",
      "format('{0}', 0.1)" => "0.1", "format('{0}', 1e21)" => "1E+21", "format('{0}', -0)" => "0",
      "format('{0}', 123456789012345678)" => "1.23456789012346E+17",
      "format('{0}', 0.00001)" => "1E-05", "format('{0}', 0.30000000000000004)" => "0.3",
      "format('{0}', true)" => "true", "format('{1}', fromJSON('{'), 'lazy')" => "lazy",
      "format('{0}-{0}', parameters.s)" => "Hello-Hello",
    }
  }

  #[test]
  fn format_errors() {
    let invalid =
      |f: &str| format!("invalid format string `{f}`: write `{{{{` and `}}}}` for literal braces");
    eval_fails! { sample();
      "format('{')" => &invalid("{"), 8;
      "format('}')" => &invalid("}"), 8;
      "format('{0')" => &invalid("{0"), 8;
      "format('{a}')" => &invalid("{a}"), 8;
      "format('{}')" => &invalid("{}"), 8;
      "format('{0} {', 1)" => &invalid("{0} {"), 8;
      "format('a}b', 1)" => &invalid("a}b"), 8;
      "format('{1}', 'a')" => "format string `{1}` uses argument {1} but only 1 was given", 8;
      "format('{0}')" => "format string `{0}` uses argument {0} but only 0 were given", 8;
      "format('{0:x}', 1)" => "format specifiers are not supported: `{0:x}`", 8;
      "x || format('{0:x}}}', 1)" => "format specifiers are not supported: `{0:x}}}`", 13;
      "format('{0:x}}}}', 1)" => &invalid("{0:x}}}}"), 8;
    }
  }

  #[test]
  fn join() {
    evals! { sample();
      "join(parameters.names)" => "a,B", "join(parameters.names, ' | ')" => "a | B",
      "join([1, null, true, 'x'], '-')" => "1--true-x", "join([[1], {}])" => "Array,Object",
      "join('abc')" => "abc", "join(5, ',')" => "5", "join([])" => "", "join({})" => "",
      "join(['a'], parameters.list)" => "a", "join(['a', 'b'], parameters.list)" => "a,b",
      "join(['a', 'b'], null)" => "ab", "join(['a', 'b'], 0)" => "a0b",
      "join(stages.*.outputs.x, '+')" => "Y+z",
    }
  }

  #[test]
  fn to_json_and_from_json() {
    evals! { sample();
      "toJSON(parameters.obj)" => "{\n  \"Key\": \"v\",\n  \"n\": null\n}",
      "toJSON([1, [2, {}], []])" => "[\n  1,\n  [\n    2,\n    {}\n  ],\n  []\n]",
      "toJSON({a: {b: 'x\"y'}})" => "{\n  \"a\": {\n    \"b\": \"x\\\"y\"\n  }\n}",
      "toJSON('x')" => "\"x\"", "toJSON(null)" => "null", "toJSON(1e20)" => "1E+20",
      "toJSON(NaN)" => "NaN", "toJSON(true)" => "true", "toJSON(2.50)" => "2.5",
      "fromJSON('[1, \"a\"]')" => [1, "a"], "fromJSON('{\"a\": {\"b\": true}}').a.b" => true,
      "fromJSON('3')" => 3, "fromJSON('null')" => null, "fromJSON(' \"x\" ')" => "x",
      "fromJSON(toJSON(parameters.obj)).key" => "v", "fromJSON(5)" => 5,
      "fromJSON('{\"b\": 1, \"a\": 2}')" => {"b": 1, "a": 2},
    }
    eval_fails! { sample();
      "fromJSON('')" => "fromJSON: invalid JSON: EOF while parsing a value at line 1 column 0", 1;
      "x || fromJSON('{')" => "fromJSON: invalid JSON: EOF while parsing an object at line 1 column 1", 6;
      "fromJSON('nope')" => "fromJSON: invalid JSON: expected ident at line 1 column 2", 1;
      "fromJSON('1 2')" => "fromJSON: invalid JSON: trailing characters at line 1 column 3", 1;
    }
  }

  #[test]
  fn length() {
    evals! { sample();
      "length('héllo')" => 5, "length(parameters.list)" => 3, "length(parameters.obj)" => 2,
      "length(null)" => 0, "length(12.5)" => 4, "length('')" => 0, "length(true)" => 4,
      "length([])" => 0, "length(parameters.missing)" => 0, "LENGTH(parameters.s)" => 5,
    }
  }

  #[test]
  fn status_functions() {
    evals! { sample();
      "success()" => true, "failure()" => false, "always()" => true, "cancelled()" => false,
      "success() && parameters.n > 2" => true, "failure() || 'fallback'" => "fallback",
    }
  }
}
