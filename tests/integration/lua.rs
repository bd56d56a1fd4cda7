//! Lua end to end (docs/lua.md): skills, approval policies and recovery strategies written
//! in Lua, run by the real `swdl` binary on real workflow files. Every test builds its own
//! project in a temporary directory — `wf.yaml`, `skills/*.lua`, `hooks.lua` — and runs
//! `swdl run wf.yaml --progress none --events events.jsonl` there, so the paths in messages are
//! the ones a user sees (`skills/boom.lua:3: ...`).
//!
//! The host's own unit tests (`src/lua/tests.rs`) cover the Lua API in process; these check
//! that the pieces are wired together: discovery, `config.hooks`, permissions, the runtime's
//! use of policies and strategies, the event stream and the exit codes.
use crate::{
  common::{events_named, read_events, wait_for},
  test::{Test, assert_matches},
};
use serde_json::{Value, json};
use std::{
  path::Path,
  process::Stdio,
  time::{Duration, Instant},
};

/// A Lua project in a temporary directory; each command is a [`Test`] in it.
struct Project(Test);

impl Project {
  fn new() -> Self {
    Self(Test::new())
  }

  fn path(&self) -> &Path {
    self.0.path()
  }

  /// Writes `text` as it is (line numbers matter) to `rel`, parents created.
  fn file(&self, rel: &str, text: &str) {
    let path = self.path().join(rel);
    if let Some(parent) = path.parent() {
      std::fs::create_dir_all(parent).expect("parent dir");
    }
    std::fs::write(&path, text).expect("write file");
  }

  /// `skills/NAME.lua`.
  fn skill(&self, name: &str, code: &str) {
    self.file(&format!("skills/{name}.lua"), code);
  }

  /// `hooks.lua`.
  fn hooks(&self, code: &str) {
    self.file("hooks.lua", code);
  }

  /// `swdl run wf.yaml --progress none --events events.jsonl` with `yaml` as `wf.yaml`.
  fn run(&self, yaml: &str) -> Test {
    self.file("wf.yaml", yaml);
    self.0.clone().args([
      "run",
      "wf.yaml",
      "--progress",
      "none",
      "--events",
      "events.jsonl",
    ])
  }

  /// `swdl ARGS` in the project directory.
  fn swdl<const N: usize>(&self, args: [&str; N]) -> Test {
    self.0.clone().args(args)
  }

  fn events(&self) -> Vec<Value> {
    read_events(&self.path().join("events.jsonl"))
  }
}

/// A skill whose `run` body is `body` (indented under `run`), starting on line 3 of the file.
fn skill_with_body(body: &str) -> String {
  format!("return {{\n  run = function(ctx, input)\n    {body}\n    return {{}}\n  end,\n}}\n")
}

// ---------------------------------------------------------------------------------------------
// Skills: outputs, summary, logs, ctx

