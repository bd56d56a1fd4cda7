//! Readers for single nodes: strings, numbers, durations, choices, names, lists, mappings with
//! their allowed keys, inputs and expressions. Each reports what is wrong at the node's span.
use super::*;
use indexmap::IndexMap;
use std::time::Duration;
use yaml::{Node, NodeValue};

/// The entries of a mapping node, after unknown and duplicate keys were reported.
pub(super) struct Mapping<'a> {
  pub(super) entries: Vec<(&'a str, &'a Node, &'a Node)>,
}

impl<'a> Mapping<'a> {
  pub(super) fn get(&self, key: &str) -> Option<&'a Node> {
    self
      .entries
      .iter()
      .find(|(k, _, _)| *k == key)
      .map(|(_, _, v)| *v)
  }

  pub(super) fn key_node(&self, key: &str) -> Option<&'a Node> {
    self
      .entries
      .iter()
      .find(|(k, _, _)| *k == key)
      .map(|(_, k, _)| *k)
  }
}

/// State while converting one file.
pub(crate) struct Loader {
  pub(super) source: Arc<Source>,
  pub(super) diagnostics: Diagnostics,
}

impl Loader {
  pub(super) fn error(&mut self, span: Span, kind: ErrorKind) {
    self
      .diagnostics
      .push(Diagnostic::new(&self.source, span, kind));
  }

  pub(super) fn wrong_type(&mut self, node: &Node, field: &str, expected: &'static str) {
    self.error(
      node.span,
      ErrorKind::WrongType {
        field: field.to_string(),
        expected,
        found: node.kind_name(),
      },
    );
  }

