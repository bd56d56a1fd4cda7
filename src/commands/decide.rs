//! `swdl approve` and `swdl reject`: a decision for a gate or risky stage a run waits at, handed
//! to the live run or recorded for `swdl resume`.
use super::*;
use crate::{
  cli::DecideArgs,
  event::{Event, StageStatus},
  store::{Request, StoreError},
};
use std::io::Write;

/// `swdl approve|reject RUN_ID STAGE`.
pub(super) fn decide(args: &DecideArgs, decision: GateDecision) -> Result<Done, Error> {
  let mut store = store_of_run(args.store.as_deref(), &args.run_id)?;
  let row = store.run(&args.run_id)?;
  let events = store.events(&row.id)?;
  // The latest wait of the stage, with its timeout, which counts from when it first opened.
  let waited = events.iter().rev().find_map(|r| match &r.event {
    Event::GateWaiting {
      stage, timeout_ms, ..
    } if *stage == args.stage => Some(*timeout_ms),
    _ => None,
  });
  let opened = events.iter().find_map(|r| match &r.event {
    Event::GateWaiting { stage, .. } if *stage == args.stage => event::parse_rfc3339(&r.ts),
    _ => None,
  });
  let state = runs::fold(&row, events)?;
  let Some(stage) = state.stages.get(&args.stage) else {
    let hint = suggest::hint(&args.stage, state.stages.keys().map(String::as_str));
    return Err(Error::Store(StoreError::Refused(format!(
      "run `{}` has no stage `{}`{hint}",
      row.id, args.stage
    ))));
  };
  if stage.status != StageStatus::Waiting {
    return Err(Error::Store(StoreError::Refused(format!(
      "stage `{}` of run `{}` is not waiting for a decision (it is {})",
      args.stage,
      row.id,
      stage.status.as_str()
    ))));
  }
  if matches!(row.effective_status(), "completed" | "failed" | "cancelled") {
    return Err(Error::Store(StoreError::Refused(format!(
      "run `{}` already finished ({})",
      row.id, row.status
    ))));
  }
  if let (Some(Some(timeout_ms)), Some(opened)) = (waited, opened) {
    let now = u64::try_from(store::now_ms()).unwrap_or(0);
    if now.saturating_sub(opened) >= timeout_ms {
      return Err(Error::Store(StoreError::Refused(format!(
        "the gate `{}` of run `{}` timed out; `swdl resume {}` decides it as its `on_timeout` \
         says",
        args.stage, row.id, row.id
      ))));
    }
  }
  // A gate is decided once: a second decision would silently replace the first.
  if let Some(earlier) = store.undecided_decision(&row.id, &args.stage)? {
    let then = if row.is_live() {
      "the run applies it".to_string()
    } else {
      format!("`swdl resume {}` applies it", row.id)
    };
    return Err(Error::Store(StoreError::Refused(format!(
      "the gate `{}` of run `{}` was already decided ({earlier}); {then}",
      args.stage, row.id
    ))));
  }
  let mut inputs = serde_json::Map::new();
  for arg in &args.inputs {
    let Some((name, raw)) = arg.split_once('=') else {
      return Err(Error::Usage(format!("--input `{arg}` is not `name=value`")));
    };
    let value =
      serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
    inputs.insert(name.to_string(), value);
  }
  let prior = PriorDecision {
    decision,
    by: std::env::var("USER")
      .ok()
      .filter(|u| !u.is_empty())
      .map_or_else(|| "user:unknown".to_string(), |u| format!("user:{u}")),
    reason: args.reason.clone(),
    inputs: (!inputs.is_empty()).then_some(serde_json::Value::Object(inputs)),
  };
  let verb = match decision {
    GateDecision::Approve => "approved",
    GateDecision::Reject => "rejected",
  };
  let mut stderr = std::io::stderr();
  if row.is_live() {
    store.request(
      &row.id,
      &Request::Decide {
        stage: args.stage.clone(),
        decision: prior,
      },
    )?;
    writeln!(
      stderr,
      "{verb} `{}`: run {} (process {}) continues",
      args.stage,
      row.id,
      row.pid.unwrap_or_default()
    )?;
  } else {
    // Two deciders at once: the table's key lets only the first in.
    if let Err(e) = store.record_decision(&row.id, &args.stage, &prior) {
      return Err(
        match e {
          StoreError::Sql(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
          {
            StoreError::Refused(format!(
              "the gate `{}` of run `{}` was just decided by someone else",
              args.stage, row.id
            ))
          }
          other => other,
        }
        .into(),
      );
    }
    writeln!(
      stderr,
      "{verb} `{}` of run {}; continue it with `swdl resume {}`",
      args.stage, row.id, row.id
    )?;
  }
  Ok(Done::Ok)
}
