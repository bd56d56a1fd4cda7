//! `swdl run` scenarios: real workflow files, built-in skills, the real binary; assertions on
//! the JSON Lines event stream (docs/running.md, "Events") and the exit code ("Exit codes").

mod cancel;
mod conditions;
mod details;
mod failure;
mod fanout;
mod gates;
mod invalid_input;
mod outputs;
mod retries;
mod scheduling;
mod shell;

use crate::{
  common::{events_named, read_events, wait_for},
  test::{Test, line_matches},
};
use serde_json::{Value, json};
use std::{
  path::Path,
  process::{Command, Stdio},
  time::{Duration, Instant},
};

/// The arguments that run `wf.yaml` quietly, its events in `events.jsonl`.
const RUN: [&str; 6] = [
  "run",
  "wf.yaml",
  "--progress",
  "none",
  "--events",
  "events.jsonl",
];

/// A test that writes `yaml` as `wf.yaml` and runs it with [`RUN`].
fn run_wf(yaml: &str) -> Test {
  Test::new().workflow(yaml).args(RUN)
}

/// Milliseconds since the epoch of an event's RFC 3339 `ts` (`2026-11-22T14:03:07.123Z`).
#[track_caller]
fn ts_ms(event: &Value) -> i64 {
  let ts = event["ts"].as_str().expect("ts");
  let num = |range: std::ops::Range<usize>| -> i64 {
    ts.get(range)
      .and_then(|s| s.parse().ok())
      .unwrap_or_else(|| panic!("bad ts {ts}"))
  };
  let (y, m, d) = (num(0..4), num(5..7), num(8..10));
  let (hh, mm, ss, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
  // Howard Hinnant's days_from_civil.
  let y = if m <= 2 { y - 1 } else { y };
  let era = y.div_euclid(400);
  let yoe = y - era * 400;
  let mp = (m + 9) % 12;
  let doy = (153 * mp + 2) / 5 + d - 1;
  let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  let days = era * 146_097 + doe - 719_468;
  ((days * 86_400 + hh * 3_600 + mm * 60 + ss) * 1_000) + ms
}

/// The largest number of stages executing at once, from the order of start and end events.
fn peak_overlap(events: &[Value]) -> usize {
  let (mut now, mut peak) = (0usize, 0usize);
  for e in events {
    match e["event"].as_str() {
      Some("stage_started") => {
        now += 1;
        peak = peak.max(now);
      }
      Some("stage_completed" | "stage_failed" | "stage_timed_out")
        if e["uses"] != "gate" && !e["attempt"].is_null() =>
      {
        now -= 1;
      }
      Some("stage_cancelled") if !e["attempt"].is_null() => now -= 1,
      _ => {}
    }
  }
  peak
}

/// Whether a process is gone: no such pid, or a zombie nobody reaped yet.
fn process_gone(pid: i32) -> bool {
  // SAFETY: signal 0 only checks that the process exists; nothing is delivered.
  let alive = unsafe { libc::kill(pid, 0) } == 0;
  if !alive {
    return true;
  }
  std::fs::read_to_string(format!("/proc/{pid}/stat"))
    .ok()
    .and_then(|stat| {
      // The state follows the parenthesised command name, which may itself hold spaces.
      let rest = &stat[stat.rfind(')')? + 1..];
      rest.split_whitespace().next().map(|s| s == "Z" || s == "X")
    })
    .unwrap_or(true)
}
