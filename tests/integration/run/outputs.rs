//! Outputs, contracts and data flow between stages.
use super::*;

#[test]
fn contract_violation_fails_with_reason_contract_naming_the_field() {
  let out = run_wf(
    r#"
name: contract
stages:
  - id: produce
    uses: echo
    with: { count: "three" }
    outputs: { count: integer }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let failed = out.named("stage_failed", "produce");
  assert_eq!(failed.len(), 1, "{}", out.dump());
  assert_eq!(failed[0]["reason"], "contract");
  assert_eq!(
    failed[0]["error"], "output contract broken: output `count` must be integer, got string",
    "{}",
    failed[0]
  );
  assert!(out.named("stage_completed", "produce").is_empty());
  assert_eq!(out.final_status("produce"), "failed");
}

#[test]
fn missing_required_output_breaks_the_contract() {
  let out = run_wf(
    r#"
name: contract2
stages:
  - id: produce
    uses: echo
    with: { other: 1 }
    outputs: { report: { type: string, required: true } }
"#,
  )
  .stdout("")
  .stderr("")
  .status(1)
  .run();
  let failed = out.named("stage_failed", "produce");
  assert_eq!(failed[0]["reason"], "contract", "{}", out.dump());
  assert_eq!(
    failed[0]["error"],
    "output contract broken: required output `report` (string) is missing"
  );
}

#[test]
fn workflow_outputs_are_in_run_completed() {
  let out = run_wf(
    r#"
name: outs
stages:
  - id: a
    uses: echo
    with: { n: 41, list: [1, 2] }
  - id: b
    depends_on: a
    uses: echo
    with: { text: "n is $<< stages.a.outputs.n >>" }
outputs:
  n: "$<< stages.a.outputs.n >>"
  list: "$<< stages.a.outputs.list >>"
  text: "$<< stages.b.outputs.text >>"
  status: "$<< stages.b.status >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  assert_eq!(
    out.completed()["outputs"],
    json!({"n": 41, "list": [1, 2], "text": "n is 41", "status": "completed"})
  );
  assert!(out.completed()["duration_ms"].is_u64());
}

#[test]
fn output_json_prints_only_the_run_record_on_stdout() {
  // Plain progress goes to stderr; stdout must stay pure JSON. `greet` and `bad` run at the
  // same time, so the order of their progress lines varies.
  let out = Test::new()
    .workflow(
      r#"
      name: record
      parameters:
        who: { type: string, default: world }
      stages:
        - id: greet
          uses: shell
          with: { run: "echo hello $<< parameters.who >>" }
        - id: maybe
          if: "$<< false >>"
          uses: echo
        - id: bad
          uses: fail
          on_failure: ignore
      outputs:
        greeting: "$<< stages.greet.outputs.stdout >>"
      "#,
    )
    .args(["run", "wf.yaml", "--progress", "plain", "--output", "json"])
    .stdout(
      r#"
      {
        "run": "[..]",
        "workflow": "record",
        "status": "completed",
        "started_at": "[..]",
        "finished_at": "[..]",
        "duration_ms": [..],
        "params": {
          "who": "world"
        },
        "outputs": {
          "greeting": "hello world"
        },
        "tokens": 0,
        "stages": {
          "greet": {
            "status": "completed",
            "attempts": 1,
            "uses": "shell",
            "inputs": {
              "run": "echo hello world"
            },
            "outputs": {
              "stdout": "hello world",
              "stderr": "",
              "exit_code": 0
            },
            "started_at": "[..]",
            "finished_at": "[..]",
            "duration_ms": [..],
            "logs": [
              "hello world"
            ]
          },
          "maybe": {
            "status": "skipped",
            "attempts": 0,
            "reason": "condition",
            "finished_at": "[..]"
          },
          "bad": {
            "status": "failed",
            "attempts": 1,
            "uses": "fail",
            "inputs": {},
            "error": "fail skill failed as asked",
            "reason": "error",
            "started_at": "[..]",
            "finished_at": "[..]",
            "duration_ms": [..]
          }
        }
      }
      "#,
    )
    .stderr(
      r#"
      [..] run record started (3 stages, max_parallel 3)
      [..] stage maybe skipped (condition)
      ...
      [..] run completed in [..]
      completed 1/3 stages, 1 failed, 1 skipped in [..]
      outputs:
        greeting: hello world
      "#,
    )
    .status(0)
    .run();
  let record = out.json();
  assert_eq!(record["status"], "completed");
  assert_eq!(record["outputs"], json!({"greeting": "hello world"}));
  assert_eq!(record["workflow"], "record");
  for line in [
    "[..] stage greet started (attempt 1, uses shell)",
    "[..] stage greet: hello world",
    "[..] stage greet completed in [..]",
    "[..] stage bad started (attempt 1, uses fail)",
    "[..] stage bad failed: fail skill failed as asked",
  ] {
    // The two stages interleave, so each line is looked for on its own.
    assert!(
      out.stderr.lines().any(|l| line_matches(line, l)),
      "no `{line}` in\n{}",
      out.stderr
    );
  }
}

#[test]
fn events_to_stdout_are_json_lines_only() {
  // The shell's stdout and stderr lines come through two pipes, so their order varies.
  let run = Test::new()
    .workflow(
      r#"
      name: stdout-events
      stages:
        - id: a
          uses: shell
          with: { run: "echo out; echo err >&2" }
      "#,
    )
    .args(["run", "wf.yaml", "--progress", "plain", "--events", "-"])
    .stderr(
      r#"
      [..] run stdout-events started (1 stage, max_parallel 3)
      [..] stage a started (attempt 1, uses shell)
      ...
      [..] stage a completed in [..]
      [..] run completed in [..]
      completed 1/1 stages in [..]
      "#,
    )
    .status(0)
    .run();
  let events: Vec<Value> = run
    .stdout
    .lines()
    .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
    .collect();
  assert_eq!(
    events.first().map(|e| &e["event"]),
    Some(&json!("run_started"))
  );
  assert_eq!(
    events.last().map(|e| &e["event"]),
    Some(&json!("run_completed"))
  );
  assert_eq!(events.len(), 6, "{}", run.stdout);
}

#[test]
fn shell_outputs_flow_into_a_later_stage() {
  let out = run_wf(
    r#"
name: flow
stages:
  - id: produce
    uses: shell
    with:
      run: |
        echo "version=1.2.3" >> "$SWDL_OUTPUT"
        printf 'notes<<EOF\nline one\nline two\nEOF\n' >> "$SWDL_OUTPUT"
  - id: consume
    depends_on: produce
    uses: echo
    with:
      tag: "v$<< stages.produce.outputs.version >>"
      notes: "$<< stages.produce.outputs.notes >>"
      code: "$<< stages.produce.outputs.exit_code >>"
"#,
  )
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let inputs = &out.named("stage_started", "consume")[0]["inputs"];
  assert_eq!(inputs["tag"], "v1.2.3", "{}", out.dump());
  assert_eq!(inputs["notes"], "line one\nline two");
  assert_eq!(inputs["code"], 0);
}

#[test]
fn params_reach_stages() {
  let out = run_wf(
    r#"
name: params
parameters:
  name: { type: string, required: true }
  count: { type: integer, default: 1 }
  tags: { type: array, default: [] }
  strict: { type: boolean, default: false }
stages:
  - id: show
    uses: echo
    with:
      name: "$<< parameters.name >>"
      count: "$<< parameters.count >>"
      tags: "$<< parameters.tags >>"
      strict: "$<< parameters.strict >>"
  - id: env
    uses: shell
    with:
      run: 'echo "hi $WHO"'
      env: { WHO: "$<< parameters.name >>" }
"#,
  )
  .file("params.json", r#"{"count": 2, "name": "from-file"}"#)
  .args([
    "--params",
    "params.json",
    "--param",
    "name=cli wins",
    "--param",
    r#"tags=["a","b"]"#,
    "--param",
    "strict=true",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let inputs = &out.named("stage_started", "show")[0]["inputs"];
  assert_eq!(
    inputs,
    &json!({"name": "cli wins", "count": 2, "tags": ["a", "b"], "strict": true}),
    "{}",
    out.dump()
  );
  assert_eq!(
    out.events[0]["params"],
    json!({"name": "cli wins", "count": 2, "tags": ["a", "b"], "strict": true})
  );
  let logs = out.named("log", "env");
  assert!(
    logs.iter().any(|l| l["message"] == "hi cli wins"),
    "{}",
    out.dump()
  );
}

#[test]
fn secrets_never_appear_in_events_progress_or_output() {
  const SECRET: &str = "hunter2-s3cr3t-value";
  const ENV_SECRET: &str = "env-s3cr3t-777";
  let yaml = r#"
name: secrets
parameters:
  token: { type: string, secret: true }
config:
  secrets: [SWDL_TEST_DEPLOY_KEY]
stages:
  - id: use
    uses: echo
    with: { token: "$<< parameters.token >>", header: "Bearer $<< parameters.token >>" }
  - id: ok
    gate: { message: "Deploy with $<< parameters.token >>?" }
  - id: shell
    depends_on: ok
    uses: shell
    with:
      run: 'echo "token=$TOKEN"; echo "leak=$TOKEN" >> "$SWDL_OUTPUT"; echo "$TOKEN $SWDL_TEST_DEPLOY_KEY" >&2'
      env: { TOKEN: "$<< parameters.token >>" }
  - id: fails
    depends_on: [use, shell]
    uses: fail
    with: { message: "bad token $<< parameters.token >>" }
    on_failure: ignore
outputs:
  token: "$<< parameters.token >>"
  leak: "$<< stages.shell.outputs.leak >>"
"#;
  let param = format!("token={SECRET}");
  // Stages run at the same time, so the order of the progress lines varies: the streams are
  // searched for the secrets rather than compared.
  let out = Test::new()
    .workflow(yaml)
    .args([
      "run",
      "wf.yaml",
      "--progress",
      "plain",
      "--events",
      "events.jsonl",
    ])
    .args(["--param", &param, "--approve", "ok", "--output", "json"])
    .env("SWDL_TEST_DEPLOY_KEY", ENV_SECRET)
    .status(0)
    .run();
  let events = std::fs::read_to_string(out.path().join("events.jsonl")).expect("events");
  for secret in [SECRET, ENV_SECRET] {
    assert!(!events.contains(secret), "secret in events:\n{events}");
    assert!(
      !out.stdout.contains(secret),
      "secret in --output json:\n{}",
      out.stdout
    );
    assert!(
      !out.stderr.contains(secret),
      "secret in the progress display:\n{}",
      out.stderr
    );
  }
  assert!(events.contains("***"), "nothing was masked:\n{events}");
  assert_eq!(out.json()["outputs"]["token"], "***");
  // The stage itself saw the real values; only what is reported is masked.
  let logs = out.named("log", "shell");
  assert!(
    logs.iter().any(|l| l["message"] == "token=***"),
    "{}",
    out.dump()
  );
  assert!(
    logs.iter().any(|l| l["message"] == "*** ***"),
    "{}",
    out.dump()
  );
  assert_eq!(
    out.named("gate_waiting", "ok")[0]["message"],
    "Deploy with ***?"
  );
}

#[test]
fn shell_sees_config_env_and_its_swdl_variables() {
  let test = Test::new();
  let base = test.path().to_path_buf();
  let out = test
    .workflow(
    r#"
name: shell-env
parameters:
  who: { type: string, default: bob }
config:
  env: { GREETING: "hello $<< parameters.who >>" }
stages:
  - id: s
    uses: shell
    with:
      run: 'echo "$GREETING|$SWDL_STAGE|$SWDL_ATTEMPT|$SWDL_IDEMPOTENCY_KEY|$SWDL_RUN_ID|$(pwd -P)"; test "$SWDL_ATTEMPT" -ge 2'
    retry: { max_attempts: 2, delay: 10ms }
  - id: e
    uses: echo
    with: { greeting: "$<< env.GREETING >>" }
"#,
    )
    .args(RUN)
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let run_id = out.events[0]["run"].as_str().expect("run id");
  let lines: Vec<&Value> = out
    .named("log", "s")
    .iter()
    .map(|l| &l["message"])
    .collect();
  let cwd = base.canonicalize().expect("canonical dir");
  let expect = |attempt: u32| {
    json!(format!(
      "hello bob|s|{attempt}|{run_id}/s|{run_id}|{}",
      cwd.display()
    ))
  };
  // The idempotency key stays the same across retries; the attempt number does not.
  assert_eq!(lines, [&expect(1), &expect(2)], "{}", out.dump());
  assert_eq!(
    out.named("stage_started", "e")[0]["inputs"]["greeting"],
    "hello bob"
  );
}

#[test]
fn a_stage_env_adds_to_config_env_for_that_stage_only() {
  let out = run_wf(
    r#"
name: stage-env
parameters:
  region: { type: string, default: eu }
config:
  env: { LEVEL: info, REGION: none }
stages:
  - id: build
    uses: echo
    with: { tag: v1 }
  - id: deploy
    depends_on: build
    uses: shell
    env:
      REGION: "$<< parameters.region >>"
      TARGET: "$<< env.REGION >>-$<< stages.build.outputs.tag >>"
    if: env.REGION == 'eu'
    with: { run: 'echo "$LEVEL $REGION $TARGET"' }
  - id: after
    depends_on: deploy
    uses: echo
    with: { region: "$<< env.REGION >>", target: "$<< env.TARGET >>" }
  - id: ask
    depends_on: build
    env: { WHAT: "$<< stages.build.outputs.tag >>" }
    gate: { message: "ship $<< env.WHAT >> to $<< env.REGION >>?" }
"#,
  )
  .args(["--approve", "ask"])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let logged: Vec<&Value> = out
    .named("log", "deploy")
    .iter()
    .map(|l| &l["message"])
    .collect();
  assert_eq!(logged, [&json!("info eu eu-v1")], "{}", out.dump());
  // Another stage sees `config.env` alone.
  assert_eq!(
    out.one("stage_started", "after")["inputs"],
    json!({ "region": "none", "target": null })
  );
  assert_eq!(
    out.one("gate_waiting", "ask")["message"],
    "ship v1 to none?"
  );
}

#[test]
fn a_stage_env_that_fails_fails_its_stage_with_the_place() {
  let out = run_wf(
    r#"
name: stage-env-fails
stages:
  - id: s
    uses: echo
    env: { N: "$<< fromJSON('nope') >>" }
  - id: t
    depends_on: s
    if: always()
    uses: echo
"#,
  )
  .stdout("")
  .stderr(
    "
    wf.yaml:5:20: error: stage `s`: env.N: fromJSON: invalid JSON: [..]
      |
    5 |     env: { N: \"$<< fromJSON('nope') >>\" }
      |                    ^^^^^^^^^^^^^^^^
    ",
  )
  .status(1)
  .run();
  let failed = out.one("stage_failed", "s");
  assert_eq!(failed["reason"], "inputs");
  assert!(
    failed["error"]
      .as_str()
      .is_some_and(|e| e.starts_with("env.N: `$<< fromJSON('nope') >>`: ")),
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("t"), "completed");
}

#[test]
fn the_summary_shows_the_outputs_masked_and_cut() {
  Test::new()
    .workflow(
      r#"
      name: said
      parameters:
        token: { type: string, secret: true }
      stages:
        - id: a
          uses: echo
          with: { t: "$<< parameters.token >>", n: 3, lines: "one\ntwo\nthree" }
      outputs:
        auth: "token=$<< stages.a.outputs.t >>"
        count: "$<< stages.a.outputs.n >>"
        text: "$<< stages.a.outputs.lines >>"
        long: "$<< format('{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}', '0123456789') >>"
      "#,
    )
    .args([
      "run",
      "wf.yaml",
      "--param",
      "token=Sup3rSecretValue",
      "--progress",
      "plain",
      "--store",
      "none",
    ])
    .stdout("")
    .stderr(&format!(
      "
      ...
      completed 1/1 stages in [..]
      outputs:
        auth: token=***
        count: 3
        text: one … (cut: 3 lines, 13 characters; `--output json` prints it whole)
        long: {} … (cut: 210 characters; `--output json` prints it whole)
      ",
      "0123456789".repeat(20)
    ))
    .status(0)
    .run();
}

#[test]
fn arithmetic_computes_inputs_conditions_and_outputs_and_a_zero_divisor_fails_the_stage() {
  let out = run_wf(
    r#"
name: sums
parameters:
  n: { type: number, default: 3 }
  zero: { type: number, default: 0 }
stages:
  - id: count
    uses: echo
    with: { items: [a, b, c, d] }
  - id: maths
    depends_on: count
    if: "$<< length(stages.count.outputs.items) - 1 == parameters.n >>"
    uses: echo
    with:
      last: "$<< stages.count.outputs.items[length(stages.count.outputs.items) - 1] >>"
      mean: "$<< (1 + 2 + 3 + 4) / 4 >>"
      rem: "$<< -7 % parameters.n >>"
      label: "$<< 'v' + format('{0}', parameters.n * 2) >>"
      text: "next is $<< parameters.n + 1 >>"
  - id: skipped
    if: "$<< parameters.n * 2 < 6 >>"
    uses: echo
  - id: broken
    uses: echo
    on_failure: continue
    with: { ratio: "$<< parameters.n / parameters.zero >>" }
outputs:
  double: "$<< stages.maths.outputs.mean * 2 >>"
"#,
  )
  .stdout("")
  .status(1)
  .run();
  assert_eq!(
    out.outputs("maths"),
    &json!({"last": "d", "mean": 2.5, "rem": -1, "label": "v6", "text": "next is 4"}),
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("skipped"), "skipped");
  let failed = out.one("stage_failed", "broken");
  assert_eq!(failed["reason"], "inputs");
  assert_eq!(
    failed["error"],
    "inputs could not be evaluated: `$<< parameters.n / parameters.zero >>`: division by zero \
     in `parameters.n / parameters.zero`",
    "{}",
    out.dump()
  );
  assert_eq!(out.completed()["outputs"], json!({"double": 5}));
}
