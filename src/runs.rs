//! The store's commands besides `run` and `resume`: `swdl runs`, `approve`, `reject`, `cancel`
//! and `pause`.
use super::*;
use crate::{
  cli::{DecideArgs, Format},
  commands::Error,
  event::{Event, EventRecord, RunStatus, StageStatus},
  runtime::PriorDecision,
  state::RunState,
  store::{Request, RunRow, Store, StoreError},
  workflow::GateDecision,
};
use std::{io::Write, path::Path, time::Duration};

/// How long `swdl cancel` waits for a live run to record that it stopped.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

fn open(dir: Option<&Path>) -> Result<Store, Error> {
  let dir = store::resolve_dir(dir)
    .ok_or_else(|| Error::Usage("`--store none` keeps no runs: name a store directory".into()))?;
  Ok(Store::open(&dir)?)
}

/// The run's state: the fold of its recorded events.
fn fold(row: &RunRow, events: Vec<EventRecord>) -> Result<RunState, Error> {
  let workflow = loader::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?;
  let mut state = RunState::new(&workflow, &row.id);
  for record in events {
    state.apply(&record);
  }
  Ok(state)
}

/// `swdl runs [RUN_ID]`.
pub(crate) fn list_or_show(
  run_id: Option<&str>,
  status: Option<&str>,
  format: Format,
  dir: Option<&Path>,
) -> Result<i32, Error> {
  const STATUSES: [&str; 7] = [
    "running",
    "paused",
    "waiting",
    "crashed",
    "completed",
    "failed",
    "cancelled",
  ];
  if let Some(status) = status
    && !STATUSES.contains(&status)
  {
    let hint = suggest::hint(status, STATUSES);
    return Err(Error::Usage(format!(
      "unknown status `{status}`{hint}; one of: {}",
      STATUSES.join(", ")
    )));
  }
  let store = open(dir)?;
  let mut out = std::io::stdout().lock();
  let Some(id) = run_id else {
    let runs = store.runs(status)?;
    if format == Format::Json {
      let list: Vec<serde_json::Value> = runs.iter().map(summary_json).collect();
      writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
      )?;
      return Ok(exit::OK);
    }
    if runs.is_empty() {
      writeln!(out, "no runs in {}", store.path().display())?;
      return Ok(exit::OK);
    }
    writeln!(
      out,
      "{:<22} {:<10} {:<24} {:<20} {:>9}",
      "RUN", "STATUS", "WORKFLOW", "STARTED (UTC)", "DURATION"
    )?;
    for run in &runs {
      writeln!(
        out,
        "{:<22} {:<10} {:<24} {:<20} {:>9}",
        run.id,
        run.effective_status(),
        truncate(&run.workflow, 24),
        utc(run.created_ms),
        duration_text(run),
      )?;
    }
    return Ok(exit::OK);
  };
  let row = store.run(id)?;
  let events = store.events(id)?;
  let attempts = store::attempts_of(&events);
  let decisions = store::decisions_of(&events);
  let logs = store::logs_of(&events);
  let state = fold(&row, events)?;
  if format == Format::Json {
    let value = serde_json::json!({
      "run": summary_json(&row),
      "state": state,
      "attempts": attempts,
      "decisions": decisions,
      "logs": logs.iter().map(|(stage, attempt, stream, message)| serde_json::json!({
        "stage": stage, "attempt": attempt, "stream": stream, "message": message,
      })).collect::<Vec<_>>(),
    });
    writeln!(
      out,
      "{}",
      serde_json::to_string_pretty(&value).unwrap_or_default()
    )?;
    return Ok(exit::OK);
  }
  writeln!(out, "run       {}", row.id)?;
  writeln!(out, "workflow  {} ({})", row.workflow, row.file)?;
  writeln!(out, "status    {}", row.effective_status())?;
  writeln!(out, "started   {} UTC", utc(row.created_ms))?;
  writeln!(out, "duration  {}", duration_text(&row))?;
  if row.attempt > 1 {
    writeln!(out, "resumed   {} times", row.attempt - 1)?;
  }
  if row.params.as_object().is_some_and(|m| !m.is_empty()) {
    writeln!(out, "params    {}", row.params)?;
  }
  if let Some(outputs) = row
    .outputs
    .as_ref()
    .filter(|o| o.as_object().is_some_and(|m| !m.is_empty()))
  {
    writeln!(out, "outputs   {outputs}")?;
  }
  if let Some(error) = &row.error {
    writeln!(out, "error     {error}")?;
  }
  writeln!(out, "\nstages")?;
  for (id, stage) in &state.stages {
    let detail = stage
      .error
      .as_deref()
      .or(stage.reason.as_deref())
      .unwrap_or_default();
    writeln!(
      out,
      "  {:<24} {:<10} attempts {:<3} {}",
      truncate(id, 24),
      stage.status.as_str(),
      stage.attempts,
      truncate(detail, 60)
    )?;
  }
  if !attempts.is_empty() {
    writeln!(out, "\nattempts")?;
    for a in &attempts {
      let result = match (&a.outputs, &a.error) {
        (Some(outputs), _) => format!("outputs {}", truncate(&outputs.to_string(), 60)),
        (None, Some(error)) => truncate(error, 60),
        (None, None) => String::new(),
      };
      writeln!(
        out,
        "  {:<24} #{:<2} {:<14} {:<10} {:>7} {}",
        truncate(&a.stage, 24),
        a.attempt,
        truncate(&a.uses, 14),
        a.status,
        a.duration_ms
          .map_or_else(String::new, |ms| format!("{ms}ms")),
        result
      )?;
    }
  }
  if !decisions.is_empty() {
    writeln!(out, "\ndecisions")?;
    for d in &decisions {
      writeln!(
        out,
        "  {:<24} {:<8} {:<9} by {}{}",
        truncate(&d.stage, 24),
        d.kind,
        d.decision,
        d.decided_by,
        d.reason
          .as_deref()
          .map_or_else(String::new, |r| format!(": {r}"))
      )?;
    }
  }
  if !logs.is_empty() {
    writeln!(out, "\nlogs")?;
    for (stage, attempt, stream, message) in &logs {
      writeln!(out, "  {stage}#{attempt} {stream}: {message}")?;
    }
  }
  Ok(exit::OK)
}

