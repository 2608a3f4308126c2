//! Operator settings: defaults, the `code-executor.toml` file and `CODE_EXECUTOR_*`
//! environment overrides. Everything here is data; nothing talks to Docker.

use std::path::{Path, PathBuf};

use serde::Deserialize;

mod security;
pub use security::{
    split_paths, AppArmorMode, AuditSettings, EgressSettings, GrantSettings, RateLimits,
    SandboxSettings,
};

/// The project version, used to tag images.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors while reading settings.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read settings file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("settings file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?} is not valid: {reason}")]
    Env {
        name: String,
        value: String,
        reason: String,
    },
    #[error("setting {field} = {value} is out of range: {reason}")]
    Range {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// Resource limits applied to every sandbox container; per-call values may only lower them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory cap (and default) in MiB; swap is set equal so the container cannot swap.
    pub memory_mb: u64,
    /// CPU share, in CPUs.
    pub cpus: f64,
    /// Maximum number of processes and threads in the container (pids cgroup).
    pub pids: i64,
    /// Size of each tmpfs (`/tmp`, `/workspace`) in MiB.
    pub tmpfs_mb: u64,
    /// Bytes kept of each output stream (stdout, stderr).
    pub output_cap_bytes: usize,
    /// Largest accepted `code`, in bytes.
    pub max_code_bytes: usize,
    /// Largest accepted `stdin`, in bytes.
    pub max_stdin_bytes: usize,
    /// Timeout when the call gives none, in ms.
    pub default_timeout_ms: u64,
    /// Largest timeout a call may ask for, in ms.
    pub max_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mb: 256,
            cpus: 1.0,
            pids: 64,
            tmpfs_mb: 64,
            output_cap_bytes: 1024 * 1024,
            max_code_bytes: 1024 * 1024,
            max_stdin_bytes: 1024 * 1024,
            default_timeout_ms: 30_000,
            max_timeout_ms: 300_000,
        }
    }
}

/// All operator settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub limits: Limits,
    /// Executions running at once; further calls wait in a queue.
    pub max_concurrent: usize,
    /// Image that runs Python code.
    pub python_image: String,
    /// Image that runs TypeScript code.
    pub deno_image: String,
    /// Labelled containers older than this are removed as orphans at start, whoever owns them.
    pub orphan_age_secs: u64,
    /// Directory holding one socket directory per execution (bind-mounted into its container).
    pub socket_base: PathBuf,
    /// Operator policy for tool calls from the sandbox.
    pub tools: ToolPolicy,
    /// The Streamable HTTP transport.
    pub http: HttpSettings,
    /// On shutdown, how long running executions may finish before they are killed.
    pub shutdown_grace_secs: u64,
    /// Warm containers kept ready per language (0 turns the pool off).
    pub pool_size: usize,
    /// Warm containers older than this are replaced.
    pub pool_max_age_secs: u64,
    /// Container runtime and AppArmor.
    pub sandbox: SandboxSettings,
    /// Roots under which host paths may be granted.
    pub grants: GrantSettings,
    /// Network egress policy.
    pub egress: EgressSettings,
    /// Per-client rate limits.
    pub rate_limits: RateLimits,
    /// The audit log.
    pub audit: AuditSettings,
}

/// Settings of `serve --http`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// File of `client-name:key` lines; without keys the server binds loopback only.
    pub api_keys_file: Option<PathBuf>,
    /// `Host` header values accepted (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted; empty leaves `Origin` unchecked.
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            api_keys_file: None,
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: Vec::new(),
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What the operator lets sandboxed code call.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolPolicy {
    /// Tool patterns the operator permits (`mcp__git__*`); absent means every tool. A call's
    /// `allowedTools` is intersected with this.
    pub allowed: Option<Vec<String>>,
    /// Tool calls one execution may make.
    pub max_calls_per_execution: u64,
    /// Sustained tool calls per second per execution (the burst is the same number).
    pub calls_per_second: u32,
    /// Refuse tool calls whose string arguments point at loopback, private, link-local or
    /// metadata addresses (SSRF through tools that fetch URLs).
    pub ssrf_guard: bool,
    /// Downstream server names the SSRF guard does not apply to.
    pub ssrf_guard_exempt: Vec<String>,
}

