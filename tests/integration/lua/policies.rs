//! Approval policies written in Lua.
use super::*;

#[test]
fn by_risk_policy_approves_a_low_gate_and_rejects_a_critical_one() {
  let p = Project::new();
  p.hooks(BY_RISK);
  let out = p
    .run(
      r#"
name: gates
config: { hooks: [hooks.lua] }
stages:
  - id: review
    gate: { message: "Looks fine?", policy: by-risk }
    risk: low
  - id: publish
    depends_on: review
    uses: echo
    with: { by: "$<< stages.review.outputs.decided_by >>" }
  - id: deploy
    depends_on: publish
    gate: { policy: by-risk }
    risk: critical
  - id: after-deploy
    depends_on: deploy
    uses: echo
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let approved = out.one("gate_decided", "review");
  assert_eq!(approved["decision"], "approve");
  assert_eq!(approved["decided_by"], "policy:by-risk");
  assert_eq!(
    approved["reason"],
    "stage `review` has risk low, at or below medium"
  );
  assert_eq!(out.final_status("review"), "completed");
  assert_eq!(out.outputs("publish"), &json!({"by": "policy:by-risk"}));
  let rejected = out.one("gate_decided", "deploy");
  assert_eq!(rejected["decision"], "reject");
  assert_eq!(rejected["decided_by"], "policy:by-risk");
  assert_matches(
    "stage `deploy` has risk critical, at or above critical: rejected by policy",
    rejected["reason"].as_str().unwrap_or_default(),
  );
  assert_eq!(out.one("stage_failed", "deploy")["reason"], "rejected");
  assert_eq!(out.final_status("deploy"), "failed");
  assert_ne!(out.final_status("after-deploy"), "completed");
  assert!(out.named("stage_started", "after-deploy").is_empty());
  // A gate decided by a policy still announces itself first.
  assert!(out.index("gate_waiting", "deploy") < out.index("gate_decided", "deploy"));
}

#[test]
fn an_ask_policy_without_a_terminal_suspends_the_run() {
  let p = Project::new();
  p.hooks(BY_RISK);
  let out = p
    .run(
      r#"
name: ask
config: { hooks: [hooks.lua] }
stages:
  - { id: first, uses: echo }
  - id: signoff
    depends_on: first
    gate: { policy: by-risk }
    risk: high
  - { id: after, depends_on: signoff, uses: echo }
"#,
    )
    .stdout("")
    .stderr(
      "
      run [..] is suspended at signoff
        decide signoff: `swdl approve [..] signoff` or `swdl reject [..] signoff`
        then continue it: `swdl resume [..]`
      ",
    )
    .status(4)
    .run();
  assert!(
    out.named("gate_decided", "signoff").is_empty(),
    "{}",
    out.dump()
  );
  out.one("gate_waiting", "signoff");
  let logged: Vec<&str> = out
    .named("log", "signoff")
    .iter()
    .filter_map(|e| e["message"].as_str())
    .collect();
  assert_matches(
    "policy `by-risk` leaves the decision to a person: stage `signoff` has risk high, above medium: a person decides",
    &logged.join("\n"),
  );
  assert_eq!(out.completed()["status"], "waiting");
  assert_eq!(out.final_status("first"), "completed");
  assert_eq!(out.final_status("signoff"), "waiting");
  assert!(out.named("stage_started", "after").is_empty());
}

#[test]
fn approval_policy_decides_risky_skill_stages() {
  let p = Project::new();
  p.skill(
    "deploy",
    "return { run = function(ctx, input) return { deployed = input.target } end }\n",
  );
  p.hooks(
    r#"
swdl.policy("weekday", function(stage, ctx)
  if stage.risk == "critical" then return "reject", "critical needs a change request" end
  return "approve", string.format("%s %s of %s via %s", stage.kind, stage.risk, stage.id, stage.uses)
end)
"#,
  );
  let out = p
    .run(
      r#"
name: approvals
config:
  hooks: [hooks.lua]
  approval: { policy: weekday, require_for: high }
stages:
  - { id: build, uses: echo, risk: medium }
  - { id: deploy, depends_on: build, uses: deploy, with: { target: prod }, risk: high }
  - { id: drop-db, depends_on: deploy, uses: deploy, with: { target: db }, risk: critical }
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  // Below `require_for`: no approval at all.
  assert!(
    out.named("gate_waiting", "build").is_empty(),
    "{}",
    out.dump()
  );
  assert_eq!(out.final_status("build"), "completed");
  let waiting = out.one("gate_waiting", "deploy");
  assert_eq!(waiting["kind"], "approval");
  let decided = out.one("gate_decided", "deploy");
  assert_eq!(decided["decision"], "approve");
  assert_eq!(decided["decided_by"], "policy:weekday");
  assert_eq!(decided["reason"], "approval high of deploy via deploy");
  assert!(out.index("gate_decided", "deploy") < out.index("stage_started", "deploy"));
  assert_eq!(out.outputs("deploy"), &json!({"deployed": "prod"}));
  let decided = out.one("gate_decided", "drop-db");
  assert_eq!(decided["decision"], "reject");
  assert_eq!(decided["reason"], "critical needs a change request");
  assert!(out.named("stage_started", "drop-db").is_empty());
  assert_eq!(out.final_status("drop-db"), "failed");
}

#[test]
fn a_broken_policy_rejects() {
  let p = Project::new();
  p.hooks(
    r#"
swdl.policy("broken", function(stage, ctx)
  error("policy blew up")
end)
swdl.policy("vague", function(stage, ctx) return "maybe" end)
"#,
  );
  let out = p
    .run(
      r#"
name: fail-closed
config: { hooks: [hooks.lua] }
stages:
  - { id: g1, gate: { policy: broken }, risk: low, on_failure: continue }
  - { id: g2, gate: { policy: vague }, risk: low, on_failure: continue }
  - { id: after, depends_on: g1, uses: echo }
"#,
    )
    .stdout("")
    .stderr("")
    .status(3)
    .run();
  let decided = out.one("gate_decided", "g1");
  assert_eq!(decided["decision"], "reject");
  assert_eq!(decided["decided_by"], "policy:broken");
  assert_matches(
    "
      policy `broken` failed: hooks.lua:3: policy blew up
      stack traceback:
      \t[C]: in global 'error'
      \thooks.lua:3: in function <hooks.lua:2>
    ",
    decided["reason"].as_str().expect("reason"),
  );
  let decided = out.one("gate_decided", "g2");
  assert_eq!(decided["decision"], "reject");
  assert_matches(
    "policy `vague` failed: policy `vague` (hooks.lua) returned \"maybe\": return \"approve\", \"reject\" or \"ask\", optionally followed by a reason",
    decided["reason"].as_str().expect("reason"),
  );
  for gate in ["g1", "g2"] {
    assert_eq!(out.final_status(gate), "failed");
    assert_eq!(out.one("stage_failed", gate)["reason"], "rejected");
  }
  assert!(
    out.named("stage_started", "after").is_empty(),
    "{}",
    out.dump()
  );
}

#[test]
fn lua_flag_adds_hook_files() {
  let p = Project::new();
  p.file(
    "extra/policy.lua",
    "swdl.policy(\"always\", function() return \"approve\", \"from --lua\" end)\n",
  );
  let out = p
    .run("name: flag\nstages:\n  - { id: g, gate: { policy: always } }\n")
    .args(["--lua", "extra/policy.lua"])
    .stdout("")
    .stderr("")
    .status(0)
    .run();
  let decided = out.one("gate_decided", "g");
  assert_eq!(decided["decided_by"], "policy:always");
  assert_eq!(decided["reason"], "from --lua");
}
