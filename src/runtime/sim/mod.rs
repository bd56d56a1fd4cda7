//! Deterministic simulation of the core: generated workflows run on a virtual clock with a
//! seeded fault injector (attempt outcomes and durations, hangs that run into timeouts, policy
//! and recovery answers, pauses, cancels, gate decisions, crashes that lose uncommitted events
//! and resume from the committed ones, suspensions decided and resumed), with invariants
//! checked after every step.
//!
//! `cargo test --lib runtime::sim` runs 10,000 seeds (`SWDL_SIM_RUNS` changes the count, e.g.
//! `SWDL_SIM_RUNS=1000000 cargo test --release --lib runtime::sim`); a failing seed is printed
//! with the command that replays it alone: `SWDL_SIM_SEED=N cargo test --lib runtime::sim`.
use super::machine::{self, Command, Core, Finished, Input, Millis, Steer};
use super::*;
use crate::{
  event::{Event, EventRecord, RunStatus, StageStatus},
  executor::StageResult,
  workflow::{OnFailure, Workflow},
};
use std::{collections::BTreeMap, fmt::Write as _};

mod generate;
mod invariants;

use generate::generate;

/// A small seeded generator (SplitMix64): the whole simulation draws from it.
struct Rng(u64);

impl Rng {
  fn next(&mut self) -> u64 {
    self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = self.0;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
  }

  /// A number in `0..n`.
  fn below(&mut self, n: u64) -> u64 {
    if n == 0 { 0 } else { self.next() % n }
  }

  /// True with probability `percent` / 100.
  fn chance(&mut self, percent: u64) -> bool {
    self.below(100) < percent
  }

  #[expect(clippy::cast_possible_truncation, reason = "below a `usize` length")]
  fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
    items[self.below(items.len() as u64) as usize]
  }
}

/// Something the simulated world will report to the core at a time.
#[derive(Debug)]
enum Due {
  Attempt {
    stage: usize,
    attempt: u32,
    result: Option<bool>,
  },
  Policy {
    stage: usize,
    policy: String,
  },
  Recovery {
    stage: usize,
    attempt: u32,
    strategy: String,
  },
  Compensation {
    stage: usize,
    ok: Option<bool>,
  },
}

/// What the simulations went through, to show they cover what they claim.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
  runs: u64,
  events: u64,
  crashes: u64,
  suspensions: u64,
  completed: u64,
  failed: u64,
  cancelled: u64,
  compensations: u64,
  retries: u64,
  timeouts: u64,
  /// Gates left undecided past their deadline while suspended.
  overdue: u64,
}

impl Stats {
  fn add(&mut self, other: &Self) {
    self.runs += other.runs;
    self.events += other.events;
    self.crashes += other.crashes;
    self.suspensions += other.suspensions;
    self.completed += other.completed;
    self.failed += other.failed;
    self.cancelled += other.cancelled;
    self.compensations += other.compensations;
    self.retries += other.retries;
    self.timeouts += other.timeouts;
    self.overdue += other.overdue;
  }
}

/// One simulated run, across every crash and resume.
struct Sim {
  rng: Rng,
  workflow: Arc<Workflow>,
  core: Core,
  now: Millis,
  /// What the world owes the core, by when; ties keep insertion order.
  due: BTreeMap<(Millis, u64), Due>,
  sequence: u64,
  /// Every event the current incarnation's store holds or was handed, in order.
  log: Vec<EventRecord>,
  /// How many of them are committed (survive a crash).
  committed: usize,
  /// Every event of every incarnation, for the determinism check.
  all: Vec<EventRecord>,
  /// Stages whose completion was committed: they must never start again.
  done: HashSet<Unit>,
  /// The observer's fold of the current incarnation's stream.
  seen: state::RunState,
  running: HashSet<Unit>,
  incarnation: u32,
  steers: u32,
  cancel_took: bool,
  steps: u32,
  trace: bool,
  stats: Stats,
  /// The stage compensated last in this incarnation.
  compensating: Option<Unit>,
  /// Primary attempts started per stage in this incarnation.
  tries: HashMap<Unit, u32>,
  /// Someone waits at the gates (`--wait`, a prompt) instead of the run suspending.
  waits: bool,
  /// Gates left undecided at a suspension until after their deadline: the resume must decide
  /// each by its timeout.
  overdue: Vec<usize>,
}

