//! Lua skills: outputs, refreshes, memory, errors with positions, declared inputs and outputs.
use super::*;

#[tokio::test]
async fn a_skill_returns_outputs_with_summary_artifacts_and_hints_lifted_out() {
  let dir = Dir::new("outputs");
  let path = dir.file(
    "word-count.lua",
    r#"
return {
  description = "Count words in a text",
  inputs = { text = "string" },
  outputs = { words = "integer" },
  run = function(ctx, input)
    local n = select(2, input.text:gsub("%S+", ""))
    ctx.log("counted", n, "words")
    return {
      words = n,
      summary = n .. " words",
      artifacts = { "report.md" },
      hints = { "short text" },
      ctx = { ctx.run_id, ctx.stage, ctx.attempt, ctx.idempotency_key, ctx.env.GREETING,
              ctx.params.text, #ctx.memory, ctx.memory_text },
    }
  end,
}
"#,
  );
  let host = host(1);
  let (tx, mut rx) = mpsc::unbounded_channel::<LogLine>();
  let result = host
    .run_skill(
      &path,
      task(json!({"text": "one two three"})),
      TaskIo::new(4, 2, tx),
    )
    .await;
  assert_eq!(
    result,
    StageResult::Completed {
      outputs: serde_json::Map::from_iter([
        (
          "ctx".to_string(),
          json!([
            "run-1",
            "count",
            2,
            "run-1/count",
            "hello",
            "one two three",
            0,
            ""
          ])
        ),
        ("words".to_string(), json!(3)),
      ]),
      summary: Some("3 words".into()),
      artifacts: vec![json!("report.md")],
      hints: vec![json!("short text")],
    }
  );
  let line = rx.recv().await.expect("a log line");
  assert_eq!(
    (line.stage, line.attempt, line.stream),
    (4, 2, LogStream::Log)
  );
  assert_eq!(line.message, "counted 3 words");
}

#[tokio::test]
async fn an_edited_skill_is_loaded_again_only_after_a_refresh() {
  let dir = Dir::new("refresh");
  let path = dir.skill("version.lua", "return { version = 1 }");
  let host = host(1);
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(1)
  );
  // A longer body, so the file's size changes even where timestamps are coarse.
  dir.skill("version.lua", "return { version = 2, edited = true }");
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(1),
    "within one run a skill keeps the version it started with"
  );
  host.refresh_skills();
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await)["version"],
    json!(2)
  );
}

#[tokio::test]
async fn ctx_memory_lists_the_stages_finished_before() {
  let dir = Dir::new("memory");
  let path = dir.skill(
    "memory.lua",
    "return { first = ctx.memory[1].stage, outputs = ctx.memory[1].outputs, seen_hints = ctx.memory[1].hints, seen_artifacts = ctx.memory[1].artifacts, text = ctx.memory_text }",
  );
  let memory = executor::Memory::default();
  memory.push(MemoryEntry {
    stage: "fetch".into(),
    status: crate::event::StageStatus::Completed,
    uses: Some("fetch-pages".into()),
    summary: Some("got 3 pages".into()),
    artifacts: vec![json!("pages.txt")],
    hints: vec![json!("page 2 is stale")],
    outputs: Arc::new(json!({"pages": 3, "list": []})),
    duration_ms: 12,
  });
  let mut task = task(json!({}));
  task.memory = memory.view();
  let outputs = outputs(run(&host(1), &path, task).await);
  assert_eq!(outputs["first"], json!("fetch"));
  assert_eq!(outputs["outputs"], json!({"pages": 3, "list": []}));
  assert_eq!(outputs["seen_hints"], json!(["page 2 is stale"]));
  assert_eq!(outputs["seen_artifacts"], json!(["pages.txt"]));
  assert_eq!(outputs["text"], json!("fetch [completed] got 3 pages\n"));
}

#[tokio::test]
async fn a_lua_error_names_the_file_and_line_with_a_traceback() {
  let dir = Dir::new("error");
  let path = dir.file(
    "broken.lua",
    "local function helper()\n  error(\"boom\")\nend\nreturn { run = function() helper() end }\n",
  );
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(&message, "broken.lua:2: boom");
  assert_contains(&message, "stack traceback:");
  assert_contains(&message, "broken.lua:4:");

  // An error raised by the host's own functions still points at the skill's line.
  let path = dir.skill("native.lua", "\n\n  swdl.json.encode(function() end)");
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(
    &message,
    "native.lua:5: swdl.json.encode: a function cannot be converted",
  );

  // So does a syntax error.
  let path = dir.file("syntax.lua", "return {\n  run = function( end\n}\n");
  let message = failure(run(&host(1), &path, task(json!({}))).await);
  assert_contains(&message, "syntax.lua:2:");

  let missing = dir.0.join("missing.lua");
  let message = failure(run(&host(1), &missing, task(json!({}))).await);
  assert_contains(&message, "missing.lua: No such file");
}

