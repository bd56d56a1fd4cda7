//! Sandboxed environments (docs/lua.md, "The sandbox"): what Lua code may touch, and clear messages for
//! what it may not. The environment itself is built by `sandbox.lua`; this file opens the state
//! with a restricted set of libraries and hands that chunk the few natives it needs.
use {
  super::*,
  mlua::{LuaOptions, StdLib, Variadic, chunk::ChunkMode},
};

/// The prelude that builds environments, run once per state.
const PRELUDE: &str = include_str!("sandbox.lua");

/// Libraries a state opens. `os` is trimmed to its clock functions by the prelude; `io`,
/// `debug` and `package` are never opened (mlua always opens the base library).
fn libraries() -> StdLib {
  StdLib::COROUTINE | StdLib::TABLE | StdLib::STRING | StdLib::UTF8 | StdLib::MATH | StdLib::OS
}

/// Makes the environments skills and hooks run in.
pub(super) struct Sandbox {
  new_env: Function,
}

impl Sandbox {
  /// Opens a state limited to `memory_limit` bytes, with the `swdl` module and the sandbox.
  pub(super) fn open(memory_limit: usize) -> mlua::Result<(Lua, Self)> {
    let lua = Lua::new_with(libraries(), LuaOptions::new())?;
    lua.set_memory_limit(memory_limit)?;
    // Almost everything a call makes (its `ctx`, inputs, outputs) is garbage once it returns,
    // which is the case generational collection is for.
    lua.gc_set_mode(mlua::state::GcMode::Generational(
      mlua::state::GcGenParams::default(),
    ));
    convert::install(&lua)?;
    let swdl = lua.create_table()?;
    api::register(&lua, &swdl, memory_limit)?;
    let natives = lua.create_table()?;
    natives.set("swdl", swdl)?;
    natives.set(
      "stopping",
      lua.create_function(|_, ()| Ok(call::stopping()))?,
    )?;
    natives.set(
      "print",
      lua.create_function(|lua, args: Variadic<LuaValue>| {
        call::log(convert::join(lua, &args, "\t"));
        Ok(())
      })?,
    )?;
    natives.set("rep", safe_rep(&lua, memory_limit)?)?;
    let stdlib = lua.create_table()?;
    for (name, source) in STDLIB {
      stdlib.set(*name, *source)?;
    }
    natives.set("stdlib", stdlib)?;
    natives.set("stdlib_names", stdlib_names())?;
    let new_env = lua
      .load(PRELUDE)
      .set_name("=[swdl sandbox]")
      .set_mode(ChunkMode::Text)
      .call::<Function>(natives)?;
    Ok((lua, Self { new_env }))
  }

  /// A fresh environment: its own globals, its own copies of the libraries and `swdl`.
  pub(super) fn env(&self) -> mlua::Result<Table> {
    self.new_env.call(())
  }
}

/// `retry, circuit_breaker and policies`, for the message of an unknown `swdl.<name>`.
fn stdlib_names() -> String {
  let names: Vec<&str> = STDLIB.iter().map(|(name, _)| *name).collect();
  match names.as_slice() {
    [] => "no modules".into(),
    [one] => (*one).into(),
    [init @ .., last] => format!("{} and {last}", init.join(", ")),
  }
}

/// `string.rep` refusing results larger than the memory limit. The original runs inside C,
/// where no instruction hook fires, so `string.rep("x", 1e12)` would otherwise hang or exhaust
/// memory before any timeout could stop it.
fn safe_rep(lua: &Lua, memory_limit: usize) -> mlua::Result<Function> {
  let strings: Table = lua.globals().get("string")?;
  let original: Function = strings.get("rep")?;
  lua.create_function(
    move |_,
          (text, count, separator): (mlua::LuaString, mlua::Integer, Option<mlua::LuaString>)| {
      if count > 0 {
        let count = u128::try_from(count).unwrap_or(0);
        let text_len = text.as_bytes().len() as u128;
        let separator_len = separator.as_ref().map_or(0, |s| s.as_bytes().len() as u128);
        let total = text_len * count + separator_len * (count - 1);
        if total > memory_limit as u128 {
          return Err(mlua::Error::runtime(format!(
            "string.rep: the result would take {total} bytes, more than the Lua memory limit of {}",
            human_bytes(memory_limit)
          )));
        }
      }
      original.call::<mlua::LuaString>((text, count, separator))
    },
  )
}

/// `256 MiB`.
pub(super) fn human_bytes(bytes: usize) -> String {
  const MIB: usize = 1024 * 1024;
  if bytes >= MIB && bytes.is_multiple_of(MIB) {
    format!("{} MiB", bytes / MIB)
  } else {
    format!("{bytes} bytes")
  }
}
