-- swdl.circuit_breaker: stop calling something that keeps failing, and try it again
-- after a cool-down.
--
--   local cb = require "swdl.circuit_breaker"
--   local api = cb.new{ name = "review-api", failure_threshold = 3, window = "60s", cooldown = "30s" }
--   if api:allow() then ... api:success() / api:failure() end
--   swdl.recovery("guarded", cb.recovery(api, { max_attempts = 3, fallback = "echo" }))
--
-- States: "closed" (calls go through; failures are counted), "open" (calls are refused
-- until the cool-down has passed), "half_open" (one probe call is let through: success
-- closes the breaker, failure opens it again). The breaker trips when
-- `failure_threshold` failures fall within `window`.
--
-- Time comes from `now()` in seconds (os.time by default; pass your own clock, which
-- may return fractions, to test deterministically). Durations are written as in
-- workflow files ("30s", "250ms") or as a number of milliseconds.

local retry = require("swdl.retry")

local M = {}

local Breaker = {}
Breaker.__index = Breaker

-- Creates a breaker. opts: name (used in messages), failure_threshold (default 5),
-- window (default "60s"), cooldown (default "30s"), now (clock in seconds, default
-- os.time), on_change(from, to, breaker) (called on every state change).
function M.new(opts)
  opts = opts or {}
  local threshold = math.floor(tonumber(opts.failure_threshold) or 5)
  if threshold < 1 then
    error("failure_threshold must be at least 1", 2)
  end
  if opts.now ~= nil and type(opts.now) ~= "function" then
    error("now must be a function returning seconds", 2)
  end
  local self = setmetatable({
    name = opts.name or "breaker",
    threshold = threshold,
    window = retry.ms(opts.window, 60000, "window") / 1000,
    cooldown = retry.ms(opts.cooldown, 30000, "cooldown") / 1000,
    now = opts.now or os.time,
    on_change = opts.on_change,
    current = "closed",
    failures = {},  -- times of recent failures while closed
    opened_at = nil,
    probing = false,  -- the half-open probe has been let through
    probe_at = nil,   -- when it was let through
    trips = 0,
  }, Breaker)
  return self
end

-- Moves to `to`, calling on_change.
function Breaker:_set(to)
  local from = self.current
  if from == to then
    return
  end
  self.current = to
  if to == "open" then
    self.opened_at = self.now()
    self.trips = self.trips + 1
  end
  if to ~= "half_open" then
    self.probing = false
  end
  if to == "closed" then
    self.failures = {}
    self.opened_at = nil
  end
  if self.on_change then
    self.on_change(from, to, self)
  end
end

-- Applies the passage of time: an open breaker whose cool-down is over is half-open.
function Breaker:_tick()
  if self.current == "open" and self.now() - self.opened_at >= self.cooldown then
    self:_set("half_open")
  end
end

-- The current state: "closed", "open" or "half_open".
function Breaker:state()
  self:_tick()
  return self.current
end

-- Whether a call may go ahead now. Closed: yes. Half-open: yes for the first caller
-- (the probe), no for the others until the probe's outcome is reported (or, should it
-- never be reported, until another cool-down has passed). Open: no.
function Breaker:allow()
  self:_tick()
  if self.current == "closed" then
    return true
  end
  if self.current == "half_open"
    and (not self.probing or self.now() - self.probe_at >= self.cooldown) then
    self.probing = true
    self.probe_at = self.now()
    return true
  end
  return false
end

-- Reports a successful call: a half-open breaker closes.
function Breaker:success()
  self:_tick()
  if self.current == "half_open" then
    self:_set("closed")
  end
end

