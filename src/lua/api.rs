//! The `swdl` module Lua code sees (docs/lua.md, "The swdl module"), one `register` function per area. What a
//! call may do (`exec`, `fs`) is decided when a function is called, from the current call's
//! grants, so one module table serves every skill.
use {
  super::*,
  mlua::Variadic,
  std::process::Stdio,
  tokio::io::{AsyncRead, AsyncWriteExt},
};

/// How much of each of a `swdl.exec` process's streams is kept.
const CAPTURE_LIMIT: usize = 8 * 1024 * 1024;

/// Adds every area of the module to `swdl`.
pub(super) fn register(lua: &Lua, swdl: &Table, memory_limit: usize) -> mlua::Result<()> {
  swdl.set("version", env!("CARGO_PKG_VERSION"))?;
  sleep(lua, swdl)?;
  json(lua, swdl)?;
  log(lua, swdl)?;
  eval(lua, swdl)?;
  exec(lua, swdl)?;
  fs(lua, swdl, memory_limit)?;
  net(lua, swdl)?;
  hooks(lua, swdl)
}

/// A Lua error with `message`.
fn fail<T>(message: impl Into<String>) -> mlua::Result<T> {
  Err(mlua::Error::runtime(message.into()))
}

/// `swdl.sleep(d)`: waits without holding the state, so other calls run meanwhile.
fn sleep(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let sleep = lua.create_async_function(|_, duration: LuaValue| {
    let duration = lua_duration(&duration).map_err(|e| format!("swdl.sleep: {e}"));
    async move {
      tokio::time::sleep(duration.map_err(mlua::Error::runtime)?).await;
      Ok(())
    }
  })?;
  swdl.set("sleep", sleep)
}

/// A duration from Lua: a number of milliseconds, a string of digits (milliseconds too, as in
/// the `sleep` skill) or a duration string like `250ms` or `1m30s`.
#[expect(
  clippy::cast_possible_truncation,
  clippy::cast_sign_loss,
  reason = "finite, non-negative and rounded just before"
)]
pub(super) fn lua_duration(value: &LuaValue) -> Result<Duration, String> {
  let millis = |ms: f64| {
    if ms.is_finite() && ms >= 0.0 {
      Ok(Duration::from_millis(ms.round() as u64))
    } else {
      Err(format!(
        "a duration must be a non-negative number of milliseconds, got {ms}"
      ))
    }
  };
  match value {
    LuaValue::Integer(ms) => u64::try_from(*ms)
      .map(Duration::from_millis)
      .map_err(|_| format!("a duration must not be negative, got {ms}")),
    LuaValue::Number(ms) => millis(*ms),
    LuaValue::String(text) => {
      let text = text.to_string_lossy();
      // Workflow files read bare digits as seconds, Lua numbers are milliseconds: a string
      // of digits could mean either, so it means neither.
      if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Err(format!(
          "duration \"{text}\" has no unit: write \"{text}ms\" or \"{text}s\", or the number {text} for milliseconds"
        ))
      } else {
        duration::parse_duration(&text).map_err(|e| {
          if e.contains("too large") {
            e
          } else {
            format!(
              "invalid duration `{text}`: use a number of milliseconds or a string like \"250ms\", \
               \"30s\" or \"1h30m\""
            )
          }
        })
      }
    }
    other => Err(format!(
      "a duration must be a number of milliseconds or a string like \"250ms\", got a {}",
      other.type_name()
    )),
  }
}

/// `swdl.json`: `encode(v [, {pretty = true}])`, `decode(s)`, `null` and `array(t)`.
fn json(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let json = lua.create_table()?;
  json.set(
    "encode",
    lua.create_function(|lua, (value, options): (LuaValue, Option<Table>)| {
      let value = convert::to_json(lua, &value, convert::Unsupported::Fail)
        .map_err(|e| mlua::Error::runtime(format!("swdl.json.encode: {}", e.describe("value"))))?;
      let pretty = match &options {
        Some(options) => options.get::<Option<bool>>("pretty")?.unwrap_or(false),
        None => false,
      };
      let text = if pretty {
        serde_json::to_string_pretty(&value)
      } else {
        serde_json::to_string(&value)
      };
      text.map_err(|e| mlua::Error::runtime(format!("swdl.json.encode: {e}")))
    })?,
  )?;
  json.set(
    "decode",
    lua.create_function(|lua, text: mlua::LuaString| {
      let value: serde_json::Value = serde_json::from_slice(&text.as_bytes())
        .map_err(|e| mlua::Error::runtime(format!("swdl.json.decode: {e}")))?;
      convert::to_lua(lua, &value)
    })?,
  )?;
  json.set("null", LuaValue::NULL)?;
  json.set(
    "array",
    lua.create_function(|lua, table: Option<Table>| {
      let table = match table {
        Some(table) => table,
        None => lua.create_table()?,
      };
      table.set_metatable(Some(convert::array_metatable(lua)?))?;
      Ok(table)
    })?,
  )?;
  swdl.set("json", json)
}