impl Default for ToolPolicy {
    fn default() -> Self {
        Self {
            allowed: None,
            max_calls_per_execution: 1000,
            calls_per_second: 50,
            ssrf_guard: true,
            ssrf_guard_exempt: Vec::new(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            max_concurrent: 8,
            python_image: format!("code-executor/python:{VERSION}"),
            deno_image: format!("code-executor/deno:{VERSION}"),
            orphan_age_secs: 15 * 60,
            socket_base: PathBuf::from("/run/code-executor"),
            tools: ToolPolicy::default(),
            http: HttpSettings::default(),
            shutdown_grace_secs: 30,
            pool_size: 2,
            pool_max_age_secs: 300,
            sandbox: SandboxSettings::default(),
            grants: GrantSettings::default(),
            egress: EgressSettings::default(),
            rate_limits: RateLimits::default(),
            audit: AuditSettings::default(),
        }
    }
}

impl Settings {
    /// Loads settings: defaults, then the first settings file found, then the environment.
    pub fn load() -> Result<Self, ConfigError> {
        let file = settings_file_candidates().into_iter().find(|p| p.is_file());
        let mut settings = match file {
            Some(path) => Self::from_file(&path)?,
            None => Self::default(),
        };
        settings.apply_env(|name| std::env::var(name).ok())?;
        settings.validate()?;
        Ok(settings)
    }

