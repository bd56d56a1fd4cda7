//! Lua skills (docs/lua.md): a skill file is loaded once per state into its own environment,
//! its declared inputs are checked before `run` and its declared outputs after, and what `run`
//! returns becomes a [`StageResult`].
use {super::*, mlua::chunk::ChunkMode, serde_json::Value as Json};

/// A loaded skill file.
pub(super) struct Skill {
  /// The path as given: chunk name and message prefix.
  label: String,
  stamp: Stamp,
  /// The [`State::skills_epoch`] at which the file last matched `stamp`.
  checked: Cell<u64>,
  run: Function,
  info: SkillInfo,
  inputs: Vec<convert::Decl>,
  outputs: Vec<convert::Decl>,
}

/// Identifies a version of a file, so an edited skill is loaded again (`swdl watch`, the REPL's
/// `reload`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
  modified: Option<std::time::SystemTime>,
  len: u64,
}

impl Skill {
  /// What the skill declares.
  pub(super) fn info(&self) -> SkillInfo {
    self.info.clone()
  }

  /// Reads the table a skill file returned.
  fn from_value(label: String, stamp: Stamp, value: LuaValue) -> Result<Self, LuaError> {
    let invalid = |message: String| LuaError::Invalid(format!("{label}: {message}"));
    let LuaValue::Table(table) = value else {
      return Err(invalid(format!(
        "a skill file must return a table like {{ run = function(ctx, input) ... end }}, got {}",
        describe_value(&value)
      )));
    };
    let field = |name: &str| -> Result<LuaValue, LuaError> {
      table
        .get::<LuaValue>(name)
        .map_err(|e| invalid(convert::describe(&e)))
    };
    let LuaValue::Function(run) = field("run")? else {
      return Err(invalid(
        "the returned table has no `run` function: add run = function(ctx, input) ... end".into(),
      ));
    };
    let description = match field("description")? {
      LuaValue::Nil => None,
      LuaValue::String(s) => Some(s.to_string_lossy()),
      other => {
        return Err(invalid(format!(
          "`description` must be a string, got {}",
          describe_value(&other)
        )));
      }
    };
    let inputs = convert::Decl::parse_all(field("inputs")?, "inputs").map_err(invalid)?;
    let outputs = convert::Decl::parse_all(field("outputs")?, "outputs").map_err(invalid)?;
    let written = |decls: &[convert::Decl]| {
      decls
        .iter()
        .map(|d| (d.name.clone(), d.written.clone()))
        .collect()
    };
    let info = SkillInfo {
      description,
      inputs: written(&inputs),
      outputs: written(&outputs),
    };
    Ok(Self {
      label,
      stamp,
      checked: Cell::new(0),
      run,
      info,
      inputs,
      outputs,
    })
  }

  /// Checks the declared inputs against the stage's resolved `with`.
  fn check_inputs(&self, inputs: &Json) -> Result<(), LuaError> {
    for decl in &self.inputs {
      decl
        .check(inputs.get(&decl.name), "input")
        .map_err(|e| LuaError::Invalid(format!("{}: {e}", self.label)))?;
    }
    Ok(())
  }

