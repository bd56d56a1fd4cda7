//! Inputs built to exhaust ids, the stack or memory, and floods of output and logs, are bounded.
use super::*;

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