    /// Reads one TOML settings file (missing fields keep their defaults).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Applies `CODE_EXECUTOR_*` overrides read through `lookup`.
    pub fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let l = &mut self.limits;
        env_num(&lookup, "CODE_EXECUTOR_MEMORY_MB", &mut l.memory_mb)?;
        env_num(&lookup, "CODE_EXECUTOR_CPUS", &mut l.cpus)?;
        env_num(&lookup, "CODE_EXECUTOR_PIDS", &mut l.pids)?;
        env_num(&lookup, "CODE_EXECUTOR_TMPFS_MB", &mut l.tmpfs_mb)?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_OUTPUT_CAP_BYTES",
            &mut l.output_cap_bytes,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_MAX_CODE_BYTES",
            &mut l.max_code_bytes,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_MAX_STDIN_BYTES",
            &mut l.max_stdin_bytes,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_TIMEOUT_MS",
            &mut l.default_timeout_ms,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_MAX_TIMEOUT_MS",
            &mut l.max_timeout_ms,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_MAX_CONCURRENT",
            &mut self.max_concurrent,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_ORPHAN_AGE_SECS",
            &mut self.orphan_age_secs,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_MAX_TOOL_CALLS",
            &mut self.tools.max_calls_per_execution,
        )?;
        env_num(&lookup, "CODE_EXECUTOR_POOL_SIZE", &mut self.pool_size)?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_POOL_MAX_AGE_SECS",
            &mut self.pool_max_age_secs,
        )?;
        env_num(
            &lookup,
            "CODE_EXECUTOR_SHUTDOWN_GRACE_SECS",
            &mut self.shutdown_grace_secs,
        )?;
        if let Some(v) = lookup("CODE_EXECUTOR_API_KEYS_FILE") {
            self.http.api_keys_file = Some(PathBuf::from(v));
        }
        if let Some(v) = lookup("CODE_EXECUTOR_ALLOWED_HOSTS") {
            self.http.allowed_hosts = split_list(&v);
        }
        if let Some(v) = lookup("CODE_EXECUTOR_ALLOWED_ORIGINS") {
            self.http.allowed_origins = split_list(&v);
        }
        if let Some(v) = lookup("CODE_EXECUTOR_SOCKET_BASE") {
            self.socket_base = PathBuf::from(v);
        }
        if let Some(v) = lookup("CODE_EXECUTOR_ALLOWED_TOOLS") {
            // Comma-separated patterns; empty means none.
            self.tools.allowed = Some(
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
            );
        }
        if let Some(v) = lookup("CODE_EXECUTOR_PYTHON_IMAGE") {
            self.python_image = v;
        }
        if let Some(v) = lookup("CODE_EXECUTOR_DENO_IMAGE") {
            self.deno_image = v;
        }
        self.apply_security_env(&lookup)
    }

    fn apply_security_env(
        &mut self,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = lookup("CODE_EXECUTOR_RUNTIME") {
            self.sandbox.runtime = v.trim().to_owned();
        }
        env_num(lookup, "CODE_EXECUTOR_APPARMOR", &mut self.sandbox.apparmor)?;
        // `ALLOWED_PROJECTS` is the name the original code-executor-mcp used.
        for name in ["ALLOWED_PROJECTS", "CODE_EXECUTOR_ALLOWED_PROJECTS"] {
            if let Some(v) = lookup(name) {
                self.grants.allowed_roots = split_paths(&v);
            }
        }
        if let Some(v) = lookup("CODE_EXECUTOR_EGRESS_ALLOWED_HOSTS") {
            self.egress.allowed_hosts = split_list(&v);
        }
        if let Some(v) = lookup("CODE_EXECUTOR_EGRESS_ALLOW_CIDRS") {
            self.egress.allow_cidrs = split_list(&v);
        }
        env_num(
            lookup,
            "CODE_EXECUTOR_EGRESS_MAX_BYTES",
            &mut self.egress.max_bytes,
        )?;
        env_num(
            lookup,
            "CODE_EXECUTOR_TOOL_CALLS_PER_SECOND",
            &mut self.tools.calls_per_second,
        )?;
        env_num(
            lookup,
            "CODE_EXECUTOR_SSRF_GUARD",
            &mut self.tools.ssrf_guard,
        )?;
        if let Some(v) = lookup("CODE_EXECUTOR_SSRF_GUARD_EXEMPT") {
            self.tools.ssrf_guard_exempt = split_list(&v);
        }
        env_num(
            lookup,
            "CODE_EXECUTOR_EXECUTIONS_PER_MINUTE",
            &mut self.rate_limits.executions_per_minute,
        )?;
        env_num(
            lookup,
            "CODE_EXECUTOR_EXECUTION_BURST",
            &mut self.rate_limits.execution_burst,
        )?;
        env_num(lookup, "CODE_EXECUTOR_AUDIT", &mut self.audit.enabled)?;
        if let Some(v) = lookup("CODE_EXECUTOR_AUDIT_DIR") {
            self.audit.dir = Some(PathBuf::from(v));
        }
        env_num(
            lookup,
            "CODE_EXECUTOR_AUDIT_PLAINTEXT",
            &mut self.audit.include_plaintext,
        )?;
        Ok(())
    }

    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        let range = |field, value: String, reason: &str| ConfigError::Range {
            field,
            value,
            reason: reason.to_owned(),
        };
        if !(16..=65_536).contains(&l.memory_mb) {
            return Err(range(
                "memory_mb",
                l.memory_mb.to_string(),
                "must be 16..=65536",
            ));
        }
        if !(l.cpus > 0.0 && l.cpus <= 64.0) {
            return Err(range("cpus", l.cpus.to_string(), "must be > 0 and <= 64"));
        }
        if !(8..=4096).contains(&l.pids) {
            return Err(range("pids", l.pids.to_string(), "must be 8..=4096"));
        }
        if !(1..=4096).contains(&l.tmpfs_mb) {
            return Err(range(
                "tmpfs_mb",
                l.tmpfs_mb.to_string(),
                "must be 1..=4096",
            ));
        }
        if l.output_cap_bytes < 1024 {
            return Err(range(
                "output_cap_bytes",
                l.output_cap_bytes.to_string(),
                "must be >= 1024",
            ));
        }
        if l.max_code_bytes == 0 {
            return Err(range("max_code_bytes", "0".into(), "must be > 0"));
        }
        if !(1_000..=3_600_000).contains(&l.max_timeout_ms) {
            return Err(range(
                "max_timeout_ms",
                l.max_timeout_ms.to_string(),
                "must be 1000..=3600000",
            ));
        }
        if !(1_000..=l.max_timeout_ms).contains(&l.default_timeout_ms) {
            return Err(range(
                "default_timeout_ms",
                l.default_timeout_ms.to_string(),
                "must be 1000..=max_timeout_ms",
            ));
        }
        if let Some(patterns) = &self.tools.allowed {
            crate::policy::Allowlist::new(&[], Some(patterns)).map_err(|e| ConfigError::Range {
                field: "tools.allowed",
                value: format!("{patterns:?}"),
                reason: e.to_string(),
            })?;
        }
        if !self.socket_base.is_absolute() || self.socket_base.as_os_str().len() > 60 {
            return Err(range(
                "socket_base",
                self.socket_base.display().to_string(),
                "must be an absolute path of at most 60 bytes (Unix socket paths are short)",
            ));
        }
        if self.pool_size > 16 {
            return Err(range(
                "pool_size",
                self.pool_size.to_string(),
                "must be 0..=16",
            ));
        }
        if self.max_concurrent == 0 {
            return Err(range("max_concurrent", "0".into(), "must be >= 1"));
        }
        let runtime = &self.sandbox.runtime;
        let runtime_ok = !runtime.is_empty()
            && runtime.len() <= 64
            && runtime
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !runtime_ok {
            return Err(range(
                "sandbox.runtime",
                format!("{runtime:?}"),
                "must be auto, runc, runsc or the name of a runtime registered with the engine",
            ));
        }
        crate::policy::net::NetPolicy::new(
            &[],
            &self.egress.allowed_hosts,
            &self.egress.allow_cidrs,
        )
        .map_err(|e| ConfigError::Range {
            field: "egress",
            value: format!(
                "allowed_hosts {:?}, allow_cidrs {:?}",
                self.egress.allowed_hosts, self.egress.allow_cidrs
            ),
            reason: e.to_string(),
        })?;
        if self.tools.calls_per_second == 0 {
            return Err(range("tools.calls_per_second", "0".into(), "must be >= 1"));
        }
        let r = &self.rate_limits;
        if r.executions_per_minute == 0 || r.execution_burst == 0 {
            return Err(range(
                "rate_limits",
                format!(
                    "{}/min, burst {}",
                    r.executions_per_minute, r.execution_burst
                ),
                "executions_per_minute and execution_burst must be >= 1",
            ));
        }
        if self.audit.max_file_bytes < 4096 || self.audit.max_files == 0 {
            return Err(range(
                "audit",
                format!(
                    "max_file_bytes {}, max_files {}",
                    self.audit.max_file_bytes, self.audit.max_files
                ),
                "max_file_bytes must be >= 4096 and max_files >= 1",
            ));
        }
        Ok(())
    }
}

