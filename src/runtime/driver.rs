//! The local tokio driver: the loop around the [`Core`] that `swdl run`, `swdl resume` and the
//! REPL use. It owns the clock, the attempts in flight (polled by its own task), the timers,
//! the control channel and the route to the sinks; every decision is the core's.
use super::delivery::Delivery;
use super::machine::{Command, Core, Finished, Input, Millis};
use super::*;
use crate::{
  event::EventSink,
  executor::{LogBudget, LogLine, LogStream, StageExecutor, StageResult, TaskIo},
};
use futures_util::{
  FutureExt, StreamExt,
  future::{AbortHandle, BoxFuture},
  stream::FuturesUnordered,
};
use std::{
  future::Future,
  time::{Duration, Instant, SystemTime},
};
use tokio::sync::mpsc;

/// Runs `workflow` to the end and returns its final state.
pub async fn execute(
  workflow: Arc<workflow::Workflow>,
  options: RunOptions,
  executor: Arc<dyn StageExecutor>,
  sinks: Vec<Box<dyn EventSink>>,
  control: mpsc::UnboundedReceiver<Control>,
) -> RunOutcome {
  // The driver runs as a task of its own so that the attempts it polls are woken on a worker
  // thread's local queue rather than injected from outside the runtime.
  let handle = tokio::spawn(async move {
    Driver::new(workflow, options, executor, sinks)
      .run(control)
      .await
  });
  // Dropping this future (the REPL replacing its run) stops the driver and its attempts.
  let mut handle = AbortOnDrop(handle);
  match (&mut handle.0).await {
    Ok(outcome) => outcome,
    Err(error) => std::panic::resume_unwind(error.into_panic()),
  }
}

/// Aborts a task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
  fn drop(&mut self) {
    self.0.abort();
  }
}

/// Wall-clock milliseconds that never go backwards: the epoch time at the start plus a
/// monotonic clock's progress.
struct Clock {
  anchor: Instant,
  epoch: Millis,
}

impl Clock {
  fn new() -> Self {
    let epoch = SystemTime::now()
      .duration_since(SystemTime::UNIX_EPOCH)
      .map_or(0, machine::millis);
    Self {
      anchor: Instant::now(),
      epoch,
    }
  }

  fn now(&self) -> Millis {
    self.epoch + machine::millis(self.anchor.elapsed())
  }

  /// The instant at which the clock reads `at`.
  fn instant(&self, at: Millis) -> Instant {
    self.anchor + Duration::from_millis(at.saturating_sub(self.epoch))
  }
}

/// Events handed on at once during a cascade of commands.
const BATCH: usize = 64;

/// The end of something the driver waits for: `None` for an attempt it stopped.
type Pending = BoxFuture<'static, Option<Input>>;

struct Driver {
  core: Core,
  executor: Arc<dyn StageExecutor>,
  hooks: Option<Arc<dyn hooks::Hooks>>,
  interactive: bool,
  resume: Option<Resume>,
  clock: Clock,
  /// Attempts, compensations and hook calls in flight, polled by the driver's own task: no
  /// task, channel or thread wake-up per attempt beyond the one that completes it.
  pending: FuturesUnordered<Pending>,
  aborts: HashMap<(usize, u32), AbortHandle>,
  /// What each attempt in flight has logged, to say what its log budget dropped.
  logged: HashMap<(usize, u32), Arc<LogBudget>>,
  /// What the compensation in flight (at most one runs at a time) has logged.
  compensation_logged: Option<(usize, Arc<LogBudget>)>,
  log_tx: mpsc::UnboundedSender<LogLine>,
  log_rx: mpsc::UnboundedReceiver<LogLine>,
  delivery: Delivery,
}

impl Driver {
  fn new(
    workflow: Arc<workflow::Workflow>,
    mut options: RunOptions,
    executor: Arc<dyn StageExecutor>,
    sinks: Vec<Box<dyn EventSink>>,
  ) -> Self {
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    Self {
      core: Core::new(workflow, options.core()),
      executor,
      hooks: options.hooks.take(),
      interactive: options.interactive,
      resume: options.resume.take(),
      clock: Clock::new(),
      pending: FuturesUnordered::new(),
      aborts: HashMap::new(),
      logged: HashMap::new(),
      compensation_logged: None,
      log_tx,
      log_rx,
      delivery: Delivery::new(sinks),
    }
  }

