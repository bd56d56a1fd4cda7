//! The `llm` skill, `swdl.llm.complete` and `swdl decompose` against a scripted
//! OpenAI-compatible server on 127.0.0.1.
use crate::{
  common::root,
  server::{Reply, Server},
  test::{Test, assert_matches, unindent},
};

const KEY: &str = "sk-test-5e2c91d0";

/// A chat completion whose answer is `content`, reporting `tokens` total.
pub fn completion(content: &str, tokens: u64) -> Reply {
  let body = serde_json::json!({
    "model": "test-model",
    "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }],
    "usage": { "prompt_tokens": tokens - 2, "completion_tokens": 2, "total_tokens": tokens },
  });
  Reply::json(200, &body.to_string())
}

/// `test` pointed at `server` as its model server, with an API key.
fn llm(test: Test, server: &Server) -> Test {
  test
    .env("SWDL_LLM_URL", format!("{}/v1", server.url))
    .env("SWDL_LLM_MODEL", "test-model")
    .env("SWDL_LLM_API_KEY", KEY)
}

/// The request bodies the server received, as JSON.
fn requests(server: &Server) -> Vec<serde_json::Value> {
  server
    .seen()
    .iter()
    .map(|s| serde_json::from_str(&s.body).unwrap_or_default())
    .collect()
}

/// The workflow in [`VALID`], as decompose writes it.
const WORKFLOW: &str = r#"
name: review
stages:
  - id: style
    uses: code-style
    with: { text: "let x = 1" }
  - id: report
    uses: echo
    with: { findings: "$<< stages.style.outputs.findings >>" }
    depends_on: [style]
"#;

pub const VALID: &str = "Here is the workflow:\n```yaml\nname: review\nstages:\n  - id: style\n    uses: code-style\n    with: { text: \"let x = 1\" }\n  - id: report\n    uses: echo\n    with: { findings: \"$<< stages.style.outputs.findings >>\" }\n    depends_on: [style]\n```\n";

#[test]
fn decompose_writes_a_valid_workflow_and_explains_its_plan() {
  let server = Server::start(vec![completion(VALID, 120)]);
  let skills = root().join("skills");
  let out = llm(Test::new(), &server)
    .args([
      "decompose",
      "review the code style of src and report",
      "--skills",
    ])
    .args([&skills])
    .args(["-o", "wf.yaml"])
    .stdout("")
    .stderr(
      r"
      decompose: a valid workflow after the first answer (model tokens: 120)
      the plan:
        1. style (needs nothing)
        2. report (after style)
        critical path: style -> report
      wrote wf.yaml
      ",
    )
    .status(0)
    .run();
  let written = std::fs::read_to_string(out.path().join("wf.yaml")).expect("written");
  assert_eq!(written, unindent(WORKFLOW));
  let seen = server.seen();
  assert_eq!(seen[0].path, "/v1/chat/completions");
  assert_eq!(
    seen[0].header("authorization"),
    Some(format!("Bearer {KEY}").as_str())
  );
  let request = &requests(&server)[0];
  assert_eq!(request["model"], "test-model");
  let system = request["messages"][0]["content"]
    .as_str()
    .unwrap_or_default();
  // The system prompt is long prose around the registry; only the registry matters here.
  assert!(
    system.contains("- code-style"),
    "the registry is sent: {system}"
  );
  assert!(system.contains("- http:"), "built-ins too: {system}");
}

