//! The sandbox and per-skill permissions.
use super::*;

#[test]
fn sandbox_escapes_through_a_skill_are_denied_with_clear_messages() {
  let p = Project::new();
  let cases: &[(&str, &str, &str)] = &[
    (
      "os-execute",
      "os.execute(\"touch pwned\")",
      "os.execute is not available in the swdl sandbox; ask for the `exec` permission and use swdl.exec",
    ),
    (
      "io-open",
      "io.open(\"/etc/passwd\")",
      "io.open is not available in the swdl sandbox; ask for the `fs` permission and use swdl.fs.read, swdl.fs.write or swdl.fs.list",
    ),
    (
      "require-os",
      "require \"os\"",
      "module 'os' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "require-file",
      "require \"skills.other\"",
      "module 'skills.other' not found: only swdl and swdl.<name> modules can be required",
    ),
    (
      "string-dump",
      "load(string.dump(function() return 1 end))",
      "string.dump is not available in the swdl sandbox; functions cannot be turned into bytecode",
    ),
    (
      "binary-chunk",
      r#"assert(load("\27LuaT\0\25\147\r\n\26\n", "chunk", "b"))"#,
      "load: binary chunks are not allowed in the swdl sandbox; pass Lua source text",
    ),
    (
      "dofile",
      "dofile(\"/etc/passwd\")",
      "dofile is not available in the swdl sandbox; ask for the `fs` permission, read the file with swdl.fs.read and pass its text to load",
    ),
    (
      "loadfile",
      "loadfile(\"/etc/passwd\")",
      "loadfile is not available in the swdl sandbox; ask for the `fs` permission, read the file with swdl.fs.read and pass its text to load",
    ),
    (
      "loadlib",
      "package.loadlib(\"libc.so.6\", \"system\")",
      "package.loadlib is not available in the swdl sandbox; C modules cannot be loaded",
    ),
    (
      "debug-getinfo",
      "debug.getinfo(1)",
      "debug.getinfo is not available in the swdl sandbox; it could reach past the sandbox and the stage timeout",
    ),
    (
      "os-getenv",
      "os.getenv(\"HOME\")",
      "os.getenv is not available in the swdl sandbox; read ctx.env",
    ),
    (
      "finalizer",
      "setmetatable({}, { __gc = function() end })",
      "setmetatable: __gc metamethods are not available in the swdl sandbox (a finalizer cannot be stopped by the stage timeout)",
    ),
    (
      "register-policy",
      "swdl.policy(\"sneaky\", function() return \"approve\" end)",
      "swdl.policy can only be called from a hook file (config.hooks or --lua), while it loads",
    ),
    (
      "string-metatable",
      "getmetatable(\"\").__index = {}",
      "the string metatable is protected in the swdl sandbox",
    ),
  ];
  let mut yaml = String::from("name: sandbox\nconfig: { max_parallel: 4 }\nstages:\n");
  for (name, body, _) in cases {
    p.skill(name, &skill_with_body(body));
    yaml.push_str(&format!(
      "  - {{ id: {name}, uses: {name}, on_failure: continue }}\n"
    ));
  }
  // What stays: os.time, os.clock, os.date and `load` of source text.
  p.skill(
    "allowed",
    &skill_with_body(
      "assert(os.time() > 0 and os.clock() >= 0 and os.date(\"!%Y\") ~= nil)\n    assert(load(\"return 1 + 1\")() == 2)",
    ),
  );
  yaml.push_str("  - { id: allowed, uses: allowed }\n");
  let out = p.run(&yaml).stdout("").stderr("").status(1).run();
  for (name, _, wanted) in cases {
    // The sandbox's own frames, if any, sit between the message and the skill's frame.
    assert_matches(
      &format!(
        "
        skills/{name}.lua:3: {wanted}
        stack traceback:
        ...
        \tskills/{name}.lua:3: in function <skills/{name}.lua:2>
        "
      ),
      out.error_of(name),
    );
  }
  assert_eq!(out.final_status("allowed"), "completed", "{}", out.dump());
  assert!(!p.path().join("pwned").exists(), "os.execute ran a command");
}

#[test]
fn exec_needs_the_permission_granted_to_that_skill() {
  let p = Project::new();
  let code = r#"
return {
  description = "says hi through echo",
  outputs = { stdout = "string", status = "integer" },
  run = function(ctx, input)
    local r = swdl.exec("echo", { "hi" })
    return { stdout = r.stdout, status = r.status, ok = r.ok }
  end,
}
"#;
  // The same code under two names: only one is granted `exec`.
  p.file("skills/my-skill/init.lua", code);
  p.file(
    "skills/my-skill/skill.yaml",
    "description: says hi through echo\npermissions: [exec]\n",
  );
  p.skill("other-skill", code);
  let out = p
    .run(
      r#"
name: exec
config:
  skills_path: [skills]
  permissions: { my-skill: [exec] }
stages:
  - { id: granted, uses: my-skill }
  - { id: denied, uses: other-skill, on_failure: continue }
"#,
    )
    .stdout("")
    .stderr("")
    .status(1)
    .run();
  assert_eq!(
    out.outputs("granted"),
    &json!({"stdout": "hi\n", "status": 0, "ok": true})
  );
  assert_matches("
      skills/other-skill.lua:6: swdl.exec needs the `exec` permission: grant it in config.permissions
      stack traceback:
      \t[C]: in upvalue 'get_future'
      \tskills/other-skill.lua:6: in function <skills/other-skill.lua:5>
    ", out.error_of("denied"));
}

#[test]
fn one_skill_cannot_see_another_skills_globals() {
  let p = Project::new();
  p.skill(
    "setter",
    r#"
counter = (counter or 0) + 1
return { run = function(ctx, input)
  shared_secret = "from-setter"
  string.upper = function() return "hacked" end
  return { secret = shared_secret, upper = string.upper("x"), counter = counter }
end }
"#,
  );
  p.skill(
    "getter",
    r#"
return { run = function(ctx, input)
  return {
    secret = type(shared_secret),
    counter = type(counter),
    upper = string.upper("x"),
    method = ("x"):upper(),
  }
end }
"#,
  );
  let out = p
    .run(
      r#"
name: globals
stages:
  - { id: a, uses: setter }
  - { id: b, depends_on: a, uses: getter }
"#,
    )
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  assert_eq!(
    out.outputs("a"),
    &json!({"secret": "from-setter", "upper": "hacked", "counter": 1})
  );
  assert_eq!(
    out.outputs("b"),
    &json!({"secret": "nil", "counter": "nil", "upper": "X", "method": "X"})
  );
}
