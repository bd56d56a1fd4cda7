use super::*;
use std::borrow::Cow;

/// A string that may contain `$<< >>` parts.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
  /// Literal text and expressions, in order; adjacent texts are merged.
  pub segments: Vec<Segment>,
}

/// A piece of a [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
  /// Literal text, with `$$<<` already turned into `$<<`.
  Text(String),
  /// An expression.
  Expr {
    /// The parsed body; its spans are relative to the body.
    expr: Expr,
    /// Byte offset of the body in the template string (add it to the expression's spans).
    offset: usize,
  },
}

impl Template {
  /// Splits `s` into text and expressions; error spans are relative to `s`.
  ///
  /// Interpolation is a lexer mode: text runs to the next `$<<`, the body to the first `>>`
  /// outside a string literal.
  ///
  /// # Errors
  ///
  /// An unterminated `$<<` (at the delimiter) or any error of [`parse`] in a body.
  pub fn parse(s: &str) -> Result<Template, ExprError> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while let Some(found) = s[i..].find('$') {
      let at = i + found;
      let tail = &s[at..];
      if tail.starts_with("$$<<") || tail.starts_with("$${{") {
        text.push_str(&s[i..at]);
        text.push_str(&tail[1..4]);
        i = at + 4;
      } else if tail.starts_with("${{") {
        return Err(ExprError::new(
          Span::new(at, 3),
          ExprErrorKind::GithubSyntax,
        ));
      } else if tail.starts_with("$<<") {
        text.push_str(&s[i..at]);
        if !text.is_empty() {
          segments.push(Segment::Text(std::mem::take(&mut text)));
        }
        let start = at + 3;
        let end = find_close(s, start, at)?;
        let expr = parse(&s[start..end]).map_err(|e| e.shifted(start))?;
        segments.push(Segment::Expr {
          expr,
          offset: start,
        });
        i = end + 2;
      } else {
        text.push_str(&s[i..=at]);
        i = at + 1;
      }
    }
    text.push_str(&s[i..]);
    if !text.is_empty() {
      segments.push(Segment::Text(text));
    }
    Ok(Template { segments })
  }

  /// The expression, when the string is exactly one `$<< expr >>` with nothing around it; its
  /// typed value is then the template's value.
  pub fn single(&self) -> Option<&Expr> {
    match self.segments.as_slice() {
      [Segment::Expr { expr, .. }] => Some(expr),
      _ => None,
    }
  }

  /// Whether there are no expressions at all.
  pub fn is_literal(&self) -> bool {
    self
      .segments
      .iter()
      .all(|segment| matches!(segment, Segment::Text(_)))
  }

  /// Every expression with the byte offset of its body in the template string.
  pub fn exprs(&self) -> impl Iterator<Item = (&Expr, usize)> {
    self.segments.iter().filter_map(|segment| match segment {
      Segment::Expr { expr, offset } => Some((expr, *offset)),
      Segment::Text(_) => None,
    })
  }

  /// The typed value of a single expression, otherwise the interpolated string: null as `''`,
  /// arrays and objects as compact JSON, everything else as [`Value::to_text`]. Error spans
  /// are relative to the template string.
  ///
  /// # Errors
  ///
  /// Those of [`Expr::eval`].
  pub fn eval(&self, ctx: &dyn Context) -> Result<Value, ExprError> {
    if let [Segment::Expr { expr, offset }] = self.segments.as_slice() {
      return expr.eval(ctx).map_err(|e| e.shifted(*offset));
    }
    eval::budgeted(|| {
      let mut out = String::new();
      for segment in &self.segments {
        match segment {
          Segment::Text(text) => out.push_str(text),
          Segment::Expr { expr, offset } => {
            let value = expr.eval(ctx).map_err(|e| e.shifted(*offset))?;
            // Counted before it is built and copied: one large value repeated must not grow
            // `out` first.
            let span = expr.span.shifted(*offset);
            let text = match &value {
              Value::Array(_) | Value::Object(_) => {
                eval::charge(value.json_len(false), span)?;
                Cow::Owned(value.to_json_text(false))
              }
              value => {
                let text = value.text();
                eval::charge(text.len(), span)?;
                text
              }
            };
            out.push_str(&text);
          }
        }
      }
      Ok(Value::from(out))
    })
  }
}

/// Byte index of the `>>` that closes the body starting at `start` (the `$<<` is at `open`),
/// skipping string literals so `'a >> b'` does not end it.
fn find_close(s: &str, start: usize, open: usize) -> Result<usize, ExprError> {
  let bytes = s.as_bytes();
  let mut i = start;
  // Only ASCII bytes are compared, so multi-byte characters are skipped safely.
  while let Some(&byte) = bytes.get(i) {
    match byte {
      b'>' if bytes.get(i + 1) == Some(&b'>') => return Ok(i),
      b'\'' | b'"' => {
        let quote = i;
        i += 1;
        loop {
          match bytes.get(i) {
            None => {
              return Err(ExprError::new(
                Span::new(quote, 1),
                ExprErrorKind::UnterminatedString,
              ));
            }
            Some(b'\\') if byte == b'"' => i += 2,
            // In single quotes `''` is an escaped quote.
            Some(b'\'') if byte == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            Some(&b) if b == byte => {
              i += 1;
              break;
            }
            Some(_) => i += 1,
          }
        }
      }
      _ => i += 1,
    }
  }
  Err(ExprError::new(
    Span::new(open, 3),
    ExprErrorKind::UnterminatedExpression,
  ))
}

#[cfg(test)]
mod tests {
  use {super::*, serde_json::json};