  /// Turns what `run` returned into a result: `summary`, `artifacts` and `hints` are lifted
  /// out, the rest are the outputs, checked against the declaration.
  fn result(&self, lua: &Lua, value: LuaValue) -> Result<StageResult, LuaError> {
    let invalid = |message: String| LuaError::Invalid(format!("{}: {message}", self.label));
    let mut outputs = match &value {
      LuaValue::Nil => serde_json::Map::new(),
      LuaValue::Table(_) => match convert::to_json(lua, &value, convert::Unsupported::Fail) {
        Ok(Json::Object(map)) => map,
        Ok(Json::Array(items)) if items.is_empty() => serde_json::Map::new(),
        Ok(_) => {
          return Err(invalid(
            "run returned a list; return a table of named outputs like { words = 3 }".into(),
          ));
        }
        Err(e) => return Err(invalid(format!("run returned {}", e.describe("result")))),
      },
      other => {
        return Err(invalid(format!(
          "run must return a table of outputs (or nothing), got {}",
          describe_value(other)
        )));
      }
    };
    let summary = match outputs.remove("summary") {
      None | Some(Json::Null) => None,
      Some(Json::String(summary)) => Some(summary),
      Some(other) => {
        return Err(invalid(format!(
          "`summary` must be a string, got {}",
          convert::kind_of(&other)
        )));
      }
    };
    let mut list = |name: &str| match outputs.remove(name) {
      None | Some(Json::Null) => Ok(Vec::new()),
      Some(Json::Array(items)) => Ok(items),
      Some(Json::Object(map)) if map.is_empty() => Ok(Vec::new()),
      Some(other) => Err(invalid(format!(
        "`{name}` must be a list, got {}",
        convert::kind_of(&other)
      ))),
    };
    let artifacts = list("artifacts")?;
    let hints = list("hints")?;
    for decl in &self.outputs {
      // An empty Lua table reads as an object; it is just as much an empty list.
      if decl.kind == convert::Kind::Array
        && let Some(Json::Object(map)) = outputs.get(&decl.name)
        && map.is_empty()
      {
        outputs.insert(decl.name.clone(), Json::Array(Vec::new()));
      }
      decl
        .check(outputs.get(&decl.name), "output")
        .map_err(invalid)?;
    }
    Ok(StageResult::Completed {
      outputs,
      summary,
      artifacts,
      hints,
    })
  }
}

/// `a string "x"`, `nil`: a Lua value in a message.
fn describe_value(value: &LuaValue) -> String {
  match value {
    LuaValue::Nil => "nil".into(),
    LuaValue::String(s) => format!("a string {:?}", s.to_string_lossy()),
    LuaValue::Boolean(b) => format!("a boolean {b}"),
    LuaValue::Integer(i) => format!("a number {i}"),
    LuaValue::Number(n) => format!("a number {n}"),
    other => format!("a {}", other.type_name()),
  }
}

/// The skill at `path`, loaded into this state unless it already is and the file is unchanged.
pub(super) async fn load(state: &State, path: &Path) -> Result<Rc<Skill>, LuaError> {
  let epoch = state.skills_epoch.load(Ordering::Relaxed);
  let cached = state.skills.borrow().get(path).cloned();
  if let Some(skill) = &cached
    && skill.checked.get() == epoch
  {
    return Ok(Rc::clone(skill));
  }
  let label = path.display().to_string();
  let file_error = |e: std::io::Error| LuaError::File {
    path: label.clone(),
    message: e.to_string(),
  };
  let meta = std::fs::metadata(path).map_err(file_error)?;
  let stamp = Stamp {
    modified: meta.modified().ok(),
    len: meta.len(),
  };
  if let Some(skill) = cached
    && skill.stamp == stamp
  {
    skill.checked.set(epoch);
    return Ok(skill);
  }
  let source = std::fs::read(path).map_err(file_error)?;
  let lua = &state.lua;
  let env = state.sandbox.env().map_err(|e| state.error(&e, &label))?;
  let chunk = lua
    .load(source)
    .set_name(format!("@{label}"))
    .set_environment(env)
    .set_mode(ChunkMode::Text)
    .into_function()
    .map_err(|e| state.error(&e, &label))?;
  let value: LuaValue = call::run_thread(lua, chunk, ())
    .await
    .map_err(|e| state.error(&e, &label))?;
  let skill = Rc::new(Skill::from_value(label, stamp, value)?);
  skill.checked.set(epoch);
  state
    .skills
    .borrow_mut()
    .insert(path.to_path_buf(), Rc::clone(&skill));
  Ok(skill)
}

