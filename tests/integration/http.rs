//! The `http` skill and `swdl.http` against a scripted server on 127.0.0.1.
use crate::{
  server::{Reply, Server},
  test::{Test, assert_matches},
};
use std::time::{Duration, Instant};

/// The arguments that run `wf.yaml` with `--output json` and no store.
const RUN: [&str; 8] = [
  "run",
  "wf.yaml",
  "--progress",
  "none",
  "--output",
  "json",
  "--store",
  "none",
];

/// Runs `yaml` (written as `wf.yaml`) in `test`'s directory with [`RUN`], expecting `status`
/// and nothing on stderr; returns the run record.
#[track_caller]
fn run(test: Test, yaml: &str, status: i32) -> serde_json::Value {
  test
    .workflow(yaml)
    .args(RUN)
    .stderr("")
    .status(status)
    .run()
    .json()
}

/// The error of the stage `call` in a run record.
fn error(record: &serde_json::Value) -> &str {
  record["stages"]["call"]["error"]
    .as_str()
    .unwrap_or_default()
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
  let record = run(
    Test::new(),
    &stage(
      &format!("{}/v1/things?q=1", server.url),
      "method: POST, json: { name: widget, n: 3 }, headers: { x-api: k1 }",
    ),
    0,
  );
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
  let record = run(Test::new(), &stage(&server.url, "method: GET"), 0);
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
  let started = Instant::now();
  let record = run(Test::new(), &stage(&server.url, "retries: 2"), 0);
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
  let record = run(Test::new(), &stage(&server.url, "retries: 1"), 1);
  assert_matches(
    &format!(
      "http: GET {} answered 503: {{\"error\": \"down\"}}",
      server.url
    ),
    error(&record),
  );
  assert_eq!(server.seen().len(), 2, "one try and one retry");
  let record = run(
    Test::new(),
    &stage(&server.url, "retries: 0, fail_on_error: false"),
    0,
  );
  assert_eq!(record["stages"]["call"]["outputs"]["status"], 503);
}

#[test]
fn a_slow_server_hits_the_timeout() {
  let server = Server::start(vec![Reply::json(200, "{}").delayed(Duration::from_secs(3))]);
  let started = Instant::now();
  let record = run(
    Test::new(),
    &stage(&server.url, "timeout: 200ms, retries: 0"),
    1,
  );
  assert!(started.elapsed() < Duration::from_secs(3));
  assert_matches(
    &format!(
      "http: {}: no response within 200ms (tried once)",
      server.url
    ),
    error(&record),
  );
}

#[test]
fn a_huge_body_is_refused_past_max_bytes() {
  let big = "x".repeat(200_000);
  let server = Server::start(vec![Reply::json(200, &big)]);
  let record = run(Test::new(), &stage(&server.url, "max_bytes: 1000"), 1);
  assert_matches(
    &format!(
      "http: {}: the response is larger than 1000 bytes (raise `max_bytes` to accept it)",
      server.url
    ),
    error(&record),
  );
  let record = run(Test::new(), &stage(&server.url, "method: GET"), 0);
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
  let test = Test::new().skill(
    "fetch.lua",
    r"
    return {
      run = function(ctx, input)
        local r = swdl.http.post(input.url, { who = 'lua' }, { headers = { ['x-from'] = 'skill' } })
        return { status = r.status, greeting = r.json.greeting }
      end,
    }
    ",
  );
  let yaml = |permissions: &str| {
    format!(
      "name: l\nconfig:\n  permissions: {{ {permissions} }}\nstages:\n  - id: call\n    uses: fetch\n    with: {{ url: \"{}/hello\" }}\n",
      server.url
    )
  };
  let record = run(test.clone(), &yaml("fetch: [net]"), 0);
  assert_eq!(record["stages"]["call"]["outputs"]["greeting"], "hi");
  let seen = server.seen();
  assert_eq!(seen[0].header("x-from"), Some("skill"));
  assert_eq!(seen[0].body, r#"{"who":"lua"}"#);
  let record = run(test, &yaml(""), 1);
  assert_matches(
    r"
    skills/fetch.lua:3: swdl.http needs the `net` permission: grant it in config.permissions
    stack traceback:
    ...
    ",
    error(&record),
  );
}

#[test]
fn a_post_is_not_repeated_after_a_server_error_but_after_a_429() {
  let server = Server::start(vec![Reply::json(500, "{}"), Reply::json(200, "{}")]);
  // The 500 ends it: the server may have acted on the POST.
  run(
    Test::new(),
    &stage(&server.url, "method: POST, json: { n: 1 }, retries: 3"),
    1,
  );
  assert_eq!(server.seen().len(), 1);
  let server = Server::start(vec![
    Reply::json(429, "{}").header("retry-after", "0"),
    Reply::json(200, "{}"),
  ]);
  let record = run(
    Test::new(),
    &stage(&server.url, "method: POST, json: { n: 1 }, retries: 3"),
    0,
  );
  assert_eq!(record["stages"]["call"]["outputs"]["tries"], 2);
}
