//! The sandbox: escapes denied, what it keeps, isolation between skills, permissions.
use super::*;

#[tokio::test]
async fn every_sandbox_escape_is_denied_with_a_clear_message() {
  let dir = Dir::new("sandbox");
  let host = host(1);
  let cases = [
    (
      "os.execute('true')",
      "os.execute is not available in the swdl sandbox; ask for the `exec` permission and use swdl.exec",
    ),
    ("os.exit(1)", "os.exit is not available in the swdl sandbox"),
    (
      "os.getenv('HOME')",
      "os.getenv is not available in the swdl sandbox; read ctx.env",
    ),
    (
      "os.remove('/tmp/x')",
      "os.remove is not available in the swdl sandbox; ask for the `fs` permission",
    ),
    (
      "io.open('/etc/passwd')",
      "io.open is not available in the swdl sandbox; ask for the `fs` permission",
    ),
    (
      "io.popen('ls')",
      "io.popen is not available in the swdl sandbox; ask for the `exec` permission",
    ),
    (
      "io.stdout:write('x')",
      "io.stdout is not available in the swdl sandbox; use ctx.log",
    ),
    (
      "local f, err = load('\\27Lua\\x54\\0\\x19\\x93\\r\\n\\x1a\\n') assert(f, err)",
      "load: binary chunks are not allowed in the swdl sandbox",
    ),
    (
      "local f, err = load('return 1', 'x', 'b') assert(f, err)",
      "load: binary chunks are not allowed in the swdl sandbox",
    ),
    (
      "loadfile('/etc/passwd')",
      "loadfile is not available in the swdl sandbox",
    ),
    (
      "dofile('/etc/passwd')",
      "dofile is not available in the swdl sandbox",
    ),
    (
      "require 'os'",
      "module 'os' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "require 'io'",
      "module 'io' not found: only swdl and swdl.<name> modules can be required",
    ),
    ("require 'debug'", "module 'debug' not found"),
    ("require './evil'", "module './evil' not found"),
    ("require 'skills.other'", "module 'skills.other' not found"),
    (
      "require 'swdl.nope'",
      "module 'swdl.nope' not found: swdl's standard library has retry, circuit_breaker and policies",
    ),
    (
      "package.loadlib('libc.so.6', 'system')",
      "package.loadlib is not available in the swdl sandbox",
    ),
    (
      "debug.getinfo(1)",
      "debug.getinfo is not available in the swdl sandbox",
    ),
    (
      "debug.sethook()",
      "debug.sethook is not available in the swdl sandbox",
    ),
    (
      "string.dump(print)",
      "string.dump is not available in the swdl sandbox",
    ),
    (
      "local s = 'x' return { s:dump() }",
      "string.dump is not available in the swdl sandbox",
    ),
    (
      "collectgarbage('stop')",
      "collectgarbage(\"stop\") is not available in the swdl sandbox; only collectgarbage(\"count\") is",
    ),
    (
      "collectgarbage()",
      "collectgarbage(\"collect\") is not available",
    ),
    (
      "getmetatable('').__index.upper = nil",
      "the string metatable is protected in the swdl sandbox",
    ),
    (
      "getmetatable('').__index = {}",
      "the string metatable is protected in the swdl sandbox",
    ),
    (
      "getmetatable(_ENV).__index.print = nil",
      "the environment's metatable is protected in the swdl sandbox",
    ),
    (
      "setmetatable({}, { __gc = function() while true do end end })",
      "__gc metamethods are not available in the swdl sandbox",
    ),
    (
      "coroutine.resume(coroutine.running())",
      "coroutine.resume: only coroutines made with coroutine.create can be used here",
    ),
  ];
  for (i, (body, wanted)) in cases.iter().enumerate() {
    let name = format!("escape{i}.lua");
    let path = dir.skill(&name, body);
    let message = failure(run(&host, &path, task(json!({}))).await);
    assert_contains(&message, wanted);
    assert_contains(&message, &format!("{name}:3"));
  }
}

#[tokio::test]
async fn what_the_sandbox_keeps_works() {
  let dir = Dir::new("sandbox-ok");
  let path = dir.skill(
    "ok.lua",
    r#"
    local swdl2 = require "swdl"
    local retry = require "swdl.retry"
    local ok, err = pcall(error, "caught")
    local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)
    local first = co(1)
    return {
      loaded = load("return 1 + 1")(),
      env_default = load("return GLOBAL_X")(),
      same = swdl2 == swdl,
      retry = type(retry),
      pcall = { ok, err },
      time = type(os.time()),
      date = os.date("!%Y", 0),
      upper = ("abc"):upper(),
      count = type(collectgarbage("count")),
      coroutine = { first, co(5) },
      g = _G == _ENV,
      utf8 = utf8.len("héllo"),
      math = math.max(1, 5),
      json = swdl.json.decode(swdl.json.encode({ a = { 1, swdl.json.null, 3 }, e = swdl.json.array() })),
      durations = { retry.ms("1m30s"), retry.ms(250), select(2, pcall(retry.ms, "30")) },
      sleep_digits = (tostring(select(2, pcall(swdl.sleep, "250"))):match("swdl.sleep: ([^\n]*)")),
    }
"#,
  );
  let host = host(1);
  let outputs = outputs(run(&host, &path, task(json!({}))).await);
  assert_eq!(
    Json::Object(outputs),
    json!({
      "loaded": 2, "same": true, "retry": "table", "pcall": [false, "caught"],
      "time": "number", "date": "1970", "upper": "ABC", "count": "number",
      "coroutine": [2, 10], "g": true, "utf8": 5, "math": 5,
      "json": {"a": [1, null, 3], "e": []},
      "durations": [90_000, 250, "duration \"30\" has no unit: write \"30ms\" or \"30s\", or the number 30 for milliseconds"],
      "sleep_digits": "duration \"250\" has no unit: write \"250ms\" or \"250s\", or the number 250 for milliseconds",
    })
  );
}

