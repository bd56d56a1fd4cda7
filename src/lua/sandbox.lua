-- Builds the sandboxed environments skills and hooks run in (docs/lua.md, "The sandbox").
--
-- This chunk runs once per Lua state, with the state's own globals. Everything it needs is kept
-- in locals (upvalues sandboxed code cannot reach), and the state's globals are emptied at the
-- end, so the only way into the state is an environment made by `new_env`.
local natives = ...

local assert, error, getmetatable, ipairs, next, pairs = assert, error, getmetatable, ipairs, next, pairs
local rawequal, rawget, rawlen, rawset, select = rawequal, rawget, rawlen, rawset, select
local tonumber, tostring, type, version = tonumber, tostring, type, _VERSION
local rawload, rawpcall, rawxpcall = load, pcall, xpcall
local rawsetmetatable, rawcollect = setmetatable, collectgarbage
local strings, tables, maths, utf8s, coroutines, oss = string, table, math, utf8, coroutine, os
local co_create, co_resume, co_close = coroutine.create, coroutine.resume, coroutine.close
local format = string.format
local G = _G

local stopping, stdlib, stdlib_names = natives.stopping, natives.stdlib, natives.stdlib_names
local swdl_template, print = natives.swdl, natives.print

local SANDBOX = " is not available in the swdl sandbox"
local FS = "ask for the `fs` permission and use swdl.fs.read, swdl.fs.write or swdl.fs.list"
local EXEC = "ask for the `exec` permission and use swdl.exec"
local LOG = "use ctx.log, swdl.log or print"
local REQUIRE = "only swdl and swdl.<name> modules can be required"
local FILES = "ask for the `fs` permission, read the file with swdl.fs.read and pass its text to load"

-- A function that fails, naming what was called and what to use instead.
local function denied(name, hint)
  local message = name .. SANDBOX .. (hint and ("; " .. hint) or "")
  return function()
    error(message, 2)
  end
end

-- A table none of whose fields exist: reading `io.open` already fails, with the reason.
local function denied_table(name, hints, default_hint)
  local function fail(_, key)
    local hint = hints[key] or default_hint
    error(name .. "." .. tostring(key) .. SANDBOX .. (hint and ("; " .. hint) or ""), 2)
  end
  return rawsetmetatable({}, { __index = fail, __newindex = fail, __metatable = false })
end

-- What `getmetatable` returns for a protected metatable: any use of it fails with the reason.
local function protected(what)
  local function fail()
    error(what .. " is protected in the swdl sandbox", 2)
  end
  return rawsetmetatable({}, { __index = fail, __newindex = fail, __metatable = false })
end

-- A fresh copy, so what one environment changes in a library no other environment sees.
local function copy(t)
  local c = {}
  for k, v in next, t do
    if type(v) == "table" then
      v = copy(v)
    end
    c[k] = v
  end
  return c
end

-- The instruction hook stops a call by raising an error; `pcall` and friends must not swallow
-- it, or `while true do pcall(f) end` would outlive its timeout.
local function rethrow_stop(ok, ...)
  if not ok and stopping() then
    error((...), 0)
  end
  return ok, ...
end

local function safe_pcall(f, ...)
  return rethrow_stop(rawpcall(f, ...))
end

local function safe_xpcall(f, handler, ...)
  return rethrow_stop(rawxpcall(f, handler, ...))
end

-- Only coroutines made by sandboxed code may be resumed or closed: the ones swdl runs calls in
-- must not be driven from another call.
local made_here = rawsetmetatable({}, { __mode = "k" })

local function check_coroutine(co, what)
  if type(co) == "thread" and not made_here[co] then
    error(what .. ": only coroutines made with coroutine.create can be used here", 3)
  end
end

local safe_coroutine = {
  create = function(f)
    local co = co_create(f)
    made_here[co] = true
    return co
  end,
  resume = function(co, ...)
    check_coroutine(co, "coroutine.resume")
    return rethrow_stop(co_resume(co, ...))
  end,
  close = function(co)
    check_coroutine(co, "coroutine.close")
    return co_close(co)
  end,
  wrap = coroutines.wrap,
  yield = coroutines.yield,
  status = coroutines.status,
  running = coroutines.running,
  isyieldable = coroutines.isyieldable,
}

