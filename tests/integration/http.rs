//! The `http` skill and `swdl.http` against a scripted server on 127.0.0.1.
use crate::{
  common::TempDir,
  server::{Reply, Server},
};
use std::{
  process::{Command, Stdio},
  time::{Duration, Instant},
};

/// Runs `yaml` (written as `wf.yaml`) with `--output json`; returns (exit code, record, stderr).
fn run(dir: &TempDir, yaml: &str) -> (i32, serde_json::Value, String) {
  dir.write("wf.yaml", yaml);
  let output = Command::new(env!("CARGO_BIN_EXE_swdl"))
    .args([
      "run",
      "wf.yaml",
      "--progress",
      "none",
      "--output",
      "json",
      "--store",
      "none",
    ])
    .current_dir(dir.path())
    .env("NO_COLOR", "1")
    .stdin(Stdio::null())
    .output()
    .expect("swdl runs");
  let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
  let record = serde_json::from_slice(&output.stdout)
    .unwrap_or_else(|e| panic!("no JSON record ({e}); stderr:\n{stderr}"));
  (output.status.code().unwrap_or(-1), record, stderr)
}

fn stage(url: &str, with: &str) -> String {
  format!(
    "name: h\nstages:\n  - id: call\n    uses: http\n    retry: {{ max_attempts: 1 }}\n    with: {{ url: \"{url}\", {with} }}\n"
  )
}

