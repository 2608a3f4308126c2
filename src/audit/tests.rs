use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::test_dir::TestDir;
use super::*;

fn exec(id: &str) -> ExecutionRecord {
    ExecutionRecord {
        execution_id: id.to_owned(),
        language: "python".into(),
        runtime: "runc".into(),
        success: true,
        exit_code: Some(0),
        ..Default::default()
    }
    .with_code(&format!("print('code of {id}')"))
}

fn call(id: &str, tool: &str) -> ToolCallRecord {
    ToolCallRecord {
        execution_id: id.to_owned(),
        tool: tool.to_owned(),
        ..Default::default()
    }
    .with_arguments(&json!({"token": "SECRET-TOKEN-42", "path": "/x"}))
}

fn small(max_file_bytes: u64, max_files: usize) -> AuditOptions {
    AuditOptions {
        max_file_bytes,
        max_files,
        ..Default::default()
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut s = lines.join("\n");
    s.push('\n');
    std::fs::write(path, s).unwrap();
}

fn value(line: &str) -> Value {
    serde_json::from_str(line).unwrap()
}

/// A log in `dir` with `n` execution records, `e0` to `e{n-1}`.
fn executions(dir: &Path, options: AuditOptions, n: usize) -> AuditLog {
    let log = AuditLog::open(dir, options).unwrap();
    for i in 0..n {
        log.record_execution(&exec(&format!("e{i}"))).unwrap();
    }
    log
}

/// The names of the files in `dir`, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A log of `n` records alternating execution and tool call, in one file.
fn log_of(d: &TestDir, n: usize) -> AuditLog {
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    for i in 0..n {
        if i % 2 == 0 {
            log.record_execution(&exec(&format!("e{i}"))).unwrap();
        } else {
            log.record_tool_call(&call(&format!("e{i}"), "mcp__git__status"))
                .unwrap();
        }
    }
    log
}

#[test]
fn records_chain_from_genesis() {
    let d = TestDir::new();
    let log = log_of(&d, 200);
    let ls = lines(&log.current_path());
    assert_eq!(ls.len(), 200);
    let mut prev = GENESIS.to_owned();
    for (i, l) in ls.iter().enumerate() {
        let v = value(l);
        assert_eq!(v["seq"], i as u64 + 1);
        assert_eq!(v["prev"], prev.as_str());
        assert_eq!(v["kind"], if i % 2 == 0 { "execution" } else { "toolCall" });
        let ts = v["ts"].as_str().unwrap();
        assert!(ts.len() == 24 && ts.ends_with('Z'), "{ts}");
        prev = v["hash"].as_str().unwrap().to_owned();
    }
    let head = log.head().unwrap();
    assert_eq!(
        head,
        Head {
            seq: 200,
            hash: prev.clone()
        }
    );
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok(), "{r}");
    assert_eq!(
        (r.files, r.records, r.first_seq, r.last_seq),
        (1, 200, Some(1), Some(200))
    );
    assert!(r.starts_at_genesis);
    assert_eq!(r.head_hash.as_deref(), Some(prev.as_str()));
    assert_eq!(
        r.to_string(),
        format!("ok: 200 records in 1 file, seq 1..200, head {prev}")
    );
}

#[test]
fn rotation_keeps_the_chain_and_deletes_the_oldest() {
    let d = TestDir::new();
    let log = executions(d.path(), small(3000, 3), 100);
    let names = file_names(d.path());
    assert_eq!(
        names,
        [
            "audit.jsonl",
            "audit.jsonl.1",
            "audit.jsonl.2",
            "audit.lock"
        ]
    );
    for n in &names {
        let size = std::fs::metadata(d.path().join(n)).unwrap().len();
        assert!(size <= 3000, "{n}: {size}");
    }
    // The newest rotated file ends where the current one begins.
    let older = lines(&d.path().join("audit.jsonl.1"));
    let newer = lines(&log.current_path());
    let last_old = value(older.last().unwrap());
    let first_new = value(&newer[0]);
    assert_eq!(first_new["prev"], last_old["hash"]);
    assert_eq!(
        first_new["seq"].as_u64().unwrap(),
        last_old["seq"].as_u64().unwrap() + 1
    );
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok(), "{r}");
    assert_eq!(r.files, 3);
    assert_eq!(r.last_seq, Some(100));
    assert!(r.records < 100 && r.first_seq > Some(1));
    assert_eq!(r.first_seq.unwrap() + r.records - 1, 100);
    assert!(!r.starts_at_genesis);
    assert!(
        r.to_string().contains("older records were rotated away"),
        "{r}"
    );
}

