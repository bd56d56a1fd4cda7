//! Requests other processes leave for a live run (`swdl cancel`, `pause`, `resume`, `approve`,
//! `reject`), and the poller that hands them to the run's control channel.
use super::*;
use crate::runtime::Control;
use std::sync::atomic::Ordering;
use tokio::sync::mpsc;

/// Hands requests other processes leave in the store for this run (`swdl cancel`, `pause`,
/// `resume`, `approve`, `reject`) to the run's control channel. It polls from its own thread
/// with its own connection, so a busy store never holds up the runtime; it stops when dropped.
pub(crate) struct RequestPoller {
  stop: Arc<std::sync::atomic::AtomicBool>,
}

/// How often a live run looks for requests.
const POLL_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

impl RequestPoller {
  /// Starts polling for `run_id`'s requests in the store at `dir`.
  pub(crate) fn start(
    dir: PathBuf,
    run_id: String,
    control: mpsc::UnboundedSender<Control>,
  ) -> Self {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = Arc::clone(&stop);
    std::thread::spawn(move || {
      let Ok(mut store) = Store::open(&dir) else {
        return;
      };
      while !stopped.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_EVERY);
        let Ok(requests) = store.take_requests(&run_id) else {
          continue;
        };
        for request in requests {
          let message = match request {
            Request::Cancel => Control::Cancel,
            Request::Pause => Control::Pause,
            Request::Resume => Control::Resume,
            Request::Decide { stage, decision } => Control::Decide {
              stage,
              decision: decision.decision,
              by: decision.by,
              reason: decision.reason,
              inputs: decision.inputs,
            },
          };
          if control.send(message).is_err() {
            return;
          }
        }
      }
    });
    Self { stop }
  }
}

impl Drop for RequestPoller {
  fn drop(&mut self) {
    self.stop.store(true, Ordering::Relaxed);
  }
}