#[test]
fn decompose_repairs_an_invalid_answer_with_its_errors() {
  let broken = VALID.replace("depends_on: [style]", "depends_on: [styel]");
  let server = Server::start(vec![completion(&broken, 50), completion(VALID, 60)]);
  let skills = root().join("skills");
  // The workflow goes to stdout.
  llm(Test::new(), &server)
    .args(["decompose", "review", "--skills"])
    .args([&skills])
    .stdout(WORKFLOW)
    .stderr(
      r"
      decompose: answer 1 is not a valid workflow (2 problems); asking for a repair
      decompose: a valid workflow after 1 repair (model tokens: 110)
      the plan:
        1. style (needs nothing)
        2. report (after style)
        critical path: style -> report
      ",
    )
    .status(0)
    .run();
  let requests = requests(&server);
  assert_eq!(requests.len(), 2);
  let repair = requests[1]["messages"]
    .as_array()
    .and_then(|m| m.last())
    .and_then(|m| m["content"].as_str())
    .unwrap_or_default()
    .to_string();
  // The model is shown every error, as `swdl validate` would show it.
  assert_matches(
    r#"
    That workflow is not valid:
    decomposed.yaml:8:35: error: stage `report` reads `stages.style` but does not depend on it: add `style` to its `depends_on`
      |
    8 |     with: { findings: "$<< stages.style.outputs.findings >>" }
      |                                   ^^^^^
    decomposed.yaml:9:18: error: stage `report` depends on unknown stage `styel`, did you mean `style`?
      |
    9 |     depends_on: [styel]
      |                  ^^^^^
    2 errors

    Reply with the whole corrected workflow, only, in one ```yaml block.
    "#,
    &repair,
  );
}

#[test]
fn decompose_gives_up_after_its_repairs_and_on_bad_replies() {
  let never = "```yaml\nname: x\nstages:\n  - id: a\n    uses: no-such-skill\n```";
  let server = Server::start(vec![completion(never, 10)]);
  let out = llm(Test::new(), &server)
    .args(["decompose", "anything", "--repairs", "1", "-o", "wf.yaml"])
    .stdout("")
    .stderr(
      r"
      decompose: answer 1 is not a valid workflow (1 problem); asking for a repair
      decompose: answer 2 is not a valid workflow (1 problem)
      decomposed.yaml: error: stage `a` uses skill `no-such-skill`, which does not exist; use one of the listed skills
      error: decompose: no valid workflow after 1 repair
      ",
    )
    .status(1)
    .run();
  assert_eq!(server.seen().len(), 2);
  assert!(
    !out.path().join("wf.yaml").exists(),
    "nothing invalid is written"
  );

  let server = Server::start(vec![Reply::json(200, "<html>not json</html>")]);
  llm(out.then(), &server)
    .args(["decompose", "anything"])
    .stdout("")
    .stderr("error: decompose: the model server's reply is not JSON: <html>not json</html>\n")
    .status(1)
    .run();

  // A server that repeats the key back: it never reaches the output, which is masked.
  let server = Server::start(vec![Reply::json(
    401,
    &format!(r#"{{"error": "bad key {KEY}"}}"#),
  )]);
  llm(out.then(), &server)
    .args(["decompose", "anything"])
    .stdout("")
    .stderr(&format!(
      "error: decompose: the model server answered 401 at {}/v1/chat/completions: \
       {{\"error\": \"bad key ***\"}}\n",
      server.url
    ))
    .status(1)
    .run();

  // Without a server configured: a clear usage error.
  Test::new()
    .env_remove("SWDL_LLM_URL")
    .args(["decompose", "anything"])
    .stdout("")
    .stderr(
      "error: decompose: no model server: set SWDL_LLM_URL (the base URL with /v1, e.g. \
       http://127.0.0.1:8080/v1) or give `url`\n",
    )
    .status(2)
    .run();
}

#[test]
fn the_llm_skill_records_usage_and_stops_at_the_token_budget() {
  let server = Server::start(vec![completion(r#"{"verdict": "ok"}"#, 10)]);
  let out = llm(Test::new(), &server)
    .workflow(
      r#"
      name: ask
      config:
        budget: { tokens: 15 }
      stages:
        - id: one
          uses: llm
          with: { system: "reply in JSON", prompt: "judge this", json: true, temperature: 0 }
        - id: two
          uses: llm
          with: { prompt: "$<< stages.one.outputs.json.verdict >>" }
          depends_on: [one]
        - id: three
          uses: llm
          with: { prompt: again }
          depends_on: [two]
      "#,
    )
    .args([
      "run",
      "wf.yaml",
      "--progress",
      "plain",
      "--events",
      "events.jsonl",
      "--output",
      "json",
    ])
    .stderr(
      r"
      [..] run ask started (3 stages, max_parallel 3)
      [..] stage one started (attempt 1, uses llm)
      [..] stage one: llm: 10 tokens (prompt 8, completion 2; run 10 of 15) from test-model
      [..] stage one completed in [..]
      [..] stage two started (attempt 1, uses llm)
      [..] stage two: llm: 10 tokens (prompt 8, completion 2; run 20 of 15) from test-model
      [..] stage two completed in [..]
      [..] stage three started (attempt 1, uses llm)
      [..] stage three failed: llm: the run's model token budget is spent: 20 of 15 tokens used (config.budget.tokens); no new model calls start
      [..] run failed: stage `three` failed: llm: the run's model token budget is spent: 20 of 15 tokens used (config.budget.tokens); no new model calls start
      run failed: completed 2/3 stages, 1 failed in [..]
      model tokens used by this run: 20 of a budget of 15
      ",
    )
    .status(1)
    .run();
  let record = out.json();
  let one = &record["stages"]["one"]["outputs"];
  assert_eq!(one["json"]["verdict"], "ok");
  assert_eq!(one["usage"]["total_tokens"], 10);
  // The totals are fields of the run record: the run's and each stage's.
  assert_eq!(record["tokens"], 20);
  assert_eq!(record["stages"]["one"]["tokens"], 10);
  assert_eq!(record["stages"]["two"]["tokens"], 10);
  assert_eq!(record["stages"]["three"].get("tokens"), None);
  assert_eq!(out.named("log", "one")[0]["tokens"], 10);
  let id = record["run"].as_str().unwrap_or_default().to_string();
  let stored = out
    .then()
    .args(["runs", id.as_str(), "--format", "json"])
    .status(0)
    .run();
  assert_eq!(stored.json()["state"]["tokens"], 20);
  let text = out.then().args(["runs", id.as_str()]).status(0).run();
  assert!(
    text.stdout.contains("\ntokens    20 model tokens\n"),
    "{}",
    text.stdout
  );
  assert_eq!(record["stages"]["two"]["status"], "completed");
  assert_eq!(
    record["stages"]["three"]["error"],
    "llm: the run's model token budget is spent: 20 of 15 tokens used (config.budget.tokens); \
     no new model calls start"
  );
  let requests = requests(&server);
  assert_eq!(requests.len(), 2, "no call starts once the budget is spent");
  assert_eq!(requests[0]["response_format"]["type"], "json_object");
  assert_eq!(requests[0]["messages"][0]["role"], "system");
  assert_eq!(requests[1]["messages"][0]["content"], "ok");
  // Usage is logged per stage.
  let logs: Vec<&serde_json::Value> = out
    .named("log", "one")
    .iter()
    .map(|e| &e["message"])
    .collect();
  assert_eq!(
    logs,
    ["llm: 10 tokens (prompt 8, completion 2; run 10 of 15) from test-model"]
  );
  // The key must appear nowhere: not in the events, nor in the parts of the streams that are
  // not compared as they are (timestamps, run ids).
  let events = std::fs::read_to_string(out.path().join("events.jsonl")).unwrap_or_default();
  for haystack in [&events, &out.stderr, &out.stdout] {
    assert!(!haystack.contains(KEY), "{haystack}");
  }
  let stored = files(&out.path().join(".swdl"));
  assert!(!stored.is_empty(), "the run store is written");
  for file in stored {
    let bytes = std::fs::read(&file).unwrap_or_default();
    assert!(
      !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
      "the key is in {}",
      file.display()
    );
  }
}

/// Every file under `dir`, at any depth.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
  let mut found = Vec::new();
  for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
    let path = entry.path();
    if path.is_dir() {
      found.extend(files(&path));
    } else {
      found.push(path);
    }
  }
  found
}

#[test]
fn lua_skills_ask_the_model_with_swdl_llm_complete() {
  let server = Server::start(vec![completion("a haiku", 9)]);
  let out = llm(Test::new(), &server)
    .skill(
      "poet.lua",
      r"
      return { run = function(ctx, input)
        local a = swdl.llm.complete(input.topic, { system = 'you write haiku', max_tokens = 40 })
        return { poem = a.text, tokens = a.usage.total_tokens }
      end }
      ",
    )
    .workflow(
      r"
      name: p
      config:
        permissions: { poet: [net] }
      stages:
        - id: write
          uses: poet
          with: { topic: autumn }
      ",
    )
    .args(["run", "wf.yaml", "--progress", "none", "--output", "json"])
    .stderr("model tokens used by this run: 9\n")
    .status(0)
    .run();
  let record = out.json();
  assert_eq!(record["stages"]["write"]["outputs"]["poem"], "a haiku");
  assert_eq!(record["stages"]["write"]["outputs"]["tokens"], 9);
  assert_eq!(record["tokens"], 9);
  assert_eq!(record["stages"]["write"]["tokens"], 9);
  let request = &requests(&server)[0];
  assert_eq!(request["max_tokens"], 40);
  assert_eq!(request["messages"][1]["content"], "autumn");
}

#[test]
fn the_model_server_can_be_named_in_config_env() {
  let server = Server::start(vec![completion("fine", 5)]);
  Test::new()
    .workflow(&format!(
      r#"
      name: c
      config:
        env: {{ SWDL_LLM_URL: "{}/v1", SWDL_LLM_MODEL: from-config }}
      stages:
        - id: ask
          uses: llm
          with: {{ prompt: hi }}
      "#,
      server.url
    ))
    .env_remove("SWDL_LLM_URL")
    .env_remove("SWDL_LLM_MODEL")
    .env_remove("SWDL_LLM_API_KEY")
    .args(["run", "wf.yaml", "--progress", "none", "--store", "none"])
    .stdout("")
    .stderr("model tokens used by this run: 5\n")
    .status(0)
    .run();
  let request = &requests(&server)[0];
  assert_eq!(request["model"], "from-config");
  assert_eq!(
    server.seen()[0].header("authorization"),
    None,
    "no key, no header"
  );
}

#[test]
fn the_key_goes_only_to_the_server_the_environment_names() {
  let trusted = Server::start(vec![completion("from the configured server", 5)]);
  let other = Server::start(vec![completion("from elsewhere", 5)]);
  llm(Test::new(), &trusted)
    .workflow(&format!(
      r#"
      name: k
      stages:
        - id: mine
          uses: llm
          with: {{ prompt: a }}
        - id: theirs
          uses: llm
          with: {{ prompt: b, url: "{}/v1" }}
      "#,
      other.url
    ))
    .args(["run", "wf.yaml", "--progress", "none", "--store", "none"])
    .stdout("")
    .stderr("model tokens used by this run: 10\n")
    .status(0)
    .run();
  assert_eq!(
    trusted.seen()[0].header("authorization"),
    Some(format!("Bearer {KEY}").as_str())
  );
  assert_eq!(other.seen().len(), 1);
  assert_eq!(
    other.seen()[0].header("authorization"),
    None,
    "the key must not leave"
  );
}
