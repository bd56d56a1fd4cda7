//! Gates asked on the terminal: when a gate waits and someone is at the keyboard, the question
//! is put on stderr (the live display steps aside) and the answer goes to the run's control
//! channel. A gate decided some other way while its question is open (its timeout, `swdl
//! approve` from another terminal, a policy) closes the question, and the display comes back.
use super::*;
use crate::{
  decision::GateDecision,
  event::{EventRecord, EventSink},
  runtime::{Control, Steer},
};
use std::{
  collections::{HashSet, VecDeque},
  io::Write,
  sync::{Mutex, mpsc as std_mpsc},
};
use tokio::sync::mpsc;

/// What the asking thread hears: from the run's events, from the terminal, and the end.
#[derive(Debug)]
enum Prompt {
  /// A gate waits for a decision.
  Ask {
    stage: String,
    message: Option<String>,
  },
  /// A gate was decided (`how` tells by whom), whether or not its question was answered.
  Decided { stage: String, how: String },
  /// A line typed at the terminal.
  Line(String),
  /// The terminal's input ended: nothing more can be answered.
  Closed,
  /// The run is over.
  End,
}

/// Asks on the terminal when a gate waits, one question at a time.
pub(crate) struct GatePrompter {
  messages: std_mpsc::Sender<Prompt>,
  /// The asking thread, joined on drop so the display it hid is back before the run's end
  /// is written.
  thread: Option<std::thread::JoinHandle<()>>,
  /// Gates decided by flags, which must not be asked about.
  decided: HashSet<String>,
  workflow: Option<Arc<workflow::Workflow>>,
}

impl GatePrompter {
  /// Starts the thread that asks on stderr and reads answers from stdin; answers go to
  /// `control`.
  pub(crate) fn new(
    control: mpsc::UnboundedSender<Control>,
    decided: HashSet<String>,
    progress: Arc<progress::ProgressHandle>,
    workflow: Arc<workflow::Workflow>,
  ) -> Self {
    let user = std::env::var("USER")
      .ok()
      .filter(|u| !u.is_empty())
      .unwrap_or_else(|| "unknown".into());
    let mut prompter = Self::asking(
      control,
      decided,
      progress,
      Box::new(std::io::stderr()),
      user,
      true,
    );
    prompter.workflow = Some(workflow);
    prompter
  }

  /// The prompter proper, writing to `out`; `read_stdin` starts a thread that reads the
  /// terminal once the first question is put (not before: it would swallow what the user
  /// types ahead for their shell when no gate ever asks).
  fn asking(
    control: mpsc::UnboundedSender<Control>,
    decided: HashSet<String>,
    progress: Arc<progress::ProgressHandle>,
    out: Box<dyn Write + Send>,
    user: String,
    read_stdin: bool,
  ) -> Self {
    let (messages, heard) = std_mpsc::channel::<Prompt>();
    let lines = read_stdin.then(|| messages.clone());
    // Reading the terminal blocks, so it happens on threads of its own, never on a tokio worker.
    let thread = std::thread::spawn(move || {
      let mut conversation = Conversation {
        out,
        control,
        user,
        lines,
        progress: &progress,
        queue: VecDeque::new(),
        current: None,
        closed: false,
      };
      conversation.run(&heard);
    });
    Self {
      messages,
      thread: Some(thread),
      decided,
      workflow: None,
    }
  }
}

impl Drop for GatePrompter {
  fn drop(&mut self) {
    let _ = self.messages.send(Prompt::End);
    // It only ever waits for messages (the terminal is read on another thread), so it ends
    // at once.
    if let Some(thread) = self.thread.take() {
      let _ = thread.join();
    }
  }
}

impl EventSink for GatePrompter {
  fn emit(&mut self, record: &EventRecord) {
    match &record.event {
      event::Event::GateWaiting { stage, message, .. } if !self.decided.contains(stage) => {
        let _ = self.messages.send(Prompt::Ask {
          stage: stage.clone(),
          message: message.clone(),
        });
      }
      event::Event::GateDecided { stage, .. } => {
        // Told as the progress display tells it: `gate deploy rejected by timeout`.
        let known = self
          .workflow
          .as_deref()
          .map(|w| event_text::Known::of(w, &record.event))
          .unwrap_or_default();
        let _ = self.messages.send(Prompt::Decided {
          stage: stage.clone(),
          how: event_text::sentence(&record.event, known),
        });
      }
      _ => {}
    }
  }
}

/// Only one question is on the terminal at a time, whatever number of prompters there are.
static TERMINAL: Mutex<()> = Mutex::new(());

/// The question on the terminal now: its gate, the terminal held and the display hidden.
struct Open<'a> {
  stage: String,
  _terminal: std::sync::MutexGuard<'static, ()>,
  _hidden: progress::Suspended<'a>,
}

/// The asking thread's state.
struct Conversation<'a> {
  out: Box<dyn Write + Send>,
  control: mpsc::UnboundedSender<Control>,
  user: String,
  /// Where the terminal reader sends its lines, until it is started.
  lines: Option<std_mpsc::Sender<Prompt>>,
  progress: &'a progress::ProgressHandle,
  /// Gates waiting for their question, first asked first.
  queue: VecDeque<(String, Option<String>)>,
  current: Option<Open<'a>>,
  /// The terminal's input ended.
  closed: bool,
}

