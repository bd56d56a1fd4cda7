//! Finding damage that SQLite would quietly work around: an emptied database file, and a
//! write-ahead log whose frames stop checking out before its last valid one.
//!
//! SQLite treats a zero-length database as a new one, and a WAL frame that fails its checksum
//! as the end of the log, so both lose committed runs without an error. The store never
//! creates an empty database (see `Store::open`) and WAL frames are only ever appended in
//! order, so either sign means the files were damaged.
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

/// What is wrong with the files of the store at `db`, if anything.
pub(super) fn check_files(db: &Path) -> Option<String> {
  if std::fs::metadata(db).is_ok_and(|m| m.len() == 0) {
    return Some("the database file is empty: it was truncated".into());
  }
  let wal = db.with_file_name(format!(
    "{}-wal",
    db.file_name()
      .map(|n| n.to_string_lossy())
      .unwrap_or_default()
  ));
  let file = File::open(&wal).ok()?;
  check_wal(BufReader::with_capacity(64 * 1024, file)).err()
}

/// Checks the log's header, then follows the frames' checksum chain; a frame of the log's
/// current generation after the chain broke means the bytes in between were damaged.
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
    match broken {
      None if current => {
        let next = checksum(
          checksum(sum, &frame[..8], big_endian),
          &frame[FRAME_HEADER..],
          big_endian,
        );
        if next == (word(&frame, 16), word(&frame, 20)) {
          sum = next;
        } else {
          broken = Some(index);
        }
      }
      // Frames of an earlier generation after the current ones are left-overs: normal.
      None => broken = Some(index),
      Some(at) if current => {
        return Err(format!(
          "frame {at} of the write-ahead log is damaged and frame {index} after it belongs to \
           the same log: the commits after frame {at} would be lost"
        ));
      }
      Some(_) => {}
    }
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
