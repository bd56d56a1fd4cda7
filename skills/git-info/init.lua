-- git-info: the commit, branch and state of a git work tree. Runs `git`, so the
-- workflow must grant it: `config.permissions: { git-info: [exec] }`.
--
-- Inputs:  dir (string, opt.)   the work tree (default: swdl's working directory)
-- Outputs: available (boolean)  false outside a git work tree, or without git installed
--                               (the strings are then "")
--          commit (string)      full hash of HEAD
--          short (string)       abbreviated hash
--          branch (string)      current branch ("HEAD" when detached)
--          subject (string)     first line of HEAD's message
--          dirty (boolean)      uncommitted changes exist

-- Runs git with `args` (in `dir` when given); returns trimmed stdout, or nil and the
-- reason. A missing `exec` permission is raised, not hidden: the workflow must fix it.
local function git(dir, args)
  local argv = {}
  if dir then
    argv[#argv + 1] = "-C"
    argv[#argv + 1] = dir
  end
  for _, a in ipairs(args) do
    argv[#argv + 1] = a
  end
  local ok, r = pcall(swdl.exec, "git", argv)
  if not ok then
    if tostring(r):find("permission") then
      error(r, 0)
    end
    return nil, "git could not run: " .. tostring(r)
  end
  if r.status ~= 0 then
    return nil, r.stderr
  end
  return (r.stdout:gsub("%s+$", ""))
end

return {
  description = "The current git commit, branch, subject and whether the work tree is dirty",
  inputs = {},
  outputs = {
    available = "boolean", commit = "string", short = "string", branch = "string",
    subject = "string", dirty = "boolean",
  },

  run = function(ctx, input)
    local dir = type(input.dir) == "string" and input.dir ~= "" and input.dir or nil
    local commit, err = git(dir, { "rev-parse", "HEAD" })
    if not commit then
      local why = tostring(err or ""):gsub("%s+$", "")
      ctx.log("no git information: " .. why)
      return {
        available = false, commit = "", short = "", branch = "", subject = "", dirty = false,
        summary = "no git information",
      }
    end
    local branch = git(dir, { "rev-parse", "--abbrev-ref", "HEAD" }) or "HEAD"
    local subject = git(dir, { "log", "-1", "--format=%s" }) or ""
    local status = git(dir, { "status", "--porcelain" }) or ""
    local dirty = status ~= ""
    local short = commit:sub(1, 12)
    return {
      available = true,
      commit = commit,
      short = short,
      branch = branch,
      subject = subject,
      dirty = dirty,
      summary = string.format("%s on %s%s", short, branch, dirty and " (dirty)" or ""),
    }
  end,
}
