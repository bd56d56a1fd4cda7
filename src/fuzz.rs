//! Fuzzing and bounded-resource property tests for the two parsers users feed directly: the
//! workflow loader (YAML and everything on top of it) and the expression language.
//!
//! The fuzz harness is a seeded mutator over a corpus (the examples, `tests/invalid/` and
//! expressions from the docs' tables): each input is a corpus entry with random byte edits,
//! dictionary tokens, spliced and duplicated ranges. Every input must give a value or
//! diagnostics whose positions lie inside the text, never a panic. `cargo test` runs a few
//! thousand inputs; `SWDL_FUZZ_CASES=10000000 cargo test --release --lib fuzz -- --nocapture`
//! runs as many as asked (see docs/performance.md for the figures). A failing input is written
//! to `target/fuzz-failure.txt`.
//!
//! The property tests build adversarial inputs (deep nesting of every kind, aliases of large
//! anchors, expressions that double their size) and check the peak memory one parse or
//! evaluation allocates on its thread, counted by this test binary's allocator.
use crate::{compose, expr};
use std::{
  alloc::{GlobalAlloc, Layout, System},
  cell::Cell,
  panic::AssertUnwindSafe,
  path::Path,
  time::{Duration, Instant},
};

/// Counts the bytes each thread has allocated, for the peak-memory checks.
struct Counting;

thread_local! {
  static LIVE: Cell<isize> = const { Cell::new(0) };
  static PEAK: Cell<isize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are
// `const`-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
  unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
    note(layout.size().cast_signed());
    // SAFETY: the caller's contract is passed on.
    unsafe { System.alloc(layout) }
  }

  unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
    note(-layout.size().cast_signed());
    // SAFETY: the caller's contract is passed on.
    unsafe { System.dealloc(ptr, layout) }
  }

  unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
    note(new_size.cast_signed() - layout.size().cast_signed());
    // SAFETY: the caller's contract is passed on.
    unsafe { System.realloc(ptr, layout, new_size) }
  }
}

fn note(delta: isize) {
  // `try_with`: a thread being torn down has no counters any more.
  let _ = LIVE.try_with(|live| {
    let now = live.get() + delta;
    live.set(now);
    let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
  });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most bytes it held at once on this thread.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
  let base = LIVE.get();
  PEAK.set(base);
  let out = f();
  let peak = PEAK.get() - base;
  (out, peak.max(0).cast_unsigned())
}

/// Small, fast, seeded: xorshift64*.
struct Rng(u64);

impl Rng {
  fn next(&mut self) -> u64 {
    self.0 ^= self.0 >> 12;
    self.0 ^= self.0 << 25;
    self.0 ^= self.0 >> 27;
    self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
  }

  #[expect(clippy::cast_possible_truncation, reason = "below `n`, a `usize`")]
  fn below(&mut self, n: usize) -> usize {
    (self.next() % n.max(1) as u64) as usize
  }
}

/// Tokens the mutator inserts: YAML structure, swdl keys and expression syntax.
const YAML_TOKENS: &[&str] = &[
  "\n",
  "  ",
  "- ",
  ": ",
  "{",
  "}",
  "[",
  "]",
  ",",
  "&a ",
  "*a",
  "!!str ",
  "!!int ",
  "|\n  ",
  ">-\n  ",
  "'",
  "\"",
  "#",
  "---\n",
  "...\n",
  "<<: ",
  "? ",
  "\t",
  "~",
  "null",
  "true",
  "0x1f",
  ".inf",
  "1e9",
  "-",
  "id: ",
  "uses: ",
  "depends_on: ",
  "if: ",
  "with: ",
  "retry: ",
  "timeout: ",
  "gate: ",
  "parameters: ",
  "stages: ",
  "outputs: ",
  "config: ",
  "fallback: ",
  "compensate: ",
  "on_failure: ",
  "$<< ",
  " >>",
  "$<<",
  ">>",
  "\\",
  "\u{e9}",
  "\u{1F600}",
  "\0",
  "\r\n",
];

