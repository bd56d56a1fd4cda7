use std::time::Duration;

/// Parses `250ms`, `30s`, `1h30m`, `2d` or a bare number of seconds (docs/workflow-format.md, "Durations").
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
  let text = text.trim();
  if text.is_empty() {
    return Err("empty duration".into());
  }
  if text.bytes().all(|b| b.is_ascii_digit()) {
    return text
      .parse::<u64>()
      .map(Duration::from_secs)
      .map_err(|_| format!("duration `{text}` is too large"));
  }
  let mut total = Duration::ZERO;
  let mut rest = text;
  while !rest.is_empty() {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
      return Err(invalid(text));
    }
    let (number, after) = rest.split_at(digits);
    let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
    let (unit, after) = after.split_at(unit_len);
    let number: u64 = number
      .parse()
      .map_err(|_| format!("duration `{text}` is too large"))?;
    let millis_per_unit: u64 = match unit {
      "ms" => 1,
      "s" => 1_000,
      "m" => 60_000,
      "h" => 3_600_000,
      "d" => 86_400_000,
      _ => return Err(invalid(text)),
    };
    let part = number
      .checked_mul(millis_per_unit)
      .ok_or_else(|| format!("duration `{text}` is too large"))?;
    total = total
      .checked_add(Duration::from_millis(part))
      .ok_or_else(|| format!("duration `{text}` is too large"))?;
    rest = after;
  }
  Ok(total)
}

fn invalid(text: &str) -> String {
  format!(
    "invalid duration `{text}`: use a number of seconds or units like 250ms, 30s, 5m, 1h30m, 2d"
  )
}

/// Formats a duration compactly for people: `250ms`, `1.5s`, `2m 30s`, `1h 5m`.
pub(crate) fn format_duration(duration: Duration) -> String {
  let ms = duration.as_millis();
  if ms < 1_000 {
    return format!("{ms}ms");
  }
  if ms < 60_000 {
    let tenths = ms / 100;
    return if tenths.is_multiple_of(10) {
      format!("{}s", tenths / 10)
    } else {
      format!("{}.{}s", tenths / 10, tenths % 10)
    };
  }
  let secs = duration.as_secs();
  let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
  let parts = [(d, "d"), (h, "h"), (m, "m"), (s, "s")];
  let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
  parts[first..]
    .iter()
    .take(2)
    .filter(|(n, _)| *n > 0)
    .map(|(n, unit)| format!("{n}{unit}"))
    .collect::<Vec<_>>()
    .join(" ")
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn durations_parse() {
    let ok = [
      ("250ms", 250),
      ("30s", 30_000),
      ("5m", 300_000),
      ("2h", 7_200_000),
      ("1d", 86_400_000),
      ("90", 90_000),
      ("1h30m", 5_400_000),
      ("1m30s500ms", 90_500),
      ("0", 0),
    ];
    for (text, ms) in ok {
      assert_eq!(
        parse_duration(text),
        Ok(Duration::from_millis(ms)),
        "{text}"
      );
    }
    for bad in [
      "",
      "5 minutes",
      "-3s",
      "1.5h",
      "10x",
      "h",
      "5m3",
      "99999999999999999999d",
    ] {
      assert!(parse_duration(bad).is_err(), "{bad}");
    }
  }

  #[test]
  fn durations_format() {
    assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    assert_eq!(format_duration(Duration::from_millis(1_500)), "1.5s");
    assert_eq!(format_duration(Duration::from_secs(30)), "30s");
    assert_eq!(format_duration(Duration::from_secs(150)), "2m 30s");
    assert_eq!(format_duration(Duration::from_mins(65)), "1h 5m");
    assert_eq!(format_duration(Duration::from_hours(2)), "2h");
  }
}
