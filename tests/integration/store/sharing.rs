//! Many processes on one store, and secrets kept out of it.
use super::*;

#[test]
fn twenty_processes_share_one_store() {
  let p = Project::new();
  let mut text = String::from("name: shared\nstages:\n");
  for i in 0..10 {
    text.push_str(&format!(
      "  - id: s{i}\n    uses: echo\n    with: {{ n: {i} }}\n"
    ));
    if i > 0 {
      text.push_str(&format!("    depends_on: [s{}]\n", i - 1));
    }
  }
  p.write("shared.yaml", &text);
  let children: Vec<Child> = (0..20).map(|_| p.spawn_run("shared.yaml", &[])).collect();
  for child in children {
    let output = child.wait_with_output().expect("run ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("locked"), "{stderr}");
  }
  let runs = p.runs();
  assert_eq!(runs.len(), 20);
  assert!(runs.iter().all(|r| r["status"] == "completed"));
}

#[test]
fn secrets_never_reach_the_store_logs_events_or_output() {
  let p = Project::new();
  p.write(
    "secret.yaml",
    r#"
name: secretive
parameters:
  token: { type: string, secret: true }
config:
  secrets: [API_PASSWORD]
  env:
    PASSWORD: "$<< env.API_PASSWORD >>"
stages:
  - id: use
    uses: shell
    with: { run: "echo token=$<< parameters.token >> password=$API_PASSWORD" }
  - id: echo
    uses: echo
    with: { both: "$<< parameters.token >>/$<< stages.use.outputs.stdout >>" }
    depends_on: [use]
  - id: wait
    gate: { message: "token $<< parameters.token >>" }
    depends_on: [echo]
"#,
  );
  let events = p.path().join("events.jsonl");
  let token = "tok-5f1d9c2b7a";
  let password = "pw-8e3a71c44d";
  let out = p
    .command(&[
      "run",
      "secret.yaml",
      "--param",
      &format!("token={token}"),
      "--progress",
      "plain",
      "--events",
      events.to_str().unwrap_or_default(),
      "--output",
      "json",
    ])
    .env("API_PASSWORD", password)
    .output()
    .expect("swdl runs");
  assert_eq!(out.status.code(), Some(4));
  let id = run_id_in(&String::from_utf8_lossy(&out.stderr));
  p.swdl(&["approve", &id, "wait", "--reason", "looks fine"])
    .stdout("")
    .stderr("approved `wait` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  let resumed = p
    .command(&[
      "resume",
      &id,
      "--param",
      &format!("token={token}"),
      "--progress",
      "plain",
    ])
    .env("API_PASSWORD", password)
    .output()
    .expect("swdl runs");
  assert_eq!(
    resumed.status.code(),
    Some(0),
    "{}",
    String::from_utf8_lossy(&resumed.stderr)
  );
  let detail = p.swdl(&["runs", &id]).run();
  let mut haystacks: Vec<(String, Vec<u8>)> = vec![
    ("stdout".into(), out.stdout.clone()),
    ("stderr".into(), out.stderr.clone()),
    ("resume stderr".into(), resumed.stderr.clone()),
    ("events".into(), std::fs::read(&events).unwrap_or_default()),
    ("runs".into(), detail.stdout.into_bytes()),
  ];
  for entry in std::fs::read_dir(p.store()).expect("store dir").flatten() {
    haystacks.push((
      entry.path().display().to_string(),
      std::fs::read(entry.path()).unwrap_or_default(),
    ));
  }
  for (name, bytes) in &haystacks {
    for secret in [token, password] {
      assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "{secret} found in {name}"
      );
    }
  }
  // The masked values were really there to mask.
  let text = String::from_utf8_lossy(&haystacks[3].1).into_owned();
  assert!(text.contains("token=*** password=***"), "{text}");
  // Without the secret again, resume refuses (nothing to resume here, but the message is
  // about the run having finished, not about secrets).
  p.swdl(&["resume", &id])
    .stdout("")
    .stderr(
      r"
      error: run `[..]` already finished (completed); a finished run cannot be resumed
      ",
    )
    .status(2)
    .run();
}

#[test]
fn a_suspended_run_needs_its_secret_parameters_again() {
  let p = Project::new();
  p.write(
    "s.yaml",
    "name: s\nparameters:\n  token: { type: string, secret: true }\nstages:\n  - id: g\n    gate: {}\n  - id: e\n    uses: echo\n    with: { t: \"$<< parameters.token >>\" }\n    depends_on: [g]\n",
  );
  let out = p
    .swdl(&[
      "run",
      "s.yaml",
      "--param",
      "token=abc123xyz",
      "--progress",
      "none",
    ])
    .stdout("").stderr(r"
      run [..] is suspended at g
        decide g: `swdl approve --store [DIR]/store [..] g` or `swdl reject --store [DIR]/store [..] g`
        then continue it: `swdl resume --store [DIR]/store [..]`
      ").status(4)
    .run();
  let id = run_id_in(&out.stderr);
  p.swdl(&["approve", &id, "g"])
    .stdout("")
    .stderr("approved `g` of run [..]; continue it with `swdl resume [..]`\n")
    .status(0)
    .run();
  p
    .swdl(&["resume", &id, "--progress", "none"])
    .stdout("").stderr(r"
      error: run `[..]` has secret parameters the store does not keep: give them again with --param token=...
      ").status(2)
    .run();
  p.swdl(&[
    "resume",
    &id,
    "--param",
    "token=abc123xyz",
    "--progress",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
}

#[test]
fn recovery_and_policy_decisions_are_kept_with_who_decided_and_why() {
  let p = Project::new();
  let file = root().join("examples/lua-recovery.yaml");
  let out = p
    .swdl(&[
      "run",
      file.to_str().unwrap_or_default(),
      "--progress",
      "none",
    ])
    .run();
  assert!(matches!(out.status, 0 | 1), "{}", out.stderr);
  let id = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  let detail = p.detail(&id);
  let decisions = detail["decisions"].as_array().cloned().unwrap_or_default();
  assert!(
    decisions.iter().any(|d| d["kind"] == "recovery"
      && d["decided_by"]
        .as_str()
        .is_some_and(|b| b.starts_with("recovery:"))),
    "{decisions:?}"
  );
  let file = root().join("examples/lua-review.yaml");
  p.swdl(&[
    "run",
    file.to_str().unwrap_or_default(),
    "--progress",
    "none",
  ])
  .stdout("")
  .stderr("")
  .status(0)
  .run();
  let id = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  let decisions = p.detail(&id)["decisions"].clone();
  let by_policy = decisions.as_array().into_iter().flatten().find(|d| {
    d["decided_by"]
      .as_str()
      .is_some_and(|b| b.starts_with("policy:"))
  });
  let Some(by_policy) = by_policy else {
    panic!("no policy decision in {decisions}");
  };
  assert!(by_policy["reason"].is_string(), "{by_policy}");
}
