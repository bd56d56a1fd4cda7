//! Hooks that do not resolve or do not load.
use super::*;

#[test]
fn unknown_policy_and_strategy_names_exit_2_with_positions() {
  let p = Project::new();
  p.hooks(
    r#"
local policies = require "swdl.policies"
swdl.policy("by-risk", policies.by_risk{})
swdl.policy("trusted", function() return "approve" end)
swdl.recovery("retry-then-fallback", function() return "skip" end)
"#,
  );
  let out = p
    .run(
      r#"
name: unknown
config: { hooks: [hooks.lua] }
stages:
  - id: g
    gate: { policy: by-rsk }
  - id: s
    uses: echo
    recover: retry-then-fallbak
"#,
    )
    .stdout("")
    .stderr(
      r#"
      wf.yaml:6:21: error: unknown approval policy `by-rsk`, did you mean `by-risk`?: registered are by-risk, trusted
        |
      6 |     gate: { policy: by-rsk }
        |                     ^^^^^^
      wf.yaml:9:14: error: unknown recovery strategy `retry-then-fallbak`, did you mean `retry-then-fallback`?: registered are retry-then-fallback
        |
      9 |     recover: retry-then-fallbak
        |              ^^^^^^^^^^^^^^^^^^
      2 errors
      "#,
    )
    .status(2)
    .run();
  assert!(out.events.is_empty(), "nothing runs\n{}", out.dump());
  // Without hooks at all, the message says where strategies come from.
  p
    .run("name: none\nstages:\n  - { id: s, uses: echo, recover: anything }\n")
    .stdout("")
    .stderr(
      r#"
      wf.yaml:3:35: error: unknown recovery strategy `anything`: no hook file registers any (list hook files in config.hooks or pass --lua FILE)
        |
      3 |   - { id: s, uses: echo, recover: anything }
        |                                   ^^^^^^^^
      "#,
    )
    .status(2)
    .run();
}

#[test]
fn an_unknown_approval_policy_is_reported_where_it_is_written() {
  let p = Project::new();
  p.hooks(BY_RISK);
  p
    .run(
      r#"
name: unknown-approval
config:
  hooks: [hooks.lua]
  approval: { policy: by-rsk, require_for: high }
stages:
  - { id: s, uses: echo, risk: high }
"#,
    )
    .stdout("")
    .stderr(
      r#"
      wf.yaml:5:23: error: unknown approval policy `by-rsk`, did you mean `by-risk`?: registered are by-risk
        |
      5 |   approval: { policy: by-rsk, require_for: high }
        |                       ^^^^^^
      "#,
    )
    .status(2)
    .run();
}

#[test]
fn a_broken_hook_file_exits_2_naming_the_file_and_line() {
  let p = Project::new();
  p.hooks("swdl.policy(\"x\", function() return \"approve\" end)\nlocal y = = 1\n");
  let out = p
    .run("name: broken-hooks\nconfig: { hooks: [hooks.lua] }\nstages:\n  - { id: s, uses: echo }\n")
    .stdout("")
    .stderr("error: hooks.lua:2: unexpected symbol near '='\n")
    .status(2)
    .run();
  assert!(out.events.is_empty(), "{}", out.dump());
  // A hook file that fails while loading, given with --lua.
  p.file("more.lua", "local n = 1\nerror(\"cannot register\")\n");
  p.run("name: broken-hooks\nstages:\n  - { id: s, uses: echo }\n")
    .args(["--lua", "more.lua"])
    .stdout("")
    .stderr(
      "
      error: more.lua:2: cannot register
      stack traceback:
      \t[C]: in global 'error'
      \tmore.lua:2: in main chunk
      ",
    )
    .status(2)
    .run();
  // A name registered twice, by two hook files.
  p.file(
    "twice.lua",
    "swdl.policy(\"p\", function() return \"reject\" end)\n",
  );
  p.hooks("swdl.policy(\"p\", function() return \"approve\" end)\n");
  let out = p
    .run("name: twice\nconfig: { hooks: [hooks.lua, twice.lua] }\nstages:\n  - { id: g, gate: { policy: p } }\n")
    .stdout("")
    .stderr(
      "
      error: twice.lua:1: swdl.policy: policy `p` is already defined in hooks.lua
      stack traceback:
      \t[C]: in field 'policy'
      \ttwice.lua:1: in main chunk
      ",
    )
    .status(2)
    .run();
  assert!(out.events.is_empty(), "{}", out.dump());
  // A hook file that does not exist.
  p.run(
    "name: missing-hooks\nconfig: { hooks: [nowhere.lua] }\nstages:\n  - { id: s, uses: echo }\n",
  )
  .stdout("")
  .stderr("error: nowhere.lua: No such file or directory (os error 2)\n")
  .status(2)
  .run();
}
