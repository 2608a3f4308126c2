//! The arguments of an execution call and their validation into an [`ExecutionRequest`](crate::request::ExecutionRequest).
//! Pure: every rule here is checked before anything touches Docker.

use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::{EgressSettings, Limits};
use crate::policy::mounts::{Grant, GrantError, GrantRoots};
use crate::policy::net::{NetPolicy, NetPolicyError};
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
    /// Absolute host paths mounted read-only at the same path; each must lie under a root
    /// the operator allows (`ALLOWED_PROJECTS`).
    #[serde(default)]
    pub read: Vec<String>,
    /// Absolute host paths mounted read-write at the same path (same rules as `read`).
    #[serde(default)]
    pub write: Vec<String>,
    /// Hosts (`example.com`, `*.example.com`, optional `:port`; without a port 80 and 443)
    /// the code may reach over HTTP(S) through the egress proxy (`HTTP_PROXY` is set).
    /// Each must be allowed by the operator's `egress.allowed_hosts`.
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
    /// The call's `allowedTools` as given (for the audit log).
    pub allowed_tools: Vec<String>,
    /// Host paths approved for mounting (canonical).
    pub grants: Vec<Grant>,
    /// Hosts the code may reach through the egress proxy; `None`: no egress at all.
    pub net: Option<NetPolicy>,
    /// `permissions` as given (for the audit log).
    pub permissions: Permissions,
    /// Who asked: the HTTP client name, or `stdio`.
    pub client: String,
}

impl ExecutionRequest {
    /// True when the execution needs a container made for it (mounts, egress), never a
    /// warm one.
    pub fn needs_own_container(&self) -> bool {
        !self.grants.is_empty() || self.net.is_some()
    }
}

/// The operator policy a call is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RequestPolicy<'a> {
    pub limits: &'a Limits,
    /// Tool patterns the operator permits (`None`: every tool).
    pub operator_tools: Option<&'a [String]>,
    /// Roots for path grants (`None`: grants are refused).
    pub grant_roots: Option<&'a GrantRoots>,
    pub egress: &'a EgressSettings,
}

impl<'a> RequestPolicy<'a> {
    /// Limits and tool policy only: no grants, no egress.
    pub fn basic(limits: &'a Limits, operator_tools: Option<&'a [String]>) -> Self {
        static NO_EGRESS: std::sync::LazyLock<EgressSettings> =
            std::sync::LazyLock::new(EgressSettings::default);
        Self {
            limits,
            operator_tools,
            grant_roots: None,
            egress: &NO_EGRESS,
        }
    }
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
    #[error("`permissions.read`/`permissions.write`: this server grants no host paths (the operator has set no allowed roots: ALLOWED_PROJECTS or grants.allowed_roots); remove them from the call")]
    GrantsDisabled,
    #[error("`permissions`: {0}")]
    Grant(GrantError),
    #[error("`permissions.net`: this server allows no network egress (the operator has set no egress.allowed_hosts); remove it from the call")]
    EgressDisabled,
    #[error("`permissions.net`: {0}")]
    Net(NetPolicyError),
    #[error("`allowedTools`: {0}")]
    AllowedTools(AllowlistError),
}

// The inner errors are part of the message (which names the field), not a `source`:
// printed as a chain they would repeat themselves.
impl From<GrantError> for RequestError {
    fn from(e: GrantError) -> Self {
        Self::Grant(e)
    }
}

impl From<NetPolicyError> for RequestError {
    fn from(e: NetPolicyError) -> Self {
        Self::Net(e)
    }
}

