-- Example hooks: approval policies and recovery strategies, built from swdl's Lua
-- standard library. Load the file from a workflow with
--
--   config:
--     hooks: [../hooks/policies.lua]     # relative to the workflow file
--
-- then name what it registers: `gate: { policy: by-risk }`,
-- `config.approval.policy: trusted`, or `recover: retry-then-fallback` on a stage.
-- examples/lua-review.yaml and examples/lua-recovery.yaml use it.

local policies = require "swdl.policies"
local retry = require "swdl.retry"
local circuit_breaker = require "swdl.circuit_breaker"

---------------------------------------------------------------------------------------
-- Approval policies

-- Low and medium risk go through, critical is refused, high is left to a person.
swdl.policy("by-risk", policies.by_risk{ approve_up_to = "medium", reject_at = "critical" })

-- What each skill's record looked like in earlier runs, e.g. exported from
-- `swdl runs --format json`. Working memory entries that name a skill add to it.
local TRUST = {
  ["code-style"] = { runs = 120, successes = 119 },
  ["security-review"] = { runs = 80, successes = 78 },
  ["git-info"] = { runs = 12, successes = 12 },
  ["deploy"] = { runs = 9, successes = 6 },
}

-- Skills with a good record are approved whatever their risk; otherwise decide by risk,
-- approving only low risk.
swdl.policy("trusted", policies.first{
  policies.by_history{ min_runs = 5, min_success = 0.95, history = TRUST },
  policies.by_risk{ approve_up_to = "low", reject_at = "critical" },
})

-- A stricter sign-off for reviews: approve only when the risk allows it AND the
-- security review (read from working memory) found nothing of high risk.
local function security_clean(stage, ctx)
  for _, entry in ipairs(ctx.memory or {}) do
    if entry.stage == "security" then
      local outputs = entry.outputs
      local risk = type(outputs) == "table" and outputs.risk or nil
      if entry.status ~= "completed" then
        return "ask", "the security review did not complete (" .. tostring(entry.status) .. ")"
      end
      if risk == "high" then
        return "ask", "the security review found high-risk issues"
      end
      return "approve", "the security review found nothing of high risk"
    end
  end
  return "ask", "no security review in this run"
end

swdl.policy("review-signoff", policies.all{
  policies.by_risk{ approve_up_to = "medium", reject_at = "critical" },
  security_clean,
})

---------------------------------------------------------------------------------------
-- Recovery strategies

-- Makes a failed task smaller for the next attempt (the "retry with progressive
-- simplification" pattern): shallower, half the size, fewer review rules. Only the
-- inputs returned here change; the others keep their values.
local function simplify(inputs, attempt)
  local with = {}
  if math.tointeger(inputs.depth) and inputs.depth > 1 then
    with.depth = inputs.depth - 1
  end
  if math.tointeger(inputs.size) and inputs.size > 1 then
    with.size = inputs.size // 2
  end
  if inputs.text ~= nil then
    -- A narrower review: only the cheap, high-value rules.
    with.rules = { "hardcoded-secret", "private-key", "eval" }
  end
  swdl.log(string.format("attempt %d failed; retrying with simpler inputs", attempt))
  return with
end

-- Three attempts with exponential backoff from 200ms, each simpler than the last;
-- then a fallback chosen by the failing skill; then abort.
swdl.recovery("retry-then-fallback", retry.strategy{
  max_attempts = 3,
  backoff = "exponential",
  base = "200ms",
  max = "2s",
  jitter = true,
  simplify = simplify,
  fallback = {
    ["security-review"] = "code-style",  -- at least some review of the text
    flaky = "echo",                      -- degrade to a canned answer
  },
})

-- One breaker for everything that calls the (pretend) remote service: three failures
-- within a minute open it for 30 seconds, and while it is open stages fall back at
-- once instead of hammering the service with retries.
local service = circuit_breaker.new{
  name = "remote-service",
  failure_threshold = 3,
  window = "60s",
  cooldown = "30s",
  on_change = function(from, to)
    swdl.log(string.format("circuit remote-service: %s -> %s", from, to))
  end,
}

swdl.recovery("guarded", circuit_breaker.recovery(service, {
  max_attempts = 3,
  backoff = "fixed",
  base = "100ms",
  fallback = "echo",
}))
