//! The expression parser: one `parse_<production>` method per rule of `GRAMMAR.md`.
//!
//! Binary operators are parsed by precedence climbing. Nesting is bounded twice: the recursive
//! descent stops at [`MAX_DEPTH`] levels so hostile input cannot overflow the stack, and the
//! finished tree is measured the way GitHub measures it (`&&` / `||` chains count once).
use {
  super::*,
  nom::{
    IResult, Parser,
    branch::alt,
    bytes::complete::{tag, take_while},
    character::complete::{char, satisfy},
    combinator::{eof, map, recognize, value},
    error::ParseError,
    sequence::preceded,
  },
};

/// Why parsing stopped: where (as the input that was left) and, once known, what went wrong.
#[derive(Debug)]
struct Failure<'a> {
  /// The input from the point of failure on.
  at: &'a str,
  /// How many bytes the error covers.
  len: usize,
  /// `None` for a plain mismatch that a caller may still turn into "expected ...".
  kind: Option<ExprErrorKind>,
}

impl<'a> Failure<'a> {
  /// A plain mismatch at `at`.
  fn mismatch(at: &'a str) -> Self {
    Self {
      at,
      len: 0,
      kind: None,
    }
  }

  /// This failure as "expected {what}, found ..." unless it already says what is wrong.
  fn expected(self, what: &str) -> Self {
    if self.kind.is_some() {
      return self;
    }
    let at = self.at.trim_start();
    let (found, len) = describe(at);
    Self {
      at,
      len,
      kind: Some(ExprErrorKind::UnexpectedToken {
        expected: what.to_owned(),
        found,
      }),
    }
  }
}

impl<'a> ParseError<&'a str> for Failure<'a> {
  fn from_error_kind(input: &'a str, _: nom::error::ErrorKind) -> Self {
    Self::mismatch(input)
  }

  fn append(_: &'a str, _: nom::error::ErrorKind, other: Self) -> Self {
    other
  }

  /// Of two failed alternatives, the one that got further explains more.
  fn or(self, other: Self) -> Self {
    if other.at.len() <= self.at.len() {
      other
    } else {
      self
    }
  }
}

type PResult<'a, T> = IResult<&'a str, T, Failure<'a>>;

/// An object literal entry: key, the input where the key starts, its length, and the value.
type Entry<'a> = (String, &'a str, usize, Expr);

/// How the token at `at` reads in a message, and how many bytes it covers.
fn describe(at: &str) -> (String, usize) {
  if at.is_empty() {
    return ("end of expression".to_owned(), 0);
  }
  if let Some(op) = ["==", "!=", "<=", ">=", "&&", "||"]
    .into_iter()
    .find(|op| at.starts_with(op))
  {
    return (format!("`{op}`"), 2);
  }
  let word = at
    .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    .unwrap_or(at.len());
  let len = if word > 0 {
    word
  } else {
    at.chars().next().map_or(0, char::len_utf8)
  };
  // Long runs are cut in the message; the span still covers all of it.
  let shown: String = at[..len].chars().take(32).collect();
  let ellipsis = if shown.len() < len { "…" } else { "" };
  (format!("`{shown}{ellipsis}`"), len)
}

/// `parser` after optional whitespace.
fn token<'a, O>(
  parser: impl Parser<&'a str, Output = O, Error = Failure<'a>>,
) -> impl Parser<&'a str, Output = O, Error = Failure<'a>> {
  preceded(take_while(char::is_whitespace), parser)
}

/// The character `c` after optional whitespace.
fn symbol<'a>(c: char) -> impl Parser<&'a str, Output = char, Error = Failure<'a>> {
  token(char(c))
}