#[tokio::test]
async fn one_skill_never_sees_another_skills_globals_or_library_changes() {
  let dir = Dir::new("isolation");
  let host = host(1);
  let a = dir.skill(
    "a.lua",
    "leaked = 42\n string.upper = nil\n rawset(table, 'concat', nil)\n swdl.json.encode = nil\n \
     math.max = nil\n return {}",
  );
  let b = dir.skill(
    "b.lua",
    "return { seen = leaked == nil, upper = string.upper('x'), method = ('y'):upper(),\n \
     concat = table.concat({'a', 'b'}), json = swdl.json.encode({1}), max = math.max(1, 2) }",
  );
  outputs(run(&host, &a, task(json!({}))).await);
  let seen = outputs(run(&host, &b, task(json!({}))).await);
  assert_eq!(
    Json::Object(seen),
    json!({"seen": true, "upper": "X", "method": "Y", "concat": "ab", "json": "[1]", "max": 2})
  );
  // The skill's own globals persist between its calls on a state, like a module's.
  let counter = dir.file(
    "counter.lua",
    "calls = 0\nreturn { run = function() calls = calls + 1 return { calls = calls } end }",
  );
  outputs(run(&host, &counter, task(json!({}))).await);
  let second = outputs(run(&host, &counter, task(json!({}))).await);
  assert_eq!(second["calls"], json!(2));
}

#[tokio::test]
async fn exec_and_fs_need_their_permissions() {
  let dir = Dir::new("permissions");
  let host = host(1);
  let exec = dir.skill(
    "exec.lua",
    "local r = swdl.exec('sh', { '-c', 'cat; echo \"$GREETING $SWDL_IDEMPOTENCY_KEY\" >&2; exit 3' }, \
     { stdin = 'in' })\n return r",
  );
  let message = failure(run(&host, &exec, task(json!({}))).await);
  assert_contains(
    &message,
    "swdl.exec needs the `exec` permission: grant it in config.permissions",
  );
  let result = outputs(
    run(
      &host,
      &exec,
      with_permissions(task(json!({})), &[Permission::Exec]),
    )
    .await,
  );
  assert_eq!(result["status"], json!(3));
  assert_eq!(result["stdout"], json!("in"));
  assert_eq!(result["stderr"], json!("hello run-1/count\n"));
  assert_eq!(result["ok"], json!(false));

  let file = dir.0.join("note.txt");
  let fs = dir.skill(
    "fs.lua",
    &format!(
      "swdl.fs.write({file:?}, 'hi there')\n return {{ text = swdl.fs.read({file:?}), list = swdl.fs.list({dir:?}) }}",
      file = file.display().to_string(),
      dir = dir.0.display().to_string(),
    ),
  );
  let message = failure(run(&host, &fs, task(json!({}))).await);
  assert_contains(
    &message,
    "swdl.fs.write needs the `fs` permission: grant it in config.permissions",
  );
  let result = outputs(
    run(
      &host,
      &fs,
      with_permissions(task(json!({})), &[Permission::Fs]),
    )
    .await,
  );
  assert_eq!(result["text"], json!("hi there"));
  assert_eq!(result["list"], json!(["exec.lua", "fs.lua", "note.txt"]));

  let http = dir.skill("http.lua", "swdl.http.get('http://example.com')");
  let message = failure(run(&host, &http, task(json!({}))).await);
  assert_contains(&message, "swdl.http needs the `net` permission");
  // With it, the request is made: a URL swdl refuses shows it got that far.
  let bad = dir.skill("bad.lua", "swdl.http.get('ftp://example.com/x')");
  let message = failure(
    run(
      &host,
      &bad,
      with_permissions(task(json!({})), &[Permission::Net]),
    )
    .await,
  );
  assert_contains(&message, "only http and https URLs are supported");
  let llm = dir.skill("llm.lua", "swdl.llm.complete('hi')");
  let message = failure(run(&host, &llm, task(json!({}))).await);
  assert_contains(&message, "swdl.llm needs the `net` permission");
}

#[tokio::test]
async fn swdl_eval_sees_the_current_call() {
  let dir = Dir::new("eval");
  let path = dir.skill(
    "eval.lua",
    "return { a = swdl.eval('inputs.text'), b = swdl.eval(\"format('{0}, {1}!', env.GREETING, parameters.text)\"),\n \
     c = swdl.eval('$<< run.attempt >> of $<< stage.id >>'), d = swdl.eval('inputs.list') }",
  );
  let result = outputs(
    run(
      &host(1),
      &path,
      task(json!({"text": "world", "list": [1, 2]})),
    )
    .await,
  );
  assert_eq!(
    Json::Object(result),
    json!({"a": "world", "b": "hello, world!", "c": "2 of count", "d": [1, 2]})
  );
  let bad = dir.skill("bad.lua", "swdl.eval('format(')");
  assert_contains(
    &failure(run(&host(1), &bad, task(json!({}))).await),
    "swdl.eval:",
  );
}
