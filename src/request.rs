//! The arguments of an execution call and their validation into an [`ExecutionRequest`](crate::request::ExecutionRequest).
//! Pure: every rule here is checked before anything touches Docker.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::Limits;
use crate::policy::{Allowlist, AllowlistError};

/// Smallest memory a call may ask for; below this neither interpreter starts.
pub const MIN_MEMORY_MB: u64 = 32;
/// Smallest accepted timeout.
pub const MIN_TIMEOUT_MS: u64 = 1_000;

/// The language of an execution, which picks the image and runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Python,
    TypeScript,
}

impl Language {
    /// Short lower-case name, as used in labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Python => "python",
            Language::TypeScript => "typescript",
        }
    }

    /// Picks the language of a script file from its extension.
    pub fn from_path(path: &std::path::Path) -> Result<Self, RequestError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Language::Python),
            Some("ts" | "mts" | "js" | "mjs") => Ok(Language::TypeScript),
            other => Err(RequestError::UnknownLanguage {
                given: other.unwrap_or("").to_owned(),
            }),
        }
    }
}

/// Filesystem and network grants asked for by a call.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Permissions {
    /// Host paths to mount read-only (not available yet).
    #[serde(default)]
    pub read: Vec<String>,
    /// Host paths to mount read-write (not available yet).
    #[serde(default)]
    pub write: Vec<String>,
    /// Hosts (`host[:port]`) the code may reach over HTTP(S) (not available yet).
    #[serde(default)]
    pub net: Vec<String>,
}

/// Arguments of `executePython` and `executeTypescript`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteArgs {
    /// The program to run. Top-level `await` works.
    pub code: String,
    /// MCP tools the code may call, exact names or globs like `mcp__git__*` (default none).
    #[serde(default)]
    pub allowed_tools: Vec<String>,
    /// Wall-clock limit in milliseconds (1000..=300000, default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Filesystem and network grants.
    #[serde(default)]
    pub permissions: Option<Permissions>,
    /// Memory limit in MiB; may only lower the operator's cap.
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// Text given to the code on its standard input.
    #[serde(default)]
    pub stdin: Option<String>,
}

/// A validated execution, ready for the sandbox.
#[derive(Debug, Clone)]
pub struct ExecutionRequest {
    pub language: Language,
    pub code: String,
    pub timeout: Duration,
    pub memory_mb: u64,
    pub stdin: Vec<u8>,
    /// The call's `allowedTools` intersected with the operator's policy.
    pub allowlist: Allowlist,
}

/// Why a call's arguments were refused. Each message names the field and what to do.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RequestError {
    #[error("`code` is empty: pass the program to run")]
    EmptyCode,
    #[error("`code` is {size} bytes, over the limit of {max} bytes: send a smaller program (the operator sets limits.max_code_bytes)")]
    CodeTooLarge { size: usize, max: usize },
    #[error("`code` contains a NUL byte: send text source code")]
    CodeHasNul,
    #[error("`stdin` is {size} bytes, over the limit of {max} bytes")]
    StdinTooLarge { size: usize, max: usize },
    #[error("`timeoutMs` = {given} is out of range: use {min}..={max} milliseconds")]
    TimeoutOutOfRange { given: u64, min: u64, max: u64 },
    #[error(
        "`memoryMb` = {given} is out of range: use {min}..={max} MiB (the operator's cap is {max})"
    )]
    MemoryOutOfRange { given: u64, min: u64, max: u64 },
    #[error(
        "unknown language for extension {given:?}: use .py for Python or .ts/.js for TypeScript"
    )]
    UnknownLanguage { given: String },
    #[error("`{field}` is not available yet: {what} arrives with a later release; remove `{field}` from the call")]
    NotAvailableYet {
        field: &'static str,
        what: &'static str,
    },
    #[error("`allowedTools`: {0}")]
    AllowedTools(#[from] AllowlistError),
}

impl ExecuteArgs {
    /// Arguments holding just the code, as the `run` command builds them.
    pub fn with_code(code: String) -> Self {
        Self {
            code,
            allowed_tools: Vec::new(),
            timeout_ms: None,
            permissions: None,
            memory_mb: None,
            stdin: None,
        }
    }

