//! Recovery strategies written in Lua.
use super::*;

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

#[test]
fn a_recovery_strategy_sees_which_item_of_a_fan_out_failed() {
  let p = Project::new();
  p.skill("picky", PICKY);
  p.hooks(
    r#"
swdl.recovery("shrink", function(failure, ctx)
  assert(failure.item ~= nil, "an item's failure names its item")
  return { action = "retry", with = { size = failure.item, limit = 2 } }
end)
"#,
  );
  let out = p
    .run(
      r#"
name: items
config: { hooks: [hooks.lua] }
stages:
  - id: s
    for_each: [1, 9, 2]
    uses: picky
    with: { size: "$<< item >>", limit: 2 }
    recover: shrink
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let decided: Vec<(u64, &str)> = out
    .named("recovery_decided", "s")
    .iter()
    .map(|e| {
      (
        e["item"].as_u64().unwrap_or(99),
        e["key"].as_str().unwrap_or_default(),
      )
    })
    .collect();
  assert_eq!(decided, [(1, "9")]);
  let whole: Vec<&serde_json::Value> = out
    .named("stage_completed", "s")
    .into_iter()
    .filter(|e| e.get("item").is_none())
    .collect();
  assert_eq!(whole.len(), 1, "{}", out.dump());
  assert_eq!(whole[0]["outputs"]["size"], serde_json::json!([1, 1, 2]));
}
