//! Commands that rewrite the run's history and continue from it in a fresh engine: `retry`,
//! `skip`, `set`, `reload`, `restart`.
use super::*;

impl Session {
  /// Continues from the recorded events as `edit` leaves them, in a fresh engine.
  pub(super) fn rebuild(&mut self, edit: impl FnOnce(&mut Vec<EventRecord>, &Workflow)) -> Outcome {
    self.pump(true);
    let workflow = self.workflow()?;
    let mut log = self.history_before_the_end();
    edit(&mut log, &workflow);
    self.start(log)
  }

  pub(super) fn retry(&mut self, arg: &str) -> Outcome {
    let id = self.stage_id(arg)?;
    let status = self.stage_status(&id)?;
    if !status.is_settled() {
      return Err(format!(
        "`{id}` is {}: only a finished stage can be retried",
        status.as_str()
      ));
    }
    // The stage runs again, so its breakpoint (and those after it) may stop it again.
    self.passed.clear();
    self.rebuild(|log, workflow| reopen(log, workflow, &id, true))?;
    self.say(&format!(
      "`{id}` and what follows it will run again: `step` or `continue`"
    ));
    Ok(())
  }

  pub(super) fn skip(&mut self, arg: &str) -> Outcome {
    let id = self.stage_id(arg)?;
    let status = self.stage_status(&id)?;
    if matches!(
      status,
      StageStatus::Completed | StageStatus::Skipped | StageStatus::Running
    ) {
      return Err(format!(
        "`{id}` is {}: only a failed or pending stage can be skipped",
        status.as_str()
      ));
    }
    self.rebuild(|log, workflow| {
      reopen(log, workflow, &id, true);
      let run = log
        .first()
        .map_or_else(|| Arc::from("repl"), |r| Arc::clone(&r.run));
      log.push(EventRecord {
        ts: event::now_rfc3339(),
        run,
        item: None,
        key: None,
        event: Event::StageSkipped {
          stage: id.clone(),
          reason: "skipped by the user".into(),
        },
      });
    })?;
    self.say(&format!("`{id}` skipped: `step` or `continue`"));
    Ok(())
  }

  pub(super) fn set(&mut self, arg: &str) -> Outcome {
    let usage = || "set needs `STAGE.outputs.KEY = VALUE`".to_string();
    let (path, value) = arg.split_once('=').ok_or_else(usage)?;
    let mut parts = path.trim().splitn(3, '.');
    let (Some(stage), Some("outputs"), Some(key)) = (parts.next(), parts.next(), parts.next())
    else {
      return Err(usage());
    };
    let id = self.stage_id(stage)?;
    let key = key.trim().to_string();
    let raw = value.trim();
    let value: serde_json::Value =
      serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
    if self.stage_status(&id)? != StageStatus::Completed {
      return Err(format!(
        "`{id}` has not completed: only a completed stage's outputs can be set"
      ));
    }
    let shown = value.to_string();
    self.rebuild(|log, _| {
      for record in log.iter_mut().rev() {
        if let Event::StageCompleted { stage, outputs, .. } = &mut record.event
          && *stage == id
        {
          let mut changed = (**outputs).clone();
          if let serde_json::Value::Object(map) = &mut changed {
            map.insert(key.clone(), value.clone());
          }
          *outputs = Arc::new(changed);
          break;
        }
      }
    })?;
    self.say(&format!(
      "{stage}.outputs.{key} = {shown}; stages that already ran keep their results (`retry` them)"
    ));
    Ok(())
  }

  pub(super) fn stage_status(&mut self, id: &str) -> Result<StageStatus, String> {
    self.pump(true);
    let live = self.live()?;
    Ok(
      live
        .state
        .stages
        .get(id)
        .map_or(StageStatus::Pending, |s| s.status),
    )
  }

  pub(super) fn reload(&mut self) -> Outcome {
    let file = self.file.clone().ok_or("no workflow loaded: `load FILE`")?;
    let new = load_workflow(&file, self.color)?;
    self.pump(true);
    let old = self.workflow()?;
    let fingerprint = |w: &Workflow| -> HashMap<String, String> {
      w.stages
        .iter()
        .map(|s| (s.id.clone(), serde_json::to_string(s).unwrap_or_default()))
        .collect()
    };
    let (before, after) = (fingerprint(&old), fingerprint(&new));
    let changed: Vec<String> = after
      .iter()
      .filter(|(id, text)| before.get(*id) != Some(*text))
      .map(|(id, _)| id.clone())
      .collect();
    let lua = launch::start_lua(&new, &file, &[]).map_err(|e| render(&e, self.color))?;
    let mut log = self.history_before_the_end();
    let new = Arc::new(new);
    // Changed stages run again, and so does everything after them.
    for id in &changed {
      reopen(&mut log, &new, id, false);
    }
    // Events of stages the file no longer has are dropped.
    log.retain(|r| r.event.stage().is_none_or(|s| after.contains_key(s)));
    self.workflow = Some(new);
    self.lua = lua;
    self.breakpoints.retain(|b| after.contains_key(b));
    self.start(log)?;
    let mut changed = changed;
    changed.sort();
    self.say(&if changed.is_empty() {
      "reloaded; no stage changed".to_string()
    } else {
      format!(
        "reloaded; changed: {} (they and what follows run again)",
        changed.join(", ")
      )
    });
    Ok(())
  }

  pub(super) fn restart(&mut self) -> Outcome {
    self.start(Vec::new())?;
    self.say("restarted: nothing has run");
    Ok(())
  }
}

/// Drops what made `id` (and every stage after it) settled, so they run again; with
/// `stopped`, also stages cancelled because the run halted.
fn reopen(log: &mut Vec<EventRecord>, workflow: &Workflow, id: &str, stopped: bool) {
  let mut again: BTreeSet<String> = BTreeSet::new();
  again.insert(id.to_string());
  // Descendants, by walking dependents until nothing new is added.
  loop {
    let before = again.len();
    for stage in &workflow.stages {
      if stage.depends_on.iter().any(|d| again.contains(d)) {
        again.insert(stage.id.clone());
      }
    }
    if again.len() == before {
      break;
    }
  }
  if stopped {
    for record in log.iter() {
      if let Event::StageCancelled { stage, reason, .. } = &record.event
        && reason != "cancelled"
      {
        again.insert(stage.clone());
      }
    }
  }
  log.retain(|record| match &record.event {
    Event::StageCompleted { stage, .. }
    | Event::StageFailed { stage, .. }
    | Event::StageTimedOut { stage, .. }
    | Event::StageSkipped { stage, .. }
    | Event::StageCancelled { stage, .. }
    | Event::GateWaiting { stage, .. }
    | Event::GateDecided { stage, .. }
    // What followed a failed attempt is decided afresh for a stage that runs again.
    | Event::StageRetrying { stage, .. }
    | Event::RecoveryDecided { stage, .. }
    | Event::CompensationStarted { stage, .. }
    | Event::CompensationCompleted { stage, .. }
    | Event::CompensationFailed { stage, .. } => !again.contains(stage),
    _ => true,
  });
}

impl Session {
  /// The live run's events so far, without its `run_completed`: the history a rewrite edits
  /// before a fresh engine continues from it.
  fn history_before_the_end(&self) -> Vec<EventRecord> {
    let mut log = self
      .live
      .as_ref()
      .map(|l| l.log.clone())
      .unwrap_or_default();
    log.retain(|r| !matches!(r.event, Event::RunCompleted { .. }));
    log
  }
}