/// A stage, or one item of a fanned-out stage.
type Unit = (usize, Option<u32>);

const EPOCH: Millis = 1_800_000_000_000;

impl Sim {
  fn new(seed: u64, trace: bool) -> Result<Self, String> {
    let mut rng = Rng(seed);
    let text = generate(&mut rng);
    let waits = rng.chance(50);
    if trace {
      eprintln!("{text}");
    }
    let workflow = Arc::new(compose::load_str("sim.yaml", &text).map_err(|d| d.render(false))?);
    let core = Core::new(Arc::clone(&workflow), options(&workflow));
    Ok(Self {
      seen: state::RunState::new(&workflow, "sim"),
      rng,
      core,
      now: EPOCH,
      due: BTreeMap::new(),
      sequence: 0,
      log: Vec::new(),
      committed: 0,
      all: Vec::new(),
      done: HashSet::new(),
      running: HashSet::new(),
      incarnation: 1,
      steers: 0,
      cancel_took: false,
      steps: 0,
      trace,
      stats: Stats::default(),
      compensating: None,
      tries: HashMap::new(),
      waits,
      overdue: Vec::new(),
      workflow,
    })
  }

  fn run(&mut self) -> Result<(), String> {
    let seed = self.rng.next();
    self.input(Input::Start { seed })?;
    loop {
      self.steps += 1;
      if self.steps > 20_000 {
        return Err("the run did not end after 20,000 steps".into());
      }
      if self.core.is_finished() {
        if self.finished()? {
          return Ok(());
        }
        continue;
      }
      if self.incarnation < 6 && self.rng.chance(2) {
        self.crash()?;
        continue;
      }
      if self.steers < 8 && self.rng.chance(4) {
        self.steers += 1;
        self.steer()?;
        continue;
      }
      if self.core.should_suspend(self.waits, true) {
        self.input(Input::Suspend)?;
        continue;
      }
      let world = self.due.keys().next().map(|&(at, _)| at);
      let timer = self.core.next_timer();
      let world_first = match (world, timer) {
        (Some(w), Some(t)) => w <= t,
        (Some(_), None) => true,
        (None, _) => false,
      };
      match timer {
        _ if world_first => {
          let Some(((at, _), due)) = self.due.pop_first() else {
            continue;
          };
          self.now = self.now.max(at);
          self.deliver(due)?;
        }
        Some(t) => {
          self.now = self.now.max(t);
          self.input(Input::Tick)?;
        }
        None if self.core.paused => self.input(Input::Steer(Steer::Resume))?,
        // The one waiting at the gates decides one.
        None if self.waits && !self.core.waiting.is_empty() => {
          let i = self.core.waiting[0];
          self.input(Input::Steer(Steer::Decide {
            stage: self.workflow.stages[i].id.clone(),
            decision: decision::GateDecision::Approve,
            by: "sim".into(),
            reason: None,
            inputs: None,
          }))?;
        }
        None => return Err("stuck: nothing in flight, no timer, and no suspension".into()),
      }
    }
  }

  /// Hands the core one input, carries out its commands, and checks every invariant.
  #[expect(clippy::cast_possible_truncation, reason = "below a `usize` length")]
  fn input(&mut self, input: Input) -> Result<(), String> {
    if self.trace {
      eprintln!("{} <- {input:?}", self.now - EPOCH);
    }
    if matches!(input, Input::Steer(Steer::Cancel))
      && self.core.stop.is_none()
      && self.core.finishing.is_none()
    {
      self.cancel_took = true;
    }
    self.core.handle(self.now, input);
    while let Some(command) = self.core.next_command() {
      self.command(command)?;
      self.observe()?;
    }
    self.observe()?;
    // The store commits some of what it was handed (all of it, most of the time).
    if self.rng.chance(70) {
      self.committed = self.log.len();
    } else if self.log.len() > self.committed {
      self.committed += self.rng.below((self.log.len() - self.committed) as u64) as usize;
    }
    Ok(())
  }

