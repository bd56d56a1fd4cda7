//! Stopping runaway skills: timeouts, cancellation, starvation, memory, stuck states.
use super::*;

#[tokio::test]
async fn a_busy_loop_is_stopped_by_the_timeout_and_the_state_stays_usable() {
  let dir = Dir::new("timeout");
  let host = host(1);
  let busy = [
    ("spin.lua", "while true do end"),
    (
      "pcall.lua",
      "while true do pcall(function() while true do end end) end",
    ),
    (
      "xpcall.lua",
      "while true do xpcall(function() while true do end end, print) end",
    ),
    (
      "wrap.lua",
      "coroutine.wrap(function() while true do end end)()",
    ),
    (
      "resume.lua",
      "while true do coroutine.resume(coroutine.create(function() while true do end end)) end",
    ),
    ("recursion.lua", "local function f() return f() end f()"),
  ];
  for (name, body) in busy {
    let path = dir.skill(name, body);
    let started = Instant::now();
    let message = failure(run(&host, &path, with_timeout(task(json!({})), 200)).await);
    assert_eq!(
      message, "stopped: the stage timed out after 200ms",
      "{name}"
    );
    assert!(
      started.elapsed() < Duration::from_millis(900),
      "{name} took {:?}",
      started.elapsed()
    );
  }
  let fine = dir.skill("fine.lua", "return { ok = true }");
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
}

#[tokio::test]
async fn a_timeout_also_ends_a_skill_that_waits() {
  let dir = Dir::new("timeout-wait");
  let path = dir.skill("wait.lua", "swdl.sleep('1m')");
  let started = Instant::now();
  let message = failure(run(&host(1), &path, with_timeout(task(json!({})), 100)).await);
  assert_eq!(message, "stopped: the stage timed out after 100ms");
  assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test]
async fn dropping_the_future_cancels_a_busy_loop() {
  let dir = Dir::new("cancel");
  let host = host(1);
  let spin = dir.skill("spin.lua", "while true do end");
  let call = run(&host, &spin, with_timeout(task(json!({})), 60_000));
  assert!(
    tokio::time::timeout(Duration::from_millis(100), call)
      .await
      .is_err()
  );
  // One state only: this runs once the busy loop has been stopped.
  let fine = dir.skill("fine.lua", "return { ok = true }");
  let started = Instant::now();
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
  assert!(
    started.elapsed() < Duration::from_millis(500),
    "took {:?}",
    started.elapsed()
  );
}

#[tokio::test]
async fn a_busy_skill_does_not_starve_the_others_on_its_state() {
  let dir = Dir::new("slices");
  let host = host(1);
  let spin = dir.skill("spin.lua", "while true do end");
  let nap = dir.skill("nap.lua", "swdl.sleep(20) return {}");
  let busy = run(&host, &spin, with_timeout(task(json!({})), 1500));
  let quick = async {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    outputs(run(&host, &nap, task(json!({}))).await);
    started.elapsed()
  };
  let (busy, quick) = tokio::join!(busy, quick);
  assert_contains(&failure(busy), "timed out");
  assert!(
    quick < Duration::from_millis(500),
    "the quick skill took {quick:?}"
  );
}

#[tokio::test]
async fn running_out_of_memory_fails_the_skill_not_the_state() {
  let dir = Dir::new("memory-limit");
  let host = host_with(1, 32 * 1024 * 1024, Vec::new());
  let hog = dir.skill(
    "hog.lua",
    "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end",
  );
  let message = failure(run(&host, &hog, task(json!({}))).await);
  assert_contains(
    &message,
    "hog.lua: not enough memory: the Lua memory limit of 32 MiB was reached",
  );
  let rep = dir.skill("rep.lua", "return { s = string.rep('x', 1e12) }");
  let started = Instant::now();
  let message = failure(run(&host, &rep, task(json!({}))).await);
  assert_contains(
    &message,
    "string.rep: the result would take 1000000000000 bytes",
  );
  assert_contains(&message, "rep.lua:3");
  let method = dir.skill("method.lua", "return { s = ('xy'):rep(1e10, ',') }");
  assert_contains(
    &failure(run(&host, &method, task(json!({}))).await),
    "string.rep",
  );
  assert!(started.elapsed() < Duration::from_secs(1));
  let fine = dir.skill("fine.lua", "return { s = ('ab'):rep(3, '-') }");
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["s"],
    json!("ab-ab-ab")
  );
}

#[tokio::test]
async fn a_state_stuck_in_a_pattern_match_is_replaced() {
  let dir = Dir::new("stuck");
  let host = host(1);
  // Backtracking inside one C call, out of the hook's reach: seconds in a release build,
  // about ten in a debug one (the thread is left to finish it).
  let stuck = dir.skill(
    "stuck.lua",
    "return { found = string.rep('a', 400):find('.-.-.-b') }",
  );
  let started = Instant::now();
  let message = failure(run(&host, &stuck, with_timeout(task(json!({})), 200)).await);
  assert_contains(
    &message,
    "stopped: the stage timed out after 200ms; its Lua state was stuck",
  );
  assert!(
    started.elapsed() < Duration::from_secs(3),
    "took {:?}",
    started.elapsed()
  );
  let fine = dir.skill("fine.lua", "return { ok = true }");
  let started = Instant::now();
  assert_eq!(
    outputs(run(&host, &fine, task(json!({}))).await)["ok"],
    json!(true)
  );
  assert!(
    started.elapsed() < Duration::from_secs(1),
    "took {:?}",
    started.elapsed()
  );
}
