//! The tamper-evident audit log: one JSON line per execution and per tool call, chained
//! by SHA-256 so that editing, deleting, inserting or reordering records is detected by
//! [`verify`](crate::audit::verify).
//!
//! Each line carries `seq` (1, 2, 3, … across rotations), `ts` (RFC 3339 UTC), `prev`
//! (the `hash` of the record before it; 64 zeros for the first record ever written) and
//! `hash` (SHA-256 of the line without its `hash` field; see
//! [`chain`](crate::audit::chain)). Every record is written with one `write(2)` before
//! `record_*` returns, so it survives a crash of the server process; with `fsync` it also
//! survives a power loss.
//!
//! Files: `audit.jsonl` in the audit directory (mode 0700, files 0600), rotated by size
//! to `audit.jsonl.1` (newest) … `audit.jsonl.N` (oldest); the chain runs on across
//! files. On open the writer continues the chain from the newest record on disk, and
//! refuses to start when that record is damaged.
//!
//! Several writers may share a directory: the stdio servers of one user's MCP client
//! sessions, servers started in parallel by tests, or two `AuditLog`s in one process.
//! Every append takes an exclusive `flock` on `audit.lock` in the directory and, holding
//! it, re-reads the head from disk when another writer appended or rotated since (a
//! `stat` of `audit.jsonl` tells; then one read of the file's last few KiB), rotates when
//! the file *as it is now* is full, writes the line and flushes. So all writers extend one
//! chain, and a file is rotated once, by whoever first finds it full.
//!
//! Limits: the hashes are not keyed, so someone who can write the files can rewrite the
//! log from some record to the end and recompute every hash after it; removing the
//! newest records leaves a shorter chain that is still valid; and removing the oldest
//! records looks like rotation (the report says at which `seq` the chain starts). The
//! first two are detected only against a head kept elsewhere: log
//! [`AuditLog::head`](crate::audit::AuditLog::head) (to stderr or a remote collector) and
//! pass it to [`verify_with_head`](crate::audit::verify_with_head). The lock is advisory:
//! it orders the writers of this crate, not other programs writing to the files.
//!
//! No plaintext code, tool arguments or tokens are written unless the operator opts in
//! with [`AuditOptions::include_plaintext`](crate::audit::AuditOptions::include_plaintext);
//! records carry SHA-256 and sizes instead. (A hash of a short, guessable argument can be
//! guessed back; the hash is for matching records to code the operator has, not for
//! secrecy.)

pub mod chain;
mod files;
pub mod record;
mod verify;

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

pub use chain::GENESIS;
pub use files::CURRENT;
pub use record::{
    AuditLimits, AuditPermissions, Decision, ExecutionRecord, ToolCallCount, ToolCallRecord,
    ToolOutcome,
};
pub use verify::{verify, verify_with_head, Broken, VerifyReport};

use files::Tail;
use record::RecordRef;

/// Errors of writing or verifying the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log: cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the newest audit record in {} is damaged ({reason}). Run `code-executor-mcp audit verify {}`, keep the report, and move the damaged file out of the directory; the log then continues from the newest intact file", path.display(), dir.display())]
    DamagedTail {
        path: PathBuf,
        dir: PathBuf,
        reason: String,
    },
    #[error("cannot encode an audit record: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("no audit log at {} (expected {CURRENT} or {CURRENT}.N)", path.display())]
    NoLog { path: PathBuf },
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// How the log is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditOptions {
    /// Rotate `audit.jsonl` before a record would take it past this size. A single record
    /// larger than this still gets a file of its own.
    pub max_file_bytes: u64,
    /// Files kept, `audit.jsonl` included (so `audit.jsonl.1` … `.{max_files - 1}`); older
    /// ones are deleted on rotation. 0 counts as 1.
    pub max_files: usize,
    /// Write the code and tool arguments themselves, not only their hashes.
    pub include_plaintext: bool,
    /// `fsync` after every record (and the directory after rotation): survives power loss,
    /// costs a disk flush per record. Without it a record survives a crash of the server.
    pub fsync: bool,
}

