//! The expression scope of a stage: `parameters`, `env`, `run`, `workflow`, the `stages` it
//! reads and `memory`, plus resolving inputs against it.
use super::machine::{Core, Stop};
use super::*;
use crate::{
  executor::Memory,
  expr::{Context, StatusFlags, Value},
  workflow::{Input, Workflow},
};

/// A stage's `env` resolved: as its expressions see it and as its task's variables.
pub(super) struct StageEnv {
  /// `env.*`.
  pub(super) value: Value,
  /// The variables, as text.
  pub(super) strings: IndexMap<String, String>,
}

/// The parts of every scope that do not depend on the stage.
#[derive(Debug, Default)]
pub(super) struct Scope {
  params: Value,
  pub(super) env: Value,
  /// `config.env` as strings, for tasks.
  pub(super) env_strings: IndexMap<String, String>,
  run: Value,
  workflow: Value,
}

impl Scope {
  pub(super) fn new(workflow: &Workflow, options: &CoreOptions) -> Self {
    Self {
      params: Value::from(serde_json::Value::Object(
        options.params.clone().into_iter().collect(),
      )),
      env: Value::Null,
      env_strings: IndexMap::new(),
      run: Value::Null,
      workflow: object([
        ("name", Value::from(workflow.name.as_str())),
        (
          "version",
          workflow.version.as_deref().map_or(Value::Null, Value::from),
        ),
      ]),
    }
  }

  /// Sets `run`: its id, when it started, and how many times it has been run.
  pub(super) fn set_run(&mut self, id: &str, started_at: &str, attempt: u32) {
    self.run = object([
      ("id", Value::from(id)),
      ("started_at", Value::from(started_at)),
      ("attempt", Value::Number(f64::from(attempt))),
    ]);
  }
}

impl CoreOptions {
  /// Parameters as user code may see them: secrets masked.
  pub(super) fn masked_params(&self) -> serde_json::Value {
    let mut params = serde_json::Value::Object(self.params.clone().into_iter().collect());
    self.masker.mask_params(&mut params);
    params
  }
}

impl Core {
  /// Resolves `config.env` once, against parameters, run and workflow.
  pub(super) fn resolve_env(&mut self) {
    let mut values: IndexMap<String, Value> = IndexMap::new();
    let mut strings = IndexMap::new();
    let workflow = Arc::clone(&self.workflow);
    for (key, input) in &workflow.config.env {
      let ctx = self.context_with(
        Value::Object(Arc::new(values.clone())),
        Value::Null,
        StatusFlags::default(),
      );
      match resolve_input(input, &ctx, &workflow.source) {
        Ok(v) => {
          let value = Value::from(v);
          strings.insert(key.clone(), value.to_text());
          values.insert(key.clone(), value);
        }
        Err(failure) => self.fail_run(
          None,
          RunError::Env {
            key: key.clone(),
            failure,
          },
        ),
      }
    }
    self.scope.env = Value::Object(Arc::new(values));
    self.scope.env_strings = strings;
  }

  /// `env` as stage `i` sees it: `config.env` plus the stage's own `env`, each entry
  /// resolved in order against the stage's context (so it may read the entries before it),
  /// with the same values as strings for its task. `None` for a stage without `env`.
  pub(super) fn stage_env(&self, i: usize) -> Result<Option<StageEnv>, RunError> {
    let stage = &self.workflow.stages[self.stage_of(i)];
    if stage.env.is_empty() {
      return Ok(None);
    }
    let mut values = match &self.scope.env {
      Value::Object(map) => (**map).clone(),
      _ => IndexMap::new(),
    };
    let mut strings = self.scope.env_strings.clone();
    for (key, input) in &stage.env {
      let ctx = self.context_of(i, Value::Object(Arc::new(values.clone())), self.flags(i));
      let value = resolve_input(input, &ctx, &self.workflow.source).map_err(|failure| {
        RunError::StageEnv {
          key: key.clone(),
          failure,
        }
      })?;
      let value = Value::from(value);
      strings.insert(key.clone(), value.to_text());
      values.insert(key.clone(), value);
    }
    Ok(Some(StageEnv {
      value: Value::Object(Arc::new(values)),
      strings,
    }))
  }

  pub(super) fn context_with(
    &self,
    env: Value,
    stages: Value,
    status: StatusFlags,
  ) -> StageContext {
    StageContext {
      params: self.scope.params.clone(),
      env,
      run: self.scope.run.clone(),
      workflow: self.scope.workflow.clone(),
      stages,
      memory_log: self.memory.clone(),
      status,
      item: None,
    }
  }

  /// The expression context of stage `i`: only the stages it reads are built into `stages`,
  /// and `env` includes the stage's own (its entries were resolved once before, when the
  /// stage became ready, where a failing one failed the stage).
  pub(super) fn context(&self, i: usize, status: StatusFlags) -> StageContext {
    let env = match self.stage_env(i) {
      Ok(Some(env)) => env.value,
      Ok(None) | Err(_) => self.scope.env.clone(),
    };
    self.context_of(i, env, status)
  }

