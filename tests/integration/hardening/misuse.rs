//! Huge names, decisions made twice, and processes a killed run left behind.
use super::*;

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
      run [..] is suspended at gate
        decide gate: `swdl approve --store [DIR]/store [..] gate` or `swdl reject --store [DIR]/store [..] gate`
        then continue it: `swdl resume --store [DIR]/store [..]`
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