impl Default for AuditOptions {
    fn default() -> Self {
        Self {
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 5,
            include_plaintext: false,
            fsync: false,
        }
    }
}

/// The newest record of a chain: keep it outside the audit directory to detect later
/// truncation or rewriting. Written and parsed as `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// A head that is not `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected SEQ:HASH (a record number, a colon, 64 lowercase hex digits), got {0:?}")]
pub struct HeadParseError(String);

impl FromStr for Head {
    type Err = HeadParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || HeadParseError(s.chars().take(100).collect());
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let seq = seq.parse().map_err(|_| bad())?;
        let hex = hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex || seq == 0 {
            return Err(bad());
        }
        Ok(Self {
            seq,
            hash: hash.to_owned(),
        })
    }
}

/// What this writer knows of `audit.jsonl`, as of its last append (or open). Valid for
/// the file on disk only while that is still the same file (`id`) of the same size: any
/// other writer appending or rotating changes one of the two.
struct State {
    /// `audit.jsonl` as this writer last opened it; after another writer rotated, a
    /// rotated file (or a deleted one).
    file: File,
    /// `(st_dev, st_ino)` of `file`. Because `file` stays open, its inode number cannot be
    /// reused by a new `audit.jsonl` while this writer holds it.
    id: (u64, u64),
    /// Bytes in `file`.
    size: u64,
    /// `seq` of the newest record; 0 before the first.
    seq: u64,
    /// `hash` of the newest record; [`GENESIS`] before the first.
    prev: String,
}

/// The audit log writer. Cheap to share (`Arc<AuditLog>`); records from concurrent
/// callers are serialised by an internal mutex, and writers in other processes (or other
/// `AuditLog`s on the same directory) by an exclusive `flock` on `audit.lock`. Writes are
/// blocking file I/O of one line: microseconds, but with `fsync` on (or many writers on
/// one directory) call it from `spawn_blocking`.
pub struct AuditLog {
    dir: PathBuf,
    opts: AuditOptions,
    /// `audit.lock`, opened by this writer: `flock` locks belong to the open file
    /// description, so this writer's lock excludes every other `open` of the file, in this
    /// process or another, but not other threads using this same `File` (the mutex around
    /// `state` orders those). On NFS Linux emulates `flock` with `fcntl` locks, which
    /// still exclude other processes but not a second `AuditLog` in the same process.
    lock: File,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("head", &self.head())
            .finish()
    }
}