/// Commits to `parser` like nom's `cut`, and says what was wanted: when it does not match,
/// parsing fails for good with "expected {what}, found ..." at the token it stopped on.
fn expect<'a, O>(
  what: &'static str,
  mut parser: impl Parser<&'a str, Output = O, Error = Failure<'a>>,
) -> impl FnMut(&'a str) -> PResult<'a, O> {
  move |input| match parser.parse(input) {
    Err(nom::Err::Error(failure)) => Err(nom::Err::Failure(failure.expected(what))),
    result => result,
  }
}

/// A name: `[A-Za-z_][A-Za-z0-9_-]*` (GitHub's legal keyword).
fn parse_name(input: &str) -> PResult<'_, &str> {
  recognize((
    satisfy(|c| c.is_ascii_alphabetic() || c == '_'),
    take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
  ))
  .parse(input)
}

/// The rest of a number: letters, digits, `_` and `.`, and a sign right after an exponent `e`,
/// so that `1e-5` is one token and `1.2.3` or `12abc` are reported whole.
#[expect(
  clippy::unnecessary_wraps,
  reason = "a nom parser: it composes with the others by type"
)]
fn parse_number_tail(input: &str) -> PResult<'_, &str> {
  let mut previous = ' ';
  let end = input
    .char_indices()
    .find(|&(_, c)| {
      let more = c.is_ascii_alphanumeric()
        || matches!(c, '_' | '.')
        || (matches!(c, '+' | '-') && matches!(previous, 'e' | 'E'));
      previous = c;
      !more
    })
    .map_or(input.len(), |(i, _)| i);
  Ok((&input[end..], &input[..end]))
}

/// A binary operator token.
#[derive(Clone, Copy)]
enum Operator {
  Binary(BinaryOp),
  Arith(ArithOp),
  Logical(LogicalOp),
}

impl Operator {
  /// Binding strength; higher binds tighter.
  fn precedence(self) -> u8 {
    match self {
      Self::Logical(LogicalOp::Or) => 1,
      Self::Logical(LogicalOp::And) => 2,
      Self::Binary(BinaryOp::Eq | BinaryOp::Ne) => 3,
      Self::Binary(_) => 4,
      Self::Arith(ArithOp::Add | ArithOp::Sub) => 5,
      Self::Arith(_) => 6,
    }
  }
}

/// `operator := "==" | "!=" | "<=" | ">=" | "<" | ">" | "&&" | "||" | "+" | "-" | "*" | "/"
/// | "%"`. Only ever read after an operand, so a `-` or `+` here is binary even before a digit
/// (`a -1` is `a - 1`).
fn parse_operator(input: &str) -> PResult<'_, Operator> {
  token(alt((
    value(Operator::Binary(BinaryOp::Eq), tag("==")),
    value(Operator::Binary(BinaryOp::Ne), tag("!=")),
    value(Operator::Binary(BinaryOp::Le), tag("<=")),
    value(Operator::Binary(BinaryOp::Ge), tag(">=")),
    value(Operator::Binary(BinaryOp::Lt), tag("<")),
    value(Operator::Binary(BinaryOp::Gt), tag(">")),
    value(Operator::Logical(LogicalOp::And), tag("&&")),
    value(Operator::Logical(LogicalOp::Or), tag("||")),
    value(Operator::Arith(ArithOp::Add), tag("+")),
    value(Operator::Arith(ArithOp::Sub), tag("-")),
    value(Operator::Arith(ArithOp::Mul), tag("*")),
    value(Operator::Arith(ArithOp::Div), tag("/")),
    value(Operator::Arith(ArithOp::Rem), tag("%")),
  )))
  .parse(input)
}

/// `lhs op rhs` for `&&` / `||`, merging operands that are chains of the same operator.
fn logical(op: LogicalOp, lhs: Expr, rhs: Expr) -> Expr {
  let span = lhs.span.join(rhs.span);
  let mut operands = match lhs.kind {
    ExprKind::Logical {
      op: inner,
      operands,
    } if inner == op => operands,
    kind => vec![Expr {
      kind,
      span: lhs.span,
    }],
  };
  match rhs.kind {
    ExprKind::Logical {
      op: inner,
      operands: more,
    } if inner == op => operands.extend(more),
    kind => operands.push(Expr {
      kind,
      span: rhs.span,
    }),
  }
  Expr {
    kind: ExprKind::Logical { op, operands },
    span,
  }
}