  async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) -> RunOutcome {
    let first = match self.resume.take() {
      Some(resume) => Input::Resume(resume),
      None => Input::Start { seed: seed() },
    };
    self.handle(first);
    let mut control_open = true;
    loop {
      self.drain();
      if self.core.is_finished() {
        break;
      }
      if self
        .core
        .should_suspend(self.interactive && control_open, control_open)
      {
        self.handle(Input::Suspend);
        continue;
      }
      self.delivery.flush();
      let wake = self.core.next_timer().map(|at| self.clock.instant(at));
      tokio::select! {
        Some(ended) = self.pending.next(), if !self.pending.is_empty() => {
          self.ended(ended);
          // Take everything else that ended meanwhile, so one pass covers them all.
          while let Some(Some(ended)) = self.pending.next().now_or_never() {
            self.ended(ended);
          }
        }
        Some(line) = self.log_rx.recv() => self.log(line),
        () = self.delivery.failed() => self.handle(Input::StoreFailed),
        message = control.recv(), if control_open => match message {
          Some(Control::Query(reply)) => self.query(reply),
          Some(message) => {
            if let Some(steer) = steer(message) {
              self.handle(Input::Steer(steer));
            }
          }
          None => control_open = false,
        },
        () = sleep_until(wake), if wake.is_some() => self.handle(Input::Tick),
      }
    }
    // Attempts still in flight (cancelled ones) stop now, not after the last commit.
    drop(std::mem::take(&mut self.pending));
    self.delivery.finish().await;
    self.core.into_outcome()
  }

  fn handle(&mut self, input: Input) {
    let now = self.clock.now();
    self.core.handle(now, input);
  }

  /// Carries out the core's commands, handing on events as they come.
  fn drain(&mut self) {
    while let Some(command) = self.core.next_command() {
      self.command(command);
      // A long cascade of attempts done on their first poll hands events on in batches, so
      // the store thread commits while the cascade goes on, without a wake-up per attempt.
      if self.core.events_waiting() >= BATCH {
        self.delivery.send(self.core.drain_events());
      }
    }
    if self.core.events_waiting() > 0 {
      self.delivery.send(self.core.drain_events());
    }
  }

  fn command(&mut self, command: Command) {
    match command {
      Command::Start {
        stage,
        attempt,
        task,
        timeout,
      } => {
        let io = TaskIo::new(stage, attempt, self.log_tx.clone());
        let budget = io.budget();
        let mut future = Box::pin(tokio::time::timeout(
          timeout,
          self.executor.execute(task, io),
        ));
        // Skills that finish without waiting (echo, most Lua glue) are done on the first poll:
        // handling them here saves a task, a channel message and a thread wake-up per stage.
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        if let std::task::Poll::Ready(result) = future.as_mut().poll(&mut cx) {
          self.take_logs();
          self.dropped_logs(stage, attempt, &budget);
          self.handle(Input::Finished {
            stage,
            attempt,
            result: finished(result),
          });
          return;
        }
        let (future, abort) = futures_util::future::abortable(future);
        self.aborts.insert((stage, attempt), abort);
        self.logged.insert((stage, attempt), budget);
        self.pending.push(Box::pin(async move {
          let result = future.await.ok()?;
          Some(Input::Finished {
            stage,
            attempt,
            result: finished(result),
          })
        }));
      }
      // Aborting drops the attempt's future: shell process groups are killed, Lua calls stop.
      Command::Cancel { stage, attempt } => {
        if let Some(abort) = self.aborts.remove(&(stage, attempt)) {
          abort.abort();
        }
        self.logged.remove(&(stage, attempt));
      }
      Command::AskPolicy {
        stage,
        policy,
        request,
      } => {
        let Some(hooks) = self.hooks.clone() else {
          self.handle(Input::Policy {
            stage,
            policy,
            result: Err("no hooks are loaded".into()),
          });
          return;
        };
        self.pending.push(Box::pin(async move {
          let result = hooks.decide(&policy, request).await;
          Some(Input::Policy {
            stage,
            policy,
            result,
          })
        }));
      }
      Command::AskRecovery {
        stage,
        attempt,
        strategy,
        failure,
      } => {
        let Some(hooks) = self.hooks.clone() else {
          self.handle(Input::Recovery {
            stage,
            attempt,
            strategy,
            result: Err("no hooks are loaded".into()),
          });
          return;
        };
        self.pending.push(Box::pin(async move {
          let result = hooks.recover(&strategy, failure).await;
          Some(Input::Recovery {
            stage,
            attempt,
            strategy,
            result,
          })
        }));
      }
      Command::Compensate {
        stage,
        task,
        timeout,
      } => {
        let io = TaskIo::compensation(stage, self.log_tx.clone());
        self.compensation_logged = Some((stage, io.budget()));
        let future = self.executor.execute(task, io);
        self.pending.push(Box::pin(async move {
          let result = tokio::time::timeout(timeout, future).await;
          Some(Input::Compensated {
            stage,
            result: finished(result),
          })
        }));
      }
    }
  }

  /// Something the driver waited for ended.
  fn ended(&mut self, ended: Option<Input>) {
    let Some(input) = ended else {
      return;
    };
    if let Input::Finished { stage, attempt, .. } = &input {
      let (stage, attempt) = (*stage, *attempt);
      self.aborts.remove(&(stage, attempt));
      // Lines logged before the result belong to the attempt that is still current.
      self.take_logs();
      if let Some(budget) = self.logged.remove(&(stage, attempt)) {
        self.dropped_logs(stage, attempt, &budget);
      }
    }
    if let Input::Compensated { stage, .. } = &input {
      self.take_logs();
      if let Some((i, budget)) = self.compensation_logged.take()
        && i == *stage
        && let Some(message) = budget.dropped_note()
      {
        self.log(LogLine {
          stage: i,
          attempt: 1,
          stream: LogStream::Log,
          message,
          compensation: true,
          tokens: None,
        });
      }
    }
    self.handle(input);
    self.drain();
  }

  /// Says how many lines an attempt's log budget dropped, as its last log line.
  fn dropped_logs(&mut self, stage: usize, attempt: u32, budget: &LogBudget) {
    if let Some(message) = budget.dropped_note() {
      self.log(LogLine {
        stage,
        attempt,
        stream: LogStream::Log,
        message,
        compensation: false,
        tokens: None,
      });
    }
  }

  fn take_logs(&mut self) {
    while let Ok(line) = self.log_rx.try_recv() {
      self.log(line);
    }
  }

  fn log(&mut self, line: LogLine) {
    self.handle(Input::Log(line));
  }

  /// Answers a query once everything before it is handled and its events are out.
  fn query(&mut self, reply: tokio::sync::oneshot::Sender<Snapshot>) {
    self.drain();
    let snapshot = self.core.snapshot();
    match self.delivery.barrier() {
      None => {
        let _ = reply.send(snapshot);
      }
      Some(done) => {
        tokio::spawn(async move {
          let _ = done.await;
          let _ = reply.send(snapshot);
        });
      }
    }
  }
}

/// The core's view of a control message (queries are the driver's).
fn steer(message: Control) -> Option<Steer> {
  match message {
    Control::Query(_) => None,
    Control::Steer(steer) => Some(steer),
  }
}

/// A fresh seed for a new run's random choices.
#[expect(
  clippy::cast_possible_truncation,
  reason = "a seed: the low bits of the clock are the point"
)]
fn seed() -> u64 {
  let nanos = SystemTime::now()
    .duration_since(SystemTime::UNIX_EPOCH)
    .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
  nanos ^ u64::from(std::process::id()).rotate_left(32)
}

fn finished(result: Result<StageResult, tokio::time::error::Elapsed>) -> Finished {
  match result {
    Ok(result) => Finished::Result(result),
    Err(_) => Finished::TimedOut,
  }
}

async fn sleep_until(at: Option<Instant>) {
  match at {
    Some(at) => tokio::time::sleep_until(at.into()).await,
    None => std::future::pending().await,
  }
}
