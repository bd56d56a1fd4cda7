-- swdl.policies: approval policies by risk and by trust history, and combinators.
--
--   local policies = require "swdl.policies"
--   swdl.policy("by-risk", policies.by_risk{ approve_up_to = "medium", reject_at = "critical" })
--   swdl.policy("trusted", policies.first{
--     policies.by_history{ min_runs = 3, min_success = 0.9, history = { deploy = { runs = 40, successes = 39 } } },
--     policies.by_risk{ approve_up_to = "low" },
--   })
--
-- A policy is a function(stage, ctx) returning a decision ("approve", "reject" or
-- "ask") and a reason. `stage` is { id, kind ("gate" | "approval"), risk, uses,
-- message } and `ctx` is { run_id, params, memory }. Every policy made here gives a
-- reason, which the run records with the decision.

local M = {}

-- Risk levels in order; M.levels[i] is the name of level i.
M.levels = { "low", "medium", "high", "critical" }

local LEVEL = { low = 1, medium = 2, high = 3, critical = 4 }

local DECISIONS = { approve = true, reject = true, ask = true }

-- The position of a risk name in low < medium < high < critical, or nil.
function M.level(risk)
  return LEVEL[risk]
end

-- Checks an option naming a risk level; nil and false are allowed (meaning "none").
local function level_option(v, key)
  if v == nil or v == false then
    return nil
  end
  local l = LEVEL[v]
  if not l then
    error(string.format("%s must be low, medium, high or critical, got %q", key, tostring(v)), 3)
  end
  return l
end

-- Calls policy p and returns a checked decision and reason (nil counts as "ask").
function M.decide(p, stage, ctx)
  local decision, reason = p(stage, ctx)
  if decision == nil then
    decision = "ask"
  end
  if not DECISIONS[decision] then
    error(string.format("a policy returned %q: expected approve, reject or ask", tostring(decision)), 2)
  end
  if reason ~= nil then
    reason = tostring(reason)
  end
  return decision, reason
end

-- Decides by the stage's risk: approve at or below `approve_up_to` (default "low";
-- false: never), reject at or above `reject_at` (default: never), ask in between.
-- A stage without a risk is treated as `default_risk` when given, otherwise asked.
function M.by_risk(opts)
  opts = opts or {}
  local approve_up_to = opts.approve_up_to
  if approve_up_to == nil then
    approve_up_to = "low"
  end
  local approve = level_option(approve_up_to, "approve_up_to")
  local reject = level_option(opts.reject_at, "reject_at")
  local default = level_option(opts.default_risk, "default_risk")
  if approve and reject and reject <= approve then
    error("reject_at must be above approve_up_to", 2)
  end
  return function(stage, ctx)
    local id = tostring(stage and stage.id or "?")
    local risk = stage and stage.risk
    local l = LEVEL[risk]
    if l == nil then
      if risk ~= nil and type(risk) == "string" then
        return "ask", string.format("stage `%s` has an unknown risk %q", id, risk)
      end
      if not default then
        return "ask", string.format("stage `%s` declares no risk", id)
      end
      l, risk = default, M.levels[default]
    end
    if reject and l >= reject then
      return "reject", string.format("stage `%s` has risk %s, at or above %s: rejected by policy",
        id, risk, M.levels[reject])
    end
    if approve and l <= approve then
      return "approve", string.format("stage `%s` has risk %s, at or below %s", id, risk, M.levels[approve])
    end
    if approve then
      return "ask", string.format("stage `%s` has risk %s, above %s: a person decides", id, risk, M.levels[approve])
    end
    return "ask", string.format("stage `%s` has risk %s: a person decides", id, risk)
  end
end

-- Statuses that count as a run of a skill, and whether each is a success.
local COUNTED = { completed = true, failed = false, timed_out = false }

-- Adds up { runs, successes } for `skill` from the `history` option and from the working
-- memory entries that name the skill in `uses`.
local function tally(history, skill, stage, ctx)
  local runs, successes = 0, 0
  local h = history
  if type(h) == "function" then
    h = h(skill, stage, ctx)
  elseif type(h) == "table" then
    h = h[skill]
  else
    h = nil
  end
  if type(h) == "table" then
    runs = runs + (tonumber(h.runs) or 0)
    successes = successes + (tonumber(h.successes) or 0)
  end
  for _, entry in ipairs(ctx and ctx.memory or {}) do
    if type(entry) == "table" and entry.uses == skill and COUNTED[entry.status] ~= nil then
      runs = runs + 1
      if COUNTED[entry.status] then
        successes = successes + 1
      end
    end
  end
  return runs, successes
