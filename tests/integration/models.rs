//! The `llm` skill, `swdl.llm.complete` and `swdl decompose` against a scripted
//! OpenAI-compatible server on 127.0.0.1.
use crate::{
  common::{TempDir, root},
  server::{Reply, Server},
};
use std::process::{Command, Output, Stdio};

const KEY: &str = "sk-test-5e2c91d0";

/// A chat completion whose answer is `content`, reporting `tokens` total.
fn completion(content: &str, tokens: u64) -> Reply {
  let body = serde_json::json!({
    "model": "test-model",
    "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }],
    "usage": { "prompt_tokens": tokens - 2, "completion_tokens": 2, "total_tokens": tokens },
  });
  Reply::json(200, &body.to_string())
}

/// `swdl ARGS` in `dir`, pointed at `server` with an API key.
fn swdl(dir: &std::path::Path, server: &Server, args: &[&str]) -> Output {
  Command::new(env!("CARGO_BIN_EXE_swdl"))
    .args(args)
    .current_dir(dir)
    .env("NO_COLOR", "1")
    .env("SWDL_LLM_URL", format!("{}/v1", server.url))
    .env("SWDL_LLM_MODEL", "test-model")
    .env("SWDL_LLM_API_KEY", KEY)
    .env("SWDL_STORE", dir.join("store"))
    .stdin(Stdio::null())
    .output()
    .expect("swdl runs")
}

fn text(bytes: &[u8]) -> String {
  String::from_utf8_lossy(bytes).into_owned()
}

/// The request bodies the server received, as JSON.
fn requests(server: &Server) -> Vec<serde_json::Value> {
  server
    .seen()
    .iter()
    .map(|s| serde_json::from_str(&s.body).unwrap_or_default())
    .collect()
}

const VALID: &str = "Here is the workflow:\n```yaml\nname: review\nstages:\n  - id: style\n    uses: code-style\n    with: { module: src }\n  - id: report\n    uses: echo\n    with: { findings: \"$<< stages.style.outputs.findings >>\" }\n    depends_on: [style]\n```\n";

#[test]
fn decompose_writes_a_valid_workflow_and_explains_its_plan() {
  let server = Server::start(vec![completion(VALID, 120)]);
  let dir = TempDir::new();
  let skills = root().join("skills");
  let out = swdl(
    dir.path(),
    &server,
    &[
      "decompose",
      "review the code style of src and report",
      "--skills",
      skills.to_str().unwrap_or_default(),
      "-o",
      "wf.yaml",
    ],
  );
  let stderr = text(&out.stderr);
  assert_eq!(out.status.code(), Some(0), "{stderr}");
  assert!(stderr.contains("the plan:"), "{stderr}");
  assert!(stderr.contains("report (after style)"), "{stderr}");
  let written = std::fs::read_to_string(dir.path().join("wf.yaml")).expect("written");
  assert!(written.starts_with("name: review"), "{written}");
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
  assert!(
    system.contains("- code-style"),
    "the registry is sent: {system}"
  );
  assert!(system.contains("- http:"), "built-ins too: {system}");
  assert!(!stderr.contains(KEY));
}

#[test]
fn decompose_repairs_an_invalid_answer_with_its_errors() {
  let broken = VALID.replace("depends_on: [style]", "depends_on: [styel]");
  let server = Server::start(vec![completion(&broken, 50), completion(VALID, 60)]);
  let dir = TempDir::new();
  let skills = root().join("skills");
  let out = swdl(
    dir.path(),
    &server,
    &[
      "decompose",
      "review",
      "--skills",
      skills.to_str().unwrap_or_default(),
    ],
  );
  let stderr = text(&out.stderr);
  assert_eq!(out.status.code(), Some(0), "{stderr}");
  assert!(
    text(&out.stdout).starts_with("name: review"),
    "the workflow goes to stdout"
  );
  assert!(stderr.contains("after 1 repair"), "{stderr}");
  let requests = requests(&server);
  assert_eq!(requests.len(), 2);
  let repair = requests[1]["messages"]
    .as_array()
    .and_then(|m| m.last())
    .and_then(|m| m["content"].as_str())
    .unwrap_or_default()
    .to_string();
  assert!(repair.contains("unknown stage `styel`"), "{repair}");
  assert!(repair.contains("did you mean `style`"), "{repair}");
}