/// `swdl.log(...)`: like `ctx.log`, for code that has no `ctx` at hand.
fn log(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let log = lua.create_function(|lua, args: Variadic<LuaValue>| {
    call::log(convert::join(lua, &args, " "));
    Ok(())
  })?;
  swdl.set("log", log)
}

/// `swdl.eval(expr)`: a swdl expression against the current call's namespaces.
fn eval(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let eval = lua.create_function(|lua, text: String| {
    let Some(call) = call::current() else {
      return fail("swdl.eval can only be used while a skill, policy or recovery strategy runs");
    };
    let value = call.eval(&text).map_err(mlua::Error::runtime)?;
    convert::to_lua(lua, &value.to_json())
  })?;
  swdl.set("eval", eval)
}

/// `swdl.exec(program, {args...} [, {cwd = ..., stdin = ...}])`: runs a program (no shell) and
/// returns `{status, stdout, stderr}`. Needs the `exec` permission.
fn exec(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let exec = lua.create_async_function(
    |lua, (program, args, options): (String, Option<Vec<String>>, Option<Table>)| {
      let prepared = prepare_exec(&program, args.unwrap_or_default(), options.as_ref());
      async move {
        let (mut command, stdin) = prepared?;
        let output = run_process(&mut command, stdin)
          .await
          .map_err(|e| mlua::Error::runtime(format!("swdl.exec: cannot run `{program}`: {e}")))?;
        let result = lua.create_table()?;
        result.set("status", output.status.code())?;
        #[cfg(unix)]
        {
          use std::os::unix::process::ExitStatusExt;
          result.set("signal", output.status.signal())?;
        }
        result.set("ok", output.status.success())?;
        result.set("stdout", lua.create_string(&output.stdout)?)?;
        result.set("stderr", lua.create_string(&output.stderr)?)?;
        result.set("truncated", output.truncated)?;
        Ok(result)
      }
    },
  )?;
  swdl.set("exec", exec)
}

/// The command `swdl.exec` asked for, once the permission is checked.
fn prepare_exec(
  program: &str,
  args: Vec<String>,
  options: Option<&Table>,
) -> mlua::Result<(tokio::process::Command, Option<Vec<u8>>)> {
  let Some(call) = call::granted(Permission::Exec) else {
    return fail("swdl.exec needs the `exec` permission: grant it in config.permissions");
  };
  let mut command = tokio::process::Command::new(program);
  command
    .args(args)
    .envs(call.env.iter().map(|(k, v)| (k, v)))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // Its own group, so dropping the call (timeout, cancel) kills whatever it started too.
    .process_group(0);
  let mut stdin = None;
  if let Some(options) = options {
    if let Some(cwd) = options.get::<Option<String>>("cwd")? {
      command.current_dir(cwd);
    }
    stdin = options
      .get::<Option<mlua::LuaString>>("stdin")?
      .map(|s| s.as_bytes().to_vec());
  }
  command.stdin(if stdin.is_some() {
    Stdio::piped()
  } else {
    Stdio::null()
  });
  Ok((command, stdin))
}

/// What a finished process left.
struct ProcessOutput {
  status: std::process::ExitStatus,
  stdout: Vec<u8>,
  stderr: Vec<u8>,
  truncated: bool,
}

