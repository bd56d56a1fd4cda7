-- code-style: a naive, language-agnostic style checker.
--
-- Inputs:  text (string)        the source to check
--          path (string, opt.)  file name used in findings and the summary
--          max_line (int, opt.) longest allowed line, in characters (default 100)
-- Outputs: findings (array)     { rule, severity, line, message, excerpt, path }
--          count (integer), lines (integer)
--
-- Rules: long-line, trailing-whitespace, tab-indent, mixed-indent, blank-lines (more than
-- two in a row), todo (TODO/FIXME/XXX markers), final-newline.

-- Splits text into lines without their line ends ("\n" or "\r\n").
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

-- A short, single-line excerpt of a source line.
local function excerpt(line)
  local s = line:gsub("^%s+", ""):gsub("%s+$", "")
  if #s > 80 then
    s = s:sub(1, 77) .. "..."
  end
  return s
end

local ORDER = { "error", "warning", "info" }

return {
  description = "Naive style checker: long lines, trailing whitespace, tabs, TODO markers",
  inputs = { text = "string", path = "string?", max_line = "integer?" },
  outputs = { findings = "array", count = "integer", lines = "integer" },

  run = function(ctx, input)
    local text = input.text
    local path = type(input.path) == "string" and input.path or nil
    local max_line = math.tointeger(input.max_line) or 100
    local lines = split_lines(text)
    local findings = {}

    local function add(rule, severity, n, message)
      findings[#findings + 1] = {
        rule = rule,
        severity = severity,
        line = n,
        message = message,
        excerpt = lines[n] and excerpt(lines[n]) or "",
        path = path,
      }
    end

    local blank_run = 0
    for n, line in ipairs(lines) do
      local width = utf8.len(line) or #line
      if width > max_line then
        add("long-line", "warning", n, string.format("line is %d characters long (limit %d)", width, max_line))
      end
      if line:find("[ \t]+$") then
        add("trailing-whitespace", "info", n, "trailing whitespace")
      end
      local indent = line:match("^[ \t]*")
      if indent:find("\t") then
        if indent:find(" ") then
          add("mixed-indent", "warning", n, "indentation mixes tabs and spaces")
        else
          add("tab-indent", "warning", n, "indented with tabs")
        end
      end
      local marker = line:match("%f[%w](TODO)%f[%W]") or line:match("%f[%w](FIXME)%f[%W]")
        or line:match("%f[%w](XXX)%f[%W]")
      if marker then
        add("todo", "info", n, marker .. " marker left in the code")
      end
      if line:find("^%s*$") then
        blank_run = blank_run + 1
        if blank_run == 3 then
          add("blank-lines", "info", n, "more than two blank lines in a row")
        end
      else
        blank_run = 0
      end
    end
    if text ~= "" and text:sub(-1) ~= "\n" then
      add("final-newline", "info", #lines, "no newline at the end of the text")
    end

    local by = { error = 0, warning = 0, info = 0 }
    for _, f in ipairs(findings) do
      by[f.severity] = by[f.severity] + 1
    end
    local parts = {}
    for _, sev in ipairs(ORDER) do
      if by[sev] > 0 then
        parts[#parts + 1] = by[sev] .. " " .. sev
      end
    end
    local where = path and (path .. ": ") or ""
    local summary
    if #findings == 0 then
      summary = where .. "no style findings in " .. #lines .. " lines"
    else
      summary = string.format("%s%d style finding%s (%s) in %d lines", where, #findings,
        #findings == 1 and "" or "s", table.concat(parts, ", "), #lines)
    end
    ctx.log(summary)
    return { findings = findings, count = #findings, lines = #lines, summary = summary }
  end,
}
