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
      let distance = levenshtein(&lower, &candidate);
      let close = distance <= (name.len().max(c.len()) / 3).max(1) && distance < name.len();
      // A shared start catches abbreviations (`expo`) and inflections (`retries`).
      let prefix = common_prefix(&lower, &candidate);
      let abbreviated = prefix >= 3 && prefix * 2 >= lower.len().min(candidate.len());
      (close || abbreviated).then_some((distance, c))
    })
    .min_by_key(|(d, _)| *d)
    .map(|(_, c)| c)
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

/// Edit distance between two strings, counting characters.
pub(crate) fn levenshtein(a: &str, b: &str) -> usize {
  let b: Vec<char> = b.chars().collect();
  let mut row: Vec<usize> = (0..=b.len()).collect();
  for (i, ca) in a.chars().enumerate() {
    let mut prev = row[0];
    row[0] = i + 1;
    for (j, cb) in b.iter().enumerate() {
      let cost = usize::from(ca != *cb);
      let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
      prev = row[j + 1];
      row[j + 1] = next;
    }
  }
  row[b.len()]
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn distances() {
    assert_eq!(levenshtein("kitten", "sitting"), 3);
    assert_eq!(levenshtein("", "abc"), 3);
    assert_eq!(levenshtein("same", "same"), 0);
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