#[test]
fn max_files_one_keeps_only_the_current_file() {
    let d = TestDir::new();
    let _log = executions(d.path(), small(1000, 1), 20);
    let names = file_names(d.path());
    assert_eq!(names, [CURRENT, files::LOCK]);
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok() && r.last_seq == Some(20), "{r}");
}

#[test]
fn a_record_larger_than_a_file_gets_a_file_of_its_own() {
    let d = TestDir::new();
    let log = AuditLog::open(d.path(), small(100, 5)).unwrap();
    log.record_execution(&exec("a")).unwrap();
    log.record_execution(&exec("b")).unwrap();
    log.record_execution(&exec("c")).unwrap();
    assert_eq!(lines(&log.current_path()).len(), 1);
    assert_eq!(lines(&d.path().join("audit.jsonl.2")).len(), 1);
    assert!(verify(d.path()).unwrap().is_ok());
}

#[test]
fn reopening_continues_seq_and_prev() {
    let d = TestDir::new();
    let head = log_of(&d, 5).head().unwrap();
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.head(), Some(head.clone()));
    log.record_execution(&exec("after")).unwrap();
    let ls = lines(&log.current_path());
    let v = value(ls.last().unwrap());
    assert_eq!(v["seq"], 6);
    assert_eq!(v["prev"], head.hash.as_str());
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok() && r.records == 6 && r.starts_at_genesis, "{r}");
}

#[test]
fn reopening_after_a_crash_mid_rotation_continues_from_the_rotated_file() {
    let d = TestDir::new();
    let head = log_of(&d, 4).head().unwrap();
    // Crash between renaming audit.jsonl to .1 and creating the new file.
    std::fs::rename(d.path().join(CURRENT), d.path().join("audit.jsonl.1")).unwrap();
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.head(), Some(head));
    log.record_execution(&exec("next")).unwrap();
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok(), "{r}");
    assert_eq!((r.files, r.records, r.last_seq), (2, 5, Some(5)));
}

#[test]
fn an_edited_byte_is_reported_at_its_line() {
    let d = TestDir::new();
    let path = log_of(&d, 10).current_path();
    let mut ls = lines(&path);
    ls[4] = ls[4].replace("runc", "runC");
    write_lines(&path, &ls);
    let r = verify(d.path()).unwrap();
    let b = r.broken.clone().unwrap();
    assert_eq!(
        (b.file.as_str(), b.line, b.seq),
        ("audit.jsonl", 5, Some(5))
    );
    assert!(b.reason.contains("record edited"), "{r}");
    assert_eq!(r.records, 4);
    assert_eq!(
        r.to_string(),
        format!(
            "BROKEN at audit.jsonl line 5 (seq 5): {}; 4 records before it are intact",
            b.reason
        )
    );
}

#[test]
fn an_edit_with_a_recomputed_hash_is_reported_at_the_next_line() {
    let d = TestDir::new();
    let path = log_of(&d, 10).current_path();
    let mut ls = lines(&path);
    let v = value(&ls[4]);
    let mut rec: ExecutionRecord = serde_json::from_value(v.clone()).unwrap();
    rec.success = false;
    let (line, _) = chain::encode(
        5,
        v["ts"].as_str().unwrap(),
        v["prev"].as_str().unwrap(),
        &RecordRef::Execution(&rec),
    )
    .unwrap();
    ls[4] = String::from_utf8(line).unwrap().trim_end().to_owned();
    write_lines(&path, &ls);
    let b = verify(d.path()).unwrap().broken.unwrap();
    assert_eq!((b.line, b.seq), (6, Some(6)));
    assert!(b.reason.starts_with("prev does not match"), "{}", b.reason);
}

