//! Runtime figures: engine overhead per stage on generated layered workflows, 1,000 parallel
//! sleeps, peak memory of a 10,000-stage run, `swdl run examples/hello.yaml` wall time, and a
//! hand-written tokio floor for the same DAG. Run with `cargo bench --bench runtime`.
use std::{
  fmt::Write as _,
  hint::black_box,
  path::PathBuf,
  process::{Command, Stdio},
  sync::Arc,
  time::{Duration, Instant},
};
use swdl::{
  executor::{BoxFuture, StageExecutor, StageResult, StageTask, TaskIo},
  runtime::{self, RunOptions},
  workflow::Workflow,
};
use tokio::sync::{Semaphore, watch};

/// `memory`: the re-executed child that measures peak memory in a fresh process; `profile`:
/// only the 10,000-stage engine run, repeated, for `perf record`.
const CHILD_ENV: &str = "SWDL_BENCH_CHILD";

/// A layered DAG like `benches/load.rs`: `width` stages per layer, each depending on two stages
/// of the layer before, reading one of their outputs and interpolating a parameter, and every
/// fifth one guarded by a (true) parameter condition.
fn layered(stages: usize, width: usize, max_parallel: usize) -> String {
  let mut out = String::with_capacity(stages * 160);
  out.push_str("name: generated\nparameters:\n  n: { type: integer, default: 3 }\n");
  let _ = writeln!(out, "config: {{ max_parallel: {max_parallel} }}\nstages:");
  for i in 0..stages {
    let _ = writeln!(out, "  - id: s{i}");
    if let Some((a, b)) = layered_deps(i, width) {
      let _ = writeln!(out, "    depends_on: [s{a}, s{b}]");
      let _ = writeln!(out, "    uses: echo");
      let _ = writeln!(
        out,
        "    with: {{ x: \"$<< stages.s{a}.outputs.x >>\", n: \"v$<< parameters.n >>\" }}"
      );
    } else {
      let _ = writeln!(out, "    uses: echo\n    with: {{ x: seed }}");
    }
    if i % 5 == 0 {
      let _ = writeln!(out, "    if: $<< parameters.n > 2 >>");
    }
  }
  out
}

/// The two dependencies of stage `i` in [`layered`] (the first is the one whose output is read).
fn layered_deps(i: usize, width: usize) -> Option<(usize, usize)> {
  (i >= width).then(|| {
    let layer_start = (i / width - 1) * width;
    (layer_start + i % width, layer_start + (i + 1) % width)
  })
}

/// `stages` independent stages, each sleeping `ms` milliseconds.
fn sleepers(stages: usize, ms: u64) -> String {
  let mut out = String::with_capacity(stages * 48);
  let _ = writeln!(
    out,
    "name: sleepers\nconfig: {{ max_parallel: {stages} }}\nstages:"
  );
  for i in 0..stages {
    let _ = writeln!(
      out,
      "  - id: s{i}\n    uses: sleep\n    with: {{ ms: {ms} }}"
    );
  }
  out
}

/// A chain of `stages` stages, each depending on the one before, all running `uses` with
/// `with` (the built-in skills: `echo`, or `sleep` with `ms: 0`).
fn chain(stages: usize, uses: &str, with: &str) -> String {
  let mut out = String::with_capacity(stages * 64);
  out.push_str("name: chain\nstages:\n");
  for i in 0..stages {
    let _ = writeln!(out, "  - id: s{i}\n    uses: {uses}\n    with: {with}");
    if i > 0 {
      let _ = writeln!(out, "    depends_on: s{}", i - 1);
    }
  }
  out
}

/// The in-bench executor: `sleep` waits `ms` milliseconds on the tokio timer, everything else
/// returns its inputs as outputs at once.
struct Immediate;