impl Conversation<'_> {
  fn run(&mut self, heard: &std_mpsc::Receiver<Prompt>) {
    while let Ok(message) = heard.recv() {
      // Everything already said is heard before a question is put, so a gate decided in the
      // same breath as it opened is never asked about.
      let mut next = Some(message);
      while let Some(message) = next {
        if !self.hear(message) {
          self.current = None;
          return;
        }
        next = heard.try_recv().ok();
      }
      self.ask_next();
    }
  }

  /// Takes in one message; false once the run is over.
  fn hear(&mut self, message: Prompt) -> bool {
    match message {
      Prompt::Ask { stage, message } => self.queue.push_back((stage, message)),
      Prompt::Decided { stage, how } => {
        self.queue.retain(|(s, _)| *s != stage);
        if self
          .current
          .as_ref()
          .is_some_and(|open| open.stage == stage)
        {
          let _ = writeln!(self.out, "\nthe question is closed: {how}");
          let _ = self.out.flush();
          self.current = None;
        }
      }
      Prompt::Line(line) => {
        if let Some(open) = self.current.take() {
          let answer = line.trim().to_ascii_lowercase();
          let decision = if answer == "y" || answer == "yes" {
            GateDecision::Approve
          } else {
            GateDecision::Reject
          };
          let _ = self.control.send(Control::Steer(Steer::Decide {
            stage: open.stage.clone(),
            decision,
            by: self.user.clone(),
            reason: Some("answered at the prompt".into()),
            inputs: None,
          }));
        }
      }
      Prompt::Closed => {
        self.closed = true;
        self.current = None;
        self.queue.clear();
      }
      Prompt::End => return false,
    }
    true
  }

  /// Puts the next question, unless one is open or nobody can answer.
  fn ask_next(&mut self) {
    if self.current.is_some() || self.closed {
      return;
    }
    let Some((stage, message)) = self.queue.pop_front() else {
      return;
    };
    let terminal = TERMINAL
      .lock()
      .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The live display is hidden while the question waits for an answer.
    let hidden = self.progress.suspend();
    let _ = write!(
      self.out,
      "\n{} Approve `{stage}`? [y/N] ",
      message.unwrap_or_else(|| format!("Gate `{stage}` is waiting."))
    );
    let _ = self.out.flush();
    self.current = Some(Open {
      stage,
      _terminal: terminal,
      _hidden: hidden,
    });
    if let Some(lines) = self.lines.take() {
      std::thread::spawn(move || read_lines(&lines));
    }
  }
}

/// Sends each line of stdin, then [`Prompt::Closed`] at its end.
fn read_lines(lines: &std_mpsc::Sender<Prompt>) {
  let stdin = std::io::stdin();
  loop {
    let mut line = String::new();
    match stdin.read_line(&mut line) {
      Ok(n) if n > 0 => {
        if lines.send(Prompt::Line(line)).is_err() {
          return;
        }
      }
      _ => {
        let _ = lines.send(Prompt::Closed);
        return;
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::time::Duration;

  /// A writer the test can read back.
  #[derive(Clone, Default)]
  struct Screen(Arc<Mutex<Vec<u8>>>);

  impl Write for Screen {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
      self
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend_from_slice(buf);
      Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
      Ok(())
    }
  }

  impl Screen {
    fn text(&self) -> String {
      let bytes = self
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
      String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Waits until the screen shows `text`.
    fn shows(&self, text: &str) -> String {
      for _ in 0..500 {
        if self.text().contains(text) {
          return self.text();
        }
        std::thread::sleep(Duration::from_millis(10));
      }
      panic!("the screen never showed {text:?}:\n{}", self.text());
    }
  }

  fn record(event: event::Event) -> EventRecord {
    EventRecord {
      ts: String::new(),
      run: Arc::from("r"),
      item: None,
      key: None,
      event,
    }
  }

  fn waiting(stage: &str) -> EventRecord {
    record(event::Event::GateWaiting {
      stage: stage.into(),
      message: Some(format!("Ship {stage}?")),
      kind: "gate".into(),
      timeout_ms: None,
    })
  }

  fn decided(stage: &str, decision: GateDecision, by: &str) -> EventRecord {
    record(event::Event::GateDecided {
      stage: stage.into(),
      decision,
      decided_by: by.into(),
      reason: None,
      inputs: None,
    })
  }

  #[test]
  fn a_gate_decided_elsewhere_closes_its_question_and_the_next_one_is_asked() {
    let (control, mut steered) = mpsc::unbounded_channel();
    let screen = Screen::default();
    let (_, progress) = progress::start(
      progress::ProgressMode::None,
      "w",
      2,
      false,
      Box::new(std::io::sink()),
    );
    let mut prompter = GatePrompter::asking(
      control,
      HashSet::new(),
      Arc::new(progress),
      Box::new(screen.clone()),
      "ann".into(),
      false,
    );
    prompter.emit(&waiting("one"));
    prompter.emit(&waiting("two"));
    screen.shows("Ship one? Approve `one`? [y/N] ");
    // Its timeout decides `one`: the question closes and `two` is put.
    prompter.emit(&decided("one", GateDecision::Reject, "timeout"));
    let text = screen.shows("Ship two? Approve `two`? [y/N] ");
    assert_eq!(
      text,
      "\nShip one? Approve `one`? [y/N] \nthe question is closed: stage one rejected by timeout\n\
       \nShip two? Approve `two`? [y/N] "
    );
    assert!(steered.try_recv().is_err(), "no answer was given for `one`");
    // The next line typed answers `two`, the question on the screen.
    let _ = prompter.messages.send(Prompt::Line("y\n".into()));
    let answer = std::thread::spawn(move || steered.blocking_recv())
      .join()
      .ok()
      .flatten();
    match answer {
      Some(Control::Steer(Steer::Decide {
        stage,
        decision,
        by,
        ..
      })) => {
        assert_eq!(
          (stage.as_str(), decision, by.as_str()),
          ("two", GateDecision::Approve, "ann")
        );
      }
      other => panic!("expected a decision, got {other:?}"),
    }
  }
}
