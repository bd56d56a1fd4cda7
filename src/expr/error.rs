use super::*;

/// An error in an expression or template, at a byte range of the text that was parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
  /// Where the problem is, relative to the start of the parsed text.
  pub span: Span,
  /// What is wrong.
  pub kind: ExprErrorKind,
}

impl ExprError {
  /// An error of `kind` at `span`.
  pub fn new(span: Span, kind: ExprErrorKind) -> Self {
    Self { span, kind }
  }

  /// The same error with its span moved `by` bytes to the right, to point into a larger text.
  #[must_use]
  pub fn shifted(self, by: usize) -> Self {
    Self {
      span: self.span.shifted(by),
      kind: self.kind,
    }
  }
}

impl ExprError {
  /// This error as a diagnostic in `source`, where the parsed text starts at byte `offset`
  /// (and appears verbatim; callers that unescape text map the span themselves first).
  pub fn to_diagnostic(&self, source: &Arc<Source>, offset: usize) -> Diagnostic {
    Diagnostic::new(
      source,
      self.span.shifted(offset),
      ErrorKind::Expr(self.kind.clone()),
    )
  }

  /// Several errors as diagnostics, in the order given; see [`ExprError::to_diagnostic`].
  pub fn diagnostics(
    errors: impl IntoIterator<Item = ExprError>,
    source: &Arc<Source>,
    offset: usize,
  ) -> Diagnostics {
    Diagnostics(
      errors
        .into_iter()
        .map(|e| e.to_diagnostic(source, offset))
        .collect(),
    )
  }
}

impl fmt::Display for ExprError {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    self.kind.fmt(f)
  }
}

impl std::error::Error for ExprError {}

/// Everything that can be wrong with an expression; all message wording lives here.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprErrorKind {
  /// `${{ ... }}` where a swdl expression was meant.
  #[error(
    "`${{{{ ... }}}}` is GitHub Actions syntax: swdl expressions are written `$<< ... >>` (`$${{{{` writes a literal `${{{{`)"
  )]
  GithubSyntax,
  /// The parser wanted one thing and found another; `found` is already quoted.
  #[error("expected {expected}, found {found}")]
  UnexpectedToken {
    /// What would have been valid here, e.g. "an expression" or "`)`".
    expected: String,
    /// What is there instead, e.g. "`]`" or "end of expression".
    found: String,
  },
  /// A string literal without its closing quote.
  #[error("unterminated string")]
  UnterminatedString,
  /// A `$<<` without its closing `>>`.
  #[error("unterminated `$<<`: missing closing `>>`")]
  UnterminatedExpression,
  /// A number literal that does not parse.
  #[error("invalid number `{text}`")]
  InvalidNumber {
    /// The literal as written.
    text: String,
  },
  /// A backslash escape that double-quoted strings do not know.
  #[error("invalid escape `{escape}` in string (valid: \\n \\t \\r \\\\ \\\" \\' \\0 \\u{{XXXX}})")]
  InvalidEscape {
    /// The escape as written.
    escape: String,
  },
  /// The expression nests deeper than [`MAX_DEPTH`].
  #[error("expression nests more than {MAX_DEPTH} levels deep")]
  TooDeep,
  /// A call of a function that does not exist.
  #[error("unknown function `{name}`{}: the functions are {}", .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default(), function_names())]
  UnknownFunction {
    /// The name as written.
    name: String,
    /// The closest known function, if one is close.
    suggestion: Option<String>,
  },
  /// A call with too few or too many arguments.
  #[error("`{name}` takes {}, got {found}", arity(*.min, *.max))]
  WrongArity {
    /// The function's canonical name.
    name: String,
    /// Fewest arguments accepted.
    min: usize,
    /// Most arguments accepted; `None` when there is no limit.
    max: Option<usize>,
    /// How many were given.
    found: usize,
  },
  /// `case` with an even number of arguments: a value without its condition, or no default.
  #[error(
    "`case` takes conditions and values in pairs, then a default (an odd number of arguments), \
     got {found}"
  )]
  CaseArity {
    /// How many were given.
    found: usize,
  },
  /// A `case` condition that is not a boolean.
  #[error("a `case` condition must be a boolean, found {kind}")]
  CaseCondition {
    /// The kind found.
    kind: &'static str,
  },
  /// An object literal naming the same key twice (keys ignore case).
  #[error("duplicate key `{key}` in object literal")]
  DuplicateKey {
    /// The repeated key.
    key: String,
  },
  /// A context name that is not available where the expression is used.
  #[error("unknown namespace `{name}`{}", did_you_mean(.suggestion.as_deref()))]
  UnknownName {
    /// The name as written.
    name: String,
    /// The closest known name, if one is close.
    suggestion: Option<String>,
  },
  /// A `format` string with a lone `{` or `}` or a malformed placeholder.
  #[error("invalid format string `{format}`: write `{{{{` and `}}}}` for literal braces")]
  InvalidFormat {
    /// The format string.
    format: String,
  },
  /// A `format` placeholder without a matching argument.
  #[error("format string `{format}` uses argument {{{index}}} but only {given} {} given", were(*.given))]
  MissingFormatArgument {
    /// The format string.
    format: String,
    /// The placeholder's number.
    index: usize,
    /// How many values were passed after the format string.
    given: usize,
  },
  /// A `format` placeholder with a format specifier such as `{0:x}`.
  #[error("format specifiers are not supported: `{specifier}`")]
  FormatSpecifier {
    /// The placeholder as written.
    specifier: String,
  },
  /// `fromJSON` was given text that is not JSON.
  #[error("fromJSON: invalid JSON: {message}")]
  FromJson {
    /// The JSON parser's message.
    message: String,
  },
  /// One evaluation built more text than [`super::MAX_BUILT_BYTES`].
  #[error(
    "this expression builds more than {} MiB of text (toJSON, format, join and interpolation \
     together), the most one evaluation may build",
    super::MAX_BUILT_BYTES >> 20
  )]
  TooLarge,
  /// `/` or `%` whose right operand is zero.
  #[error("division by zero in `{expr}`")]
  DivisionByZero {
    /// The expression that divides, as the parser read it.
    expr: String,
  },
}

