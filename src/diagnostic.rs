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

  /// The message without position (long quoted values cut, see [`shorten`]).
  pub fn message(&self) -> String {
    shorten(&self.kind.to_string())
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
    let full = self.source.line_text(line);
    let span_text = self
      .source
      .text()
      .get(self.span.offset..self.span.end())
      .unwrap_or("");
    let width = span_text
      .split('\n')
      .next()
      .unwrap_or("")
      .chars()
      .count()
      .max(1);
    // Long lines (generated or minified files) are cut to a window around the caret.
    let (text, caret_col, width) = window(full, col - 1, width);
    let gutter = line.to_string();
    let pad = " ".repeat(gutter.len());
    let before: String = text
      .chars()
      .take(caret_col)
      .map(|c| if c == '\t' { '\t' } else { ' ' })
      .collect();
    format!(
      "{bold}{}:{line}:{col}:{reset} {red}error:{reset} {bold}{}{reset}\n{blue}{pad} |{reset}\n{blue}{gutter} |{reset} {text}\n{blue}{pad} |{reset} {before}{red}{}{reset}\n",
      self.source.name(),
      self.message(),
      "^".repeat(width),
    )
  }
}

/// The longest value quoted whole in a message, in characters.
pub const MAX_QUOTED: usize = 80;

/// `message` with every `` `quoted` `` value longer than [`MAX_QUOTED`] characters cut to its
/// start and its length, so a 10 MB name is not echoed back in full.
pub fn shorten(message: &str) -> String {
  let mut out = String::with_capacity(message.len().min(4096));
  let mut rest = message;
  let mut inside = false;
  while let Some(at) = rest.find('`') {
    let (piece, after) = rest.split_at(at);
    if inside && piece.chars().count() > MAX_QUOTED {
      let keep: String = piece.chars().take(MAX_QUOTED - 20).collect();
      out.push_str(&keep);
      out.push_str(&format!("...` ({} bytes in all)", piece.len()));
      // The closing backtick is already written.
      rest = &after[1..];
      inside = false;
      continue;
    }
    out.push_str(piece);
    out.push('`');
    rest = &after[1..];
    inside = !inside;
  }
  out.push_str(rest);
  out
}

/// Characters shown around the caret on a long line.
const WINDOW: usize = 60;

/// Cuts `line` to at most about `2 * WINDOW` characters around `col`, marking cuts with `...`;
/// returns the text, the caret's column in it and the caret width.
fn window(line: &str, col: usize, width: usize) -> (String, usize, usize) {
  let chars: Vec<char> = line.chars().collect();
  if chars.len() <= 2 * WINDOW {
    return (line.to_string(), col, width);
  }
  let start = col.saturating_sub(WINDOW);
  let end = (col + width.min(WINDOW) + WINDOW).min(chars.len());
  let mut text = String::new();
  let mut caret = col - start;
  if start > 0 {
    text.push_str("...");
    caret += 3;
  }
  text.extend(&chars[start..end]);
  if end < chars.len() {
    text.push_str("...");
  }
  (text, caret, width.min(WINDOW))
}

impl fmt::Display for Diagnostic {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (line, col) = self.line_col();
    write!(
      f,
      "{}:{line}:{col}: error: {}",
      self.source.name(),
      self.message()
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

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn renders_position_source_line_and_caret() {
    let source = Source::new("wf.yaml", "name: t\nstages: 3\n");
    let d = Diagnostic::new(
      &source,
      Span::new(16, 1),
      ErrorKind::WrongType {
        field: "stages".into(),
        expected: "a list of stages",
        found: "a number",
      },
    );
    assert_eq!(
      d.render(false),
      "wf.yaml:2:9: error: `stages` must be a list of stages, found a number\n  |\n2 | stages: 3\n  |         ^\n"
    );
  }

  #[test]
  fn long_lines_are_cut_around_the_caret() {
    let line = format!("x: [{}bad{}]", "1, ".repeat(100), ", 2".repeat(100));
    let offset = line.find("bad").unwrap_or_default();
    let source = Source::new("wf.yaml", line.as_str());
    let d = Diagnostic::new(&source, Span::new(offset, 3), ErrorKind::EmptyFile);
    let rendered = d.render(false);
    let lines: Vec<&str> = rendered.lines().collect();
    assert!(lines[2].len() < 140, "{}", lines[2]);
    assert!(lines[2].starts_with("1 | ...") && lines[2].ends_with("..."));
    let caret = lines[3].find('^').unwrap_or_default();
    assert_eq!(&lines[2][caret..caret + 3], "bad");
  }
}
