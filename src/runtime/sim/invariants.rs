//! What must hold after every step of a simulated run, and of its final statuses.
use super::*;

impl Sim {
  /// Folds new events into the observer's view and checks the invariants that hold at every
  /// step.
  pub(super) fn observe(&mut self) -> Result<(), String> {
    let dag = self.workflow.dag();
    for record in self.core.take_events() {
      if self.trace {
        eprintln!("   {} {:?}", record.event.name(), record.event.stage());
      }
      let stage = record.event.stage().and_then(|s| self.seen.position(s));
      match (&record.event, stage) {
        (Event::StageStarted { .. } | Event::GateWaiting { .. }, Some(i)) => {
          for &d in &dag.deps[i] {
            let status = self.seen.stages[d].status;
            if !status.is_settled() {
              return Err(format!(
                "`{}` started while its dependency `{}` was {}",
                self.workflow.stages[i].id,
                self.workflow.stages[d].id,
                status.as_str()
              ));
            }
          }
          let unit = (i, record.item);
          if self.done.contains(&unit) {
            return Err(format!(
              "`{}` ran again after its completion was committed",
              self.workflow.stages[i].id
            ));
          }
          if let Event::StageStarted { uses, .. } = &record.event {
            let stage = &self.workflow.stages[i];
            if stage.skill().is_some_and(|c| &c.uses == uses) && stage.recover.is_none() {
              let tries = self.tries.entry(unit).or_default();
              *tries += 1;
              if *tries > stage.retry.max_attempts {
                return Err(format!(
                  "`{}` tried {} times with max_attempts {}",
                  stage.id, tries, stage.retry.max_attempts
                ));
              }
            }
            if !self.running.insert(unit) {
              return Err(format!("`{}` started while an attempt ran", stage.id));
            }
            if let Some(limit) = stage.fan_out.as_ref().and_then(|f| f.max_parallel) {
              let items = self
                .running
                .iter()
                .filter(|(s, item)| *s == i && item.is_some())
                .count();
              if items > limit {
                return Err(format!(
                  "{items} items of `{}` in flight with its max_parallel {limit}",
                  stage.id
                ));
              }
            }
            let in_flight = self.running.len();
            if in_flight > self.core.options.max_parallel {
              return Err(format!(
                "{in_flight} attempts in flight with max_parallel {}",
                self.core.options.max_parallel
              ));
            }
          }
        }
        (
          Event::StageCompleted { .. }
          | Event::StageFailed { .. }
          | Event::StageTimedOut { .. }
          | Event::StageCancelled { .. },
          Some(i),
        ) => {
          self.running.remove(&(i, record.item));
          if let Event::StageCompleted { .. } = record.event {
            self.done.insert((i, record.item));
          }
        }
        (Event::CompensationStarted { .. }, Some(i)) => {
          self.stats.compensations += 1;
          // Most recently completed first.
          let unit = (i, record.item);
          let completed_at = |log: &[EventRecord], (i, item): Unit| {
            log.iter().rposition(|r| {
              r.item == item
                && matches!(&r.event, Event::StageCompleted { stage, .. } if *stage == self.workflow.stages[i].id)
            })
          };
          let this = completed_at(&self.log, unit);
          if this.is_none() {
            return Err(format!(
              "`{}` compensated without completing",
              self.workflow.stages[i].id
            ));
          }
          if let Some(previous) = self.compensating
            && completed_at(&self.log, previous) < this
          {
            return Err(format!(
              "`{}` compensated after `{}`, which completed before it",
              self.workflow.stages[i].id, self.workflow.stages[previous.0].id
            ));
          }
          self.compensating = Some(unit);
        }
        (Event::StageRetrying { .. }, Some(i)) => {
          self.stats.retries += 1;
          self.running.remove(&(i, record.item));
        }
        _ => {}
      }
      if let Event::StageTimedOut { .. } = record.event {
        self.stats.timeouts += 1;
      }
      self.stats.events += 1;
      self.seen.apply(&record);
      self.log.push(record.clone());
      self.all.push(record);
    }
    Ok(())
  }

