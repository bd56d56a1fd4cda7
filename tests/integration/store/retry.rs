//! `swdl retry`: a new run that reuses what completed and did not change, re-running the
//! failed stages (or `--from STAGE` and everything downstream).
use super::*;

/// `a` feeds `flaky`, which fails until `ok` exists (after `side`, which stands alone, has
/// completed); `after` reads `flaky`. Every shell stage appends its name to `ran.log`, so the log counts executions.
const FLAKY: &str = r#"
name: flaky
parameters:
  tag: { type: string, default: v1 }
stages:
  - id: a
    uses: shell
    with: { run: 'echo a >> ran.log; echo "tag=$<< parameters.tag >>" >> "$SWDL_OUTPUT"' }
  - id: flaky
    depends_on: a
    uses: shell
    with: { run: 'sleep 0.2; echo flaky >> ran.log; test -f ok && echo "n=$(cat ok)" >> "$SWDL_OUTPUT"', env: { TAG: "$<< stages.a.outputs.tag >>" } }
  - id: after
    depends_on: flaky
    uses: shell
    with: { run: 'echo after >> ran.log', env: { N: "$<< stages.flaky.outputs.n >>" } }
  - id: side
    uses: shell
    with: { run: 'echo side >> ran.log' }
"#;

impl Project {
  /// Lines of `ran.log` since the last call, sorted (stages run in parallel), then cleared.
  fn ran(&self) -> Vec<String> {
    let path = self.path().join("ran.log");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
  }
}

