//! The display driven with recorded events on a fake terminal.
use super::*;
use crate::event_text::{Line, Style, clean, first_line, last_segment, time_of};
use serde_json::json;
use view::{clock, ticking};

/// A writer tests can read back.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
  fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
    lock(&self.0).extend_from_slice(bytes);
    Ok(bytes.len())
  }

  fn flush(&mut self) -> std::io::Result<()> {
    Ok(())
  }
}

impl Buffer {
  fn text(&self) -> String {
    String::from_utf8_lossy(&lock(&self.0)).into_owned()
  }
}

fn fixed_size() -> (usize, usize) {
  (80, 24)
}

fn rec(second: u32, event: Event) -> EventRecord {
  EventRecord {
    ts: format!("2026-11-22T14:03:{second:02}.123Z"),
    run: "r1".into(),
    item: None,
    key: None,
    event,
  }
}

fn started(stage: &str, attempt: u32, uses: &str) -> Event {
  Event::StageStarted {
    stage: stage.into(),
    attempt,
    uses: uses.into(),
    inputs: Arc::new(json!({})),
  }
}

fn completed(stage: &str, attempt: u32, duration_ms: u64) -> Event {
  Event::StageCompleted {
    stage: stage.into(),
    attempt,
    uses: "x".into(),
    outputs: Arc::new(json!({})),
    summary: None,
    duration_ms,
    artifacts: Vec::new(),
    hints: Vec::new(),
    reused_from: None,
    inputs: None,
  }
}

fn failed(stage: &str, attempt: u32, error: &str) -> Event {
  Event::StageFailed {
    stage: stage.into(),
    attempt: Some(attempt),
    uses: Some("x".into()),
    error: error.into(),
    reason: "error".into(),
    duration_ms: 10,
  }
}

fn retrying(stage: &str, attempt: u32, delay_ms: u64, error: &str) -> Event {
  Event::StageRetrying {
    stage: stage.into(),
    attempt,
    delay_ms,
    due: "2026-11-22T14:03:09.000Z".into(),
    error: error.into(),
  }
}

fn log(stage: &str, stream: &str, message: &str) -> Event {
  Event::Log {
    stage: stage.into(),
    attempt: 1,
    stream: stream.into(),
    message: message.into(),
    compensation: false,
    tokens: None,
  }
}

fn run_started(stages: usize) -> Event {
  Event::RunStarted {
    workflow: "code-review".into(),
    params: json!({}),
    max_parallel: 3,
    stages,
    seed: 0,
  }
}

fn run_completed(
  status: RunStatus,
  stages: &[(&str, StageStatus)],
  error: Option<&str>,
  ms: u64,
) -> Event {
  Event::RunCompleted {
    status,
    outputs: json!({}),
    stages: stages
      .iter()
      .map(|(s, st)| ((*s).to_owned(), *st))
      .collect(),
    error: error.map(str::to_owned),
    duration_ms: ms,
  }
}

/// Runs events through a display into a buffer and returns what it wrote.
fn drive(mode: ProgressMode, color: bool, events: Vec<EventRecord>) -> String {
  let buffer = Buffer::default();
  let (mut sink, handle) = start_with(
    mode,
    "code-review",
    5,
    color,
    Box::new(buffer.clone()),
    fixed_size,
  );
  for record in &events {
    sink.emit(record);
  }
  sink.flush();
  handle.finish();
  buffer.text()
}

/// Whether the text holds an SGR (colour) escape.
fn has_sgr(text: &str) -> bool {
  text.split('\x1b').skip(1).any(|rest| {
    rest
      .strip_prefix('[')
      .and_then(|rest| {
        rest
          .find(|c: char| !(c.is_ascii_digit() || c == ';'))
          .map(|end| rest[end..].starts_with('m'))
      })
      .unwrap_or(false)
  })
}

fn small_run() -> Vec<EventRecord> {
  vec![
    rec(7, run_started(5)),
    rec(7, started("style", 1, "code-style")),
    rec(7, started("security", 1, "scan")),
    rec(8, log("style", "stdout", "checked 12 files")),
    rec(8, log("security", "stderr", "\x1b[33mwarning\x1b[0m: slow")),
    rec(9, failed("security", 1, "exit status 1\nmore detail")),
    rec(
      9,
      retrying("security", 1, 2_000, "exit status 1\nmore detail"),
    ),
    rec(9, completed("style", 1, 1_200)),
    rec(11, started("security", 2, "scan")),
    rec(12, failed("security", 2, "exit status 2")),
    rec(
      12,
      Event::StageSkipped {
        stage: "docs".into(),
        reason: "condition".into(),
      },
    ),
    rec(
      12,
      Event::GateWaiting {
        stage: "signoff".into(),
        message: Some("Ship it?".into()),
        kind: "gate".into(),
        timeout_ms: None,
      },
    ),
    rec(
      13,
      Event::GateDecided {
        stage: "signoff".into(),
        decision: GateDecision::Approve,
        decided_by: "flag".into(),
        reason: None,
        inputs: None,
      },
    ),
    rec(13, started("perf", 1, "bench")),
    rec(14, completed("perf", 1, 250)),
    rec(
      14,
      run_completed(
        RunStatus::Completed,
        &[
          ("style", StageStatus::Completed),
          ("security", StageStatus::Failed),
          ("docs", StageStatus::Skipped),
          ("signoff", StageStatus::Completed),
          ("perf", StageStatus::Completed),
        ],
        None,
        3_400,
      ),
    ),
  ]
}

