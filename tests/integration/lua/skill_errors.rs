//! Lua skills: errors and contracts.
use super::*;

#[test]
fn a_skill_error_names_the_file_line_and_traceback() {
  let p = Project::new();
  p.skill(
    "boom",
    "return {\n  run = function(ctx, input)\n    error(\"kaboom: \" .. input.what)\n  end,\n}\n",
  );
  p.skill(
    "nil-index",
    "return {\n  run = function(ctx, input)\n    local n = 1\n    return { v = input.missing.field }\n  end,\n}\n",
  );
  p.skill("plain", &skill_with_body("error(\"service is down\", 0)"));
  let out = p
    .run(
      r#"
name: errors
stages:
  - { id: boom, uses: boom, with: { what: disk on fire }, on_failure: continue }
  - { id: nil-index, uses: nil-index, on_failure: continue }
  - { id: plain, uses: plain, on_failure: continue }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert_matches(
    "
      skills/boom.lua:3: kaboom: disk on fire
      stack traceback:
      \t[C]: in global 'error'
      \tskills/boom.lua:3: in function <skills/boom.lua:2>
    ",
    out.error_of("boom"),
  );
  let failed = out.one("stage_failed", "boom");
  assert_eq!(failed["reason"], "error");
  assert_eq!(failed["uses"], "boom");
  assert_matches(
    "
      skills/nil-index.lua:4: attempt to index a nil value (field 'missing')
      stack traceback:
      \tskills/nil-index.lua:4: in function <skills/nil-index.lua:2>
    ",
    out.error_of("nil-index"),
  );
  // A message raised without a position gets the file and line of the skill's code.
  assert_matches(
    "
      skills/plain.lua:3: service is down
      stack traceback:
      \t[C]: in global 'error'
      \tskills/plain.lua:3: in function <skills/plain.lua:2>
    ",
    out.error_of("plain"),
  );
  assert_eq!(out.completed()["status"], "failed");
  // The run's error names the stage and carries the position too.
  assert_matches(
    "
        stage `boom` failed: skills/boom.lua:3: kaboom: disk on fire
        stack traceback:
        \t[C]: in global 'error'
        \tskills/boom.lua:3: in function <skills/boom.lua:2>
      ",
    out.completed()["error"].as_str().unwrap_or_default(),
  );
}

#[test]
fn bad_skill_files_and_return_values_fail_clearly() {
  let p = Project::new();
  p.skill(
    "number",
    "return {\n  run = function(ctx, input)\n    return 42\n  end,\n}\n",
  );
  p.skill(
    "list",
    "return { run = function(ctx, input) return { 1, 2, 3 } end }\n",
  );
  p.skill(
    "func",
    "return { run = function(ctx, input) return { items = { 1, function() end } } end }\n",
  );
  p.skill(
    "syntax",
    "return {\n  run = function(ctx, input)\n    local x = = 1\n  end,\n}\n",
  );
  p.skill("no-table", "return \"hello\"\n");
  p.skill("no-run", "return { description = \"forgot run\" }\n");
  p.skill(
    "top-level",
    "local n = 1\nerror(\"cannot start\")\nreturn { run = function() end }\n",
  );
  let out = p
    .run(
      r#"
name: bad-files
config: { max_parallel: 2 }
stages:
  - { id: number, uses: number, on_failure: continue }
  - { id: list, uses: list, on_failure: continue }
  - { id: func, uses: func, on_failure: continue }
  - { id: syntax, uses: syntax, on_failure: continue }
  - { id: no-table, uses: no-table, on_failure: continue }
  - { id: no-run, uses: no-run, on_failure: continue }
  - { id: top-level, uses: top-level, on_failure: continue }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let expect = [
    (
      "number",
      "skills/number.lua: run must return a table of outputs (or nothing), got a number 42",
    ),
    (
      "list",
      "skills/list.lua: run returned a list; return a table of named outputs like { words = 3 }",
    ),
    (
      "func",
      "skills/func.lua: run returned `result.items[2]`: a function cannot be converted to JSON",
    ),
    ("syntax", "skills/syntax.lua:3: unexpected symbol near '='"),
    (
      "no-table",
      "skills/no-table.lua: a skill file must return a table like { run = function(ctx, input) ... end }, got a string \"hello\"",
    ),
    (
      "no-run",
      "skills/no-run.lua: the returned table has no `run` function: add run = function(ctx, input) ... end",
    ),
    (
      "top-level",
      "skills/top-level.lua:2: cannot start\nstack traceback:\n\t[C]: in global 'error'\n\tskills/top-level.lua:2: in main chunk",
    ),
  ];
  for (stage, wanted) in expect {
    assert_matches(wanted, out.error_of(stage));
  }
  assert_eq!(out.count("stage_completed"), 0, "{}", out.dump());
}

#[test]
fn declared_inputs_and_outputs_are_enforced() {
  let p = Project::new();
  p.skill(
    "typed",
    r#"
return {
  description = "typed",
  inputs = { text = "string", n = "integer", limit = "integer?" },
  outputs = { count = "integer", items = "array" },
  run = function(ctx, input)
    ctx.log("run was called")
    if input.bad then return { count = "many", items = {} } end
    if input.forget then return { count = 1 } end
    return { count = input.n * 2, items = {} }
  end,
}
"#,
  );
  let out = p
    .run(r#"
name: contracts
config: { max_parallel: 1 }
stages:
  - { id: ok, uses: typed, with: { text: hi, n: 2 } }
  - { id: missing-input, uses: typed, with: { text: hi }, on_failure: continue }
  - { id: wrong-input, uses: typed, with: { text: 5, n: 1 }, on_failure: continue }
  - { id: wrong-output, uses: typed, with: { text: hi, n: 1, bad: true }, on_failure: continue }
  - { id: missing-output, uses: typed, with: { text: hi, n: 1, forget: true }, on_failure: continue }
"#)
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  // An empty table declared `array` is returned as [].
  assert_eq!(out.outputs("ok"), &json!({"count": 4, "items": []}));
  assert_matches(
    "skills/typed.lua: input `n` is missing (declared as integer)",
    out.error_of("missing-input"),
  );
  assert_matches(
    "skills/typed.lua: input `text` must be a string, got an integer 5",
    out.error_of("wrong-input"),
  );
  // Inputs are checked before `run` is called.
  for stage in ["missing-input", "wrong-input"] {
    assert!(out.named("log", stage).is_empty(), "{}", out.dump());
  }
  assert_matches(
    "skills/typed.lua: output `count` must be an integer, got a string \"many\"",
    out.error_of("wrong-output"),
  );
  assert_matches(
    "skills/typed.lua: output `items` is missing (declared as array)",
    out.error_of("missing-output"),
  );
  for stage in [
    "missing-input",
    "wrong-input",
    "wrong-output",
    "missing-output",
  ] {
    assert!(
      out.error_of(stage).starts_with("skills/typed.lua"),
      "{stage}: {}",
      out.error_of(stage)
    );
    assert_eq!(out.final_status(stage), "failed");
  }
}

#[test]
fn a_stage_output_contract_applies_on_top_of_a_lua_skill() {
  let p = Project::new();
  p.skill(
    "loose",
    "return { run = function(ctx, input) return { score = \"high\" } end }\n",
  );
  let out = p
    .run(
      r#"
name: contract
stages:
  - id: s
    uses: loose
    outputs: { score: { type: number, required: true } }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let failed = out.one("stage_failed", "s");
  assert_eq!(failed["reason"], "contract", "{}", out.dump());
  assert_matches(
    "output contract broken: output `score` must be number, got string",
    failed["error"].as_str().unwrap_or_default(),
  );
}
