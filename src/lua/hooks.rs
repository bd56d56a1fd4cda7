//! Hook files (docs/lua.md): loading them, and calling the approval policies and recovery
//! strategies they register, reading back what those return.
use {
  super::*,
  api::HookKind,
  mlua::{MultiValue, chunk::ChunkMode},
  serde_json::{Value as Json, json},
};

/// Loads one hook file into its own environment.
pub(super) async fn load(state: &State, file: &HookFile) -> Result<(), LuaError> {
  let call = Call::new(
    Purpose::HookFile,
    format!("hook file {}", file.label),
    &file.label,
    Some(HOOK_TIMEOUT),
    Arc::new(AtomicBool::new(false)),
  );
  let work = async {
    let lua = &state.lua;
    let env = state
      .sandbox
      .env()
      .map_err(|e| state.error(&e, &file.label))?;
    let chunk = lua
      .load(file.source.as_str())
      .set_name(format!("@{}", file.label))
      .set_environment(env)
      .set_mode(ChunkMode::Text)
      .into_function()
      .map_err(|e| state.error(&e, &file.label))?;
    call::run_thread::<()>(lua, chunk, ())
      .await
      .map_err(|e| state.error(&e, &file.label))
  };
  call::scoped(&state.heartbeat, Rc::new(call), work).await
}

/// The registered function `name` of `kind`, and the file that registered it.
fn lookup(state: &State, kind: HookKind, name: &str) -> Result<(Function, String), LuaError> {
  let file = state
    .lua
    .app_data_ref::<api::HookNames>()
    .and_then(|names| {
      let list = match kind {
        HookKind::Policy => &names.policies,
        HookKind::Recovery => &names.recoveries,
      };
      list
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, file)| file.clone())
    });
  let registry: Option<Table> = state.lua.named_registry_value(kind.registry_key()).ok();
  let function = registry.and_then(|r| r.raw_get::<Option<Function>>(name).ok().flatten());
  match (function, file) {
    (Some(function), Some(file)) => Ok((function, file)),
    _ => Err(LuaError::Unknown {
      kind: kind.noun(),
      name: name.to_string(),
      suggestion: None,
    }),
  }
}

/// Calls policy `name` with `(stage, ctx)`.
pub(super) async fn decide(
  state: &State,
  name: &str,
  stage: PolicyStage,
  cancelled: Arc<AtomicBool>,
) -> Result<PolicyDecision, LuaError> {
  let (function, file) = lookup(state, HookKind::Policy, name)?;
  let what = format!("policy `{name}`");
  let gate = json!({
    "id": stage.id,
    "kind": stage.kind,
    "risk": stage.risk,
    "uses": stage.uses,
    "message": stage.message,
  });
  let names = json!({
    "gate": gate,
    "parameters": stage.params,
    "memory": stage.memory,
    "run": { "id": stage.run_id },
  });
  let call = Call::new(Purpose::Hook, &what, &what, Some(HOOK_TIMEOUT), cancelled)
    .with_names(move || names.clone());
  let work = async {
    state.tidy();
    let lua = &state.lua;
    let error = |e: mlua::Error| state.error(&e, &file);
    let gate = convert::to_lua(lua, &gate).map_err(error)?;
    let ctx = hook_ctx(state, &stage.run_id, &stage.params, &stage.memory).map_err(error)?;
    let values: MultiValue = call::run_thread(lua, function, (gate, ctx))
      .await
      .map_err(error)?;
    decision(lua, &what, &file, &values)
  };
  call::scoped(&state.heartbeat, Rc::new(call), work).await
}

/// The `ctx` a policy or recovery strategy gets: `run_id`, `params`, `memory`, `memory_text`
/// and `log`.
fn hook_ctx(
  state: &State,
  run_id: &str,
  params: &Json,
  memory: &[MemoryEntry],
) -> mlua::Result<mlua::Table> {
  let lua = &state.lua;
  let ctx = lua.create_table()?;
  ctx.raw_set("run_id", run_id)?;
  ctx.raw_set("params", convert::to_lua(lua, params)?)?;
  ctx.raw_set("memory", skill::memory_table(lua, memory)?)?;
  ctx.raw_set("memory_text", memory_text(memory))?;
  ctx.raw_set("log", state.ctx_log.clone())?;
  Ok(ctx)
}

/// `stage [status] summary` lines, as [`executor::MemoryView::text`] writes them.
fn memory_text(entries: &[MemoryEntry]) -> String {
  let memory = executor::Memory::default();
  for entry in entries {
    memory.push(entry.clone());
  }
  memory.view().text()
}

