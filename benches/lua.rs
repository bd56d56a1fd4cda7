//! The cost of a trivial Lua skill per stage: a generated 10,000-stage layered workflow whose
//! stages all call a Lua skill that copies one input to its output, run through the runtime
//! with the Lua host (target: under 20 µs per stage). Run with `cargo bench --bench lua`.
use std::{
  collections::HashMap,
  fmt::Write as _,
  hint::black_box,
  sync::Arc,
  time::{Duration, Instant},
};
use swdl::{
  executor::StageExecutor,
  lua::{Executor, HostConfig, LuaHost},
  runtime::{self, RunOptions},
};

/// Layered like `benches/load.rs`: each stage depends on two of the layer before and reads one
/// of their outputs; every stage runs `uses`.
fn layered(stages: usize, width: usize, uses: &str) -> String {
  let mut out = String::with_capacity(stages * 120);
  out.push_str("name: generated\nconfig: { max_parallel: 100 }\nstages:\n");
  for i in 0..stages {
    let _ = writeln!(out, "  - id: s{i}\n    uses: {uses}");
    if i >= width {
      let layer_start = (i / width - 1) * width;
      let (a, b) = (layer_start + i % width, layer_start + (i + 1) % width);
      let _ = writeln!(out, "    depends_on: [s{a}, s{b}]");
      let _ = writeln!(out, "    with: {{ x: \"$<< stages.s{a}.outputs.x >>\" }}");
    } else {
      let _ = writeln!(out, "    with: {{ x: seed }}");
    }
  }
  out
}

fn measure(budget: Duration, min: usize, mut f: impl FnMut()) -> (Duration, usize) {
  let mut samples = Vec::new();
  let start = Instant::now();
  while samples.len() < min || (start.elapsed() < budget && samples.len() < 200) {
    let t = Instant::now();
    f();
    samples.push(t.elapsed());
  }
  samples.sort();
  (samples[samples.len() / 2], samples.len())
}

fn main() {
  let dir = std::env::temp_dir().join(format!("swdl-bench-lua-{}", std::process::id()));
  let _ = std::fs::create_dir_all(&dir);
  let skill = dir.join("copy.lua");
  std::fs::write(
    &skill,
    "return {\n  inputs = { x = \"string\" },\n  run = function(ctx, input) return { x = input.x } end,\n}\n",
  )
  .expect("write the skill");
  let rt = tokio::runtime::Builder::new_multi_thread()
    .enable_all()
    .build()
    .expect("tokio runtime");
  let states: usize = std::env::var("SWDL_LUA_STATES")
    .ok()
    .and_then(|s| s.parse().ok())
    .unwrap_or(2);
  let host = LuaHost::start(HostConfig {
    states,
    ..HostConfig::default()
  })
  .expect("lua host");
  let skills: HashMap<_, _> = [("copy".to_string(), skill.clone())].into_iter().collect();
  let executor: Arc<dyn StageExecutor> = Arc::new(Executor::new(host, skills));
  // `SWDL_BENCH_ONLY=copy` (or `echo`) runs one kind only, for profiling.
  let only = std::env::var("SWDL_BENCH_ONLY").ok();
  for stages in [1_000, 10_000] {
    let mut per_stage = Vec::new();
    for uses in ["echo", "copy"] {
      if only.as_deref().is_some_and(|only| only != uses) {
        per_stage.push(0.0);
        continue;
      }
      let workflow = Arc::new(
        swdl::compose::load_str("bench.yaml", &layered(stages, 100, uses)).expect("valid"),
      );
      let run = || {
        let options = RunOptions {
          run_id: "bench".into(),
          max_parallel: 100,
          params: Default::default(),
          approve: Default::default(),
          reject: Default::default(),
          approve_all: false,
          interactive: false,
          masker: Default::default(),
          hooks: None,
          resume: None,
          start_paused: false,
          reuse: None,
        };
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let outcome = rt.block_on(runtime::execute(
          Arc::clone(&workflow),
          options,
          Arc::clone(&executor),
          Vec::new(),
          rx,
        ));
        assert_eq!(
          swdl::exit::of_run(outcome.state.status, outcome.rejected),
          0,
          "{:?}",
          outcome.state.error
        );
        outcome
      };
      run();
      let (time, runs) = measure(
        Duration::from_secs(if stages > 1_000 { 8 } else { 3 }),
        5,
        || {
          black_box(run());
        },
      );
      let us = time.as_secs_f64() * 1e6 / stages as f64;
      per_stage.push(us);
      println!(
        "{uses:>4} {stages:>6} stages: {:>8.2} ms, {us:>6.2} µs/stage (median of {runs})",
        time.as_secs_f64() * 1e3
      );
    }
    let lua = per_stage[1];
    println!(
      "     {stages:>6} stages: a trivial Lua skill costs {lua:.2} µs/stage in all (target < 20 µs/stage) {}; {:.2} µs more than echo",
      if lua < 20.0 { "ok" } else { "OVER" },
      lua - per_stage[0]
    );
  }
  let _ = std::fs::remove_dir_all(dir);
}
