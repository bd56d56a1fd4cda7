//! What an attacker or a careless user tries: secrets of every type and in encoded forms,
//! secrets too short to mask, colliding run ids, inputs built to exhaust the stack or memory,
//! floods of output and logs, damaged stores.
use crate::{
  store::{Project, run_id_in},
  test::{Test, assert_matches},
};
use base64::Engine as _;
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
      run [..] is suspended at gate: approve with `swdl approve --store [DIR]/store [..] gate` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
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
      RUN                    STATUS     WORKFLOW                 STARTED (UTC)         DURATION
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
      run [..] is suspended at gate: approve with `swdl approve --store [DIR]/store [..] gate` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
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

/// `swdl ARGS` in the project, under a 2 GiB address-space limit: a process that tries to
/// build gigabytes fails to allocate (and aborts) instead of passing.
fn bounded(p: &Project, args: &[&str]) -> Test {
  // Only commands that use a store take `--store`.
  let test = if matches!(args.first(), Some(&("run" | "resume" | "runs"))) {
    p.swdl(args)
  } else {
    p.bare(args)
  };
  test.memory_limit(2 << 30)
}

#[test]
fn deep_nesting_is_an_error_at_its_position_not_a_crash() {
  let p = Project::new();
  let cases = [
    ("seq.yaml", format!("{}1\n", "- ".repeat(20_000)), "1:201:"),
    (
      "map.yaml",
      (0..2_000)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect::<String>(),
      "101:101:",
    ),
    (
      "flow.yaml",
      format!("{}{}\n", "[".repeat(50_000), "]".repeat(50_000)),
      "1:",
    ),
    (
      "mixed.yaml",
      format!("a: {}1{}\n", "{b: [".repeat(5_000), "]}".repeat(5_000)),
      "1:",
    ),
  ];
  for (name, text, at) in cases {
    p.write(name, &text);
    // The excerpt of a line this long is cut around the position.
    bounded(&p, &["validate", name])
      .stdout("")
      .stderr(&format!(
        "{name}:{at}[..]error: invalid YAML: lists and mappings nest more than 100 levels deep \
         here\n...\n"
      ))
      .status(2)
      .run();
  }
  // Expressions nest at most 50 deep, through parentheses, `!` and calls alike.
  for text in [
    format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000)),
    format!("{}true", "!".repeat(10_000)),
    format!("{}1{}", "toJSON(".repeat(10_000), ")".repeat(10_000)),
  ] {
    bounded(&p, &["eval", &text])
      .stdout("")
      .stderr("<expr>:1:[..]: error: expression nests more than 50 levels deep\n...\n")
      .status(2)
      .run();
  }
}

#[test]
fn aliases_are_bounded_by_the_text_they_copy() {
  let p = Project::new();
  let mut text = format!("x: &big '{}'\nlist:\n", "a".repeat(100_000));
  for _ in 0..10_000 {
    text.push_str("  - *big\n");
  }
  p.write("alias.yaml", &text);
  bounded(&p, &["validate", "alias.yaml"])
    .stdout("")
    .stderr(
      r"
      alias.yaml:44:5: error: invalid YAML: aliases expand to too much text (more than 4 MiB)
         |
      44 |   - *big
         |     ^
      ",
    )
    .status(2)
    .run();
  let mut text = format!("x: &big '{}'\nlist:\n", "a".repeat(1 << 20));
  for _ in 0..10_000 {
    text.push_str("  - *big\n");
  }
  p.write("alias1m.yaml", &text);
  bounded(&p, &["validate", "alias1m.yaml"])
    .stdout("")
    .stderr(
      r"
      alias1m.yaml:7:5: error: invalid YAML: aliases expand to too much text (more than 4 MiB)
        |
      7 |   - *big
        |     ^
      ",
    )
    .status(2)
    .run();
  // A file larger than 16 MiB is refused before it is parsed.
  let huge = p.path().join("huge.yaml");
  std::fs::write(&huge, vec![b'#'; (16 << 20) + 1]).expect("write");
  bounded(&p, &["validate", "huge.yaml"])
    .stdout("")
    .stderr("error: huge.yaml: larger than 16 MiB, the most swdl reads\n")
    .status(2)
    .run();
}