-- Reports a failed call: a closed breaker trips once `failure_threshold` failures fall
-- within `window`; a half-open breaker opens again.
function Breaker:failure()
  self:_tick()
  if self.current == "half_open" then
    self:_set("open")
    return
  end
  if self.current ~= "closed" then
    return
  end
  local t = self.now()
  local recent = {}
  for _, f in ipairs(self.failures) do
    if t - f < self.window then
      recent[#recent + 1] = f
    end
  end
  recent[#recent + 1] = t
  self.failures = recent
  if #recent >= self.threshold then
    self:_set("open")
  end
end

-- Seconds until an open breaker lets a probe through (0 when it is not open).
function Breaker:retry_in()
  self:_tick()
  if self.current ~= "open" then
    return 0
  end
  return math.max(0, self.cooldown - (self.now() - self.opened_at))
end

-- A snapshot for logs: { name, state, failures (within the window), trips }.
function Breaker:stats()
  local t = self.now()
  local n = 0
  for _, f in ipairs(self.failures) do
    if t - f < self.window then
      n = n + 1
    end
  end
  return { name = self.name, state = self:state(), failures = n, trips = self.trips }
end

-- Closes the breaker and forgets its failures.
function Breaker:reset()
  self:_set("closed")
  self.failures = {}
end

-- Calls fn(...) through the breaker: raises "circuit `NAME` is open" without calling
-- when it is refused, otherwise reports the outcome and returns fn's results (or raises
-- its error again).
function Breaker:call(fn, ...)
  if not self:allow() then
    error(string.format("circuit `%s` is open: not calling (next probe in %ds)",
      self.name, math.ceil(self:retry_in())), 2)
  end
  local result = table.pack(pcall(fn, ...))
  if result[1] then
    self:success()
    return table.unpack(result, 2, result.n)
  end
  self:failure()
  error(result[2], 0)
end

-- Whether `list` holds `value`.
local function holds(list, value)
  for _, v in ipairs(list) do
    if v == value then
      return true
    end
  end
  return false
end

local ACTIONS = { abort = true, skip = true, compensate = true }

-- A recovery function for swdl.recovery guarded by `breaker`. While the breaker is
-- closed, each failure of the stage's own skill is reported to it and the stage is
-- retried after a backoff delay until `max_attempts`. Once the breaker is open, failing
-- stages are not retried: the fallback skills are tried once each, in order, and then
-- `on_open` is returned (or `on_exhausted` when the attempts ran out while it was
-- closed). After the cool-down, the next failing stage's retry is the half-open probe:
-- the breaker closes when that stage completes (as seen in ctx.memory) and opens again
-- when the retry fails. A stage this strategy retried that later completed counts as a
-- success.
-- opts: max_attempts (default 3), backoff / base / max / jitter (see retry.delay;
-- default fixed 1s), on (failure kinds to retry, default { "error", "timeout" }),
-- fallback (a skill name or an array of names), on_open and on_exhausted ("abort"
-- (default), "skip" or "compensate").
function M.recovery(breaker, opts)
  if getmetatable(breaker) ~= Breaker then
    error("circuit_breaker.recovery expects a breaker made by circuit_breaker.new", 2)
  end
  opts = opts or {}
  local max_attempts = math.floor(tonumber(opts.max_attempts) or 3)
  local on = opts.on or { "error", "timeout" }
  local chain = opts.fallback or {}
  if type(chain) == "string" then
    chain = { chain }
  end
  local on_open = opts.on_open or "abort"
  local on_exhausted = opts.on_exhausted or "abort"
  if not ACTIONS[on_open] or not ACTIONS[on_exhausted] then
    error("on_open and on_exhausted must be abort, skip or compensate", 2)
  end
  if opts.backoff ~= nil then
    retry.delay(1, { backoff = opts.backoff })
  end
  retry.ms(opts.base, nil, "base")
  retry.ms(opts.max, nil, "max")

  local retried = {}   -- "run/stage" -> true: this strategy retried the stage
  local settled = {}   -- "run/stage" -> true: its memory entry was already counted
  local probe = nil    -- "run/stage" whose retry is the half-open probe

  -- Reads working memory: retried stages that completed are successes; a probe stage
  -- that ended any other way is a failed probe.
  local function learn(run, memory)
    for _, entry in ipairs(memory or {}) do
      local key = run .. "/" .. tostring(entry.stage)
      if retried[key] and not settled[key] then
        settled[key] = true
        if entry.status == "completed" then
          breaker:success()
        elseif key == probe then
          breaker:failure()
        end
        if key == probe then
          probe = nil
        end
      end
    end
  end

  return function(failure, ctx)
    ctx = ctx or {}
    local run = tostring(ctx.run_id or failure.run_id or "")
    learn(run, ctx.memory)
    local key = run .. "/" .. tostring(failure.stage)

    -- A fallback failed: try the next one. Fallback failures do not count against the
    -- breaker, which guards the stage's own skill.
    local failed_fallback = 0
    for i, name in ipairs(chain) do
      if name == failure.uses then
        failed_fallback = i
      end
    end
    if failed_fallback > 0 then
      local next_skill = chain[failed_fallback + 1]
      if next_skill then
        return { action = "fallback", uses = next_skill }
      end
      return { action = on_exhausted }
    end

    -- Count the failure: always while closed; while half-open only the probe's.
    local state = breaker:state()
    if state == "closed" then
      breaker:failure()
    elseif key == probe then
      probe = nil
      breaker:failure()
    end

    local attempt = tonumber(failure.attempt) or 1
    if holds(on, failure.kind) and attempt < max_attempts then
      local half_open = breaker:state() == "half_open"
      if breaker:allow() then
        if half_open then
          probe = key
        end
        retried[key] = true
        settled[key] = nil
        return { action = "retry", delay = retry.format(retry.delay(attempt, opts)) }
      end
    end
    -- No retry: whatever completes the stage now is not its own skill succeeding.
    retried[key] = nil
    if chain[1] then
      return { action = "fallback", uses = chain[1] }
    end
    if breaker:state() ~= "closed" then
      return { action = on_open }
    end
    return { action = on_exhausted }
  end
end

return M
