use super::*;

/// A parsed expression node; spans are byte ranges relative to the start of the text given to
/// [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
  /// What the node is.
  pub kind: ExprKind,
  /// Where it was written.
  pub span: Span,
}

/// The kinds of expression nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
  /// `null`, `true`, `false`, a number or a string.
  Literal(Value),
  /// A context name such as `parameters`, as written.
  Name(String),
  /// `base.name`.
  Property {
    /// What the property is read from.
    base: Box<Expr>,
    /// The property name as written; its span is the last `name.len()` bytes of the node's.
    name: String,
  },
  /// `base[index]`.
  Index {
    /// What is indexed.
    base: Box<Expr>,
    /// The key or position.
    index: Box<Expr>,
  },
  /// `base.*` or `base[*]`: every value of an object or element of an array.
  Filter {
    /// What is filtered.
    base: Box<Expr>,
  },
  /// A call of a built-in function.
  Call {
    /// The function's canonical name, e.g. `fromJSON`.
    name: &'static str,
    /// The arguments, evaluated only as the function needs them.
    args: Vec<Expr>,
  },
  /// `!operand`.
  Not(Box<Expr>),
  /// `-operand` (never of a number literal: `-1` and `- 1` are the literal).
  Neg(Box<Expr>),
  /// `lhs + rhs` and the other arithmetic operators.
  Arith {
    /// Which operator.
    op: ArithOp,
    /// Left operand.
    lhs: Box<Expr>,
    /// Right operand.
    rhs: Box<Expr>,
  },
  /// A comparison.
  Binary {
    /// Which comparison.
    op: BinaryOp,
    /// Left operand.
    lhs: Box<Expr>,
    /// Right operand.
    rhs: Box<Expr>,
  },
  /// A chain of `&&` or of `||`, flattened as GitHub does so long chains stay shallow.
  Logical {
    /// `&&` or `||`.
    op: LogicalOp,
    /// Two or more operands, evaluated left to right until one decides.
    operands: Vec<Expr>,
  },
  /// `condition ? then : otherwise`.
  Ternary {
    /// The condition.
    condition: Box<Expr>,
    /// The value when the condition is truthy.
    then: Box<Expr>,
    /// The value otherwise.
    otherwise: Box<Expr>,
  },
  /// `[a, b]`.
  Array(Vec<Expr>),
  /// `{a: 1, 'b': 2}`; keys are unique ignoring case.
  Object(Vec<(String, Expr)>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
  /// `==`
  Eq,
  /// `!=`
  Ne,
  /// `<`
  Lt,
  /// `<=`
  Le,
  /// `>`
  Gt,
  /// `>=`
  Ge,
}

impl BinaryOp {
  /// The operator as written.
  pub fn symbol(self) -> &'static str {
    match self {
      Self::Eq => "==",
      Self::Ne => "!=",
      Self::Lt => "<",
      Self::Le => "<=",
      Self::Gt => ">",
      Self::Ge => ">=",
    }
  }

  /// Applies the operator with GitHub's loose coercion.
  pub(super) fn apply(self, lhs: &Value, rhs: &Value) -> bool {
    match self {
      Self::Eq => lhs.loose_eq(rhs),
      Self::Ne => !lhs.loose_eq(rhs),
      Self::Lt => lhs.loose_lt(rhs),
      Self::Le => lhs.loose_eq(rhs) || lhs.loose_lt(rhs),
      Self::Gt => lhs.loose_gt(rhs),
      Self::Ge => lhs.loose_eq(rhs) || lhs.loose_gt(rhs),
    }
  }
}

/// An arithmetic operator (SPEC section 11, v1.1 of the language).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
  /// `+`: concatenation of two strings, else addition.
  Add,
  /// `-`
  Sub,
  /// `*`
  Mul,
  /// `/`
  Div,
  /// `%`: the remainder, with the sign of the dividend.
  Rem,
}

impl ArithOp {
  /// The operator as written.
  pub fn symbol(self) -> &'static str {
    match self {
      Self::Add => "+",
      Self::Sub => "-",
      Self::Mul => "*",
      Self::Div => "/",
      Self::Rem => "%",
    }
  }

  /// Applies the operator: two strings concatenate under `+`; otherwise both sides coerce to
  /// numbers as the relational operators do. `None` for a division or remainder by zero.
  pub(super) fn apply(self, lhs: &Value, rhs: &Value) -> Option<Value> {
    if let (Self::Add, Value::String(a), Value::String(b)) = (self, lhs, rhs) {
      let mut text = String::with_capacity(a.len() + b.len());
      text.push_str(a);
      text.push_str(b);
      return Some(Value::from(text));
    }
    let (a, b) = (lhs.to_number(), rhs.to_number());
    Some(Value::Number(match self {
      Self::Add => a + b,
      Self::Sub => a - b,
      Self::Mul => a * b,
      Self::Div | Self::Rem if b == 0.0 => return None,
      Self::Div => a / b,
      // Rust's `%` on doubles is C's fmod: the sign of the dividend, as SPEC asks.
      Self::Rem => a % b,
    }))
  }
}

