//! Load + validate + plan of generated layered workflows (issue figures: 1,000 stages under
//! 20 ms, 10,000 stages under 200 ms). Run with `cargo bench --bench load`.
use std::{
  fmt::Write as _,
  hint::black_box,
  time::{Duration, Instant},
};

/// A layered DAG: `width` stages per layer, each depending on two stages of the layer before,
/// reading one of their outputs, and every fifth one guarded by a parameter condition.
fn generate(stages: usize, width: usize) -> String {
  let mut out = String::with_capacity(stages * 160);
  out.push_str("name: generated\nparameters:\n  n: { type: integer, default: 3 }\n");
  out.push_str("config: { max_parallel: 8 }\nstages:\n");
  for i in 0..stages {
    let _ = writeln!(out, "  - id: s{i}");
    if i >= width {
      let layer_start = (i / width - 1) * width;
      let a = layer_start + i % width;
      let b = layer_start + (i + 1) % width;
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

/// Runs `f` repeatedly for about `budget` and returns the median duration.
fn measure(budget: Duration, mut f: impl FnMut()) -> (Duration, usize) {
  let mut samples = Vec::new();
  let start = Instant::now();
  while samples.len() < 5 || (start.elapsed() < budget && samples.len() < 1_000) {
    let t = Instant::now();
    f();
    samples.push(t.elapsed());
  }
  samples.sort();
  (samples[samples.len() / 2], samples.len())
}

fn main() {
  for (stages, width) in [(1_000, 20), (10_000, 100)] {
    let text = generate(stages, width);
    let (load, n) = measure(Duration::from_secs(3), || {
      black_box(swdl::compose::load_str("generated.yaml", black_box(&text)).is_ok());
    });
    let workflow =
      swdl::compose::load_str("generated.yaml", &text).expect("generated workflow is valid");
    let params = swdl::params::resolve(&workflow, &[]).expect("defaults resolve");
    let (plan, _) = measure(Duration::from_secs(2), || {
      black_box(swdl::plan::plan(&workflow, &params));
    });
    let (total, _) = measure(Duration::from_secs(3), || {
      let workflow = swdl::compose::load_str("generated.yaml", black_box(&text)).expect("valid");
      let params = swdl::params::resolve(&workflow, &[]).expect("defaults resolve");
      black_box(swdl::plan::plan(&workflow, &params));
    });
    println!(
      "{stages:>6} stages ({} KiB): load+validate {:>8.2} ms, plan {:>7.2} ms, load+validate+plan {:>8.2} ms (median of {n})",
      text.len() / 1024,
      load.as_secs_f64() * 1e3,
      plan.as_secs_f64() * 1e3,
      total.as_secs_f64() * 1e3,
    );
  }
}