#[test]
fn a_deleted_line_is_detected() {
    let d = TestDir::new();
    let path = log_of(&d, 10).current_path();
    let mut ls = lines(&path);
    ls.remove(3);
    write_lines(&path, &ls);
    let b = verify(d.path()).unwrap().broken.unwrap();
    assert_eq!((b.line, b.seq), (4, Some(5)));
    assert!(b.reason.contains("seq 5 follows seq 3"), "{}", b.reason);
    // Deleting the oldest records looks like rotation: the report says where the chain
    // starts, and an operator who never rotated sees that it is not seq 1.
    let d = TestDir::new();
    let path = log_of(&d, 3).current_path();
    let ls = lines(&path);
    write_lines(&path, &ls[1..]);
    let r = verify(d.path()).unwrap();
    assert!(
        r.is_ok() && !r.starts_at_genesis && r.first_seq == Some(2),
        "{r}"
    );
    assert!(r.to_string().contains("the chain starts at seq 2"), "{r}");
}

#[test]
fn swapped_lines_are_detected() {
    let d = TestDir::new();
    let path = log_of(&d, 10).current_path();
    let mut ls = lines(&path);
    ls.swap(6, 7);
    write_lines(&path, &ls);
    let b = verify(d.path()).unwrap().broken.unwrap();
    assert_eq!((b.line, b.seq), (7, Some(8)));
}

#[test]
fn a_swapped_rotated_file_is_detected() {
    let d = TestDir::new();
    let _log = executions(d.path(), small(1500, 5), 30);
    let (a, b) = (
        d.path().join("audit.jsonl.1"),
        d.path().join("audit.jsonl.2"),
    );
    let tmp = d.path().join("tmp");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let r = verify(d.path()).unwrap();
    assert!(!r.is_ok(), "{r}");
    // A whole rotated file removed from the middle is detected as well.
    std::fs::remove_file(&b).unwrap();
    assert!(!verify(d.path()).unwrap().is_ok());
}

#[test]
fn a_cut_short_last_line_is_detected_and_refused_on_open() {
    let d = TestDir::new();
    let path = log_of(&d, 3).current_path();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let b = verify(d.path()).unwrap().broken.unwrap();
    assert_eq!(b.line, 3);
    assert!(b.reason.contains("no newline"));
    let err = AuditLog::open(d.path(), AuditOptions::default()).unwrap_err();
    assert!(matches!(err, AuditError::DamagedTail { .. }), "{err}");
    assert!(err.to_string().contains("audit verify"), "{err}");
}

#[test]
fn an_edited_last_record_is_refused_on_open_until_moved_away() {
    let d = TestDir::new();
    let log = executions(d.path(), small(1500, 5), 12);
    drop(log);
    let path = d.path().join(CURRENT);
    let mut ls = lines(&path);
    let last = ls.len() - 1;
    ls[last] = ls[last].replace("python", "pythoN");
    write_lines(&path, &ls);
    let err = AuditLog::open(d.path(), AuditOptions::default()).unwrap_err();
    assert!(err.to_string().contains("record edited"), "{err}");
    // The operator moves the damaged file away: the log continues from audit.jsonl.1.
    let away = TestDir::new();
    std::fs::rename(&path, away.path().join("audit.jsonl.damaged")).unwrap();
    let older = lines(&d.path().join("audit.jsonl.1"));
    let last_kept = value(older.last().unwrap());
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    assert_eq!(log.head().map(|h| h.seq), last_kept["seq"].as_u64());
    log.record_execution(&exec("after")).unwrap();
    assert!(verify(d.path()).unwrap().is_ok());
    // The moved file can be checked on its own.
    let r = verify(&away.path().join("audit.jsonl.damaged")).unwrap();
    assert_eq!(r.files, 1);
    assert!(!r.is_ok());
}

#[test]
fn plaintext_is_absent_by_default() {
    let d = TestDir::new();
    let log = log_of(&d, 2);
    let text = std::fs::read_to_string(log.current_path()).unwrap();
    assert!(!text.contains("code of e0"), "{text}");
    assert!(!text.contains("SECRET-TOKEN-42"), "{text}");
    assert!(!text.contains("\"code\""));
    assert!(!text.contains("\"arguments\""));
    assert!(text.contains(&sha256_hex(b"print('code of e0')")));
    assert!(verify(d.path()).unwrap().is_ok());
}

