//! Yielding, timeouts and cancellation of Lua code.
use super::*;

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
