//! `swdl resume`: continues a suspended or crashed run in this process, or asks the process
//! executing a paused run to go on.
use super::*;
use crate::{
  cli::ResumeArgs,
  commands::run::{Headless, Stored, execute},
  launch::Settings,
};
use indexmap::IndexMap;
use std::{io::Write, path::PathBuf};

/// Runs `swdl resume`.
pub(crate) fn resume(args: &ResumeArgs) -> Result<Done, Error> {
  let flags = &args.flags;
  flags.check()?;
  let dir = store::resolve_dir(flags.store.as_deref()).ok_or_else(|| {
    Error::Usage("`--store none` keeps no runs: there is nothing to resume".into())
  })?;
  let mut store = store_of_run(flags.store.as_deref(), &args.run_id)?;
  let row = store.run(&args.run_id)?;
  if row.is_live() {
    if row.status != "paused" {
      return Err(Error::Store(store::StoreError::Refused(format!(
        "run `{}` is running in process {}; nothing to resume",
        row.id,
        row.pid.unwrap_or_default()
      ))));
    }
    store.request(&row.id, &store::Request::Resume)?;
    let _ = writeln!(
      std::io::stderr(),
      "asked run {} (process {}) to resume",
      row.id,
      row.pid.unwrap_or_default()
    );
    return Ok(Done::Ok);
  }
  if matches!(row.effective_status(), "completed" | "failed" | "cancelled") {
    return Err(Error::Store(store::StoreError::Refused(format!(
      "run `{}` already finished ({}); a finished run cannot be resumed",
      row.id, row.status
    ))));
  }
  let file = PathBuf::from(&row.file);
  let workflow = Arc::new(compose::load_str(&row.file, &row.source).map_err(Error::Diagnostics)?);
  // The store keeps secrets masked: their values must be given again.
  let mut params: IndexMap<String, serde_json::Value> = match &row.params {
    serde_json::Value::Object(map) => map.clone().into_iter().collect(),
    _ => IndexMap::new(),
  };
  let given = params::resolve_given(&workflow, &args.params).map_err(Error::Diagnostics)?;
  params.extend(given);
  secrets_given(&workflow, &params, &row.id)?;
  let masker = launch::masker(&workflow, &params)?;
  let options = StoredOptions::read(&row)?;
  let lua_files: Vec<PathBuf> = options.lua.iter().map(PathBuf::from).collect();
  let lua = launch::start_lua(&workflow, &file, &lua_files)?;
  // A retry goes on reusing the run it retries (unless that run has been pruned since).
  let reuse = match row.options.get("retry_of").and_then(|v| v.as_str()) {
    Some(of) => match store.run(of) {
      Ok(old) => {
        let from = row.options.get("retry_from").and_then(|v| v.as_str());
        let events = store.events(of)?;
        Some(Arc::new(super::retry::reusable(
          &old, events, &workflow, from,
        )?))
      }
      Err(_) => None,
    },
    None => None,
  };
  let (row, attempt) = store.claim(&args.run_id)?;
  let events = store.events(&row.id)?;
  let resume = runtime::Resume {
    events,
    decisions: store.pending_decisions(&row.id)?,
    attempt: u32::try_from(attempt).unwrap_or(u32::MAX),
  };
  let next_seq = store.next_seq(&row.id)?;
  execute(Headless {
    workflow,
    lua,
    masker,
    settings: Settings {
      run_id: row.id.clone(),
      max_parallel: options.max_parallel,
      params,
      approve: options
        .approve
        .into_iter()
        .chain(flags.approve.iter().cloned())
        .collect(),
      reject: options
        .reject
        .into_iter()
        .chain(flags.reject.iter().cloned())
        .collect(),
      approve_all: flags.approve_all || options.approve_all,
      interactive: false,
      resume: Some(resume),
      start_paused: false,
      reuse,
    },
    flags,
    store: Some(Stored {
      store,
      dir,
      next_seq,
    }),
  })
}

/// Refuses parameters whose value is still the store's mask: a secret must be given again.
pub(super) fn secrets_given(
  workflow: &workflow::Workflow,
  params: &IndexMap<String, serde_json::Value>,
  run_id: &str,
) -> Result<(), Error> {
  let missing: Vec<&str> = workflow
    .parameters
    .values()
    .filter(|p| p.secret && params.get(&p.name).is_some_and(|v| *v == mask::MASK))
    .map(|p| p.name.as_str())
    .collect();
  if missing.is_empty() {
    return Ok(());
  }
  Err(Error::Usage(format!(
    "run `{run_id}` has secret parameters the store does not keep: give them again with {}",
    missing
      .iter()
      .map(|name| format!("--param {name}=..."))
      .collect::<Vec<_>>()
      .join(" ")
  )))
}

/// The options `swdl run` recorded with the run.
pub(super) struct StoredOptions {
  pub(super) max_parallel: usize,
  pub(super) approve: Vec<String>,
  pub(super) reject: Vec<String>,
  pub(super) approve_all: bool,
  pub(super) lua: Vec<String>,
}

impl StoredOptions {
  /// Reads them back; a record that lacks one, or holds the wrong type, is damage, not a default.
  pub(super) fn read(row: &store::RunRow) -> Result<Self, Error> {
    let options = &row.options;
    let bad = |key: &str, expected: &str| {
      Error::Store(store::StoreError::Refused(format!(
        "run `{}`: the store's record of its options has no valid `{key}` ({expected}); it \
         cannot be resumed",
        row.id
      )))
    };
    let strings = |key: &str| -> Result<Vec<String>, Error> {
      let items = options[key]
        .as_array()
        .ok_or_else(|| bad(key, "a list of names"))?;
      items
        .iter()
        .map(|v| {
          v.as_str()
            .map(str::to_string)
            .ok_or_else(|| bad(key, "a list of names"))
        })
        .collect()
    };
    let max_parallel = options["max_parallel"]
      .as_u64()
      .and_then(|n| usize::try_from(n).ok())
      .filter(|n| *n >= 1)
      .ok_or_else(|| bad("max_parallel", "a whole number of at least 1"))?;
    Ok(Self {
      max_parallel,
      approve: strings("approve")?,
      reject: strings("reject")?,
      approve_all: options["approve_all"]
        .as_bool()
        .ok_or_else(|| bad("approve_all", "true or false"))?,
      lua: strings("lua")?,
    })
  }
}
