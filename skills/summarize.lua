-- summarize: an extractive summary: keeps the most telling sentences of a text, in
-- their original order.
--
-- Inputs:  text (string)
--          sentences (integer, opt.) how many to keep (default 3)
--          mode (string, opt.)       "key" (default): sentences whose words are the most
--                                    frequent in the text; "lead": the first ones
-- Outputs: text (string)             the kept sentences, joined by spaces
--          kept (integer), total (integer)  sentences kept and found
--
-- Sentences end at . ! or ? followed by a space; headings, list items and blank-line
-- separated paragraphs are separate sentences too.

local STOP = {}
for w in ([[a about above after again against all also am an and any are as at be because
  been before being below between both but by can could did do does doing down during each
  few for from further had has have having he her here hers him his how i if in into is it
  its itself just me more most my no nor not now of off on once only or other our ours out
  over own same she should so some such than that the their them then there these they this
  those through to too under until up very was we were what when where which while who whom
  why will with would you your]]):gmatch("%a+") do
  STOP[w] = true
end

-- Trims surrounding space.
local function trim(s)
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Splits one block of prose into sentences.
local function split_sentences(block, out)
  local s = block:gsub("%s+", " ")
  local pos = 1
  while pos <= #s do
    local e1, e2 = s:find("[.!?]+[\"')%]]* ", pos)
    local piece
    if e1 then
      piece, pos = s:sub(pos, e2 - 1), e2 + 1
    else
      piece, pos = s:sub(pos), #s + 1
    end
    piece = trim(piece)
    if piece ~= "" then
      out[#out + 1] = piece
    end
  end
end

-- The sentences of a text: paragraphs split at blank lines, headings and list items.
local function sentences(text)
  local out, para = {}, {}
  local function flush()
    if #para > 0 then
      split_sentences(table.concat(para, " "), out)
      para = {}
    end
  end
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    if line:find("^%s*$") then
      flush()
    elseif line:find("^%s*[#*%-+>]") or line:find("^%s*%d+[.)]%s") then
      flush()
      local item = trim(line:gsub("^%s*[#*%-+>]+%s*", ""):gsub("^%s*%d+[.)]%s+", ""))
      if item ~= "" then
        split_sentences(item, out)
      end
    else
      para[#para + 1] = line
    end
  end
  flush()
  return out
end

-- Lower-case content words of a sentence.
local function content_words(sentence)
  local words = {}
  for w in sentence:lower():gmatch("[%a][%w']*") do
    if not STOP[w] and #w > 2 then
      words[#words + 1] = w
    end
  end
  return words
end

return {
  description = "Extractive summary: keep the N most telling sentences of a text",
  inputs = { text = "string" },
  outputs = { text = "string", kept = "integer", total = "integer" },

  run = function(ctx, input)
    local want = math.tointeger(input.sentences) or 3
    if want < 1 then
      error("`sentences` must be at least 1", 0)
    end
    local mode = input.mode == "lead" and "lead" or "key"
    local all = sentences(input.text)
    local keep = {}

    if #all <= want or mode == "lead" then
      for i = 1, math.min(want, #all) do
        keep[#keep + 1] = i
      end
    else
      local freq = {}
      local words_of = {}
      for i, s in ipairs(all) do
        words_of[i] = content_words(s)
        for _, w in ipairs(words_of[i]) do
          freq[w] = (freq[w] or 0) + 1
        end
      end
      local scored = {}
      for i = 1, #all do
        local sum = 0
        for _, w in ipairs(words_of[i]) do
          sum = sum + freq[w]
        end
        local score = sum / math.sqrt(math.max(1, #words_of[i]))
        if i == 1 then
          score = score * 1.25  -- openings tend to say what a text is about
        end
        scored[#scored + 1] = { index = i, score = score }
      end
      table.sort(scored, function(a, b)
        if a.score ~= b.score then
          return a.score > b.score
        end
        return a.index < b.index
      end)
      for k = 1, want do
        keep[#keep + 1] = scored[k].index
      end
      table.sort(keep)
    end

    local picked = {}
    for _, i in ipairs(keep) do
      picked[#picked + 1] = all[i]
    end
    local text = table.concat(picked, " ")
    return {
      text = text,
      kept = #picked,
      total = #all,
      summary = string.format("kept %d of %d sentences (%d -> %d characters)", #picked, #all, #input.text, #text),
    }
  end,
}
