-- flaky: a skill that fails on purpose, for trying out retries and recovery
-- strategies. Unlike the built-in `fail`, it can also fail because its task is "too
-- big", so a strategy that simplifies the inputs is what makes it succeed.
--
-- Inputs:  times (integer)        fail attempts 1..times (ctx.attempt), then succeed
--          size (integer, opt.)   the size of the task ...
--          limit (integer, opt.)  ... which fails while size > limit
--          hang (opt.)            sleep this long before failing ("5s", or ms), so a
--                                 stage `timeout` below it turns failures into timeouts
--          message (string, opt.) the error text (default "service unavailable")
-- Outputs: attempt (integer)      the attempt that succeeded
--          size (integer)         the size it succeeded with (0 when none was given)

return {
  description = "Fail the first N attempts (and while size > limit), for recovery demos",
  inputs = { times = "integer" },
  outputs = { attempt = "integer", size = "integer" },

  run = function(ctx, input)
    local attempt = ctx.attempt
    local size = math.tointeger(input.size)
    local limit = math.tointeger(input.limit)
    local why = nil
    if attempt <= input.times then
      why = string.format("attempt %d of %d planned failures", attempt, input.times)
    elseif size and limit and size > limit then
      why = string.format("size %d is over the limit %d", size, limit)
    end
    if why then
      if input.hang ~= nil then
        ctx.log("hanging before failing: " .. tostring(input.hang))
        swdl.sleep(input.hang)
      end
      local message = type(input.message) == "string" and input.message or "service unavailable"
      error(string.format("flaky: %s (%s)", message, why), 0)
    end
    return {
      attempt = attempt,
      size = size or 0,
      summary = string.format("succeeded on attempt %d%s", attempt, size and (" with size " .. size) or ""),
    }
  end,
}