#[test]
fn expressions_cannot_build_gigabytes_anywhere() {
  let p = Project::new();
  let mut nested = String::from("'\"\\\\'");
  for _ in 0..32 {
    nested = format!("toJSON({nested})");
  }
  // `swdl eval`.
  bounded(&p, &["eval", &nested]).stdout("").stderr(r"
      <expr>:1:71: error: this expression builds more than 32 MiB of text (toJSON, format, join and interpolation together), the most one evaluation may build
        |
      1 | ...SON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(t...
        |                                                                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      ").status(2).run();
  // A workflow: the stage fails with the same error.
  p.write(
    "big.yaml",
    &format!(
      "name: big\nstages:\n  - id: e\n    uses: echo\n    with: {{ v: \"$<< {} >>\" }}\n",
      nested.replace('\\', "\\\\").replace('"', "\\\"")
    ),
  );
  let out = bounded(
    &p,
    &["run", "big.yaml", "--progress", "none", "--output", "json"],
  )
  // Reported like a load error, at the expression (runtime_errors.rs).
  .stderr(
    r#"
    big.yaml:5:16: error: stage `e`: inputs could not be evaluated: this expression builds more than 32 MiB of text (toJSON, format, join and interpolation together), the most one evaluation may build
      |
    5 |     with: { v: "$<< toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJSON(toJ...
      |                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
    "#,
  )
  .status(1)
  .run();
  let json = out.json();
  assert_eq!(
    json["stages"]["e"]["error"],
    format!(
      "inputs could not be evaluated: `$<< {nested} >>`: this expression builds more than 32 MiB \
       of text (toJSON, format, join and interpolation together), the most one evaluation may \
       build"
    ),
  );
  // Lua's `swdl.eval` has the same budget, whatever the Lua memory limit.
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/grow.lua",
    &format!(
      "return {{\n  run = function(ctx, input)\n    return {{ v = swdl.eval([[{nested}]]) }}\n  end,\n}}\n"
    ),
  );
  p.write(
    "lua.yaml",
    "name: lua\nconfig:\n  skills_path: [skills]\nstages:\n  - { id: g, uses: grow }\n",
  );
  let out = bounded(
    &p,
    &["run", "lua.yaml", "--progress", "none", "--output", "json"],
  )
  .stderr("")
  .status(1)
  .run();
  let json = out.json();
  assert_matches(
    &format!(
      "skills/grow.lua:3: swdl.eval: this expression builds more than 32 MiB of text (toJSON, \
       format, join and interpolation together), the most one evaluation may build at column 71 \
       of `{nested}`\nstack traceback:\n..."
    ),
    json["stages"]["g"]["error"].as_str().unwrap_or_default(),
  );
}

#[test]
fn stage_output_keeps_a_head_and_a_tail_and_the_store_stays_small() {
  let p = Project::new();
  let mut text = String::from("name: loud\nconfig: { max_parallel: 4 }\nstages:\n");
  for i in 0..20 {
    text.push_str(&format!(
      "  - id: s{i}\n    uses: shell\n    with: {{ run: \"head -c 1000000 /dev/zero | tr '\\\\0' x; printf 'tail\\\\0-{i}'\" }}\n"
    ));
  }
  p.write("loud.yaml", &text);
  let out = bounded(&p, &["run", "loud.yaml", "--output", "json"])
    .status(0)
    .run();
  let json = out.json();
  let stdout = json["stages"]["s7"]["outputs"]["stdout"]
    .as_str()
    .unwrap_or_default();
  // The first and the last 64 KiB of the 1000007 bytes, the NUL shown as U+FFFD.
  let expected = format!(
    "{}\n[... 868935 bytes of stdout cut: outputs keep the first 64 KiB and the last 64 KiB \
     ...]\n{}tail\u{fffd}-7",
    "x".repeat(64 * 1024),
    "x".repeat(64 * 1024 - 7)
  );
  assert!(
    stdout == expected,
    "{} bytes, each X 1024 x: {}",
    stdout.len(),
    stdout.replace(&"x".repeat(1024), "X")
  );
  let size: u64 = std::fs::read_dir(p.store())
    .expect("store")
    .flatten()
    .filter_map(|e| e.metadata().ok())
    .map(|m| m.len())
    .sum();
  // 20 MB were printed; each stage keeps 128 KiB of output and at most 256 KiB of log lines.
  assert!(size < 12 << 20, "store is {size} bytes");
}

#[test]
fn a_log_flood_is_cut_and_the_timeout_holds() {
  let p = Project::new();
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/flood.lua",
    "return {\n  run = function(ctx, input)\n    for i = 1, input.n do ctx.log('line ' .. i) end\n    if input.forever then while true do ctx.log('again') end end\n    return { done = true }\n  end,\n}\n",
  );
  p.write(
    "flood.yaml",
    "name: flood\nconfig:\n  skills_path: [skills]\nstages:\n  - { id: many, uses: flood, with: { n: 200000 } }\n  - { id: endless, uses: flood, depends_on: [many], timeout: 2s, with: { n: 1, forever: true } }\n",
  );
  let out = p
    .swdl(&[
      "run",
      "flood.yaml",
      "--progress",
      "none",
      "--output",
      "json",
    ])
    .stderr("")
    .status(1)
    .run();
  let json = out.json();
  assert_eq!(json["stages"]["many"]["status"], "completed", "{json}");
  assert_eq!(json["stages"]["endless"]["status"], "timed_out", "{json}");
  let id = json["run"].as_str().unwrap_or_default().to_string();
  let detail = p.detail(&id);
  let logs: Vec<&serde_json::Value> = detail["logs"]
    .as_array()
    .map(|l| l.iter().filter(|l| l["stage"] == "many").collect())
    .unwrap_or_default();
  assert_eq!(logs.len(), 5_001, "{}", logs.len());
  assert_eq!(logs[4_999]["message"], "line 5000");
  let dropped: usize = (5_001..=200_000)
    .map(|i: u32| format!("line {i}").len())
    .sum();
  assert_eq!(
    logs[5_000]["message"],
    format!(
      "195000 more log lines ({dropped} bytes) were not recorded: an attempt records at most 5000 lines and 256 KiB of logs"
    )
  );
}

/// Overwrites `len` bytes of `path` at `at` with garbage.
fn scribble(path: &std::path::Path, at: u64, len: usize) {
  use std::io::{Seek, SeekFrom, Write};
  let mut file = std::fs::OpenOptions::new()
    .write(true)
    .open(path)
    .expect("open for damage");
  file.seek(SeekFrom::Start(at)).expect("seek");
  let garbage: Vec<u8> = (0..len).map(|i| (i * 7 + 13).to_le_bytes()[0]).collect();
  file.write_all(&garbage).expect("write garbage");
}

/// Runs `test`, which must fail on the damaged store for the reason `why` (a pattern, which
/// may span lines) with the advice that follows every such error.
#[track_caller]
fn assert_damaged(test: Test, why: &str) {
  test
    .stdout("")
    .stderr(&format!(
      "error: [DIR]/store/swdl.db: the run store is damaged: {why}. Nothing was changed; keep a \
       copy of the store's files, then try `sqlite3 [DIR]/store/swdl.db .recover`, or move them \
       away to start a new store\n"
    ))
    .status(2)
    .run();
}

#[test]
fn damage_to_the_store_is_an_error_that_names_the_file() {
  let p = Project::new();
  p.write("w.yaml", "name: w\nstages:\n  - { id: a, uses: echo, with: { x: 1 } }\n  - { id: b, uses: echo, depends_on: a }\n");
  for _ in 0..5 {
    p.swdl(&["run", "w.yaml", "--progress", "none"])
      .stdout("")
      .stderr("")
      .status(0)
      .run();
  }
  let db = p.store().join("swdl.db");
  let wal = p.store().join("swdl.db-wal");
  // Garbage inside the log: SQLite would stop at the bad frame and show fewer runs.
  let page = 4096;
  let frames = std::fs::metadata(&wal).map_or(0, |m| m.len()) / (24 + page);
  assert!(frames >= 3, "{frames} frames in the log");
  let saved = std::fs::read(&wal).expect("wal");
  scribble(&wal, 32 + 24 + page + 100, 64);
  assert_damaged(
    p.swdl(&["runs"]),
    "frame 2 of the write-ahead log is damaged and a commit of the same log follows it (frame \
     4): the commits after frame 2 would be lost",
  );
  // A garbled header.
  std::fs::write(&wal, &saved).expect("restore");
  scribble(&wal, 0, 8);
  assert_damaged(
    p.swdl(&["runs"]),
    "the write-ahead log's header is not a SQLite log header",
  );
  std::fs::write(&wal, &saved).expect("restore");
  assert_eq!(p.runs().len(), 5);
  // A damaged page of the database itself (after `runs` folded the log into it).
  let saved_db = std::fs::read(&db).expect("db");
  let pages = saved_db.len() as u64 / page;
  assert!(pages >= 3, "{pages} pages");
  for n in 1..pages {
    scribble(&db, n * page + 16, 3000);
  }
  // SQLite's own word for it, not a conversion error from reading garbage as a row.
  assert_damaged(p.swdl(&["runs"]), "database disk image is malformed");
  // Truncated to nothing.
  std::fs::write(&db, b"").expect("truncate");
  let _ = std::fs::remove_file(&wal);
  assert_damaged(
    p.swdl(&["runs"]),
    "the database file is empty: it was truncated",
  );
  assert_damaged(
    p.swdl(&["run", "w.yaml", "--progress", "none"]),
    "the database file is empty: it was truncated",
  );
}

#[test]
fn after_a_crash_the_store_is_checked_before_it_is_used() {
  let p = Project::new();
  p.write(
    "w.yaml",
    "name: w\nstages:\n  - { id: a, uses: echo, with: { x: 1 } }\n",
  );
  for _ in 0..30 {
    p.swdl(&["run", "w.yaml", "--progress", "none"])
      .stdout("")
      .stderr("")
      .status(0)
      .run();
  }
  // Fold the log into the database.
  p.swdl(&["runs"])
    .stdout(
      r"
      RUN                    STATUS     WORKFLOW                 STARTED (UTC)         DURATION
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      [..] completed  w                        [..]
      ",
    )
    .stderr("")
    .status(0)
    .run();
  let db = p.store().join("swdl.db");
  let pages = std::fs::metadata(&db).map_or(0, |m| m.len()) / 4096;
  p.write(
    "slow.yaml",
    "name: slow\nstages:\n  - { id: a, uses: sleep, with: { ms: 60000 } }\n",
  );
  let mut child = p.spawn_run("slow.yaml", &[]);
  crate::common::wait_for(std::time::Duration::from_secs(20), || {
    p.runs().iter().any(|r| r["workflow"] == "slow")
  });
  child.kill().expect("kill -9");
  let _ = child.wait();
  // The crash (say) also hit a page that listing runs never reads, and one the log does not
  // hold a newer copy of.
  let wal = std::fs::read(p.store().join("swdl.db-wal")).unwrap_or_default();
  let in_log: std::collections::HashSet<u64> = wal
    .get(32..)
    .unwrap_or_default()
    .chunks(24 + 4096)
    .filter(|f| f.len() >= 4)
    .map(|f| u64::from(u32::from_be_bytes([f[0], f[1], f[2], f[3]])))
    .collect();
  let page = (2..=pages)
    .rev()
    .find(|n| !in_log.contains(n))
    .expect("a page outside the log");
  scribble(&db, (page - 1) * 4096 + 8, 4000);
  assert_damaged(
    p.swdl(&["runs", "--status", "completed"]),
    // What the check lists depends on where the damaged page falls.
    "its integrity check found: *** in database main ***\n...\n[..]",
  );
}

#[test]
fn a_huge_name_is_not_echoed_in_full() {
  let p = Project::new();
  let name = "Bad Name ".repeat(1_100_000);
  p.write(
    "long.yaml",
    &format!("name: long\nstages:\n  - id: \"{name}\"\n    uses: echo\n"),
  );
  let out = bounded(&p, &["validate", "long.yaml"]).stdout("").stderr(r#"
      long.yaml:3:10: error: invalid stage id `Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Na...` (9900000 bytes in all): use lowercase letters, digits, `_` and `-`, starting with a letter or digit
        |
      3 |   - id: "Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad Name Bad...
        |          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
      "#).status(2).run();
  assert!(
    out.stderr.len() < 2_000,
    "{} bytes of stderr",
    out.stderr.len()
  );
}

#[test]
fn a_gate_is_decided_once_and_an_unknown_user_is_named() {
  let p = Project::new();
  p.write("g.yaml", "name: g\nstages:\n  - { id: gate, gate: {} }\n");
  let out = p
    .swdl(&["run", "g.yaml", "--progress", "none"])
    .stdout("").stderr(r"
      run [..] is suspended at gate: approve with `swdl approve --store [DIR]/store [..] gate` (or `swdl reject ...`), then continue it with `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&out.stderr);
  let approve = p
    .command(&["approve", &id, "gate"])
    .env_remove("USER")
    .output()
    .expect("approve");
  assert_eq!(approve.status.code(), Some(0));
  p.swdl(&["reject", &id, "gate"]).stdout("").stderr(r"
      error: the gate `gate` of run `[..]` was already decided (approve by user:unknown); `swdl resume [..]` applies it
      ").status(2).run();
  p.swdl(&["resume", &id, "--progress", "none"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let detail = p.detail(&id);
  assert_eq!(
    detail["decisions"][0]["decided_by"], "user:unknown",
    "{detail}"
  );
  assert_eq!(detail["decisions"][0]["decision"], "approve", "{detail}");
}

#[test]
fn resume_kills_the_scripts_a_killed_run_left_running() {
  let p = Project::new();
  p.write(
    "s.yaml",
    "name: s\nstages:\n  - id: long\n    uses: shell\n    with:\n      run: |\n        if [ \"$SWDL_ATTEMPT\" = 1 ]; then echo $$ > first.pid; sleep 120; fi\n        echo attempt $SWDL_ATTEMPT\n",
  );
  let mut child = p.spawn_run("s.yaml", &[]);
  let pid_file = p.path().join("first.pid");
  assert!(crate::common::wait_for(
    std::time::Duration::from_secs(20),
    || { std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) }
  ));
  let id = p.wait_run_id();
  child.kill().expect("kill -9");
  let _ = child.wait();
  let pid: i32 = std::fs::read_to_string(&pid_file)
    .unwrap_or_default()
    .trim()
    .parse()
    .unwrap_or(0);
  let alive = |pid: i32| {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
      && unsafe { libc::kill(pid, 0) } == 0
      && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z ")
  };
  assert!(alive(pid), "the script should outlive the killed run");
  let out = p
    .swdl(&["resume", &id, "--progress", "none", "--output", "json"])
    .stderr("killed 1 process group(s) the run's previous process left running\n")
    .status(0)
    .run();
  assert!(
    crate::common::wait_for(std::time::Duration::from_secs(5), || !alive(pid)),
    "the first attempt's script is still running"
  );
  assert_eq!(
    out.json()["stages"]["long"]["outputs"]["stdout"],
    "attempt 2"
  );
}

#[test]
fn a_timed_out_swdl_exec_takes_what_it_started_with_it() {
  let p = Project::new();
  std::fs::create_dir_all(p.path().join("skills")).expect("skills dir");
  p.write(
    "skills/spawner.lua",
    "return {\n  run = function(ctx, input)\n    swdl.exec('sh', { '-c', 'sleep 120 & echo $! > bg.pid; wait' })\n    return {}\n  end,\n}\n",
  );
  p.write(
    "x.yaml",
    "name: x\nconfig:\n  skills_path: [skills]\n  permissions: { spawner: [exec] }\nstages:\n  - { id: s, uses: spawner, timeout: 1s }\n",
  );
  let out = p
    .swdl(&["run", "x.yaml", "--progress", "none", "--output", "json"])
    .stderr("")
    .status(1)
    .run();
  assert_eq!(out.json()["stages"]["s"]["status"], "timed_out");
  let pid: i32 = std::fs::read_to_string(p.path().join("bg.pid"))
    .unwrap_or_default()
    .trim()
    .parse()
    .unwrap_or(0);
  assert!(pid > 0);
  let gone = crate::common::wait_for(std::time::Duration::from_secs(5), || {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0;
    !exists
      || std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_default()
        .contains(") Z ")
  });
  assert!(gone, "the program's background job outlived the stage");
}