#[test]
fn decompose_gives_up_after_its_repairs_and_on_bad_replies() {
  let never = "```yaml\nname: x\nstages:\n  - id: a\n    uses: no-such-skill\n```";
  let server = Server::start(vec![completion(never, 10)]);
  let dir = TempDir::new();
  let out = swdl(
    dir.path(),
    &server,
    &["decompose", "anything", "--repairs", "1", "-o", "wf.yaml"],
  );
  let stderr = text(&out.stderr);
  assert_eq!(out.status.code(), Some(1), "{stderr}");
  assert!(
    stderr.contains("no valid workflow after 1 repair"),
    "{stderr}"
  );
  assert!(
    stderr.contains("uses skill `no-such-skill`, which does not exist"),
    "{stderr}"
  );
  assert_eq!(server.seen().len(), 2);
  assert!(
    !dir.path().join("wf.yaml").exists(),
    "nothing invalid is written"
  );

  let server = Server::start(vec![Reply::json(200, "<html>not json</html>")]);
  let out = swdl(dir.path(), &server, &["decompose", "anything"]);
  assert_eq!(out.status.code(), Some(1));
  assert!(
    text(&out.stderr).contains("reply is not JSON"),
    "{}",
    text(&out.stderr)
  );

  // A server that repeats the key back: it never reaches the output.
  let server = Server::start(vec![Reply::json(
    401,
    &format!(r#"{{"error": "bad key {KEY}"}}"#),
  )]);
  let out = swdl(dir.path(), &server, &["decompose", "anything"]);
  let stderr = text(&out.stderr);
  assert_eq!(out.status.code(), Some(1));
  assert!(stderr.contains("answered 401"), "{stderr}");
  assert!(!stderr.contains(KEY), "{stderr}");

  // Without a server configured: a clear usage error.
  let out = Command::new(env!("CARGO_BIN_EXE_swdl"))
    .args(["decompose", "anything"])
    .env_remove("SWDL_LLM_URL")
    .stdin(Stdio::null())
    .output()
    .expect("runs");
  assert_eq!(out.status.code(), Some(2));
  assert!(text(&out.stderr).contains("SWDL_LLM_URL"));
}

#[test]
fn the_llm_skill_records_usage_and_stops_at_the_token_budget() {
  let server = Server::start(vec![completion(r#"{"verdict": "ok"}"#, 10)]);
  let dir = TempDir::new();
  dir.write(
    "wf.yaml",
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
  );
  let out = swdl(
    dir.path(),
    &server,
    &[
      "run",
      "wf.yaml",
      "--progress",
      "plain",
      "--events",
      "events.jsonl",
      "--output",
      "json",
    ],
  );
  let stderr = text(&out.stderr);
  assert_eq!(out.status.code(), Some(1), "{stderr}");
  let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("record");
  let one = &record["stages"]["one"]["outputs"];
  assert_eq!(one["json"]["verdict"], "ok");
  assert_eq!(one["usage"]["total_tokens"], 10);
  assert_eq!(record["stages"]["two"]["status"], "completed");
  let error = record["stages"]["three"]["error"]
    .as_str()
    .unwrap_or_default();
  assert!(error.contains("token budget is spent: 20 of 15"), "{error}");
  assert!(
    stderr.contains("model tokens used by this run: 20 of a budget of 15"),
    "{stderr}"
  );
  let requests = requests(&server);
  assert_eq!(requests.len(), 2, "no call starts once the budget is spent");
  assert_eq!(requests[0]["response_format"]["type"], "json_object");
  assert_eq!(requests[0]["messages"][0]["role"], "system");
  assert_eq!(requests[1]["messages"][0]["content"], "ok");
  let events = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
  assert!(
    events.contains("llm: 10 tokens"),
    "usage is logged per stage"
  );
  for haystack in [&events, &stderr, &text(&out.stdout)] {
    assert!(!haystack.contains(KEY));
  }
  for entry in std::fs::read_dir(dir.path().join("store"))
    .expect("the run store")
    .flatten()
  {
    let bytes = std::fs::read(entry.path()).unwrap_or_default();
    assert!(
      !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
      "the key is in {}",
      entry.path().display()
    );
  }
}

#[test]
fn lua_skills_ask_the_model_with_swdl_llm_complete() {
  let server = Server::start(vec![completion("a haiku", 9)]);
  let dir = TempDir::new();
  std::fs::create_dir_all(dir.path().join("skills")).expect("skills");
  dir.write(
    "skills/poet.lua",
    "return { run = function(ctx, input)\n  local a = swdl.llm.complete(input.topic, { system = 'you write haiku', max_tokens = 40 })\n  return { poem = a.text, tokens = a.usage.total_tokens }\nend }\n",
  );
  dir.write(
    "wf.yaml",
    "name: p\nconfig:\n  permissions: { poet: [net] }\nstages:\n  - id: write\n    uses: poet\n    with: { topic: autumn }\n",
  );
  let out = swdl(
    dir.path(),
    &server,
    &["run", "wf.yaml", "--progress", "none", "--output", "json"],
  );
  assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
  let record: serde_json::Value = serde_json::from_slice(&out.stdout).expect("record");
  assert_eq!(record["stages"]["write"]["outputs"]["poem"], "a haiku");
  assert_eq!(record["stages"]["write"]["outputs"]["tokens"], 9);
  let request = &requests(&server)[0];
  assert_eq!(request["max_tokens"], 40);
  assert_eq!(request["messages"][1]["content"], "autumn");
}

#[test]
fn the_model_server_can_be_named_in_config_env() {
  let server = Server::start(vec![completion("fine", 5)]);
  let dir = TempDir::new();
  dir.write(
    "wf.yaml",
    &format!(
      "name: c\nconfig:\n  env: {{ SWDL_LLM_URL: \"{}/v1\", SWDL_LLM_MODEL: from-config }}\nstages:\n  - id: ask\n    uses: llm\n    with: {{ prompt: hi }}\n",
      server.url
    ),
  );
  let out = Command::new(env!("CARGO_BIN_EXE_swdl"))
    .args(["run", "wf.yaml", "--progress", "none", "--store", "none"])
    .current_dir(dir.path())
    .env_remove("SWDL_LLM_URL")
    .env_remove("SWDL_LLM_MODEL")
    .env_remove("SWDL_LLM_API_KEY")
    .stdin(Stdio::null())
    .output()
    .expect("swdl runs");
  assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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
  let dir = TempDir::new();
  dir.write(
    "wf.yaml",
    &format!(
      "name: k\nstages:\n  - id: mine\n    uses: llm\n    with: {{ prompt: a }}\n  - id: theirs\n    uses: llm\n    with: {{ prompt: b, url: \"{}/v1\" }}\n",
      other.url
    ),
  );
  let out = swdl(
    dir.path(),
    &trusted,
    &["run", "wf.yaml", "--progress", "none", "--store", "none"],
  );
  assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
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
