//! Secrets of every type and in encoded forms are masked everywhere, or refused when too short.
use super::*;

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
  let out = p
    .swdl(&[
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
    ])
    .status(0)
    .run();
  let json = out.json();
  assert_eq!(json["outputs"]["n"], "***", "{json}");
  assert_eq!(json["outputs"]["a"], serde_json::json!(["***"]), "{json}");
  assert_eq!(json["params"]["num"], "***", "{json}");
  assert_eq!(json["params"]["arr"], "***", "{json}");
  let id = json["run"].as_str().unwrap_or_default().to_string();
  let detail = p
    .swdl(&["runs", &id, "--format", "json"])
    .stderr("")
    .status(0)
    .run();
  let text = p.swdl(&["runs", &id]).run();
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
  let detail = detail.json();
  for side in ["inputs", "outputs"] {
    for stage in [&detail["state"]["stages"]["e"], &detail["attempts"][0]] {
      assert_eq!(stage[side]["text"], "n=*** first=***", "{detail}");
    }
  }
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
  let out = p
    .swdl(&["run", "g.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at gate
        decide gate: `swdl approve --store [DIR]/store [..] gate` or `swdl reject --store [DIR]/store [..] gate`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&out.stderr);
  p.swdl(&["runs", &id])
    .stdout(
      r#"
      run       [..]
      workflow  devtoken-flow ([DIR]/g.yaml)
      status    waiting
      started   [..] UTC
      duration[..]
      params    {"token":"***"}
      error     suspended: waiting for a decision on `gate`

      stages
        gate                     waiting    attempts 0
        after                    pending    attempts 0
      "#,
    )
    .stderr("")
    .status(0)
    .run();
  p.swdl(&["approve", &id, "gate"])
    .stdout("")
    .stderr("approved `gate` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  let resumed = p
    .swdl(&[
      "resume",
      &id,
      "--param",
      "token=devtoken",
      "--progress",
      "none",
      "--output",
      "json",
    ])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(resumed.json()["status"], "completed");
  // The store is its owner's alone.
  #[cfg(unix)]
  {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
      std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)
    };
    assert_eq!(mode(&p.store()), 0o700);
    assert_eq!(mode(&p.store().join("swdl.db")), 0o600);
    assert_eq!(mode(&p.store().join("swdl.db-wal")), 0o600);
    // A store made readable by others (as older versions made them) is made private again.
    let open = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(p.store().join("swdl.db"), open).expect("chmod");
    std::fs::set_permissions(p.store(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p.swdl(&["runs"])
      .stdout(
        r"
      RUN                          STATUS     WORKFLOW                 STARTED (UTC)         DURATION
      [..] completed  devtoken-flow            [..]
      ",
      )
      .stderr("")
      .status(0)
      .run();
    assert_eq!(mode(&p.store().join("swdl.db")), 0o600);
    assert_eq!(mode(&p.store()), 0o700);
  }
  // A second run's cancel works on the same file too.
  let again = p
    .swdl(&["run", "g.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at gate
        decide gate: `swdl approve --store [DIR]/store [..] gate` or `swdl reject --store [DIR]/store [..] gate`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let second = run_id_in(&again.stderr);
  p.swdl(&["cancel", &second])
    .stdout("")
    .stderr("run [..] cancelled\n")
    .status(0)
    .run();
}

#[test]
fn secrets_too_short_to_mask_are_refused_without_being_echoed() {
  let p = Project::new();
  p.write(
    "short.yaml",
    "name: short\nparameters:\n  pin: { type: integer, secret: true }\n  list: { type: array, secret: true, default: [] }\nstages:\n  - id: e\n    uses: echo\n    with: { url: \"http://127.0.0.1:8080/x\", pin: \"$<< parameters.pin >>\" }\n",
  );
  p
    .swdl(&[
      "run",
      "short.yaml",
      "--param",
      "pin=1",
      "--progress",
      "none",
    ])
    .stdout("").stderr(r"
      error: the value of secret parameter `pin` is shorter than 4 characters: a secret that short cannot be masked without hiding ordinary text; use a longer value
      ").status(2)
    .run();
  p
    .swdl(&[
      "run",
      "short.yaml",
      "--param",
      "pin=12345",
      "--param",
      r#"list=["ok-long", "ab"]"#,
      "--progress",
      "none",
    ])
    .stdout("").stderr(r"
      error: the value of secret parameter `list` is shorter than 4 characters: a secret that short cannot be masked without hiding ordinary text; use a longer value
      ").status(2)
    .run();
  // Long enough: masked where it stands, the address is left alone.
  let out = p
    .swdl(&[
      "run",
      "short.yaml",
      "--param",
      "pin=12345",
      "--progress",
      "none",
      "--output",
      "json",
    ])
    .stderr("")
    .status(0)
    .run();
  let json = out.json();
  for side in ["inputs", "outputs"] {
    let values = &json["stages"]["e"][side];
    assert_eq!(values["url"], "http://127.0.0.1:8080/x", "{json}");
    assert_eq!(values["pin"], "***", "{json}");
  }
  // Nowhere else either: the record holds timestamps and ids that are not compared.
  let stages = json["stages"].to_string();
  assert!(!stages.contains("12345"), "{stages}");
  // An environment secret too short is refused too, by name.
  p.write(
    "env.yaml",
    "name: env\nconfig:\n  secrets: [TINY]\nstages:\n  - { id: e, uses: echo }\n",
  );
  p.swdl(&["run", "env.yaml", "--progress", "none"])
    .env("TINY", "ab")
    .stdout("")
    .stderr(
      "error: environment variable `TINY` (listed in `config.secrets`) is shorter than 4 \
       characters: a secret that short cannot be masked without hiding ordinary text; use a \
       longer value\n",
    )
    .status(2)
    .run();
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
  let out = p
    .swdl(&[
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
    ])
    .status(0)
    .run();
  let id = out.json()["run"].as_str().unwrap_or_default().to_string();
  let detail = p.swdl(&["runs", &id, "--format", "json"]).run();
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
  let stages = &out.json()["stages"];
  assert_eq!(
    stages["json"]["outputs"]["body"], r#"{"token": "***"}"#,
    "{stages}"
  );
  assert_eq!(stages["url"]["outputs"]["url"], "***", "{stages}");
}

#[test]
fn a_bad_value_for_a_secret_parameter_is_not_echoed() {
  let p = Project::new();
  p.write(
    "e.yaml",
    "name: e\nparameters:\n  token: { type: string, secret: true, enum: [Alpha1Secret, Beta2Secret] }\n  n: { type: integer, secret: true }\nstages:\n  - { id: e, uses: echo }\n",
  );
  p.swdl(&[
    "run",
    "e.yaml",
    "--param",
    "token=Gamma9Secret",
    "--param",
    "n=notanumber1",
  ])
  .stdout("")
  .stderr(
    r#"
      --param:1:7: error: parameter `token` must be one of ["Alpha1Secret","Beta2Secret"], got ***
        |
      1 | token=***
        |       ^^^
      --param:1:3: error: parameter `n` expects integer, got `***`
        |
      1 | n=***
        |   ^^^
      2 errors
      "#,
  )
  .status(2)
  .run();
  // The whole stderr is compared above: neither Gamma9Secret nor notanumber1 is echoed.
  p.write("p.yaml", "token: Alpha1Secret\nn: Delta4Secret\n");
  p.swdl(&["run", "e.yaml", "--params", "p.yaml"])
    .stdout("")
    .stderr(
      r"
      p.yaml:2:1: error: parameter `n` expects integer, got `***`
        |
      2 | n: ***
        | ^
      ",
    )
    .status(2)
    .run();
  // Nor Delta4Secret.
}