/// `&&` or `||`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogicalOp {
  /// `&&`: the first falsy operand, or the last.
  And,
  /// `||`: the first truthy operand, or the last.
  Or,
}

impl LogicalOp {
  /// The operator as written.
  pub fn symbol(self) -> &'static str {
    match self {
      Self::And => "&&",
      Self::Or => "||",
    }
  }
}

/// A static access chain such as `stages.a.outputs.x`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
  /// Each step with its span; the first is the context name as written.
  pub segments: Vec<(String, Span)>,
}

impl Path {
  /// The span from the first segment to the last.
  pub fn span(&self) -> Span {
    match (self.segments.first(), self.segments.last()) {
      (Some((_, first)), Some((_, last))) => first.join(*last),
      _ => Span::default(),
    }
  }

  /// The segment at `index`, if there is one.
  pub fn segment(&self, index: usize) -> Option<&str> {
    self.segments.get(index).map(|(s, _)| s.as_str())
  }
}

impl fmt::Display for Path {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (i, (segment, _)) in self.segments.iter().enumerate() {
      if i > 0 {
        f.write_str(".")?;
      }
      f.write_str(segment)?;
    }
    Ok(())
  }
}

/// The context names swdl provides somewhere, used for "did you mean" suggestions.
pub const NAMESPACES: &[&str] = &[
  "parameters",
  "stages",
  "env",
  "run",
  "workflow",
  "memory",
  "failure",
  "gate",
];

/// The functions that look at the status of a stage's ancestors.
const STATUS_FUNCTIONS: &[&str] = &["success", "failure", "always", "cancelled"];

impl Expr {
  /// Whether a status function (`success`, `failure`, `always`, `cancelled`) is called anywhere.
  pub fn uses_status_function(&self) -> bool {
    if let ExprKind::Call { name, .. } = &self.kind
      && STATUS_FUNCTIONS.contains(name)
    {
      return true;
    }
    let mut found = false;
    self.for_each_child(|child| found = found || child.uses_status_function());
    found
  }

  /// Every maximal static access chain that starts at a context name, in source order.
  ///
  /// `stages['a'].outputs.x` gives `stages a outputs x`; a chain stops at a dynamic index, a
  /// filter or anything that is not a property or literal index.
  pub fn paths(&self) -> Vec<Path> {
    let mut paths = Vec::new();
    self.collect_paths(&mut paths);
    paths
  }

  fn collect_paths(&self, paths: &mut Vec<Path>) {
    if !matches!(
      self.kind,
      ExprKind::Name(_)
        | ExprKind::Property { .. }
        | ExprKind::Index { .. }
        | ExprKind::Filter { .. }
    ) {
      self.for_each_child(|child| child.collect_paths(paths));
      return;
    }
    // Walk down to the root of the access chain, remembering the steps.
    let mut steps = Vec::new();
    let mut root = self;
    while let ExprKind::Property { base, .. }
    | ExprKind::Index { base, .. }
    | ExprKind::Filter { base } = &root.kind
    {
      steps.push(root);
      root = base;
    }
    if let ExprKind::Name(name) = &root.kind {
      let mut segments = vec![(name.clone(), root.span)];
      for step in steps.iter().rev() {
        match &step.kind {
          ExprKind::Property { name, .. } => {
            segments.push((
              name.clone(),
              Span::new(step.span.end() - name.len(), name.len()),
            ));
          }
          ExprKind::Index { index, .. } => match &index.kind {
            ExprKind::Literal(key @ (Value::String(_) | Value::Number(_))) => {
              segments.push((key.to_text(), index.span));
            }
            _ => break,
          },
          _ => break,
        }
      }
      paths.push(Path { segments });
    } else {
      root.collect_paths(paths);
    }
    // Dynamic indexes may hold chains of their own.
    for step in steps.iter().rev() {
      if let ExprKind::Index { index, .. } = &step.kind {
        index.collect_paths(paths);
      }
    }
  }