  /// docs/running.md, "Stage statuses" and "Failures": what a finished run's statuses must look like.
  pub(super) fn final_statuses(&self) -> Result<(), String> {
    let state = &self.seen;
    let dag = self.workflow.dag();
    let id = |i: usize| self.workflow.stages[i].id.as_str();
    let failed = |i: usize| {
      matches!(
        state.stages[i].status,
        StageStatus::Failed | StageStatus::TimedOut
      )
    };
    let ignored = |i: usize| self.core.slots[i].ignored;
    match state.status {
      RunStatus::Waiting => {
        if !state
          .stages
          .values()
          .any(|s| s.status == StageStatus::Waiting)
        {
          return Err("the run suspended with no stage waiting".into());
        }
      }
      status => {
        for (i, s) in state.stages.values().enumerate() {
          if !s.status.is_settled() {
            return Err(format!(
              "the run ended {} with `{}` still {}",
              status.as_str(),
              id(i),
              s.status.as_str()
            ));
          }
        }
        let real_failure = (0..state.stages.len()).any(|i| failed(i) && !ignored(i));
        if status == RunStatus::Completed && real_failure {
          return Err("the run completed although a stage failed".into());
        }
        // A cancel that reached a run not already stopping ends it cancelled.
        if self.cancel_took && status != RunStatus::Cancelled {
          return Err(format!(
            "the run was cancelled but ended {}",
            status.as_str()
          ));
        }
      }
    }
    // A stage without `if` ran only when nothing upstream, however far, failed (unless
    // ignored) or was cancelled: `success()` looks at every ancestor.
    let mut troubled = vec![false; state.stages.len()];
    for &i in &dag.order {
      troubled[i] = dag.deps[i].iter().any(|&d| {
        troubled[d]
          || (failed(d) && !ignored(d))
          || state.stages[d].status == StageStatus::Cancelled
      });
    }
    for (i, stage) in self.workflow.stages.iter().enumerate() {
      if stage.condition.is_some() || state.stages[i].status != StageStatus::Completed {
        continue;
      }
      if troubled[i] {
        return Err(format!(
          "`{}` completed although something upstream failed or was cancelled",
          id(i)
        ));
      }
      for &d in &dag.deps[i] {
        let dep = &state.stages[d];
        let fine = match dep.status {
          StageStatus::Completed => true,
          StageStatus::Skipped => dep.reason.as_deref() != Some("dependency"),
          StageStatus::Failed | StageStatus::TimedOut => ignored(d),
          _ => false,
        };
        if !fine {
          return Err(format!(
            "`{}` completed although its dependency `{}` is {} ({:?})",
            id(i),
            id(d),
            dep.status.as_str(),
            dep.reason
          ));
        }
      }
    }
    // docs/running.md, "Failures": dependents of a stage that failed under `continue` are skipped (or
    // cancelled, once the run stopped) unless their `if` asks otherwise.
    for (f, stage) in self.workflow.stages.iter().enumerate() {
      if state.status == RunStatus::Waiting
        || !failed(f)
        || stage.on_failure != OnFailure::Continue
        || ignored(f)
      {
        continue;
      }
      for &d in &dag.dependents[f] {
        let dependent = &state.stages[d];
        if self.workflow.stages[d].condition.is_none()
          && !matches!(
            dependent.status,
            StageStatus::Skipped | StageStatus::Cancelled
          )
        {
          return Err(format!(
            "`{}` is {} although `{}` failed under `continue`",
            id(d),
            dependent.status.as_str(),
            id(f)
          ));
        }
      }
    }
    // SPEC section 11: a fanned-out stage completes when every item did, and fails only when
    // one of its items failed or timed out.
    for (i, stage) in self.workflow.stages.iter().enumerate() {
      if stage.fan_out.is_none() || state.status == RunStatus::Waiting {
        continue;
      }
      let s = &state.stages[i];
      let done = |st: StageStatus| matches!(st, StageStatus::Completed | StageStatus::Skipped);
      let items_failed = s.items.iter().any(|item| {
        matches!(
          item.state.status,
          StageStatus::Failed | StageStatus::TimedOut
        )
      });
      let bad = match s.status {
        StageStatus::Completed => !s.items.iter().all(|item| done(item.state.status)),
        StageStatus::Failed | StageStatus::TimedOut if s.reason.as_deref() != Some("rejected") => {
          s.reason.as_deref() == Some("items") && !items_failed
        }
        _ => false,
      };
      if bad {
        return Err(format!(
          "`{}` ended {} with items {:?}",
          id(i),
          s.status.as_str(),
          s.items
            .iter()
            .map(|item| item.state.status)
            .collect::<Vec<_>>()
        ));
      }
    }
    // A rejected gate or approval fails its stage (reason `rejected`) and the run exits 3.
    let rejected = state
      .stages
      .values()
      .any(|s| s.status == StageStatus::Failed && s.reason.as_deref() == Some("rejected"));
    let outcome = self.core.outcome();
    let code = exit::of_run(outcome.state.status, outcome.rejected);
    if rejected && code != exit::CANCELLED {
      return Err(format!("a gate was rejected but the run would exit {code}"));
    }
    // When the run timeout expires the run fails.
    if self.core.stop == Some(machine::Stop::Timeout) && state.status != RunStatus::Failed {
      return Err(format!(
        "the run timed out but ended {}",
        state.status.as_str()
      ));
    }
    // Under `on_failure: ignore` a failure never fails the run; under `halt` nothing that was
    // not already settled or clean-up runs after it.
    if state.status == RunStatus::Completed {
      for (i, stage) in self.workflow.stages.iter().enumerate() {
        if failed(i) && stage.on_failure != OnFailure::Ignore {
          return Err(format!("the run completed with `{}` failed", id(i)));
        }
      }
    }
    Ok(())
  }
}
