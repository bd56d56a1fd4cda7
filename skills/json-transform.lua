-- json-transform: reshapes a JSON object, or each object of an array: pick fields
-- (also nested ones), rename them, drop some, or build new records from paths.
--
-- Inputs:  data (any)               an object, or an array of objects
--          fields (object, opt.)    { new_name = "path.to.value", ... }: build each record
--                                   from these paths only
--          pick (array, opt.)       paths to keep; a nested path is kept under its last
--                                   segment ("author.name" -> name)
--          rename (object, opt.)    { old = "new" } applied after pick
--          drop (array, opt.)       top-level keys to remove
-- Outputs: result (any)             the reshaped object or array
--          count (integer)          records reshaped
--
-- Paths are dot-separated; a number segment indexes an array from 0, as in expressions
-- ("items.0.id"). A path that leads nowhere leaves its field out.

-- Whether a table is used as an array (empty tables count as arrays).
local function is_array(t)
  return type(t) == "table" and (next(t) == nil or t[1] ~= nil)
end

-- Follows a dotted path; nil when it leads nowhere.
local function get(value, path)
  for segment in path:gmatch("[^.]+") do
    if type(value) ~= "table" then
      return nil
    end
    local index = math.tointeger(tonumber(segment))
    if index and is_array(value) then
      value = value[index + 1]
    else
      value = value[segment]
    end
  end
  return value
end

-- The last segment of a path.
local function last_segment(path)
  return path:match("([^.]+)$") or path
end

-- Reshapes one record.
local function reshape(record, opts)
  if type(record) ~= "table" or is_array(record) then
    return record
  end
  local out
  if type(opts.fields) == "table" then
    out = {}
    for name, path in pairs(opts.fields) do
      out[name] = get(record, tostring(path))
    end
  elseif type(opts.pick) == "table" and opts.pick[1] ~= nil then
    out = {}
    for _, path in ipairs(opts.pick) do
      out[last_segment(path)] = get(record, path)
    end
  else
    out = {}
    for k, v in pairs(record) do
      out[k] = v
    end
  end
  if type(opts.rename) == "table" then
    local renamed = {}
    for k, v in pairs(out) do
      local new = opts.rename[k]
      renamed[type(new) == "string" and new or k] = v
    end
    out = renamed
  end
  if type(opts.drop) == "table" then
    for _, k in ipairs(opts.drop) do
      out[k] = nil
    end
  end
  return out
end

return {
  description = "Reshape JSON: pick, rename and drop fields of an object or of each object in an array",
  inputs = { data = "any" },
  outputs = { result = "any", count = "integer" },

  run = function(ctx, input)
    local data = input.data
    local result, count
    if is_array(data) then
      result, count = {}, 0
      for i, record in ipairs(data) do
        result[i] = reshape(record, input)
        count = count + 1
      end
    elseif type(data) == "table" then
      result, count = reshape(data, input), 1
    else
      error("json-transform: `data` must be an object or an array of objects, got " .. type(data), 0)
    end
    return { result = result, count = count, summary = string.format("reshaped %d record%s", count,
      count == 1 and "" or "s") }
  end,
}