impl AuditLog {
    /// Opens (creating when needed) the log in `dir` and continues the chain from the
    /// newest record there. Fails when that record is damaged (see [`AuditError::DamagedTail`]).
    pub fn open(dir: &Path, opts: AuditOptions) -> Result<Self, AuditError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create the directory", dir))?;
        let lock_path = dir.join(files::LOCK);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let state = {
            let _held = DirLock::acquire(&lock, dir)?;
            let (seq, prev) = head_on_disk(dir)?;
            let current = dir.join(CURRENT);
            let file = open_append(&current)?;
            let meta = file
                .metadata()
                .map_err(io_err("read the size of", &current))?;
            if opts.fsync {
                sync_dir(dir)?;
            }
            State {
                file,
                id: (meta.dev(), meta.ino()),
                size: meta.len(),
                seq,
                prev,
            }
        };
        Ok(Self {
            dir: dir.to_owned(),
            opts,
            lock,
            state: Mutex::new(state),
        })
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file records are appended to.
    pub fn current_path(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    /// The newest record this writer wrote or found (on open, or before its last append);
    /// `None` before the first record. Other writers on the directory may have appended
    /// since: this is then an older head, still good for
    /// [`verify_with_head`].
    pub fn head(&self) -> Option<Head> {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        (st.seq > 0).then(|| Head {
            seq: st.seq,
            hash: st.prev.clone(),
        })
    }

    /// Appends an execution record. `code` is dropped unless plaintext is enabled.
    pub fn record_execution(&self, rec: &ExecutionRecord) -> Result<(), AuditError> {
        if rec.code.is_some() && !self.opts.include_plaintext {
            let mut redacted = rec.clone();
            redacted.code = None;
            return self.append(&RecordRef::Execution(&redacted));
        }
        self.append(&RecordRef::Execution(rec))
    }

    /// Appends a tool-call record. `arguments` are dropped unless plaintext is enabled.
    pub fn record_tool_call(&self, rec: &ToolCallRecord) -> Result<(), AuditError> {
        if rec.arguments.is_some() && !self.opts.include_plaintext {
            let mut redacted = rec.clone();
            redacted.arguments = None;
            return self.append(&RecordRef::ToolCall(&redacted));
        }
        self.append(&RecordRef::ToolCall(rec))
    }

    fn append(&self, rec: &RecordRef<'_>) -> Result<(), AuditError> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Held from reading the head to the flushed line, rotation included.
        let _held = DirLock::acquire(&self.lock, &self.dir)?;
        self.catch_up(&mut st)?;
        let seq = st.seq + 1;
        let (line, hash) = chain::encode(seq, &rfc3339_utc(SystemTime::now()), &st.prev, rec)?;
        let len = line.len() as u64;
        // `size` is the size on disk now (see `catch_up`), so a file another writer has
        // just rotated is not rotated again.
        if st.size > 0 && st.size.saturating_add(len) > self.opts.max_file_bytes {
            self.rotate(&mut st)?;
        }
        let path = self.current_path();
        let written = (&st.file)
            .write_all(&line)
            .and_then(|()| (&st.file).flush())
            .and_then(|()| {
                if self.opts.fsync {
                    st.file.sync_data()
                } else {
                    Ok(())
                }
            });
        if let Err(e) = written {
            // Take back a partial line so the next record does not follow garbage.
            let _ = st.file.set_len(st.size);
            return Err(io_err("append to", &path)(e));
        }
        st.size += len;
        st.seq = seq;
        st.prev = hash;
        Ok(())
    }

    /// With the directory lock held: brings `st` up to date with the disk. Unless
    /// `audit.jsonl` is still the file this writer last wrote, at the size it left it,
    /// another writer has appended or rotated since: reopen `audit.jsonl` (creating it
    /// when a rotation was cut short) and take `seq`/`prev` from the newest record on disk.
    /// The common case, this writer alone, costs one `stat`.
    fn catch_up(&self, st: &mut State) -> Result<(), AuditError> {
        let current = self.current_path();
        let on_disk = match std::fs::metadata(&current) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("read the size of", &current)(e)),
        };
        let same_file = on_disk
            .as_ref()
            .is_some_and(|m| (m.dev(), m.ino()) == st.id);
        if same_file && on_disk.as_ref().map(|m| m.len()) == Some(st.size) {
            return Ok(());
        }
        let reopened = if same_file {
            None
        } else {
            Some(open_append(&current)?)
        };
        let meta = reopened
            .as_ref()
            .unwrap_or(&st.file)
            .metadata()
            .map_err(io_err("read the size of", &current))?;
        // `st` changes only once the head is read: after a damaged tail every append
        // retries (and fails) instead of chaining onto a stale head.
        let (seq, prev) = head_on_disk(&self.dir)?;
        if let Some(file) = reopened {
            st.file = file;
        }
        st.id = (meta.dev(), meta.ino());
        st.size = meta.len();
        st.seq = seq;
        st.prev = prev;
        Ok(())
    }

    /// `audit.jsonl` → `.1` → `.2` …, deleting what falls beyond `max_files`. Only with
    /// the directory lock held.
    fn rotate(&self, st: &mut State) -> Result<(), AuditError> {
        let keep = self.opts.max_files.max(1) - 1;
        for (n, path) in files::rotated(&self.dir).map_err(io_err("list", &self.dir))? {
            if n >= keep {
                remove_if_present(&path)?;
            }
        }
        for n in (1..keep).rev() {
            let from = self.dir.join(format!("{CURRENT}.{n}"));
            let to = self.dir.join(format!("{CURRENT}.{}", n + 1));
            rename_if_present(&from, &to)?;
        }
        let current = self.current_path();
        if keep == 0 {
            remove_if_present(&current)?;
        } else {
            rename_if_present(&current, &self.dir.join(format!("{CURRENT}.1")))?;
        }
        st.file = open_append(&current)?;
        let meta = st
            .file
            .metadata()
            .map_err(io_err("read the size of", &current))?;
        st.id = (meta.dev(), meta.ino());
        st.size = meta.len();
        if self.opts.fsync {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// The exclusive `flock` on `audit.lock`, released on drop. The kernel releases it as
/// well when the holder's file is closed, so a writer that crashes (or is killed) while
/// holding it does not block the others: no stale lock to clean up. (std opens files
/// `O_CLOEXEC`, so spawned processes such as container runtimes never inherit it.)
struct DirLock<'a>(&'a File);

impl<'a> DirLock<'a> {
    /// Blocks until no other writer holds the lock on `file`, `audit.lock` in `dir`.
    fn acquire(file: &'a File, dir: &Path) -> Result<Self, AuditError> {
        loop {
            // `File::lock` is `flock(LOCK_EX)` on Linux and the BSDs (a lock per open
            // file description, not per process as with `fcntl` locks).
            match file.lock() {
                Ok(()) => return Ok(Self(file)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("lock", &dir.join(files::LOCK))(e)),
            }
        }
    }
}

impl Drop for DirLock<'_> {
    fn drop(&mut self) {
        // Fails only for a bad descriptor; closing the file would release it anyway.
        let _ = self.0.unlock();
    }
}

