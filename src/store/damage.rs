//! Finding damage that SQLite would quietly work around: an emptied database file, and a
//! write-ahead log whose frames stop checking out before its last valid one.
//!
//! SQLite treats a zero-length database as a new one, and a WAL frame that fails its checksum
//! as the end of the log, so both lose committed runs without an error. The store never
//! creates an empty database (see `Store::open`), and a commit that checks out after a frame
//! that does not can only follow damage to the frames between.
use std::{
  fs::File,
  io::{BufReader, Read},
  path::Path,
};

/// WAL header magic numbers: checksums in little-endian or big-endian words.
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const WAL_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;

/// Whether the database file at `db` exists but is empty, which only damage makes.
pub(super) fn check_empty(db: &Path) -> Option<String> {
  std::fs::metadata(db)
    .is_ok_and(|m| m.len() == 0)
    .then(|| "the database file is empty: it was truncated".into())
}

/// What is wrong with the write-ahead log beside `db`, if anything. Call it holding the write
/// lock: only a writer appends to the log or starts it over, so it cannot change meanwhile.
pub(super) fn check_log(db: &Path) -> Option<String> {
  let wal = db.with_file_name(format!(
    "{}-wal",
    db.file_name()
      .map(|n| n.to_string_lossy())
      .unwrap_or_default()
  ));
  let file = File::open(&wal).ok()?;
  check_wal(BufReader::with_capacity(64 * 1024, file)).err()
}

/// Checks the log's header, then follows the frames' checksum chain. Where the chain breaks,
/// SQLite stops reading; that is normal at the end of what was committed (a transaction cut
/// off by a crash, one rolled back after it spilled into the log, frames of an earlier
/// generation). It is damage when a *commit* frame of the current generation further on
/// checks out against the frame before it: committed work after the break would be lost.
fn check_wal(mut wal: impl Read) -> Result<(), String> {
  let mut header = [0u8; WAL_HEADER];
  match read_full(&mut wal, &mut header) {
    Ok(0) => return Ok(()),
    Ok(n) if n < WAL_HEADER => {
      return Err(format!(
        "the write-ahead log is {n} bytes, shorter than its header"
      ));
    }
    Ok(_) => {}
    Err(e) => return Err(format!("the write-ahead log cannot be read: {e}")),
  }
  let word = |bytes: &[u8], at: usize| {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
  };
  let big_endian = match word(&header, 0) {
    MAGIC_LE => false,
    MAGIC_BE => true,
    _ => return Err("the write-ahead log's header is not a SQLite log header".into()),
  };
  let page_size = word(&header, 8) as usize;
  if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
    return Err(format!(
      "the write-ahead log's header gives a page size of {page_size}"
    ));
  }
  let salts = (word(&header, 16), word(&header, 20));
  let mut sum = checksum((0, 0), &header[..24], big_endian);
  if sum != (word(&header, 24), word(&header, 28)) {
    return Err("the write-ahead log's header fails its checksum".into());
  }
  let frame_sum = |seed: (u32, u32), frame: &[u8]| {
    checksum(
      checksum(seed, &frame[..8], big_endian),
      &frame[FRAME_HEADER..],
      big_endian,
    )
  };
  let mut frame = vec![0u8; FRAME_HEADER + page_size];
  let mut index = 0usize;
  let mut broken: Option<usize> = None;
  loop {
    let n = read_full(&mut wal, &mut frame)
      .map_err(|e| format!("the write-ahead log cannot be read: {e}"))?;
    if n < frame.len() {
      // A short last frame is a write cut off by a crash: SQLite ignores it, and so do we.
      return Ok(());
    }
    index += 1;
    let current = (word(&frame, 8), word(&frame, 12)) == salts;
    let stored = (word(&frame, 16), word(&frame, 20));
    let valid = current && frame_sum(sum, &frame) == stored;
    match broken {
      None if valid => {}
      None => broken = Some(index),
      Some(at) if valid && word(&frame, 4) != 0 => {
        return Err(format!(
          "frame {at} of the write-ahead log is damaged and a commit of the same log follows \
           it (frame {index}): the commits after frame {at} would be lost"
        ));
      }
      Some(_) => {}
    }
    // After the break, each frame is checked against the one before it as stored.
    sum = stored;
  }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `seed`.