#[test]
fn plain_mode_prints_one_line_per_event() {
  let text = drive(ProgressMode::Plain, true, small_run());
  let expected = [
    "14:03:07.123 run code-review started (5 stages, max_parallel 3)",
    "14:03:07.123 stage style started (attempt 1, uses code-style)",
    "14:03:07.123 stage security started (attempt 1, uses scan)",
    "14:03:08.123 stage style: checked 12 files",
    "14:03:08.123 stage security stderr: warning: slow",
    "14:03:09.123 stage security retrying in 2s after attempt 1: exit status 1",
    "14:03:09.123 stage style completed in 1.2s",
    "14:03:11.123 stage security started (attempt 2, uses scan)",
    "14:03:12.123 stage security failed after 2 attempts: exit status 2",
    "14:03:12.123 stage docs skipped (condition)",
    "14:03:12.123 gate signoff waiting: Ship it?",
    "14:03:13.123 gate signoff approved by flag",
    "14:03:13.123 stage perf started (attempt 1, uses bench)",
    "14:03:14.123 stage perf completed in 250ms",
    "14:03:14.123 run completed in 3.4s",
    "completed 3/5 stages, 1 failed, 1 skipped in 3.4s",
  ];
  assert_eq!(text.lines().collect::<Vec<_>>(), expected);
  assert!(!text.contains('\x1b'));
}

