//! The only module that touches the YAML library: it turns text into a [`Node`] tree that keeps
//! the position of every key and value, which the loader needs for `FILE:LINE:COL` errors.
//!
//! `serde_yaml` keeps no node positions (and is archived upstream), so the loader reads the
//! event stream of `yaml-rust2`'s pull parser, which carries a marker for every event, and
//! builds its own tree. Scalars are resolved with the YAML 1.2 core schema, like `serde_yaml`.
use super::*;
use yaml_rust2::{
  parser::{Event, MarkedEventReceiver, Parser, Tag},
  scanner::{Marker, TScalarStyle},
};

/// Upper bound on nodes created by alias expansion, so a "billion laughs" file fails cleanly.
pub(crate) const MAX_NODES: usize = 1_000_000;

/// Upper bound on the text aliases may copy (the bytes of every string they repeat), so one
/// large anchored string repeated many times fails cleanly too.
pub(crate) const MAX_ALIAS_BYTES: usize = 4 * 1024 * 1024;

/// How deeply sequences and mappings may nest (block and flow alike).
pub(crate) const MAX_DEPTH: usize = 100;

/// A YAML value with the span of its first character.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
  /// Where the node starts in the file; for strings the span covers the scalar's source text.
  pub span: Span,
  /// The value.
  pub value: NodeValue,
}

/// The value of a [`Node`].
#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
  /// `null`, `~` or nothing.
  Null,
  /// `true` or `false`.
  Bool(bool),
  /// An integer that fits in 64 bits.
  Int(i64),
  /// Any other number, including `.inf` and `.nan`.
  Float(f64),
  /// A string; `exact` says whether its bytes appear verbatim in the file at `span.offset`.
  String {
    /// The text after unquoting and folding.
    text: String,
    /// True when the file holds `text` byte for byte at `span.offset`.
    exact: bool,
  },
  /// A sequence.
  Seq(Vec<Node>),
  /// A mapping in file order; keys are nodes so errors can point at them.
  Map(Vec<(Node, Node)>),
}

impl Node {
  /// A human name for the node's type, used in "expected X, found Y" messages.
  pub fn kind_name(&self) -> &'static str {
    match self.value {
      NodeValue::Null => "null",
      NodeValue::Bool(_) => "a boolean",
      NodeValue::Int(_) | NodeValue::Float(_) => "a number",
      NodeValue::String { .. } => "a string",
      NodeValue::Seq(_) => "a list",
      NodeValue::Map(_) => "a mapping",
    }
  }

  /// The string value, if this is a string.
  pub fn as_str(&self) -> Option<&str> {
    match &self.value {
      NodeValue::String { text, .. } => Some(text),
      _ => None,
    }
  }

  /// The key text of a mapping key (strings, and scalars written as keys such as `1` or `true`).
  pub fn key_text(&self) -> String {
    match &self.value {
      NodeValue::String { text, .. } => text.clone(),
      NodeValue::Null => "null".into(),
      NodeValue::Bool(b) => b.to_string(),
      NodeValue::Int(i) => i.to_string(),
      NodeValue::Float(f) => f.to_string(),
      NodeValue::Seq(_) | NodeValue::Map(_) => "<complex key>".into(),
    }
  }

  /// The node as plain JSON data (positions dropped).
  pub fn to_json(&self) -> serde_json::Value {
    use serde_json::Value as J;
    match &self.value {
      NodeValue::Null => J::Null,
      NodeValue::Bool(b) => J::Bool(*b),
      NodeValue::Int(i) => J::from(*i),
      NodeValue::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
      NodeValue::String { text, .. } => J::String(text.clone()),
      NodeValue::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
      NodeValue::Map(entries) => J::Object(
        entries
          .iter()
          .map(|(k, v)| (k.key_text(), v.to_json()))
          .collect(),
      ),
    }
  }

  /// Maps a byte offset inside a string node's text to a byte offset in the file.
  ///
  /// Exact strings map directly. Block and multi-line scalars are mapped line by line by
  /// finding the value's line in the file after the node; anything else falls back to the
  /// node's start, which still names the right line.
  pub fn file_offset(&self, source: &Source, offset: usize) -> usize {
    let NodeValue::String { text, exact } = &self.value else {
      return self.span.offset;
    };
    if *exact {
      return self.span.offset + offset;
    }
    let line_start = text[..offset.min(text.len())]
      .rfind('\n')
      .map_or(0, |i| i + 1);
    let line_end = text[line_start..]
      .find('\n')
      .map_or(text.len(), |i| line_start + i);
    let needle = &text[line_start..line_end];
    if needle.is_empty() {
      return self.span.offset;
    }
    source
      .text()
      .get(self.span.offset..)
      .and_then(|rest| rest.find(needle))
      .map_or(self.span.offset, |found| {
        self.span.offset + found + (offset - line_start)
      })
  }
}