/// Tokens of the expression language (and near misses), so generated text gets past the first
/// token; the fuzzer's dictionary and the expression property tests' alphabet.
pub(crate) const EXPR_TOKENS: &[&str] = &[
  "(",
  ")",
  "[",
  "]",
  "[*]",
  ".",
  ",",
  "'",
  "''",
  "\"",
  "!",
  "==",
  "!=",
  "<",
  "<=",
  ">",
  ">=",
  "&&",
  "||",
  "?",
  ":",
  "null",
  "true",
  "false",
  "NaN",
  "Infinity",
  "0x",
  "1e",
  "-",
  " - ",
  "+",
  "*",
  "/",
  "%",
  "3.5",
  "parameters",
  "stages",
  "outputs",
  "env",
  "matrix",
  "toJSON(",
  "fromJSON(",
  "format(",
  "join(",
  "contains(",
  "startsWith(",
  "endsWith(",
  "length(",
  "success()",
  "failure()",
  "always()",
  "cancelled()",
  "'{0}{1}'",
  "'{'",
  "'}}'",
  " ",
  "\u{e9}",
  "\\",
  "{",
  "}",
  "*",
  "a",
  "b-c",
  "1",
  "0x1f",
  "1e5",
  "'{0}'",
  "'[1,{\"a\":2}]'",
  "$<<",
  "$$<<",
  ">>",
  "\u{1F600}",
];

/// One mutation of `input`, from the dictionary `tokens` and the `corpus`.
#[expect(
  clippy::cast_possible_truncation,
  reason = "a random byte: the low bits are the point"
)]
fn mutate(rng: &mut Rng, input: &[u8], tokens: &[&str], corpus: &[Vec<u8>]) -> Vec<u8> {
  let mut out = input.to_vec();
  for _ in 0..=rng.below(4) {
    let at = rng.below(out.len() + 1);
    match rng.below(8) {
      0 if !out.is_empty() => {
        let i = rng.below(out.len());
        out[i] ^= 1 << rng.below(8);
      }
      1 if !out.is_empty() => {
        let end = (at + rng.below(16)).min(out.len());
        out.drain(at.min(end)..end);
      }
      2 | 3 => {
        let token = tokens[rng.below(tokens.len())];
        out.splice(at..at, token.bytes());
      }
      4 if !out.is_empty() => {
        // Repeat a range: nesting and long values.
        let start = rng.below(out.len());
        let end = (start + 1 + rng.below(32)).min(out.len());
        let piece = out[start..end].to_vec();
        for _ in 0..=rng.below(8) {
          out.splice(at..at, piece.iter().copied());
        }
      }
      5 => {
        let other = &corpus[rng.below(corpus.len())];
        if !other.is_empty() {
          let start = rng.below(other.len());
          let end = (start + rng.below(64)).min(other.len());
          out.splice(at..at, other[start..end].iter().copied());
        }
      }
      6 => out.truncate(at),
      _ => out.insert(at, rng.next() as u8),
    }
  }
  out
}

fn corpus_of(dirs: &[&str]) -> Vec<Vec<u8>> {
  let root = Path::new(env!("CARGO_MANIFEST_DIR"));
  let mut corpus = Vec::new();
  for dir in dirs {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
      continue;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
      if path.extension().is_some_and(|e| e == "yaml")
        && let Ok(bytes) = std::fs::read(&path)
      {
        corpus.push(bytes);
      }
    }
  }
  corpus
}

const EXPRESSIONS: &[&str] = &[
  "parameters.n > 2 && stages.a.outputs.x == 'Y'",
  "format('{0}-{1}', parameters.s, toJSON(parameters.list))",
  "join(stages.a.outputs.items.*.name, ', ')",
  "contains(fromJSON('[1,2]'), 2) || startsWith(parameters.s, 'he')",
  "!(parameters.t) ? 'no' : length(parameters.names)",
  "stages['a'].outputs.items[0].v >= 1.5e0",
  "success() && !cancelled() || failure()",
  "matrix[0][1] != null && env.HOME",
  "toJSON(parameters.obj) == '{}' && endsWith('abc', 'C')",
  "0x1F + -3 < Infinity",
];

/// How many fuzz inputs to run: `SWDL_FUZZ_CASES`, else a quick default.
fn cases(default: u64) -> u64 {
  std::env::var("SWDL_FUZZ_CASES")
    .ok()
    .and_then(|v| v.replace('_', "").parse().ok())
    .unwrap_or(default)
}

