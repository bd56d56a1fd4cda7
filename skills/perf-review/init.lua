-- perf-review: performance hints from the shape of source text.
--
-- Inputs:  text (string)         the source to check
--          path (string, opt.)   file name used in findings and the summary
-- Outputs: findings (array)      { rule, severity, line, message, excerpt, path }
--          count (integer)
--          max_depth (integer)   deepest loop nesting seen
--
-- Loops are found by keyword (for, while, loop, forEach, .each) and their bodies by
-- indentation, so this works for indented code in most languages. Rules: nested-loop,
-- n-plus-one (a query or request inside a loop), sleep-in-loop, regex-in-loop,
-- string-concat-in-loop.

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

-- Indentation width, counting a tab as 4 columns.
local function indent_of(line)
  local ws = line:match("^[ \t]*")
  local _, tabs = ws:gsub("\t", "")
  return #ws + 3 * tabs
end

-- Whether a (trimmed, lower-case) line opens a loop.
local function is_loop(code)
  return code:find("^for[%s(]") or code:find("^while[%s(]") or code:find("^loop%s*{")
    or code:find("^foreach[%s(]") or code:find("^do%s*$") or code:find("%.foreach%s*%(")
    or code:find("%.each%s*[{(d]") or code:find("^repeat%s*$")
end

local QUERY = { "%.query%s*%(", "%.execute%s*%(", "%f[%w_]fetch%s*%(", "requests%.%a+%s*%(",
  "http%.get%s*%(", "http%.post%s*%(", "%.objects%.", "find_by", "findone%s*%(", "findbyid%s*%(",
  "[\"']select%s" }

-- Body rules: name, severity, message, patterns (any one matches).
local BODY_RULES = {
  { name = "n-plus-one", severity = "warning", patterns = QUERY,
    message = "query or request inside a loop (N+1): fetch everything in one call before the loop" },
  { name = "sleep-in-loop", severity = "info", patterns = { "%f[%w_]sleep%s*%(" },
    message = "sleep inside a loop: the loop's time grows with its length" },
  { name = "regex-in-loop", severity = "info", patterns = { "re%.compile%s*%(", "regex::new%s*%(", "new%s+regexp%s*%(" },
    message = "regular expression compiled inside a loop: compile it once, outside" },
  { name = "string-concat-in-loop", severity = "info",
    patterns = { "[%w_]+%s*%+=%s*[\"']", "[%w_]+%s*%+=%s*f[\"']", "([%w_]+)%s*=%s*%1%s*%.%." },
    message = "string built by concatenation in a loop: collect parts and join once" },
}

return {
  description = "Performance hints: nested loops, queries or requests in loops (N+1), string building in loops",
  inputs = { text = "string" },
  outputs = { findings = "array", count = "integer", max_depth = "integer" },

  run = function(ctx, input)
    local path = type(input.path) == "string" and input.path or nil
    local findings = {}
    local loops = {}  -- indentation of the loops enclosing the current line
    local max_depth = 0

    for n, line in ipairs(split_lines(input.text)) do
      local code = line:lower():gsub("^%s+", "")
      if code ~= "" and not code:find("^[#%-/]") then
        local indent = indent_of(line)
        while #loops > 0 and loops[#loops] >= indent do
          loops[#loops] = nil
        end
        local function add(rule, severity, message)
          findings[#findings + 1] = {
            rule = rule, severity = severity, line = n, message = message,
            excerpt = excerpt(line), path = path,
          }
        end
        if #loops > 0 then
          for _, rule in ipairs(BODY_RULES) do
            for _, p in ipairs(rule.patterns) do
              if code:find(p) then
                add(rule.name, rule.severity, rule.message)
                break
              end
            end
          end
        end
        if is_loop(code) then
          loops[#loops + 1] = indent
          if #loops > max_depth then
            max_depth = #loops
          end
          if #loops >= 2 then
            add("nested-loop", #loops >= 3 and "warning" or "info",
              string.format("loop nested %d deep (O(n^%d)): index one side in a map or set", #loops, #loops))
          end
        end
      end
    end

    local where = path and (path .. ": ") or ""
    local summary
    if #findings == 0 then
      summary = where .. "no performance findings"
    else
      summary = string.format("%s%d performance finding%s, loops nested up to %d deep", where, #findings,
        #findings == 1 and "" or "s", max_depth)
    end
    ctx.log(summary)
    return { findings = findings, count = #findings, max_depth = max_depth, summary = summary }
  end,
}
