//! The hash chain of the audit log: how a record becomes one line and how a line is
//! checked on its own.
//!
//! A line is `{"seq":N,"ts":"…","prev":"<hex>","kind":"…",<record fields>,"hash":"<hex>"}`.
//! `hash` is the SHA-256 of the line up to (not including) `,"hash":…` with the closing
//! `}` appended, i.e. of the same object without its `hash` field. `prev` is the `hash` of
//! the previous record, or [`GENESIS`] for the first record ever written. `hash` is always
//! the last field, so a line can be checked byte for byte without re-serialising JSON.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::record::{RecordRef, KINDS};

/// `prev` of the first record of a log.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const HASH_KEY: &[u8] = b",\"hash\":\"";
/// `,"hash":"` + 64 hex + `"}`.
const SUFFIX_LEN: usize = HASH_KEY.len() + 64 + 2;

/// Serialises a record as one line (with its trailing newline) and returns it with its hash.
pub(crate) fn encode(
    seq: u64,
    ts: &str,
    prev: &str,
    record: &RecordRef<'_>,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let fields = serde_json::to_vec(record)?;
    // `fields` is a JSON object that has at least `kind`: `{"kind":…}`.
    let mut body = format!(r#"{{"seq":{seq},"ts":"{ts}","prev":"{prev}","#).into_bytes();
    body.extend_from_slice(fields.get(1..).unwrap_or_default());
    let hash = hex::encode(Sha256::digest(&body));
    // Replace the closing brace by `,"hash":"…"}`.
    body.pop();
    body.extend_from_slice(HASH_KEY);
    body.extend_from_slice(hash.as_bytes());
    body.extend_from_slice(b"\"}\n");
    Ok((body, hash))
}

/// What a line says about its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub seq: u64,
    pub prev: String,
    pub hash: String,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    #[allow(dead_code)]
    ts: String,
    prev: String,
    kind: String,
    hash: String,
}

fn is_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks one line (without its newline) on its own: it is a record of a known kind,
/// `hash` is its last field, and `hash` matches the rest of the line. Returns the reason
/// when it does not.
pub(crate) fn check_line(line: &[u8]) -> Result<Link, String> {
    let env: Envelope = serde_json::from_slice(line).map_err(|e| {
        format!("not a well-formed audit record ({e}); the line was edited or cut short")
    })?;
    if !KINDS.contains(&env.kind.as_str()) {
        return Err(format!("unknown record kind {:?}", env.kind));
    }
    if !is_hash(&env.prev) || !is_hash(&env.hash) {
        return Err("prev or hash is not 64 lowercase hex digits".to_owned());
    }
    let Some(split) = line.len().checked_sub(SUFFIX_LEN) else {
        return Err("hash is not the last field of the record".to_owned());
    };
    let (body, suffix) = line.split_at(split);
    let mut expected = HASH_KEY.to_vec();
    expected.extend_from_slice(env.hash.as_bytes());
    expected.extend_from_slice(b"\"}");
    if suffix != expected.as_slice() {
        return Err("hash is not the last field of the record".to_owned());
    }
    let mut hasher = Sha256::new();
    hasher.update(body);
    hasher.update(b"}");
    if hex::encode(hasher.finalize()) != env.hash {
        return Err("hash does not match the record's content (record edited)".to_owned());
    }
    Ok(Link {
        seq: env.seq,
        prev: env.prev,
        hash: env.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::ToolCallRecord;

    fn line(seq: u64, prev: &str) -> (Vec<u8>, String) {
        let rec = ToolCallRecord {
            tool: "mcp__a__b".into(),
            ..Default::default()
        };
        encode(
            seq,
            "2024-01-01T00:00:00.000Z",
            prev,
            &RecordRef::ToolCall(&rec),
        )
        .unwrap()
    }

    #[test]
    fn encoded_line_checks_and_links() {
        let (l, h) = line(7, GENESIS);
        assert_eq!(l.last(), Some(&b'\n'));
        assert_eq!(l.iter().filter(|&&b| b == b'\n').count(), 1);
        let link = check_line(&l[..l.len() - 1]).unwrap();
        assert_eq!(
            link,
            Link {
                seq: 7,
                prev: GENESIS.to_owned(),
                hash: h.clone()
            }
        );
        let v: serde_json::Value = serde_json::from_slice(&l).unwrap();
        assert_eq!(v["hash"], h);
        assert_eq!(v["kind"], "toolCall");
        assert!(String::from_utf8(l)
            .unwrap()
            .starts_with(r#"{"seq":7,"ts":"2024-01-01T00:00:00.000Z","prev":"0000"#));
    }

    #[test]
    fn any_changed_byte_is_caught() {
        let (l, _) = line(3, GENESIS);
        let l = &l[..l.len() - 1];
        for i in 0..l.len() {
            let mut bad = l.to_vec();
            bad[i] ^= 0x01;
            assert!(check_line(&bad).is_err(), "byte {i} changed unnoticed");
        }
    }

    #[test]
    fn rejects_moved_hash_unknown_kind_and_garbage() {
        let (l, _) = line(1, GENESIS);
        let s = std::str::from_utf8(&l[..l.len() - 1]).unwrap();
        let link = check_line(s.as_bytes()).unwrap();
        // Same fields with hash moved to the front.
        let body = &s[..s.len() - SUFFIX_LEN];
        let reordered = format!(r#"{{"hash":"{}",{}}}"#, link.hash, &body[1..]);
        assert!(serde_json::from_str::<serde_json::Value>(&reordered).is_ok());
        assert_eq!(
            check_line(reordered.as_bytes()).unwrap_err(),
            "hash is not the last field of the record"
        );
        let renamed = s.replace(r#""kind":"toolCall""#, r#""kind":"other""#);
        assert!(check_line(renamed.as_bytes())
            .unwrap_err()
            .contains("unknown record kind"));
        assert!(check_line(b"").is_err());
        assert!(check_line(b"{}").is_err());
        assert!(check_line(&l[..20]).is_err());
    }
}