impl StageExecutor for Immediate {
  fn execute(&self, task: StageTask, _io: TaskIo) -> BoxFuture<StageResult> {
    Box::pin(async move {
      if task.skill == "sleep" {
        let ms = task.inputs.get("ms").and_then(serde_json::Value::as_u64);
        tokio::time::sleep(Duration::from_millis(ms.unwrap_or(0))).await;
      }
      match &*task.inputs {
        serde_json::Value::Object(inputs) => StageResult::outputs(inputs.clone()),
        _ => StageResult::outputs(serde_json::Map::new()),
      }
    })
  }
}

/// A loaded workflow and its default parameters.
struct Prepared {
  workflow: Arc<Workflow>,
  params: indexmap::IndexMap<String, serde_json::Value>,
}

fn prepare(text: &str) -> Prepared {
  let workflow = swdl::compose::load_str("generated.yaml", text).expect("generated workflow loads");
  let params = swdl::params::resolve(&workflow, &[]).expect("defaults resolve");
  Prepared {
    workflow: Arc::new(workflow),
    params,
  }
}

/// One full run through `runtime::execute` with no event sinks; returns how many stages
/// completed.
async fn run_swdl(prepared: &Prepared, max_parallel: usize) -> usize {
  run_with(
    prepared,
    max_parallel,
    "bench",
    Vec::new(),
    Arc::new(Immediate),
  )
  .await
}

/// One run on the built-in skills (`echo`, `sleep`), as `swdl run` executes them.
async fn run_builtins(prepared: &Prepared) -> usize {
  run_with(
    prepared,
    3,
    "bench",
    Vec::new(),
    Arc::new(swdl::builtin::Builtins::new()),
  )
  .await
}

/// A run whose every event is committed to a run store in `dir`, as `swdl run` does.
async fn run_stored(
  prepared: &Prepared,
  max_parallel: usize,
  dir: &std::path::Path,
  executor: Arc<dyn StageExecutor>,
) -> usize {
  static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
  let id = format!(
    "bench-{}",
    RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
  );
  let mut store = swdl::store::Store::open(dir).expect("open the store");
  let empty = serde_json::json!({});
  store
    .create_run(&swdl::store::NewRun {
      id: &id,
      workflow: &prepared.workflow.name,
      file: "generated.yaml",
      source: "",
      params: &empty,
      options: &empty,
    })
    .expect("create the run");
  let error = Arc::new(std::sync::Mutex::new(None));
  let sink = swdl::store::StoreSink::new(store, 1, Arc::clone(&error));
  let completed = run_with(prepared, max_parallel, &id, vec![Box::new(sink)], executor).await;
  assert!(
    error.lock().map_or(true, |e| e.is_none()),
    "store writes failed"
  );
  completed
}