    /// Checks every field against the operator's limits and tool policy (`None`: every tool).
    pub fn validate(
        self,
        language: Language,
        limits: &Limits,
        operator_tools: Option<&[String]>,
    ) -> Result<ExecutionRequest, RequestError> {
        if self.code.trim().is_empty() {
            return Err(RequestError::EmptyCode);
        }
        if self.code.len() > limits.max_code_bytes {
            return Err(RequestError::CodeTooLarge {
                size: self.code.len(),
                max: limits.max_code_bytes,
            });
        }
        if self.code.contains('\0') {
            return Err(RequestError::CodeHasNul);
        }
        let stdin = self.stdin.unwrap_or_default().into_bytes();
        if stdin.len() > limits.max_stdin_bytes {
            return Err(RequestError::StdinTooLarge {
                size: stdin.len(),
                max: limits.max_stdin_bytes,
            });
        }
        let timeout_ms = self.timeout_ms.unwrap_or(limits.default_timeout_ms);
        if !(MIN_TIMEOUT_MS..=limits.max_timeout_ms).contains(&timeout_ms) {
            return Err(RequestError::TimeoutOutOfRange {
                given: timeout_ms,
                min: MIN_TIMEOUT_MS,
                max: limits.max_timeout_ms,
            });
        }
        let memory_mb = self.memory_mb.unwrap_or(limits.memory_mb);
        if !(MIN_MEMORY_MB..=limits.memory_mb).contains(&memory_mb) {
            return Err(RequestError::MemoryOutOfRange {
                given: memory_mb,
                min: MIN_MEMORY_MB,
                max: limits.memory_mb,
            });
        }
        let allowlist = Allowlist::new(&self.allowed_tools, operator_tools)?;
        if let Some(p) = &self.permissions {
            if !p.read.is_empty() || !p.write.is_empty() {
                return Err(RequestError::NotAvailableYet {
                    field: "permissions.read/write",
                    what: "granting host paths",
                });
            }
            if !p.net.is_empty() {
                return Err(RequestError::NotAvailableYet {
                    field: "permissions.net",
                    what: "network egress to allowed hosts",
                });
            }
        }
        Ok(ExecutionRequest {
            language,
            code: self.code,
            timeout: Duration::from_millis(timeout_ms),
            memory_mb,
            stdin,
            allowlist,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(code: &str) -> ExecuteArgs {
        ExecuteArgs::with_code(code.to_owned())
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn defaults_come_from_the_operator_limits() {
        let r = args("print(1)")
            .validate(Language::Python, &limits(), None)
            .unwrap();
        assert_eq!(r.timeout, Duration::from_millis(30_000));
        assert_eq!(r.memory_mb, 256);
        assert!(r.stdin.is_empty());
        assert_eq!(r.language, Language::Python);
    }

    #[test]
    fn empty_and_whitespace_code_is_refused() {
        for code in ["", "   \n\t"] {
            assert_eq!(
                args(code)
                    .validate(Language::Python, &limits(), None)
                    .unwrap_err(),
                RequestError::EmptyCode
            );
        }
    }

    #[test]
    fn oversized_code_is_refused_with_sizes() {
        let l = Limits {
            max_code_bytes: 10,
            ..limits()
        };
        let err = args("print(12345)")
            .validate(Language::Python, &l, None)
            .unwrap_err();
        assert_eq!(err, RequestError::CodeTooLarge { size: 12, max: 10 });
        assert!(err.to_string().contains("`code`"));
    }

    #[test]
    fn nul_in_code_is_refused() {
        let err = args("print(1)\0")
            .validate(Language::Python, &limits(), None)
            .unwrap_err();
        assert_eq!(err, RequestError::CodeHasNul);
    }

    #[test]
    fn timeout_bounds_are_inclusive_and_checked() {
        for (t, ok) in [
            (999, false),
            (1000, true),
            (300_000, true),
            (300_001, false),
            (0, false),
            (u64::MAX, false),
        ] {
            let mut a = args("1");
            a.timeout_ms = Some(t);
            assert_eq!(
                a.validate(Language::TypeScript, &limits(), None).is_ok(),
                ok,
                "timeout {t}"
            );
        }
    }

    #[test]
    fn memory_may_only_be_lowered() {
        let mut a = args("1");
        a.memory_mb = Some(64);
        assert_eq!(
            a.validate(Language::Python, &limits(), None)
                .unwrap()
                .memory_mb,
            64
        );
        let mut a = args("1");
        a.memory_mb = Some(257);
        let err = a.validate(Language::Python, &limits(), None).unwrap_err();
        assert!(matches!(
            err,
            RequestError::MemoryOutOfRange {
                given: 257,
                max: 256,
                ..
            }
        ));
        assert!(err.to_string().contains("memoryMb"));
        let mut a = args("1");
        a.memory_mb = Some(1);
        assert!(a.validate(Language::Python, &limits(), None).is_err());
    }

    #[test]
    fn stdin_is_passed_and_capped() {
        let mut a = args("1");
        a.stdin = Some("line one\nline two".into());
        assert_eq!(
            a.validate(Language::Python, &limits(), None).unwrap().stdin,
            b"line one\nline two"
        );
        let mut a = args("1");
        a.stdin = Some("x".repeat(2000));
        let l = Limits {
            max_stdin_bytes: 1000,
            ..limits()
        };
        assert!(matches!(
            a.validate(Language::Python, &l, None),
            Err(RequestError::StdinTooLarge { .. })
        ));
    }

    #[test]
    fn allowed_tools_are_checked_and_intersected_with_the_operator_policy() {
        let mut a = args("1");
        a.allowed_tools = vec!["mcp__time__*".into(), "mcp__git__git_log".into()];
        let r = a
            .clone()
            .validate(Language::Python, &limits(), None)
            .unwrap();
        assert!(r.allowlist.allows("mcp__time__get_current_time"));
        assert!(r.allowlist.allows("mcp__git__git_log"));
        assert!(!r.allowlist.allows("mcp__git__git_status"));
        let operator = vec!["mcp__time__*".to_owned()];
        let r = a
            .validate(Language::Python, &limits(), Some(&operator))
            .unwrap();
        assert!(
            !r.allowlist.allows("mcp__git__git_log"),
            "operator policy wins"
        );
        let mut a = args("1");
        a.allowed_tools = vec!["mcp__git*".into()];
        let err = a
            .validate(Language::Python, &limits(), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("allowedTools") && err.contains("mcp__git*"),
            "{err}"
        );
    }

    #[test]
    fn features_of_later_issues_are_refused_not_ignored() {
        let mut a = args("1");
        a.permissions = Some(Permissions {
            net: vec!["example.com".into()],
            ..Default::default()
        });
        assert!(a
            .validate(Language::Python, &limits(), None)
            .unwrap_err()
            .to_string()
            .contains("permissions.net"));
        let mut a = args("1");
        a.permissions = Some(Permissions {
            read: vec!["/etc".into()],
            ..Default::default()
        });
        assert!(a.validate(Language::Python, &limits(), None).is_err());
        let mut a = args("1");
        a.permissions = Some(Permissions::default());
        assert!(
            a.validate(Language::Python, &limits(), None).is_ok(),
            "empty permissions are fine"
        );
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err =
            serde_json::from_value::<ExecuteArgs>(serde_json::json!({"code": "1", "timeout": 5}))
                .unwrap_err()
                .to_string();
        assert!(err.contains("timeout"), "{err}");
        let err = serde_json::from_value::<ExecuteArgs>(serde_json::json!({"timeoutMs": 5}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("code"), "{err}");
    }

    #[test]
    fn language_from_extension() {
        use std::path::Path;
        assert_eq!(
            Language::from_path(Path::new("a.py")).unwrap(),
            Language::Python
        );
        assert_eq!(
            Language::from_path(Path::new("dir/a.ts")).unwrap(),
            Language::TypeScript
        );
        assert!(matches!(
            Language::from_path(Path::new("a.rb")),
            Err(RequestError::UnknownLanguage { .. })
        ));
        assert!(Language::from_path(Path::new("Makefile")).is_err());
    }
}
