//! The files of an audit directory: `audit.jsonl` (current) and `audit.jsonl.1` (newest
//! rotated) … `audit.jsonl.N` (oldest), the lock file `audit.lock`, and reading the last
//! line of a log file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Name of the file records are appended to.
pub const CURRENT: &str = "audit.jsonl";

/// Name of the (empty) file whose `flock` serialises the writers of a directory.
pub(crate) const LOCK: &str = "audit.lock";

/// The rotated files in `dir` as `(N, path)`, newest (`N` = 1) first.
pub(crate) fn rotated(dir: &Path) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = rotation_index(name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// `N` of `audit.jsonl.N` (N ≥ 1, no sign, no leading zero).
pub(crate) fn rotation_index(name: &str) -> Option<usize> {
    let digits = name.strip_prefix(CURRENT)?.strip_prefix('.')?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The end of a file, as far as continuing the chain is concerned.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// No bytes (or no file).
    Empty,
    /// The file does not end with a newline: the last write was cut short.
    Incomplete,
    /// The last line, without its newline.
    Line(Vec<u8>),
}

/// Bytes read first, from the end: a whole record unless it carries plaintext code or
/// arguments, so finding the head usually costs one `pread`.
pub(crate) const FIRST: u64 = 4 * 1024;
/// Bytes read per further step back, for longer last lines.
const CHUNK: u64 = 64 * 1024;

/// Reads the last line of `path` from the end backwards: one read of the final
/// [`FIRST`] bytes, then chunks, so a large file costs only the size of its last record.
pub(crate) fn last_line(path: &Path) -> io::Result<Tail> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Tail::Empty),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(Tail::Empty);
    }
    let mut start = len.saturating_sub(FIRST);
    let mut buf = vec![0u8; (len - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    if buf.pop() != Some(b'\n') {
        return Ok(Tail::Incomplete);
    }
    // The end of the last line read so far (no newline in it), and the chunk before it.
    let mut line: Vec<u8> = Vec::new();
    loop {
        if let Some(i) = memchr::memrchr(b'\n', &buf) {
            let mut tail = buf.split_off(i + 1);
            tail.extend_from_slice(&line);
            return Ok(Tail::Line(tail));
        }
        buf.extend_from_slice(&line);
        line = buf;
        if start == 0 {
            return Ok(Tail::Line(line));
        }
        let from = start.saturating_sub(CHUNK);
        buf = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut buf, from)?;
        start = from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_dir::TestDir;

    #[test]
    fn rotation_index_accepts_only_canonical_numbers() {
        assert_eq!(rotation_index("audit.jsonl.1"), Some(1));
        assert_eq!(rotation_index("audit.jsonl.12"), Some(12));
        for bad in [
            "audit.jsonl",
            "audit.jsonl.",
            "audit.jsonl.0",
            "audit.jsonl.01",
            "audit.jsonl.+1",
            "audit.jsonl.1a",
            "audit.jsonl.corrupt",
            "xaudit.jsonl.1",
            "audit.jsonl.99999999999999999999999",
        ] {
            assert_eq!(rotation_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn rotated_lists_newest_first() {
        let d = TestDir::new();
        for name in [
            "audit.jsonl.3",
            "audit.jsonl.1",
            "audit.jsonl",
            "other",
            "audit.jsonl.10",
        ] {
            std::fs::write(d.path().join(name), b"").unwrap();
        }
        let got: Vec<usize> = rotated(d.path())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got, vec![1, 3, 10]);
    }

    #[test]
    fn last_line_across_chunk_boundaries() {
        let d = TestDir::new();
        let p = d.path().join("f");
        assert_eq!(last_line(&p).unwrap(), Tail::Empty);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(last_line(&p).unwrap(), Tail::Empty);
        std::fs::write(&p, b"only\n").unwrap();
        assert_eq!(last_line(&p).unwrap(), Tail::Line(b"only".to_vec()));
        std::fs::write(&p, b"a\nb").unwrap();
        assert_eq!(last_line(&p).unwrap(), Tail::Incomplete);
        std::fs::write(&p, b"a\n\n").unwrap();
        assert_eq!(last_line(&p).unwrap(), Tail::Line(Vec::new()));
        for size in [
            1,
            FIRST as usize - 2,
            FIRST as usize - 1,
            FIRST as usize,
            FIRST as usize + 1,
            CHUNK as usize - 1,
            CHUNK as usize,
            CHUNK as usize + 1,
            3 * CHUNK as usize,
            3 * CHUNK as usize + FIRST as usize,
        ] {
            let long = vec![b'x'; size];
            let mut content = b"first line\n".to_vec();
            content.extend_from_slice(&long);
            content.push(b'\n');
            std::fs::write(&p, &content).unwrap();
            assert_eq!(
                last_line(&p).unwrap(),
                Tail::Line(long.clone()),
                "size {size}"
            );
            std::fs::write(&p, &content[11..]).unwrap();
            assert_eq!(
                last_line(&p).unwrap(),
                Tail::Line(long),
                "size {size}, one line"
            );
        }
    }
}