-- Finalizers run with instruction hooks off: a `__gc` that loops could never be stopped.
local function safe_setmetatable(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    error("setmetatable: __gc metamethods" .. " are not available in the swdl sandbox"
      .. " (a finalizer cannot be stopped by the stage timeout)", 2)
  end
  return rawsetmetatable(t, mt)
end

local function safe_collectgarbage(option, ...)
  if option == "count" then
    return rawcollect("count")
  end
  error(format("collectgarbage(%q)%s; only collectgarbage(\"count\") is",
    tostring(option or "collect"), SANDBOX), 2)
end

local safe_os = {
  clock = oss.clock,
  date = oss.date,
  difftime = oss.difftime,
  time = oss.time,
  execute = denied("os.execute", EXEC),
  exit = denied("os.exit", "return from `run`, or call error() to fail"),
  getenv = denied("os.getenv", "read ctx.env"),
  remove = denied("os.remove", FS),
  rename = denied("os.rename", FS),
  tmpname = denied("os.tmpname", FS),
  setlocale = denied("os.setlocale"),
}

local IO_HINTS = {
  popen = EXEC,
  write = LOG,
  stdout = LOG,
  stderr = LOG,
  output = LOG,
}

-- Methods on strings (`s:rep(n)`) read the real string library through the string metatable,
-- so it is made safe in place; environments get copies of it.
strings.dump = denied("string.dump", "functions cannot be turned into bytecode")
strings.rep = natives.rep

local base = {
  assert = assert,
  error = error,
  getmetatable = getmetatable,
  ipairs = ipairs,
  next = next,
  pairs = pairs,
  rawequal = rawequal,
  rawget = rawget,
  rawlen = rawlen,
  rawset = rawset,
  select = select,
  tonumber = tonumber,
  tostring = tostring,
  type = type,
  _VERSION = version,
  setmetatable = safe_setmetatable,
  pcall = safe_pcall,
  xpcall = safe_xpcall,
  collectgarbage = safe_collectgarbage,
  print = print,
  warn = function(...)
    print("warning:", ...)
  end,
  loadfile = denied("loadfile", FILES),
  dofile = denied("dofile", FILES),
}

-- Reads fall through to `base`, writes stay in the environment, and the metatable (through
-- which `base` could be changed for everyone) is out of reach.
local env_meta = { __index = base, __metatable = protected("the environment's metatable") }

local new_env

-- `require` for one environment: `swdl` and the modules of swdl's standard library only.
local function make_require(loaded)
  return function(name)
    if type(name) ~= "string" then
      error(format("bad argument #1 to 'require' (string expected, got %s)", type(name)), 2)
    end
    local module = loaded[name]
    if module ~= nil then
      return module
    end
    local short = name:match("^swdl%.([%w_%-]+)$")
    local source = short and stdlib[short]
    if not source then
      if short then
        error(format("module '%s' not found: swdl's standard library has %s", name, stdlib_names), 2)
      end
      error(format("module '%s' not found: %s", name, REQUIRE), 2)
    end
    local chunk = assert(rawload(source, "@stdlib/" .. short .. ".lua", "t", new_env()))
    module = chunk(name)
    if module == nil then
      module = true
    end
    loaded[name] = module
    return module
  end
end

-- `load` for one environment: text only, and by default into that environment.
local function make_load(env)
  return function(chunk, chunkname, mode, ...)
    if mode == "b" then
      return nil, "load: binary chunks" .. " are not allowed in the swdl sandbox; pass Lua source text"
    end
    if type(chunk) == "string" and chunk:byte(1) == 27 then
      return nil, "load: binary chunks" .. " are not allowed in the swdl sandbox; pass Lua source text"
    end
    local target = env
    if select("#", ...) > 0 then
      target = ...
    end
    return rawload(chunk, chunkname, "t", target)
  end
end

function new_env()
  local env = rawsetmetatable({}, env_meta)
  local swdl = copy(swdl_template)
  local loaded = { swdl = swdl }
  env._G = env
  env.string = copy(strings)
  env.table = copy(tables)
  env.math = copy(maths)
  env.utf8 = copy(utf8s)
  env.coroutine = copy(safe_coroutine)
  env.os = copy(safe_os)
  env.io = denied_table("io", IO_HINTS, FS)
  env.debug = denied_table("debug", {}, "it could reach past the sandbox and the stage timeout")
  env.swdl = swdl
  env.package = {
    loaded = loaded,
    loadlib = denied("package.loadlib", "C modules cannot be loaded"),
    searchpath = denied("package.searchpath", REQUIRE),
  }
  env.require = make_require(loaded)
  env.load = make_load(env)
  return env
end

-- Last, as everything above still reads the real libraries: protect the string metatable and
-- empty the state's globals.
getmetatable("").__metatable = protected("the string metatable")
for name in next, G do
  G[name] = nil
end

return new_env