  fn at(&mut self, delay: Millis, due: Due) {
    self.sequence += 1;
    self.due.insert((self.now + delay, self.sequence), due);
  }

  fn command(&mut self, command: Command) -> Result<(), String> {
    if self.trace {
      eprintln!("{} -> {command:?}", self.now - EPOCH);
    }
    match command {
      Command::Start {
        stage,
        attempt,
        timeout,
        ..
      } => {
        let timeout = machine::millis(timeout);
        let roll = self.rng.below(100);
        let result = match roll {
          0..75 => Some(true),
          75..90 => Some(false),
          _ => None,
        };
        let took = match result {
          // Hangs run into their timeout.
          None => timeout,
          Some(_) if self.rng.chance(30) => 0,
          Some(_) => self.rng.below(timeout + 50),
        };
        if took == 0 && result.is_some() {
          // Done on the first poll, like `echo`: handled before the next command.
          self.input(Input::Finished {
            stage,
            attempt,
            result: outcome(stage, result),
          })?;
        } else {
          let result = if took >= timeout { None } else { result };
          self.at(
            took.min(timeout),
            Due::Attempt {
              stage,
              attempt,
              result,
            },
          );
        }
      }
      Command::Cancel { stage, attempt } => {
        self.due.retain(|_, d| {
          !matches!(d, Due::Attempt { stage: s, attempt: a, .. } if *s == stage && *a == attempt)
        });
      }
      Command::AskPolicy { stage, policy, .. } => {
        let delay = self.rng.below(30);
        self.at(delay, Due::Policy { stage, policy });
      }
      Command::AskRecovery {
        stage,
        attempt,
        strategy,
        ..
      } => {
        let delay = self.rng.below(30);
        self.at(
          delay,
          Due::Recovery {
            stage,
            attempt,
            strategy,
          },
        );
      }
      Command::Compensate { stage, timeout, .. } => {
        let ok = match self.rng.below(10) {
          0 => None,
          1 | 2 => Some(false),
          _ => Some(true),
        };
        let delay = if ok.is_none() {
          machine::millis(timeout)
        } else {
          self.rng.below(40)
        };
        self.at(delay, Due::Compensation { stage, ok });
      }
    }
    Ok(())
  }

  fn deliver(&mut self, due: Due) -> Result<(), String> {
    let input = match due {
      Due::Attempt {
        stage,
        attempt,
        result,
      } => Input::Finished {
        stage,
        attempt,
        result: outcome(stage, result),
      },
      Due::Policy { stage, policy } => {
        let reason = Some("simulated".to_string());
        let result = match policy.as_str() {
          "yes" => Ok(hooks::PolicyDecision::Approve { reason }),
          "no" => Ok(hooks::PolicyDecision::Reject { reason }),
          "ask" => Ok(hooks::PolicyDecision::Ask { reason }),
          _ => Err("simulated policy failure".into()),
        };
        Input::Policy {
          stage,
          policy,
          result,
        }
      }
      Due::Recovery {
        stage,
        attempt,
        strategy,
      } => {
        let result = if strategy == "broken" {
          Err("simulated recovery failure".into())
        } else {
          Ok(match self.rng.below(6) {
            0 => hooks::RecoveryAction::Retry {
              delay: Some(std::time::Duration::from_millis(self.rng.below(20))),
              with: Some(serde_json::Map::from_iter([("n".into(), 99.into())])),
            },
            1 => hooks::RecoveryAction::Fallback {
              uses: "backup".into(),
            },
            2 => hooks::RecoveryAction::Skip,
            3 => hooks::RecoveryAction::Abort,
            4 => hooks::RecoveryAction::Compensate,
            _ => hooks::RecoveryAction::Retry {
              delay: None,
              with: None,
            },
          })
        };
        Input::Recovery {
          stage,
          attempt,
          strategy,
          result,
        }
      }
      Due::Compensation { stage, ok } => Input::Compensated {
        stage,
        result: match ok {
          Some(true) => Finished::Result(StageResult::outputs(serde_json::Map::new())),
          Some(false) => Finished::Result(StageResult::failed("undo failed")),
          None => Finished::TimedOut,
        },
      },
    };
    self.input(input)
  }

