use super::*;

/// Where an expression's context names come from, and what its status functions report.
pub trait Context {
  /// The value of context name `name` as written (compare ignoring case); `None` if unknown.
  ///
  /// Return the same `Arc` for the same array or object each time: `==` on arrays and objects
  /// compares instances.
  fn lookup(&self, name: &str) -> Option<Value>;

  /// What `success()`, `failure()` and `cancelled()` report.
  fn status(&self) -> StatusFlags;
}

/// The answers of the status functions for the stage being evaluated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusFlags {
  /// `success()`: no ancestor failed, timed out or was cancelled.
  pub success: bool,
  /// `failure()`: some ancestor failed or timed out.
  pub failure: bool,
  /// `cancelled()`: the run is being cancelled.
  pub cancelled: bool,
}

/// A context backed by a map of names to values, looked up ignoring case.
#[derive(Debug, Clone, PartialEq)]
pub struct MapContext {
  /// The context names and their values.
  pub names: IndexMap<String, Value>,
  /// What the status functions report.
  pub status: StatusFlags,
}

impl MapContext {
  /// A context with `names`, in which `success()` is true.
  pub fn new(names: IndexMap<String, Value>) -> Self {
    Self {
      names,
      status: StatusFlags {
        success: true,
        ..StatusFlags::default()
      },
    }
  }

  /// A context whose names are the keys of a JSON object (nothing for other JSON).
  pub fn from_json(json: &serde_json::Value) -> Self {
    let names = json
      .as_object()
      .map(|map| {
        map
          .iter()
          .map(|(k, v)| (k.clone(), Value::from(v)))
          .collect()
      })
      .unwrap_or_default();
    Self::new(names)
  }

  /// This context with `name` set to `value`.
  #[must_use]
  pub fn with(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
    self.names.insert(name.into(), value.into());
    self
  }
}

impl Default for MapContext {
  fn default() -> Self {
    Self::new(IndexMap::new())
  }
}

impl Context for MapContext {
  fn lookup(&self, name: &str) -> Option<Value> {
    object_get(&self.names, name).cloned()
  }

  fn status(&self) -> StatusFlags {
    self.status
  }
}

impl Expr {
  /// Evaluates the expression against `ctx`.
  ///
  /// # Errors
  ///
  /// Only `format` (bad format string) and `fromJSON` (bad JSON) fail.
  pub fn eval(&self, ctx: &dyn Context) -> Result<Value, ExprError> {
    budgeted(|| eval(self, ctx))
  }

  /// Evaluates the expression as a stage's `if`: one that calls no status function is read as
  /// `success() && (expr)`, so it is not even evaluated once an ancestor has failed.
  ///
  /// # Errors
  ///
  /// Those of [`Expr::eval`].
  pub fn eval_condition(&self, ctx: &dyn Context) -> Result<bool, ExprError> {
    if !self.uses_status_function() && !ctx.status().success {
      return Ok(false);
    }
    Ok(self.eval(ctx)?.is_truthy())
  }
}