#[test]
fn plain_mode_reports_timeouts_fallbacks_cancellation_and_failed_runs() {
  let events = vec![
    rec(1, run_started(3)),
    rec(1, started("slow", 1, "shell")),
    rec(
      2,
      Event::StageTimedOut {
        stage: "slow".into(),
        attempt: 1,
        uses: "shell".into(),
        timeout_ms: 30_000,
        duration_ms: 30_000,
      },
    ),
    rec(2, started("fetch", 1, "http")),
    rec(3, failed("fetch", 1, "503")),
    rec(3, started("fetch", 2, "cache")),
    rec(
      4,
      Event::StageCancelled {
        stage: "fetch".into(),
        attempt: Some(2),
        reason: "halt".into(),
      },
    ),
    rec(
      4,
      Event::CompensationStarted {
        stage: "setup".into(),
        uses: "teardown".into(),
      },
    ),
    rec(
      5,
      Event::CompensationFailed {
        stage: "setup".into(),
        uses: "teardown".into(),
        error: "gone".into(),
      },
    ),
    rec(
      5,
      run_completed(
        RunStatus::Failed,
        &[
          ("slow", StageStatus::TimedOut),
          ("fetch", StageStatus::Cancelled),
          ("setup", StageStatus::Completed),
        ],
        Some("stage slow timed out"),
        5_000,
      ),
    ),
  ];
  let text = drive(ProgressMode::Plain, false, events);
  let expected = [
    "14:03:01.123 run code-review started (3 stages, max_parallel 3)",
    "14:03:01.123 stage slow started (attempt 1, uses shell)",
    "14:03:02.123 stage slow timed out after 30s",
    "14:03:02.123 stage fetch started (attempt 1, uses http)",
    "14:03:03.123 stage fetch attempt 1 failed: 503",
    "14:03:03.123 stage fetch started (attempt 2, uses cache)",
    "14:03:04.123 stage fetch cancelled (halt)",
    "14:03:04.123 compensation for setup started (uses teardown)",
    "14:03:05.123 compensation for setup failed: gone",
    "14:03:05.123 run failed: stage slow timed out",
    "run failed: completed 1/3 stages, 1 timed out, 1 cancelled in 5s",
  ];
  assert_eq!(text.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn a_failure_is_final_when_flushed_and_attempt_limits_show() {
  let buffer = Buffer::default();
  let (sink, handle) = start_with(
    ProgressMode::Plain,
    "wf",
    1,
    false,
    Box::new(buffer.clone()),
    fixed_size,
  );
  let mut sink = sink.with_attempt_limits([("a".to_owned(), 3)]);
  sink.emit(&rec(1, started("a", 1, "echo")));
  sink.emit(&rec(2, failed("a", 1, "boom")));
  // Held until the next event or a flush tells whether a retry follows.
  assert_eq!(buffer.text().lines().count(), 1);
  sink.flush();
  drop(handle);
  let expected = [
    "14:03:01.123 stage a started (attempt 1/3, uses echo)",
    "14:03:02.123 stage a failed: boom",
  ];
  let text = buffer.text();
  assert_eq!(text.lines().take(2).collect::<Vec<_>>(), expected);
  assert!(text.contains("\nrun stopped: completed 0/1 stages, 1 failed in "));
}

fn live_run() -> Vec<EventRecord> {
  vec![
    rec(0, run_started(5)),
    rec(0, started("build", 1, "cargo")),
    rec(1, completed("build", 1, 1_200)),
    rec(1, started("test", 3, "cargo")),
    rec(2, failed("test", 3, "boom\nstack")),
    rec(
      2,
      Event::StageSkipped {
        stage: "docs".into(),
        reason: "condition".into(),
      },
    ),
    rec(
      2,
      Event::StageCancelled {
        stage: "deploy".into(),
        attempt: None,
        reason: "halt".into(),
      },
    ),
    rec(2, started("slow", 1, "shell")),
    rec(
      3,
      Event::StageTimedOut {
        stage: "slow".into(),
        attempt: 1,
        uses: "shell".into(),
        timeout_ms: 30_000,
        duration_ms: 30_000,
      },
    ),
    rec(
      4,
      run_completed(
        RunStatus::Failed,
        &[
          ("build", StageStatus::Completed),
          ("test", StageStatus::Failed),
          ("docs", StageStatus::Skipped),
          ("deploy", StageStatus::Cancelled),
          ("slow", StageStatus::TimedOut),
        ],
        Some("stage test failed"),
        14_200,
      ),
    ),
  ]
}

#[test]
fn live_mode_scrolls_finished_stages_and_ends_with_a_summary() {
  let text = drive(ProgressMode::Live, false, live_run());
  for record in [
    "▶ run code-review started (5 stages, max_parallel 3)",
    "✓ build  1.2s",
    "✗ test  failed after 3 attempts: boom",
    "- docs skipped (condition)",
    "⊘ deploy cancelled",
    "⏱ slow timed out after 30s",
    "run failed: stage test failed",
  ] {
    assert!(
      text.contains(&format!("{record}\x1b[K\n")),
      "{record} in {text:?}"
    );
  }
  assert!(text.ends_with(
    "run failed: completed 1/5 stages, 1 failed, 1 timed out, 1 skipped, 1 cancelled in 14.2s\x1b[K\n\x1b[J"
  ));
  assert!(!has_sgr(&text), "{text:?}");
}

#[test]
fn live_mode_draws_the_bar_and_colours_only_when_asked() {
  let buffer = Buffer::default();
  let (mut sink, handle) = start_with(
    ProgressMode::Live,
    "wf",
    4,
    false,
    Box::new(buffer.clone()),
    fixed_size,
  );
  sink.emit(&rec(0, run_started(4)));
  sink.emit(&rec(0, started("build", 1, "cargo")));
  sink.emit(&rec(0, started("lint", 1, "clippy")));
  sink.emit(&rec(1, completed("lint", 1, 300)));
  sink.flush();
  let text = buffer.text();
  assert!(text.contains("] 1/4 stages  1 running  00:0"), "{text:?}");
  assert!(text.contains(" build  running  "), "{text:?}");
  assert!(!has_sgr(&text));
  handle.finish();
  assert!(!has_sgr(&buffer.text()));

  let colored = drive(ProgressMode::Live, true, live_run());
  assert!(
    colored.contains("\x1b[32m✓\x1b[0m build  \x1b[2m1.2s\x1b[0m"),
    "{colored:?}"
  );
  assert!(has_sgr(&colored));
}

#[test]
fn live_block_shows_stage_lines_and_the_bar() {
  let t0 = Instant::now();
  let mut state = State::new(ProgressMode::Live, false, "wf", 4, t0);
  state.limits.insert("test".into(), 3);
  state.handle(&rec(0, run_started(4)), t0);
  state.handle(&rec(0, started("build", 1, "cargo")), t0);
  state.handle(
    &rec(0, log("build", "stdout", "Compiling foo\r Compiling bar\n")),
    t0,
  );
  state.handle(&rec(0, started("test", 1, "cargo")), t0);
  state.handle(&rec(1, failed("test", 1, "flaky")), t0);
  state.handle(
    &rec(1, retrying("test", 1, 15_000, "flaky")),
    t0 + Duration::from_secs(1),
  );
  state.handle(
    &rec(
      2,
      Event::GateWaiting {
        stage: "approve-deploy".into(),
        message: Some("Deploy?".into()),
        kind: "approval".into(),
        timeout_ms: Some(60_000),
      },
    ),
    t0 + Duration::from_secs(2),
  );
  state.handle(&rec(2, completed("lint", 1, 10)), t0);
  let lines = state.block(t0 + Duration::from_millis(14_500), 80, 24);
  assert_eq!(
    lines,
    [
      "⠴ build           running  14.5s  Compiling bar",
      "↻ test            retrying in 2s  attempt 1/3  flaky",
      "? approve-deploy  waiting for approval  12.5s  Deploy?",
      "[#####---------------] 1/4 stages  1 running  1 retrying  1 waiting  00:14",
    ]
  );
  assert!(lines.iter().all(|line| !line.contains('\x1b')));
}

#[test]
fn live_block_fits_the_terminal() {
  let t0 = Instant::now();
  let mut state = State::new(ProgressMode::Live, true, "wf", 40, t0);
  for i in 0..30 {
    state.handle(&rec(0, started(&format!("stage-{i:02}"), 1, "echo")), t0);
    state.handle(
      &rec(0, log(&format!("stage-{i:02}"), "stdout", &"x".repeat(200))),
      t0,
    );
  }
  let lines = state.block(t0 + Duration::from_secs(1), 40, 10);
  assert_eq!(lines.len(), 9);
  assert!(
    lines
      .get(7)
      .is_some_and(|l| l.contains("… and 23 more running")),
    "{lines:?}"
  );
  let visible = |line: &String| clean(line).chars().count();
  assert!(lines.iter().all(|line| visible(line) <= 39), "{lines:?}");
  // The bar narrows so the counts and the clock stay visible.
  let bar = lines.last().map(|line| clean(line)).unwrap_or_default();
  assert_eq!(bar, "[------] 0/40 stages  30 running  00:01");
  let tiny = state.block(t0, 40, 2);
  assert_eq!(tiny.len(), 1);
}

#[test]
fn the_handle_steps_aside_for_prompts_and_cleans_up_when_dropped() {
  let buffer = Buffer::default();
  let (mut sink, handle) = start_with(
    ProgressMode::Live,
    "wf",
    2,
    false,
    Box::new(buffer.clone()),
    fixed_size,
  );
  sink.emit(&rec(0, started("a", 1, "echo")));
  sink.flush();
  {
    let _prompt = handle.suspend();
    // The stage line and the bar are erased, and nothing is redrawn meanwhile.
    let erased = buffer.text();
    assert!(erased.ends_with("\r\x1b[2A\x1b[J"), "{erased:?}");
    sink.flush();
    sink.emit(&rec(1, failed("a", 1, "queued while suspended")));
    sink.flush();
    assert_eq!(buffer.text(), erased);
  }
  sink.flush();
  let text = buffer.text();
  assert!(text.contains("queued while suspended\x1b[K\n"), "{text:?}");
  drop(handle);
  let text = buffer.text();
  assert!(
    text.contains("run stopped: completed 0/2 stages, 1 failed in "),
    "{text:?}"
  );
  assert!(text.ends_with("\x1b[K\n\x1b[J"), "{text:?}");
}

#[test]
fn none_mode_prints_nothing() {
  assert_eq!(drive(ProgressMode::None, true, small_run()), "");
}

#[test]
fn helpers_format_times_and_clean_text() {
  assert_eq!(time_of("2026-11-22T14:03:07.123Z"), "14:03:07.123");
  assert_eq!(time_of("2026-11-22T14:03:07.123+01:00"), "14:03:07.123");
  assert_eq!(time_of("junk"), "junk");
  assert_eq!(clock(Duration::from_secs(14)), "00:14");
  assert_eq!(ticking(Duration::from_millis(402)), "0.4s");
  assert_eq!(ticking(Duration::from_secs(150)), "2m 30s");
  assert_eq!(clock(Duration::from_secs(3_723)), "1:02:03");
  assert_eq!(
    clean("a\x1b[1;31mb\x1b[0m\tc\x07\x1b]0;title\x07d"),
    "ab cd"
  );
  assert_eq!(first_line("\n  first\nsecond"), "first");
  assert_eq!(last_segment("10%\r50%\r\n"), "50%");
  assert_eq!(
    Line::new().push("abcdef", Style::Red).render(false, 4),
    "abc…"
  );
  assert_eq!(
    Line::new().push("abc", Style::Red).render(true, 9),
    "\x1b[31mabc\x1b[0m"
  );
}
