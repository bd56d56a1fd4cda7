//! `swdl cancel`: asks a live run to cancel and waits for it to stop, or records the
//! cancellation of a suspended or crashed run itself.
use super::*;
use crate::{
  event::{Event, EventRecord, RunStatus, StageStatus},
  store::Request,
};
use std::{io::Write, path::Path, time::Duration};

/// How long `swdl cancel` waits for a live run to record that it stopped.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// `swdl cancel RUN_ID`.
pub(super) fn cancel(run_id: &str, dir: Option<&Path>) -> Result<Done, Error> {
  let mut store = store_of_run(dir, run_id)?;
  let row = store.run(run_id)?;
  let mut stderr = std::io::stderr();
  if row.is_live() {
    store.request(&row.id, &Request::Cancel)?;
    let started = std::time::Instant::now();
    while started.elapsed() < CANCEL_WAIT {
      std::thread::sleep(Duration::from_millis(100));
      let now = store.run(&row.id)?;
      if !matches!(now.status.as_str(), "running" | "paused") || !now.is_live() {
        writeln!(stderr, "run {} {}", row.id, now.effective_status())?;
        return Ok(Done::Ok);
      }
    }
    writeln!(
      stderr,
      "asked run {} (process {}) to cancel; it is still stopping",
      row.id,
      row.pid.unwrap_or_default()
    )?;
    return Ok(Done::Ok);
  }
  // Suspended or crashed: nothing executes it, so record the cancellation here.
  let (row, _) = store.claim(run_id)?;
  let state = runs::fold(&row, store.events(&row.id)?)?;
  let mut seq = store.next_seq(&row.id)?;
  let record = |event: Event| EventRecord {
    ts: event::now_rfc3339(),
    run: Arc::from(row.id.as_str()),
    item: None,
    key: None,
    event,
  };
  let mut stages = indexmap::IndexMap::new();
  for (id, stage) in &state.stages {
    let mut status = stage.status;
    if !status.is_settled() {
      store.append(
        seq,
        &record(Event::StageCancelled {
          stage: id.clone(),
          attempt: None,
          reason: "cancelled".into(),
        }),
      )?;
      seq += 1;
      status = StageStatus::Cancelled;
    }
    stages.insert(id.clone(), status);
  }
  store.append(
    seq,
    &record(Event::RunCompleted {
      status: RunStatus::Cancelled,
      outputs: serde_json::json!({}),
      stages,
      error: Some("cancelled".into()),
      duration_ms: u64::try_from(store::now_ms() - row.created_ms).unwrap_or(0),
    }),
  )?;
  writeln!(stderr, "run {} cancelled", row.id)?;
  Ok(Done::Ok)
}
