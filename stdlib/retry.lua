-- swdl.retry: backoff delays, retrying a Lua function, and recovery strategies that
-- retry with (optionally simplified) inputs before falling back.
--
--   local retry = require "swdl.retry"
--   retry.delay(3, { backoff = "exponential", base = "500ms" })   --> 2000
--   local out = retry.call(function(attempt) return flaky_call() end, { attempts = 4 })
--   swdl.recovery("retry-then-fallback", retry.strategy{ max_attempts = 3, fallback = "echo" })
--
-- Durations are strings with units ("250ms", "30s", "1h30m"; a string of bare digits is
-- refused as ambiguous) or numbers of milliseconds, as swdl.sleep takes them.

local M = {}

local UNIT_MS = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000 }

-- Largest delay computed before capping, so huge attempt numbers cannot overflow.
local CEILING_MS = 2 ^ 53

-- Converts a duration ("250ms", "1h30m", or a number of milliseconds) to whole
-- milliseconds; nil gives `default`. Raises an error naming `what` on anything else.
function M.ms(d, default, what)
  what = what or "duration"
  if d == nil then
    return default
  end
  if type(d) == "number" then
    if d ~= d or d < 0 or d == math.huge then
      error(what .. " must be a non-negative number of milliseconds, got " .. tostring(d), 2)
    end
    return math.floor(d)
  end
  if type(d) ~= "string" then
    error(what .. " must be a duration string or a number of milliseconds, got a " .. type(d), 2)
  end
  if d:match("^%d+$") then
    -- Seconds in a workflow file, milliseconds as a Lua number: refused as ambiguous.
    error(string.format(
      '%s "%s" has no unit: write "%sms" or "%ss", or the number %s for milliseconds',
      what, d, d, d, d), 2)
  end
  local total, pos = 0, 1
  while pos <= #d do
    local digits, unit, after = d:match("^(%d+)(%a+)()", pos)
    if not digits or not UNIT_MS[unit] then
      error(string.format("invalid %s %q: use groups like 250ms, 30s, 5m, 2h, 1d", what, d), 2)
    end
    total = total + tonumber(digits) * UNIT_MS[unit]
    pos = after
  end
  if total == 0 and #d == 0 then
    error(string.format("invalid %s %q: empty", what, d), 2)
  end
  return math.floor(total)
end

-- Formats milliseconds as a duration string the host accepts ("1500ms").
function M.format(ms)
  return string.format("%dms", math.floor(ms))
end

local BACKOFFS = { fixed = true, linear = true, exponential = true }

-- The delay in milliseconds to wait after failed attempt `attempt` (1-based).
-- opts: backoff ("fixed" | "linear" | "exponential", default "fixed"), base (first delay,
-- default "1s"), max (cap), jitter (false; true draws from [d/2, d] like the engine's
-- `retry.jitter`; a number j in (0, 1] draws from [d*(1-j), d]), random (a function
-- returning a number in [0, 1), default math.random, for tests).
function M.delay(attempt, opts)
  opts = opts or {}
  attempt = math.max(1, math.floor(tonumber(attempt) or 1))
  local backoff = opts.backoff or "fixed"
  if not BACKOFFS[backoff] then
    error(string.format("unknown backoff %q: use fixed, linear or exponential", tostring(backoff)), 2)
  end
  local base = M.ms(opts.base, 1000, "base")
  local d
  if backoff == "fixed" then
    d = base
  elseif backoff == "linear" then
    d = base * attempt
  else
    d = base * 2.0 ^ math.min(attempt - 1, 60)
  end
  d = math.min(d, CEILING_MS)
  local max = M.ms(opts.max, nil, "max")
  if max and d > max then
    d = max
  end
  local jitter = opts.jitter
  if jitter then
    local j = jitter == true and 0.5 or tonumber(jitter)
    if not j or j < 0 or j > 1 then
      error("jitter must be true, false or a number between 0 and 1", 2)
    end
    local random = opts.random or math.random
    d = d * (1 - j) + d * j * random()
  end
  return math.floor(d)
end

-- The host's swdl module, looked up when needed (a global, or `require "swdl"`).
local function host()
  local s = swdl
  if s == nil then
    s = require("swdl")
  end
  return s
end

-- Calls fn(attempt) until it returns without raising, sleeping between attempts, and
-- returns everything fn returned. After the last attempt the last error is raised again.
-- opts: attempts (total, default 3), backoff / base / max / jitter (see retry.delay),
-- retry_if(err, attempt) (return false to stop retrying that error; default: retry all),
-- on_retry(err, attempt, delay_ms) (called before each sleep), sleep(ms) (default
-- swdl.sleep).
function M.call(fn, opts)
  if type(fn) ~= "function" then
    error("retry.call expects a function, got a " .. type(fn), 2)
  end
  opts = opts or {}
  local attempts = math.floor(tonumber(opts.attempts) or 3)
  if attempts < 1 then
    error("attempts must be at least 1", 2)
  end
  local sleep = opts.sleep
  for attempt = 1, attempts do
    local result = table.pack(pcall(fn, attempt))
    if result[1] then
      return table.unpack(result, 2, result.n)
    end
    local err = result[2]
    if attempt == attempts or (opts.retry_if and not opts.retry_if(err, attempt)) then
      error(err, 0)
    end
    local wait = M.delay(attempt, opts)
    if opts.on_retry then
      opts.on_retry(err, attempt, wait)
    end
    if wait > 0 then
      (sleep or host().sleep)(wait)
    end
  end
