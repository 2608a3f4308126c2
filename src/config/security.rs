//! Operator settings of the security layers: container runtime and AppArmor, filesystem
//! grant roots, network egress, per-client rate limits and the audit log. Data only; the
//! modules that enforce them live in `sandbox`, `policy`, `egress` and `audit`.

use std::path::PathBuf;

use serde::Deserialize;

/// How the sandbox containers are isolated beyond the container spec.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Container runtime: `auto` (runsc when the engine has it registered, else runc),
    /// `runc`, `runsc`, or any runtime name registered with the engine. A named runtime
    /// the engine lacks is an error, never a fallback.
    pub runtime: String,
    /// AppArmor: `auto` (apply when the kernel has it and the profile is loaded),
    /// `required` (refuse to start without it) or `off`.
    pub apparmor: AppArmorMode,
    /// Name of the AppArmor profile (see `apparmor/code-executor-sandbox`).
    pub apparmor_profile: String,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            runtime: "auto".to_owned(),
            apparmor: AppArmorMode::Auto,
            apparmor_profile: "code-executor-sandbox".to_owned(),
        }
    }
}

/// Whether the AppArmor profile is applied, and whether its absence is fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppArmorMode {
    Auto,
    Required,
    Off,
}

impl std::str::FromStr for AppArmorMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "required" => Ok(Self::Required),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not one of auto, required, off")),
        }
    }
}

/// Host directories under which `permissions.read` / `permissions.write` may grant paths.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrantSettings {
    /// Allowed roots (also `ALLOWED_PROJECTS`, colon-separated). Empty: no grants at all.
    pub allowed_roots: Vec<PathBuf>,
}

/// Network egress through the per-execution egress proxy.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressSettings {
    /// Hosts a call's `permissions.net` may name: `example.com`, `*.example.com`, with an
    /// optional `:port` (without one: ports 80 and 443). Empty: no egress at all.
    pub allowed_hosts: Vec<String>,
    /// Operator-only exception to the special-range refusal (tests use a loopback CIDR).
    #[serde(alias = "allowCidrs")]
    pub allow_cidrs: Vec<String>,
    /// Bytes one execution may move through the egress proxy, both directions together.
    pub max_bytes: u64,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_cidrs: Vec::new(),
            max_bytes: 50 * 1024 * 1024,
        }
    }
}

/// Per-client limits on executions.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// Executions one client may start per minute (sustained).
    pub executions_per_minute: u32,
    /// Executions one client may start at once above the sustained rate.
    pub execution_burst: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            executions_per_minute: 60,
            execution_burst: 10,
        }
    }
}

/// The tamper-evident audit log.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSettings {
    /// Write the audit log (default on).
    pub enabled: bool,
    /// Directory of `audit.jsonl` (default `$XDG_STATE_HOME/code-executor-mcp/`).
    pub dir: Option<PathBuf>,
    /// Size at which the file is rotated.
    pub max_file_bytes: u64,
    /// Rotated files kept.
    pub max_files: usize,
    /// Also record the plaintext code and tool arguments (off: only their SHA-256).
    pub include_plaintext: bool,
    /// fsync each record (survives power loss, not only a crash of the server).
    pub fsync: bool,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            max_file_bytes: 10 * 1024 * 1024,
            max_files: 5,
            include_plaintext: false,
            fsync: false,
        }
    }
}

/// Splits a colon-separated path list (`ALLOWED_PROJECTS`).
pub fn split_paths(v: &str) -> Vec<PathBuf> {
    v.split(':')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apparmor_mode_parses_only_known_words() {
        assert_eq!("auto".parse::<AppArmorMode>(), Ok(AppArmorMode::Auto));
        assert_eq!(
            " required ".parse::<AppArmorMode>(),
            Ok(AppArmorMode::Required)
        );
        assert!("enforce".parse::<AppArmorMode>().is_err());
        assert!("".parse::<AppArmorMode>().is_err());
    }

    #[test]
    fn path_lists_split_on_colons_and_drop_empties() {
        assert_eq!(
            split_paths("/a/b::/c "),
            [PathBuf::from("/a/b"), PathBuf::from("/c")]
        );
        assert!(split_paths("").is_empty());
    }
}
