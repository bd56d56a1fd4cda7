//! What an attacker or a careless user tries: secrets of every type and in encoded forms,
//! secrets too short to mask, colliding run ids, inputs built to exhaust the stack or memory,
//! floods of output and logs, damaged stores.
use crate::store::{Project, run_id_in};
use std::process::Child;

/// Every file of the store, the events file and the given streams, as (name, bytes).
fn haystacks(p: &Project, streams: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
  let mut all: Vec<(String, Vec<u8>)> = streams
    .iter()
    .map(|(name, bytes)| ((*name).to_string(), bytes.to_vec()))
    .collect();
  for entry in std::fs::read_dir(p.store()).expect("store dir").flatten() {
    all.push((
      entry.path().display().to_string(),
      std::fs::read(entry.path()).unwrap_or_default(),
    ));
  }
  all
}

#[track_caller]
fn assert_absent(haystacks: &[(String, Vec<u8>)], needles: &[&str]) {
  for (name, bytes) in haystacks {
    for needle in needles {
      assert!(
        !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "`{needle}` found in {name}:\n{}",
        String::from_utf8_lossy(bytes)
      );
    }
  }
}

#[test]
fn secrets_that_are_numbers_or_arrays_are_masked_everywhere() {
  let p = Project::new();
  p.write(
    "s.yaml",
    r#"
name: typed-secrets
parameters:
  num: { type: integer, secret: true }
  arr: { type: array, secret: true }
stages:
  - id: e
    uses: echo
    with:
      n: $<< parameters.num >>
      a: $<< parameters.arr >>
      text: "n=$<< parameters.num >> first=$<< parameters.arr[0] >>"
outputs:
  n: $<< stages.e.outputs.n >>
  a: $<< stages.e.outputs.a >>
"#,
  );
  let events = p.path().join("events.jsonl");
  let out = p.swdl(&[
    "run",
    "s.yaml",
    "--param",
    "num=987654321",
    "--param",
    r#"arr=["ArrSecretElem"]"#,
    "--progress",
    "plain",
    "--events",
    events.to_str().unwrap_or_default(),
    "--output",
    "json",
  ]);
  out.status(0);
  let json = out.json();
  assert_eq!(json["outputs"]["n"], "***", "{json}");
  assert_eq!(json["outputs"]["a"], serde_json::json!(["***"]), "{json}");
  assert_eq!(json["params"]["num"], "***", "{json}");
  assert_eq!(json["params"]["arr"], "***", "{json}");
  let id = json["run"].as_str().unwrap_or_default().to_string();
  let detail = p.swdl(&["runs", &id, "--format", "json"]);
  detail.status(0);
  let text = p.swdl(&["runs", &id]);
  let all = haystacks(
    &p,
    &[
      ("stdout", out.stdout.as_bytes()),
      ("stderr", out.stderr.as_bytes()),
      ("events", &std::fs::read(&events).unwrap_or_default()),
      ("runs --format json", detail.stdout.as_bytes()),
      ("runs", text.stdout.as_bytes()),
    ],
  );
  assert_absent(&all, &["987654321", "ArrSecretElem"]);
  assert!(
    detail.stdout.contains("n=*** first=***"),
    "{}",
    detail.stdout
  );
}