/// A YAML syntax error with its position.
#[derive(Debug, Clone)]
pub(crate) struct SyntaxError {
  /// Byte offset of the problem.
  pub offset: usize,
  /// The parser's description.
  pub message: String,
}

/// Parses one YAML document into a [`Node`]; an empty document is `Null`.
pub(crate) fn parse(source: &Source) -> Result<Node, SyntaxError> {
  let mut builder = Builder {
    source,
    stack: Vec::new(),
    anchors: Vec::new(),
    root: None,
    documents: 0,
    nodes: 0,
    alias_bytes: 0,
    too_deep: None,
    error: None,
  };
  // Events are pulled one at a time, not through the library's recursive `load`, so nesting
  // is bounded here before it can exhaust the stack, and the first error stops the parse.
  let mut parser = Parser::new_from_str(source.text());
  loop {
    let (event, mark) = parser.next_token().map_err(|e| {
      let offset = source.byte_offset_of_char(e.marker().index());
      // The scanner reports a tab where the token before it ended, or just past it; the tab
      // is the problem.
      if (e.info().contains("found a tab") || e.info().contains("tabs disallowed"))
        && let Some(tab) = tab_near(source.text(), offset)
      {
        return SyntaxError {
          offset: tab,
          message: "a tab here: YAML indents with spaces only".into(),
        };
      }
      // A key indented to match nothing above it is found out at its `:`; the line's
      // indentation is the problem, so point at where the line's text starts.
      if e.info().contains("did not find expected '-' indicator")
        || e.info().contains("did not find expected key")
      {
        let text = source.text();
        let at = offset.min(text.len());
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let first = text[line_start..]
          .find(|c: char| c != ' ')
          .map_or(at, |i| line_start + i);
        return SyntaxError {
          offset: first.min(at),
          message: format!(
            "this line's indentation does not fit the list or mapping above it ({})",
            e.info()
          ),
        };
      }
      SyntaxError {
        offset,
        // The scanner stops flow collections nested past its own limit, before the events
        // reach the builder: say it the way the builder does.
        message: if e.info() == "recursion limit exceeded" {
          format!("lists and mappings nest more than {MAX_DEPTH} levels deep here")
        } else {
          e.info().to_string()
        },
      }
    })?;
    builder.on_event(event.clone(), mark);
    if event == Event::StreamEnd {
      break;
    }
    if builder.error.is_some() {
      break;
    }
  }
  if let Some(error) = builder.error {
    return Err(error);
  }
  Ok(builder.root.unwrap_or(Node {
    span: Span::default(),
    value: NodeValue::Null,
  }))
}

/// The tab a scanner error at `offset` is about: the first tab of its line before it, else the
/// next one after it.
fn tab_near(text: &str, offset: usize) -> Option<usize> {
  let offset = offset.min(text.len());
  let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
  if let Some(before) = text.get(line_start..offset).and_then(|l| l.find('\t')) {
    return Some(line_start + before);
  }
  text.get(offset..)?.find('\t').map(|i| offset + i)
}

/// A container being filled while events stream in.
enum Open {
  Seq(Node, usize),
  Map(Node, usize, Option<Node>),
}

