-- word-count: counts the words, lines and characters of a text.
--
-- Inputs:  text (string)
-- Outputs: words (integer)    runs of non-space characters
--          lines (integer)    lines, counting a last line without a newline
--          chars (integer)    UTF-8 characters (bytes if the text is not valid UTF-8)
--          bytes (integer)
--          unique (integer)   distinct words, ignoring case and surrounding punctuation

return {
  description = "Count the words, lines and characters of a text",
  inputs = { text = "string" },
  outputs = { words = "integer", lines = "integer", chars = "integer", bytes = "integer", unique = "integer" },

  run = function(ctx, input)
    local text = input.text
    local words, unique, seen = 0, 0, {}
    for word in text:gmatch("%S+") do
      words = words + 1
      local key = word:lower():gsub("^%p+", ""):gsub("%p+$", "")
      if key ~= "" and not seen[key] then
        seen[key] = true
        unique = unique + 1
      end
    end
    local _, newlines = text:gsub("\n", "")
    local lines = newlines
    if text ~= "" and text:sub(-1) ~= "\n" then
      lines = lines + 1
    end
    local chars = utf8.len(text) or #text
    ctx.log(string.format("%d words, %d lines, %d characters", words, lines, chars))
    return {
      words = words,
      lines = lines,
      chars = chars,
      bytes = #text,
      unique = unique,
      summary = string.format("%d words in %d lines", words, lines),
    }
  end,
}