  /// Checks that `node` is a mapping whose keys are all in `allowed` and unique.
  pub(super) fn mapping<'a>(
    &mut self,
    node: &'a Node,
    field: &str,
    allowed: Option<&[&str]>,
  ) -> Option<Mapping<'a>> {
    let NodeValue::Map(pairs) = &node.value else {
      self.wrong_type(node, field, "a mapping");
      return None;
    };
    let mut entries: Vec<(&'a str, &'a Node, &'a Node)> = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
      let Some(name) = key.as_str() else {
        self.error(
          key.span,
          ErrorKind::NonStringKey {
            context: field.to_string(),
            found: key.kind_name(),
          },
        );
        continue;
      };
      if entries.iter().any(|(k, _, _)| *k == name) {
        self.error(
          key.span,
          ErrorKind::DuplicateKey {
            key: name.to_string(),
          },
        );
        continue;
      }
      if let Some(allowed) = allowed
        && !allowed.contains(&name)
      {
        self.error(
          key.span,
          match suggest::github_key(name, allowed) {
            Some(suggest::GithubKey::Ours(ours)) => ErrorKind::UnknownKey {
              key: name.to_string(),
              context: field.to_string(),
              // `timeout-minutes: 30` is `timeout: 30m`, when the value is a number.
              suggestion: Some(match (name, &value.value) {
                ("timeout-minutes", NodeValue::Int(minutes)) if *minutes > 0 => {
                  format!("timeout: {minutes}m")
                }
                _ => ours.to_string(),
              }),
              note: None,
            },
            Some(suggest::GithubKey::Note(note)) => ErrorKind::UnknownKey {
              key: name.to_string(),
              context: field.to_string(),
              suggestion: None,
              note: Some(note),
            },
            None => ErrorKind::UnknownKey {
              key: name.to_string(),
              context: field.to_string(),
              suggestion: suggest::suggest(name, allowed.iter().copied()).map(str::to_string),
              note: None,
            },
          },
        );
        continue;
      }
      entries.push((name, key, value));
    }
    Some(Mapping { entries })
  }

  pub(super) fn string(&mut self, node: &Node, field: &str) -> Option<String> {
    if let Some(s) = node.as_str() {
      return Some(s.to_string());
    }
    // Numbers and booleans are accepted where text is expected (`version: 1.10` is common),
    // as written: converting the parsed number back would turn `1.10` into `1.1`.
    match &node.value {
      NodeValue::Int(_) | NodeValue::Float(_) | NodeValue::Bool(_) => self
        .source
        .text()
        .get(node.span.offset..node.span.end())
        .map(|t| t.trim().to_string()),
      _ => {
        self.wrong_type(node, field, "a string");
        None
      }
    }
  }

  pub(super) fn strict_string(&mut self, node: &Node, field: &str) -> Option<String> {
    if let Some(s) = node.as_str() {
      Some(s.to_string())
    } else {
      self.wrong_type(node, field, "a string");
      None
    }
  }

  pub(super) fn bool(&mut self, node: &Node, field: &str) -> Option<bool> {
    if let NodeValue::Bool(b) = node.value {
      Some(b)
    } else {
      self.wrong_type(node, field, "true or false");
      None
    }
  }

  pub(super) fn integer(&mut self, node: &Node, field: &str, min: i64) -> Option<u64> {
    let NodeValue::Int(i) = node.value else {
      self.wrong_type(node, field, "a whole number");
      return None;
    };
    if i < min {
      self.error(
        node.span,
        ErrorKind::OutOfRange {
          field: field.to_string(),
          message: format!("must be at least {min}, found {i}"),
        },
      );
      return None;
    }
    u64::try_from(i).ok()
  }

  pub(super) fn duration(&mut self, node: &Node, field: &str) -> Option<Duration> {
    let text = match &node.value {
      NodeValue::Int(i) if *i >= 0 => i.to_string(),
      NodeValue::String { text, .. } => text.clone(),
      NodeValue::Int(i) => {
        self.error(
          node.span,
          ErrorKind::InvalidDuration(format!("invalid duration `{i}`")),
        );
        return None;
      }
      NodeValue::Float(f) => {
        self.error(
          node.span,
          ErrorKind::InvalidDuration(format!(
            "invalid duration `{f}`: use whole units like 1500ms or 1h30m"
          )),
        );
        return None;
      }
      _ => {
        self.wrong_type(node, field, "a duration");
        return None;
      }
    };
    match duration::parse_duration(&text) {
      Ok(d) => Some(d),
      Err(message) => {
        self.error(node.span, ErrorKind::InvalidDuration(message));
        None
      }
    }
  }

  /// A duration that must be more than zero (a limit of zero would fail everything at once).
  pub(super) fn limit(&mut self, node: &Node, field: &str) -> Option<Duration> {
    let duration = self.duration(node, field)?;
    if duration.is_zero() {
      self.error(
        node.span,
        ErrorKind::OutOfRange {
          field: field.to_string(),
          message: "must be more than 0".into(),
        },
      );
      return None;
    }
    Some(duration)
  }

  /// A string that must be one of `allowed`.
  pub(super) fn choice(
    &mut self,
    node: &Node,
    field: &str,
    allowed: &'static [&'static str],
  ) -> Option<usize> {
    let text = self.strict_string(node, field)?;
    if let Some(i) = allowed.iter().position(|a| *a == text) {
      return Some(i);
    }
    self.error(
      node.span,
      ErrorKind::InvalidChoice {
        field: field.to_string(),
        value: text.clone(),
        allowed,
        suggestion: suggest::suggest(&text, allowed.iter().copied()).map(str::to_string),
      },
    );
    None
  }

  /// A list of strings; a single string is accepted as a one-item list.
  pub(super) fn string_list(&mut self, node: &Node, field: &str) -> Vec<(String, Span)> {
    match &node.value {
      NodeValue::String { text, .. } => vec![(text.clone(), node.span)],
      NodeValue::Seq(items) => items
        .iter()
        .filter_map(|item| {
          let s = self.strict_string(item, field)?;
          Some((s, item.span))
        })
        .collect(),
      NodeValue::Null => Vec::new(),
      _ => {
        self.wrong_type(node, field, "a list of strings");
        Vec::new()
      }
    }
  }

  pub(super) fn name(&mut self, node: &Node, what: &'static str) -> Option<String> {
    // `name: 2024` is a valid name that YAML reads as a number: take it as written.
    let text = match node.value {
      NodeValue::Int(_) => self.string(node, what)?,
      _ => self.strict_string(node, what)?,
    };
    if is_valid_name(&text) {
      Some(text)
    } else {
      self.error(node.span, ErrorKind::InvalidName { what, name: text });
      None
    }
  }

  /// Any data; strings holding `$<< >>` become expressions.
  pub(super) fn input(&mut self, node: &Node, field: &str) -> Input {
    match &node.value {
      NodeValue::String { text, .. } => match self.template(node, text) {
        Some(expression) => Input::Expr(Box::new(expression)),
        None => Input::Literal(serde_json::Value::String(unescape_dollar(text))),
      },
      NodeValue::Seq(items) => {
        let items: Vec<Input> = items.iter().map(|i| self.input(i, field)).collect();
        if items.iter().all(|i| matches!(i, Input::Literal(_))) {
          Input::Literal(
            items
              .iter()
              .filter_map(|i| i.as_literal().cloned())
              .collect(),
          )
        } else {
          Input::List(items)
        }
      }
      NodeValue::Map(_) => {
        let Some(map) = self.mapping(node, field, None) else {
          return Input::Literal(serde_json::Value::Null);
        };
        let entries: IndexMap<String, Input> = map
          .entries
          .iter()
          .map(|(k, _, v)| ((*k).to_string(), self.input(v, field)))
          .collect();
        if entries.values().all(|i| matches!(i, Input::Literal(_))) {
          Input::Literal(
            entries
              .into_iter()
              .filter_map(|(k, v)| v.as_literal().cloned().map(|v| (k, v)))
              .collect::<serde_json::Map<_, _>>()
              .into(),
          )
        } else {
          Input::Map(entries)
        }
      }
      _ => Input::Literal(node.to_json()),
    }
  }

  /// Parses a string's `$<< >>` parts; `None` when it holds none (or on error, reported).
  pub(super) fn template(&mut self, node: &Node, text: &str) -> Option<Expression> {
    if !text.contains("$<<") && !text.contains("${{") {
      return None;
    }
    match expr::Template::parse(text) {
      Ok(template) if template.is_literal() => None,
      Ok(template) => Some(Expression {
        template,
        text: text.to_string(),
        node: node.clone(),
        wrapped: false,
      }),
      Err(error) => {
        let start = node.file_offset(&self.source, error.span.offset);
        self.error(
          Span::new(start, error.span.len),
          ErrorKind::Expr(error.kind),
        );
        None
      }
    }
  }

  /// An expression field such as `if`: a bare expression or a `$<< >>` string.
  pub(super) fn condition(&mut self, node: &Node) -> Option<Expression> {
    let text = match &node.value {
      NodeValue::String { text, .. } if text.contains("$<<") || text.contains("${{") => {
        let before = self.diagnostics.0.len();
        let Some(expression) = self.template(node, text) else {
          // Only escaped `$$<<`: text, which as a condition would always be true.
          if self.diagnostics.0.len() == before {
            self.error(node.span, ErrorKind::ConditionNotSingle);
          }
          return None;
        };
        // Text around the expression would make the condition a non-empty string: always true.
        if expression.template.single().is_none() {
          self.error(node.span, ErrorKind::ConditionNotSingle);
          return None;
        }
        return Some(expression);
      }
      NodeValue::String { text, .. } => text.clone(),
      NodeValue::Bool(b) => b.to_string(),
      _ => {
        self.wrong_type(node, "if", "an expression");
        return None;
      }
    };
    // A bare `if: a == b` is read as if written `$<<a == b>>`, as GitHub Actions does.
    match expr::Template::parse(&format!("$<<{text}>>")) {
      Ok(template) => Some(Expression {
        template,
        text,
        node: node.clone(),
        wrapped: true,
      }),
      Err(error) => {
        let start = node.file_offset(&self.source, error.span.offset.saturating_sub(3));
        self.error(
          Span::new(start, error.span.len),
          ErrorKind::Expr(error.kind),
        );
        None
      }
    }
  }
}

/// A plain string wrapped as an expression-free template, so gate messages have one type.
pub(super) fn literal_expression(node: &Node, text: &str) -> Expression {
  Expression {
    template: expr::Template {
      segments: vec![expr::Segment::Text(unescape_dollar(text))],
    },
    text: text.to_string(),
    node: node.clone(),
    wrapped: false,
  }
}

/// `$$<<` and `$${{` in a string without expressions still mean a literal `$<<` and `${{`.
pub(super) fn unescape_dollar(text: &str) -> String {
  if text.contains("$$<<") || text.contains("$${{") {
    text.replace("$$<<", "$<<").replace("$${{", "${{")
  } else {
    text.to_string()
  }
}