thread_local! {
  /// Bytes built by the evaluation running on this thread, or `None` outside one.
  static BUILT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs one evaluation with a fresh budget of [`MAX_BUILT_BYTES`]; evaluations nested inside
/// it (a template's expressions) share the outer one's.
pub(super) fn budgeted<T>(f: impl FnOnce() -> Result<T, ExprError>) -> Result<T, ExprError> {
  /// Ends the evaluation's budget however it ends, a caught panic included: a budget left
  /// behind would make every later evaluation on the thread count as nested in it.
  struct Reset;
  impl Drop for Reset {
    fn drop(&mut self) {
      BUILT.set(None);
    }
  }
  if BUILT.get().is_some() {
    return f();
  }
  BUILT.set(Some(0));
  let _reset = Reset;
  f()
}

/// Counts `bytes` of text built at `span` against the evaluation's budget.
///
/// Evaluation is synchronous, so the budget lives on the thread instead of being threaded
/// through every call; outside [`budgeted`] nothing is counted.
pub(super) fn charge(bytes: usize, span: Span) -> Result<(), ExprError> {
  let Some(used) = BUILT.get() else {
    return Ok(());
  };
  let used = used.saturating_add(bytes);
  BUILT.set(Some(used));
  if used > MAX_BUILT_BYTES {
    return Err(ExprError::new(span, ExprErrorKind::TooLarge));
  }
  Ok(())
}

/// Evaluates `expr`; recursion is bounded by the parser's depth limit.
pub(super) fn eval(expr: &Expr, ctx: &dyn Context) -> Result<Value, ExprError> {
  match &expr.kind {
    ExprKind::Literal(value) => Ok(value.clone()),
    ExprKind::Name(_)
    | ExprKind::Property { .. }
    | ExprKind::Index { .. }
    | ExprKind::Filter { .. } => eval_access(expr, ctx).map(|(value, _)| value),
    ExprKind::Call { name, args } => call(name, args, expr.span, ctx),
    ExprKind::Not(operand) => Ok(Value::Bool(!eval(operand, ctx)?.is_truthy())),
    ExprKind::Neg(operand) => Ok(Value::Number(-eval(operand, ctx)?.to_number())),
    ExprKind::Arith { op, lhs, rhs } => {
      let (a, b) = (eval(lhs, ctx)?, eval(rhs, ctx)?);
      if let (ArithOp::Add, Value::String(a), Value::String(b)) = (op, &a, &b) {
        charge(a.len() + b.len(), expr.span)?;
      }
      op.apply(&a, &b).ok_or_else(|| {
        let expr_text = format!("{lhs} {} {rhs}", op.symbol());
        ExprError::new(expr.span, ExprErrorKind::DivisionByZero { expr: expr_text })
      })
    }
    ExprKind::Binary { op, lhs, rhs } => {
      let lhs = eval(lhs, ctx)?;
      let rhs = eval(rhs, ctx)?;
      Ok(Value::Bool(op.apply(&lhs, &rhs)))
    }
    ExprKind::Logical { op, operands } => {
      let mut result = Value::Null;
      for operand in operands {
        result = eval(operand, ctx)?;
        let decided = match op {
          LogicalOp::And => !result.is_truthy(),
          LogicalOp::Or => result.is_truthy(),
        };
        if decided {
          break;
        }
      }
      Ok(result)
    }
    ExprKind::Ternary {
      condition,
      then,
      otherwise,
    } => {
      if eval(condition, ctx)?.is_truthy() {
        eval(then, ctx)
      } else {
        eval(otherwise, ctx)
      }
    }
    ExprKind::Array(items) => {
      let items = items
        .iter()
        .map(|item| eval(item, ctx))
        .collect::<Result<Vec<_>, _>>()?;
      Ok(Value::from(items))
    }
    ExprKind::Object(entries) => {
      let mut map = IndexMap::with_capacity(entries.len());
      for (key, value) in entries {
        map.insert(key.clone(), eval(value, ctx)?);
      }
      Ok(Value::from(map))
    }
  }
}

/// Evaluates an access chain; the flag says the value is the result of a filter, whose
/// later steps apply to each element (dropping misses) instead of to the array itself.
fn eval_access(expr: &Expr, ctx: &dyn Context) -> Result<(Value, bool), ExprError> {
  match &expr.kind {
    ExprKind::Name(name) => Ok((ctx.lookup(name).unwrap_or_default(), false)),
    ExprKind::Property { base, name } => {
      let (base, filtered) = eval_access(base, ctx)?;
      if filtered {
        let items = elements(&base)
          .iter()
          .filter_map(|item| item.get_ref(name).cloned())
          .collect::<Vec<_>>();
        return Ok((Value::from(items), true));
      }
      // On an array a name never reads as a position (it is not a number), so only objects.
      Ok((base.get_ref(name).cloned().unwrap_or_default(), false))
    }
    ExprKind::Index { base, index } => {
      let (base, filtered) = eval_access(base, ctx)?;
      let index = eval(index, ctx)?;
      if filtered {
        let items = elements(&base)
          .iter()
          .filter_map(|item| index_into(item, &index))
          .collect::<Vec<_>>();
        return Ok((Value::from(items), true));
      }
      Ok((index_into(&base, &index).unwrap_or_default(), false))
    }
    ExprKind::Filter { base } => {
      let (base, filtered) = eval_access(base, ctx)?;
      let items: Vec<Value> = if filtered {
        elements(&base).iter().flat_map(children).collect()
      } else {
        children(&base).collect()
      };
      Ok((Value::from(items), true))
    }
    _ => Ok((eval(expr, ctx)?, false)),
  }
}

/// The elements of an array; nothing for other values.
fn elements(value: &Value) -> &[Value] {
  match value {
    Value::Array(items) => items,
    _ => &[],
  }
}

/// What a filter yields for one value: an object's values or an array's elements.
fn children(value: &Value) -> Box<dyn Iterator<Item = Value> + '_> {
  match value {
    Value::Array(items) => Box::new(items.iter().cloned()),
    Value::Object(map) => Box::new(map.values().cloned()),
    _ => Box::new(std::iter::empty()),
  }
}