fn summary_json(run: &RunRow) -> serde_json::Value {
  serde_json::json!({
    "id": run.id,
    "workflow": run.workflow,
    "file": run.file,
    "status": run.effective_status(),
    "attempt": run.attempt,
    "pid": run.pid,
    "created_ms": run.created_ms,
    "finished_ms": run.finished_ms,
    "duration_ms": run.finished_ms.map(|f| f - run.created_ms),
    "params": run.params,
    "outputs": run.outputs,
    "error": run.error,
  })
}

fn duration_text(run: &RunRow) -> String {
  let end = run.finished_ms.unwrap_or(run.updated_ms);
  let ms = u64::try_from(end - run.created_ms).unwrap_or(0);
  if ms < 1_000 {
    format!("{ms}ms")
  } else {
    format!("{:.1}s", ms as f64 / 1_000.0)
  }
}

/// `text` cut to `width` characters, the last one `…` when it was longer.
pub(crate) fn truncate(text: &str, width: usize) -> String {
  if text.chars().count() <= width {
    return text.to_string();
  }
  let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
  out.push('…');
  out
}

/// `2026-11-22 14:03:07` from Unix milliseconds.
fn utc(ms: i64) -> String {
  let secs = ms.div_euclid(1_000);
  let (year, month, day) = event::civil_from_days(secs.div_euclid(86_400));
  let rem = secs.rem_euclid(86_400);
  format!(
    "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
    rem / 3_600,
    rem % 3_600 / 60,
    rem % 60
  )
}

/// `swdl approve|reject RUN_ID STAGE`.
pub(crate) fn decide(args: &DecideArgs, decision: GateDecision) -> Result<i32, Error> {
  let mut store = open(args.store.as_deref())?;
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
  let state = fold(&row, events)?;
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
  Ok(exit::OK)
}

/// `swdl cancel RUN_ID`.
pub(crate) fn cancel(run_id: &str, dir: Option<&Path>) -> Result<i32, Error> {
  let mut store = open(dir)?;
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
        return Ok(exit::OK);
      }
    }
    writeln!(
      stderr,
      "asked run {} (process {}) to cancel; it is still stopping",
      row.id,
      row.pid.unwrap_or_default()
    )?;
    return Ok(exit::OK);
  }
  // Suspended or crashed: nothing executes it, so record the cancellation here.
  let (row, _) = store.claim(run_id)?;
  let state = fold(&row, store.events(&row.id)?)?;
  let mut seq = store.next_seq(&row.id)?;
  let record = |event: Event| EventRecord {
    ts: event::now_rfc3339(),
    run: Arc::from(row.id.as_str()),
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
  Ok(exit::OK)
}

/// `swdl pause RUN_ID`.
pub(crate) fn pause(run_id: &str, dir: Option<&Path>) -> Result<i32, Error> {
  let mut store = open(dir)?;
  let row = store.run(run_id)?;
  if !row.is_live() {
    return Err(Error::Store(StoreError::Refused(format!(
      "run `{}` is not executing (it is {}); only a live run can be paused",
      row.id,
      row.effective_status()
    ))));
  }
  store.request(&row.id, &Request::Pause)?;
  writeln!(
    std::io::stderr(),
    "asked run {} (process {}) to pause; `swdl resume {}` lets it go on",
    row.id,
    row.pid.unwrap_or_default(),
    row.id
  )?;
  Ok(exit::OK)
}