/// Reads `return "approve"|"reject"|"ask" [, reason]`.
fn decision(
  lua: &Lua,
  what: &str,
  file: &str,
  values: &MultiValue,
) -> Result<PolicyDecision, LuaError> {
  let mut values = values.iter();
  let first = values.next().cloned().unwrap_or(LuaValue::Nil);
  let reason = match values.next() {
    None | Some(LuaValue::Nil) => None,
    Some(reason) => Some(convert::display(lua, reason)),
  };
  let answer = match &first {
    LuaValue::String(s) => s.to_string_lossy().to_ascii_lowercase(),
    _ => String::new(),
  };
  match answer.as_str() {
    "approve" => Ok(PolicyDecision::Approve { reason }),
    "reject" => Ok(PolicyDecision::Reject { reason }),
    "ask" => Ok(PolicyDecision::Ask { reason }),
    _ => Err(LuaError::Invalid(format!(
      "{what} ({file}) returned {}: return \"approve\", \"reject\" or \"ask\", optionally followed \
       by a reason",
      shown(lua, &first)
    ))),
  }
}

/// `nil`, `"maybe"`, `a table`: a returned value in a message.
fn shown(lua: &Lua, value: &LuaValue) -> String {
  match value {
    LuaValue::Nil => "nothing".into(),
    LuaValue::String(s) => format!("{:?}", s.to_string_lossy()),
    LuaValue::Table(_) | LuaValue::Function(_) | LuaValue::Thread(_) | LuaValue::UserData(_) => {
      format!("a {}", value.type_name())
    }
    other => convert::display(lua, other),
  }
}

/// Calls recovery strategy `name` with `(failure, ctx)`.
pub(super) async fn recover(
  state: &State,
  name: &str,
  failure: Failure,
  cancelled: Arc<AtomicBool>,
) -> Result<RecoveryAction, LuaError> {
  let (function, file) = lookup(state, HookKind::Recovery, name)?;
  let what = format!("recovery strategy `{name}`");
  let failure_json = serde_json::to_value(&failure).unwrap_or(Json::Null);
  let names = json!({
    "failure": failure_json,
    "inputs": failure.inputs,
    "run": { "id": failure.run_id, "attempt": failure.attempt },
  });
  let call = Call::new(Purpose::Hook, &what, &what, Some(HOOK_TIMEOUT), cancelled)
    .with_names(move || names.clone());
  let work = async {
    state.tidy();
    let lua = &state.lua;
    let error = |e: mlua::Error| state.error(&e, &file);
    let argument = convert::to_lua(lua, &failure_json).map_err(error)?;
    let ctx = hook_ctx(state, &failure.run_id, &failure.params, &failure.memory).map_err(error)?;
    ctx
      .raw_set("stage", failure.stage.as_str())
      .map_err(error)?;
    ctx.raw_set("attempt", failure.attempt).map_err(error)?;
    let value: LuaValue = call::run_thread(lua, function, (argument, ctx))
      .await
      .map_err(error)?;
    action(lua, &what, &file, &value)
  };
  call::scoped(&state.heartbeat, Rc::new(call), work).await
}

/// The actions a recovery strategy may return, with the fields each takes.
const ACTIONS: &[(&str, &[&str])] = &[
  ("retry", &["delay", "with"]),
  ("fallback", &["uses"]),
  ("skip", &[]),
  ("abort", &[]),
  ("compensate", &[]),
];