/// `value[index]` with GitHub's rules: objects take the index as text (collections never
/// match), arrays take it as a number, floored (NaN, negative or out of range misses), and
/// anything else misses.
fn index_into(value: &Value, index: &Value) -> Option<Value> {
  match value {
    Value::Object(map) if index.is_primitive() => object_get(map, &index.text()).cloned(),
    Value::Array(items) => {
      let position = index.to_number();
      if position.is_nan() || position < 0.0 {
        return None;
      }
      let position = position.floor();
      if position > f64::from(i32::MAX) {
        return None;
      }
      #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
      items.get(position as usize).cloned()
    }
    _ => None,
  }
}

#[cfg(test)]
mod tests {
  use {super::*, crate::expr::test_support::sample, serde_json::json};

  #[test]
  fn literals() {
    evals! { sample();
      "" => null, "null" => null, "true" => true, "false" => false, "1" => 1, "-1.5" => (-1.5),
      "0xff" => 255, "0o17" => 15, "1e3" => 1000, ".5" => 0.5, "'a''b'" => "a'b",
      "\"x\\ty\"" => "x\ty", "[1, 'a', null]" => [1, "a", null],
      "{a: 1, 'B': [true]}" => {"a": 1, "B": [true]}, "[]" => [], "{}" => {},
      "[parameters.n, {k: parameters.s}]" => [3, {"k": "Hello"}],
    }
    let nan = parse("NaN").and_then(|e| e.eval(&sample()));
    assert!(matches!(nan, Ok(Value::Number(n)) if n.is_nan()));
    let infinity = parse("-Infinity").and_then(|e| e.eval(&sample()));
    assert_eq!(infinity, Ok(Value::Number(f64::NEG_INFINITY)));
  }

  #[test]
  fn equality_coerces_like_github() {
    evals! { sample();
      "1 == 1" => true, "1 == 2" => false, "1 == 1.0" => true, "-0 == 0" => true,
      "'abc' == 'ABC'" => true, "'abc' != 'abd'" => true, "'a' == 'a '" => false,
      "'ÄÖ' == 'äö'" => true,
      "null == null" => true, "null == 0" => true, "null == ''" => true, "null == false" => true,
      "null == 'null'" => false,
      "true == 1" => true, "false == 0" => true, "true == 'true'" => false, "'1' == true" => true,
      "'' == 0" => true, "' 42 ' == 42" => true, "'0x10' == 16" => true, "'1e2' == 100" => true,
      "'0o10' == 8" => true, "'Infinity' == Infinity" => true, "'-Infinity' == -Infinity" => true,
      "'abc' == 0" => false, "'.5' == 0.5" => true,
      "NaN == NaN" => false, "NaN != NaN" => true, "'NaN' == NaN" => false,
      "[1] == [1]" => false, "{} == {}" => false,
      "parameters.list == parameters.list" => true, "parameters.obj == parameters.obj" => true,
      "parameters.list == 'Array'" => false, "parameters.obj != parameters.list" => true,
      "parameters.list == 0" => false, "null == parameters.list" => false,
      "stages.a.outputs.x == 'y'" => true,
    }
  }

  #[test]
  fn relational_operators_coerce_like_github() {
    evals! { sample();
      "1 < 2" => true, "2 <= 2" => true, "3 > 2" => true, "2 >= 3" => false,
      "'a' < 'B'" => true, "'B' < 'a'" => false, "'abc' < 'abd'" => true, "'a' < 'ab'" => true,
      "'ABC' >= 'abc'" => true, "'ABC' > 'abc'" => false,
      "'10' < 9" => false, "'10' < '9'" => true,
      "null < 1" => true, "null <= null" => true, "null < null" => false, "null >= 0" => true,
      "true > false" => true, "false < true" => true, "true > 0" => true, "true >= true" => true,
      "NaN < 1" => false, "NaN >= NaN" => false, "1 > NaN" => false,
      "'abc' > 0" => false, "'abc' <= 0" => false,
      "parameters.list > 0" => false, "parameters.list >= parameters.list" => true,
      "[1] < [2]" => false, "{} <= {}" => false,
      "3 < 2 < 1" => true, "1 < 2 < 3" => true, "3 > 2 > 1" => false,
      "Infinity > 1e308" => true, "-Infinity < -1e308" => true,
      "parameters.n > 2" => true, "parameters.s > 'hello'" => false,
    }
  }

  #[test]
  fn logical_operators_return_operands() {
    evals! { sample();
      "1 && 'x'" => "x", "0 && 'x'" => 0, "'' || 'default'" => "default",
      "'set' || 'default'" => "set", "null || false" => false, "null && x" => null,
      "parameters.list || 1" => [1, 2, 3], "false || 0 || ''" => "", "1 && 2 && 3" => 3,
      "true && null" => null, "parameters.missing || parameters.s" => "Hello",
      "!0" => true, "!''" => true, "!NaN" => true, "![]" => false, "!{}" => false,
      "!'false'" => false, "!!1" => true, "!null" => true, "!parameters.t" => false,
    }
  }