  /// Someone steers: pause, resume, step, cancel, or decide a waiting gate.
  #[expect(clippy::cast_possible_truncation, reason = "below a `usize` length")]
  fn steer(&mut self) -> Result<(), String> {
    let waiting = self.core.waiting.clone();
    let steer = match self.rng.below(10) {
      0..3 if !waiting.is_empty() => {
        let i = waiting[self.rng.below(waiting.len() as u64) as usize];
        Steer::Decide {
          stage: self.workflow.stages[i].id.clone(),
          decision: if self.rng.chance(70) {
            decision::GateDecision::Approve
          } else {
            decision::GateDecision::Reject
          },
          by: "sim".into(),
          reason: None,
          inputs: None,
        }
      }
      3 | 4 => Steer::Pause,
      5 | 6 => Steer::Resume,
      7 => Steer::Step,
      8 if self.rng.chance(60) => Steer::Cancel,
      _ => Steer::Break(format!("s{}", self.rng.below(8))),
    };
    self.input(Input::Steer(steer))
  }

  /// The process dies: uncommitted events are lost, attempts in flight with it; a new core
  /// resumes from what the store holds.
  fn crash(&mut self) -> Result<(), String> {
    if self.trace {
      eprintln!(
        "{} crash after {} committed events",
        self.now - EPOCH,
        self.committed
      );
    }
    self.log.truncate(self.committed);
    self.stats.crashes += 1;
    self.restart(HashMap::new())
  }

  fn restart(&mut self, decisions: HashMap<String, PriorDecision>) -> Result<(), String> {
    self.incarnation += 1;
    self.due.clear();
    self.seen = state::RunState::new(&self.workflow, "sim");
    self.running.clear();
    self.tries.clear();
    self.compensating = None;
    self.done.clear();
    for record in &self.log {
      if let Event::StageCompleted { stage, .. } = &record.event
        && let Some(i) = self.seen.position(stage)
      {
        self.done.insert((i, record.item));
      }
      self.seen.apply(record);
    }
    self.core = Core::new(Arc::clone(&self.workflow), options(&self.workflow));
    self.cancel_took = false;
    let resume = Resume {
      events: self.log.clone(),
      decisions,
      attempt: self.incarnation,
    };
    self.input(Input::Resume(resume))
  }

  /// The run emitted `run_completed`: check its final statuses; a suspended run gets its gates
  /// decided and resumes. Returns true when the simulation is over.
  fn finished(&mut self) -> Result<bool, String> {
    self.committed = self.log.len();
    self.final_statuses()?;
    match self.seen.status {
      RunStatus::Completed => self.stats.completed += 1,
      RunStatus::Failed => self.stats.failed += 1,
      RunStatus::Cancelled => self.stats.cancelled += 1,
      _ => self.stats.suspensions += 1,
    }
    // A gate whose deadline passed while the run was suspended is decided by the resume.
    if let Some(&i) = self.overdue.iter().find(|i| self.core.waiting.contains(i)) {
      return Err(format!(
        "gate {} still waits after its deadline passed",
        self.workflow.stages[i].id
      ));
    }
    self.overdue.clear();
    if self.seen.status != RunStatus::Waiting {
      return Ok(true);
    }
    if self.incarnation > 40 {
      return Err("still suspended after 40 resumes".into());
    }
    let mut decisions = HashMap::new();
    let mut resume_at = self.now;
    for &i in &self.core.waiting {
      // Sometimes nobody decides a gate that has a timeout before it passes.
      if let Some(&(deadline, _)) = self.core.deadlines.iter().find(|&&(_, w)| w == i)
        && self.rng.chance(40)
      {
        self.overdue.push(i);
        self.stats.overdue += 1;
        resume_at = resume_at.max(deadline + 1 + self.rng.below(1_000));
        continue;
      }
      let decision = if self.rng.chance(75) {
        decision::GateDecision::Approve
      } else {
        decision::GateDecision::Reject
      };
      decisions.insert(
        self.workflow.stages[i].id.clone(),
        PriorDecision {
          decision,
          by: "user".into(),
          reason: None,
          inputs: None,
        },
      );
    }
    self.now = resume_at;
    self.restart(decisions)?;
    Ok(false)
  }
}