  fn ctx() -> MapContext {
    MapContext::from_json(&json!({
      "parameters": {"n": 3, "name": "world", "list": [1, "a", null], "obj": {"k": "v"}, "big": 1e20},
      "env": {"EMPTY": ""},
    }))
  }

  fn eval(s: &str) -> Result<Value, String> {
    Template::parse(s)
      .and_then(|t| t.eval(&ctx()))
      .map_err(|e| format!("{e}@{}", e.span.offset))
  }

  #[test]
  fn literal_templates() {
    let t = Template::parse("plain text").ok();
    assert_eq!(t.as_ref().map(Template::is_literal), Some(true));
    assert_eq!(t.as_ref().and_then(Template::single), None);
    assert_eq!(eval("plain text"), Ok(Value::from("plain text")));
    assert_eq!(eval(""), Ok(Value::from("")));
    assert_eq!(
      eval("costs $5, $ 6, $<"),
      Ok(Value::from("costs $5, $ 6, $<"))
    );
  }

  #[test]
  fn single_expression_keeps_its_type() {
    assert_eq!(eval("$<< parameters.n >>"), Ok(Value::Number(3.0)));
    assert_eq!(
      eval("$<<parameters.list>>"),
      Ok(Value::from(json!([1, "a", null])))
    );
    assert_eq!(eval("$<< >>"), Ok(Value::Null));
    assert_eq!(eval("$<< parameters.n > 2 >>"), Ok(Value::Bool(true)));
    let t = Template::parse("$<< a >>").ok();
    assert!(t.as_ref().and_then(Template::single).is_some());
    // Anything around it, even a space, makes it text.
    assert_eq!(eval(" $<< parameters.n >>"), Ok(Value::from(" 3")));
  }

  #[test]
  fn interpolation() {
    assert_eq!(
      eval("Hello $<< parameters.name >>!"),
      Ok(Value::from("Hello world!"))
    );
    assert_eq!(
      eval("n=$<< parameters.n >>, big=$<< parameters.big >>"),
      Ok(Value::from("n=3, big=1E+20"))
    );
    assert_eq!(eval("[$<< parameters.missing >>]"), Ok(Value::from("[]")));
    assert_eq!(
      eval("list: $<< parameters.list >>"),
      Ok(Value::from(r#"list: [1,"a",null]"#))
    );
    assert_eq!(
      eval("obj: $<< parameters.obj >>"),
      Ok(Value::from(r#"obj: {"k":"v"}"#))
    );
    assert_eq!(eval("$<< true >>$<< 1.50 >>"), Ok(Value::from("true1.5")));
    assert_eq!(eval("$<< 'a >> b' >> c"), Ok(Value::from("a >> b c")));
    assert_eq!(eval(r#"$<< "x\">>" >>"#), Ok(Value::from("x\">>")));
    assert_eq!(eval("$<< 'it''s' >>"), Ok(Value::from("it's")));
    assert_eq!(eval("é $<< 'ü' >> ö"), Ok(Value::from("é ü ö")));
  }

  #[test]
  fn escaped_delimiter() {
    assert_eq!(
      eval("$$<< not an expression >>"),
      Ok(Value::from("$<< not an expression >>"))
    );
    assert_eq!(eval("a $$<< b $<< 1 >>"), Ok(Value::from("a $<< b 1")));
    assert_eq!(eval("$$$<< 1 >>"), Ok(Value::from("$$<< 1 >>")));
    let t = Template::parse("$$<<x>>").ok();
    assert_eq!(t.map(|t| t.is_literal()), Some(true));
  }

  #[test]
  fn github_syntax_is_refused_at_its_opening_and_escapes_to_itself() {
    let error = Template::parse("hi ${{ github.actor }}").err();
    assert_eq!(
      error.map(|e| (e.kind, e.span)),
      Some((ExprErrorKind::GithubSyntax, Span::new(3, 3)))
    );
    assert_eq!(
      eval("$${{ secrets.TOKEN }} and $<< 1 >>"),
      Ok(Value::from("${{ secrets.TOKEN }} and 1"))
    );
    // `${` alone (a shell variable) is text.
    assert_eq!(eval("${HOME}/x"), Ok(Value::from("${HOME}/x")));
  }

  #[test]
  fn errors_point_into_the_template() {
    assert_eq!(
      eval("abc $<< x.y"),
      Err("unterminated `$<<`: missing closing `>>`@4".into())
    );
    assert_eq!(eval("abc $<< 'x >>"), Err("unterminated string@8".into()));
    assert_eq!(
      eval("ab $<< 1 >> $<< a == >>"),
      Err("expected an expression, found end of expression@21".into())
    );
    assert_eq!(
      eval("ab $<< fromJSON('{') >>"),
      Err("fromJSON: invalid JSON: EOF while parsing an object at line 1 column 1@7".into())
    );
    assert_eq!(
      eval("$<< lenght(x) >>"),
      Err(
        "unknown function `lenght` (did you mean `length`?): the functions are contains, \
         startsWith, endsWith, format, join, toJSON, fromJSON, case, length, success, failure, always, \
         cancelled@4"
          .into()
      )
    );
  }

  #[test]
  fn expression_offsets() {
    let t = Template::parse("a $<< x >> b $<<y.z>>");
    let offsets: Vec<_> = t
      .iter()
      .flat_map(|t| {
        t.exprs()
          .map(|(e, offset)| (e.to_string(), offset, e.span.offset + offset))
      })
      .collect();
    assert_eq!(
      offsets,
      [("x".to_owned(), 5, 6), ("y.z".to_owned(), 16, 16)]
    );
    let segments = t.map(|t| t.segments.len());
    assert_eq!(segments, Ok(4));
  }
}
