-- aggregate: merges the findings of several stages into one markdown report.
--
-- Inputs:  title (string)          the report's heading
--          sections (array)        { name = "style", findings = [...] } in report order;
--                                  findings may be null (a skipped or failed stage)
--          notes (string, opt.)    a paragraph appended to the report
--          write_to (string, opt.) also write the report to this file (needs `fs`)
-- Outputs: report (string)         markdown
--          total (integer)         number of findings
--          counts (object)         { error = n, warning = n, info = n }
--          verdict (string)        clean | comments | changes requested
--
-- A finding is a table { severity, line, rule, message, path } (as code-style,
-- security-review and perf-review return them) or a plain string (an info finding).

local SEVERITIES = { "error", "warning", "info" }
local KNOWN = { error = true, warning = true, info = true }

-- One finding as a markdown list item, and its severity.
local function render(f)
  if type(f) ~= "table" then
    return "- " .. tostring(f), "info"
  end
  local sev = KNOWN[f.severity] and f.severity or "info"
  local where = {}
  if type(f.path) == "string" then
    where[#where + 1] = f.path
  end
  if math.tointeger(f.line) then
    where[#where + 1] = "line " .. math.tointeger(f.line)
  end
  local item = "- **" .. sev .. "**"
  if #where > 0 then
    item = item .. " " .. table.concat(where, " ")
  end
  if type(f.rule) == "string" then
    item = item .. " `" .. f.rule .. "`"
  end
  item = item .. ": " .. tostring(f.message or "")
  if type(f.excerpt) == "string" and f.excerpt ~= "" then
    item = item .. " — `" .. f.excerpt:gsub("`", "'") .. "`"
  end
  return item, sev
end

-- Severity rank for sorting: errors first.
local RANK = { error = 1, warning = 2, info = 3 }

return {
  description = "Merge findings from several stages into a markdown report with a verdict",
  inputs = { title = "string", sections = "array" },
  outputs = { report = "string", total = "integer", counts = "object", verdict = "string" },

  run = function(ctx, input)
    local counts = { error = 0, warning = 0, info = 0 }
    local out = { "# " .. input.title, "" }
    local table_rows = {}
    local bodies = {}

    for i, section in ipairs(input.sections) do
      local name = type(section) == "table" and type(section.name) == "string" and section.name
        or ("section " .. i)
      local findings = type(section) == "table" and section.findings or nil
      local body = { "## " .. name, "" }
      if type(findings) ~= "table" then
        table_rows[#table_rows + 1] = string.format("| %s | - | - | - |", name)
        body[#body + 1] = "_No data: the stage was skipped or failed._"
      else
        local items = {}
        local mine = { error = 0, warning = 0, info = 0 }
        for j, f in ipairs(findings) do
          local item, sev = render(f)
          items[#items + 1] = { item = item, rank = RANK[sev], order = j }
          mine[sev] = mine[sev] + 1
          counts[sev] = counts[sev] + 1
        end
        table.sort(items, function(a, b)
          if a.rank ~= b.rank then
            return a.rank < b.rank
          end
          return a.order < b.order
        end)
        table_rows[#table_rows + 1] = string.format("| %s | %d | %d | %d |", name, mine.error, mine.warning, mine.info)
        if #items == 0 then
          body[#body + 1] = "No findings."
        end
        for _, it in ipairs(items) do
          body[#body + 1] = it.item
        end
      end
      body[#body + 1] = ""
      bodies[#bodies + 1] = table.concat(body, "\n")
    end

    local total = counts.error + counts.warning + counts.info
    local verdict = counts.error > 0 and "changes requested" or (total > 0 and "comments" or "clean")
    local parts = {}
    for _, sev in ipairs(SEVERITIES) do
      parts[#parts + 1] = counts[sev] .. " " .. sev
    end
    local line = string.format("%d finding%s (%s)", total, total == 1 and "" or "s", table.concat(parts, ", "))

    out[#out + 1] = string.format("**Verdict: %s.** %s.", verdict, line)
    out[#out + 1] = ""
    out[#out + 1] = "| section | error | warning | info |"
    out[#out + 1] = "|---|---:|---:|---:|"
    for _, row in ipairs(table_rows) do
      out[#out + 1] = row
    end
    out[#out + 1] = ""
    for _, b in ipairs(bodies) do
      out[#out + 1] = b
    end
    if type(input.notes) == "string" and input.notes ~= "" then
      out[#out + 1] = "## Notes"
      out[#out + 1] = ""
      out[#out + 1] = input.notes
      out[#out + 1] = ""
    end
    local report = table.concat(out, "\n")

    local artifacts = {}
    if type(input.write_to) == "string" and input.write_to ~= "" then
      swdl.fs.write(input.write_to, report)
      artifacts[1] = input.write_to
      ctx.log("wrote " .. input.write_to)
    end

    return {
      report = report,
      total = total,
      counts = counts,
      verdict = verdict,
      summary = line .. ": " .. verdict,
      artifacts = #artifacts > 0 and artifacts or nil,
    }
  end,
}
