//! Gates and risk approvals: opening one, who decides it (a prior decision, the command line's
//! flags, an approval policy, a person, or its timeout), and what the decision does.
use super::machine::{Command, Core};
use super::*;
use crate::{decision::GateDecision, event::Event};

impl Core {
  /// Whether skill stage `i` must be approved before it starts.
  pub(super) fn needs_approval(&self, i: usize) -> bool {
    let stage = &self.workflow.stages[self.stage_of(i)];
    let Some(require) = self
      .workflow
      .config
      .approval
      .as_ref()
      .and_then(|a| a.require_for)
    else {
      return false;
    };
    !self.slots[i].approved && stage.risk.is_some_and(|r| r >= require)
  }

  /// Opens the gate (or approval, by `kind`) of stage `i` and has it decided by the first that
  /// can: a decision recorded meanwhile, the flags, a policy, or else a person.
  pub(super) fn open_gate(&mut self, i: usize, kind: &str) {
    let stage = &self.workflow.stages[self.stage_of(i)];
    let id = stage.id.clone();
    let gate = stage.gate();
    let message = gate.and_then(|g| g.message.as_ref()).map(|m| {
      let ctx = self.context(i, self.flags(i));
      m.template
        .eval(&ctx)
        .map_or_else(|_| m.text.clone(), |v| v.to_text())
    });
    let message = message.or_else(|| {
      (kind == "approval").then(|| {
        format!(
          "Stage `{id}` has risk {} and needs approval",
          stage.risk.map_or("?", scope::risk_name)
        )
      })
    });
    if let Some(prior) = self.prior_decisions.remove(&id) {
      self.announce_gate(i, kind, message);
      self.decide(i, prior.decision, prior.by, prior.reason, prior.inputs);
      return;
    }
    let up_front = if self.options.reject.contains(&id) {
      Some(GateDecision::Reject)
    } else if self.options.approve_all || self.options.approve.contains(&id) {
      Some(GateDecision::Approve)
    } else {
      None
    };
    if let Some(decision) = up_front {
      self.announce_gate(i, kind, message);
      self.decide(i, decision, "flag".into(), None, None);
      return;
    }
    // Then an approval policy, if the gate names one (or the workflow has a default policy).
    let policy = gate.and_then(|g| g.policy.clone()).or_else(|| {
      self
        .workflow
        .config
        .approval
        .as_ref()
        .and_then(|a| a.policy.clone())
    });
    if let Some(name) = policy
      && self.options.hooks
    {
      let request = hooks::PolicyStage {
        id,
        kind: kind.to_string(),
        risk: stage.risk.map(scope::risk_name).map(str::to_string),
        uses: stage.skill().map(|c| c.uses.clone()),
        message: message.clone(),
        run_id: self.options.run_id.clone(),
        params: self.options.masked_params(),
        memory: self.memory.view().entries(),
      };
      self.slots[i].asking = true;
      self.slots[i].gate_ask = Some((kind.to_string(), message));
      self.asks += 1;
      self.commands.push_back(Command::AskPolicy {
        stage: i,
        policy: name,
        request,
      });
      return;
    }
    // Left to a person (a prompt, a decision sent in, or the gate's timeout).
    self.announce_gate(i, kind, message);
  }

  /// Emits `gate_waiting`; the fold makes the stage wait, with its deadline.
  fn announce_gate(&mut self, i: usize, kind: &str, message: Option<String>) {
    let id = self.id(i);
    let timeout_ms = self.workflow.stages[self.stage_of(i)]
      .gate()
      .and_then(|g| g.timeout)
      .map(machine::millis);
    self.emit(Event::GateWaiting {
      stage: id,
      message,
      kind: kind.to_string(),
      timeout_ms,
    });
  }

  /// A policy answered for stage `i`.
  pub(super) fn on_policy(
    &mut self,
    i: usize,
    policy: &str,
    result: Result<hooks::PolicyDecision, String>,
  ) {
    if !self.slots[i].asking {
      return;
    }
    self.slots[i].asking = false;
    self.asks -= 1;
    let (kind, message) = self.slots[i].gate_ask.take().unwrap_or_default();
    // The run may have stopped while the policy was thinking.
    if self.slots[i].settled {
      return;
    }
    if let Some(stop) = self.stop {
      self.cancel_pending(i, stop);
      return;
    }
    self.announce_gate(i, &kind, message);
    let by = format!("policy:{policy}");
    match result {
      Ok(hooks::PolicyDecision::Approve { reason }) => {
        self.decide(i, GateDecision::Approve, by, reason, None);
      }
      Ok(hooks::PolicyDecision::Reject { reason }) => {
        self.decide(i, GateDecision::Reject, by, reason, None);
      }
      Ok(hooks::PolicyDecision::Ask { reason }) => {
        let id = self.id(i);
        let why = reason.map_or_else(String::new, |r| format!(": {r}"));
        self.emit(Event::Log {
          stage: id,
          attempt: 0,
          stream: "log".into(),
          message: format!("policy `{policy}` leaves the decision to a person{why}"),
          compensation: false,
          tokens: None,
        });
      }
      // A broken policy must not let anything through: fail closed.
      Err(error) => {
        let reason = Some(format!("policy `{policy}` failed: {error}"));
        self.decide(i, GateDecision::Reject, by, reason, None);
      }
    }
  }

  /// Records a decision on stage `i`'s gate or approval and carries it out.
  pub(super) fn decide(
    &mut self,
    i: usize,
    decision: GateDecision,
    by: String,
    reason: Option<String>,
    inputs: Option<serde_json::Value>,
  ) {
    let id = self.id(i);
    self.emit(Event::GateDecided {
      stage: id.clone(),
      decision,
      decided_by: by.clone(),
      reason: reason.clone(),
      inputs: inputs.clone(),
    });
    let is_gate = self.workflow.stages[self.stage_of(i)].gate().is_some();
    match decision {
      GateDecision::Approve if is_gate => {
        let mut outputs = serde_json::Map::new();
        if let Some(serde_json::Value::Object(fields)) = inputs {
          outputs.extend(fields);
        }
        outputs.insert("decision".into(), "approve".into());
        outputs.insert("decided_by".into(), by.into());
        outputs.insert(
          "reason".into(),
          reason.map_or(serde_json::Value::Null, Into::into),
        );
        self.emit(Event::StageCompleted {
          stage: id,
          attempt: 0,
          uses: "gate".into(),
          outputs: Arc::new(serde_json::Value::Object(outputs)),
          summary: Some("approved".into()),
          duration_ms: 0,
          artifacts: Vec::new(),
          hints: Vec::new(),
          reused_from: None,
          inputs: None,
        });
      }
      GateDecision::Approve => self.admit(i),
      GateDecision::Reject => {
        let why = reason.map_or_else(
          || format!("rejected by {by}"),
          |r| format!("rejected by {by}: {r}"),
        );
        self.fail_without_attempt(i, why, "rejected");
      }
    }
  }
}