async fn run_process(
  command: &mut tokio::process::Command,
  stdin: Option<Vec<u8>>,
) -> std::io::Result<ProcessOutput> {
  let child = command.spawn()?;
  let mut group = crate::process::ProcessGroup::new(child).map_err(std::io::Error::other)?;
  let child = &mut group.child;
  let input = child.stdin.take();
  let feed = async move {
    if let (Some(mut pipe), Some(bytes)) = (input, stdin) {
      // A program that exits without reading its input is not an error.
      let _ = pipe.write_all(&bytes).await;
    }
  };
  let stdout = child.stdout.take();
  let stderr = child.stderr.take();
  let ((), (stdout, cut_out), (stderr, cut_err)) =
    tokio::join!(feed, capture(stdout), capture(stderr));
  let status = child.wait().await?;
  // The program is done; what it left running in its group is its own business, as when
  // it runs outside swdl.
  group.disarm();
  Ok(ProcessOutput {
    status,
    stdout,
    stderr,
    truncated: cut_out || cut_err,
  })
}

/// Reads a stream, keeping at most [`CAPTURE_LIMIT`] bytes and draining the rest so the
/// process never blocks on a full pipe.
async fn capture(stream: Option<impl AsyncRead + Unpin>) -> (Vec<u8>, bool) {
  let Some(mut stream) = stream else {
    return (Vec::new(), false);
  };
  let mut kept = Vec::new();
  let mut truncated = false;
  crate::process::read_pipe(&mut stream, |data| {
    let room = CAPTURE_LIMIT.saturating_sub(kept.len());
    kept.extend_from_slice(&data[..data.len().min(room)]);
    truncated |= data.len() > room;
  })
  .await;
  (kept, truncated)
}

