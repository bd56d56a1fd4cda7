//! Getting events to the sinks. Without a durable sink (the run store) events go straight to
//! every sink. With one, a thread of its own owns all sinks: it commits each batch to the
//! durable sinks, and only then hands it to the others, so nothing is shown before it is
//! committed while the core goes on deciding (and attempts go on starting) meanwhile. Batches
//! that arrive while a commit runs are committed together.
use crate::event::{EventRecord, EventSink};
use std::sync::mpsc;
use tokio::sync::{mpsc as tokio_mpsc, oneshot};

/// What the store thread is sent.
pub(super) enum Message {
  /// Events, each with its JSON for the durable sinks (made on the sending side, which has
  /// time to spare while the store thread commits).
  Events(Vec<(EventRecord, Option<String>)>),
  /// Answered once everything sent before is committed and shown.
  Barrier(oneshot::Sender<()>),
}

/// The route from the core's events to the sinks.
pub(super) enum Delivery {
  /// No durable sink: events reach every sink at once.
  Direct(Vec<Box<dyn EventSink>>),
  /// A durable sink: a thread commits, then shows.
  Store {
    sender: mpsc::Sender<Message>,
    failures: tokio_mpsc::UnboundedReceiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
  },
}

impl Delivery {
  /// Routes to `sinks`, starting the store thread when one of them is durable.
  pub(super) fn new(sinks: Vec<Box<dyn EventSink>>) -> Self {
    if !sinks.iter().any(|s| s.durable()) {
      return Self::Direct(sinks);
    }
    let (sender, receiver) = mpsc::channel();
    let (failed, failures) = tokio_mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
      .name("swdl-store".into())
      .spawn(move || commit_loop(sinks, &receiver, &failed));
    match spawned {
      Ok(thread) => Self::Store {
        sender,
        failures,
        thread: Some(thread),
      },
      // Without a thread nothing can be committed: report it as a store failure at once.
      Err(_) => {
        let (failed, failures) = tokio_mpsc::unbounded_channel();
        let _ = failed.send(());
        Self::Store {
          sender,
          failures,
          thread: None,
        }
      }
    }
  }

  /// Hands events on, in order.
  pub(super) fn send(&mut self, events: impl Iterator<Item = EventRecord>) {
    match self {
      Self::Direct(sinks) => {
        for record in events {
          for sink in sinks.iter_mut() {
            sink.emit(&record);
          }
        }
      }
      Self::Store { sender, .. } => {
        let encoded = events
          .map(|record| {
            let json = serde_json::to_string(&record).ok();
            (record, json)
          })
          .collect();
        let _ = sender.send(Message::Events(encoded));
      }
    }
  }

  /// Tells direct sinks that nothing more comes for now (the store thread flushes on its own).
  pub(super) fn flush(&mut self) {
    if let Self::Direct(sinks) = self {
      for sink in sinks.iter_mut() {
        sink.flush();
      }
    }
  }

  /// Resolves once everything handed on so far has been committed and shown.
  pub(super) fn barrier(&mut self) -> Option<oneshot::Receiver<()>> {
    self.flush();
    match self {
      Self::Direct(_) => None,
      Self::Store { sender, .. } => {
        let (tx, rx) = oneshot::channel();
        sender.send(Message::Barrier(tx)).ok().map(|()| rx)
      }
    }
  }

  /// Resolves when the durable sink failed to commit (never for direct delivery).
  pub(super) async fn failed(&mut self) {
    if let Self::Store { failures, .. } = self
      && failures.recv().await.is_some()
    {
      return;
    }
    std::future::pending::<()>().await;
  }

  /// Waits until everything is committed and shown, then stops the store thread.
  pub(super) async fn finish(mut self) {
    if let Some(done) = self.barrier() {
      let _ = done.await;
    }
    if let Self::Store { sender, thread, .. } = self {
      drop(sender);
      if let Some(thread) = thread {
        // It has nothing left to do: its channel is closed and every batch was answered.
        let _ = thread.join();
      }
    }
  }
}

/// The store thread: commit, then show, batch after batch, until the core's side hangs up.
fn commit_loop(
  mut sinks: Vec<Box<dyn EventSink>>,
  receiver: &mpsc::Receiver<Message>,
  failed: &tokio_mpsc::UnboundedSender<()>,
) {
  let durable: Vec<bool> = sinks.iter().map(|s| s.durable()).collect();
  let mut reported = false;
  while let Ok(first) = receiver.recv() {
    let mut events = Vec::new();
    let mut barriers = Vec::new();
    let mut take = |message| match message {
      Message::Events(batch) => events.extend(batch),
      Message::Barrier(reply) => barriers.push(reply),
    };
    take(first);
    while let Ok(more) = receiver.try_recv() {
      take(more);
    }
    for (sink, _) in sinks.iter_mut().zip(&durable).filter(|(_, d)| **d) {
      // The first durable sink takes the JSON; any other encodes for itself.
      for (record, json) in &mut events {
        match json.take() {
          Some(json) => sink.emit_encoded(record, json),
          None => sink.emit(record),
        }
      }
      sink.flush();
    }
    if !reported && sinks.iter().any(|s| s.durable() && !s.healthy()) {
      reported = true;
      let _ = failed.send(());
    }
    for (sink, _) in sinks.iter_mut().zip(&durable).filter(|(_, d)| !**d) {
      for (record, _) in &events {
        sink.emit(record);
      }
      sink.flush();
    }
    for reply in barriers {
      let _ = reply.send(());
    }
  }
}