  /// An error for every context name `known` rejects, including names on branches that would
  /// be short-circuited; suggestions come from the standard namespaces `known` accepts.
  pub fn check_names(&self, known: &dyn Fn(&str) -> bool) -> Vec<ExprError> {
    let mut errors = Vec::new();
    self.collect_unknown_names(known, &mut errors);
    errors
  }

  fn collect_unknown_names(&self, known: &dyn Fn(&str) -> bool, errors: &mut Vec<ExprError>) {
    if let ExprKind::Name(name) = &self.kind
      && !known(name)
    {
      let candidates = NAMESPACES.iter().copied().filter(|n| known(n));
      errors.push(ExprError::new(
        self.span,
        ExprErrorKind::UnknownName {
          name: name.clone(),
          suggestion: suggest(name, candidates).map(str::to_owned),
        },
      ));
    }
    self.for_each_child(|child| child.collect_unknown_names(known, errors));
  }

  /// Calls `f` on each direct child, in source order.
  pub fn for_each_child<'a>(&'a self, mut f: impl FnMut(&'a Expr)) {
    match &self.kind {
      ExprKind::Literal(_) | ExprKind::Name(_) => {}
      ExprKind::Property { base, .. }
      | ExprKind::Filter { base }
      | ExprKind::Not(base)
      | ExprKind::Neg(base) => f(base),
      ExprKind::Index { base, index } => {
        f(base);
        f(index);
      }
      ExprKind::Binary { lhs, rhs, .. } | ExprKind::Arith { lhs, rhs, .. } => {
        f(lhs);
        f(rhs);
      }
      ExprKind::Call { args: items, .. }
      | ExprKind::Logical {
        operands: items, ..
      }
      | ExprKind::Array(items) => items.iter().for_each(f),
      ExprKind::Ternary {
        condition,
        then,
        otherwise,
      } => {
        f(condition);
        f(then);
        f(otherwise);
      }
      ExprKind::Object(entries) => entries.iter().for_each(|(_, value)| f(value)),
    }
  }

  /// The span of the first node deeper than `MAX_DEPTH` levels, where this node is at `level`.
  ///
  /// The recursion stops at `MAX_DEPTH + 1` levels whatever the tree's height.
  pub(super) fn too_deep(&self, level: usize) -> Option<Span> {
    if level > MAX_DEPTH {
      return Some(self.span);
    }
    let mut found = None;
    self.for_each_child(|child| {
      if found.is_none() {
        found = child.too_deep(level + 1);
      }
    });
    found
  }
}

/// Prints the expression back as source, with every operator group in parentheses.
impl fmt::Display for Expr {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let list = |f: &mut fmt::Formatter<'_>, items: &[Expr]| {
      for (i, item) in items.iter().enumerate() {
        if i > 0 {
          f.write_str(", ")?;
        }
        write!(f, "{item}")?;
      }
      Ok(())
    };
    match &self.kind {
      ExprKind::Literal(Value::String(s)) => write!(f, "'{}'", s.replace('\'', "''")),
      ExprKind::Literal(value) => match value {
        Value::Null => f.write_str("null"),
        value => f.write_str(&value.to_text()),
      },
      ExprKind::Name(name) => f.write_str(name),
      ExprKind::Property { base, name } => write!(f, "{}.{name}", Base(base)),
      ExprKind::Index { base, index } => write!(f, "{}[{index}]", Base(base)),
      ExprKind::Filter { base } => write!(f, "{}.*", Base(base)),
      ExprKind::Call { name, args } => {
        write!(f, "{name}(")?;
        list(f, args)?;
        f.write_str(")")
      }
      ExprKind::Not(operand) => write!(f, "!{operand}"),
      ExprKind::Neg(operand) => write!(f, "-{operand}"),
      ExprKind::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
      ExprKind::Arith { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
      ExprKind::Logical { op, operands } => {
        f.write_str("(")?;
        for (i, operand) in operands.iter().enumerate() {
          if i > 0 {
            write!(f, " {} ", op.symbol())?;
          }
          write!(f, "{operand}")?;
        }
        f.write_str(")")
      }
      ExprKind::Ternary {
        condition,
        then,
        otherwise,
      } => write!(f, "({condition} ? {then} : {otherwise})"),
      ExprKind::Array(items) => {
        f.write_str("[")?;
        list(f, items)?;
        f.write_str("]")
      }
      ExprKind::Object(entries) => {
        f.write_str("{")?;
        for (i, (key, value)) in entries.iter().enumerate() {
          if i > 0 {
            f.write_str(", ")?;
          }
          if is_name(key) {
            write!(f, "{key}: {value}")?;
          } else {
            write!(f, "'{}': {value}", key.replace('\'', "''"))?;
          }
        }
        f.write_str("}")
      }
    }
  }
}

