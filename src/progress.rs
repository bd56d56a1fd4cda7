//! TEMPORARY: minimal progress until the real module lands.
use super::*;
use event::{EventRecord, EventSink};

/// Display modes.
pub enum ProgressMode {
  /// Live.
  Live,
  /// Plain.
  Plain,
  /// None.
  None,
}
/// Sink.
pub struct ProgressSink(bool, Box<dyn std::io::Write + Send>);
/// Handle.
pub struct ProgressHandle;
impl ProgressHandle {
  /// Finish.
  pub fn finish(self) {}
}
/// Start.
pub fn start(
  mode: ProgressMode,
  _w: &str,
  _n: usize,
  _c: bool,
  out: Box<dyn std::io::Write + Send>,
) -> (ProgressSink, ProgressHandle) {
  (
    ProgressSink(!matches!(mode, ProgressMode::None), out),
    ProgressHandle,
  )
}
impl EventSink for ProgressSink {
  fn emit(&mut self, record: &EventRecord) {
    if self.0 {
      let _ = writeln!(
        self.1,
        "{} {} {}",
        record.ts,
        record.event.name(),
        record.event.stage().unwrap_or("")
      );
    }
  }
}
use std::io::Write;
