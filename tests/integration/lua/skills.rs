//! Lua skills: outputs, summary, logs and `ctx` reach the events.
use super::*;

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
      artifacts = { "greeting.txt" },
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
      hints_seen = seen and seen.hints,
      artifacts_seen = seen and seen.artifacts,
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
    with:
      greeting: "$<< stages.greet.outputs.greeting >>"
      hints: "$<< memory[0].hints >>"
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
  assert_eq!(completed["hints"], json!(["be nice"]));
  assert_eq!(completed["artifacts"], json!(["greeting.txt"]));
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
  assert_eq!(recall["hints_seen"], json!(["be nice"]));
  assert_eq!(recall["artifacts_seen"], json!(["greeting.txt"]));
  assert_eq!(
    out.one("stage_started", "recall")["inputs"]["hints"],
    json!(["be nice"])
  );
  // The run record keeps them.
  let id = run_id.as_str().unwrap_or_default();
  let detail = p.swdl(["runs", id, "--format", "json"]).status(0).run();
  let greet = &detail.json()["state"]["stages"]["greet"];
  assert_eq!(greet["hints"], json!(["be nice"]));
  assert_eq!(greet["artifacts"], json!(["greeting.txt"]));
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