end

-- Decides by the skill's track record: approve when the stage's skill (stage.uses, or
-- what `key(stage)` returns) has at least `min_runs` recorded runs (default 3) and
-- succeeded in at least `min_success` of them (default 0.9); reject when the share is
-- below `reject_below` (default: never); ask otherwise. Runs come from `history`
-- ({ [skill] = { runs = n, successes = k } }, or a function(skill, stage, ctx)
-- returning such a record) plus the entries in ctx.memory whose `uses` is the skill.
function M.by_history(opts)
  opts = opts or {}
  local min_runs = tonumber(opts.min_runs) or 3
  local min_success = tonumber(opts.min_success) or 0.9
  local reject_below = opts.reject_below and tonumber(opts.reject_below)
  if min_success < 0 or min_success > 1 then
    error("min_success must be between 0 and 1", 2)
  end
  local key = opts.key or function(stage)
    return stage.uses
  end
  local history = opts.history
  return function(stage, ctx)
    local id = tostring(stage and stage.id or "?")
    local skill = stage and key(stage)
    if skill == nil then
      return "ask", string.format("stage `%s` runs no skill, so it has no history", id)
    end
    local runs, successes = tally(history, skill, stage, ctx)
    if runs < min_runs then
      return "ask", string.format("skill `%s` has %d recorded run%s, fewer than %d",
        skill, runs, runs == 1 and "" or "s", min_runs)
    end
    local share = successes / runs
    local record = string.format("skill `%s` succeeded in %d of %d runs (%.0f%%)", skill, successes, runs,
      share * 100)
    if share >= min_success then
      return "approve", record
    end
    if reject_below and share < reject_below then
      return "reject", string.format("%s, below %.0f%%", record, reject_below * 100)
    end
    return "ask", string.format("%s, below %.0f%%", record, min_success * 100)
  end
end

-- Checks the list given to a combinator.
local function policy_list(list, name)
  if type(list) ~= "table" or #list == 0 then
    error(name .. " expects a non-empty array of policies", 3)
  end
  for i, p in ipairs(list) do
    if type(p) ~= "function" then
      error(string.format("%s: entry %d is a %s, not a policy function", name, i, type(p)), 3)
    end
  end
  return list
end

-- Joins the non-empty reasons with "; ".
local function join(reasons)
  return table.concat(reasons, "; ")
end

-- Approves only when every policy approves; the first rejection rejects at once;
-- otherwise asks. Policies are asked in order.
function M.all(list)
  policy_list(list, "policies.all")
  return function(stage, ctx)
    local approvals, asks = {}, {}
    for _, p in ipairs(list) do
      local d, why = M.decide(p, stage, ctx)
      if d == "reject" then
        return "reject", why
      end
      if d == "approve" then
        approvals[#approvals + 1] = why or "approved"
      else
        asks[#asks + 1] = why or "a policy asked"
      end
    end
    if #asks > 0 then
      return "ask", join(asks)
    end
    return "approve", join(approvals)
  end
end

-- Approves when some policy approves (the first approval wins); rejects only when
-- every policy rejects; otherwise asks.
function M.any(list)
  policy_list(list, "policies.any")
  return function(stage, ctx)
    local rejections, asks = {}, {}
    for _, p in ipairs(list) do
      local d, why = M.decide(p, stage, ctx)
      if d == "approve" then
        return "approve", why
      end
      local into = d == "reject" and rejections or asks
      into[#into + 1] = why or ("a policy chose to " .. d)
    end
    if #asks == 0 then
      return "reject", join(rejections)
    end
    return "ask", join(asks)
  end
end

-- The first policy that approves or rejects decides; when all ask, asks.
function M.first(list)
  policy_list(list, "policies.first")
  return function(stage, ctx)
    local asks = {}
    for _, p in ipairs(list) do
      local d, why = M.decide(p, stage, ctx)
      if d ~= "ask" then
        return d, why
      end
      asks[#asks + 1] = why or "a policy asked"
    end
    return "ask", join(asks)
  end
end

return M
