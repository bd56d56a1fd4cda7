//! `swdl retry`: a new run of a finished run's workflow that reuses the outputs of the stages
//! that completed there and did not change (docs/runs.md, "Retry").
use super::*;
use crate::{
  cli::RetryArgs,
  commands::{
    resume::{StoredOptions, secrets_given},
    run::{Headless, Stored, execute},
  },
  launch::Settings,
  runtime::{Reusable, Reuse},
  state::{RunState, StageState},
  workflow::Workflow,
};
use indexmap::IndexMap;
use std::{collections::HashMap, path::PathBuf};

/// Runs `swdl retry`.
pub(crate) fn retry(args: &RetryArgs) -> Result<Done, Error> {
  let flags = &args.flags;
  flags.check()?;
  let dir = store::resolve_dir(flags.store.as_deref()).ok_or_else(|| {
    Error::Usage("`--store none` keeps no runs: there is nothing to retry".into())
  })?;
  let mut store = store_of_run(flags.store.as_deref(), &args.run_id)?;
  let row = store.run(&args.run_id)?;
  let status = row.effective_status();
  if !matches!(status, "completed" | "failed" | "cancelled") {
    let hint = if status == "running" || status == "paused" {
      String::new()
    } else {
      format!(" (`swdl resume {}` continues it)", row.id)
    };
    return Err(Error::Store(store::StoreError::Refused(format!(
      "run `{}` is {status}: only a finished run can be retried{hint}",
      row.id
    ))));
  }
  // The file as it is now, so a fix made since applies; the stored copy once it is gone.
  let file = PathBuf::from(&row.file);
  let workflow = Arc::new(if file.exists() {
    compose::load_file(&file)?
  } else {
    compose::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?
  });
  if let Some(from) = &args.from
    && workflow.stage(from).is_none()
  {
    return Err(Error::Usage(format!(
      "`--from {from}`: workflow `{}` has no stage `{from}`{}",
      workflow.name,
      suggest::hint(from, workflow.stages.iter().map(|s| s.id.as_str()))
    )));
  }
  let params = retried_params(&workflow, &row, &args.params)?;
  let masker = launch::masker(&workflow, &params)?;
  let options = StoredOptions::read(&row)?;
  let lua_files: Vec<PathBuf> = options.lua.iter().map(PathBuf::from).collect();
  let lua = launch::start_lua(&workflow, &file, &lua_files)?;
  let events = store.events(&row.id)?;
  let reuse = reusable(&row, events, &workflow, args.from.as_deref())?;
  let approve: Vec<String> = options
    .approve
    .iter()
    .chain(&flags.approve)
    .cloned()
    .collect();
  let reject: Vec<String> = options
    .reject
    .iter()
    .chain(&flags.reject)
    .cloned()
    .collect();
  let approve_all = flags.approve_all || options.approve_all;
  let run_id = store.create_run(&store::NewRun {
    id: &store::new_run_id(),
    workflow: &workflow.name,
    file: &row.file,
    source: workflow.source.text(),
    params: &{
      let mut stored = serde_json::Value::Object(params.clone().into_iter().collect());
      masker.mask_params(&mut stored);
      stored
    },
    options: &serde_json::json!({
      "max_parallel": options.max_parallel,
      "approve": approve,
      "reject": reject,
      "approve_all": approve_all,
      "lua": options.lua,
      "retry_of": row.id,
      "retry_from": args.from,
    }),
  })?;
  execute(Headless {
    workflow,
    lua,
    masker,
    settings: Settings {
      run_id,
      max_parallel: options.max_parallel,
      params,
      approve: approve.into_iter().collect(),
      reject: reject.into_iter().collect(),
      approve_all,
      interactive: false,
      resume: None,
      start_paused: false,
      reuse: Some(Arc::new(reuse)),
    },
    flags,
    store: Some(Stored {
      store,
      dir,
      next_seq: 1,
    }),
  })
}

/// The retried run's parameters, for the names `workflow` still declares, with `given` over
/// them; resolved and checked as `swdl run` checks them.
fn retried_params(
  workflow: &Workflow,
  row: &store::RunRow,
  given: &[String],
) -> Result<IndexMap<String, serde_json::Value>, Error> {
  let mut args: Vec<String> = Vec::new();
  if let serde_json::Value::Object(stored) = &row.params {
    for (name, value) in stored {
      if value.is_null() || !workflow.parameters.contains_key(name) {
        continue;
      }
      let text = match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
      };
      args.push(format!("{name}={text}"));
    }
  }
  args.extend(given.iter().cloned());
  let params = params::resolve(workflow, &args).map_err(Error::Diagnostics)?;
  secrets_given(workflow, &params, &row.id)?;
  Ok(params)
}

/// What of the run `row` (its `events`) a retry of it may reuse: every stage that completed
/// there, as it was defined there, except `from` and everything downstream of it.
pub(super) fn reusable(
  row: &store::RunRow,
  events: Vec<event::EventRecord>,
  workflow: &Workflow,
  from: Option<&str>,
) -> Result<Reuse, Error> {
  let old = compose::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?;
  let mut state = RunState::new(&old, &row.id);
  for record in &events {
    state.apply(record);
  }
  let mut again: std::collections::HashSet<usize> = std::collections::HashSet::new();
  if let Some(i) = from.and_then(|id| workflow.stage_index().get(id).copied()) {
    let dag = workflow.dag();
    let mut todo = vec![i];
    while let Some(j) = todo.pop() {
      if again.insert(j) {
        todo.extend(dag.dependents[j].iter().copied());
      }
    }
  }
  let skip: std::collections::HashSet<&str> = again
    .iter()
    .map(|&i| workflow.stages[i].id.as_str())
    .collect();
  let mut stages = HashMap::new();
  let mut items = HashMap::new();
  for stage in &old.stages {
    let Some(done) = state.stage(&stage.id) else {
      continue;
    };
    if !done.items.is_empty()
      && !skip.contains(stage.id.as_str())
      && let Ok(definition) = serde_json::to_value(stage)
    {
      let list = done
        .items
        .iter()
        .map(|item| (item.key.clone(), completed(&definition, &item.state)))
        .collect();
      items.insert(stage.id.clone(), list);
    }
    if skip.contains(stage.id.as_str()) {
      continue;
    }
    let Ok(definition) = serde_json::to_value(stage) else {
      continue;
    };
    if let Some(reusable) = completed(&definition, done) {
      stages.insert(stage.id.clone(), reusable);
    }
  }
  Ok(Reuse {
    from_run: row.id.clone(),
    stages,
    items,
  })
}

/// What a completed stage (or item) left for a retry to reuse; `None` when it did not complete.
fn completed(definition: &serde_json::Value, done: &StageState) -> Option<Reusable> {
  let (event::StageStatus::Completed, Some(outputs), Some(uses)) =
    (done.status, &done.outputs, &done.uses)
  else {
    return None;
  };
  Some(Reusable {
    definition: definition.clone(),
    inputs: done.inputs.clone(),
    uses: uses.clone(),
    outputs: Arc::clone(outputs),
    summary: done.summary.clone(),
    artifacts: done.artifacts.clone(),
    hints: done.hints.clone(),
  })
}
