//! Expression parser and evaluator timings: `cargo bench --bench expr`.
//!
//! A plain `main` (no harness): each case runs many iterations, timed with `Instant`, and
//! prints nanoseconds per operation next to its target.
use {
  serde_json::json,
  std::{hint::black_box, time::Instant},
  swdl::expr::{MapContext, Template, parse},
};

/// Runs `f` `iterations` times after a warm-up and returns nanoseconds per call.
fn time(iterations: u32, mut f: impl FnMut()) -> f64 {
  for _ in 0..iterations / 10 {
    f();
  }
  let start = Instant::now();
  for _ in 0..iterations {
    f();
  }
  start.elapsed().as_secs_f64() * 1e9 / f64::from(iterations)
}

/// Prints one result line, with the target when there is one.
fn report(name: &str, ns: f64, target_ns: Option<f64>) {
  match target_ns {
    Some(target) => {
      let verdict = if ns <= target { "ok" } else { "OVER TARGET" };
      println!("{name:<48} {ns:>10.1} ns/op   (target < {target:.0} ns: {verdict})");
    }
    None => println!("{name:<48} {ns:>10.1} ns/op"),
  }
}

fn main() {
  const EXPR: &str = "stages.a.outputs.x == 'y' && parameters.n > 2";
  let ctx = MapContext::from_json(&json!({
    "stages": {"a": {"outputs": {"x": "Y"}, "status": "completed"}},
    "parameters": {"n": 3},
  }));

  let ns = time(200_000, || {
    let _ = black_box(parse(black_box(EXPR)));
  });
  report(&format!("parse `{EXPR}`"), ns, Some(5_000.0));

  let Ok(expr) = parse(EXPR) else {
    eprintln!("the benchmark expression does not parse");
    std::process::exit(1);
  };
  if !matches!(expr.eval(&ctx), Ok(swdl::expr::Value::Bool(true))) {
    eprintln!("the benchmark expression does not evaluate to true");
    std::process::exit(1);
  }
  let ns = time(2_000_000, || {
    let _ = black_box(black_box(&expr).eval(black_box(&ctx)));
  });
  report("eval (pre-parsed, MapContext)", ns, Some(1_000.0));

  let filter = "contains(stages.*.outputs.x, 'y') ? format('{0}-{1}', parameters.n, 'x') : null";
  let ns = time(100_000, || {
    let _ = black_box(parse(black_box(filter)));
  });
  report("parse filter + format + ternary", ns, None);
  if let Ok(filter) = parse(filter) {
    let ns = time(1_000_000, || {
      let _ = black_box(black_box(&filter).eval(black_box(&ctx)));
    });
    report("eval filter + format + ternary", ns, None);
  }

  let template = "Publish the review of $<< stages.a.outputs.x >> (n = $<< parameters.n >>)?";
  let ns = time(100_000, || {
    let _ = black_box(Template::parse(black_box(template)));
  });
  report("Template::parse (two expressions)", ns, None);
  if let Ok(template) = Template::parse(template) {
    let ns = time(1_000_000, || {
      let _ = black_box(black_box(&template).eval(black_box(&ctx)));
    });
    report("Template::eval (interpolation)", ns, None);
  }

  let hostile = "(".repeat(10_000);
  let ns = time(10_000, || {
    let _ = black_box(parse(black_box(&hostile)));
  });
  report("parse 10k unclosed `(` (rejected)", ns, None);
}