#[test]
fn a_json_reply_becomes_outputs_and_a_json_body_is_sent() {
  let server = Server::start(vec![
    Reply::json(200, r#"{"ok": true, "items": [1, 2]}"#).header("x-trace", "abc"),
  ]);
  let dir = TempDir::new();
  let (code, record, stderr) = run(
    &dir,
    &stage(
      &format!("{}/v1/things?q=1", server.url),
      "method: POST, json: { name: widget, n: 3 }, headers: { x-api: k1 }",
    ),
  );
  assert_eq!(code, 0, "{stderr}");
  let outputs = &record["stages"]["call"]["outputs"];
  assert_eq!(outputs["status"], 200);
  assert_eq!(outputs["json"]["items"], serde_json::json!([1, 2]));
  assert_eq!(outputs["headers"]["x-trace"], "abc");
  assert_eq!(outputs["tries"], 1);
  let seen = server.seen();
  assert_eq!(seen.len(), 1);
  assert_eq!(seen[0].method, "POST");
  assert_eq!(seen[0].path, "/v1/things?q=1");
  assert_eq!(seen[0].header("x-api"), Some("k1"));
  assert_eq!(seen[0].header("content-type"), Some("application/json"));
  let sent: serde_json::Value = serde_json::from_str(&seen[0].body).expect("JSON body");
  assert_eq!(sent, serde_json::json!({"name": "widget", "n": 3}));
}

#[test]
fn malformed_json_keeps_the_text_and_json_is_null() {
  let server = Server::start(vec![Reply::json(200, "{not json")]);
  let dir = TempDir::new();
  let (code, record, stderr) = run(&dir, &stage(&server.url, "method: GET"));
  assert_eq!(code, 0, "{stderr}");
  let outputs = &record["stages"]["call"]["outputs"];
  assert_eq!(outputs["body"], "{not json");
  assert!(outputs["json"].is_null());
}

#[test]
fn a_429_is_retried_after_the_time_retry_after_asks() {
  let server = Server::start(vec![
    Reply::json(429, r#"{"error": "slow down"}"#).header("retry-after", "1"),
    Reply::json(200, r#"{"ok": true}"#),
  ]);
  let dir = TempDir::new();
  let started = Instant::now();
  let (code, record, stderr) = run(&dir, &stage(&server.url, "retries: 2"));
  assert_eq!(code, 0, "{stderr}");
  assert!(
    started.elapsed() >= Duration::from_millis(950),
    "Retry-After was not honoured"
  );
  assert_eq!(record["stages"]["call"]["outputs"]["tries"], 2);
  assert_eq!(server.seen().len(), 2);
}

#[test]
fn a_final_5xx_fails_the_stage_unless_told_otherwise() {
  let server = Server::start(vec![Reply::json(503, r#"{"error": "down"}"#)]);
  let dir = TempDir::new();
  let (code, record, _) = run(&dir, &stage(&server.url, "retries: 1"));
  assert_eq!(code, 1);
  let error = record["stages"]["call"]["error"]
    .as_str()
    .unwrap_or_default();
  assert!(error.contains("answered 503"), "{error}");
  assert_eq!(server.seen().len(), 2, "one try and one retry");
  let (code, record, stderr) = run(
    &dir,
    &stage(&server.url, "retries: 0, fail_on_error: false"),
  );
  assert_eq!(code, 0, "{stderr}");
  assert_eq!(record["stages"]["call"]["outputs"]["status"], 503);
}

#[test]
fn a_slow_server_hits_the_timeout() {
  let server = Server::start(vec![Reply::json(200, "{}").delayed(Duration::from_secs(3))]);
  let dir = TempDir::new();
  let started = Instant::now();
  let (code, record, _) = run(&dir, &stage(&server.url, "timeout: 200ms, retries: 0"));
  assert_eq!(code, 1);
  assert!(started.elapsed() < Duration::from_secs(3));
  let error = record["stages"]["call"]["error"]
    .as_str()
    .unwrap_or_default();
  assert!(error.contains("no response within 200ms"), "{error}");
}

#[test]
fn a_huge_body_is_refused_past_max_bytes() {
  let big = "x".repeat(200_000);
  let server = Server::start(vec![Reply::json(200, &big)]);
  let dir = TempDir::new();
  let (code, record, _) = run(&dir, &stage(&server.url, "max_bytes: 1000"));
  assert_eq!(code, 1);
  let error = record["stages"]["call"]["error"]
    .as_str()
    .unwrap_or_default();
  assert!(error.contains("larger than 1000 bytes"), "{error}");
  let (code, record, stderr) = run(&dir, &stage(&server.url, "method: GET"));
  assert_eq!(code, 0, "{stderr}");
  assert_eq!(
    record["stages"]["call"]["outputs"]["body"]
      .as_str()
      .map(str::len),
    Some(200_000)
  );
}

#[test]
fn lua_skills_call_swdl_http_with_the_net_permission_only() {
  let server = Server::start(vec![Reply::json(200, r#"{"greeting": "hi"}"#)]);
  let dir = TempDir::new();
  std::fs::create_dir_all(dir.path().join("skills")).expect("skills dir");
  dir.write(
    "skills/fetch.lua",
    "return {\n  run = function(ctx, input)\n    local r = swdl.http.post(input.url, { who = 'lua' }, { headers = { ['x-from'] = 'skill' } })\n    return { status = r.status, greeting = r.json.greeting }\n  end,\n}\n",
  );
  let yaml = |permissions: &str| {
    format!(
      "name: l\nconfig:\n  permissions: {{ {permissions} }}\nstages:\n  - id: call\n    uses: fetch\n    with: {{ url: \"{}/hello\" }}\n",
      server.url
    )
  };
  let (code, record, stderr) = run(&dir, &yaml("fetch: [net]"));
  assert_eq!(code, 0, "{stderr}");
  assert_eq!(record["stages"]["call"]["outputs"]["greeting"], "hi");
  let seen = server.seen();
  assert_eq!(seen[0].header("x-from"), Some("skill"));
  assert_eq!(seen[0].body, r#"{"who":"lua"}"#);
  let (code, record, _) = run(&dir, &yaml(""));
  assert_eq!(code, 1);
  let error = record["stages"]["call"]["error"]
    .as_str()
    .unwrap_or_default();
  assert!(error.contains("needs the `net` permission"), "{error}");
}

#[test]
fn a_post_is_not_repeated_after_a_server_error_but_after_a_429() {
  let server = Server::start(vec![Reply::json(500, "{}"), Reply::json(200, "{}")]);
  let dir = TempDir::new();
  let (code, _, _) = run(
    &dir,
    &stage(&server.url, "method: POST, json: { n: 1 }, retries: 3"),
  );
  assert_eq!(
    code, 1,
    "the 500 ends it: the server may have acted on the POST"
  );
  assert_eq!(server.seen().len(), 1);
  let server = Server::start(vec![
    Reply::json(429, "{}").header("retry-after", "0"),
    Reply::json(200, "{}"),
  ]);
  let (code, record, stderr) = run(
    &dir,
    &stage(&server.url, "method: POST, json: { n: 1 }, retries: 3"),
  );
  assert_eq!(code, 0, "{stderr}");
  assert_eq!(record["stages"]["call"]["outputs"]["tries"], 2);
}
