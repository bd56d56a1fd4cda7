//! Gates asked on the terminal: when a gate waits and someone is at the keyboard, the question
//! is put on stderr (the live display steps aside) and the answer goes to the run's control
//! channel.
use super::*;
use crate::{
  decision::GateDecision,
  event::{EventRecord, EventSink},
  runtime::{Control, Steer},
};
use std::{io::Write, sync::Mutex};
use tokio::sync::mpsc;

/// Asks on the terminal when a gate waits, one question at a time.
pub(crate) struct GatePrompter {
  questions: std::sync::mpsc::Sender<(String, Option<String>)>,
  /// Gates decided by flags, which must not be asked about.
  decided: std::collections::HashSet<String>,
}

impl GatePrompter {
  /// Starts the thread that asks; answers go to `control`.
  pub(crate) fn new(
    control: mpsc::UnboundedSender<Control>,
    decided: std::collections::HashSet<String>,
    progress: Arc<progress::ProgressHandle>,
  ) -> Self {
    let (questions, asked) = std::sync::mpsc::channel::<(String, Option<String>)>();
    // Reading the terminal blocks, so it happens on its own thread, never on a tokio worker.
    std::thread::spawn(move || {
      static LOCK: Mutex<()> = Mutex::new(());
      for (stage, message) in asked {
        let _guard = LOCK.lock();
        // The live display is hidden while the question waits for an answer.
        let _hidden = progress.suspend();
        let mut stderr = std::io::stderr();
        let _ = write!(
          stderr,
          "\n{} Approve `{stage}`? [y/N] ",
          message.unwrap_or_else(|| format!("Gate `{stage}` is waiting."))
        );
        let _ = stderr.flush();
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
          return;
        }
        let answer = line.trim().to_ascii_lowercase();
        let decision = if answer == "y" || answer == "yes" {
          GateDecision::Approve
        } else {
          GateDecision::Reject
        };
        let by = std::env::var("USER")
          .ok()
          .filter(|u| !u.is_empty())
          .unwrap_or_else(|| "unknown".into());
        let _ = control.send(Control::Steer(Steer::Decide {
          stage,
          decision,
          by,
          reason: Some("answered at the prompt".into()),
          inputs: None,
        }));
      }
    });
    Self { questions, decided }
  }
}

impl EventSink for GatePrompter {
  fn emit(&mut self, record: &EventRecord) {
    if let event::Event::GateWaiting { stage, message, .. } = &record.event
      && !self.decided.contains(stage)
    {
      let _ = self.questions.send((stage.clone(), message.clone()));
    }
  }
}
