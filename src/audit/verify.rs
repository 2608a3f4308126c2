//! Checking a whole audit log: every line on its own ([`chain::check_line`]), `seq`
//! increasing by exactly one, and each `prev` equal to the `hash` before it, across the
//! rotated files from oldest to newest.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{self, Link, GENESIS};
use super::files::{self, CURRENT};
use super::{io_err, AuditError, Head};

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// File name, e.g. `audit.jsonl.1`.
    pub file: String,
    /// 1-based line in that file.
    pub line: u64,
    /// `seq` of the offending record when it could be read.
    pub seq: Option<u64>,
    pub reason: String,
}

/// The outcome of [`verify`]; `Display` gives a one-line report for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Files read.
    pub files: usize,
    /// Records that checked out (those before `broken`, when broken).
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// `hash` of the last record that checked out.
    pub head_hash: Option<String>,
    /// The oldest record present is the first ever written (`prev` is all zeros). False
    /// when older files were rotated away (or deleted): the chain is then checked from
    /// the oldest record present on.
    pub starts_at_genesis: bool,
    /// Whether the head passed to [`verify_with_head`] matched; `None` without one or when
    /// its record was rotated away.
    pub head_matched: Option<bool>,
    pub broken: Option<Broken>,
}

impl VerifyReport {
    /// No break found.
    pub fn is_ok(&self) -> bool {
        self.broken.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(b) = &self.broken {
            write!(f, "BROKEN at {} line {}", b.file, b.line)?;
            if let Some(seq) = b.seq {
                write!(f, " (seq {seq})")?;
            }
            return write!(
                f,
                ": {}; {} records before it are intact",
                b.reason, self.records
            );
        }
        let files = if self.files == 1 { "file" } else { "files" };
        write!(f, "ok: {} records in {} {files}", self.records, self.files)?;
        if let (Some(first), Some(last), Some(hash)) =
            (self.first_seq, self.last_seq, &self.head_hash)
        {
            write!(f, ", seq {first}..{last}, head {hash}")?;
            if !self.starts_at_genesis {
                write!(
                    f,
                    "; the chain starts at seq {first} (older records were rotated away)"
                )?;
            }
        }
        if self.head_matched == Some(true) {
            write!(f, "; matches the known head")?;
        }
        Ok(())
    }
}

/// Verifies the log at `path`: an audit directory (all of `audit.jsonl.N` … `.1` and
/// `audit.jsonl`, oldest first) or a single file (checked on its own, e.g. one moved
/// away). `Err` only when the files cannot be read; a broken chain is `Ok` with
/// `broken` set.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    verify_with_head(path, None)
}

/// [`verify`], and also checks that the record at `known.seq` has `known.hash` and that
/// the log reaches that far: this detects removed newest records and a log rewritten
/// from some record on, which the chain alone cannot.
pub fn verify_with_head(path: &Path, known: Option<&Head>) -> Result<VerifyReport, AuditError> {
    let paths = log_files(path)?;
    let mut report = VerifyReport {
        files: paths.len(),
        records: 0,
        first_seq: None,
        last_seq: None,
        head_hash: None,
        starts_at_genesis: false,
        head_matched: None,
        broken: None,
    };
    let mut last: Option<Link> = None;
    let mut end = (String::new(), 0u64);
    for path in &paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let file = File::open(path).map_err(io_err("open", path))?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        let mut line_no = 0u64;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(io_err("read", path))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let broken = |seq: Option<u64>, reason: String| Broken {
                file: name.clone(),
                line: line_no,
                seq,
                reason,
            };
            let Some(line) = buf.strip_suffix(b"\n") else {
                report.broken = Some(broken(
                    seq_of(&buf),
                    "the last line has no newline: a write was cut short".to_owned(),
                ));
                return Ok(report);
            };
            let link = match chain::check_line(line) {
                Ok(link) => link,
                Err(reason) => {
                    report.broken = Some(broken(seq_of(line), reason));
                    return Ok(report);
                }
            };
            let fault = match &last {
                None if link.prev == GENESIS && link.seq != 1 => Some(format!(
                    "the first record of the log has seq {}, expected 1",
                    link.seq
                )),
                None => None,
                Some(p) if link.seq != p.seq.wrapping_add(1) => Some(format!(
                    "seq {} follows seq {} (a record was deleted, inserted or moved)",
                    link.seq, p.seq
                )),
                Some(p) if link.prev != p.hash => Some(
                    "prev does not match the hash of the previous record (record edited or deleted)"
                        .to_owned(),
                ),
                Some(_) => None,
            };
            if let Some(reason) = fault {
                report.broken = Some(broken(Some(link.seq), reason));
                return Ok(report);
            }
            if let Some(k) = known.filter(|k| k.seq == link.seq) {
                if k.hash != link.hash {
                    report.head_matched = Some(false);
                    report.broken = Some(broken(
                        Some(link.seq),
                        format!(
                            "the record's hash differs from the head kept elsewhere ({k}): the log was rewritten from here or earlier"
                        ),
                    ));
                    return Ok(report);
                }
                report.head_matched = Some(true);
            }
            if last.is_none() {
                report.starts_at_genesis = link.prev == GENESIS;
                report.first_seq = Some(link.seq);
            }
            report.records += 1;
            report.last_seq = Some(link.seq);
            report.head_hash = Some(link.hash.clone());
            last = Some(link);
        }
        end = (name, line_no);
    }
    if let Some(k) = known {
        let reached = report.last_seq.unwrap_or(0);
        if k.seq > reached {
            report.head_matched = Some(false);
            report.broken = Some(Broken {
                file: end.0,
                line: end.1 + 1,
                seq: Some(k.seq),
                reason: format!(
                    "the log ends at seq {reached} but the head kept elsewhere is {k}: the newest records were removed"
                ),
            });
        }
    }
    Ok(report)
}

/// `seq` of a damaged line, when it still parses far enough to tell.
fn seq_of(line: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(line)
        .ok()?
        .get("seq")?
        .as_u64()
}

/// The files to check, oldest first.
fn log_files(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let meta = std::fs::metadata(path).map_err(io_err("read", path))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out: Vec<PathBuf> = files::rotated(path)
        .map_err(io_err("list", path))?
        .into_iter()
        .rev()
        .map(|(_, p)| p)
        .collect();
    let current = path.join(CURRENT);
    if current.is_file() {
        out.push(current);
    }
    if out.is_empty() {
        return Err(AuditError::NoLog {
            path: path.to_owned(),
        });
    }
    Ok(out)
}