fn env_num<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &str,
    target: &mut T,
) -> Result<(), ConfigError>
where
    T::Err: std::fmt::Display,
{
    if let Some(value) = lookup(name) {
        *target = value.trim().parse().map_err(|e: T::Err| ConfigError::Env {
            name: name.to_owned(),
            value: value.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

fn settings_file_candidates() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("code-executor.toml")];
    if let Some(home) = std::env::var_os("HOME") {
        out.push(Path::new(&home).join(".config/code-executor-mcp/code-executor.toml"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn defaults_match_the_architecture() {
        let s = Settings::default();
        assert_eq!(s.limits.memory_mb, 256);
        assert_eq!(s.limits.pids, 64);
        assert_eq!(s.limits.tmpfs_mb, 64);
        assert_eq!(s.limits.output_cap_bytes, 1 << 20);
        assert_eq!(s.limits.default_timeout_ms, 30_000);
        assert_eq!(s.max_concurrent, 8);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn env_overrides_apply_and_bad_values_name_the_variable() {
        let mut s = Settings::default();
        s.apply_env(env(&[
            ("CODE_EXECUTOR_MEMORY_MB", "128"),
            ("CODE_EXECUTOR_MAX_CONCURRENT", " 3 "),
        ]))
        .unwrap();
        assert_eq!(s.limits.memory_mb, 128);
        assert_eq!(s.max_concurrent, 3);
        let err = s
            .apply_env(env(&[("CODE_EXECUTOR_PIDS", "lots")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CODE_EXECUTOR_PIDS"), "{err}");
    }

    #[test]
    fn pool_http_and_grace_overrides() {
        let mut s = Settings::default();
        s.apply_env(env(&[
            ("CODE_EXECUTOR_POOL_SIZE", "0"),
            ("CODE_EXECUTOR_SHUTDOWN_GRACE_SECS", "5"),
            (
                "CODE_EXECUTOR_ALLOWED_HOSTS",
                "localhost, exec.example.com ,",
            ),
            ("CODE_EXECUTOR_API_KEYS_FILE", "/etc/keys"),
        ]))
        .unwrap();
        assert_eq!(s.pool_size, 0);
        assert_eq!(s.shutdown_grace_secs, 5);
        assert_eq!(s.http.allowed_hosts, ["localhost", "exec.example.com"]);
        assert_eq!(
            s.http.api_keys_file.as_deref(),
            Some(Path::new("/etc/keys"))
        );
    }

    #[test]
    fn toml_file_rejects_unknown_keys() {
        let dir = std::env::temp_dir().join(format!("ce-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("code-executor.toml");
        std::fs::write(&path, "max_concurrent = 2\n[limits]\nmemory_mb = 64\n").unwrap();
        let s = Settings::from_file(&path).unwrap();
        assert_eq!(s.max_concurrent, 2);
        assert_eq!(s.limits.memory_mb, 64);
        assert_eq!(s.limits.pids, 64, "unset fields keep defaults");
        std::fs::write(&path, "memroy_mb = 64\n").unwrap();
        let err = Settings::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("memroy_mb"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn security_settings_come_from_env_and_are_checked() {
        let mut s = Settings::default();
        s.apply_env(env(&[
            ("CODE_EXECUTOR_RUNTIME", "runsc"),
            ("CODE_EXECUTOR_APPARMOR", "required"),
            ("ALLOWED_PROJECTS", "/srv/a:/srv/b"),
            (
                "CODE_EXECUTOR_EGRESS_ALLOWED_HOSTS",
                "api.example.com, *.pypi.org:443",
            ),
            ("CODE_EXECUTOR_SSRF_GUARD", "false"),
            ("CODE_EXECUTOR_AUDIT_DIR", "/var/log/ce"),
        ]))
        .unwrap();
        assert_eq!(s.sandbox.runtime, "runsc");
        assert_eq!(s.sandbox.apparmor, AppArmorMode::Required);
        assert_eq!(s.grants.allowed_roots.len(), 2);
        assert_eq!(
            s.egress.allowed_hosts,
            ["api.example.com", "*.pypi.org:443"]
        );
        assert!(!s.tools.ssrf_guard);
        assert_eq!(s.audit.dir.as_deref(), Some(Path::new("/var/log/ce")));
        assert!(s.validate().is_ok());
        let err = s
            .apply_env(env(&[("CODE_EXECUTOR_APPARMOR", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("CODE_EXECUTOR_APPARMOR"), "{err}");
        for bad in ["", "run c", "../runc", "runc;rm"] {
            let mut s = Settings::default();
            s.sandbox.runtime = bad.to_owned();
            let err = s.validate().unwrap_err().to_string();
            assert!(err.contains("sandbox.runtime"), "{bad:?}: {err}");
        }
        let mut s = Settings::default();
        s.rate_limits.executions_per_minute = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rate_limits"));
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        let mut s = Settings::default();
        s.limits.memory_mb = 1;
        assert!(s.validate().unwrap_err().to_string().contains("memory_mb"));
        let mut s = Settings::default();
        s.limits.default_timeout_ms = 400_000;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("default_timeout_ms"));
        let s = Settings {
            max_concurrent: 0,
            ..Settings::default()
        };
        assert!(s.validate().is_err());
    }
}
