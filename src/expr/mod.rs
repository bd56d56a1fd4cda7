//! TEMPORARY STUB: replaced by the real expression module.
#![allow(missing_docs, unused)]
use crate::*;
use indexmap::IndexMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprErrorKind {
  #[error("todo")]
  Todo,
}
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
  pub span: Span,
  pub kind: ExprErrorKind,
}
#[derive(Debug, Clone)]
pub enum Value {
  Null,
  Bool(bool),
  Number(f64),
  String(Arc<str>),
  Array(Arc<Vec<Value>>),
  Object(Arc<IndexMap<String, Value>>),
}
impl Value {
  pub fn is_truthy(&self) -> bool {
    false
  }
  pub fn to_text(&self) -> String {
    String::new()
  }
  pub fn to_json(&self) -> serde_json::Value {
    serde_json::Value::Null
  }
  pub fn to_json_text(&self, pretty: bool) -> String {
    String::new()
  }
  pub fn get(&self, key: &str) -> Value {
    Value::Null
  }
  pub fn kind_name(&self) -> &'static str {
    "null"
  }
}
impl From<serde_json::Value> for Value {
  fn from(v: serde_json::Value) -> Self {
    Value::Null
  }
}
impl From<&serde_json::Value> for Value {
  fn from(v: &serde_json::Value) -> Self {
    Value::Null
  }
}
#[derive(Debug, Clone)]
pub struct Expr {
  pub kind: ExprKind,
  pub span: Span,
}
#[derive(Debug, Clone)]
pub enum ExprKind {
  Null,
}
pub struct Path {
  pub segments: Vec<(String, Span)>,
}
#[derive(Debug, Clone, Copy, Default)]
pub struct StatusFlags {
  pub success: bool,
  pub failure: bool,
  pub cancelled: bool,
}
pub trait Context {
  fn lookup(&self, name: &str) -> Option<Value>;
  fn status(&self) -> StatusFlags;
}
pub struct MapContext {
  pub names: IndexMap<String, Value>,
  pub status: StatusFlags,
}
impl MapContext {
  pub fn new(names: IndexMap<String, Value>) -> Self {
    Self {
      names,
      status: StatusFlags {
        success: true,
        ..Default::default()
      },
    }
  }
}
impl Context for MapContext {
  fn lookup(&self, name: &str) -> Option<Value> {
    None
  }
  fn status(&self) -> StatusFlags {
    self.status
  }
}
pub fn parse(text: &str) -> Result<Expr, ExprError> {
  Ok(Expr {
    kind: ExprKind::Null,
    span: Span::default(),
  })
}
impl Expr {
  pub fn eval(&self, ctx: &dyn Context) -> Result<Value, ExprError> {
    Ok(Value::Null)
  }
  pub fn uses_status_function(&self) -> bool {
    false
  }
  pub fn paths(&self) -> Vec<Path> {
    vec![]
  }
  pub fn check_names(&self, known: &dyn Fn(&str) -> bool) -> Vec<ExprError> {
    vec![]
  }
}
#[derive(Debug, Clone)]
pub struct Template {
  pub segments: Vec<Segment>,
}
#[derive(Debug, Clone)]
pub enum Segment {
  Text(String),
  Expr { expr: Expr, offset: usize },
}
impl Template {
  pub fn parse(s: &str) -> Result<Template, ExprError> {
    Ok(Template {
      segments: vec![Segment::Text(s.into())],
    })
  }
  pub fn single(&self) -> Option<&Expr> {
    None
  }
  pub fn is_literal(&self) -> bool {
    true
  }
  pub fn exprs(&self) -> impl Iterator<Item = (&Expr, usize)> {
    self.segments.iter().filter_map(|s| match s {
      Segment::Expr { expr, offset } => Some((expr, *offset)),
      Segment::Text(_) => None,
    })
  }
  pub fn eval(&self, ctx: &dyn Context) -> Result<Value, ExprError> {
    Ok(Value::Null)
  }
}
pub const MAX_DEPTH: usize = 50;