struct Builder<'a> {
  source: &'a Source,
  stack: Vec<Open>,
  /// Anchored nodes by anchor id (ids start at 1).
  anchors: Vec<Option<Node>>,
  root: Option<Node>,
  documents: usize,
  nodes: usize,
  /// Bytes of text copied by aliases so far.
  alias_bytes: usize,
  /// Where a collection opened one level too deep.
  too_deep: Option<usize>,
  error: Option<SyntaxError>,
}

impl Builder<'_> {
  fn span_at(&self, mark: Marker) -> Span {
    Span::new(self.source.byte_offset_of_char(mark.index()), 0)
  }

  fn fail(&mut self, offset: usize, message: impl Into<String>) {
    if self.error.is_none() {
      self.error = Some(SyntaxError {
        offset,
        message: message.into(),
      });
    }
  }

  /// Reports a tag at the place it is written: the parser's marker points at the value after it.
  fn unsupported_tag(&mut self, offset: usize, handle: &str, suffix: &str) {
    let written = match handle {
      "tag:yaml.org,2002:" => format!("!!{suffix}"),
      other => format!("{other}{suffix}"),
    };
    let before = self.source.text().get(..offset).unwrap_or("");
    let at = before.rfind(written.as_str()).unwrap_or(offset);
    // `if: !done` is a negation to its writer and a tag to YAML.
    let hint = if handle == "!" {
      format!("; to negate, quote it (`\"!{suffix}\"`) or wrap it in `$<< >>` (`$<< !{suffix} >>`)")
    } else {
      String::new()
    };
    self.fail(at, format!("unsupported YAML tag `{written}`{hint}"));
  }

  fn remember(&mut self, anchor: usize, node: &Node) {
    if anchor == 0 {
      return;
    }
    if self.anchors.len() <= anchor {
      self.anchors.resize(anchor + 1, None);
    }
    self.anchors[anchor] = Some(node.clone());
  }

  /// Attaches a finished node to the open container (or makes it the document root).
  fn attach(&mut self, node: Node) {
    match self.stack.last_mut() {
      None => {
        if self.root.is_none() {
          self.root = Some(node);
        }
      }
      Some(Open::Seq(seq, _)) => {
        if let NodeValue::Seq(items) = &mut seq.value {
          items.push(node);
        }
      }
      Some(Open::Map(map, _, pending_key)) => match pending_key.take() {
        None => *pending_key = Some(node),
        Some(key) => {
          if let NodeValue::Map(entries) = &mut map.value {
            entries.push((key, node));
          }
        }
      },
    }
  }

  fn scalar(&mut self, text: String, style: TScalarStyle, tag: Option<Tag>, span: Span) -> Node {
    let rest = self.source.text().get(span.offset..).unwrap_or("");
    // Core-schema tags force a type; any other tag is an error rather than silently ignored.
    let forced_string = match tag.as_ref().map(|t| (t.handle.as_str(), t.suffix.as_str())) {
      None => false,
      Some(("tag:yaml.org,2002:", "str")) => true,
      Some(("tag:yaml.org,2002:", suffix @ ("int" | "float" | "bool" | "null"))) => {
        let value = resolve_plain(&text).filter(|v| {
          matches!(
            (suffix, v),
            ("int", NodeValue::Int(_))
              | ("float", NodeValue::Float(_) | NodeValue::Int(_))
              | ("bool", NodeValue::Bool(_))
              | ("null", NodeValue::Null)
          )
        });
        if let Some(value) = value {
          let value = match value {
            #[allow(clippy::cast_precision_loss)]
            NodeValue::Int(i) if suffix == "float" => NodeValue::Float(i as f64),
            other => other,
          };
          return Node {
            span: Span::new(span.offset, text.len().max(1)),
            value,
          };
        }
        self.fail(span.offset, format!("`{text}` is not a valid !!{suffix}"));
        false
      }
      Some((handle, suffix)) => {
        self.unsupported_tag(span.offset, handle, suffix);
        false
      }
    };
    if style == TScalarStyle::Plain
      && !forced_string
      && let Some(value) = resolve_plain(&text)
    {
      // Non-string scalars end at the first character that cannot belong to them.
      let len = rest
        .find(['\n', ',', ']', '}', '#', ' '])
        .unwrap_or(rest.len())
        .max(1);
      return Node {
        span: Span::new(span.offset, len),
        value,
      };
    }
    let quote = usize::from(matches!(
      style,
      TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
    ));
    let exact = !text.contains('\n') && rest.get(quote..).is_some_and(|r| r.starts_with(&text));
    Node {
      span: Span::new(span.offset + if exact { quote } else { 0 }, text.len()),
      value: NodeValue::String { text, exact },
    }
  }
}