#[test]
fn a_secret_equal_to_text_of_the_file_still_lets_the_run_resume() {
  let p = Project::new();
  // `devtoken` is the default and also appears in the text: masking the stored file by
  // substitution made `*** ` a YAML alias.
  p.write(
    "g.yaml",
    "name: devtoken-flow\nparameters:\n  token: { type: string, secret: true, default: devtoken }\nstages:\n  - id: gate\n    gate: { message: check devtoken }\n  - id: after\n    uses: echo\n    with: { t: \"$<< parameters.token >>\" }\n    depends_on: [gate]\n",
  );
  let out = p.swdl(&["run", "g.yaml", "--progress", "none"]);
  out.status(4);
  let id = run_id_in(&out.stderr);
  p.swdl(&["runs", &id]).status(0);
  p.swdl(&["approve", &id, "gate"]).status(0);
  let resumed = p.swdl(&[
    "resume",
    &id,
    "--param",
    "token=devtoken",
    "--progress",
    "none",
    "--output",
    "json",
  ]);
  resumed.status(0);
  assert_eq!(resumed.json()["status"], "completed");
  // The store is its owner's alone.
  #[cfg(unix)]
  {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
      std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
    };
    assert_eq!(mode(&p.store()), 0o700);
    assert_eq!(mode(&p.store().join("swdl.db")), 0o600);
    assert_eq!(mode(&p.store().join("swdl.db-wal")), 0o600);
  }
  // A second run's cancel works on the same file too.
  let again = p.swdl(&["run", "g.yaml", "--progress", "none"]);
  again.status(4);
  let second = run_id_in(&again.stderr);
  p.swdl(&["cancel", &second]).status(0);
}

#[test]
fn secrets_too_short_to_mask_are_refused_without_being_echoed() {
  let p = Project::new();
  p.write(
    "short.yaml",
    "name: short\nparameters:\n  pin: { type: integer, secret: true }\n  list: { type: array, secret: true, default: [] }\nstages:\n  - id: e\n    uses: echo\n    with: { url: \"http://127.0.0.1:8080/x\", pin: \"$<< parameters.pin >>\" }\n",
  );
  let out = p.swdl(&[
    "run",
    "short.yaml",
    "--param",
    "pin=1",
    "--progress",
    "none",
  ]);
  out.status(2);
  assert!(
    out.stderr.contains(
      "the value of secret parameter `pin` is shorter than 4 characters: a secret that short \
       cannot be masked without hiding ordinary text"
    ),
    "{}",
    out.stderr
  );
  let out = p.swdl(&[
    "run",
    "short.yaml",
    "--param",
    "pin=12345",
    "--param",
    r#"list=["ok-long", "ab"]"#,
    "--progress",
    "none",
  ]);
  out.status(2);
  assert!(
    out.stderr.contains("secret parameter `list`"),
    "{}",
    out.stderr
  );
  // Long enough: masked where it stands, the address is left alone.
  let out = p.swdl(&[
    "run",
    "short.yaml",
    "--param",
    "pin=12345",
    "--progress",
    "none",
    "--output",
    "json",
  ]);
  out.status(0);
  let json = out.json();
  let stages = json["stages"].to_string();
  assert!(stages.contains("http://127.0.0.1:8080/x"), "{stages}");
  assert!(!stages.contains("12345"), "{stages}");
  // An environment secret too short is refused too, by name.
  p.write(
    "env.yaml",
    "name: env\nconfig:\n  secrets: [TINY]\nstages:\n  - { id: e, uses: echo }\n",
  );
  let out = p
    .command(&["run", "env.yaml", "--progress", "none"])
    .env("TINY", "ab")
    .output()
    .expect("swdl runs");
  assert_eq!(out.status.code(), Some(2));
  let stderr = String::from_utf8_lossy(&out.stderr);
  assert!(stderr.contains("environment variable `TINY`"), "{stderr}");
}