/// Runs `check` on `cases` mutated inputs over two threads; panics with the first failing
/// input (also written to `target/fuzz-failure.txt`).
fn fuzz(
  name: &str,
  corpus: &[Vec<u8>],
  tokens: &'static [&'static str],
  cases: u64,
  check: fn(&str) -> Result<bool, String>,
) {
  let started = Instant::now();
  let threads = 2u64;
  let accepted = std::sync::atomic::AtomicU64::new(0);
  let accepted = &accepted;
  let failures: Vec<(Vec<u8>, String)> = std::thread::scope(|scope| {
    let handles: Vec<_> = (0..threads)
      .map(|t| {
        scope.spawn(move || {
          let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1));
          let mut current = corpus[0].clone();
          for n in 0..cases / threads {
            // Mostly fresh mutations of a corpus entry, sometimes a mutation of the last
            // input, so edits pile up.
            let base = if n.is_multiple_of(4) {
              current.clone()
            } else {
              corpus[rng.below(corpus.len())].clone()
            };
            let input = mutate(&mut rng, &base, tokens, corpus);
            let text = String::from_utf8_lossy(&input).into_owned();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| check(&text)));
            let failure = match result {
              Ok(Ok(ok)) => {
                if ok {
                  accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None
              }
              Ok(Err(why)) => Some(why),
              Err(panic) => Some(
                panic
                  .downcast_ref::<String>()
                  .cloned()
                  .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                  .unwrap_or_else(|| "panic".into()),
              ),
            };
            if let Some(why) = failure {
              return Some((input, why));
            }
            current = if input.len() < 64 * 1024 { input } else { base };
          }
          None
        })
      })
      .collect();
    handles
      .into_iter()
      .filter_map(|h| h.join().ok().flatten())
      .collect()
  });
  println!(
    "fuzz {name}: {cases} inputs in {:.1} s, {} of them accepted",
    started.elapsed().as_secs_f64(),
    accepted.load(std::sync::atomic::Ordering::Relaxed)
  );
  if let Some((input, why)) = failures.into_iter().next() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-failure.txt");
    let _ = std::fs::write(&path, &input);
    panic!(
      "fuzz {name}: {why}\ninput ({} bytes, also in {}):\n{}",
      input.len(),
      path.display(),
      String::from_utf8_lossy(&input)
    );
  }
}

/// Loads `text`: true when it is a valid workflow.
fn check_workflow(text: &str) -> Result<bool, String> {
  match compose::load_str("fuzz.yaml", text) {
    Ok(_) => Ok(true),
    Err(diagnostics) => {
      for d in &diagnostics.0 {
        if d.span.offset > text.len() || !text.is_char_boundary(d.span.offset) {
          return Err(format!("diagnostic outside the text: {d}"));
        }
      }
      if text.len().is_multiple_of(16) {
        let _ = diagnostics.render(false);
      }
      Ok(false)
    }
  }
}

/// Parses and evaluates `text` as an expression and as a template: true when it parses as
/// an expression.
fn check_expression(text: &str) -> Result<bool, String> {
  let ctx = expr::test_support::sample();
  for body in [text.to_string(), format!("a $<< {text} >> b")] {
    match expr::Template::parse(&body) {
      Ok(template) => {
        let _ = template.eval(&ctx);
      }
      Err(e) if e.span.offset > body.len() => {
        return Err(format!(
          "error outside the text: {} at {}",
          e.kind, e.span.offset
        ));
      }
      Err(_) => {}
    }
  }
  let Ok(parsed) = expr::parse(text) else {
    return Ok(false);
  };
  let _ = parsed.eval(&ctx);
  let _ = parsed.eval_condition(&ctx);
  Ok(true)
}

#[test]
fn fuzz_the_loader() {
  let corpus = corpus_of(&["examples", "tests/invalid"]);
  assert!(corpus.len() > 50, "corpus of {} files", corpus.len());
  fuzz("loader", &corpus, YAML_TOKENS, cases(4_000), check_workflow);
}

#[test]
fn fuzz_the_expression_parser() {
  let corpus: Vec<Vec<u8>> = EXPRESSIONS.iter().map(|e| e.as_bytes().to_vec()).collect();
  fuzz(
    "expressions",
    &corpus,
    EXPR_TOKENS,
    cases(20_000),
    check_expression,
  );
}