#[test]
fn plaintext_is_written_when_opted_in() {
    let d = TestDir::new();
    let opts = AuditOptions {
        include_plaintext: true,
        ..Default::default()
    };
    let log = AuditLog::open(d.path(), opts).unwrap();
    log.record_execution(&exec("e0")).unwrap();
    log.record_tool_call(&call("e0", "mcp__a__b")).unwrap();
    let ls = lines(&log.current_path());
    assert_eq!(value(&ls[0])["code"], "print('code of e0')");
    assert_eq!(value(&ls[1])["arguments"]["token"], "SECRET-TOKEN-42");
    assert!(verify(d.path()).unwrap().is_ok());
}

#[test]
fn concurrent_writers_produce_one_valid_chain() {
    let d = TestDir::new();
    let log = Arc::new(AuditLog::open(d.path(), small(20_000, 100)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for i in 0..50 {
                    if i % 2 == 0 {
                        log.record_execution(&exec(&format!("t{t}-{i}"))).unwrap();
                    } else {
                        log.record_tool_call(&call(&format!("t{t}-{i}"), "mcp__x__y"))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok(), "{r}");
    assert_eq!((r.records, r.last_seq), (400, Some(400)));
    assert!(r.files > 1, "expected rotation under load");
}

#[test]
fn a_record_is_on_disk_when_record_returns() {
    let d = TestDir::new();
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    for i in 0..3 {
        log.record_execution(&exec(&format!("exec-{i}"))).unwrap();
        // Another reader, as after a crash of this process, sees it at once.
        let text = std::fs::read_to_string(d.path().join(CURRENT)).unwrap();
        assert!(text.contains(&format!("\"executionId\":\"exec-{i}\"")));
        let other = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
        assert_eq!(other.head(), log.head());
    }
}

#[test]
fn fsync_mode_writes_a_valid_chain() {
    let d = TestDir::new();
    let opts = AuditOptions {
        fsync: true,
        ..small(1000, 3)
    };
    let _log = executions(d.path(), opts, 10);
    assert!(verify(d.path()).unwrap().is_ok());
}

#[test]
fn directory_and_files_are_private() {
    let d = TestDir::new();
    let dir = d.path().join("state/code-executor-mcp");
    let _log = executions(&dir, small(500, 3), 5);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CURRENT)), 0o600);
    assert_eq!(mode(&dir.join("audit.jsonl.1")), 0o600);
    assert_eq!(mode(&dir.join(files::LOCK)), 0o600);
}

#[test]
fn a_head_kept_elsewhere_detects_truncation_and_rewriting() {
    let d = TestDir::new();
    let log = log_of(&d, 10);
    let head = log.head().unwrap();
    drop(log);
    let r = verify_with_head(d.path(), Some(&head)).unwrap();
    assert!(r.is_ok() && r.head_matched == Some(true), "{r}");
    assert!(r.to_string().ends_with("; matches the known head"));

    // Removing the two newest records leaves a valid, shorter chain ...
    let path = d.path().join(CURRENT);
    let ls = lines(&path);
    write_lines(&path, &ls[..8]);
    assert!(verify(d.path()).unwrap().is_ok());
    // ... which only the head exposes.
    let r = verify_with_head(d.path(), Some(&head)).unwrap();
    let b = r.broken.clone().unwrap();
    assert_eq!((b.line, b.seq), (9, Some(10)));
    assert!(b.reason.contains("the newest records were removed"), "{r}");

    // Rewriting from record 5 on with recomputed hashes: the chain holds, the head not.
    let mut prev = value(&ls[3])["hash"].as_str().unwrap().to_owned();
    let mut rewritten = ls[..4].to_vec();
    for (i, l) in ls.iter().enumerate().skip(4) {
        let v = value(l);
        let (line, hash) = if v["kind"] == "execution" {
            let mut rec: ExecutionRecord = serde_json::from_value(v.clone()).unwrap();
            rec.success = false;
            chain::encode(
                i as u64 + 1,
                "2020-01-01T00:00:00.000Z",
                &prev,
                &RecordRef::Execution(&rec),
            )
        } else {
            let rec: ToolCallRecord = serde_json::from_value(v.clone()).unwrap();
            chain::encode(
                i as u64 + 1,
                "2020-01-01T00:00:00.000Z",
                &prev,
                &RecordRef::ToolCall(&rec),
            )
        }
        .unwrap();
        rewritten.push(String::from_utf8(line).unwrap().trim_end().to_owned());
        prev = hash;
    }
    write_lines(&path, &rewritten);
    assert!(verify(d.path()).unwrap().is_ok());
    let r = verify_with_head(d.path(), Some(&head)).unwrap();
    assert_eq!(r.head_matched, Some(false));
    assert_eq!(r.broken.unwrap().line, 10);

    // A head older than the oldest record present cannot be checked.
    let old = Head {
        seq: 10,
        hash: head.hash.clone(),
    };
    let d2 = TestDir::new();
    let _log = executions(d2.path(), small(600, 2), 40);
    let r = verify_with_head(d2.path(), Some(&old)).unwrap();
    assert!(r.is_ok() && r.head_matched.is_none(), "{r}");
}