#[tokio::test]
async fn bad_return_values_fail_clearly() {
  let dir = Dir::new("returns");
  let host = host(1);
  let cases = [
    (
      "string.lua",
      "return 'done'",
      "run must return a table of outputs (or nothing), got a string \"done\"",
    ),
    ("list.lua", "return { 1, 2 }", "run returned a list"),
    (
      "function.lua",
      "return { f = print }",
      "`result.f`: a function cannot be converted to JSON",
    ),
    (
      "nested.lua",
      "return { a = { b = { coroutine.create(print) } } }",
      "`result.a.b[1]`: a thread",
    ),
    (
      "cycle.lua",
      "local t = {} t.t = t return { t = t }",
      "nested more than 100 levels",
    ),
    (
      "nan.lua",
      "return { x = 0/0 }",
      "cannot be represented in JSON",
    ),
    (
      "summary.lua",
      "return { summary = 3 }",
      "`summary` must be a string, got integer",
    ),
    (
      "artifacts.lua",
      "return { artifacts = 'x' }",
      "`artifacts` must be a list, got string",
    ),
  ];
  for (name, body, wanted) in cases {
    let path = dir.skill(name, body);
    let message = failure(run(&host, &path, task(json!({}))).await);
    assert_contains(&message, wanted);
    assert_contains(&message, name);
  }
  let path = dir.skill("nothing.lua", "return nil");
  assert_eq!(
    outputs(run(&host, &path, task(json!({}))).await),
    serde_json::Map::new()
  );

  let not_a_skill = dir.file("number.lua", "return 42");
  let message = failure(run(&host, &not_a_skill, task(json!({}))).await);
  assert_contains(&message, "number.lua: a skill file must return a table");
  let no_run = dir.file("norun.lua", "return { description = 'x' }");
  let message = failure(run(&host, &no_run, task(json!({}))).await);
  assert_contains(
    &message,
    "norun.lua: the returned table has no `run` function",
  );
}

#[tokio::test]
async fn declared_inputs_and_outputs_are_enforced() {
  let dir = Dir::new("decls");
  let host = host(1);
  let path = dir.file(
    "typed.lua",
    r#"
return {
  inputs = { text = "string", n = "integer", tags = "array?", opts = "object?", any = "any?" },
  outputs = { words = "integer", items = "array" },
  run = function(ctx, input)
    if input.bad then return { words = "many", items = {} } end
    if input.missing then return { items = {} } end
    return { words = input.n, items = {} }
  end,
}
"#,
  );
  let ok = outputs(run(&host, &path, task(json!({"text": "x", "n": 2.0}))).await);
  // An empty table declared as an array comes back as a list.
  assert_eq!(Json::Object(ok), json!({"words": 2, "items": []}));

  let cases = [
    (
      json!({"n": 1}),
      "input `text` is missing (declared as string)",
    ),
    (json!({"text": null, "n": 1}), "input `text` is missing"),
    (
      json!({"text": 3, "n": 1}),
      "input `text` must be a string, got an integer 3",
    ),
    (
      json!({"text": "x", "n": 1.5}),
      "input `n` must be an integer, got a number 1.5",
    ),
    (
      json!({"text": "x", "n": 1, "tags": {"a": 1}}),
      "input `tags` must be an array, got an object",
    ),
    (
      json!({"text": "x", "n": 1, "bad": true}),
      "output `words` must be an integer, got a string \"many\"",
    ),
    (
      json!({"text": "x", "n": 1, "missing": true}),
      "output `words` is missing",
    ),
  ];
  for (inputs, wanted) in cases {
    let message = failure(run(&host, &path, task(inputs)).await);
    assert_contains(&message, wanted);
    assert_contains(&message, "typed.lua");
  }

  let path = dir.file(
    "badtype.lua",
    "return { inputs = { text = 'strng' }, run = print }",
  );
  let message = failure(run(&host, &path, task(json!({}))).await);
  assert_contains(
    &message,
    "`inputs.text` has unknown type `strng` (did you mean `string`?)",
  );
}

#[tokio::test]
async fn skill_info_reads_the_declarations_without_running() {
  let dir = Dir::new("info");
  let path = dir.file(
    "info.lua",
    "return { description = 'Count', inputs = { text = 'string', max = 'integer?' },\n\
     outputs = { words = 'integer' }, run = function() error('must not run') end }",
  );
  let info = host(1).skill_info(&path).await.expect("skill info");
  assert_eq!(info.description.as_deref(), Some("Count"));
  assert_eq!(
    info.inputs,
    IndexMap::from([
      ("max".to_string(), "integer?".to_string()),
      ("text".to_string(), "string".to_string())
    ])
  );
  assert_eq!(
    info.outputs,
    IndexMap::from([("words".to_string(), "integer".to_string())])
  );
  let broken = dir.file("broken.lua", "return {");
  let error = host(1)
    .skill_info(&broken)
    .await
    .expect_err("a syntax error");
  assert_contains(&error.to_string(), "broken.lua:1:");
}

#[tokio::test]
async fn sleeping_skills_share_a_state() {
  let dir = Dir::new("sleep");
  let path = dir.skill(
    "nap.lua",
    "swdl.sleep(100) swdl.sleep('0ms') return { done = true }",
  );
  let executor = Executor::new(host(2), HashMap::from([("nap".to_string(), path)]));
  let started = Instant::now();
  let mut calls = tokio::task::JoinSet::new();
  for _ in 0..100 {
    let mut task = task(json!({}));
    task.skill = "nap".into();
    calls.spawn(executor.execute(task, TaskIo::discard()));
  }
  let mut done = 0;
  while let Some(result) = calls.join_next().await {
    let result = result.expect("the call should not panic");
    assert_eq!(outputs(result)["done"], json!(true));
    done += 1;
  }
  assert_eq!(done, 100);
  let elapsed = started.elapsed();
  assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn the_executor_runs_builtins_and_names_missing_skills() {
  let executor = Executor::new(host(1), HashMap::new());
  let mut echo = task(json!({"a": 1}));
  echo.skill = "echo".into();
  let result = executor.execute(echo, TaskIo::discard()).await;
  assert_eq!(outputs(result)["a"], json!(1));
  let mut missing = task(json!({}));
  missing.skill = "eho".into();
  let message = failure(executor.execute(missing, TaskIo::discard()).await);
  assert_contains(
    &message,
    "skill `eho` is not available (did you mean `echo`?)",
  );
}
