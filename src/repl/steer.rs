//! Commands that steer the live run: breakpoints, `step`, `continue`, gate decisions.
use super::*;

impl Session {
  pub(super) fn stage_id(&self, arg: &str) -> Result<String, String> {
    let workflow = self.workflow()?;
    let arg = arg.trim();
    if arg.is_empty() {
      return Err("which stage?".into());
    }
    if workflow.stages.iter().any(|s| s.id == arg) {
      return Ok(arg.to_string());
    }
    let hint = suggest::hint(arg, workflow.stages.iter().map(|s| s.id.as_str()));
    Err(format!("no stage `{arg}`{hint}"))
  }

  pub(super) fn set_break(&mut self, arg: &str, on: bool) -> Outcome {
    let id = self.stage_id(arg)?;
    let live = self.live()?;
    let message = if on {
      Control::Steer(Steer::Break(id.clone()))
    } else {
      Control::Steer(Steer::Unbreak(id.clone()))
    };
    let _ = live.control.send(message);
    if on {
      self.breakpoints.insert(id.clone());
      self.say(&format!("breakpoint before `{id}`"));
    } else {
      let message = if self.breakpoints.remove(&id) {
        format!("breakpoint before `{id}` removed")
      } else {
        format!("no breakpoint at `{id}` to remove")
      };
      self.say(&message);
    }
    Ok(())
  }

  pub(super) fn step(&mut self) -> Outcome {
    self.ensure_running()?;
    let before = self.sync(true).unwrap_or_default();
    if !before.paused {
      let _ = self.live()?.control.send(Control::Steer(Steer::Pause));
    }
    let _ = self.live()?.control.send(Control::Steer(Steer::Step));
    let after = self.sync(true).unwrap_or_default();
    let started: Vec<String> = after
      .running
      .iter()
      .filter(|s| !before.running.contains(s))
      .cloned()
      .collect();
    if let Some(stage) = started.first().cloned() {
      self.wait(|event| match event {
        Event::StageCompleted { stage: s, .. }
        | Event::StageFailed { stage: s, .. }
        | Event::StageTimedOut { stage: s, .. }
        | Event::StageCancelled { stage: s, .. }
        | Event::StageRetrying { stage: s, .. } => *s == stage,
        _ => false,
      });
      return Ok(());
    }
    let progressed = after.settled > before.settled || after.waiting.len() > before.waiting.len();
    if !progressed && !self.finished() {
      let why = if !after.waiting.is_empty() {
        format!(
          "waiting for a decision on {}: `approve STAGE` or `reject STAGE`",
          after.waiting.join(", ")
        )
      } else if !after.running.is_empty() {
        format!("still running: {}", after.running.join(", "))
      } else if !after.delayed.is_empty() {
        format!("waiting out a retry delay: {}", after.delayed.join(", "))
      } else {
        "nothing is ready to start".into()
      };
      self.say(&why);
    }
    Ok(())
  }

  pub(super) fn cont(&mut self) -> Outcome {
    self.ensure_running()?;
    let _ = self.live()?.control.send(Control::Steer(Steer::Resume));
    let mut gate = None;
    self.wait(|event| match event {
      Event::RunPaused { .. } => true,
      Event::GateWaiting { stage, .. } => {
        gate = Some(stage.clone());
        true
      }
      _ => false,
    });
    if let Some(stage) = gate {
      // Hold the run at the gate: what runs finishes, nothing new starts.
      let _ = self.live()?.control.send(Control::Steer(Steer::Pause));
      self.sync(true);
      self.say(&format!(
        "stopped at gate `{stage}`: `approve {stage}` or `reject {stage}`, then `continue`"
      ));
    } else if !self.finished()
      && let Some(snapshot) = self.sync(true)
      && !snapshot.waiting.is_empty()
      && snapshot.running.is_empty()
    {
      let _ = self.live()?.control.send(Control::Steer(Steer::Pause));
      self.say(&format!(
        "waiting for a decision on {}: `approve STAGE` or `reject STAGE`, then `continue`",
        snapshot.waiting.join(", ")
      ));
    }
    Ok(())
  }

  pub(super) fn decide(&mut self, arg: &str, decision: GateDecision) -> Outcome {
    let (stage, reason) = arg
      .split_once(char::is_whitespace)
      .map_or((arg, None), |(s, r)| (s, Some(r.trim().to_string())));
    let id = self.stage_id(stage)?;
    self.ensure_running()?;
    let snapshot = self.sync(true).unwrap_or_default();
    if !snapshot.waiting.contains(&id) {
      return Err(format!(
        "`{id}` is not waiting for a decision{}",
        if snapshot.waiting.is_empty() {
          String::new()
        } else {
          format!(" (waiting: {})", snapshot.waiting.join(", "))
        }
      ));
    }
    let by = std::env::var("USER")
      .ok()
      .filter(|u| !u.is_empty())
      .map_or_else(|| "repl".to_string(), |u| format!("repl:{u}"));
    let _ = self.live()?.control.send(Control::Steer(Steer::Decide {
      stage: id,
      decision,
      by,
      reason,
      inputs: None,
    }));
    self.sync(true);
    Ok(())
  }
}