  #[test]
  fn ternary() {
    evals! { sample();
      "parameters.n > 2 ? 'big' : 'small'" => "big", "0 ? 1 : 2" => 2,
      "null ? 1 : null ? 2 : 3" => 3, "true ? [1] : 2" => [1], "'' ? 'a' : ''" => "",
      "parameters.f ? missing.x : {k: 1}" => {"k": 1},
    }
  }

  #[test]
  fn property_and_index_access() {
    evals! { sample();
      "parameters.n" => 3, "PARAMETERS.N" => 3, "parameters['n']" => 3,
      "parameters.missing" => null, "parameters.missing.deeper[0]" => null, "missing" => null,
      "parameters.obj.key" => "v", "parameters.obj['KEY']" => "v", "parameters.obj.n" => null,
      "parameters.list[0]" => 1, "parameters.list[2]" => 3, "parameters.list[3]" => null,
      "parameters.list[-1]" => null, "parameters.list[1.9]" => 2, "parameters.list['1']" => 2,
      "parameters.list['x']" => null, "parameters.list[true]" => 2, "parameters.list[null]" => 1,
      "parameters.list[NaN]" => null, "parameters.list[Infinity]" => null,
      "parameters.list[-0.5]" => null, "parameters.list[1e10]" => null,
      "parameters.s[0]" => null, "parameters.n.x" => null, "parameters.list.length" => null,
      "parameters.obj[parameters.list]" => null, "{a: 1}['A']" => 1, "[10, 20][1]" => 20,
      "fromJSON('{\"1\": \"one\", \"true\": 2, \"\": 3}')[1]" => "one",
      "fromJSON('{\"1\": \"one\", \"true\": 2, \"\": 3}')[true]" => 2,
      "fromJSON('{\"1\": \"one\", \"true\": 2, \"\": 3}')[null]" => 3,
      "stages['a'].outputs['x']" => "Y", "stages.a.status" => "completed",
      "stages.c.outputs.x" => null,
    }
  }

  #[test]
  fn filters() {
    evals! { sample();
      "stages.*.outputs.x" => ["Y", "z"],
      "stages.a.outputs.items.*.name" => ["x", "y"],
      "stages.a.outputs.items[*].v" => [1, 3],
      "stages.a.outputs.items.*['v']" => [1, 3],
      "parameters.list.*" => [1, 2, 3], "parameters.obj.*" => ["v", null],
      "parameters.s.*" => [], "parameters.missing.*" => [], "parameters.missing[*]" => [],
      "null.*" => [], "matrix.*[0]" => [1, 3], "matrix.*[1]" => [2], "matrix.*.*" => [1, 2, 3, 4],
      "matrix.*.k" => [4], "matrix[*]['k']" => [4], "stages.*.status" => ["completed"],
      "stages.*.outputs.*.*.name" => ["x", "y"],
      "length(stages.*.outputs.*)" => 3, "contains(stages.*.outputs.x, 'y')" => true,
      "stages.*.outputs.x[0]" => [], "[[1], [2, 3]].*[1]" => [3],
      "stages.a.outputs.items.*.name == stages.a.outputs.items.*.name" => false,
    }
  }

  #[test]
  fn conditions_without_status_functions_require_success() {
    let condition = |text: &str, ctx: &MapContext| parse(text).and_then(|e| e.eval_condition(ctx));
    let ok = sample();
    let mut failed = sample();
    failed.status = StatusFlags {
      success: false,
      failure: true,
      cancelled: false,
    };
    assert_eq!(condition("parameters.n > 2", &ok), Ok(true));
    assert_eq!(condition("parameters.n > 2", &failed), Ok(false));
    // Not evaluated at all after a failure, so its error does not surface.
    assert_eq!(condition("fromJSON('{')", &failed), Ok(false));
    assert_eq!(condition("always() && parameters.n > 2", &failed), Ok(true));
    assert_eq!(condition("failure()", &failed), Ok(true));
    assert_eq!(condition("success() || parameters.t", &failed), Ok(true));
    assert_eq!(condition("''", &ok), Ok(false));
  }

  #[test]
  fn map_context_ignores_case_and_reports_status() {
    let ctx = MapContext::default().with("Env", json!({"A": 1}));
    evals! { ctx; "env.a" => 1, "ENV['A']" => 1, "success()" => true, "failure()" => false };
    let mut failed = ctx.clone();
    failed.status = StatusFlags {
      success: false,
      failure: true,
      cancelled: true,
    };
    evals! { failed; "success()" => false, "failure()" => true, "cancelled()" => true, "always()" => true };
  }
}
