//! The wire format between the server and the runner inside a container (see
//! `docs/runner-protocol.md`): the framed request on stdin and the result markers that
//! close stdout and stderr.

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Prefix of the result marker on stdout; followed by `<nonce>:<json>\n`.
pub const RESULT_MARKER_PREFIX: &str = "\x1e\x1eCE-RESULT:";
/// Prefix of the end marker on stderr; followed by `<nonce>\n`.
pub const END_MARKER_PREFIX: &str = "\x1e\x1eCE-END:";
/// Largest result line accepted from a runner.
pub const MAX_RESULT_BYTES: usize = 256 * 1024;

/// Per-execution secrets handed to the runner.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// Tool-proxy bearer token (32 random bytes, hex).
    pub token: String,
    /// Frames the result markers (16 random bytes, hex).
    pub nonce: String,
}

impl Secrets {
    pub fn generate() -> Self {
        Self {
            token: random_hex(32),
            nonce: random_hex(16),
        }
    }

    /// Bytes that start the result line on stdout.
    pub fn result_marker(&self) -> Vec<u8> {
        format!("{RESULT_MARKER_PREFIX}{}:", self.nonce).into_bytes()
    }

    /// Bytes that close stderr.
    pub fn end_marker(&self) -> Vec<u8> {
        format!("{END_MARKER_PREFIX}{}\n", self.nonce).into_bytes()
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    hex::encode(buf)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest<'a> {
    code: &'a str,
    sha256: String,
    token: &'a str,
    nonce: &'a str,
    timeout_ms: u64,
}

/// Encodes what is written to the runner's stdin: length line, JSON, then raw stdin.
pub fn encode_request(code: &str, secrets: &Secrets, timeout_ms: u64, stdin: &[u8]) -> Vec<u8> {
    let request = WireRequest {
        code,
        sha256: hex::encode(Sha256::digest(code.as_bytes())),
        token: &secrets.token,
        nonce: &secrets.nonce,
        timeout_ms,
    };
    // Serialising a struct of strings and integers cannot fail.
    let json = serde_json::to_vec(&request).unwrap_or_default();
    let mut out = Vec::with_capacity(json.len() + stdin.len() + 24);
    out.extend_from_slice(format!("{}\n", json.len()).as_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(stdin);
    out
}

/// The error the runner reports for the user's code.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RunnerError {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    #[serde(default)]
    pub traceback: String,
}

/// The structured outcome the runner reports on stdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerResult {
    pub success: bool,
    pub exit_code: i64,
    #[serde(default)]
    pub error: Option<RunnerError>,
}

/// Parses the result line (without the marker prefix and trailing newline).
pub fn parse_result(line: &[u8]) -> Option<RunnerResult> {
    if line.len() > MAX_RESULT_BYTES {
        return None;
    }
    serde_json::from_slice(line).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_frames_length_json_then_stdin() {
        let s = Secrets {
            token: "t".repeat(64),
            nonce: "n".repeat(32),
        };
        let bytes = encode_request("print('é')", &s, 5000, b"in\x00put");
        let nl = bytes.iter().position(|b| *b == b'\n').unwrap();
        let len: usize = std::str::from_utf8(&bytes[..nl]).unwrap().parse().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes[nl + 1..nl + 1 + len]).unwrap();
        assert_eq!(json["code"], "print('é')");
        assert_eq!(json["timeoutMs"], 5000);
        assert_eq!(json["nonce"], "n".repeat(32));
        assert_eq!(
            json["sha256"],
            hex::encode(Sha256::digest("print('é')".as_bytes())),
            "hash of the UTF-8 bytes"
        );
        assert_eq!(&bytes[nl + 1 + len..], b"in\x00put");
    }

    #[test]
    fn secrets_are_random_and_sized() {
        let a = Secrets::generate();
        let b = Secrets::generate();
        assert_eq!(a.token.len(), 64);
        assert_eq!(a.nonce.len(), 32);
        assert_ne!(a.token, b.token);
        assert_ne!(a.nonce, b.nonce);
        assert!(a.token.bytes().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn result_parses_and_rejects_garbage() {
        let r = parse_result(br#"{"success":false,"exitCode":1,"error":{"type":"ValueError","message":"bad","traceback":"tb"}}"#).unwrap();
        assert!(!r.success);
        assert_eq!(r.error.unwrap().kind, "ValueError");
        assert!(
            parse_result(br#"{"success":true,"exitCode":0,"error":null}"#)
                .unwrap()
                .success
        );
        assert!(parse_result(b"not json").is_none());
        assert!(parse_result(br#"{"success":true}"#).is_none());
        let huge = format!(
            r#"{{"success":true,"exitCode":0,"x":"{}"}}"#,
            "a".repeat(MAX_RESULT_BYTES)
        );
        assert!(parse_result(huge.as_bytes()).is_none());
    }
}
