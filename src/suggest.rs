/// The candidate closest to `name` by edit distance, when it is close enough to be a typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
  // Nothing is a typo away from a name this long; and the distance would cost its length
  // times each candidate's.
  if name.len() > 256 {
    return None;
  }
  let lower = name.to_ascii_lowercase();
  candidates
    .into_iter()
    .filter_map(|c| {
      let candidate = c.to_ascii_lowercase();
      let distance = edit_distance(&lower, &candidate);
      let close = distance <= (name.len().max(c.len()) / 3).max(1) && distance < name.len();
      // A shared start catches abbreviations (`expo`) and inflections (`retries`).
      let prefix = common_prefix(&lower, &candidate);
      let abbreviated = prefix >= 3 && prefix * 2 >= lower.len().min(candidate.len());
      (close || abbreviated).then_some((distance, c))
    })
    .min_by_key(|(d, _)| *d)
    .map(|(_, c)| c)
}

/// What a GitHub Actions key written where `allowed` are the valid keys is called here: the
/// key (or key and value) to write instead, or a note when swdl has no counterpart. `None`
/// for keys GitHub does not have, and where the counterpart does not belong either.
pub(crate) fn github_key(key: &str, allowed: &[&str]) -> Option<GithubKey> {
  let (home, key) = match key {
    "needs" => ("depends_on", GithubKey::Ours("depends_on")),
    "continue-on-error" => ("on_failure", GithubKey::Ours("on_failure: ignore")),
    "jobs" | "steps" => ("stages", GithubKey::Ours("stages")),
    "working-directory" => ("with", GithubKey::Ours("with: { cwd: ... }")),
    "timeout-minutes" => ("timeout", GithubKey::Ours("timeout: 10m")),
    "run" => ("uses", GithubKey::Ours("uses: shell, with: { run: ... }")),
    "runs-on" if allowed.contains(&"stages") => (
      "stages",
      GithubKey::Note("swdl has no runners: every stage runs where swdl runs"),
    ),
    "runs-on" => (
      "uses",
      GithubKey::Note("swdl has no runners: every stage runs where swdl runs"),
    ),
    _ => return None,
  };
  allowed.contains(&home).then_some(key)
}

/// A GitHub Actions key's counterpart ([`github_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GithubKey {
  /// Write this instead.
  Ours(&'static str),
  /// There is no counterpart; this says why.
  Note(&'static str),
}

/// Length in characters of the common start of two strings.
fn common_prefix(a: &str, b: &str) -> usize {
  a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count()
}

/// ` (did you mean `x`?)` for the closest of `candidates`, or nothing when none is close.
pub(crate) fn hint<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
  suggest(name, candidates)
    .map(|s| format!(" (did you mean `{s}`?)"))
    .unwrap_or_default()
}

/// Edit distance between two strings, counting characters, where swapping two neighbours
/// (`tset` for `test`) is one edit, like an insertion, a deletion or a substitution (the
/// optimal string alignment distance).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
  let a: Vec<char> = a.chars().collect();
  let b: Vec<char> = b.chars().collect();
  // Three rows: two back for transpositions, the previous one, the current one.
  let mut before: Vec<usize> = vec![0; b.len() + 1];
  let mut prev: Vec<usize> = (0..=b.len()).collect();
  let mut row: Vec<usize> = vec![0; b.len() + 1];
  for i in 1..=a.len() {
    row[0] = i;
    for j in 1..=b.len() {
      let cost = usize::from(a[i - 1] != b[j - 1]);
      let mut best = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
      if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
        best = best.min(before[j - 2] + 1);
      }
      row[j] = best;
    }
    std::mem::swap(&mut before, &mut prev);
    std::mem::swap(&mut prev, &mut row);
  }
  prev[b.len()]
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn distances() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("tset", "test"), 1);
    assert_eq!(edit_distance("txet", "text"), 1);
    assert_eq!(edit_distance("ab", "ba"), 1);
    assert_eq!(edit_distance("ca", "abc"), 3);
    assert_eq!(suggest("tset", ["test", "other"]), Some("test"));
    assert_eq!(
      github_key("needs", &["id", "depends_on"]),
      Some(GithubKey::Ours("depends_on"))
    );
    // Only where the counterpart belongs: `needs` at the top level is just unknown.
    assert_eq!(github_key("needs", &["name", "stages"]), None);
    assert!(matches!(
      github_key("runs-on", &["name", "stages"]),
      Some(GithubKey::Note(_))
    ));
    assert_eq!(edit_distance("same", "same"), 0);
  }

  #[test]
  fn suggestions_only_for_near_misses() {
    let keys = ["depends_on", "uses", "with", "timeout"];
    assert_eq!(suggest("dependson", keys), Some("depends_on"));
    assert_eq!(suggest("use", keys), Some("uses"));
    assert_eq!(suggest("Timeout", keys), Some("timeout"));
    assert_eq!(suggest("banana", keys), None);
    assert_eq!(suggest("x", keys), None);
    assert_eq!(
      suggest("retries", ["timeout", "retry", "on_failure"]),
      Some("retry")
    );
    assert_eq!(
      suggest("expo", ["fixed", "linear", "exponential"]),
      Some("exponential")
    );
    assert_eq!(suggest("time", ["timeout", "with"]), Some("timeout"));
  }
}