/// The base of a property, index or filter, in parentheses where it would otherwise read
/// differently (`(!a).b`, `(1).b`).
struct Base<'a>(&'a Expr);

impl fmt::Display for Base<'_> {
  fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    match &self.0.kind {
      ExprKind::Not(_) | ExprKind::Neg(_) | ExprKind::Literal(Value::Number(_)) => {
        write!(f, "({})", self.0)
      }
      _ => write!(f, "{}", self.0),
    }
  }
}

/// Whether `s` is a legal name: `[A-Za-z_][A-Za-z0-9_-]*`.
pub(super) fn is_name(s: &str) -> bool {
  let mut chars = s.chars();
  chars
    .next()
    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
  use super::*;

  fn paths(text: &str) -> Vec<String> {
    match parse(text) {
      Ok(expr) => expr
        .paths()
        .iter()
        .map(|p| {
          p.segments
            .iter()
            .map(|(s, span)| format!("{s}@{}", span.offset))
            .collect::<Vec<_>>()
            .join(" ")
        })
        .collect(),
      Err(e) => vec![format!("error: {e}")],
    }
  }

  #[test]
  fn paths_are_maximal_static_chains() {
    assert_eq!(paths("stages.a.outputs.x"), ["stages@0 a@7 outputs@9 x@17"]);
    assert_eq!(
      paths("stages['a'].outputs.x"),
      ["stages@0 a@7 outputs@12 x@20"]
    );
    assert_eq!(
      paths("parameters.n > 2 && env.X"),
      ["parameters@0 n@11", "env@20 X@24"]
    );
    assert_eq!(paths("a[0].b"), ["a@0 0@2 b@5"]);
    assert_eq!(
      paths("stages[parameters.s].outputs"),
      ["stages@0", "parameters@7 s@18"]
    );
    assert_eq!(paths("stages.*.outputs"), ["stages@0"]);
    assert_eq!(paths("stages.a.*.x"), ["stages@0 a@7"]);
    assert_eq!(paths("fromJSON(env.j).a"), ["env@9 j@13"]);
    assert_eq!(paths("contains(a.b, c)"), ["a@9 b@11", "c@14"]);
    assert_eq!(paths("[x, {k: y.z}]"), ["x@1", "y@8 z@10"]);
    assert!(paths("'lit' == 1").is_empty());
  }

  #[test]
  fn status_functions_are_found_anywhere() {
    let uses = |text: &str| parse(text).is_ok_and(|e| e.uses_status_function());
    assert!(uses("success()"));
    assert!(uses("FAILURE() || x"));
    assert!(uses("x ? [always()] : 1"));
    assert!(uses("!cancelled()"));
    assert!(!uses("x.success"));
    assert!(!uses("contains(x, 'success()')"));
  }

  #[test]
  fn unknown_names_are_reported_even_when_short_circuited() {
    let expr = parse("false && paramters.x || stages.a || wat").ok();
    let known = |n: &str| {
      ["parameters", "stages"]
        .iter()
        .any(|k| k.eq_ignore_ascii_case(n))
    };
    let errors = expr.map(|e| e.check_names(&known)).unwrap_or_default();
    let messages: Vec<_> = errors
      .iter()
      .map(|e| format!("{}@{}", e.kind, e.span.offset))
      .collect();
    assert_eq!(
      messages,
      [
        "unknown namespace `paramters`, did you mean `parameters`?@9",
        "unknown namespace `wat`@36",
      ]
    );
    let known_upper = parse("PARAMETERS.x").map(|e| e.check_names(&known));
    assert_eq!(known_upper, Ok(vec![]));
  }

  #[test]
  fn display_round_trips() {
    for text in [
      "(a.b == 'it''s')",
      "!x[0]",
      "(a && b && c)",
      "((a || b) && c)",
      "(c ? [1, 2.5] : {a: null, 'b c': true})",
      "format('{0}', x.*.y)",
      "(n > -Infinity)",
      "(!a).b",
      "(1).b[0].*",
      "(1E+20 < NaN)",
    ] {
      let printed = parse(text).map(|e| e.to_string());
      assert_eq!(printed.as_deref(), Ok(text));
    }
  }
}