/// Parses an expression body (no `$<< >>`); see [`parse`](super::parse).
pub(super) fn parse_text(text: &str) -> Result<Expr, ExprError> {
  let parser = ExprParser { text };
  let expr = match parser.parse_root(text) {
    Ok((_, expr)) => expr,
    Err(nom::Err::Error(failure) | nom::Err::Failure(failure)) => {
      return Err(parser.error(failure.expected("an expression")));
    }
    Err(nom::Err::Incomplete(_)) => {
      return Err(parser.error(Failure::mismatch("").expected("an expression")));
    }
  };
  match expr.too_deep(1) {
    Some(span) => Err(ExprError::new(span, ExprErrorKind::TooDeep)),
    None => Ok(expr),
  }
}

/// The text being parsed, so positions in the remaining input can become spans.
struct ExprParser<'a> {
  text: &'a str,
}

impl<'a> ExprParser<'a> {
  /// Byte offset of the remaining input `at`.
  fn offset(&self, at: &str) -> usize {
    self.text.len().saturating_sub(at.len())
  }

  /// The span from remaining input `from` up to remaining input `to`.
  fn span(&self, from: &str, to: &str) -> Span {
    Span::new(self.offset(from), from.len().saturating_sub(to.len()))
  }

  /// A committed failure of `kind` covering `len` bytes at `at`.
  fn fail<T>(at: &'a str, len: usize, kind: ExprErrorKind) -> PResult<'a, T> {
    Err(nom::Err::Failure(Failure {
      at,
      len,
      kind: Some(kind),
    }))
  }

  /// Fails with `TooDeep` at the next token.
  fn too_deep<T>(input: &'a str) -> PResult<'a, T> {
    let at = input.trim_start();
    Self::fail(at, describe(at).1, ExprErrorKind::TooDeep)
  }

  /// The final error for a failure.
  fn error(&self, failure: Failure<'_>) -> ExprError {
    let span = Span::new(self.offset(failure.at), failure.len);
    let kind = failure
      .kind
      .unwrap_or_else(|| ExprErrorKind::UnexpectedToken {
        expected: "an expression".to_owned(),
        found: describe(failure.at).0,
      });
    ExprError::new(span, kind)
  }

  /// `root := expression? end`
  fn parse_root(&self, input: &'a str) -> PResult<'a, Expr> {
    let start = input.trim_start();
    if start.is_empty() {
      let null = Expr {
        kind: ExprKind::Literal(Value::Null),
        span: Span::new(0, input.len()),
      };
      return Ok((start, null));
    }
    let (rest, expr) = expect("an expression", |i| self.parse_expression(i, 0))(input)?;
    let (rest, _) = expect("an operator or end of expression", token(eof))(rest)?;
    Ok((rest, expr))
  }

  /// `expression := ternary`, at nesting level `depth`.
  fn parse_expression(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    if depth >= MAX_DEPTH {
      return Self::too_deep(input);
    }
    self.parse_ternary(input, depth)
  }

  /// `ternary := binary ("?" expression ":" expression)?`
  fn parse_ternary(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let (rest, condition) = self.parse_binary(input, depth, 0)?;
    let Ok((rest, _)) = symbol('?').parse(rest) else {
      return Ok((rest, condition));
    };
    let (rest, then) = expect("an expression", |i| self.parse_expression(i, depth + 1))(rest)?;
    let (rest, _) = expect("`:`", symbol(':'))(rest)?;
    let (rest, otherwise) = expect("an expression", |i| self.parse_expression(i, depth + 1))(rest)?;
    let span = condition.span.join(otherwise.span);
    let kind = ExprKind::Ternary {
      condition: Box::new(condition),
      then: Box::new(then),
      otherwise: Box::new(otherwise),
    };
    Ok((rest, Expr { kind, span }))
  }

  /// `binary := unary (operator unary)*`, by precedence climbing: operators binding at least
  /// as tight as `min_precedence` are taken here, tighter ones on the right recursively.
  fn parse_binary(&self, input: &'a str, depth: usize, min_precedence: u8) -> PResult<'a, Expr> {
    let (mut rest, mut lhs) = self.parse_unary(input, depth)?;
    // A chain of comparisons or arithmetic grows the tree one level per operator without
    // recursing.
    let mut chain = 0;
    while let Ok((after, op)) = parse_operator(rest) {
      let precedence = op.precedence();
      if precedence < min_precedence {
        break;
      }
      let (after, rhs) = expect("an expression", |i| {
        self.parse_binary(i, depth, precedence + 1)
      })(after)?;
      lhs = match op {
        Operator::Logical(op) => logical(op, lhs, rhs),
        Operator::Binary(op) => {
          chain += 1;
          if chain >= MAX_DEPTH {
            return Self::too_deep(rest);
          }
          Expr {
            span: lhs.span.join(rhs.span),
            kind: ExprKind::Binary {
              op,
              lhs: Box::new(lhs),
              rhs: Box::new(rhs),
            },
          }
        }
        Operator::Arith(op) => {
          chain += 1;
          if chain >= MAX_DEPTH {
            return Self::too_deep(rest);
          }
          let span = lhs.span.join(rhs.span);
          // Both sides written as literals: a division by zero is known now, not at run time.
          if matches!(op, ArithOp::Div | ArithOp::Rem)
            && let (ExprKind::Literal(_), ExprKind::Literal(divisor)) = (&lhs.kind, &rhs.kind)
            && divisor.to_number() == 0.0
          {
            let expr = format!("{lhs} {} {rhs}", op.symbol());
            let at = self.text.get(span.offset..).unwrap_or_default();
            return Self::fail(at, span.len, ExprErrorKind::DivisionByZero { expr });
          }
          Expr {
            span,
            kind: ExprKind::Arith {
              op,
              lhs: Box::new(lhs),
              rhs: Box::new(rhs),
            },
          }
        }
      };
      rest = after;
    }
    Ok((rest, lhs))
  }

  /// `unary := "!" unary | "-" unary | postfix`; a `-` that starts a number literal is the
  /// literal's sign (`-1`, `-Infinity`), and minus a number literal folds into the literal
  /// (`- 1` is `-1`).
  fn parse_unary(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let start = input.trim_start();
    let negate =
      start.starts_with('-') && matches!(self.parse_number(start), Err(nom::Err::Error(_)));
    let (rest, negate) = if negate {
      (&start[1..], true)
    } else if let Ok((rest, _)) = symbol('!').parse(input) {
      (rest, false)
    } else {
      return self.parse_postfix(input, depth);
    };
    if depth >= MAX_DEPTH {
      return Self::too_deep(input);
    }
    let (rest, operand) = expect("an expression", |i| self.parse_unary(i, depth + 1))(rest)?;
    let span = self.span(start, rest);
    let kind = match (negate, operand.kind) {
      (true, ExprKind::Literal(Value::Number(n))) => ExprKind::Literal(Value::Number(-n)),
      (true, kind) => ExprKind::Neg(Box::new(Expr {
        kind,
        span: operand.span,
      })),
      (false, kind) => ExprKind::Not(Box::new(Expr {
        kind,
        span: operand.span,
      })),
    };
    Ok((rest, Expr { kind, span }))
  }

  /// `postfix := primary ("." name | "." "*" | "[" "*" "]" | "[" expression "]")*`
  fn parse_postfix(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let start = input.trim_start();
    let (mut rest, mut expr) = self.parse_primary(input, depth)?;
    // Each step adds a level to the tree without recursing, so the chain is bounded here.
    for steps in 0.. {
      let (after, kind) = if let Ok((after, _)) = symbol('.').parse(rest) {
        let (after, name) = expect(
          "a property name or `*`",
          alt((map(symbol('*'), |_| None), map(token(parse_name), Some))),
        )(after)?;
        let base = Box::new(expr);
        match name {
          None => (after, ExprKind::Filter { base }),
          Some(name) => (
            after,
            ExprKind::Property {
              base,
              name: name.to_owned(),
            },
          ),
        }
      } else if let Ok((after, _)) = symbol('[').parse(rest) {
        let base = Box::new(expr);
        if let Ok((after, _)) = symbol('*').parse(after) {
          let (after, _) = expect("`]`", symbol(']'))(after)?;
          (after, ExprKind::Filter { base })
        } else {
          let (after, index) =
            expect("an expression", |i| self.parse_expression(i, depth + 1))(after)?;
          let (after, _) = expect("`]`", symbol(']'))(after)?;
          (
            after,
            ExprKind::Index {
              base,
              index: Box::new(index),
            },
          )
        }
      } else {
        break;
      };
      if steps >= MAX_DEPTH {
        return Self::too_deep(rest);
      }
      expr = Expr {
        kind,
        span: self.span(start, after),
      };
      rest = after;
    }
    Ok((rest, expr))
  }

  /// `primary := string | word | number | array | object | group`
  fn parse_primary(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let input = input.trim_start();
    let result = alt((
      |i| self.parse_string_literal(i),
      |i| self.parse_word(i, depth),
      |i| self.parse_number(i),
      |i| self.parse_array(i, depth),
      |i| self.parse_object(i, depth),
      |i| self.parse_group(i, depth),
    ))
    .parse(input);
    // No alternative matched: report the token where the primary should have started.
    match result {
      Err(nom::Err::Error(_)) => Err(nom::Err::Error(Failure::mismatch(input))),
      result => result,
    }
  }

  /// A string literal as an expression.
  fn parse_string_literal(&self, input: &'a str) -> PResult<'a, Expr> {
    let (rest, text) = Self::parse_string(input)?;
    let span = self.span(input, rest);
    Ok((
      rest,
      Expr {
        kind: ExprKind::Literal(Value::from(text)),
        span,
      },
    ))
  }

  /// `string := single-quoted | double-quoted`
  fn parse_string(input: &'a str) -> PResult<'a, String> {
    match input.chars().next() {
      Some('\'') => Self::parse_single_quoted(input),
      Some('"') => Self::parse_double_quoted(input),
      _ => Err(nom::Err::Error(Failure::mismatch(input))),
    }
  }

  /// `single-quoted := "'" ( [^'] | "''" )* "'"`
  fn parse_single_quoted(input: &'a str) -> PResult<'a, String> {
    let (mut rest, _) = char('\'').parse(input)?;
    let mut text = String::new();
    loop {
      let (after, chunk) = take_while(|c| c != '\'').parse(rest)?;
      text.push_str(chunk);
      let Some(after) = after.strip_prefix('\'') else {
        return Self::fail(input, 1, ExprErrorKind::UnterminatedString);
      };
      // `''` is an escaped quote; a single `'` ends the string.
      match after.strip_prefix('\'') {
        Some(after) => {
          text.push('\'');
          rest = after;
        }
        None => return Ok((after, text)),
      }
    }
  }

  /// `double-quoted := '"' ( [^"\\] | escape )* '"'`
  fn parse_double_quoted(input: &'a str) -> PResult<'a, String> {
    let (mut rest, _) = char('"').parse(input)?;
    let mut text = String::new();
    loop {
      let (after, chunk) = take_while(|c| c != '"' && c != '\\').parse(rest)?;
      text.push_str(chunk);
      if let Some(after) = after.strip_prefix('"') {
        return Ok((after, text));
      }
      if after.len() <= 1 {
        return Self::fail(input, 1, ExprErrorKind::UnterminatedString);
      }
      let (after, c) = Self::parse_escape(after)?;
      text.push(c);
      rest = after;
    }
  }

  /// `escape := "\" ( "n" | "t" | "r" | "\" | '"' | "'" | "0" | "u{" hex{1,6} "}" )`
  fn parse_escape(input: &'a str) -> PResult<'a, char> {
    let mut chars = input.chars();
    chars.next();
    let simple = match chars.next() {
      Some('n') => Some('\n'),
      Some('t') => Some('\t'),
      Some('r') => Some('\r'),
      Some('\\') => Some('\\'),
      Some('"') => Some('"'),
      Some('\'') => Some('\''),
      Some('0') => Some('\0'),
      _ => None,
    };
    if let Some(c) = simple {
      return Ok((chars.as_str(), c));
    }
    let invalid = |len: usize| {
      let len = (1..=len)
        .rev()
        .find(|&l| input.is_char_boundary(l))
        .unwrap_or(1);
      Self::fail(
        input,
        len,
        ExprErrorKind::InvalidEscape {
          escape: input[..len].to_owned(),
        },
      )
    };
    let Some(braced) = input.strip_prefix("\\u{") else {
      let len = 1 + input[1..].chars().next().map_or(0, char::len_utf8);
      return invalid(len);
    };
    let digits = braced
      .find(|c: char| !c.is_ascii_hexdigit())
      .unwrap_or(braced.len());
    let closed = braced[digits..].starts_with('}');
    let c = u32::from_str_radix(&braced[..digits], 16)
      .ok()
      .and_then(char::from_u32);
    match c {
      Some(c) if closed && (1..=6).contains(&digits) => Ok((&braced[digits + 1..], c)),
      _ => invalid(3 + digits + usize::from(closed)),
    }
  }

  /// `number := [+-]? ( digit | "." digit | "Infinity" ) number-tail`
  fn parse_number(&self, input: &'a str) -> PResult<'a, Expr> {
    let (rest, raw) = recognize((
      nom::combinator::opt(satisfy(|c| c == '+' || c == '-')),
      alt((
        tag("Infinity"),
        recognize((
          nom::combinator::opt(char('.')),
          satisfy(|c| c.is_ascii_digit()),
        )),
      )),
      parse_number_tail,
    ))
    .parse(input)?;
    let number = number_from_text(raw);
    if number.is_nan() {
      return Self::fail(
        input,
        raw.len(),
        ExprErrorKind::InvalidNumber {
          text: raw.to_owned(),
        },
      );
    }
    Ok((
      rest,
      Expr {
        kind: ExprKind::Literal(Value::Number(number)),
        span: self.span(input, rest),
      },
    ))
  }

  /// `word := "null" | "true" | "false" | "NaN" | "Infinity" | call | name`
  fn parse_word(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let (rest, word) = parse_name(input)?;
    let span = self.span(input, rest);
    // Keywords are case-sensitive, as in GitHub: `True` is a context name.
    let literal = match word {
      "null" => Some(Value::Null),
      "true" => Some(Value::Bool(true)),
      "false" => Some(Value::Bool(false)),
      "NaN" => Some(Value::Number(f64::NAN)),
      "Infinity" => Some(Value::Number(f64::INFINITY)),
      _ => None,
    };
    if let Some(literal) = literal {
      return Ok((
        rest,
        Expr {
          kind: ExprKind::Literal(literal),
          span,
        },
      ));
    }
    if let Ok((args, _)) = symbol('(').parse(rest) {
      return self.parse_call(input, word, args, depth);
    }
    Ok((
      rest,
      Expr {
        kind: ExprKind::Name(word.to_owned()),
        span,
      },
    ))
  }

  /// `call := name "(" ( expression ( "," expression )* )? ")"`
  ///
  /// `input` starts at the name, `args` just after the `(`.
  fn parse_call(
    &self,
    input: &'a str,
    name: &str,
    args: &'a str,
    depth: usize,
  ) -> PResult<'a, Expr> {
    let Some(info) = function(name) else {
      let suggestion = suggest(name, FUNCTIONS.iter().map(|f| f.name)).map(str::to_owned);
      return Self::fail(
        input,
        name.len(),
        ExprErrorKind::UnknownFunction {
          name: name.to_owned(),
          suggestion,
        },
      );
    };
    let (rest, args) = Self::parse_list(args, ')', false, "an expression", |i| {
      self.parse_expression(i, depth + 1)
    })?;
    let span = self.span(input, rest);
    if info.name == "case" && args.len() >= info.min_args && args.len() % 2 == 0 {
      return Self::fail(
        input,
        span.len,
        ExprErrorKind::CaseArity { found: args.len() },
      );
    }
    if args.len() < info.min_args || info.max_args.is_some_and(|max| args.len() > max) {
      return Self::fail(
        input,
        span.len,
        ExprErrorKind::WrongArity {
          name: info.name.to_owned(),
          min: info.min_args,
          max: info.max_args,
          found: args.len(),
        },
      );
    }
    Ok((
      rest,
      Expr {
        kind: ExprKind::Call {
          name: info.name,
          args,
        },
        span,
      },
    ))
  }

  /// `array := "[" ( expression ( "," expression )* ","? )? "]"`
  fn parse_array(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let (rest, _) = char('[').parse(input)?;
    let (rest, items) = Self::parse_list(rest, ']', true, "an expression", |i| {
      self.parse_expression(i, depth + 1)
    })?;
    Ok((
      rest,
      Expr {
        kind: ExprKind::Array(items),
        span: self.span(input, rest),
      },
    ))
  }

  /// `object := "{" ( entry ( "," entry )* ","? )? "}"`
  fn parse_object(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let (rest, _) = char('{').parse(input)?;
    let (rest, entries) =
      Self::parse_list(rest, '}', true, "a key", |i| self.parse_entry(i, depth))?;
    let mut unique: Vec<(String, Expr)> = Vec::with_capacity(entries.len());
    for (key, key_at, key_len, value) in entries {
      if unique.iter().any(|(k, _)| eq_ignore_case(k, &key)) {
        return Self::fail(key_at, key_len, ExprErrorKind::DuplicateKey { key });
      }
      unique.push((key, value));
    }
    Ok((
      rest,
      Expr {
        kind: ExprKind::Object(unique),
        span: self.span(input, rest),
      },
    ))
  }

  /// `entry := ( name | string ) ":" expression`
  ///
  /// Returns the key, where it starts and how long it is as written, and the value.
  fn parse_entry(&self, input: &'a str, depth: usize) -> PResult<'a, Entry<'a>> {
    let key_at = input.trim_start();
    let (rest, key) =
      alt((map(parse_name, str::to_owned), |i| Self::parse_string(i))).parse(key_at)?;
    let key_len = key_at.len() - rest.len();
    let (rest, _) = expect("`:`", symbol(':'))(rest)?;
    let (rest, value) = expect("an expression", |i| self.parse_expression(i, depth + 1))(rest)?;
    Ok((rest, (key, key_at, key_len, value)))
  }

  /// `group := "(" expression ")"`
  fn parse_group(&self, input: &'a str, depth: usize) -> PResult<'a, Expr> {
    let (rest, _) = char('(').parse(input)?;
    let (rest, expr) = expect("an expression", |i| self.parse_expression(i, depth + 1))(rest)?;
    let (rest, _) = expect("`)`", symbol(')'))(rest)?;
    Ok((rest, expr))
  }

  /// `item ( "," item )*` up to `close`, the opening bracket already read; a trailing comma
  /// is allowed when `trailing` says so.
  fn parse_list<T>(
    input: &'a str,
    close: char,
    trailing: bool,
    what: &'static str,
    mut item: impl FnMut(&'a str) -> PResult<'a, T>,
  ) -> PResult<'a, Vec<T>> {
    if let Ok((rest, _)) = symbol(close).parse(input) {
      return Ok((rest, Vec::new()));
    }
    let separator = match close {
      ')' => "`,` or `)`",
      ']' => "`,` or `]`",
      _ => "`,` or `}`",
    };
    let mut items = Vec::new();
    let mut rest = input;
    loop {
      let (after, parsed) = expect(what, &mut item)(rest)?;
      items.push(parsed);
      let (after, found) = expect(separator, alt((symbol(','), symbol(close))))(after)?;
      rest = after;
      if found == close {
        return Ok((rest, items));
      }
      if trailing && let Ok((after, _)) = symbol(close).parse(rest) {
        return Ok((after, items));
      }
    }
  }
}

#[cfg(test)]
mod tests;
