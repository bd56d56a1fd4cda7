-- slugify: turns a title into a URL- and file-name-safe slug.
--
-- Inputs:  text (string)
--          separator (string, opt.)   default "-"
--          max_length (integer, opt.) default 64; cut at a word boundary when possible
-- Outputs: slug (string)              lower-case a-z, 0-9 and the separator;
--                                     "untitled" when nothing is left
--
-- Common Latin letters with accents are transliterated ("Crème brûlée" -> "creme-brulee").

-- Code point -> ASCII replacement for accented Latin letters.
local FOLD = {}
local function fold(ascii, codepoints)
  for _, cp in ipairs(codepoints) do
    FOLD[cp] = ascii
  end
end
fold("a", { 0xE0, 0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xC0, 0xC1, 0xC2, 0xC3, 0xC4, 0xC5, 0x101, 0x100, 0x105, 0x104 })
fold("ae", { 0xE6, 0xC6 })
fold("c", { 0xE7, 0xC7, 0x107, 0x106, 0x10D, 0x10C })
fold("d", { 0x111, 0x110, 0x10F, 0x10E })
fold("e", { 0xE8, 0xE9, 0xEA, 0xEB, 0xC8, 0xC9, 0xCA, 0xCB, 0x113, 0x112, 0x119, 0x118, 0x11B, 0x11A })
fold("i", { 0xEC, 0xED, 0xEE, 0xEF, 0xCC, 0xCD, 0xCE, 0xCF, 0x131 })
fold("l", { 0x142, 0x141 })
fold("n", { 0xF1, 0xD1, 0x144, 0x143, 0x148, 0x147 })
fold("o", { 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF8, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD8, 0x151, 0x150 })
fold("oe", { 0x153, 0x152 })
fold("r", { 0x159, 0x158 })
fold("s", { 0x15B, 0x15A, 0x161, 0x160, 0x15F, 0x15E })
fold("ss", { 0xDF })
fold("t", { 0x165, 0x164 })
fold("u", { 0xF9, 0xFA, 0xFB, 0xFC, 0xD9, 0xDA, 0xDB, 0xDC, 0x16F, 0x16E, 0x171, 0x170 })
fold("y", { 0xFD, 0xFF, 0xDD })
fold("z", { 0x17A, 0x179, 0x17C, 0x17B, 0x17E, 0x17D })

-- Replaces accented letters by ASCII; other non-ASCII characters become spaces.
local function to_ascii(text)
  local ok, out = pcall(function()
    local parts = {}
    for _, cp in utf8.codes(text) do
      if cp < 128 then
        parts[#parts + 1] = string.char(cp)
      else
        parts[#parts + 1] = FOLD[cp] or " "
      end
    end
    return table.concat(parts)
  end)
  if ok then
    return out
  end
  -- Not valid UTF-8: keep the ASCII bytes only.
  return (text:gsub("[\128-\255]", " "))
end

return {
  description = "Turn a title into a URL- and file-name-safe slug",
  inputs = { text = "string" },
  outputs = { slug = "string" },

  run = function(ctx, input)
    local sep = type(input.separator) == "string" and input.separator or "-"
    local max = math.tointeger(input.max_length) or 64
    local words = {}
    for word in to_ascii(input.text):lower():gmatch("[a-z0-9]+") do
      words[#words + 1] = word
    end
    local slug = table.concat(words, sep)
    if #slug > max then
      local cut = slug:sub(1, max)
      -- Prefer ending at a word boundary when one is in the second half.
      local last = nil
      local from = 1
      while true do
        local s = cut:find(sep, from, true)
        if not s then
          break
        end
        last, from = s, s + 1
      end
      if last and last > max // 2 and sep ~= "" then
        cut = cut:sub(1, last - 1)
      end
      while sep ~= "" and #cut > 0 and cut:sub(-#sep) == sep do
        cut = cut:sub(1, -#sep - 1)
      end
      slug = cut
    end
    if slug == "" then
      slug = "untitled"
    end
    return { slug = slug, summary = slug }
  end,
}