/// `, did you mean `x`?` when there is a suggestion.
/// Every function's name, in the order of the docs' table.
fn function_names() -> String {
  super::FUNCTIONS
    .iter()
    .map(|f| f.name)
    .collect::<Vec<_>>()
    .join(", ")
}

fn did_you_mean(suggestion: Option<&str>) -> String {
  suggestion.map_or_else(String::new, |s| format!(", did you mean `{s}`?"))
}

/// "2 arguments", "1 to 2 arguments", "at least 1 argument", "no arguments".
fn arity(min: usize, max: Option<usize>) -> String {
  let plural = |n: usize| if n == 1 { "" } else { "s" };
  match max {
    Some(0) => "no arguments".to_owned(),
    Some(max) if max == min => format!("{min} argument{}", plural(min)),
    Some(max) => format!("{min} to {max} arguments"),
    None => format!("at least {min} argument{}", plural(min)),
  }
}

/// "was" or "were".
fn were(n: usize) -> &'static str {
  if n == 1 { "was" } else { "were" }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn diagnostics_point_into_the_file() {
    let source = Source::new("wf.yaml", "if: \"$<< a == >>\"\n");
    let error = parse(" a == ").err();
    let rendered = error.map(|e| e.to_diagnostic(&source, 8).to_string());
    assert_eq!(
      rendered.as_deref(),
      Some("wf.yaml:1:15: error: expected an expression, found end of expression")
    );
  }

  #[test]
  fn messages() {
    let kind = ExprErrorKind::UnknownFunction {
      name: "fromJson2".into(),
      suggestion: Some("fromJSON".into()),
    };
    assert_eq!(
      kind.to_string(),
      "unknown function `fromJson2` (did you mean `fromJSON`?): the functions are contains, \
       startsWith, endsWith, format, join, toJSON, fromJSON, case, length, success, failure, always, \
       cancelled"
    );
    let kind = ExprErrorKind::UnknownName {
      name: "x".into(),
      suggestion: None,
    };
    assert_eq!(kind.to_string(), "unknown namespace `x`");
    let arity = |min, max, found| {
      ExprErrorKind::WrongArity {
        name: "f".into(),
        min,
        max,
        found,
      }
      .to_string()
    };
    assert_eq!(arity(2, Some(2), 3), "`f` takes 2 arguments, got 3");
    assert_eq!(arity(1, Some(1), 0), "`f` takes 1 argument, got 0");
    assert_eq!(arity(1, Some(2), 3), "`f` takes 1 to 2 arguments, got 3");
    assert_eq!(arity(0, Some(0), 1), "`f` takes no arguments, got 1");
    assert_eq!(arity(1, None, 0), "`f` takes at least 1 argument, got 0");
    let kind = ExprErrorKind::InvalidFormat {
      format: "a{".into(),
    };
    assert_eq!(
      kind.to_string(),
      "invalid format string `a{`: write `{{` and `}}` for literal braces"
    );
    let kind = ExprErrorKind::MissingFormatArgument {
      format: "{1}".into(),
      index: 1,
      given: 1,
    };
    assert_eq!(
      kind.to_string(),
      "format string `{1}` uses argument {1} but only 1 was given"
    );
    assert_eq!(
      ExprErrorKind::InvalidEscape {
        escape: "\\q".into()
      }
      .to_string(),
      "invalid escape `\\q` in string (valid: \\n \\t \\r \\\\ \\\" \\' \\0 \\u{XXXX})"
    );
  }
}