#[test]
fn verify_needs_a_log() {
    let d = TestDir::new();
    assert!(matches!(verify(d.path()), Err(AuditError::NoLog { .. })));
    assert!(matches!(
        verify(&d.path().join("missing")),
        Err(AuditError::Io { .. })
    ));
    // A fresh log with no records yet is fine.
    let _log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let r = verify(d.path()).unwrap();
    assert_eq!(r.to_string(), "ok: 0 records in 1 file");
}

#[test]
fn a_genesis_record_must_be_seq_one() {
    let d = TestDir::new();
    let rec = exec("x");
    let (line, _) = chain::encode(
        4,
        "2020-01-01T00:00:00.000Z",
        GENESIS,
        &RecordRef::Execution(&rec),
    )
    .unwrap();
    std::fs::write(d.path().join(CURRENT), line).unwrap();
    let b = verify(d.path()).unwrap().broken.unwrap();
    assert!(b.reason.contains("expected 1"), "{}", b.reason);
}

#[test]
fn head_parses_and_prints_as_seq_colon_hash() {
    let h = Head {
        seq: 42,
        hash: sha256_hex(b"x"),
    };
    assert_eq!(h.to_string().parse::<Head>(), Ok(h.clone()));
    for bad in [
        "",
        "42",
        "42:",
        ":abc",
        "0:".to_owned().as_str(),
        "x:0000000000000000000000000000000000000000000000000000000000000000",
        "1:000000000000000000000000000000000000000000000000000000000000000",
        "1:000000000000000000000000000000000000000000000000000000000000000G",
        "1:0000000000000000000000000000000000000000000000000000000000000000:",
        "0:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        assert!(bad.parse::<Head>().is_err(), "{bad}");
    }
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn default_dir_follows_xdg() {
    let d =
        |x: Option<&str>, h: Option<&str>| default_dir_from(x.map(Into::into), h.map(Into::into));
    assert_eq!(
        d(Some("/s"), Some("/h")),
        PathBuf::from("/s/code-executor-mcp")
    );
    assert_eq!(
        d(None, Some("/h")),
        PathBuf::from("/h/.local/state/code-executor-mcp")
    );
    assert_eq!(
        d(Some("rel"), Some("/h")),
        PathBuf::from("/h/.local/state/code-executor-mcp")
    );
    assert_eq!(
        d(Some(""), None),
        PathBuf::from("/var/lib/code-executor-mcp")
    );
    assert!(default_dir().is_absolute());
}

#[test]
fn timestamps_are_rfc3339_utc() {
    let at = |s: u64, ms: u64| {
        rfc3339_utc(UNIX_EPOCH + Duration::from_secs(s) + Duration::from_millis(ms))
    };
    assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
    assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
    assert_eq!(at(1_234_567_890, 123), "2009-02-13T23:31:30.123Z");
    assert_eq!(at(1_709_210_096, 999), "2024-02-29T12:34:56.999Z");
    assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    assert_eq!(
        rfc3339_utc(UNIX_EPOCH - Duration::from_secs(5)),
        "1970-01-01T00:00:00.000Z"
    );
}

#[test]
fn std_file_lock_is_per_open_file_description() {
    // What the writers rely on: `File::lock` is `flock`, so two `open`s of the lock file
    // exclude each other even in one process (two `AuditLog`s behave like two processes),
    // and closing another descriptor of the file does not drop the lock (as it would with
    // `fcntl` locks, which belong to the process).
    let d = TestDir::new();
    let path = d.path().join(files::LOCK);
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .unwrap()
    };
    let log = Arc::new(AuditLog::open(d.path(), AuditOptions::default()).unwrap());
    let (a, b) = (open(), open());
    a.lock().unwrap();
    assert!(matches!(
        b.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    drop(open());
    assert!(matches!(
        b.try_lock(),
        Err(std::fs::TryLockError::WouldBlock)
    ));
    // Whoever holds the lock keeps the writers of the directory waiting.
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || log.record_execution(&exec("waits")).unwrap())
    };
    std::thread::sleep(Duration::from_millis(100));
    assert!(!writer.is_finished(), "appended without the lock");
    assert!(lines(&log.current_path()).is_empty());
    // Closing the holder's file releases the lock, as a crash of its process would.
    drop(a);
    writer.join().unwrap();
    b.try_lock().unwrap();
    b.unlock().unwrap();
    assert_eq!(lines(&log.current_path()).len(), 1);
}