/// `swdl.fs.read(path)`, `swdl.fs.write(path, text)`, `swdl.fs.list(dir)`. Need `fs`.
fn fs(lua: &Lua, swdl: &Table, memory_limit: usize) -> mlua::Result<()> {
  fn check(name: &str) -> mlua::Result<()> {
    match call::granted(Permission::Fs) {
      Some(_) => Ok(()),
      None => fail(format!(
        "swdl.fs.{name} needs the `fs` permission: grant it in config.permissions"
      )),
    }
  }
  let fs = lua.create_table()?;
  fs.set(
    "read",
    lua.create_async_function(move |lua, path: String| {
      let allowed = check("read");
      async move {
        allowed?;
        let io_error =
          |e: std::io::Error| mlua::Error::runtime(format!("swdl.fs.read: {path}: {e}"));
        let size = tokio::fs::metadata(&path).await.map_err(io_error)?.len();
        if size > memory_limit as u64 {
          return fail(format!(
            "swdl.fs.read: {path} has {size} bytes, more than the Lua memory limit of {}",
            sandbox::human_bytes(memory_limit)
          ));
        }
        let bytes = tokio::fs::read(&path).await.map_err(io_error)?;
        lua.create_string(bytes)
      }
    })?,
  )?;
  fs.set(
    "write",
    lua.create_async_function(|_, (path, text): (String, mlua::LuaString)| {
      let allowed = check("write");
      let bytes = text.as_bytes().to_vec();
      async move {
        allowed?;
        tokio::fs::write(&path, bytes)
          .await
          .map_err(|e| mlua::Error::runtime(format!("swdl.fs.write: {path}: {e}")))
      }
    })?,
  )?;
  fs.set(
    "list",
    lua.create_async_function(|lua, dir: String| {
      let allowed = check("list");
      async move {
        allowed?;
        let io_error =
          |e: std::io::Error| mlua::Error::runtime(format!("swdl.fs.list: {dir}: {e}"));
        let mut entries = tokio::fs::read_dir(&dir).await.map_err(io_error)?;
        let mut names = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(io_error)? {
          names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        let list = lua.create_sequence_from(names)?;
        list.set_metatable(Some(convert::array_metatable(&lua)?))?;
        Ok(list)
      }
    })?,
  )?;
  swdl.set("fs", fs)
}

/// `swdl.http.request{...}`, `swdl.http.get(url [, options])`, `swdl.http.post(url, body [,
/// options])`: the `http` skill's request from Lua, returning `{status, headers, body, json,
/// tries}`. A table body is sent as JSON. Needs the `net` permission. `swdl.llm` is present so
/// code can be written against it, failing until the llm skill arrives.
fn net(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  let http = lua.create_table()?;
  http.set(
    "request",
    lua.create_async_function(|lua, options: Table| async move {
      let request = http_request(&lua, None, None, None, Some(&options))?;
      http_send(&lua, request).await
    })?,
  )?;
  http.set(
    "get",
    lua.create_async_function(|lua, (url, options): (String, Option<Table>)| async move {
      let request = http_request(&lua, Some("GET"), Some(url), None, options.as_ref())?;
      http_send(&lua, request).await
    })?,
  )?;
  http.set(
    "post",
    lua.create_async_function(
      |lua, (url, body, options): (String, LuaValue, Option<Table>)| async move {
        let request = http_request(&lua, Some("POST"), Some(url), Some(body), options.as_ref())?;
        http_send(&lua, request).await
      },
    )?,
  )?;
  swdl.set("http", http)?;
  let llm = lua.create_table()?;
  llm.set(
    "complete",
    lua.create_async_function(
      |lua, (prompt, options): (LuaValue, Option<Table>)| async move {
        let Some(call) = call::granted(Permission::Net) else {
          return fail("swdl.llm needs the `net` permission: grant it in config.permissions");
        };
        let mut inputs = match &options {
          Some(options) => convert::to_json(
            &lua,
            &LuaValue::Table(options.clone()),
            convert::Unsupported::Fail,
          )
          .map_err(|e| {
            mlua::Error::runtime(format!(
              "swdl.llm.complete: options {}",
              e.describe("options")
            ))
          })?,
          None => serde_json::json!({}),
        };
        if inputs.as_array().is_some_and(Vec::is_empty) {
          inputs = serde_json::json!({});
        }
        let not_named = || {
          fail(
            "swdl.llm.complete: the options must be a table of named fields, like \
             { system = \"...\" }",
          )
        };
        if !inputs.is_object() {
          return not_named();
        }
        match prompt {
          LuaValue::String(s) => inputs["prompt"] = s.to_str()?.to_string().into(),
          LuaValue::Table(t) => {
            // `complete{ prompt = ..., system = ... }`: the table is the options.
            inputs = convert::to_json(&lua, &LuaValue::Table(t), convert::Unsupported::Fail)
              .map_err(|e| {
                mlua::Error::runtime(format!("swdl.llm.complete: {}", e.describe("request")))
              })?;
            if !inputs.is_object() {
              return not_named();
            }
          }
          LuaValue::Nil => {}
          other => {
            return fail(format!(
              "swdl.llm.complete: the prompt must be text or a table, got {}",
              other.type_name()
            ));
          }
        }
        let config_env: Vec<(&str, &str)> = call
          .env
          .iter()
          .map(|(k, v)| (k.as_str(), v.as_str()))
          .collect();
        let (endpoint, completion) = crate::llm::prepare(&inputs, &config_env, 0)
          .map_err(|e| mlua::Error::runtime(format!("swdl.llm.complete: {e}")))?;
        let budget = crate::llm::budget(call.run.as_deref().unwrap_or_default());
        let answer = crate::llm::complete(&endpoint, &completion, &budget)
          .await
          .map_err(|e| mlua::Error::runtime(format!("swdl.llm.complete: {e}")))?;
        call::usage(
          answer.usage.total,
          crate::builtin::usage_line(&answer, &budget),
        );
        convert::to_lua(
          &lua,
          &serde_json::Value::Object(crate::llm::outputs(&answer)),
        )
      },
    )?,
  )?;
  swdl.set("llm", llm)
}

/// A request from Lua arguments, read as the `http` skill reads its inputs: `options`
/// (a table of the skill's inputs), with `method`, `url` and a positional `body` (a string,
/// or a table sent as JSON) filled in by `get`/`post`. Fails without the `net` permission.
fn http_request(
  lua: &Lua,
  method: Option<&str>,
  url: Option<String>,
  body: Option<LuaValue>,
  options: Option<&Table>,
) -> mlua::Result<crate::http::Request> {
  if call::granted(Permission::Net).is_none() {
    return fail("swdl.http needs the `net` permission: grant it in config.permissions");
  }
  let to_json = |value: &LuaValue, what: &str| {
    convert::to_json(lua, value, convert::Unsupported::Fail)
      .map_err(|e| mlua::Error::runtime(format!("swdl.http: {}", e.describe(what))))
  };
  let mut inputs = match options {
    Some(options) => to_json(&LuaValue::Table(options.clone()), "options")?,
    None => serde_json::json!({}),
  };
  if inputs.as_array().is_some_and(Vec::is_empty) {
    inputs = serde_json::json!({});
  }
  let Some(fields) = inputs.as_object_mut() else {
    return fail(
      "swdl.http: the options must be a table of named fields, like { timeout = \"5s\" }",
    );
  };
  if let Some(method) = method {
    fields
      .entry("method")
      .or_insert_with(|| method.to_string().into());
  }
  if let Some(url) = url {
    fields.insert("url".into(), url.into());
  }
  match body {
    None | Some(LuaValue::Nil) => {}
    Some(LuaValue::String(s)) => {
      fields.insert("body".into(), s.to_str()?.to_string().into());
    }
    Some(table @ LuaValue::Table(_)) => {
      fields.insert("json".into(), to_json(&table, "body")?);
    }
    Some(_) => return fail("swdl.http: a body must be a string, or a table sent as JSON"),
  }
  crate::http::Request::from_inputs(&inputs, 0)
    .map_err(|e| mlua::Error::runtime(format!("swdl.http: {e}")))
}

async fn http_send(lua: &Lua, request: crate::http::Request) -> mlua::Result<LuaValue> {
  let response = crate::http::send(&request)
    .await
    .map_err(|e| mlua::Error::runtime(format!("swdl.http: {e}")))?;
  convert::to_lua(lua, &serde_json::Value::Object(response.to_json()))
}

/// Which registry a hook goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookKind {
  Policy,
  Recovery,
}