impl From<AllowlistError> for RequestError {
    fn from(e: AllowlistError) -> Self {
        Self::AllowedTools(e)
    }
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
        policy: &RequestPolicy<'_>,
        client: &str,
    ) -> Result<ExecutionRequest, RequestError> {
        let limits = policy.limits;
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
        let allowlist = Allowlist::new(&self.allowed_tools, policy.operator_tools)?;
        let permissions = self.permissions.unwrap_or_default();
        let grants = if permissions.read.is_empty() && permissions.write.is_empty() {
            Vec::new()
        } else {
            match policy.grant_roots {
                Some(roots) if roots.enabled() => {
                    roots.approve(&permissions.read, &permissions.write)?
                }
                _ => return Err(RequestError::GrantsDisabled),
            }
        };
        let net = if permissions.net.is_empty() {
            None
        } else if policy.egress.allowed_hosts.is_empty() {
            return Err(RequestError::EgressDisabled);
        } else {
            Some(NetPolicy::new(
                &permissions.net,
                &policy.egress.allowed_hosts,
                &policy.egress.allow_cidrs,
            )?)
        };
        Ok(ExecutionRequest {
            language,
            code: self.code,
            timeout: Duration::from_millis(timeout_ms),
            memory_mb,
            stdin,
            allowlist,
            allowed_tools: self.allowed_tools,
            grants,
            net,
            permissions,
            client: client.to_owned(),
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

    /// `a` validated under the default limits with every tool allowed.
    fn checked(a: ExecuteArgs, language: Language) -> Result<ExecutionRequest, RequestError> {
        a.validate(language, &RequestPolicy::basic(&limits(), None), "test")
    }

    #[test]
    fn defaults_come_from_the_operator_limits() {
        let r = checked(args("print(1)"), Language::Python).unwrap();
        assert_eq!(r.timeout, Duration::from_millis(30_000));
        assert_eq!(r.memory_mb, 256);
        assert!(r.stdin.is_empty());
        assert_eq!(r.language, Language::Python);
    }

    #[test]
    fn empty_and_whitespace_code_is_refused() {
        for code in ["", "   \n\t"] {
            assert_eq!(
                checked(args(code), Language::Python).unwrap_err(),
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
            .validate(Language::Python, &RequestPolicy::basic(&l, None), "test")
            .unwrap_err();
        assert_eq!(err, RequestError::CodeTooLarge { size: 12, max: 10 });
        assert!(err.to_string().contains("`code`"));
    }

    #[test]
    fn nul_in_code_is_refused() {
        let err = checked(args("print(1)\0"), Language::Python).unwrap_err();
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
            assert_eq!(checked(a, Language::TypeScript).is_ok(), ok, "timeout {t}");
        }
    }

    #[test]
    fn memory_may_only_be_lowered() {
        let mut a = args("1");
        a.memory_mb = Some(64);
        assert_eq!(checked(a, Language::Python).unwrap().memory_mb, 64);
        let mut a = args("1");
        a.memory_mb = Some(257);
        let err = checked(a, Language::Python).unwrap_err();
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
        assert!(checked(a, Language::Python).is_err());
    }

    #[test]
    fn stdin_is_passed_and_capped() {
        let mut a = args("1");
        a.stdin = Some("line one\nline two".into());
        assert_eq!(
            checked(a, Language::Python).unwrap().stdin,
            b"line one\nline two"
        );
        let mut a = args("1");
        a.stdin = Some("x".repeat(2000));
        let l = Limits {
            max_stdin_bytes: 1000,
            ..limits()
        };
        assert!(matches!(
            a.validate(Language::Python, &RequestPolicy::basic(&l, None), "test"),
            Err(RequestError::StdinTooLarge { .. })
        ));
    }

    #[test]
    fn allowed_tools_are_checked_and_intersected_with_the_operator_policy() {
        let mut a = args("1");
        a.allowed_tools = vec!["mcp__time__*".into(), "mcp__git__git_log".into()];
        let r = checked(a.clone(), Language::Python).unwrap();
        assert!(r.allowlist.allows("mcp__time__get_current_time"));
        assert!(r.allowlist.allows("mcp__git__git_log"));
        assert!(!r.allowlist.allows("mcp__git__git_status"));
        let operator = vec!["mcp__time__*".to_owned()];
        let r = a
            .validate(
                Language::Python,
                &RequestPolicy::basic(&limits(), Some(operator.as_slice())),
                "test",
            )
            .unwrap();
        assert!(
            !r.allowlist.allows("mcp__git__git_log"),
            "operator policy wins"
        );
        let mut a = args("1");
        a.allowed_tools = vec!["mcp__git*".into()];
        let err = checked(a, Language::Python).unwrap_err().to_string();
        assert!(
            err.contains("allowedTools") && err.contains("mcp__git*"),
            "{err}"
        );
    }

    #[test]
    fn grants_and_egress_are_refused_when_the_operator_allows_none() {
        let mut a = args("1");
        a.permissions = Some(Permissions {
            net: vec!["example.com".into()],
            ..Default::default()
        });
        assert!(checked(a, Language::Python)
            .unwrap_err()
            .to_string()
            .contains("permissions.net"));
        let mut a = args("1");
        a.permissions = Some(Permissions {
            read: vec!["/etc".into()],
            ..Default::default()
        });
        assert!(checked(a, Language::Python).is_err());
        let mut a = args("1");
        a.permissions = Some(Permissions::default());
        assert!(
            checked(a, Language::Python).is_ok(),
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
