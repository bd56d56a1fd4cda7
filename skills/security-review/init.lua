-- security-review: flags risky patterns in source text, line by line.
--
-- Inputs:  text (string)         the source to check
--          path (string, opt.)   file name used in findings and the summary
--          rules (array, opt.)   names of the rules to run (default: all); a recovery
--                                strategy can narrow this to retry a cheaper review
-- Outputs: findings (array)      { rule, severity, line, message, excerpt, path }
--          count (integer)
--          risk (string)         low | medium | high, from the worst finding
--
-- Hard-coded secret values are masked as *** in excerpts. This is a pattern matcher,
-- not an analyser: treat findings as prompts for a human look.

-- Splits text into lines without their line ends.
local function split_lines(text)
  local lines = {}
  if text == "" then
    return lines
  end
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    lines[#lines + 1] = line
  end
  if text:sub(-1) == "\n" then
    lines[#lines] = nil
  end
  return lines
end

-- Trims and shortens a line for a finding.
local function excerpt(line)
  local s = line:gsub("^%s+", ""):gsub("%s+$", "")
  if #s > 80 then
    s = s:sub(1, 77) .. "..."
  end
  return s
end

local SECRET_WORDS = { "password", "passwd", "secret", "api_key", "apikey", "access_key", "private_key", "token" }

-- Finds a secret assigned a string literal; returns the literal's start and end.
local function secret_literal(lower)
  for _, word in ipairs(SECRET_WORDS) do
    for _, assign in ipairs({ "%s*:?=%s*", "%s*:%s*" }) do
      local pattern = word .. "[%w_]*[\"']?" .. assign .. "[\"']()([^\"']+)()[\"']"
      local s, value, e = lower:match(pattern)
      if s and not value:find("^[%$<{%%]") and not value:find("^%*+$") then
        return s, e - 1
      end
    end
  end
  return nil
end

local COMPARED_WORDS = { "token", "secret", "password", "digest", "signature", "hmac", "api_key" }

-- Whether the line compares a secret-looking name with == or != (not against nil/null).
local function compares_secret(lower)
  if not lower:find("[!=]=") then
    return false
  end
  if lower:find("[!=]==?%s*none%f[%W]") or lower:find("[!=]==?%s*nil%f[%W]")
    or lower:find("[!=]==?%s*null%f[%W]") or lower:find("[!=]==?%s*undefined%f[%W]") then
    return false
  end
  for _, word in ipairs(COMPARED_WORDS) do
    if lower:find(word, 1, true) then
      return true
    end
  end
  return false
end

local SQL_START = { "select%s.-%sfrom%s", "insert%s+into%s", "update%s.-%sset%s", "delete%s+from%s" }
local SQL_BUILT = { "[\"']%s*%%%s*[%w_(]", "[\"']%s*%+", "%+%s*[\"']", "%.format%(", "%f[%w]f[\"']",
  "[\"']%s*%.%.", "%.%.%s*[\"']", "%${" }

-- Whether the line builds an SQL statement by formatting or concatenating strings.
local function sql_built(lower)
  local is_sql = false
  for _, p in ipairs(SQL_START) do
    if lower:find(p) then
      is_sql = true
      break
    end
  end
  if not is_sql then
    return false
  end
  for _, p in ipairs(SQL_BUILT) do
    if lower:find(p) then
      return true
    end
  end
  return false
end

-- Each rule: name, severity, test(lower, line) -> truthy, message.
local RULES = {
  { name = "eval", severity = "error", message = "dynamic code execution (eval/exec): never run strings built from input",
    test = function(lower)
      return lower:find("%f[%w_.]eval%s*%(") or lower:find("%f[%w_.]exec%s*%(") or lower:find("new%s+function%s*%(")
    end },
  { name = "hardcoded-secret", severity = "error", message = "hard-coded secret: read it from the environment or a secret store",
    test = function(lower)
      return secret_literal(lower) ~= nil
    end },
  { name = "secret-compare", severity = "warning", message = "secret compared with ==/!= (timing attack): use a constant-time comparison",
    test = compares_secret },
  { name = "sql-injection", severity = "error", message = "SQL built from strings: use query parameters",
    test = sql_built },
  { name = "shell-injection", severity = "warning", message = "shell command built at run time: pass an argument list instead",
    test = function(lower)
      return lower:find("os%.system%s*%(") or lower:find("shell%s*=%s*true") or lower:find("%f[%w_]popen%s*%(")
        or lower:find("child_process") or lower:find("os%.execute%s*%(")
    end },
  { name = "tls-verify", severity = "error", message = "TLS certificate verification disabled",
    test = function(lower)
      return lower:find("verify%s*=%s*false") or lower:find("insecureskipverify%s*:%s*true")
        or lower:find("rejectunauthorized%s*:%s*false")
    end },
  { name = "unsafe-deserialize", severity = "warning", message = "unsafe deserialization of untrusted data",
    test = function(lower)
      return lower:find("pickle%.loads?%s*%(") or lower:find("marshal%.loads%s*%(")
        or (lower:find("yaml%.load%s*%(") and not lower:find("safe"))
    end },
  { name = "weak-hash", severity = "info", message = "weak hash (md5/sha1): fine for checksums, not for passwords or signatures",
    test = function(lower)
      return lower:find("%f[%w]md5%f[%W]") or lower:find("%f[%w]sha1%f[%W]")
    end },
  { name = "private-key", severity = "error", message = "private key material in the source",
    test = function(lower)
      return lower:find("%-%-%-%-%-begin [%w ]*private key%-%-%-%-%-")
    end },
}

local HINTS = {
  ["hardcoded-secret"] = "rotate any credential that was committed, then load it from the environment",
  ["sql-injection"] = "switch to parameterised queries before anything else",
  eval = "replace eval/exec with an explicit parser or a lookup table",
}

local RISK = { error = "high", warning = "medium", info = "low" }

return {
  description = "Flag risky patterns: eval, hard-coded secrets, secrets compared with ==, SQL built from strings",
  inputs = { text = "string" },
  outputs = { findings = "array", count = "integer", risk = "string" },

  run = function(ctx, input)
    local path = type(input.path) == "string" and input.path or nil
    local wanted = nil
    if type(input.rules) == "table" and input.rules[1] ~= nil then
      wanted = {}
      for _, name in ipairs(input.rules) do
        wanted[name] = true
      end
    end

    local findings, fired = {}, {}
    for n, line in ipairs(split_lines(input.text)) do
      local lower = line:lower()
      for _, rule in ipairs(RULES) do
        if (wanted == nil or wanted[rule.name]) and rule.test(lower, line) then
          local shown = line
          if rule.name == "hardcoded-secret" then
            local s, e = secret_literal(lower)
            shown = line:sub(1, s - 1) .. "***" .. line:sub(e + 1)
          end
          findings[#findings + 1] = {
            rule = rule.name,
            severity = rule.severity,
            line = n,
            message = rule.message,
            excerpt = excerpt(shown),
            path = path,
          }
          fired[rule.name] = true
        end
      end
    end

    local risk, worst = "low", 0
    local rank = { info = 1, warning = 2, error = 3 }
    for _, f in ipairs(findings) do
      if rank[f.severity] > worst then
        worst, risk = rank[f.severity], RISK[f.severity]
      end
    end
    local hints = {}
    for _, rule in ipairs(RULES) do
      if fired[rule.name] and HINTS[rule.name] then
        hints[#hints + 1] = HINTS[rule.name]
      end
    end

    local where = path and (path .. ": ") or ""
    local summary
    if #findings == 0 then
      summary = where .. "no security findings"
    else
      summary = string.format("%s%d security finding%s, risk %s", where, #findings, #findings == 1 and "" or "s", risk)
    end
    ctx.log(summary)
    return { findings = findings, count = #findings, risk = risk, summary = summary, hints = hints }
  end,
}