async fn run_with(
  prepared: &Prepared,
  max_parallel: usize,
  run_id: &str,
  sinks: Vec<Box<dyn swdl::event::EventSink>>,
  executor: Arc<dyn StageExecutor>,
) -> usize {
  let options = RunOptions {
    run_id: run_id.into(),
    max_parallel,
    params: prepared.params.clone(),
    approve: Default::default(),
    reject: Default::default(),
    approve_all: false,
    interactive: false,
    masker: swdl::mask::Masker::default(),
    hooks: None,
    resume: None,
    start_paused: false,
    reuse: None,
  };
  // The sender stays alive for the whole run, as it does under `swdl run`.
  let (_control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
  let outcome = runtime::execute(
    Arc::clone(&prepared.workflow),
    options,
    executor,
    sinks,
    control_rx,
  )
  .await;
  outcome
    .state
    .stages
    .values()
    .filter(|s| s.status == swdl::event::StageStatus::Completed)
    .count()
}

/// The floor: the same DAG as [`layered`] written directly on tokio. One task per stage awaits
/// its dependencies' outputs on `watch` channels, takes one of `permits` semaphore permits,
/// builds its inputs (copying `x` from its first dependency's outputs and the interpolated
/// parameter), "runs" a no-op skill that returns the inputs as outputs, and publishes them.
/// Call it from a worker thread (`tokio::spawn`): spawning 10,000 tasks from `block_on`'s thread
/// goes through the shared injection queue and is about three times slower on two cores.
async fn run_floor(stages: usize, width: usize, permits: usize) -> usize {
  type Outputs = Option<Arc<serde_json::Map<String, serde_json::Value>>>;
  let semaphore = Arc::new(Semaphore::new(permits));
  let (senders, receivers): (Vec<watch::Sender<Outputs>>, Vec<watch::Receiver<Outputs>>) =
    (0..stages).map(|_| watch::channel(None)).unzip();
  let n = serde_json::Value::String("v3".into());
  let mut tasks = Vec::with_capacity(stages);
  for (i, sender) in senders.into_iter().enumerate() {
    let deps: Vec<watch::Receiver<Outputs>> = layered_deps(i, width)
      .map(|(a, b)| vec![receivers[a].clone(), receivers[b].clone()])
      .unwrap_or_default();
    let semaphore = Arc::clone(&semaphore);
    let n = n.clone();
    tasks.push(tokio::spawn(async move {
      let mut first: Outputs = None;
      for mut dep in deps {
        let outputs = dep
          .wait_for(Option::is_some)
          .await
          .expect("dependency publishes")
          .clone();
        first = first.or(outputs);
      }
      let _permit = semaphore.acquire().await.expect("semaphore open");
      let mut inputs = serde_json::Map::new();
      match first {
        Some(outputs) => {
          inputs.insert("x".into(), outputs["x"].clone());
          inputs.insert("n".into(), n);
        }
        None => {
          inputs.insert("x".into(), "seed".into());
        }
      }
      let outputs = black_box(inputs);
      sender.send_replace(Some(Arc::new(outputs)));
    }));
  }
  drop(receivers);
  let mut done = 0;
  for task in tasks {
    task.await.expect("floor task");
    done += 1;
  }
  done
}

/// Runs `f` repeatedly for about `budget` (at least `min` times) and returns the median.
fn measure(budget: Duration, min: usize, mut f: impl FnMut()) -> (Duration, usize) {
  let mut samples = Vec::new();
  let start = Instant::now();
  while samples.len() < min || (start.elapsed() < budget && samples.len() < 1_000) {
    let t = Instant::now();
    f();
    samples.push(t.elapsed());
  }
  samples.sort();
  (samples[samples.len() / 2], samples.len())
}

fn verdict(ok: bool) -> &'static str {
  if ok { "ok" } else { "OVER" }
}

fn ms(d: Duration) -> f64 {
  d.as_secs_f64() * 1e3
}

/// Peak resident memory (`VmHWM`) of this process, in KiB.
fn peak_kib() -> Option<u64> {
  let status = std::fs::read_to_string("/proc/self/status").ok()?;
  let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
  line.split_whitespace().nth(1)?.parse().ok()
}

fn tokio_runtime() -> tokio::runtime::Runtime {
  // The same runtime `swdl run` builds: multi-threaded, one worker per core.
  tokio::runtime::Builder::new_multi_thread()
    .enable_all()
    .build()
    .expect("tokio runtime")
}

/// Child mode: load and run the 10,000-stage workflow once, then print peak memory.
fn memory_child() {
  let before = peak_kib().unwrap_or(0);
  let text = layered(10_000, 100, 100);
  let prepared = prepare(&text);
  let loaded = peak_kib().unwrap_or(0);
  let completed = tokio_runtime().block_on(run_swdl(&prepared, 100));
  assert_eq!(completed, 10_000, "every stage completes");
  let after = peak_kib().unwrap_or(0);
  println!("{before} {loaded} {after}");
}

/// Child mode for profilers: run the 10,000-stage workflow `SWDL_BENCH_RUNS` times (20).
fn profile_child() {
  let prepared = prepare(&layered(10_000, 100, 100));
  let runs = std::env::var("SWDL_BENCH_RUNS")
    .ok()
    .and_then(|r| r.parse().ok())
    .unwrap_or(20);
  let rt = tokio_runtime();
  for _ in 0..runs {
    black_box(rt.block_on(run_swdl(&prepared, 100)));
  }
}

