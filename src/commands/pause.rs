//! `swdl pause`: asks a live run to start no new stages until `swdl resume`.
use super::*;
use crate::store::{Request, StoreError};
use std::{io::Write, path::Path};

/// `swdl pause RUN_ID`.
pub(super) fn pause(run_id: &str, dir: Option<&Path>) -> Result<Done, Error> {
  let mut store = store_of_run(dir, run_id)?;
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
  Ok(Done::Ok)
}