end

-- Whether `list` (an array, or nil) holds `value`.
local function holds(list, value)
  for _, v in ipairs(list or {}) do
    if v == value then
      return true
    end
  end
  return false
end

-- A shallow copy of a table (inputs handed to `simplify`).
local function copy(t)
  local c = {}
  if type(t) == "table" then
    for k, v in pairs(t) do
      c[k] = v
    end
  end
  return c
end

-- The fallback skills for a stage whose own skill is `primary`: `fallback` may be a
-- skill name, an array of names, a table mapping skills to a name or an array, or a
-- function(failure, ctx) returning a name or an array.
local function chain_for(fallback, primary, failure, ctx)
  if fallback == nil then
    return {}
  end
  if type(fallback) == "function" then
    fallback = fallback(failure, ctx)
    if fallback == nil then
      return {}
    end
  end
  if type(fallback) == "string" then
    return { fallback }
  end
  if type(fallback) ~= "table" then
    return {}
  end
  if fallback[1] ~= nil then
    return fallback
  end
  local c = fallback[primary]
  if type(c) == "string" then
    return { c }
  end
  return type(c) == "table" and c or {}
end

local ACTIONS = { abort = true, skip = true, compensate = true }

-- A recovery function for swdl.recovery: retries the stage's own skill (after a
-- backoff delay, with inputs passed through `simplify`) while attempts remain, then
-- tries each fallback skill once, then gives up with `on_exhausted`.
-- opts: max_attempts (total attempts of the stage's own skill, default 3),
-- backoff / base / max / jitter (see retry.delay; default fixed 1s), on (failure kinds
-- to retry, default { "error", "timeout" }), retry_if(failure, ctx) (return false to
-- go straight to the fallbacks), simplify(inputs, attempt, failure) (returns the inputs
-- to change for the next attempt; gets a copy of the inputs that just failed and the
-- number of the attempt that failed), fallback (a skill name, an array of names tried
-- in order, a table { [skill] = name or names } keyed by the stage's own skill, or a
-- function(failure, ctx) returning a name or names; a function is asked again after
-- each failed fallback and should return the next one, or nil), on_exhausted ("abort"
-- (default), "skip" or "compensate").
function M.strategy(opts)
  opts = opts or {}
  local max_attempts = math.floor(tonumber(opts.max_attempts) or 3)
  if max_attempts < 1 then
    error("max_attempts must be at least 1", 2)
  end
  local on = opts.on or { "error", "timeout" }
  local exhausted = opts.on_exhausted or "abort"
  if not ACTIONS[exhausted] then
    error(string.format("on_exhausted must be abort, skip or compensate, got %q", tostring(exhausted)), 2)
  end
  if opts.backoff and not BACKOFFS[opts.backoff] then
    error(string.format("unknown backoff %q: use fixed, linear or exponential", tostring(opts.backoff)), 2)
  end
  -- Check the durations now, so a typo fails when the hook file loads.
  M.ms(opts.base, nil, "base")
  M.ms(opts.max, nil, "max")

  -- The stage's own skill, per run and stage: the skill of the first failure seen
  -- (the host always runs a stage's own skill first).
  local primary = {}

  return function(failure, ctx)
    ctx = ctx or {}
    local key = tostring(failure.run_id or ctx.run_id or "") .. "/" .. tostring(failure.stage)
    if primary[key] == nil then
      primary[key] = failure.uses
    end
    local own = primary[key]

    if failure.uses == own then
      local attempt = tonumber(failure.attempt) or 1
      local wanted = holds(on, failure.kind)
      if wanted and opts.retry_if and not opts.retry_if(failure, ctx) then
        wanted = false
      end
      if wanted and attempt < max_attempts then
        local action = { action = "retry", delay = M.format(M.delay(attempt, opts)) }
        if opts.simplify then
          local with = opts.simplify(copy(failure.inputs), attempt, failure)
          if type(with) == "table" and next(with) ~= nil then
            action.with = with
          end
        end
        return action
      end
    end

    -- Fallbacks: the first one after the stage's own skill, then the one after the
    -- fallback that just failed.
    local chain = chain_for(opts.fallback, own, failure, ctx)
    local next_skill
    if failure.uses == own then
      next_skill = chain[1]
    else
      local found = false
      for i, name in ipairs(chain) do
        if name == failure.uses then
          next_skill, found = chain[i + 1], true
          break
        end
      end
      -- A function may answer with just the next skill.
      if not found and type(opts.fallback) == "function" then
        next_skill = chain[1]
      end
    end
    if next_skill ~= nil and next_skill ~= failure.uses and next_skill ~= own then
      return { action = "fallback", uses = next_skill }
    end
    return { action = exhausted }
  end
end

return M