#[test]
fn encoded_forms_of_a_secret_are_masked() {
  let p = Project::new();
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/urlenc.lua",
    r#"return {
  run = function(ctx, input)
    local url = input.text:gsub("[^%w%-%._~]", function(c)
      return string.format("%%%02X", c:byte())
    end)
    return { url = url }
  end,
}
"#,
  );
  p.write(
    "enc.yaml",
    r#"
name: encodings
parameters:
  token: { type: string, secret: true }
config:
  skills_path: [skills]
  env: { T: "$<< parameters.token >>" }
stages:
  - id: shell
    uses: shell
    with:
      run: |
        printf '%s' "$T" | base64
        printf 'x%s' "$T" | base64
        printf '%s' "$T" | od -An -tx1 | tr -d ' \n'
        echo
  - id: json
    uses: echo
    with: { body: "{\"token\": $<< toJSON(parameters.token) >>}" }
  - id: url
    uses: urlenc
    with: { text: "$<< parameters.token >>" }
"#,
  );
  let token = "q\"w\\e/é-Secret";
  let events = p.path().join("events.jsonl");
  let out = p.swdl(&[
    "run",
    "enc.yaml",
    "--param",
    &format!("token={token}"),
    "--progress",
    "plain",
    "--events",
    events.to_str().unwrap_or_default(),
    "--output",
    "json",
  ]);
  out.status(0);
  let id = out.json()["run"].as_str().unwrap_or_default().to_string();
  let detail = p.swdl(&["runs", &id, "--format", "json"]);
  use base64::Engine as _;
  let b64 = base64::engine::general_purpose::STANDARD;
  let shifted = b64.encode(format!("x{token}"));
  let hex: String = token.bytes().map(|b| format!("{b:02x}")).collect();
  let json_escaped = r#"q\"w\\e/é-Secret"#;
  let url = "q%22w%5Ce%2F%C3%A9-Secret";
  let all = haystacks(
    &p,
    &[
      ("stdout", out.stdout.as_bytes()),
      ("stderr", out.stderr.as_bytes()),
      ("events", &std::fs::read(&events).unwrap_or_default()),
      ("runs", detail.stdout.as_bytes()),
    ],
  );
  assert_absent(
    &all,
    &[&b64.encode(token), &shifted[4..20], &hex, json_escaped, url],
  );
  // The forms were produced, and masked.
  let outputs = out.json()["stages"].to_string();
  assert!(outputs.contains(r#"{\"token\": \"***\"}"#), "{outputs}");
  assert!(
    out.json()["stages"]["url"]["outputs"]["url"] == "***",
    "{outputs}"
  );
}

#[test]
fn a_bad_value_for_a_secret_parameter_is_not_echoed() {
  let p = Project::new();
  p.write(
    "e.yaml",
    "name: e\nparameters:\n  token: { type: string, secret: true, enum: [Alpha1Secret, Beta2Secret] }\n  n: { type: integer, secret: true }\nstages:\n  - { id: e, uses: echo }\n",
  );
  let out = p.swdl(&[
    "run",
    "e.yaml",
    "--param",
    "token=Gamma9Secret",
    "--param",
    "n=notanumber1",
  ]);
  out.status(2);
  assert!(
    out.stderr.contains("parameter `token` must be one of"),
    "{}",
    out.stderr
  );
  assert!(out.stderr.contains("--param:1:7"), "{}", out.stderr);
  assert!(!out.stderr.contains("Gamma9Secret"), "{}", out.stderr);
  assert!(!out.stderr.contains("notanumber1"), "{}", out.stderr);
  p.write("p.yaml", "token: Alpha1Secret\nn: Delta4Secret\n");
  let out = p.swdl(&["run", "e.yaml", "--params", "p.yaml"]);
  out.status(2);
  assert!(out.stderr.contains("p.yaml:2:1"), "{}", out.stderr);
  assert!(!out.stderr.contains("Delta4Secret"), "{}", out.stderr);
}

#[test]
fn many_runs_started_at_once_get_distinct_ids() {
  let p = Project::new();
  p.write("q.yaml", "name: q\nstages:\n  - { id: e, uses: echo }\n");
  let children: Vec<Child> = (0..40).map(|_| p.spawn_run("q.yaml", &[])).collect();
  for child in children {
    let output = child.wait_with_output().expect("run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
  }
  let runs = p.runs();
  let mut ids: Vec<String> = runs
    .iter()
    .filter_map(|r| r["id"].as_str().map(str::to_string))
    .collect();
  assert_eq!(ids.len(), 40);
  // Date, time, 48 random bits.
  assert!(
    ids.iter().all(|id| id.len() == 8 + 1 + 6 + 1 + 12),
    "{ids:?}"
  );
  ids.sort();
  ids.dedup();
  assert_eq!(ids.len(), 40);
}