/// YAML 1.2 core schema resolution of a plain scalar; `None` means it is a string.
fn resolve_plain(text: &str) -> Option<NodeValue> {
  Some(match text {
    "" | "~" | "null" | "Null" | "NULL" => NodeValue::Null,
    "true" | "True" | "TRUE" => NodeValue::Bool(true),
    "false" | "False" | "FALSE" => NodeValue::Bool(false),
    ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => NodeValue::Float(f64::INFINITY),
    "-.inf" | "-.Inf" | "-.INF" => NodeValue::Float(f64::NEG_INFINITY),
    ".nan" | ".NaN" | ".NAN" => NodeValue::Float(f64::NAN),
    _ => {
      if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(NodeValue::Int);
      }
      if let Some(oct) = text.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(NodeValue::Int);
      }
      let first = text.as_bytes()[0];
      if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return None;
      }
      if let Ok(i) = text.parse::<i64>() {
        return Some(NodeValue::Int(i));
      }
      // Rust accepts "inf"/"nan" spellings YAML does not; the first-byte check excludes them.
      if text.bytes().any(|b| b.is_ascii_digit()) {
        return text.parse::<f64>().ok().map(NodeValue::Float);
      }
      return None;
    }
  })
}

impl MarkedEventReceiver for Builder<'_> {
  fn on_event(&mut self, event: Event, mark: Marker) {
    if self.error.is_some() {
      return;
    }
    let span = self.span_at(mark);
    if let Some(at) = self.too_deep {
      self.fail(
        at.min(span.offset),
        format!("lists and mappings nest more than {MAX_DEPTH} levels deep here"),
      );
      return;
    }
    match event {
      Event::DocumentStart => {
        self.documents += 1;
        if self.documents > 1 {
          self.fail(
            span.offset,
            "a workflow file holds one YAML document, found a second",
          );
        }
      }
      Event::Scalar(text, style, anchor, tag) => {
        self.nodes += 1;
        if style == TScalarStyle::Plain
          && text == "<<"
          && matches!(self.stack.last(), Some(Open::Map(_, _, None)))
        {
          self.fail(
            span.offset,
            "merge keys (`<<`) are not supported: repeat the keys, or use `defaults:` for stage settings",
          );
          return;
        }
        let node = self.scalar(text, style, tag, span);
        self.remember(anchor, &node);
        self.attach(node);
      }
      Event::SequenceStart(_, Some(tag)) | Event::MappingStart(_, Some(tag)) => {
        self.unsupported_tag(span.offset, &tag.handle, &tag.suffix);
      }
      // A block mapping's start marker comes after its first key: the error is reported at
      // whichever of it and the next event is earlier.
      Event::SequenceStart(..) | Event::MappingStart(..) if self.stack.len() >= MAX_DEPTH => {
        self.too_deep = Some(span.offset);
      }
      Event::SequenceStart(anchor, None) => self.stack.push(Open::Seq(
        Node {
          span: Span::new(span.offset, 1),
          value: NodeValue::Seq(Vec::new()),
        },
        anchor,
      )),
      Event::MappingStart(anchor, None) => self.stack.push(Open::Map(
        Node {
          span: Span::new(span.offset, 1),
          value: NodeValue::Map(Vec::new()),
        },
        anchor,
        None,
      )),
      Event::SequenceEnd | Event::MappingEnd => {
        if let Some(Open::Seq(mut node, anchor) | Open::Map(mut node, anchor, _)) = self.stack.pop()
        {
          // Block collections get their start marker late; their first child is where they begin.
          let first = match &node.value {
            NodeValue::Seq(items) => items.first().map(|n| n.span.offset),
            NodeValue::Map(entries) => entries.first().map(|(k, _)| k.span.offset),
            _ => None,
          };
          if let Some(first) = first.filter(|&f| f < node.span.offset) {
            node.span.offset = first;
          }
          self.nodes += 1;
          self.remember(anchor, &node);
          self.attach(node);
        }
      }
      Event::Alias(id) => {
        let Some(Some(node)) = self.anchors.get(id).cloned() else {
          self.fail(span.offset, "unknown alias");
          return;
        };
        let copied = size(&node);
        if self.stack.len() + copied.depth > MAX_DEPTH {
          self.fail(
            span.offset,
            format!("lists and mappings nest more than {MAX_DEPTH} levels deep here"),
          );
          return;
        }
        self.nodes += copied.nodes;
        self.alias_bytes += copied.bytes;
        if self.nodes > MAX_NODES {
          self.fail(
            span.offset,
            format!("aliases expand to too many nodes (more than {MAX_NODES})"),
          );
          return;
        }
        if self.alias_bytes > MAX_ALIAS_BYTES {
          self.fail(
            span.offset,
            format!(
              "aliases expand to too much text (more than {} MiB)",
              MAX_ALIAS_BYTES >> 20
            ),
          );
          return;
        }
        self.attach(node);
      }
      Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
    }
  }
}