#[test]
fn a_retry_reuses_what_completed_and_reruns_the_failed_stage() {
  let p = Project::new();
  p.write("flaky.yaml", FLAKY);
  p.swdl(&["run", "flaky.yaml", "--progress", "none"])
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  let first = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  assert_eq!(p.ran(), ["a", "flaky", "side"]);
  p.write("ok", "5");
  let out = p
    .swdl(&["retry", &first, "--progress", "plain", "--output", "json"])
    .status(0)
    .run();
  assert_matches(
    &format!(
      "
      [..] run flaky started (4 stages, max_parallel 3)
      [..] stage a reused the outputs of run {first}
      [..] stage side reused the outputs of run {first}
      ...
      [..] run completed in [..]
      completed 4/4 stages in [..]
      ...
      "
    ),
    &out.stderr,
  );
  // Only what had not completed ran: `a` and `side` did not run again.
  assert_eq!(p.ran(), ["after", "flaky"]);
  let state = out.json();
  assert_eq!(state["stages"]["a"]["reused_from"], first.as_str());
  assert_eq!(state["stages"]["a"]["attempts"], 0);
  assert_eq!(state["stages"]["a"]["outputs"]["tag"], "v1");
  assert_eq!(state["stages"]["after"]["inputs"]["env"]["N"], 5);
  let runs = p.runs();
  assert_eq!(runs.len(), 2);
  let second = runs[0]["id"].as_str().unwrap_or_default().to_string();
  assert_ne!(second, first);
  assert_eq!(runs[0]["retry_of"], first.as_str());
  assert_eq!(
    runs[1]["status"], "failed",
    "the retried run is left as it was"
  );
  p.swdl(&["runs", &second])
    .stdout(&format!(
      "
      run       {second}
      workflow  flaky ([DIR]/flaky.yaml)
      status    completed
      started   [..] UTC
      duration  [..]
      retries   run {first}
      params    {{\"tag\":\"v1\"}}

      stages
        a                        completed  attempts 0   reused from run {first}
        flaky                    completed  attempts 1
        after                    completed  attempts 1
        side                     completed  attempts 0   reused from run {first}
      ...
      "
    ))
    .status(0)
    .run();

  // Retrying the retry reuses everything: nothing changed, nothing runs.
  let out = p
    .swdl(&["retry", &second, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert!(p.ran().is_empty());
  for stage in ["a", "flaky", "after", "side"] {
    assert_eq!(out.json()["stages"][stage]["reused_from"], second.as_str());
  }
}

#[test]
fn from_a_stage_reruns_it_and_everything_downstream_and_a_change_reruns_what_it_reaches() {
  let p = Project::new();
  p.write("flaky.yaml", FLAKY);
  p.write("ok", "5");
  p.swdl(&["run", "flaky.yaml", "--progress", "none"])
    .stderr("")
    .status(0)
    .run();
  let first = p.runs()[0]["id"].as_str().unwrap_or_default().to_string();
  assert_eq!(p.ran(), ["a", "after", "flaky", "side"]);
  p.swdl(&["retry", &first, "--from", "flaky", "--progress", "none"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(p.ran(), ["after", "flaky"]);
  assert_eq!(p.runs()[0]["retry_from"], "flaky");

  // A new parameter value changes `a`'s inputs: `a` runs, and `flaky` (whose inputs read
  // `a`'s new output) runs; `after` sees the same `n` and is reused, as is `side`.
  p.swdl(&["retry", &first, "--param", "tag=v2", "--progress", "none"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(p.ran(), ["a", "flaky"]);

  // An edited stage is a changed definition: it runs again.
  p.write(
    "flaky.yaml",
    &FLAKY.replace("echo side >>", "echo side  >>"),
  );
  p.swdl(&["retry", &first, "--progress", "none"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(p.ran(), ["side"]);
}

#[test]
fn only_a_finished_run_is_retried_and_from_names_a_stage() {
  let p = Project::new();
  p.write("g.yaml", "name: g\nstages:\n  - { id: build, uses: echo }\n  - { id: gate, gate: {}, depends_on: build }\n");
  let out = p
    .swdl(&["run", "g.yaml", "--progress", "none"])
    .status(4)
    .run();
  let id = run_id_in(&out.stderr);
  p.swdl(&["retry", &id])
    .stdout("")
    .stderr(&format!(
      "error: run `{id}` is waiting: only a finished run can be retried (`swdl resume {id}` continues it)\n"
    ))
    .status(2)
    .run();
  p.swdl(&["cancel", &id]).status(0).run();
  p.swdl(&["retry", &id, "--from", "biuld"])
    .stdout("")
    .stderr("error: `--from biuld`: workflow `g` has no stage `biuld` (did you mean `build`?)\n")
    .status(2)
    .run();
  p.swdl(&["retry", "nope"])
    .stdout("")
    .stderr("error: no run `nope` in [..]\n")
    .status(2)
    .run();
  p.bare(&["retry", &id, "--store", "none"])
    .stdout("")
    .stderr("error: `--store none` keeps no runs: there is nothing to retry\n")
    .status(2)
    .run();
}

#[test]
fn a_retry_that_suspends_goes_on_reusing_after_resume() {
  let p = Project::new();
  let wf = "name: g\nstages:\n  - id: a\n    uses: shell\n    with: { run: 'echo a >> ran.log' }\n  - id: g\n    gate: { message: go? }\n  - id: c\n    depends_on: [g]\n    uses: shell\n    with: { run: 'echo c >> ran.log' }\n";
  p.write("g.yaml", wf);
  let out = p
    .swdl(&["run", "g.yaml", "--progress", "none"])
    .status(4)
    .run();
  let first = run_id_in(&out.stderr);
  p.swdl(&["approve", &first, "g"]).status(0).run();
  p.swdl(&["resume", &first, "--progress", "none"])
    .stderr("")
    .status(0)
    .run();
  assert_eq!(p.ran(), ["a", "c"]);
  // A changed gate asks again; `c` after it is unchanged and reused once it is approved,
  // in the process that resumes the retry.
  p.write("g.yaml", &wf.replace("go?", "go now?"));
  let out = p
    .swdl(&["retry", &first, "--progress", "none"])
    .status(4)
    .run();
  let second = run_id_in(&out.stderr);
  assert!(p.ran().is_empty());
  p.swdl(&["approve", &second, "g"]).status(0).run();
  let out = p
    .swdl(&["resume", &second, "--progress", "none", "--output", "json"])
    .stderr("")
    .status(0)
    .run();
  assert!(p.ran().is_empty());
  assert_eq!(out.json()["stages"]["c"]["reused_from"], first.as_str());
  assert_eq!(out.json()["stages"]["g"]["outputs"]["decision"], "approve");
}
