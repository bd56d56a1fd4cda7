//! What an attacker or a careless user tries: secrets of every type and in encoded forms,
//! secrets too short to mask, colliding run ids, inputs built to exhaust the stack or memory,
//! floods of output and logs, damaged stores.

mod damage;
mod limits;
mod misuse;
mod secrets;

use crate::{
  store::{Project, run_id_in},
  test::{Test, assert_matches},
};
use base64::Engine as _;
use std::process::Child;

/// Every file of the store, the events file and the given streams, as (name, bytes).
fn haystacks(p: &Project, streams: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
  let mut all: Vec<(String, Vec<u8>)> = streams
    .iter()
    .map(|(name, bytes)| ((*name).to_string(), bytes.to_vec()))
    .collect();
  for entry in std::fs::read_dir(p.store()).expect("store dir").flatten() {
    all.push((
      entry.path().display().to_string(),
      std::fs::read(entry.path()).unwrap_or_default(),
    ));
  }
  all
}

#[track_caller]
fn assert_absent(haystacks: &[(String, Vec<u8>)], needles: &[&str]) {
  for (name, bytes) in haystacks {
    for needle in needles {
      assert!(
        !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
        "`{needle}` found in {name}:\n{}",
        String::from_utf8_lossy(bytes)
      );
    }
  }
}

/// `swdl ARGS` in the project, under a 2 GiB address-space limit: a process that tries to
/// build gigabytes fails to allocate (and aborts) instead of passing.
fn bounded(p: &Project, args: &[&str]) -> Test {
  // Only commands that use a store take `--store`.
  let test = if matches!(args.first(), Some(&("run" | "resume" | "runs"))) {
    p.swdl(args)
  } else {
    p.bare(args)
  };
  test.memory_limit(2 << 30)
}