fn options(workflow: &Workflow) -> CoreOptions {
  CoreOptions {
    run_id: "sim".into(),
    max_parallel: workflow.config.max_parallel,
    params: params::resolve(workflow, &[]).unwrap_or_default(),
    approve: HashSet::new(),
    reject: HashSet::new(),
    approve_all: false,
    masker: mask::Masker::default(),
    hooks: true,
    start_paused: false,
    reuse: None,
  }
}

/// What an attempt of stage `stage` reports: outputs, a failure, or (`None`) a timeout.
fn outcome(stage: usize, result: Option<bool>) -> Finished {
  match result {
    Some(true) => Finished::Result(StageResult::outputs(serde_json::Map::from_iter([(
      "v".to_string(),
      serde_json::Value::from(stage),
    )]))),
    Some(false) => Finished::Result(StageResult::failed(format!("s{stage} failed"))),
    None => Finished::TimedOut,
  }
}

/// Runs seed `seed` twice: once checking invariants, once more to check the same events come
/// out.
fn simulate(seed: u64, trace: bool) -> Result<Stats, String> {
  let mut first = Sim::new(seed, trace)?;
  first.run()?;
  let mut second = Sim::new(seed, false)?;
  second.run()?;
  if first.all != second.all {
    let at = first
      .all
      .iter()
      .zip(&second.all)
      .position(|(a, b)| a != b)
      .unwrap_or(first.all.len().min(second.all.len()));
    return Err(format!(
      "the same seed gave different events from event {at}"
    ));
  }
  first.stats.runs = 1;
  Ok(first.stats)
}

fn env_number(name: &str) -> Option<u64> {
  std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn simulated_runs_keep_every_invariant() {
  if let Some(seed) = env_number("SWDL_SIM_SEED") {
    if let Err(error) = simulate(seed, true) {
      panic!("simulation seed {seed} failed: {error}");
    }
    return;
  }
  let runs = env_number("SWDL_SIM_RUNS").unwrap_or(10_000);
  let threads = std::thread::available_parallelism()
    .map_or(2, std::num::NonZero::get)
    .min(8) as u64;
  let results: Vec<(Stats, Vec<(u64, String)>)> = std::thread::scope(|scope| {
    let workers: Vec<_> = (0..threads)
      .map(|t| {
        scope.spawn(move || {
          let mut failures = Vec::new();
          let mut stats = Stats::default();
          let mut seed = t;
          while seed < runs && failures.len() < 3 {
            match simulate(seed, false) {
              Ok(run) => stats.add(&run),
              Err(error) => failures.push((seed, error)),
            }
            seed += threads;
          }
          (stats, failures)
        })
      })
      .collect();
    workers.into_iter().filter_map(|w| w.join().ok()).collect()
  });
  let mut stats = Stats::default();
  let mut failures = Vec::new();
  for (s, f) in results {
    stats.add(&s);
    failures.extend(f);
  }
  eprintln!("simulated: {stats:?}");
  assert!(
    runs < 1_000 || stats.overdue > 0,
    "no run left a gate undecided past its deadline"
  );
  assert!(
    !failures.is_empty() || stats.runs == runs,
    "only {} of {runs} runs ran",
    stats.runs
  );
  if let Some((seed, error)) = failures.iter().min_by_key(|(s, _)| *s) {
    panic!(
      "{} of {runs} simulated runs failed; first: seed {seed}: {error}\n\
       replay it with: SWDL_SIM_SEED={seed} cargo test --lib runtime::sim",
      failures.len()
    );
  }
}

#[test]
fn the_generator_covers_every_feature() {
  let mut rng = Rng(7);
  let all: String = (0..200).map(|_| generate(&mut rng)).collect();
  for feature in [
    "gate:",
    "retry:",
    "fallback:",
    "compensate:",
    "risk: high",
    "recover:",
    "always()",
    "failure()",
    "cancelled()",
    "on_failure: halt",
    "on_failure: ignore",
    "on_failure: continue",
    "timeout:",
    "policy:",
    "for_each:",
    "fail_fast: false",
    "    max_parallel: ",
  ] {
    assert!(all.contains(feature), "no generated workflow has {feature}");
  }
}