impl HookKind {
  /// The registry table holding the functions, keyed by name.
  pub(super) fn registry_key(self) -> &'static str {
    match self {
      Self::Policy => "swdl.policies",
      Self::Recovery => "swdl.recoveries",
    }
  }

  /// `policy`, `recovery strategy`.
  pub(super) fn noun(self) -> &'static str {
    match self {
      Self::Policy => "policy",
      Self::Recovery => "recovery strategy",
    }
  }

  fn function(self) -> &'static str {
    match self {
      Self::Policy => "swdl.policy",
      Self::Recovery => "swdl.recovery",
    }
  }
}

/// Names of the hooks registered in a state, in order, with the file that registered each.
#[derive(Debug, Clone, Default)]
pub(super) struct HookNames {
  pub(super) policies: Vec<(String, String)>,
  pub(super) recoveries: Vec<(String, String)>,
}

impl HookNames {
  fn list(&mut self, kind: HookKind) -> &mut Vec<(String, String)> {
    match kind {
      HookKind::Policy => &mut self.policies,
      HookKind::Recovery => &mut self.recoveries,
    }
  }
}

/// `swdl.policy(name, fn)` and `swdl.recovery(name, fn)`: the functions stay in Lua, in a
/// registry table; Rust keeps the names.
fn hooks(lua: &Lua, swdl: &Table) -> mlua::Result<()> {
  lua.set_app_data(HookNames::default());
  for kind in [HookKind::Policy, HookKind::Recovery] {
    lua.set_named_registry_value(kind.registry_key(), lua.create_table()?)?;
    let register = lua.create_function(move |lua, (name, function): (String, Function)| {
      let call = call::current().filter(|call| call.purpose == call::Purpose::HookFile);
      let Some(call) = call else {
        return fail(format!(
          "{} can only be called from a hook file (config.hooks or --lua), while it loads",
          kind.function()
        ));
      };
      if name.trim().is_empty() {
        return fail(format!("{}: the name must not be empty", kind.function()));
      }
      let Some(mut names) = lua.app_data_mut::<HookNames>() else {
        return fail("the hook registry is missing");
      };
      if let Some((_, file)) = names.list(kind).iter().find(|(known, _)| *known == name) {
        return fail(format!(
          "{}: {} `{name}` is already defined in {file}",
          kind.function(),
          kind.noun()
        ));
      }
      let registry: Table = lua.named_registry_value(kind.registry_key())?;
      registry.raw_set(name.as_str(), function)?;
      names.list(kind).push((name, call.label.clone()));
      Ok(())
    })?;
    swdl.set(
      match kind {
        HookKind::Policy => "policy",
        HookKind::Recovery => "recovery",
      },
      register,
    )?;
  }
  Ok(())
}