/// Runs one attempt of the skill at `path`.
pub(super) async fn run(
  state: &State,
  path: &Path,
  task: StageTask,
  io: TaskIo,
  cancelled: Arc<AtomicBool>,
) -> StageResult {
  let label = path.display().to_string();
  let limit = (task.timeout_ms > 0).then(|| Duration::from_millis(task.timeout_ms));
  let task = Rc::new(task);
  let mut call = Call::new(Purpose::Skill, "the stage", &label, limit, cancelled)
    .with_io(io)
    .with_names({
      let task = Rc::clone(&task);
      move || eval_names(&task)
    });
  call.permissions = task.permissions.clone();
  call.memory = Some(task.memory.clone());
  call.run = Some(task.run.clone());
  call.env = task
    .env
    .iter()
    .map(|(k, v)| (k.clone(), v.clone()))
    .chain([("SWDL_IDEMPOTENCY_KEY".into(), task.idempotency_key.clone())])
    .collect();
  let work = async {
    state.tidy();
    let skill = load(state, path).await?;
    skill.check_inputs(&task.inputs)?;
    let lua = &state.lua;
    let input = convert::to_lua(lua, &task.inputs).map_err(|e| state.error(&e, &label))?;
    let ctx = context(state, &task, &input).map_err(|e| state.error(&e, &label))?;
    let value: LuaValue = call::run_thread(lua, skill.run.clone(), (ctx, input))
      .await
      .map_err(|e| state.error(&e, &label))?;
    skill.result(lua, value)
  };
  match call::scoped(&state.heartbeat, Rc::new(call), work).await {
    Ok(result) => result,
    Err(error) => StageResult::failed(error.to_string()),
  }
}

/// `swdl.eval`'s namespaces for a skill. The task has no workflow parameters (it stays small and
/// self-contained), so `parameters` holds what the stage was called with, as `ctx.params` does.
fn eval_names(task: &StageTask) -> Json {
  serde_json::json!({
    "parameters": &*task.inputs,
    "inputs": &*task.inputs,
    "env": task.env,
    "memory": task.memory,
    "run": { "id": task.run, "attempt": task.attempt },
    "stage": { "id": task.stage, "attempt": task.attempt },
  })
}

/// The `ctx` table of one attempt. `log` and the metatable that makes `memory` and
/// `memory_text` on first use (working memory grows with the run and most skills never read it)
/// are made once per state: both act for the call running when they are used.
fn context(state: &State, task: &StageTask, input: &LuaValue) -> mlua::Result<Table> {
  let lua = &state.lua;
  let ctx = lua.create_table_with_capacity(0, 9)?;
  ctx.raw_set("run_id", task.run.as_str())?;
  ctx.raw_set("stage", task.stage.as_str())?;
  ctx.raw_set("attempt", task.attempt)?;
  ctx.raw_set("idempotency_key", task.idempotency_key.as_str())?;
  ctx.raw_set("params", input.clone())?;
  ctx.raw_set("env", env_table(lua, &task.env)?)?;
  ctx.raw_set("log", state.ctx_log.clone())?;
  ctx.set_metatable(Some(state.ctx_meta.clone()))?;
  Ok(ctx)
}

/// The metatable of every skill's `ctx`: reads `memory` and `memory_text` from the running
/// call's working memory and keeps them in the table.
pub(super) fn context_meta(lua: &Lua) -> mlua::Result<Table> {
  let meta = lua.create_table()?;
  meta.raw_set(
    "__index",
    lua.create_function(|lua, (ctx, key): (Table, LuaValue)| {
      let LuaValue::String(name) = &key else {
        return Ok(LuaValue::Nil);
      };
      let Some(memory) = call::current().and_then(|call| call.memory.clone()) else {
        return Ok(LuaValue::Nil);
      };
      let value = match &*name.as_bytes() {
        b"memory" => memory_table(lua, &memory.entries())?,
        b"memory_text" => LuaValue::String(lua.create_string(memory.text())?),
        _ => return Ok(LuaValue::Nil),
      };
      ctx.raw_set(key, value.clone())?;
      Ok(value)
    })?,
  )?;
  Ok(meta)
}

/// `ctx.env`.
pub(super) fn env_table<'a>(
  lua: &Lua,
  env: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> mlua::Result<Table> {
  let table = lua.create_table()?;
  for (key, value) in env {
    table.raw_set(key.as_str(), value.as_str())?;
  }
  Ok(table)
}

/// Working-memory entries as a Lua list.
pub(super) fn memory_table(lua: &Lua, entries: &[MemoryEntry]) -> mlua::Result<LuaValue> {
  let json = serde_json::to_value(entries).map_err(mlua::Error::external)?;
  convert::to_lua(lua, &json)
}

/// `ctx.log(...)`: joins its arguments with spaces, as one log line of the running call.
pub(super) fn log_function(lua: &Lua) -> mlua::Result<Function> {
  lua.create_function(|lua, args: mlua::Variadic<LuaValue>| {
    call::log(convert::join(lua, &args, " "));
    Ok(())
  })
}
