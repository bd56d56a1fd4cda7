//! Hooks: approval policies, recovery strategies, hook files that fail, `eval`.
use super::*;

const POLICIES: &str = r#"
swdl.policy("by-risk", function(stage, ctx)
  ctx.log("deciding", stage.id)
  if stage.risk == "critical" then return "reject", "critical stages need a human" end
  if stage.risk == "high" then return "ask" end
  if stage.risk == "medium" then return "approve", #ctx.memory .. " before, run " .. ctx.run_id end
  if stage.risk == "weird" then return "maybe" end
  if stage.risk == "gate" then return "approve", swdl.eval("gate.message") end
  return "approve"
end)

swdl.recovery("retry-then-fallback", function(failure, ctx)
  local answers = {
    retry = { action = "retry", delay = "2s", with = { depth = 1 } },
    bare = "skip",
    fallback = { action = "fallback", uses = "code-reviewer" },
    skip = { action = "skip" },
    abort = { action = "abort" },
    compensate = { action = "compensate" },
    unknown = { action = "rety" },
    nouses = { action = "fallback" },
    extra = { action = "retry", dely = "2s" },
    badwith = { action = "retry", with = "x" },
    baddelay = { action = "retry", delay = "soon" },
    digits = { action = "retry", delay = "250" },
    number = 42,
    nothing = nil,
  }
  return answers[failure.error]
end)
"#;

fn stage(risk: &str) -> PolicyStage {
  PolicyStage {
    id: "deploy".into(),
    kind: "approval".into(),
    risk: Some(risk.into()),
    uses: Some("shell".into()),
    message: Some("Ship it?".into()),
    run_id: "run-9".into(),
    params: json!({"env": "prod"}),
    memory: Vec::new(),
  }
}

fn failed(error: &str) -> Failure {
  Failure {
    item: None,
    key: None,
    stage: "review".into(),
    attempt: 1,
    kind: "timeout".into(),
    error: error.into(),
    uses: "code-review".into(),
    inputs: json!({"depth": 3}),
    run_id: "run-9".into(),
    params: json!({}),
    memory: Vec::new(),
  }
}

#[tokio::test]
async fn policies_approve_reject_or_ask_with_reasons() {
  let dir = Dir::new("policies");
  let hooks = dir.file("policies.lua", POLICIES);
  let host = host_with(2, 64 * 1024 * 1024, vec![hooks]);
  assert_eq!(host.policies(), vec!["by-risk".to_string()]);
  assert_eq!(host.recoveries(), vec!["retry-then-fallback".to_string()]);
  let decide = |risk: &'static str| {
    let host = host.clone();
    async move { host.decide("by-risk", stage(risk)).await }
  };
  assert_eq!(
    decide("critical").await,
    Ok(PolicyDecision::Reject {
      reason: Some("critical stages need a human".into())
    })
  );
  assert_eq!(
    decide("high").await,
    Ok(PolicyDecision::Ask { reason: None })
  );
  assert_eq!(
    decide("low").await,
    Ok(PolicyDecision::Approve { reason: None })
  );
  assert_eq!(
    decide("medium").await,
    Ok(PolicyDecision::Approve {
      reason: Some("0 before, run run-9".into())
    })
  );
  assert_eq!(
    decide("gate").await,
    Ok(PolicyDecision::Approve {
      reason: Some("Ship it?".into())
    })
  );
  let error = decide("weird").await.expect_err("an invalid answer");
  assert_contains(&error.to_string(), "policy `by-risk` (");
  assert_contains(
    &error.to_string(),
    "policies.lua) returned \"maybe\": return \"approve\", \"reject\" or \"ask\"",
  );
  let error = host
    .decide("by-rsik", stage("low"))
    .await
    .expect_err("unknown");
  assert_eq!(
    error.to_string(),
    "unknown policy `by-rsik` (did you mean `by-risk`?)"
  );
}