#[test]
fn skill_outputs_summary_logs_and_ctx_reach_the_events() {
  let p = Project::new();
  p.skill(
    "greet",
    r#"
return {
  description = "Greets someone",
  inputs = { name = "string" },
  outputs = { greeting = "string" },
  run = function(ctx, input)
    ctx.log("greeting", input.name, 42, true)
    print("printed too")
    return {
      greeting = "hello " .. input.name,
      stage = ctx.stage,
      attempt = ctx.attempt,
      run_id = ctx.run_id,
      key = ctx.idempotency_key,
      with_name = ctx.params.name,
      level = ctx.env.LEVEL,
      summary = "greeted " .. input.name,
      hints = { "be nice" },
    }
  end,
}
"#,
  );
  p.skill(
    "recall",
    r#"
return {
  run = function(ctx, input)
    local seen
    for _, entry in ipairs(ctx.memory) do
      if entry.stage == "greet" then seen = entry end
    end
    return {
      text = ctx.memory_text,
      summary_seen = seen and seen.summary,
      status_seen = seen and seen.status,
      greeting = input.greeting,
    }
  end,
}
"#,
  );
  let out = p
    .run(
      r#"
name: lua-skill
config:
  skills_path: [skills]
  env: { LEVEL: debug }
stages:
  - id: greet
    uses: greet
    with: { name: bob }
  - id: recall
    depends_on: greet
    uses: recall
    with: { greeting: "$<< stages.greet.outputs.greeting >>" }
outputs:
  greeting: $<< stages.greet.outputs.greeting >>
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let run_id = out.events[0]["run"].clone();
  let completed = out.one("stage_completed", "greet");
  assert_eq!(completed["uses"], "greet");
  assert_eq!(completed["summary"], "greeted bob", "{}", out.dump());
  assert_eq!(
    completed["outputs"],
    json!({
      "greeting": "hello bob",
      "stage": "greet",
      "attempt": 1,
      "run_id": run_id,
      "key": format!("{}/greet", run_id.as_str().unwrap_or_default()),
      "with_name": "bob",
      "level": "debug",
    }),
    "summary and hints are lifted out of the outputs\n{}",
    out.dump()
  );
  let logs: Vec<&str> = out
    .named("log", "greet")
    .iter()
    .filter_map(|e| e["message"].as_str())
    .collect();
  assert_matches(
    "
      greeting bob 42 true
      printed too
    ",
    &logs.join("\n"),
  );
  assert!(
    out
      .named("log", "greet")
      .iter()
      .all(|e| e["attempt"] == 1 && e["stream"] == "log"),
    "{}",
    out.dump()
  );
  // The next stage sees the first in working memory and through an expression.
  let recall = out.outputs("recall");
  assert_eq!(recall["summary_seen"], "greeted bob");
  assert_eq!(recall["status_seen"], "completed");
  assert_eq!(recall["greeting"], "hello bob");
  assert_matches(
    "greet [completed] greeted bob",
    recall["text"].as_str().unwrap_or_default(),
  );
  assert_eq!(out.completed()["outputs"], json!({"greeting": "hello bob"}));
}

#[test]
fn attempt_counts_retries_and_idempotency_key_stays_the_same() {
  let p = Project::new();
  p.skill(
    "third-time",
    r#"
return {
  run = function(ctx, input)
    ctx.log("attempt", ctx.attempt, ctx.idempotency_key)
    if ctx.attempt < 3 then error("not yet", 0) end
    return { attempt = ctx.attempt, key = ctx.idempotency_key }
  end,
}
"#,
  );
  let out = p
    .run(
      r#"
name: attempts
stages:
  - id: s
    uses: third-time
    retry: { max_attempts: 3, delay: 10ms }
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(out.named("stage_started", "s").len(), 3, "{}", out.dump());
  assert_eq!(out.named("stage_retrying", "s").len(), 2);
  let outputs = out.outputs("s");
  assert_eq!(outputs["attempt"], 3);
  let key = outputs["key"].as_str().expect("key");
  let logs: Vec<&str> = out
    .named("log", "s")
    .iter()
    .filter_map(|e| e["message"].as_str())
    .collect();
  assert_eq!(
    logs,
    vec![
      format!("attempt 1 {key}"),
      format!("attempt 2 {key}"),
      format!("attempt 3 {key}")
    ]
  );
}

// ---------------------------------------------------------------------------------------------
// Skills: errors and contracts

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

// ---------------------------------------------------------------------------------------------
// Yielding, timeouts, cancellation

#[test]
fn sleeping_skills_yield_so_twenty_naps_overlap() {
  let p = Project::new();
  p.skill(
    "nap",
    "return { run = function(ctx, input) swdl.sleep(200) swdl.sleep(\"0ms\") return { ok = true } end }\n",
  );
  let mut yaml = String::from("name: naps\nconfig: { max_parallel: 20 }\nstages:\n");
  for i in 1..=20 {
    yaml.push_str(&format!("  - {{ id: s{i}, uses: nap }}\n"));
  }
  let out = p.run(&yaml).stdout("").stderr("").status(0).run();
  assert_eq!(out.count("stage_completed"), 20, "{}", out.dump());
  // Twenty 200 ms sleeps one after another would take 4 s; two Lua threads, 2 s.
  assert!(
    out.elapsed < Duration::from_secs(2),
    "took {:?}\n{}",
    out.elapsed,
    out.dump()
  );
  assert!(
    out.elapsed >= Duration::from_millis(200),
    "{:?}",
    out.elapsed
  );
  for e in out
    .events
    .iter()
    .filter(|e| e["event"] == "stage_completed")
  {
    assert!(e["duration_ms"].as_u64().is_some_and(|d| d >= 190), "{e}");
  }
}

#[test]
fn busy_loops_are_stopped_at_the_stage_timeout_and_the_engine_stays_healthy() {
  let p = Project::new();
  p.skill(
    "spin",
    "return { run = function(ctx, input) ctx.log(\"spinning\") while true do end end }\n",
  );
  // A loop that tries to swallow the stop with pcall, and one inside a coroutine.
  p.skill(
    "stubborn",
    r#"
return { run = function(ctx, input)
  while true do
    pcall(function() while true do end end)
    coroutine.wrap(function() while true do end end)()
  end
end }
"#,
  );
  p.skill(
    "after",
    "return { run = function(ctx, input) return { fine = true } end }\n",
  );
  let out = p
    .run(
      r#"
name: spin
config: { max_parallel: 3 }
stages:
  - { id: spin, uses: spin, timeout: 300ms, on_failure: continue }
  - { id: stubborn, uses: stubborn, timeout: 300ms, on_failure: continue }
  - id: after
    depends_on: [spin, stubborn]
    if: $<< always() >>
    uses: after
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert!(
    out.elapsed < Duration::from_secs(5),
    "took {:?}",
    out.elapsed
  );
  for stage in ["spin", "stubborn"] {
    // Whichever notices first, the stage ends at its timeout (see the ignored test below for
    // the event it should be reported with).
    let timed_out = out.named("stage_timed_out", stage);
    let failed = out.named("stage_failed", stage);
    assert_eq!(timed_out.len() + failed.len(), 1, "{}", out.dump());
    if let Some(failed) = failed.first() {
      assert_matches(
        "[..]timed out after 300ms[..]",
        failed["error"].as_str().unwrap_or_default(),
      );
    }
    let started = out.index("stage_started", stage);
    assert!(started < out.index("stage_started", "after"));
    assert!(
      ["timed_out", "failed"].contains(&out.final_status(stage)),
      "{}",
      out.dump()
    );
  }
  // Both Lua states are usable after the loops were stopped.
  assert_eq!(out.outputs("after"), &json!({"fine": true}));
}

#[test]
fn a_lua_timeout_is_reported_as_a_timeout() {
  let p = Project::new();
  p.skill(
    "spin",
    "return { run = function(ctx, input) while true do end end }\n",
  );
  p.skill(
    "nap",
    "return { run = function(ctx, input) swdl.sleep(5000) return {} end }\n",
  );
  p.hooks(
    r#"
swdl.recovery("kind", function(failure)
  if failure.kind == "timeout" then return "skip" end
  return "abort"
end)
"#,
  );
  let out = p
    .run(
      r#"
name: timeouts
config: { hooks: [hooks.lua] }
stages:
  - { id: spin, uses: spin, timeout: 300ms, on_failure: continue }
  - { id: nap, uses: nap, timeout: 300ms, on_failure: continue }
  - { id: kind, uses: spin, timeout: 300ms, recover: kind }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  for stage in ["spin", "nap"] {
    let timed_out = out.one("stage_timed_out", stage);
    assert_eq!(timed_out["timeout_ms"], 300);
    assert!(
      out.named("stage_failed", stage).is_empty(),
      "{}",
      out.dump()
    );
    assert_eq!(out.final_status(stage), "timed_out");
  }
  assert_eq!(out.one("recovery_decided", "kind")["action"], "skip");
}

#[test]
fn sigint_cancels_a_busy_lua_skill() {
  let p = Project::new();
  p.skill(
    "spin",
    "return { run = function(ctx, input) ctx.log(\"spinning\") while true do end end }\n",
  );
  let mut child = p
    .run(
      r#"
name: cancel
stages:
  - { id: spin, uses: spin }
  - { id: after, depends_on: spin, uses: echo }
"#,
    )
    .command()
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("swdl starts");
  let spinning = wait_for(Duration::from_secs(20), || {
    !events_named(&p.events(), "log", "spin").is_empty()
  });
  if !spinning {
    let _ = child.kill();
    let _ = child.wait();
    panic!("the skill never started: {:?}", p.events());
  }
  // Give the signal handler a moment to be installed on a busy machine.
  std::thread::sleep(Duration::from_millis(100));
  let pid = i32::try_from(child.id()).expect("pid");
  let signalled = Instant::now();
  // SAFETY: sends SIGINT to the child this test spawned.
  unsafe {
    libc::kill(pid, libc::SIGINT);
  }
  let mut status = None;
  let exited = wait_for(Duration::from_secs(10), || {
    status = child.try_wait().expect("try_wait");
    status.is_some()
  });
  if !exited {
    let _ = child.kill();
    let _ = child.wait();
    panic!("swdl did not stop after SIGINT");
  }
  assert!(signalled.elapsed() < Duration::from_secs(5));
  assert_eq!(status.and_then(|s| s.code()), Some(3), "{status:?}");
  let events = p.events();
  let last = events.last().expect("events");
  assert_eq!(last["event"], "run_completed");
  assert_eq!(last["status"], "cancelled");
  assert_eq!(
    last["stages"],
    json!({"spin": "cancelled", "after": "cancelled"})
  );
  let cancelled = events_named(&events, "stage_cancelled", "spin");
  assert_eq!(cancelled.len(), 1, "{events:?}");
  assert_eq!(cancelled[0]["reason"], "cancel");
  assert_eq!(cancelled[0]["attempt"], 1);
}

const STUCK_PATTERN: &str = r#"
return { run = function(ctx, input)
  ctx.log("matching")
  -- Backtracks for longer than anyone waits, inside C where no instruction hook runs.
  local r = string.rep("a", 40):find(string.rep("a*", 40) .. "b")
  return { r = tostring(r) }
end }
"#;

#[test]
fn a_stuck_pattern_match_ends_at_the_timeout_and_later_stages_run() {
  let p = Project::new();
  p.skill("stuck", STUCK_PATTERN);
  p.skill(
    "after",
    "return { run = function(ctx, input) return { fine = true } end }\n",
  );
  let out = p
    .run(
      r#"
name: stuck
stages:
  - { id: stuck, uses: stuck, timeout: 300ms }
  - id: after
    depends_on: stuck
    if: $<< always() >>
    uses: after
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert!(
    out.elapsed < Duration::from_secs(5),
    "took {:?}",
    out.elapsed
  );
  // The timeout and the pattern's own limit race: either may end the stage.
  assert!(
    ["timed_out", "failed"].contains(&out.final_status("stuck")),
    "{}",
    out.dump()
  );
  assert_eq!(out.outputs("after"), &json!({"fine": true}));
}

#[test]
fn a_stuck_pattern_match_does_not_hang_other_lua_stages() {
  let p = Project::new();
  p.skill("stuck", STUCK_PATTERN);
  p.skill(
    "quick",
    "return { run = function(ctx, input) return { fine = true } end }\n",
  );
  // With two states taken in turn, `stuck` goes to the first and `q2` after it.
  let yaml = r#"
name: stuck-siblings
config: { max_parallel: 5 }
stages:
  - { id: stuck, uses: stuck, timeout: 300ms, on_failure: continue }
  - { id: q1, uses: quick }
  - { id: q2, uses: quick }
  - { id: q3, uses: quick }
"#;
  let out = p
    .run(yaml)
    .timeout(Duration::from_secs(15))
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  for stage in ["q1", "q2", "q3"] {
    assert_eq!(out.final_status(stage), "completed", "{}", out.dump());
  }
}

// ---------------------------------------------------------------------------------------------
// Sandbox and permissions

#[test]
fn sandbox_escapes_through_a_skill_are_denied_with_clear_messages() {
  let p = Project::new();
  let cases: &[(&str, &str, &str)] = &[
    (
      "os-execute",
      "os.execute(\"touch pwned\")",
      "os.execute is not available in the swdl sandbox; ask for the `exec` permission and use swdl.exec",
    ),
    (
      "io-open",
      "io.open(\"/etc/passwd\")",
      "io.open is not available in the swdl sandbox; ask for the `fs` permission and use swdl.fs.read, swdl.fs.write or swdl.fs.list",
    ),
    (
      "require-os",
      "require \"os\"",
      "module 'os' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "require-file",
      "require \"skills.other\"",
      "module 'skills.other' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "string-dump",
      "load(string.dump(function() return 1 end))",
      "string.dump is not available in the swdl sandbox; functions cannot be turned into bytecode",
    ),
    (
      "binary-chunk",
      r#"assert(load("\27LuaT\0\25\147\r\n\26\n", "chunk", "b"))"#,
      "load: binary chunks are not allowed in the swdl sandbox; pass Lua source text",
    ),
    (
      "dofile",
      "dofile(\"/etc/passwd\")",
      "dofile is not available in the swdl sandbox; ask for the `fs` permission, read the file with swdl.fs.read and pass its text to load",
    ),
    (
      "loadfile",
      "loadfile(\"/etc/passwd\")",
      "loadfile is not available in the swdl sandbox; ask for the `fs` permission, read the file with swdl.fs.read and pass its text to load",
    ),
    (
      "loadlib",
      "package.loadlib(\"libc.so.6\", \"system\")",
      "package.loadlib is not available in the swdl sandbox; C modules cannot be loaded",
    ),
    (
      "debug-getinfo",
      "debug.getinfo(1)",
      "debug.getinfo is not available in the swdl sandbox; it could reach past the sandbox and the stage timeout",
    ),
    (
      "os-getenv",
      "os.getenv(\"HOME\")",
      "os.getenv is not available in the swdl sandbox; read ctx.env",
    ),
    (
      "finalizer",
      "setmetatable({}, { __gc = function() end })",
      "setmetatable: __gc metamethods are not available in the swdl sandbox (a finalizer cannot be stopped by the stage timeout)",
    ),
    (
      "register-policy",
      "swdl.policy(\"sneaky\", function() return \"approve\" end)",
      "swdl.policy can only be called from a hook file (config.hooks or --lua), while it loads",
    ),
    (
      "string-metatable",
      "getmetatable(\"\").__index = {}",
      "the string metatable is protected in the swdl sandbox",
    ),
  ];
  let mut yaml = String::from("name: sandbox\nconfig: { max_parallel: 4 }\nstages:\n");
  for (name, body, _) in cases {
    p.skill(name, &skill_with_body(body));
    yaml.push_str(&format!(
      "  - {{ id: {name}, uses: {name}, on_failure: continue }}\n"
    ));
  }
  // What stays: os.time, os.clock, os.date and `load` of source text.
  p.skill(
    "allowed",
    &skill_with_body(
      "assert(os.time() > 0 and os.clock() >= 0 and os.date(\"!%Y\") ~= nil)\n    assert(load(\"return 1 + 1\")() == 2)",
    ),
  );
  yaml.push_str("  - { id: allowed, uses: allowed }\n");
  let out = p.run(&yaml).stdout("").stderr("").status(1).run();
  for (name, _, wanted) in cases {
    // The sandbox's own frames, if any, sit between the message and the skill's frame.
    assert_matches(
      &format!(
        "
        skills/{name}.lua:3: {wanted}
        stack traceback:
        ...
        \tskills/{name}.lua:3: in function <skills/{name}.lua:2>
        "
      ),
      out.error_of(name),
    );
  }
  assert_eq!(out.final_status("allowed"), "completed", "{}", out.dump());
  assert!(!p.path().join("pwned").exists(), "os.execute ran a command");
}

#[test]
fn exec_needs_the_permission_granted_to_that_skill() {
  let p = Project::new();
  let code = r#"
return {
  description = "says hi through echo",
  outputs = { stdout = "string", status = "integer" },
  run = function(ctx, input)
    local r = swdl.exec("echo", { "hi" })
    return { stdout = r.stdout, status = r.status, ok = r.ok }
  end,
}
"#;
  // The same code under two names: only one is granted `exec`.
  p.file("skills/my-skill/init.lua", code);
  p.file(
    "skills/my-skill/skill.yaml",
    "description: says hi through echo\npermissions: [exec]\n",
  );
  p.skill("other-skill", code);
  let out = p
    .run(
      r#"
name: exec
config:
  skills_path: [skills]
  permissions: { my-skill: [exec] }
stages:
  - { id: granted, uses: my-skill }
  - { id: denied, uses: other-skill, on_failure: continue }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert_eq!(
    out.outputs("granted"),
    &json!({"stdout": "hi\n", "status": 0, "ok": true})
  );
  assert_matches("
      skills/other-skill.lua:6: swdl.exec needs the `exec` permission: grant it in config.permissions
      stack traceback:
      \t[C]: in upvalue 'get_future'
      \tskills/other-skill.lua:6: in function <skills/other-skill.lua:5>
    ", out.error_of("denied"));
}

#[test]
fn one_skill_cannot_see_another_skills_globals() {
  let p = Project::new();
  p.skill(
    "setter",
    r#"
counter = (counter or 0) + 1
return { run = function(ctx, input)
  shared_secret = "from-setter"
  string.upper = function() return "hacked" end
  return { secret = shared_secret, upper = string.upper("x"), counter = counter }
end }
"#,
  );
  p.skill(
    "getter",
    r#"
return { run = function(ctx, input)
  return {
    secret = type(shared_secret),
    counter = type(counter),
    upper = string.upper("x"),
    method = ("x"):upper(),
  }
end }
"#,
  );
  let out = p
    .run(
      r#"
name: globals
stages:
  - { id: a, uses: setter }
  - { id: b, depends_on: a, uses: getter }
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(
    out.outputs("a"),
    &json!({"secret": "from-setter", "upper": "hacked", "counter": 1})
  );
  assert_eq!(
    out.outputs("b"),
    &json!({"secret": "nil", "counter": "nil", "upper": "X", "method": "X"})
  );
}

// ---------------------------------------------------------------------------------------------
// Approval policies

const BY_RISK: &str = r#"
local policies = require "swdl.policies"
swdl.policy("by-risk", policies.by_risk{ approve_up_to = "medium", reject_at = "critical" })
"#;

#[test]
fn by_risk_policy_approves_a_low_gate_and_rejects_a_critical_one() {
  let p = Project::new();
  p.hooks(BY_RISK);
  let out = p
    .run(
      r#"
name: gates
config: { hooks: [hooks.lua] }
stages:
  - id: review
    gate: { message: "Looks fine?", policy: by-risk }
    risk: low
  - id: publish
    depends_on: review
    uses: echo
    with: { by: "$<< stages.review.outputs.decided_by >>" }
  - id: deploy
    depends_on: publish
    gate: { policy: by-risk }
    risk: critical
  - id: after-deploy
    depends_on: deploy
    uses: echo
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let approved = out.one("gate_decided", "review");
  assert_eq!(approved["decision"], "approve");
  assert_eq!(approved["decided_by"], "policy:by-risk");
  assert_eq!(
    approved["reason"],
    "stage `review` has risk low, at or below medium"
  );
  assert_eq!(out.final_status("review"), "completed");
  assert_eq!(out.outputs("publish"), &json!({"by": "policy:by-risk"}));
  let rejected = out.one("gate_decided", "deploy");
  assert_eq!(rejected["decision"], "reject");
  assert_eq!(rejected["decided_by"], "policy:by-risk");
  assert_matches(
    "stage `deploy` has risk critical, at or above critical: rejected by policy",
    rejected["reason"].as_str().unwrap_or_default(),
  );
  assert_eq!(out.one("stage_failed", "deploy")["reason"], "rejected");
  assert_eq!(out.final_status("deploy"), "failed");
  assert_ne!(out.final_status("after-deploy"), "completed");
  assert!(out.named("stage_started", "after-deploy").is_empty());
  // A gate decided by a policy still announces itself first.
  assert!(out.index("gate_waiting", "deploy") < out.index("gate_decided", "deploy"));
}

#[test]
fn an_ask_policy_without_a_terminal_suspends_the_run() {
  let p = Project::new();
  p.hooks(BY_RISK);
  let out = p
    .run(
      r#"
name: ask
config: { hooks: [hooks.lua] }
stages:
  - { id: first, uses: echo }
  - id: signoff
    depends_on: first
    gate: { policy: by-risk }
    risk: high
  - { id: after, depends_on: signoff, uses: echo }
"#,
    )
    .stdout("")
    .stderr(
      "run [..] is suspended at signoff: approve with `swdl approve [..] signoff` (or `swdl \
       reject ...`), then continue it with `swdl resume [..]`\n",
    )
    .status(4)
    .run();
  assert!(
    out.named("gate_decided", "signoff").is_empty(),
    "{}",
    out.dump()
  );
  out.one("gate_waiting", "signoff");
  let logged: Vec<&str> = out
    .named("log", "signoff")
    .iter()
    .filter_map(|e| e["message"].as_str())
    .collect();
  assert_matches(
    "policy `by-risk` leaves the decision to a person: stage `signoff` has risk high, above medium: a person decides",
    &logged.join("\n"),
  );
  assert_eq!(out.completed()["status"], "waiting");
  assert_eq!(out.final_status("first"), "completed");
  assert_eq!(out.final_status("signoff"), "waiting");
  assert!(out.named("stage_started", "after").is_empty());
}

#[test]
fn approval_policy_decides_risky_skill_stages() {
  let p = Project::new();
  p.skill(
    "deploy",
    "return { run = function(ctx, input) return { deployed = input.target } end }\n",
  );
  p.hooks(
    r#"
swdl.policy("weekday", function(stage, ctx)
  if stage.risk == "critical" then return "reject", "critical needs a change request" end
  return "approve", string.format("%s %s of %s via %s", stage.kind, stage.risk, stage.id, stage.uses)
end)
"#,
  );
  let out = p
    .run(
      r#"
name: approvals
config:
  hooks: [hooks.lua]
  approval: { policy: weekday, require_for: high }
stages:
  - { id: build, uses: echo, risk: medium }
  - { id: deploy, depends_on: build, uses: deploy, with: { target: prod }, risk: high }
  - { id: drop-db, depends_on: deploy, uses: deploy, with: { target: db }, risk: critical }
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  // Below `require_for`: no approval at all.
  assert!(
    out.named("gate_waiting", "build").is_empty(),
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("build"), "completed");
  let waiting = out.one("gate_waiting", "deploy");
  assert_eq!(waiting["kind"], "approval");
  let decided = out.one("gate_decided", "deploy");
  assert_eq!(decided["decision"], "approve");
  assert_eq!(decided["decided_by"], "policy:weekday");
  assert_eq!(decided["reason"], "approval high of deploy via deploy");
  assert!(out.index("gate_decided", "deploy") < out.index("stage_started", "deploy"));
  assert_eq!(out.outputs("deploy"), &json!({"deployed": "prod"}));
  let decided = out.one("gate_decided", "drop-db");
  assert_eq!(decided["decision"], "reject");
  assert_eq!(decided["reason"], "critical needs a change request");
  assert!(out.named("stage_started", "drop-db").is_empty());
  assert_eq!(out.final_status("drop-db"), "failed");
}

#[test]
fn a_broken_policy_rejects() {
  let p = Project::new();
  p.hooks(
    r#"
swdl.policy("broken", function(stage, ctx)
  error("policy blew up")
end)
swdl.policy("vague", function(stage, ctx) return "maybe" end)
"#,
  );
  let out = p
    .run(
      r#"
name: fail-closed
config: { hooks: [hooks.lua] }
stages:
  - { id: g1, gate: { policy: broken }, risk: low, on_failure: continue }
  - { id: g2, gate: { policy: vague }, risk: low, on_failure: continue }
  - { id: after, depends_on: g1, uses: echo }
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let decided = out.one("gate_decided", "g1");
  assert_eq!(decided["decision"], "reject");
  assert_eq!(decided["decided_by"], "policy:broken");
  assert_matches(
    "
      policy `broken` failed: hooks.lua:3: policy blew up
      stack traceback:
      \t[C]: in global 'error'
      \thooks.lua:3: in function <hooks.lua:2>
    ",
    decided["reason"].as_str().expect("reason"),
  );
  let decided = out.one("gate_decided", "g2");
  assert_eq!(decided["decision"], "reject");
  assert_matches(
    "policy `vague` failed: policy `vague` (hooks.lua) returned \"maybe\": return \"approve\", \"reject\" or \"ask\", optionally followed by a reason",
    decided["reason"].as_str().expect("reason"),
  );
  for gate in ["g1", "g2"] {
    assert_eq!(out.final_status(gate), "failed");
    assert_eq!(out.one("stage_failed", gate)["reason"], "rejected");
  }
  assert!(
    out.named("stage_started", "after").is_empty(),
    "{}",
    out.dump()
  );
}

#[test]
fn lua_flag_adds_hook_files() {
  let p = Project::new();
  p.file(
    "extra/policy.lua",
    "swdl.policy(\"always\", function() return \"approve\", \"from --lua\" end)\n",
  );
  let out = p
    .run("name: flag\nstages:\n  - { id: g, gate: { policy: always } }\n")
    .args(["--lua", "extra/policy.lua"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let decided = out.one("gate_decided", "g");
  assert_eq!(decided["decided_by"], "policy:always");
  assert_eq!(decided["reason"], "from --lua");
}

// ---------------------------------------------------------------------------------------------
// Recovery strategies

/// A skill that fails while `size` is over `limit`, and echoes what it ran with.
const PICKY: &str = r#"
return {
  inputs = { size = "integer", limit = "integer" },
  run = function(ctx, input)
    if input.size > input.limit then error("too big: " .. input.size, 0) end
    return { size = input.size, attempt = ctx.attempt }
  end,
}
"#;

/// Runs `picky` (size 8, limit 2) under `recover: STRATEGY` between a completed stage with a
/// compensation and a dependent.
fn recovery_project(hooks: &str, strategy: &str) -> Test {
  let p = Project::new();
  p.skill("picky", PICKY);
  p.hooks(hooks);
  let yaml = format!(
    r#"
name: recovery
config: {{ hooks: [hooks.lua] }}
stages:
  - id: first
    uses: echo
    with: {{ v: 1 }}
    compensate: {{ uses: echo, with: {{ undo: first }} }}
  - id: s
    depends_on: first
    uses: picky
    with: {{ size: 8, limit: 2 }}
    recover: {strategy}
  - id: after
    depends_on: s
    uses: echo
    with: {{ got: "$<< stages.s.outputs.size >>" }}
"#
  );
  p.run(&yaml)
}

#[test]
fn recovery_retry_changes_the_inputs_of_the_next_attempt() {
  let out = recovery_project(
    r#"
swdl.recovery("halve", function(failure, ctx)
  assert(failure.kind == "error", failure.kind)
  assert(failure.uses == "picky", failure.uses)
  assert(failure.error:find("too big", 1, true), failure.error)
  return { action = "retry", delay = "20ms", with = { size = failure.inputs.size // 2 } }
end)
"#,
    "halve",
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let sizes: Vec<&Value> = out
    .named("stage_started", "s")
    .iter()
    .map(|e| &e["inputs"]["size"])
    .collect();
  assert_eq!(
    sizes,
    vec![&json!(8), &json!(4), &json!(2)],
    "{}",
    out.dump()
  );
  // The other inputs keep their values.
  assert!(
    out
      .named("stage_started", "s")
      .iter()
      .all(|e| e["inputs"]["limit"] == 2 && e["uses"] == "picky")
  );
  let decided = out.named("recovery_decided", "s");
  assert_eq!(decided.len(), 2, "{}", out.dump());
  for (e, (attempt, size)) in decided.iter().zip([(1, 4), (2, 2)]) {
    assert_eq!(e["action"], "retry");
    assert_eq!(e["strategy"], "halve");
    assert_eq!(e["attempt"], attempt);
    assert_eq!(e["delay_ms"], 20);
    assert_eq!(e["with"], json!({"size": size}));
  }
  assert_eq!(out.named("stage_retrying", "s").len(), 2);
  assert_eq!(out.outputs("s"), &json!({"size": 2, "attempt": 3}));
  assert_eq!(out.outputs("after"), &json!({"got": 2}));
}

#[test]
fn retry_strategy_simplifies_then_falls_back() {
  let p = Project::new();
  p.skill("picky", PICKY);
  p.skill(
    "cached",
    "return { run = function(ctx, input) return { size = -1, from = \"cache\" } end }\n",
  );
  p.hooks(
    r#"
local retry = require "swdl.retry"
swdl.recovery("shrink", retry.strategy{
  max_attempts = 2,
  backoff = "fixed",
  base = "10ms",
  simplify = function(inputs, attempt) return { size = inputs.size // 2 } end,
  fallback = { picky = "cached" },
})
"#,
  );
  let out = p
    .run(
      r#"
name: shrink
config: { hooks: [hooks.lua] }
stages:
  - { id: s, uses: picky, with: { size: 16, limit: 2 }, recover: shrink }
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let started: Vec<(Value, Value)> = out
    .named("stage_started", "s")
    .iter()
    .map(|e| (e["uses"].clone(), e["inputs"]["size"].clone()))
    .collect();
  assert_eq!(
    started,
    vec![
      (json!("picky"), json!(16)),
      (json!("picky"), json!(8)),
      (json!("cached"), json!(8))
    ],
    "{}",
    out.dump()
  );
  let actions: Vec<&Value> = out
    .named("recovery_decided", "s")
    .iter()
    .map(|e| &e["action"])
    .collect();
  assert_eq!(actions, vec!["retry", "fallback"]);
  assert_eq!(out.named("recovery_decided", "s")[0]["delay_ms"], 10);
  assert_eq!(out.named("recovery_decided", "s")[1]["uses"], "cached");
  let completed = out.one("stage_completed", "s");
  assert_eq!(completed["uses"], "cached");
  assert_eq!(completed["attempt"], 3);
  assert_eq!(out.final_status("s"), "completed");
}

#[test]
fn recovery_fallback_runs_another_lua_skill() {
  let p = Project::new();
  p.skill("picky", PICKY);
  // `cached` is named only by the strategy, not anywhere in the workflow.
  p.skill(
    "cached",
    "return { run = function(ctx, input) return { size = input.size, from = \"cache\", attempt = ctx.attempt } end }\n",
  );
  p.hooks(
    r#"
swdl.recovery("to-cache", function(failure)
  if failure.uses == "cached" then return "abort" end
  return { action = "fallback", uses = "cached" }
end)
"#,
  );
  let out = p
    .run(
      r#"
name: fallback
config: { hooks: [hooks.lua] }
stages:
  - { id: s, uses: picky, with: { size: 8, limit: 2 }, recover: to-cache }
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let started = out.named("stage_started", "s");
  assert_eq!(started.len(), 2, "{}", out.dump());
  assert_eq!(started[0]["uses"], "picky");
  assert_eq!(started[1]["uses"], "cached");
  assert_eq!(started[1]["attempt"], 2);
  assert_eq!(started[1]["inputs"], json!({"size": 8, "limit": 2}));
  let decided = out.one("recovery_decided", "s");
  assert_eq!(decided["action"], "fallback");
  assert_eq!(decided["uses"], "cached");
  let completed = out.one("stage_completed", "s");
  assert_eq!(completed["uses"], "cached");
  assert_eq!(
    completed["outputs"],
    json!({"size": 8, "from": "cache", "attempt": 2})
  );
}

#[test]
fn recovery_skip_lets_dependents_run() {
  let out = recovery_project(
    "swdl.recovery(\"give-up\", function() return \"skip\" end)\n",
    "give-up",
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(out.one("recovery_decided", "s")["action"], "skip");
  assert_eq!(out.one("stage_skipped", "s")["reason"], "recovery");
  assert_eq!(out.final_status("s"), "skipped");
  assert_eq!(out.outputs("after"), &json!({"got": null}));
  assert_eq!(out.completed()["status"], "completed");
  assert_eq!(out.count("compensation_started"), 0);
}

#[test]
fn recovery_abort_fails_the_run_without_compensations() {
  let out = recovery_project(
    "swdl.recovery(\"stop\", function() return { action = \"abort\" } end)\n",
    "stop",
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  assert_eq!(out.one("recovery_decided", "s")["action"], "abort");
  assert_eq!(out.named("stage_started", "s").len(), 1);
  assert_eq!(out.final_status("s"), "failed");
  assert_eq!(out.final_status("first"), "completed");
  assert!(out.named("stage_started", "after").is_empty());
  assert_eq!(out.completed()["status"], "failed");
  for name in [
    "compensation_started",
    "compensation_completed",
    "compensation_failed",
  ] {
    assert_eq!(out.count(name), 0, "{}", out.dump());
  }
}

#[test]
fn recovery_compensate_runs_the_compensations_of_completed_stages() {
  let out = recovery_project(
    "swdl.recovery(\"undo\", function() return { action = \"compensate\" } end)\n",
    "undo",
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let decided = out.index("recovery_decided", "s");
  assert_eq!(out.events[decided]["action"], "compensate");
  let started = out.index("compensation_started", "first");
  assert!(decided < started);
  assert!(started < out.index("compensation_completed", "first"));
  assert_eq!(out.one("compensation_started", "first")["uses"], "echo");
  // Compensations do not change a stage's status.
  assert_eq!(out.final_status("first"), "completed");
  assert_eq!(out.final_status("s"), "failed");
  assert!(out.named("stage_started", "after").is_empty());
  assert_eq!(out.completed()["status"], "failed");
}

#[test]
fn a_broken_strategy_fails_the_stage() {
  let p = Project::new();
  p.skill("picky", PICKY);
  p.hooks(
    r#"
swdl.recovery("broken", function(failure, ctx)
  error("strategy broke")
end)
swdl.recovery("weird", function() return { action = "explode" } end)
swdl.recovery("forever", function() return { action = "retry" } end)
swdl.recovery("always-fallback", function() return { action = "fallback", uses = "picky" } end)
"#,
  );
  let out = p
    .run(r#"
name: broken-strategy
config: { hooks: [hooks.lua], max_parallel: 1 }
stages:
  - { id: broken, uses: picky, with: { size: 8, limit: 2 }, recover: broken, on_failure: continue }
  - { id: weird, uses: picky, with: { size: 8, limit: 2 }, recover: weird, on_failure: continue }
  - { id: forever, uses: picky, with: { size: 8, limit: 2 }, recover: forever, on_failure: continue }
  - { id: always-fallback, uses: picky, with: { size: 8, limit: 2 }, recover: always-fallback, on_failure: continue }
"#)
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let decided = out.one("recovery_decided", "broken");
  assert_eq!(decided["action"], "error");
  assert_eq!(decided["strategy"], "broken");
  assert_matches(
    "
      hooks.lua:3: strategy broke
      stack traceback:
      \t[C]: in global 'error'
      \thooks.lua:3: in function <hooks.lua:2>
    ",
    decided["error"].as_str().expect("error"),
  );
  let decided = out.one("recovery_decided", "weird");
  assert_eq!(decided["action"], "error");
  assert_matches(
    "recovery strategy `weird` (hooks.lua) returned unknown action \"explode\": return a table like { action = \"retry\", delay = \"2s\" } or { action = \"fallback\", uses = \"skill\" }, or \"skip\", \"abort\" or \"compensate\"",
    decided["error"].as_str().expect("error"),
  );
  for stage in ["broken", "weird"] {
    assert_eq!(out.named("stage_started", stage).len(), 1, "{}", out.dump());
    assert_eq!(out.final_status(stage), "failed");
  }
  // A strategy that always retries, or always falls back, is stopped after 10 attempts.
  for stage in ["forever", "always-fallback"] {
    assert_eq!(
      out.named("stage_started", stage).len(),
      10,
      "{stage}\n{}",
      out.dump()
    );
    assert_eq!(out.final_status(stage), "failed");
  }
  assert_matches(
    "stage `forever`: recovery `forever` asked for attempt 11 but at most 10 are allowed",
    out.completed()["error"].as_str().unwrap_or_default(),
  );
}

#[test]
fn circuit_breaker_trips_then_lets_a_probe_through_and_closes() {
  let p = Project::new();
  // Fails every attempt before `ok_at`; `t` is the time the breaker's clock reads.
  p.skill(
    "flaky",
    r#"
return {
  inputs = { t = "integer", ok_at = "integer" },
  run = function(ctx, input)
    if ctx.attempt < input.ok_at then error("service down", 0) end
    return { attempt = ctx.attempt }
  end,
}
"#,
  );
  // The breaker's clock is the `t` of the failing stage: deterministic, no sleeping.
  p.hooks(
    r#"
local cb = require "swdl.circuit_breaker"
local clock = 0
local breaker = cb.new{
  name = "svc", failure_threshold = 2, window = "60s", cooldown = "10s",
  now = function() return clock end,
  on_change = function(from, to) swdl.log("breaker svc: " .. from .. " -> " .. to) end,
}
local guarded = cb.recovery(breaker, { max_attempts = 2, base = 0, fallback = "echo" })
swdl.recovery("guarded", function(failure, ctx)
  clock = failure.inputs.t
  return guarded(failure, ctx)
end)
"#,
  );
  let out = p
    .run(
      r#"
name: breaker
config: { hooks: [hooks.lua], max_parallel: 1 }
stages:
  # Two failures at t=0 open the breaker: no third try, the fallback answers.
  - { id: trip, uses: flaky, with: { t: 0, ok_at: 99 }, recover: guarded }
  # Still open at t=1: no retry at all, straight to the fallback.
  - { id: refused, depends_on: trip, uses: flaky, with: { t: 1, ok_at: 2 }, recover: guarded }
  # Cool-down over at t=20: the retry is the half-open probe, and it succeeds.
  - { id: probe, depends_on: refused, uses: flaky, with: { t: 20, ok_at: 2 }, recover: guarded }
  # Closed again: a failure is retried as usual.
  - { id: closed, depends_on: probe, uses: flaky, with: { t: 21, ok_at: 2 }, recover: guarded }
"#,
    )
    .stdout("")
    // The breaker's changes, logged by the hook, in order.
    .stderr(
      "
      recovery strategy `guarded`: breaker svc: closed -> open
      recovery strategy `guarded`: breaker svc: open -> half_open
      recovery strategy `guarded`: breaker svc: half_open -> closed
      ",
    )
    .status(0)
    .run();
  let story = |stage: &str| -> Vec<String> {
    out
      .named("recovery_decided", stage)
      .iter()
      .map(|e| {
        let action = e["action"].as_str().unwrap_or("?");
        match e["uses"].as_str() {
          Some(uses) => format!("{}:{action}:{uses}", e["attempt"]),
          None => format!("{}:{action}", e["attempt"]),
        }
      })
      .collect()
  };
  assert_eq!(
    story("trip"),
    ["1:retry", "2:fallback:echo"],
    "{}",
    out.dump()
  );
  assert_eq!(story("refused"), ["1:fallback:echo"], "{}", out.dump());
  assert_eq!(story("probe"), ["1:retry"], "{}", out.dump());
  assert_eq!(story("closed"), ["1:retry"], "{}", out.dump());
  assert_eq!(out.one("stage_completed", "trip")["uses"], "echo");
  assert_eq!(out.one("stage_completed", "refused")["uses"], "echo");
  assert_eq!(out.outputs("probe"), &json!({"attempt": 2}));
  assert_eq!(out.outputs("closed"), &json!({"attempt": 2}));
}

// ---------------------------------------------------------------------------------------------
// Invalid hooks

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

// ---------------------------------------------------------------------------------------------
// swdl skills

/// The built-in skills' entries in `swdl skills list --format json`, which open every list.
const BUILTINS_JSON: &str = r#"
  {
    "name": "echo",
    "source": "builtin",
    "description": "Return the inputs as outputs",
    "tokens": 0
  },
  {
    "name": "sleep",
    "source": "builtin",
    "description": "Wait `ms` milliseconds",
    "tokens": 0
  },
  {
    "name": "fail",
    "source": "builtin",
    "description": "Fail, or fail the first `times` attempts (for testing recovery)",
    "tokens": 0
  },
  {
    "name": "shell",
    "source": "builtin",
    "description": "Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines",
    "tokens": 0
  },
  {
    "name": "http",
    "source": "builtin",
    "description": "Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json",
    "tokens": 0
  },
  {
    "name": "llm",
    "source": "builtin",
    "description": "Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage",
    "tokens": 0
  },
"#;

#[test]
fn skills_list_and_show_describe_a_lua_skill_folder() {
  let p = Project::new();
  p.file(
    "skills/my-skill/init.lua",
    "return {\n  description = \"Says hi\",\n  run = function(ctx, input) return { said = swdl.exec(\"echo\", { \"hi\" }).stdout } end,\n}\n",
  );
  p.file(
    "skills/my-skill/skill.yaml",
    "description: Says hi\ndomains: [testing]\nrisk: high\ntokens: 42\npermissions: [exec]\ninputs:\n  who: { type: string, required: false, description: whom to greet }\noutputs:\n  said: string\n",
  );
  p.skill("loose", "return { run = function() return {} end }\n");
  let my_skill = r#"
    "name": "my-skill",
    "source": "skills/my-skill/init.lua",
    "description": "Says hi",
    "domains": [
      "testing"
    ],
    "risk": "high",
    "tokens": 42,
    "permissions": [
      "exec"
    ],
    "inputs": {
      "who": "string"
    },
    "outputs": {
      "said": "string"
    }
  "#;
  let list = format!(
    r#"[{BUILTINS_JSON}  {{
    "name": "loose",
    "source": "skills/loose.lua",
    "tokens": 0
  }},
  {{
    {}
  }}
]
"#,
    my_skill.trim()
  );
  p.swdl(["skills", "list", "--skills", "skills", "--format", "json"])
    .stdout(&list)
    .stderr("")
    .status(0)
    .run();
  p.swdl(["skills", "list", "--skills", "skills"])
    .stdout(
      "
      NAME      TOKENS  DOMAINS                   DESCRIPTION
      echo           0                            Return the inputs as outputs
      sleep          0                            Wait `ms` milliseconds
      fail           0                            Fail, or fail the first `times` attempts (for testing recovery)
      shell          0                            Run a shell script; outputs stdout, stderr, exit_code and $SWDL_OUTPUT lines
      http           0                            Call an HTTP endpoint: url, method, headers, body or json; outputs status, headers, body, json
      llm            0                            Ask a language model (OpenAI-compatible): prompt, system, json; outputs text, json, usage
      loose          0[..]
      my-skill      42  testing                   Says hi

      8 skills, 42 tokens
      ",
    )
    .stderr("")
    .status(0)
    .run();
  p.swdl([
    "skills", "show", "my-skill", "--skills", "skills", "--format", "json",
  ])
  .stdout(&format!(
    "{{\n{}}}\n",
    crate::test::unindent(my_skill)
      .lines()
      .map(|l| format!("  {l}\n"))
      .collect::<String>()
  ))
  .stderr("")
  .status(0)
  .run();
  p.swdl(["skills", "show", "my-skill", "--skills", "skills"])
    .stdout(
      r#"
      my-skill
        source       skills/my-skill/init.lua
        description  Says hi
        domains      testing
        languages    -
        tokens       42
        risk         high
        permissions  exec
        inputs       who: string
        outputs      said: string

      return {
        description = "Says hi",
        run = function(ctx, input) return { said = swdl.exec("echo", { "hi" }).stdout } end,
      }

      "#,
    )
    .stderr("")
    .status(0)
    .run();
  p.swdl(["skills", "show", "my-skil", "--skills", "skills"])
    .stdout("")
    .stderr("error: unknown skill `my-skil`, did you mean `my-skill`?\n")
    .status(2)
    .run();
}

#[test]
fn skills_list_and_show_read_a_one_file_skills_own_table() {
  let p = Project::new();
  p.skill(
    "word-count",
    "return {\n  description = \"Count the words\",\n  inputs = { text = \"string\" },\n  outputs = { words = \"integer\" },\n  run = function() return { words = 0 } end,\n}\n",
  );
  let word_count = r#"
    "name": "word-count",
    "source": "skills/word-count.lua",
    "description": "Count the words",
    "tokens": 0,
    "inputs": {
      "text": "string"
    },
    "outputs": {
      "words": "integer"
    }
  "#;
  p.swdl([
    "skills",
    "show",
    "word-count",
    "--skills",
    "skills",
    "--format",
    "json",
  ])
  .stdout(&format!(
    "{{\n{}}}\n",
    crate::test::unindent(word_count)
      .lines()
      .map(|l| format!("  {l}\n"))
      .collect::<String>()
  ))
  .stderr("")
  .status(0)
  .run();
  p.swdl(["skills", "list", "--skills", "skills"])
    .stdout(
      "
      NAME        TOKENS  DOMAINS                   DESCRIPTION
      ...
      word-count       0                            Count the words

      7 skills, 0 tokens
      ",
    )
    .stderr("")
    .status(0)
    .run();
  // A skill that does not load is still listed, without a description, and nothing is said.
  p.skill("broken", "return {\n  description = = 1\n}\n");
  let list = format!(
    r#"[{BUILTINS_JSON}  {{
    "name": "broken",
    "source": "skills/broken.lua",
    "tokens": 0
  }},
  {{
    {}
  }}
]
"#,
    word_count.trim()
  );
  p.swdl(["skills", "list", "--skills", "skills", "--format", "json"])
    .stdout(&list)
    .stderr("")
    .status(0)
    .run();
}