/// Records of the same length (ids of fixed width), each line within a byte or two of
/// the others as long as `seq` keeps its number of digits.
fn fixed(i: usize) -> ExecutionRecord {
    exec(&format!("e{i:04}"))
}

#[test]
fn writers_on_one_directory_follow_each_other_and_rotate_once() {
    let d = TestDir::new();
    let probe = TestDir::new();
    let len = {
        let log = AuditLog::open(probe.path(), AuditOptions::default()).unwrap();
        log.record_execution(&fixed(0)).unwrap();
        std::fs::metadata(log.current_path()).unwrap().len()
    };
    // Three records fit in a file, four do not.
    let opts = small(3 * (len + 1), 100);
    // Both open before anything is written: each one's idea of the head goes stale.
    let a = AuditLog::open(d.path(), opts.clone()).unwrap();
    let b = AuditLog::open(d.path(), opts).unwrap();
    for i in 0..30 {
        let w = if i % 3 == 0 { &b } else { &a };
        w.record_execution(&fixed(i)).unwrap();
        assert_eq!(w.head().unwrap().seq, i as u64 + 1);
    }
    assert_eq!(a.head().unwrap().seq, 30);
    // b last wrote seq 28: an older head, but still one `verify_with_head` accepts.
    let old = b.head().unwrap();
    assert_eq!(old.seq, 28);
    let r = verify_with_head(d.path(), Some(&old)).unwrap();
    assert_eq!(r.head_matched, Some(true), "{r}");
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok() && r.starts_at_genesis, "{r}");
    assert_eq!((r.records, r.last_seq, r.files), (30, Some(30), 10));
    // No writer rotated a file another had just rotated: every file is full.
    for (n, path) in files::rotated(d.path()).unwrap() {
        assert_eq!(lines(&path).len(), 3, "audit.jsonl.{n}");
    }
    assert_eq!(lines(&a.current_path()).len(), 3);
}

#[test]
fn a_writer_continues_after_another_writers_cut_short_rotation() {
    let d = TestDir::new();
    let a = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let b = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    a.record_execution(&exec("a1")).unwrap();
    b.record_execution(&exec("b1")).unwrap();
    // Another writer died between renaming audit.jsonl to .1 and creating the new file.
    std::fs::rename(d.path().join(CURRENT), d.path().join("audit.jsonl.1")).unwrap();
    a.record_execution(&exec("a2")).unwrap();
    b.record_execution(&exec("b2")).unwrap();
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok(), "{r}");
    assert_eq!((r.files, r.records, r.last_seq), (2, 4, Some(4)));
    // A damaged record written by another writer stops the others, as on open.
    let mut f = OpenOptions::new()
        .append(true)
        .open(d.path().join(CURRENT))
        .unwrap();
    f.write_all(b"{\"seq\":5,").unwrap();
    let err = a.record_execution(&exec("a3")).unwrap_err();
    assert!(matches!(err, AuditError::DamagedTail { .. }), "{err}");
    assert!(
        a.record_execution(&exec("a3")).is_err(),
        "retried on a stale head"
    );
    // a last wrote seq 3; the failed appends left its state alone.
    assert_eq!(a.head().unwrap().seq, 3);
}

