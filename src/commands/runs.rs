//! `swdl runs [RUN_ID]`: the run history, or one run's stages, attempts, decisions and logs.
use super::*;
use crate::event_text::truncate;
use crate::{
  cli::Format,
  event::EventRecord,
  state::RunState,
  store::{LogRow, RunRow},
};
use std::{io::Write, path::Path};

/// The run's state: the fold of its recorded events.
pub(super) fn fold(row: &RunRow, events: Vec<EventRecord>) -> Result<RunState, Error> {
  let workflow = compose::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?;
  let mut state = RunState::new(&workflow, &row.id);
  for record in events {
    state.apply(&record);
  }
  Ok(state)
}

/// `swdl runs [RUN_ID]`.
pub(super) fn list_or_show(
  run_id: Option<&str>,
  status: Option<&str>,
  format: Format,
  dir: Option<&Path>,
) -> Result<Done, Error> {
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
  let mut out = std::io::stdout().lock();
  let Some(id) = run_id else {
    let (dir, store) = existing_store(dir)?;
    let runs = match &store {
      Some(store) => store.runs(status)?,
      None => Vec::new(),
    };
    if format == Format::Json {
      let list: Vec<serde_json::Value> = runs.iter().map(summary_json).collect();
      writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&list).unwrap_or_default()
      )?;
      return Ok(Done::Ok);
    }
    if runs.is_empty() {
      match &store {
        Some(store) => writeln!(out, "no runs in {}", store.path().display())?,
        None => writeln!(
          out,
          "no runs: there is no run store at {} yet (`swdl run` makes one)",
          dir.display()
        )?,
      }
      return Ok(Done::Ok);
    }
    // Ids are as wide as they are (28 characters for swdl's own): the columns stay aligned.
    let width = runs.iter().map(|r| r.id.len()).max().unwrap_or(0).max(3);
    writeln!(
      out,
      "{:<width$} {:<10} {:<24} {:<20} {:>9}",
      "RUN", "STATUS", "WORKFLOW", "STARTED (UTC)", "DURATION"
    )?;
    for run in &runs {
      writeln!(
        out,
        "{:<width$} {:<10} {:<24} {:<20} {:>9}",
        run.id,
        run.effective_status(),
        truncate(&run.workflow, 24),
        utc(run.created_ms),
        duration_text(run),
      )?;
    }
    return Ok(Done::Ok);
  };
  let store = store_of_run(dir, id)?;
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
      "logs": logs,
    });
    writeln!(
      out,
      "{}",
      serde_json::to_string_pretty(&value).unwrap_or_default()
    )?;
    return Ok(Done::Ok);
  }
  writeln!(out, "run       {}", row.id)?;
  writeln!(out, "workflow  {} ({})", row.workflow, row.file)?;
  writeln!(out, "status    {}", row.effective_status())?;
  writeln!(out, "started   {} UTC", utc(row.created_ms))?;
  writeln!(out, "duration  {}", duration_text(&row))?;
  if row.attempt > 1 {
    writeln!(
      out,
      "resumed   {}",
      event_text::count(
        usize::try_from(row.attempt - 1).unwrap_or(0),
        "time",
        "times"
      )
    )?;
  }
  if let Some(of) = row.options.get("retry_of").and_then(|v| v.as_str()) {
    let from = row
      .options
      .get("retry_from")
      .and_then(|v| v.as_str())
      .map(|s| format!(" from stage {s}"))
      .unwrap_or_default();
    writeln!(out, "retries   run {of}{from}")?;
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
  if state.tokens > 0 {
    writeln!(out, "tokens    {} model tokens", state.tokens)?;
  }
  writeln!(out, "\nstages")?;
  for (id, stage) in &state.stages {
    let reused = stage
      .reused_from
      .as_ref()
      .map(|run| format!("reused from run {run}"));
    let detail = stage
      .error
      .as_deref()
      .or(stage.reason.as_deref())
      .or(reused.as_deref())
      .unwrap_or_default();
    let line = format!(
      "  {:<24} {:<10} attempts {:<3} {}",
      truncate(id, 24),
      stage.status.as_str(),
      stage.attempts,
      truncate(detail, 60)
    );
    writeln!(out, "{}", line.trim_end())?;
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
    for log in &logs {
      let LogRow {
        stage,
        attempt,
        stream,
        message,
        ..
      } = log;
      if log.compensation {
        writeln!(out, "  {stage} compensation {stream}: {message}")?;
      } else {
        writeln!(out, "  {stage}#{attempt} {stream}: {message}")?;
      }
    }
  }
  Ok(Done::Ok)
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
    "duration_ms": run.duration_ms.or(run.finished_ms.map(|f| f - run.created_ms)),
    "params": run.params,
    "outputs": run.outputs,
    "error": run.error,
    "retry_of": run.options.get("retry_of").filter(|v| v.is_string()),
    "retry_from": run.options.get("retry_from").filter(|v| v.is_string()),
  })
}

/// How long the run took, in the words its own last line used (`run completed in 402ms`);
/// for a run still going or cut short, the time since it was recorded.
fn duration_text(run: &RunRow) -> String {
  let ms = run.duration_ms.unwrap_or_else(|| {
    // A run executing now (waiting at a gate under `--wait`, or paused) has lasted until now,
    // not until its row last changed.
    let end = if run.is_live() {
      store::now_ms()
    } else {
      run.finished_ms.unwrap_or(run.updated_ms)
    };
    end - run.created_ms
  });
  crate::duration::format_duration(std::time::Duration::from_millis(
    u64::try_from(ms).unwrap_or(0),
  ))
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
