//! The workflow generator: random DAGs using every feature the core decides about.
use super::*;

/// Writes a random workflow: a DAG of skill stages and gates with retries, timeouts, `if`,
/// every `on_failure`, fallbacks, compensations, risk approvals, policies, recovery and fan-out.
#[expect(
  clippy::cast_possible_truncation,
  reason = "`below(8)` fits any `usize`"
)]
pub(super) fn generate(rng: &mut Rng) -> String {
  let n = 1 + rng.below(8) as usize;
  let mut text = String::from("name: sim\n");
  let _ = write!(
    text,
    "config: {{ max_parallel: {}, approval: {{ require_for: high }}",
    1 + rng.below(4)
  );
  if rng.chance(10) {
    let _ = write!(text, ", timeout: {}ms", 200 + rng.below(2_000));
  }
  text.push_str(" }\nstages:\n");
  for i in 0..n {
    let _ = writeln!(text, "  - id: s{i}");
    let deps: Vec<String> = (0..i)
      .filter(|_| rng.chance(35))
      .map(|d| format!("s{d}"))
      .collect();
    if !deps.is_empty() {
      let _ = writeln!(text, "    depends_on: [{}]", deps.join(", "));
    }
    if rng.chance(12) {
      let _ = write!(text, "    gate: {{ message: wait for s{i}");
      if rng.chance(40) {
        let on_timeout = rng.pick(&["approve", "reject"]);
        let _ = write!(
          text,
          ", timeout: {}ms, on_timeout: {on_timeout}",
          10 + rng.below(300)
        );
      }
      if rng.chance(25) {
        let _ = write!(
          text,
          ", policy: {}",
          rng.pick(&["yes", "no", "ask", "broken"])
        );
      }
      text.push_str(" }\n");
    } else {
      let _ = writeln!(text, "    uses: work\n    with: {{ n: {i} }}");
      let _ = writeln!(text, "    timeout: {}ms", 20 + rng.below(400));
      if rng.chance(40) {
        let _ = write!(
          text,
          "    retry: {{ max_attempts: {}, delay: {}ms",
          1 + rng.below(3),
          rng.below(60)
        );
        if rng.chance(50) {
          text.push_str(", jitter: true");
        }
        if rng.chance(20) {
          text.push_str(", on: [timeout]");
        }
        text.push_str(" }\n");
      }
      if rng.chance(20) {
        text.push_str("    fallback: [backup]\n");
      }
      if rng.chance(15) {
        let items = 1 + rng.below(4);
        let list: Vec<String> = (0..items).map(|k| format!("i{k}")).collect();
        let _ = writeln!(text, "    for_each: [{}]", list.join(", "));
        if rng.chance(50) {
          let _ = writeln!(text, "    max_parallel: {}", 1 + rng.below(2));
        }
        if rng.chance(30) {
          text.push_str("    fail_fast: false\n");
        }
      }
      if rng.chance(25) {
        text.push_str("    compensate: undo\n");
      }
      if rng.chance(10) {
        text.push_str("    risk: high\n");
      }
      if rng.chance(10) {
        let _ = writeln!(text, "    recover: {}", rng.pick(&["advise", "broken"]));
      }
    }
    if rng.chance(20) {
      let condition = rng.pick(&[
        "always()",
        "failure()",
        "cancelled()",
        "success()",
        "false",
        "parameters.go",
      ]);
      let _ = writeln!(text, "    if: \"$<< {condition} >>\"");
    }
    if rng.chance(45) {
      let _ = writeln!(
        text,
        "    on_failure: {}",
        rng.pick(&["halt", "continue", "ignore"])
      );
    }
  }
  text.push_str("parameters:\n  go: { type: boolean, default: true }\n");
  text
}