/// The most a parse of the adversarial inputs below may hold at once.
const PARSE_PEAK: usize = 256 << 20;

/// Generous enough for a debug build on a busy machine: what is checked is that nothing
/// grows without bound (the inputs took seconds to minutes, or aborted, before the limits).
const PARSE_TIME: Duration = Duration::from_secs(20);

fn nested(rng: &mut Rng) -> String {
  let depth = 1 + rng.below(400);
  match rng.below(5) {
    0 => format!("{}1\n", "- ".repeat(depth)),
    1 => (0..depth.min(300))
      .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
      .collect(),
    2 => format!("{}{}", "[".repeat(depth), "]".repeat(depth)),
    3 => format!(
      "a: {}1{}\n",
      "{b: [".repeat(depth / 2),
      "]}".repeat(depth / 2)
    ),
    _ => {
      // Anchors inside anchors: each alias copies all the levels before it.
      let mut text = String::from("l0: &l0 [x]\n");
      for i in 1..depth.min(200) {
        text.push_str(&format!("l{i}: &l{i} [[[*l{}]]]\n", i - 1));
      }
      text
    }
  }
}

fn aliased(rng: &mut Rng) -> String {
  match rng.below(3) {
    0 => {
      let size = 1 + rng.below(400_000);
      let count = rng.below(20_000);
      let mut text = format!("x: &big '{}'\nl:\n", "a".repeat(size));
      for _ in 0..count {
        text.push_str("  - *big\n");
      }
      text
    }
    1 => {
      // A "billion laughs" of random width and height.
      let width = 2 + rng.below(12);
      let height = 2 + rng.below(12);
      let mut text = format!("a0: &a0 [{}]\n", vec!["lol"; width].join(", "));
      for i in 1..height {
        let refs = vec![format!("*a{}", i - 1); width].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
      }
      text
    }
    _ => {
      let mut text = String::from("m: &m {k: v, l: [1, 2, 3]}\nall:\n");
      for i in 0..rng.below(50_000) {
        text.push_str(&format!("  x{i}: *m\n"));
      }
      text
    }
  }
}

#[test]
fn nested_and_aliased_yaml_stays_bounded_in_memory_and_time() {
  let mut rng = Rng(7);
  for case in 0..60 {
    let text = if case % 2 == 0 {
      nested(&mut rng)
    } else {
      aliased(&mut rng)
    };
    let source = crate::source::Source::new("p.yaml", text.as_str());
    let started = Instant::now();
    let (result, peak) = peak_of(|| crate::yaml::parse(&source).map(|_| ()));
    let took = started.elapsed();
    let limit = PARSE_PEAK.max(text.len() * 40);
    assert!(
      peak <= limit,
      "case {case}: {peak} bytes for {} bytes of text",
      text.len()
    );
    assert!(took < PARSE_TIME, "case {case}: {took:?}");
    if let Err(e) = result {
      assert!(e.offset <= text.len(), "case {case}: {}", e.message);
    }
  }
}

#[test]
fn expressions_stay_bounded_in_memory_and_time() {
  let ctx = expr::test_support::sample();
  let mut rng = Rng(11);
  for case in 0..30 {
    let depth = 1 + rng.below(48);
    let mut text = ["'\"\\\\'", "parameters.list", "stages", "'ab'"][rng.below(4)].to_string();
    for _ in 0..depth {
      text = match rng.below(4) {
        0 => format!("toJSON({text})"),
        1 => format!("format('{{0}}{{0}}{{0}}{{0}}', {text})"),
        2 => format!("join(fromJSON(format('[{{0}},{{0}}]', toJSON({text}))), {text})"),
        _ => format!("(true && {text})"),
      };
    }
    let Ok(parsed) = expr::parse(&text) else {
      continue;
    };
    let started = Instant::now();
    let (value, peak) = peak_of(|| parsed.eval(&ctx));
    let took = started.elapsed();
    assert!(
      peak <= 16 * expr::MAX_BUILT_BYTES,
      "case {case}: {peak} bytes"
    );
    assert!(took < PARSE_TIME, "case {case}: {took:?}");
    if let Ok(expr::Value::String(s)) = value {
      assert!(s.len() <= expr::MAX_BUILT_BYTES);
    }
  }
}