  /// [`Core::context`] with `env` given.
  fn context_of(&self, i: usize, env: Value, status: StatusFlags) -> StageContext {
    let reads = &self.workflow.reads()[self.stage_of(i)];
    let mut stages = IndexMap::new();
    let visible: Box<dyn Iterator<Item = usize>> = if reads.all {
      Box::new(0..self.workflow.stages.len())
    } else {
      Box::new(reads.stages.iter().copied())
    };
    for r in visible {
      stages.insert(self.workflow.stages[r].id.clone(), self.stage_value(r));
    }
    let mut ctx = self.context_with(env, Value::Object(Arc::new(stages)), status);
    ctx.item = self.item_of(i);
    ctx
  }

  /// `stages.<id>` for any stage: settled ones have their cached value.
  pub(super) fn stage_value(&self, i: usize) -> Value {
    if self.slots[i].settled {
      return self.slots[i].value.clone();
    }
    object([
      ("outputs", Value::Null),
      ("status", Value::from(self.status(i).as_str())),
      ("attempts", Value::Number(f64::from(self.slots[i].attempts))),
    ])
  }

  /// `success()`, `failure()` and `cancelled()` as stage `i` sees them.
  pub(super) fn flags(&self, i: usize) -> StatusFlags {
    let slot = &self.slots[self.stage_of(i)];
    StatusFlags {
      success: !slot.upstream_failed && !slot.upstream_cancelled,
      failure: slot.upstream_failed,
      cancelled: self.stop == Some(Stop::Cancel),
    }
  }
}

pub(super) fn risk_name(risk: workflow::Risk) -> &'static str {
  match risk {
    workflow::Risk::Low => "low",
    workflow::Risk::Medium => "medium",
    workflow::Risk::High => "high",
    workflow::Risk::Critical => "critical",
  }
}

pub(super) fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
  Value::Object(Arc::new(
    fields
      .into_iter()
      .map(|(k, v)| (k.to_string(), v))
      .collect(),
  ))
}

/// Whether an expression calls one of the named status functions.
pub(super) fn calls_any(e: &expr::Expr, names: &[&str]) -> bool {
  if let expr::ExprKind::Call { name, .. } = &e.kind
    && names.iter().any(|n| n.eq_ignore_ascii_case(name))
  {
    return true;
  }
  let mut found = false;
  e.for_each_child(|child| found = found || calls_any(child, names));
  found
}

/// Evaluates every input of a `with` into one JSON object; `source` is the workflow file, for
/// the position of a failing expression.
pub(super) fn resolve_with(
  with: &IndexMap<String, Input>,
  ctx: &dyn Context,
  source: &Source,
) -> Result<serde_json::Value, ExprFailure> {
  let mut out = serde_json::Map::with_capacity(with.len());
  for (key, input) in with {
    out.insert(key.clone(), resolve_input(input, ctx, source)?);
  }
  Ok(serde_json::Value::Object(out))
}

/// Evaluates the expressions in one input; literals are returned as they are.
pub(super) fn resolve_input(
  input: &Input,
  ctx: &dyn Context,
  source: &Source,
) -> Result<serde_json::Value, ExprFailure> {
  Ok(match input {
    Input::Literal(v) => v.clone(),
    Input::Expr(e) => e
      .template
      .eval(ctx)
      .map_err(|error| ExprFailure::new(e, error, source))?
      .to_json(),
    Input::List(items) => serde_json::Value::Array(
      items
        .iter()
        .map(|i| resolve_input(i, ctx, source))
        .collect::<Result<_, _>>()?,
    ),
    Input::Map(entries) => serde_json::Value::Object(
      entries
        .iter()
        .map(|(k, v)| Ok((k.clone(), resolve_input(v, ctx, source)?)))
        .collect::<Result<_, ExprFailure>>()?,
    ),
  })
}

/// The expression context of one evaluation.
pub(super) struct StageContext {
  params: Value,
  env: Value,
  run: Value,
  workflow: Value,
  stages: Value,
  memory_log: Memory,
  status: StatusFlags,
  /// For an item of a fanned-out stage: `item`, `index`, and whether `matrix` is the item too.
  item: Option<(Value, usize, bool)>,
}

impl StageContext {
  /// Makes stage `id` visible under `stages` too.
  pub(super) fn add_stage(&mut self, id: &str, value: Value) {
    if let Value::Object(stages) = &mut self.stages {
      Arc::make_mut(stages).insert(id.to_string(), value);
    }
  }
}

impl Context for StageContext {
  fn lookup(&self, name: &str) -> Option<Value> {
    let value = match name.to_ascii_lowercase().as_str() {
      "parameters" => self.params.clone(),
      "env" => self.env.clone(),
      "run" => self.run.clone(),
      "workflow" => self.workflow.clone(),
      "stages" => self.stages.clone(),
      // Built on use: most expressions never read memory.
      "memory" => Value::from(serde_json::to_value(self.memory_log.view()).unwrap_or_default()),
      "item" => self.item.as_ref()?.0.clone(),
      "index" => Value::Number(self.item.as_ref()?.1 as f64),
      "matrix" => match &self.item {
        Some((value, _, true)) => value.clone(),
        _ => return None,
      },
      _ => return None,
    };
    Some(value)
  }

  fn status(&self) -> StatusFlags {
    self.status
  }
}