#[test]
fn two_writers_with_threads_keep_one_chain_across_rotation() {
    let d = TestDir::new();
    // Two `AuditLog`s on one directory stand in for two server processes: each has its
    // own open file description of audit.lock, so they exclude each other as processes do
    // (see `std_file_lock_is_per_open_file_description`).
    let opts = small(4000, 1000);
    let logs = [
        Arc::new(AuditLog::open(d.path(), opts.clone()).unwrap()),
        Arc::new(AuditLog::open(d.path(), opts).unwrap()),
    ];
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let log = Arc::clone(&logs[t % 2]);
            std::thread::spawn(move || {
                for i in 0..60 {
                    if i % 3 == 0 {
                        log.record_tool_call(&call(&format!("t{t}-{i}"), "mcp__x__y"))
                            .unwrap();
                    } else {
                        log.record_execution(&exec(&format!("t{t}-{i}"))).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok() && r.starts_at_genesis, "{r}");
    assert_eq!((r.records, r.last_seq), (360, Some(360)));
    assert!(r.files > 10, "expected rotation under load: {r}");
    let newest = logs.iter().filter_map(|l| l.head()).max_by_key(|h| h.seq);
    assert_eq!(newest.map(|h| h.hash), r.head_hash);
    for (n, path) in files::rotated(d.path()).unwrap() {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 4000, "audit.jsonl.{n}: {size}");
    }
}

const CHILD_DIR_ENV: &str = "CEM_AUDIT_TEST_CHILD_DIR";
const CHILD_RECORDS: usize = 150;

/// The body of `separate_processes_keep_one_chain`'s child processes; does nothing when
/// run on its own.
#[test]
#[ignore = "run as a child process by separate_processes_keep_one_chain"]
fn child_process_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let log = AuditLog::open(Path::new(&dir), small(5000, 1000)).unwrap();
    for i in 0..CHILD_RECORDS {
        log.record_execution(&exec(&format!("p{}-{i}", std::process::id())))
            .unwrap();
    }
}

#[test]
fn separate_processes_keep_one_chain() {
    let d = TestDir::new();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "audit::tests::child_process_writer",
                    "--ignored",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR_ENV, d.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let log = AuditLog::open(d.path(), small(5000, 1000)).unwrap();
    for i in 0..CHILD_RECORDS {
        log.record_tool_call(&call(&format!("parent-{i}"), "mcp__x__y"))
            .unwrap();
    }
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let r = verify(d.path()).unwrap();
    assert!(r.is_ok() && r.starts_at_genesis, "{r}");
    let total = 3 * CHILD_RECORDS as u64;
    assert_eq!((r.records, r.last_seq), (total, Some(total)));
    assert!(r.files > 1, "expected rotation: {r}");
}

/// `cargo nextest run --lib audit::tests::cost --run-ignored only --no-capture`
#[test]
#[ignore = "timing, run by hand"]
fn cost_per_record() {
    let recs: Vec<ExecutionRecord> = (0..10_000).map(fixed).collect();
    let d = TestDir::new();
    let log = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let t = std::time::Instant::now();
    for r in &recs {
        log.record_execution(r).unwrap();
    }
    let alone = t.elapsed() / 10_000;
    // Two writers taking turns: every append re-reads the head from disk.
    let d = TestDir::new();
    let a = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let b = AuditLog::open(d.path(), AuditOptions::default()).unwrap();
    let t = std::time::Instant::now();
    for (i, r) in recs.iter().enumerate() {
        if i % 2 == 0 { &a } else { &b }
            .record_execution(r)
            .unwrap();
    }
    let turns = t.elapsed() / 10_000;
    assert!(verify(d.path()).unwrap().is_ok());
    eprintln!("per record: one writer {alone:?}, two writers taking turns {turns:?}");
}