fn checksum(seed: (u32, u32), data: &[u8], big_endian: bool) -> (u32, u32) {
  let (mut s0, mut s1) = seed;
  for pair in data.chunks_exact(8) {
    let read = |b: &[u8]| {
      let bytes = [b[0], b[1], b[2], b[3]];
      if big_endian {
        u32::from_be_bytes(bytes)
      } else {
        u32::from_le_bytes(bytes)
      }
    };
    s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
    s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
  }
  (s0, s1)
}

/// Reads until `buf` is full or the end of the input; returns how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
  let mut filled = 0;
  while filled < buf.len() {
    match input.read(&mut buf[filled..]) {
      Ok(0) => break,
      Ok(n) => filled += n,
      Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
      Err(e) => return Err(e),
    }
  }
  Ok(filled)
}

#[cfg(test)]
mod tests {
  use super::*;

  const PAGE: usize = 512;

  /// A log of `frames` (commit flag, page byte) whose chain is right unless `bad` says so.
  #[expect(
    clippy::cast_possible_truncation,
    reason = "test pages and frames are few and small"
  )]
  fn log(frames: &[(bool, u8)], bad: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC_LE.to_be_bytes());
    out.extend_from_slice(&3_007_000u32.to_be_bytes());
    out.extend_from_slice(&(PAGE as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    let mut sum = checksum((0, 0), &out, false);
    out.extend_from_slice(&sum.0.to_be_bytes());
    out.extend_from_slice(&sum.1.to_be_bytes());
    for (i, &(commit, byte)) in frames.iter().enumerate() {
      let mut frame = Vec::new();
      frame.extend_from_slice(&(i as u32 + 1).to_be_bytes());
      frame.extend_from_slice(&u32::from(commit).to_be_bytes());
      frame.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
      let page = vec![byte; PAGE];
      sum = checksum(checksum(sum, &frame[..8], false), &page, false);
      frame.extend_from_slice(&sum.0.to_be_bytes());
      frame.extend_from_slice(&sum.1.to_be_bytes());
      frame.extend_from_slice(&page);
      if bad.contains(&(i + 1)) {
        frame[FRAME_HEADER + 10] ^= 0xff;
      }
      out.extend_from_slice(&frame);
    }
    out
  }

  #[test]
  fn a_log_that_ends_is_fine_and_one_damaged_before_a_commit_is_not() {
    let ok = |bytes: Vec<u8>| check_wal(bytes.as_slice());
    assert_eq!(ok(Vec::new()), Ok(()));
    assert_eq!(
      ok(log(&[(false, 1), (true, 2), (false, 3), (true, 4)], &[])),
      Ok(())
    );
    // The last transaction cut off by a crash: its frames fail, no commit follows.
    assert_eq!(ok(log(&[(true, 1), (false, 2), (false, 3)], &[2])), Ok(()));
    // A rolled-back spill overwritten by a shorter transaction: stale frames of the same
    // generation after the chain ends, without a commit among them.
    let mut rolled = log(&[(true, 1), (true, 2)], &[]);
    rolled.extend_from_slice(&log(&[(false, 9), (false, 9), (false, 9)], &[])[WAL_HEADER..]);
    assert_eq!(ok(rolled), Ok(()));
    // A short last frame.
    let mut torn = log(&[(true, 1)], &[]);
    torn.extend_from_slice(&[0; 100]);
    assert_eq!(ok(torn), Ok(()));
    // Damage in the middle: a commit after it still checks out.
    let err = ok(log(&[(true, 1), (false, 2), (false, 3), (true, 4)], &[2])).unwrap_err();
    assert!(
      err.starts_with("frame 2 of the write-ahead log is damaged"),
      "{err}"
    );
    let mut header = log(&[(true, 1)], &[]);
    header[26] ^= 1;
    assert!(
      ok(header)
        .unwrap_err()
        .contains("header fails its checksum")
    );
    assert!(
      ok(vec![0; 10])
        .unwrap_err()
        .contains("shorter than its header")
    );
  }
}