/// Reads `{ action = "retry", delay = "2s", with = {...} }` (or just `"skip"`).
fn action(lua: &Lua, what: &str, file: &str, value: &LuaValue) -> Result<RecoveryAction, LuaError> {
  let invalid = |message: String| LuaError::Invalid(format!("{what} ({file}) {message}"));
  let usage = "return a table like { action = \"retry\", delay = \"2s\" } or { action = \
               \"fallback\", uses = \"skill\" }, or \"skip\", \"abort\" or \"compensate\"";
  let (action, table) = match value {
    LuaValue::String(s) => (s.to_string_lossy(), None),
    LuaValue::Table(table) => match table.raw_get::<LuaValue>("action") {
      Ok(LuaValue::String(s)) => (s.to_string_lossy(), Some(table)),
      Ok(LuaValue::Nil) => {
        return Err(invalid(format!(
          "returned a table without `action`: {usage}"
        )));
      }
      Ok(other) => {
        return Err(invalid(format!(
          "returned `action` = {}: {usage}",
          shown(lua, &other)
        )));
      }
      Err(e) => return Err(invalid(convert::describe(&e))),
    },
    other => return Err(invalid(format!("returned {}: {usage}", shown(lua, other)))),
  };
  let Some((_, fields)) = ACTIONS.iter().find(|(name, _)| *name == action) else {
    let names = ACTIONS.iter().map(|(name, _)| *name);
    let hint = crate::suggest::suggest(&action, names)
      .map(|s| format!(" (did you mean \"{s}\"?)"))
      .unwrap_or_default();
    return Err(invalid(format!(
      "returned unknown action \"{action}\"{hint}: {usage}"
    )));
  };
  let mut given = serde_json::Map::new();
  if let Some(table) = table {
    let json = convert::to_json(
      lua,
      &LuaValue::Table(table.clone()),
      convert::Unsupported::Fail,
    )
    .map_err(|e| invalid(format!("returned {}", e.describe("result"))))?;
    if let Json::Object(map) = json {
      given = map;
    }
    given.remove("action");
    for key in given.keys() {
      if !fields.contains(&key.as_str()) {
        let hint = crate::suggest::hint(key, fields.iter().copied());
        let allowed = if fields.is_empty() {
          "takes no other fields".to_string()
        } else {
          format!(
            "takes {}",
            fields
              .iter()
              .map(|f| format!("`{f}`"))
              .collect::<Vec<_>>()
              .join(" and ")
          )
        };
        return Err(invalid(format!(
          "returned unknown field `{key}`{hint}: action \"{action}\" {allowed}"
        )));
      }
    }
  }
  match action.as_str() {
    "retry" => {
      let delay = match table.map(|t| t.raw_get::<LuaValue>("delay")) {
        None | Some(Ok(LuaValue::Nil)) => None,
        Some(Ok(delay)) => Some(
          api::lua_duration(&delay).map_err(|e| invalid(format!("returned a bad `delay`: {e}")))?,
        ),
        Some(Err(e)) => return Err(invalid(convert::describe(&e))),
      };
      let with = match given.remove("with") {
        None | Some(Json::Null) => None,
        Some(Json::Object(map)) => Some(map),
        Some(Json::Array(items)) if items.is_empty() => Some(serde_json::Map::new()),
        Some(other) => {
          return Err(invalid(format!(
            "returned `with` as {}: it must be a table of inputs",
            convert::kind_of(&other)
          )));
        }
      };
      Ok(RecoveryAction::Retry { delay, with })
    }
    "fallback" => match given.remove("uses") {
      Some(Json::String(uses)) if !uses.trim().is_empty() => Ok(RecoveryAction::Fallback { uses }),
      _ => Err(invalid(
        "returned action \"fallback\" without `uses`: name the skill to fall back to".into(),
      )),
    },
    "skip" => Ok(RecoveryAction::Skip),
    "abort" => Ok(RecoveryAction::Abort),
    _ => Ok(RecoveryAction::Compensate),
  }
}

/// Runs `code` in the REPL's environment (the same on every call, on the first state): as an
/// expression if it is one, else as statements.
pub(super) async fn eval(
  state: &State,
  code: &str,
  cancelled: Arc<AtomicBool>,
) -> Result<Json, LuaError> {
  let call = Call::new(
    Purpose::Eval,
    "the Lua code",
    "lua",
    Some(HOOK_TIMEOUT),
    cancelled,
  );
  let work = async {
    state.tidy();
    let lua = &state.lua;
    let error = |e: mlua::Error| state.error(&e, "lua");
    let env = state.repl_env().map_err(error)?;
    let load = |text: &str| {
      lua
        .load(text)
        .set_name("=lua")
        .set_environment(env.clone())
        .set_mode(ChunkMode::Text)
        .into_function()
    };
    let function = match load(&format!("return {code}")) {
      Ok(function) => function,
      Err(_) => load(code).map_err(error)?,
    };
    let values: MultiValue = call::run_thread(lua, function, ()).await.map_err(error)?;
    let mut values: Vec<Json> = values
      .iter()
      .map(|value| convert::to_json(lua, value, convert::Unsupported::Describe))
      .collect::<Result<_, _>>()
      .map_err(|e| LuaError::Invalid(e.describe("result")))?;
    Ok(match values.len() {
      0 => Json::Null,
      1 => values.remove(0),
      _ => Json::Array(values),
    })
  };
  call::scoped(&state.heartbeat, Rc::new(call), work).await
}

/// What the skill at `path` declares, loading it if needed.
pub(super) async fn skill_info(
  state: &State,
  path: &Path,
  cancelled: Arc<AtomicBool>,
) -> Result<SkillInfo, LuaError> {
  let label = path.display().to_string();
  let call = Call::new(
    Purpose::Skill,
    format!("loading {label}"),
    &label,
    Some(HOOK_TIMEOUT),
    cancelled,
  );
  let work = async {
    state.tidy();
    Ok(skill::load(state, path).await?.info())
  };
  call::scoped(&state.heartbeat, Rc::new(call), work).await
}