/// `(seq, hash)` of the newest record in `dir`: the last line of `audit.jsonl`, or when
/// that is empty or missing, of the newest rotated file that is not; `(0, GENESIS)` for
/// no records. A damaged last line is an error, not skipped.
fn head_on_disk(dir: &Path) -> Result<(u64, String), AuditError> {
    if let Some(head) = head_of_file(dir, &dir.join(CURRENT))? {
        return Ok(head);
    }
    for (_, path) in files::rotated(dir).map_err(io_err("list", dir))? {
        if let Some(head) = head_of_file(dir, &path)? {
            return Ok(head);
        }
    }
    Ok((0, GENESIS.to_owned()))
}

/// `(seq, hash)` of the last record of `path`; `None` when it has none.
fn head_of_file(dir: &Path, path: &Path) -> Result<Option<(u64, String)>, AuditError> {
    let damaged = |reason: String| AuditError::DamagedTail {
        path: path.to_owned(),
        dir: dir.to_owned(),
        reason,
    };
    match files::last_line(path).map_err(io_err("read", path))? {
        Tail::Empty => Ok(None),
        Tail::Incomplete => Err(damaged(
            "the last line has no newline: a write was cut short".to_owned(),
        )),
        Tail::Line(line) => {
            let link = chain::check_line(&line).map_err(damaged)?;
            Ok(Some((link.seq, link.hash)))
        }
    }
}

fn open_append(path: &Path) -> Result<File, AuditError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open", path))
}

fn remove_if_present(path: &Path) -> Result<(), AuditError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> Result<(), AuditError> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("rotate", from)(e)),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

/// Where the log goes by default: `$XDG_STATE_HOME/code-executor-mcp/`, else
/// `~/.local/state/code-executor-mcp/` (`/var/lib/code-executor-mcp/` without `HOME`).
pub fn default_dir() -> PathBuf {
    default_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn default_dir_from(xdg: Option<std::ffi::OsString>, home: Option<std::ffi::OsString>) -> PathBuf {
    // The XDG spec says to ignore relative paths.
    let abs = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    if let Some(state) = abs(xdg) {
        return state.join("code-executor-mcp");
    }
    if let Some(home) = abs(home) {
        return home.join(".local/state/code-executor-mcp");
    }
    PathBuf::from("/var/lib/code-executor-mcp")
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`; times before 1970 are written as the epoch.
pub fn rfc3339_utc(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod test_dir {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub(crate) struct TestDir(PathBuf);

    impl TestDir {
        pub(crate) fn new() -> Self {
            let p = std::env::temp_dir().join(format!("cem-audit-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TestDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests;
