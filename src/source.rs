use super::*;

/// A file's text, shared by every span and error that points into it.
#[derive(Debug)]
pub struct Source {
  name: String,
  text: String,
  /// Byte offset where each line starts; line `i` (0-based) starts at `line_starts[i]`.
  line_starts: Vec<usize>,
  /// Byte offset of each character, only for non-ASCII text (the YAML scanner counts characters).
  char_offsets: Option<Vec<usize>>,
}

impl Source {
  /// Wraps `text` read from `name` (a path, or `<eval>` for command-line input).
  pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
    let text = text.into();
    let line_starts = std::iter::once(0)
      .chain(text.match_indices('\n').map(|(i, _)| i + 1))
      .collect();
    let char_offsets = (!text.is_ascii()).then(|| text.char_indices().map(|(i, _)| i).collect());
    Arc::new(Self {
      name: name.into(),
      text,
      line_starts,
      char_offsets,
    })
  }

  /// The file name shown in error messages.
  pub fn name(&self) -> &str {
    &self.name
  }

  /// The whole text.
  pub fn text(&self) -> &str {
    &self.text
  }

  /// 1-based line and column (in characters) of a byte offset.
  pub fn line_col(&self, offset: usize) -> (usize, usize) {
    let offset = offset.min(self.text.len());
    let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
    let start = self.line_starts[line];
    let col = self.text[start..floor_char_boundary(&self.text, offset)]
      .chars()
      .count();
    (line + 1, col + 1)
  }

  /// The text of a 1-based line, without its line break.
  pub fn line_text(&self, line: usize) -> &str {
    let Some(&start) = self.line_starts.get(line.saturating_sub(1)) else {
      return "";
    };
    let end = self
      .line_starts
      .get(line)
      .map_or(self.text.len(), |&next| next);
    self.text[start..end].trim_end_matches(['\n', '\r'])
  }

  /// Byte offset of a 0-based character index (the YAML scanner counts characters).
  pub fn byte_offset_of_char(&self, char_index: usize) -> usize {
    match &self.char_offsets {
      None => char_index.min(self.text.len()),
      Some(offsets) => offsets.get(char_index).copied().unwrap_or(self.text.len()),
    }
  }
}

/// Largest char boundary not after `offset`.
fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
  while offset > 0 && !text.is_char_boundary(offset) {
    offset -= 1;
  }
  offset
}

/// A byte range in a [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
  /// Byte offset of the first byte.
  pub offset: usize,
  /// Length in bytes; zero points between two characters.
  pub len: usize,
}

impl Span {
  /// A span of `len` bytes at `offset`.
  pub const fn new(offset: usize, len: usize) -> Self {
    Self { offset, len }
  }

  /// The byte just after the span.
  pub const fn end(self) -> usize {
    self.offset + self.len
  }

  /// This span moved `by` bytes to the right.
  #[must_use]
  pub const fn shifted(self, by: usize) -> Self {
    Self {
      offset: self.offset + by,
      len: self.len,
    }
  }

  /// The smallest span covering both.
  #[must_use]
  pub fn join(self, other: Self) -> Self {
    let offset = self.offset.min(other.offset);
    let end = self.end().max(other.end());
    Self {
      offset,
      len: end - offset,
    }
  }
}

/// The largest file swdl reads as text: workflows, parameter files, skill files, contexts.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a text file of at most [`MAX_FILE_BYTES`].
///
/// # Errors
///
/// The file cannot be read, is larger than the limit, or is not UTF-8.
pub fn read_text(path: &std::path::Path) -> std::io::Result<String> {
  use std::io::Read;
  let file = std::fs::File::open(path)?;
  let mut text = String::new();
  // One byte more than allowed tells a file at the limit from one over it, without reading
  // (or trusting the metadata of) a file of any size.
  file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
  if text.len() as u64 > MAX_FILE_BYTES {
    return Err(std::io::Error::new(
      std::io::ErrorKind::InvalidData,
      format!(
        "larger than {} MiB, the most swdl reads",
        MAX_FILE_BYTES >> 20
      ),
    ));
  }
  Ok(text)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn line_and_column_are_one_based_and_count_characters() {
    let source = Source::new("f", "ab\nçd\n");
    assert_eq!(source.line_col(0), (1, 1));
    assert_eq!(source.line_col(3), (2, 1));
    assert_eq!(source.line_col(5), (2, 2));
    assert_eq!(source.line_text(2), "çd");
    assert_eq!(source.line_text(9), "");
    assert_eq!(source.byte_offset_of_char(4), 5);
  }
}