/// What an alias copies: nodes, bytes of strings (keys included) and levels of nesting.
#[derive(Clone, Copy, Default)]
struct Size {
  nodes: usize,
  bytes: usize,
  depth: usize,
}

fn size(node: &Node) -> Size {
  let mut total = Size {
    nodes: 1,
    // A collection is a level even when empty.
    depth: usize::from(matches!(node.value, NodeValue::Seq(_) | NodeValue::Map(_))),
    ..Size::default()
  };
  let mut add = |child: Size| {
    total.nodes += child.nodes;
    total.bytes += child.bytes;
    total.depth = total.depth.max(child.depth + 1);
  };
  match &node.value {
    NodeValue::Seq(items) => items.iter().for_each(|n| add(size(n))),
    NodeValue::Map(entries) => entries.iter().for_each(|(k, v)| {
      add(size(k));
      add(size(v));
    }),
    NodeValue::String { text, .. } => total.bytes = text.len(),
    _ => {}
  }
  total
}

#[cfg(test)]
mod tests {
  use super::*;

  fn load(text: &str) -> (Arc<Source>, Node) {
    let source = Source::new("t.yaml", text);
    let node = parse(&source).expect("valid yaml");
    (source, node)
  }

  fn pos(source: &Source, node: &Node) -> (usize, usize) {
    source.line_col(node.span.offset)
  }

  #[test]
  fn keys_and_values_keep_positions() {
    let (source, root) = load("name: hi\nstages:\n  - id: a\n    uses: 'echo'\n");
    let NodeValue::Map(entries) = &root.value else {
      panic!("not a map")
    };
    assert_eq!(pos(&source, &entries[0].0), (1, 1));
    assert_eq!(pos(&source, &entries[0].1), (1, 7));
    let NodeValue::Seq(stages) = &entries[1].1.value else {
      panic!("not a seq")
    };
    let NodeValue::Map(stage) = &stages[0].value else {
      panic!("not a map")
    };
    assert_eq!(pos(&source, &stage[0].0), (3, 5));
    // A quoted string's span starts inside the quotes.
    assert_eq!(pos(&source, &stage[1].1), (4, 12));
    assert_eq!(stage[1].1.as_str(), Some("echo"));
  }

