use super::*;

/// One error at a position in a file, renderable as `FILE:LINE:COL: error: ...` with a caret line.
#[derive(Debug, Clone)]
pub struct Diagnostic {
  /// The file the span points into.
  pub source: Arc<Source>,
  /// Where the problem is.
  pub span: Span,
  /// What is wrong.
  pub kind: ErrorKind,
}

impl Diagnostic {
  /// A diagnostic for `kind` at `span` in `source`.
  pub fn new(source: &Arc<Source>, span: Span, kind: ErrorKind) -> Self {
    Self {
      source: Arc::clone(source),
      span,
      kind,
    }
  }

  /// 1-based line and column of the start of the span.
  pub fn line_col(&self) -> (usize, usize) {
    self.source.line_col(self.span.offset)
  }

  /// The message without position.
  pub fn message(&self) -> String {
    self.kind.to_string()
  }

  /// A JSON object with file, line, column and message, for `--format json`.
  pub fn to_json(&self) -> serde_json::Value {
    let (line, column) = self.line_col();
    serde_json::json!({
      "file": self.source.name(),
      "line": line,
      "column": column,
      "message": self.message(),
    })
  }

  /// Renders the diagnostic; `color` adds ANSI colours.
  pub fn render(&self, color: bool) -> String {
    let (line, col) = self.line_col();
    let (red, bold, blue, reset) = if color {
      ("\x1b[1;31m", "\x1b[1m", "\x1b[1;34m", "\x1b[0m")
    } else {
      ("", "", "", "")
    };
    let text = self.source.line_text(line);
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    // The caret run covers the span's characters on its first line, at least one.
    let before: String = text
      .chars()
      .take(col - 1)
      .map(|c| if c == '\t' { '\t' } else { ' ' })
      .collect();
    let span_text = self
      .source
      .text()
      .get(self.span.offset..self.span.end())
      .unwrap_or("");
    let first_line = span_text.split('\n').next().unwrap_or("");
    let width = first_line.chars().count().max(1);
    format!(
      "{bold}{}:{line}:{col}:{reset} {red}error:{reset} {bold}{}{reset}\n{blue}{pad} |{reset}\n{blue}{gutter} |{reset} {text}\n{blue}{pad} |{reset} {before}{red}{}{reset}\n",
      self.source.name(),
      self.kind,
      "^".repeat(width),
    )
  }
}

impl fmt::Display for Diagnostic {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (line, col) = self.line_col();
    write!(
      f,
      "{}:{line}:{col}: error: {}",
      self.source.name(),
      self.kind
    )
  }
}

impl std::error::Error for Diagnostic {}

/// Every error found in one file, in source order.
#[derive(Debug, Clone, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
  /// Adds one diagnostic.
  pub fn push(&mut self, diagnostic: Diagnostic) {
    self.0.push(diagnostic);
  }

  /// True when nothing is wrong.
  pub fn is_empty(&self) -> bool {
    self.0.is_empty()
  }

  /// Sorts by position so the report reads top to bottom.
  pub fn sort(&mut self) {
    self
      .0
      .sort_by(|a, b| (a.source.name(), a.span.offset).cmp(&(b.source.name(), b.span.offset)));
  }

  /// Renders them all, followed by a count.
  pub fn render(&self, color: bool) -> String {
    let mut out = String::new();
    for d in &self.0 {
      out.push_str(&d.render(color));
    }
    if self.0.len() > 1 {
      out.push_str(&format!("{} errors\n", self.0.len()));
    }
    out
  }
}

impl fmt::Display for Diagnostics {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, d) in self.0.iter().enumerate() {
      if i > 0 {
        writeln!(f)?;
      }
      write!(f, "{d}")?;
    }
    Ok(())
  }
}

impl std::error::Error for Diagnostics {}
