//! API keys of the HTTP transport: parsed from a file or the environment (one
//! `client-name:key` per line), checked in constant time. The client name is what rate
//! limits, metrics and logs see; the key itself is kept only as a SHA-256 digest.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest key accepted: guessing must stay hopeless.
pub const MIN_KEY_LEN: usize = 16;

/// Why a key list was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiKeyError {
    #[error("API keys, line {line}: expected `client-name:key`")]
    Malformed { line: usize },
    #[error(
        "API keys, line {line}: client name {name:?} must be 1-64 characters of [A-Za-z0-9_.-]"
    )]
    BadName { line: usize, name: String },
    #[error("API keys, line {line}: the key of {name:?} is shorter than {MIN_KEY_LEN} characters")]
    ShortKey { line: usize, name: String },
    #[error("API keys, line {line}: client name {name:?} appears twice")]
    DuplicateName { line: usize, name: String },
}

/// The configured keys.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ApiKeys").field("clients", &names).finish()
    }
}

impl ApiKeys {
    /// Parses `client-name:key` lines; blank lines and `#` comments are skipped.
    pub fn parse(text: &str) -> Result<Self, ApiKeyError> {
        let mut entries: Vec<(String, [u8; 32])> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (name, key) = trimmed
                .split_once(':')
                .ok_or(ApiKeyError::Malformed { line })?;
            let (name, key) = (name.trim(), key.trim());
            let name_ok = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !name_ok {
                return Err(ApiKeyError::BadName {
                    line,
                    name: name.to_owned(),
                });
            }
            if key.len() < MIN_KEY_LEN {
                return Err(ApiKeyError::ShortKey {
                    line,
                    name: name.to_owned(),
                });
            }
            if entries.iter().any(|(n, _)| n == name) {
                return Err(ApiKeyError::DuplicateName {
                    line,
                    name: name.to_owned(),
                });
            }
            entries.push((name.to_owned(), digest(key.as_bytes())));
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The client whose key is in `authorization` (`Bearer <key>`), if any. Every
    /// configured key is compared, in constant time, whatever matches.
    pub fn client_for(&self, authorization: Option<&[u8]>) -> Option<&str> {
        let given = authorization?.strip_prefix(b"Bearer ")?;
        let given = digest(given);
        let mut found = None;
        for (name, key) in &self.entries {
            if bool::from(key.ct_eq(&given)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &str =
        "# team keys\nalice:0123456789abcdef0123\n\n  bob : fedcba9876543210fedc  \n";

    #[test]
    fn parses_names_and_keys() {
        let k = ApiKeys::parse(KEYS).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(
            k.client_for(Some(b"Bearer 0123456789abcdef0123")),
            Some("alice")
        );
        assert_eq!(
            k.client_for(Some(b"Bearer fedcba9876543210fedc")),
            Some("bob")
        );
    }

    #[test]
    fn hostile_headers_match_nobody() {
        let k = ApiKeys::parse(KEYS).unwrap();
        for bad in [
            &b"Bearer 0123456789abcdef012"[..],
            b"Bearer 0123456789abcdef01234",
            b"bearer 0123456789abcdef0123",
            b"Bearer  0123456789abcdef0123",
            b"Bearer 0123456789abcdef0123 ",
            b"Basic 0123456789abcdef0123",
            b"0123456789abcdef0123",
            b"Bearer alice:0123456789abcdef0123",
            b"Bearer ",
            b"",
        ] {
            assert_eq!(
                k.client_for(Some(bad)),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(k.client_for(None), None);
        assert_eq!(
            ApiKeys::default().client_for(Some(b"Bearer anything-at-all-long")),
            None
        );
    }

    #[test]
    fn bad_lists_are_refused_with_the_line() {
        assert_eq!(
            ApiKeys::parse("nokeyhere").unwrap_err(),
            ApiKeyError::Malformed { line: 1 }
        );
        assert!(matches!(
            ApiKeys::parse("a:short"),
            Err(ApiKeyError::ShortKey { line: 1, .. })
        ));
        assert!(matches!(
            ApiKeys::parse("bad name:0123456789abcdef"),
            Err(ApiKeyError::BadName { .. })
        ));
        assert!(matches!(
            ApiKeys::parse(":0123456789abcdef"),
            Err(ApiKeyError::BadName { .. })
        ));
        let dup = "a:0123456789abcdef\na:fedcba9876543210";
        assert_eq!(
            ApiKeys::parse(dup).unwrap_err(),
            ApiKeyError::DuplicateName {
                line: 2,
                name: "a".into()
            }
        );
        assert!(ApiKeys::parse("").unwrap().is_empty());
    }

    #[test]
    fn debug_never_shows_keys() {
        let k = ApiKeys::parse(KEYS).unwrap();
        let shown = format!("{k:?}");
        assert!(shown.contains("alice") && !shown.contains("0123456789"));
    }
}