/// A chain of 1,000 `echo` stages with the run store, over and over (for a profiler).
fn profile_store_child() {
  let dir = std::env::temp_dir().join(format!("swdl-bench-profile-{}", std::process::id()));
  let echo = prepare(&chain(1_000, "echo", "{ x: 1 }"));
  let runs = std::env::var("SWDL_BENCH_RUNS")
    .ok()
    .and_then(|r| r.parse().ok())
    .unwrap_or(20);
  let rt = tokio_runtime();
  for _ in 0..runs {
    black_box(rt.block_on(run_stored(
      &echo,
      3,
      &dir,
      Arc::new(swdl::builtin::Builtins::new()),
    )));
  }
  let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
  match std::env::var(CHILD_ENV).as_deref() {
    Ok("memory") => return memory_child(),
    Ok("profile") => return profile_child(),
    Ok("profile-store") => return profile_store_child(),
    _ => {}
  }
  let rt = tokio_runtime();

  // 1 and 5: engine overhead per stage, and the hand-written floor.
  for (stages, budget) in [
    (1_000, Duration::from_secs(3)),
    (10_000, Duration::from_secs(8)),
  ] {
    let width = 100;
    let prepared = prepare(&layered(stages, width, 100));
    assert_eq!(
      rt.block_on(run_swdl(&prepared, 100)),
      stages,
      "every stage completes"
    );
    let (swdl, runs) = measure(budget, 5, || {
      black_box(rt.block_on(run_swdl(&prepared, 100)));
    });
    let floor_run = || rt.block_on(async { tokio::spawn(run_floor(stages, width, 100)).await });
    assert_eq!(floor_run().expect("floor runs"), stages);
    let (floor, floor_runs) = measure(budget / 2, 5, || {
      black_box(floor_run().expect("floor runs"));
    });
    let per_stage = swdl.as_secs_f64() * 1e6 / stages as f64;
    println!(
      "engine {stages:>6} stages: {:>8.2} ms, {per_stage:>6.2} µs/stage (target < 20 µs/stage) {} (median of {runs})",
      ms(swdl),
      verdict(per_stage < 20.0),
    );
    println!(
      "floor  {stages:>6} stages: {:>8.2} ms, {:>6.2} µs/stage; swdl/floor {:.1}x (median of {floor_runs})",
      ms(floor),
      floor.as_secs_f64() * 1e6 / stages as f64,
      swdl.as_secs_f64() / floor.as_secs_f64(),
    );
  }

  // 6: the same 1,000-stage run with every event committed to a run store.
  {
    let dir = std::env::temp_dir().join(format!("swdl-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let prepared = prepare(&layered(1_000, 100, 100));
    assert_eq!(
      rt.block_on(run_stored(&prepared, 100, &dir, Arc::new(Immediate))),
      1_000
    );
    let (stored, runs) = measure(Duration::from_secs(5), 5, || {
      black_box(rt.block_on(run_stored(&prepared, 100, &dir, Arc::new(Immediate))));
    });
    let (plain, _) = measure(Duration::from_secs(2), 5, || {
      black_box(rt.block_on(run_swdl(&prepared, 100)));
    });
    println!(
      "store  {:>6} stages: {:>8.2} ms, {:>6.2} µs/stage with every event committed; {:.2} µs/stage more than without (median of {runs})",
      1_000,
      ms(stored),
      stored.as_secs_f64() * 1e3,
      (stored.as_secs_f64() - plain.as_secs_f64()) * 1e3,
    );
    let _ = std::fs::remove_dir_all(&dir);
  }

  // Chains of 1,000 stages on the built-in skills: each hop waits for the one before, so a
  // per-hop cost (a timer tick, a commit) shows at once.
  {
    let dir = std::env::temp_dir().join(format!("swdl-bench-chain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let echo = prepare(&chain(1_000, "echo", "{ x: 1 }"));
    let sleep0 = prepare(&chain(1_000, "sleep", "{ ms: 0 }"));
    for (name, prepared) in [("echo", &echo), ("sleep 0", &sleep0)] {
      assert_eq!(rt.block_on(run_builtins(prepared)), 1_000);
      let (took, runs) = measure(Duration::from_secs(3), 5, || {
        black_box(rt.block_on(run_builtins(prepared)));
      });
      println!(
        "chain  {:>6} x {name:<8} in memory: {:>8.2} ms (target < 20 ms) {} (median of {runs})",
        1_000,
        ms(took),
        verdict(took < Duration::from_millis(20)),
      );
    }
    let builtins = || -> Arc<dyn StageExecutor> { Arc::new(swdl::builtin::Builtins::new()) };
    assert_eq!(rt.block_on(run_stored(&echo, 3, &dir, builtins())), 1_000);
    let (took, runs) = measure(Duration::from_secs(5), 5, || {
      black_box(rt.block_on(run_stored(&echo, 3, &dir, builtins())));
    });
    println!(
      "chain  {:>6} x echo     with the store: {:>8.2} ms (target < 20 ms) {} (median of {runs})",
      1_000,
      ms(took),
      verdict(took < Duration::from_millis(20)),
    );
    let _ = std::fs::remove_dir_all(&dir);
  }

  // 2: 1,000 independent 10 ms sleeps, all at once.
  let prepared = prepare(&sleepers(1_000, 10));
  assert_eq!(rt.block_on(run_swdl(&prepared, 1_000)), 1_000);
  let (sleep, runs) = measure(Duration::from_secs(3), 10, || {
    black_box(rt.block_on(run_swdl(&prepared, 1_000)));
  });
  println!(
    "1,000 x 10 ms sleeps, max_parallel 1000: {:>8.2} ms wall (target < 150 ms) {} (median of {runs})",
    ms(sleep),
    verdict(sleep < Duration::from_millis(150)),
  );
  // Fan-out: a `for_each` of 10,000 `echo` items against 10,000 separate `echo` stages, both at
  // max_parallel 100 on the built-in skills; and expanding and planning a 3x3x3 matrix.
  {
    let list: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let fanned = prepare(&format!(
      "name: fanned\nstages:\n  - id: each\n    for_each: [{}]\n    uses: echo\n    with: {{ x: \"$<< item >>\" }}\n",
      list.join(", ")
    ));
    let mut separate = String::from("name: separate\nstages:\n");
    for i in 0..10_000 {
      let _ = writeln!(
        separate,
        "  - id: s{i}\n    uses: echo\n    with: {{ x: \"{i}\" }}"
      );
    }
    let separate = prepare(&separate);
    let builtins = || Arc::new(swdl::builtin::Builtins::new());
    assert_eq!(
      rt.block_on(run_with(&fanned, 100, "bench", Vec::new(), builtins())),
      1
    );
    assert_eq!(
      rt.block_on(run_with(&separate, 100, "bench", Vec::new(), builtins())),
      10_000
    );
    let (items, runs) = measure(Duration::from_secs(6), 5, || {
      black_box(rt.block_on(run_with(&fanned, 100, "bench", Vec::new(), builtins())));
    });
    let (stages, _) = measure(Duration::from_secs(6), 5, || {
      black_box(rt.block_on(run_with(&separate, 100, "bench", Vec::new(), builtins())));
    });
    let per_item = items.as_secs_f64() * 1e6 / 10_000.0;
    let per_stage = stages.as_secs_f64() * 1e6 / 10_000.0;
    println!(
      "fanout 10,000 items: {:>8.2} ms, {per_item:>6.2} µs/item; 10,000 stages {:>8.2} ms, {per_stage:>6.2} µs/stage; item/stage {:.2}x (target <= 1, within 5% noise) {} (median of {runs})",
      ms(items),
      ms(stages),
      per_item / per_stage,
      verdict(per_item <= per_stage * 1.05),
    );
    let matrix_text = "name: m\nstages:\n  - id: build\n    matrix: { os: [a, b, c], rust: [x, y, z], arch: [1, 2, 3] }\n    uses: echo\n    with: { t: \"$<< matrix.os >>\" }\n";
    let matrix = prepare(matrix_text);
    let spec =
      serde_json::json!({"os": ["a", "b", "c"], "rust": ["x", "y", "z"], "arch": [1, 2, 3]});
    let (expand, expand_runs) = measure(Duration::from_secs(1), 100, || {
      let items = runtime::expand(swdl::workflow::FanKind::Matrix, black_box(spec.clone()));
      assert_eq!(items.map(|i| i.len()).ok(), Some(27));
    });
    let (plan, _) = measure(Duration::from_secs(1), 100, || {
      black_box(swdl::plan::plan(&matrix.workflow, &matrix.params));
    });
    let (load, _) = measure(Duration::from_secs(1), 100, || {
      black_box(prepare(matrix_text));
    });
    println!(
      "matrix 3x3x3: expand {:.1} µs, plan {:.1} µs, load + validate {:.1} µs (target < 1 ms) {} (median of {expand_runs})",
      expand.as_secs_f64() * 1e6,
      plan.as_secs_f64() * 1e6,
      load.as_secs_f64() * 1e6,
      verdict((expand + plan + load) < Duration::from_millis(1)),
    );
  }

  drop(rt);

  // 3: peak memory of a 10,000-stage run, in a fresh process.
  let child = std::env::current_exe()
    .map_err(|e| e.to_string())
    .and_then(|exe| {
      Command::new(exe)
        .env(CHILD_ENV, "memory")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())
    });
  match child {
    Ok(out) if out.status.success() => {
      let text = String::from_utf8_lossy(&out.stdout);
      let kib: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
      if let [before, loaded, after] = kib[..] {
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
          "peak memory, 10,000-stage run: {:>6.1} MiB VmHWM (target < 100 MB) {} (process start {:.1} MiB, after load {:.1} MiB)",
          mib(after),
          verdict(after * 1024 < 100_000_000),
          mib(before),
          mib(loaded),
        );
      } else {
        println!("peak memory: unexpected child output {text:?}");
      }
    }
    Ok(out) => println!("peak memory: child failed ({})", out.status),
    Err(e) => println!("peak memory: could not re-run the bench binary: {e}"),
  }

  // 4: `swdl run examples/hello.yaml`, as a user would start it.
  let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
  let binary = option_env!("CARGO_BIN_EXE_swdl")
    .map(PathBuf::from)
    .filter(|p| p.exists())
    .unwrap_or_else(|| root.join("target/release/swdl"));
  if !binary.exists() {
    println!(
      "swdl run examples/hello.yaml: skipped, {} is missing (cargo build --release)",
      binary.display()
    );
    return;
  }
  let hello = || {
    let status = Command::new(&binary)
      .args(["run", "examples/hello.yaml", "--progress", "none"])
      .current_dir(&root)
      .stdin(Stdio::null())
      .stdout(Stdio::null())
      .stderr(Stdio::null())
      .status()
      .expect("swdl starts");
    assert!(status.success(), "swdl run examples/hello.yaml: {status}");
  };
  hello();
  let mut samples: Vec<Duration> = (0..20)
    .map(|_| {
      let t = Instant::now();
      hello();
      t.elapsed()
    })
    .collect();
  samples.sort();
  let median = samples[samples.len() / 2];
  println!(
    "swdl run examples/hello.yaml: {:>8.2} ms wall (target < 50 ms) {} (median of 20, min {:.2} ms)",
    ms(median),
    verdict(median < Duration::from_millis(50)),
    ms(samples[0]),
  );
}