  #[test]
  fn scalars_resolve_with_the_core_schema() {
    let (_, root) = load("[~, true, False, 12, 0x1f, 1.5, .inf, yes, '1', -3, 1e3, .5]");
    let NodeValue::Seq(items) = root.value else {
      panic!("not a seq")
    };
    let values: Vec<_> = items.into_iter().map(|n| n.value).collect();
    assert_eq!(values[0], NodeValue::Null);
    assert_eq!(values[1], NodeValue::Bool(true));
    assert_eq!(values[2], NodeValue::Bool(false));
    assert_eq!(values[3], NodeValue::Int(12));
    assert_eq!(values[4], NodeValue::Int(31));
    assert_eq!(values[5], NodeValue::Float(1.5));
    assert_eq!(values[6], NodeValue::Float(f64::INFINITY));
    assert!(matches!(&values[7], NodeValue::String { text, .. } if text == "yes"));
    assert!(matches!(&values[8], NodeValue::String { text, .. } if text == "1"));
    assert_eq!(values[9], NodeValue::Int(-3));
    assert_eq!(values[10], NodeValue::Float(1000.0));
    assert_eq!(values[11], NodeValue::Float(0.5));
  }

  #[test]
  fn block_scalars_map_offsets_line_by_line() {
    let text = "run: |\n  echo one\n  echo $<< x >>\n";
    let (source, root) = load(text);
    let NodeValue::Map(entries) = &root.value else {
      panic!("not a map")
    };
    let value = &entries[0].1;
    let inner = value.as_str().unwrap().find("$<<").unwrap();
    let offset = value.file_offset(&source, inner);
    assert_eq!(source.line_col(offset), (3, 8));
  }

  #[test]
  fn aliases_are_expanded_and_bombs_are_stopped() {
    let (_, root) = load("a: &x [1, 2]\nb: *x\n");
    let NodeValue::Map(entries) = &root.value else {
      panic!("not a map")
    };
    assert_eq!(entries[0].1.to_json(), entries[1].1.to_json());
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
      bomb.push_str(&format!(
        "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
        p = i - 1
      ));
    }
    let source = Source::new("bomb.yaml", bomb);
    let error = parse(&source).unwrap_err();
    assert!(error.message.contains("too many nodes"));
  }

  #[test]
  fn core_tags_force_types_and_other_tags_are_rejected() {
    let (_, root) = load("a: !!str 123\nb: !!int '7'\nc: !!float 2\n");
    let NodeValue::Map(entries) = &root.value else {
      panic!("not a map")
    };
    assert_eq!(entries[0].1.as_str(), Some("123"));
    assert_eq!(entries[1].1.value, NodeValue::Int(7));
    assert_eq!(entries[2].1.value, NodeValue::Float(2.0));
    for bad in [
      "a: !custom x\n",
      "a: !!int nope\n",
      "if: !parameters.x\n",
      "a: !set {x: 1}\n",
    ] {
      let source = Source::new("t.yaml", bad);
      assert!(parse(&source).is_err(), "{bad}");
    }
  }

  #[test]
  fn merge_keys_are_rejected() {
    let source = Source::new("t.yaml", "base: &b {x: 1}\nwith:\n  <<: *b\n  y: 2\n");
    let error = parse(&source).unwrap_err();
    assert_eq!(source.line_col(error.offset), (3, 3));
    assert!(error.message.contains("merge keys"));
    // A quoted `<<` is an ordinary key.
    assert!(parse(&Source::new("t.yaml", "'<<': 1\n")).is_ok());
  }

  #[test]
  fn syntax_errors_and_extra_documents_have_positions() {
    let source = Source::new("t.yaml", "a: [1, 2\nb: 3\n");
    assert!(parse(&source).is_err());
    let source = Source::new("t.yaml", "a: 1\n---\nb: 2\n");
    let error = parse(&source).unwrap_err();
    assert_eq!(source.line_col(error.offset), (2, 1));
  }
}