#[tokio::test]
async fn recovery_strategies_return_actions_and_bad_ones_fail_clearly() {
  let dir = Dir::new("recovery");
  let hooks = dir.file("recovery.lua", POLICIES);
  let host = host_with(1, 64 * 1024 * 1024, vec![hooks]);
  let recover = |error: &'static str| {
    let host = host.clone();
    async move { host.recover("retry-then-fallback", failed(error)).await }
  };
  assert_eq!(
    recover("retry").await,
    Ok(RecoveryAction::Retry {
      delay: Some(Duration::from_secs(2)),
      with: Some(serde_json::Map::from_iter([(
        "depth".to_string(),
        json!(1)
      )])),
    })
  );
  assert_eq!(
    recover("fallback").await,
    Ok(RecoveryAction::Fallback {
      uses: "code-reviewer".into()
    })
  );
  assert_eq!(recover("skip").await, Ok(RecoveryAction::Skip));
  assert_eq!(recover("bare").await, Ok(RecoveryAction::Skip));
  assert_eq!(recover("abort").await, Ok(RecoveryAction::Abort));
  assert_eq!(recover("compensate").await, Ok(RecoveryAction::Compensate));
  let cases = [
    (
      "unknown",
      "returned unknown action \"rety\" (did you mean \"retry\"?)",
    ),
    ("nouses", "returned action \"fallback\" without `uses`"),
    (
      "extra",
      "returned unknown field `dely` (did you mean `delay`?): action \"retry\" takes `delay` and `with`",
    ),
    (
      "badwith",
      "returned `with` as string: it must be a table of inputs",
    ),
    (
      "baddelay",
      "returned a bad `delay`: invalid duration `soon`",
    ),
    (
      "digits",
      "returned a bad `delay`: duration \"250\" has no unit: write \"250ms\" or \"250s\", or the \
       number 250 for milliseconds",
    ),
    ("number", "returned 42: return a table like"),
    ("nothing", "returned nothing: return a table like"),
  ];
  for (error, wanted) in cases {
    let message = recover(error).await.expect_err(error).to_string();
    assert_contains(&message, "recovery strategy `retry-then-fallback` (");
    assert_contains(&message, wanted);
  }
  let error = host
    .recover("nope", failed("skip"))
    .await
    .expect_err("unknown");
  assert_eq!(error.to_string(), "unknown recovery strategy `nope`");
}

#[tokio::test]
async fn hook_files_that_fail_to_load_name_the_file_and_line() {
  let dir = Dir::new("hook-errors");
  let syntax = dir.file(
    "syntax.lua",
    "swdl.policy('x', function()\n  return 'approve' +\nend)\n",
  );
  let error = LuaHost::start(HostConfig {
    hooks: vec![syntax],
    ..HostConfig::default()
  })
  .expect_err("a syntax error");
  assert!(matches!(error, LuaError::Script(_)), "{error:?}");
  assert_contains(&error.to_string(), "syntax.lua:3:");

  let runtime = dir.file("runtime.lua", "local x = nil\nx.y = 1\n");
  let error = LuaHost::start(HostConfig {
    hooks: vec![runtime],
    ..HostConfig::default()
  })
  .expect_err("a runtime error");
  assert_contains(
    &error.to_string(),
    "runtime.lua:2: attempt to index a nil value",
  );

  let twice = dir.file(
    "twice.lua",
    "swdl.policy('p', print)\nswdl.policy('p', print)\n",
  );
  let error = LuaHost::start(HostConfig {
    hooks: vec![twice],
    ..HostConfig::default()
  })
  .expect_err("a duplicate");
  assert_contains(
    &error.to_string(),
    "twice.lua:2: swdl.policy: policy `p` is already defined in",
  );

  let missing = dir.0.join("missing.lua");
  let error = LuaHost::start(HostConfig {
    hooks: vec![missing],
    ..HostConfig::default()
  })
  .expect_err("a missing file");
  assert!(matches!(error, LuaError::File { .. }), "{error:?}");

  // Policies are registered from hook files only.
  let skill = dir.skill("skill.lua", "swdl.policy('p', print)");
  let message = failure(run(&host(1), &skill, task(json!({}))).await);
  assert_contains(&message, "swdl.policy can only be called from a hook file");
}

#[tokio::test]
async fn eval_keeps_its_globals_between_calls() {
  let host = host(2);
  assert_eq!(host.eval("1 + 1").await, Ok(json!(2)));
  assert_eq!(host.eval("x = 5").await, Ok(Json::Null));
  assert_eq!(host.eval("x * 2, 'y'").await, Ok(json!([10, "y"])));
  assert_eq!(
    host.eval("{ a = print ~= nil }").await,
    Ok(json!({"a": true}))
  );
  let error = host.eval("error('nope')").await.expect_err("an error");
  assert_contains(&error.to_string(), "lua:1: nope");
}
