//! The per-execution tool proxy: an HTTP server on a Unix socket in a directory that is
//! bind-mounted read-only into that one container at `/run/mcp`. It checks the bearer
//! token, the allowlist, the tool's input schema and the rate limits, forwards calls to
//! the downstream servers, and counts what the code did.

pub mod auth;
pub mod routes;
pub mod socket_dir;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use rmcp::model::CallToolResult;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::downstream::{DownstreamError, DownstreamPool, ToolInfo};
use crate::outcome::ToolCallStats;
use crate::policy::allowlist::Allowlist;
use crate::policy::net::{Resolve, SystemResolver};

/// Path of the socket inside the container.
pub const SOCKET_IN_CONTAINER: &str = "/run/mcp/proxy.sock";
/// File name of the socket in its directory.
pub const SOCKET_NAME: &str = "proxy.sock";

/// Where tools come from; the downstream pool in production, a fake in unit tests.
pub trait ToolBackend: Send + Sync + 'static {
    fn tools(&self) -> BoxFuture<'_, Vec<ToolInfo>>;
    fn tool<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ToolInfo>>;
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: Option<Map<String, Value>>,
    ) -> BoxFuture<'a, Result<CallToolResult, DownstreamError>>;
}

impl ToolBackend for DownstreamPool {
    fn tools(&self) -> BoxFuture<'_, Vec<ToolInfo>> {
        Box::pin(DownstreamPool::tools(self))
    }
    fn tool<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ToolInfo>> {
        Box::pin(DownstreamPool::tool(self, name))
    }
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: Option<Map<String, Value>>,
    ) -> BoxFuture<'a, Result<CallToolResult, DownstreamError>> {
        Box::pin(DownstreamPool::call(self, name, arguments))
    }
}

/// Limits of one execution's proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Tool calls one execution may make.
    pub max_calls: u64,
    /// Sustained tool calls per second.
    pub calls_per_second: u32,
    /// Calls that may come at once above the sustained rate.
    pub burst: u32,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Largest tool result passed back.
    pub max_response_bytes: usize,
    /// Refuse calls whose arguments point at loopback, private, link-local or metadata
    /// addresses (`policy::net::check_tool_arguments`).
    pub ssrf_guard: bool,
    /// Downstream servers the guard does not apply to (the operator's choice).
    pub ssrf_exempt: Vec<String>,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            max_calls: 1000,
            calls_per_second: 200,
            burst: 200,
            max_request_bytes: 1024 * 1024,
            max_response_bytes: 4 * 1024 * 1024,
            ssrf_guard: true,
            ssrf_exempt: Vec::new(),
        }
    }
}

/// Shared state of one execution's proxy.
pub struct ExecState {
    pub token: String,
    pub allowlist: Allowlist,
    pub backend: Arc<dyn ToolBackend>,
    pub config: ProxyConfig,
    limiter: DefaultDirectRateLimiter,
    stats: Mutex<Stats>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    /// Resolves host names found in tool arguments for the SSRF guard.
    pub resolver: Arc<dyn Resolve>,
    /// Where each call is recorded, when the audit log is on.
    pub audit: Option<AuditContext>,
}

/// The audit log and what every tool-call record of this execution carries.
#[derive(Clone)]
pub struct AuditContext {
    pub log: Arc<AuditLog>,
    pub execution_id: String,
    pub client: String,
}

#[derive(Debug, Default)]
struct Stats {
    admitted: u64,
    per_tool: BTreeMap<String, ToolCallStats>,
    refusals: BTreeMap<&'static str, u64>,
}

/// What one execution's code did through the proxy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProxySummary {
    /// Tool calls made (refused ones included).
    pub calls: u64,
    /// Per tool: calls, errors, total milliseconds.
    pub per_tool: BTreeMap<String, ToolCallStats>,
    /// Refusals by kind: `tool_not_allowed`, `rate_limited`, `call_cap`, `ssrf`.
    pub refusals: BTreeMap<&'static str, u64>,
}

impl ExecState {
    pub fn new(
        token: String,
        allowlist: Allowlist,
        backend: Arc<dyn ToolBackend>,
        config: ProxyConfig,
    ) -> Self {
        let per_second = NonZeroU32::new(config.calls_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        Self {
            token,
            allowlist,
            backend,
            limiter: RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst)),
            config,
            stats: Mutex::new(Stats::default()),
            validators: Mutex::new(HashMap::new()),
            resolver: Arc::new(SystemResolver),
            audit: None,
        }
    }

    /// Records every call of this execution in `audit`.
    pub fn with_audit(mut self, audit: AuditContext) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Uses `resolver` for the SSRF guard (tests use a fake one).
    pub fn with_resolver(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Admits one call under the call cap and the rate limit, or says why not.
    pub fn admit(&self) -> Result<(), String> {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        if stats.admitted >= self.config.max_calls {
            *stats.refusals.entry("call_cap").or_default() += 1;
            return Err(format!(
                "this execution reached its cap of {} tool calls",
                self.config.max_calls
            ));
        }
        if let Err(not_until) = self.limiter.check() {
            *stats.refusals.entry("rate_limited").or_default() += 1;
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            // Whole milliseconds, at least 1: "retry after 0 ms" would invite a busy loop.
            let retry_ms = (wait.as_millis() as u64).max(1);
            return Err(format!(
                "rate limited: at most {} tool calls per second; retry after {retry_ms} ms",
                self.config.calls_per_second
            ));
        }
        stats.admitted += 1;
        Ok(())
    }

    /// True when the SSRF guard checks calls to `tool` (on, and its server not exempt).
    pub fn ssrf_guard_applies(&self, tool: &str) -> bool {
        if !self.config.ssrf_guard {
            return false;
        }
        match crate::policy::parse_tool_name(tool) {
            Ok(name) => !self.config.ssrf_exempt.iter().any(|s| s == name.server),
            Err(_) => true,
        }
    }

    /// Counts a refusal by policy (`kind` is one of a few fixed names).
    pub fn refuse(&self, kind: &'static str) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        *stats.refusals.entry(kind).or_default() += 1;
    }

    /// Records one call's outcome for the execution result.
    pub fn record(&self, name: &str, ok: bool, elapsed: Duration) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        // Bound the map: names come from untrusted code.
        if !stats.per_tool.contains_key(name) && stats.per_tool.len() >= 256 {
            return;
        }
        let entry = stats.per_tool.entry(truncate(name, 256)).or_default();
        entry.calls += 1;
        entry.errors += u64::from(!ok);
        entry.total_ms += elapsed.as_millis() as u64;
    }

    /// Calls made and per-tool statistics so far.
    pub fn summary(&self) -> ProxySummary {
        let stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        ProxySummary {
            calls: stats.per_tool.values().map(|s| s.calls).sum(),
            per_tool: stats.per_tool.clone(),
            refusals: stats.refusals.clone(),
        }
    }

    /// Validates arguments against the tool's input schema; the error names the field.
    pub fn check_arguments(&self, tool: &ToolInfo, arguments: &Value) -> Result<(), String> {
        let validator = {
            let mut cache = self.validators.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&tool.name) {
                Some(v) => v.clone(),
                None => {
                    let schema = Value::Object((*tool.input_schema).clone());
                    match jsonschema::validator_for(&schema) {
                        Ok(v) => {
                            let v = Arc::new(v);
                            cache.insert(tool.name.clone(), v.clone());
                            v
                        }
                        Err(e) => {
                            // A server with a broken schema: let the server judge the arguments.
                            tracing::warn!(tool = %tool.name, error = %e, "tool input schema does not compile; not checking arguments");
                            return Ok(());
                        }
                    }
                }
            }
        };
        let problems: Vec<String> = validator
            .iter_errors(arguments)
            .take(5)
            .map(|e| {
                let path = e.instance_path().to_string();
                let field = if path.is_empty() {
                    "arguments".to_owned()
                } else {
                    format!("arguments{}", path.replace('/', "."))
                };
                format!("{field}: {e}")
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "invalid arguments for {}: {}",
                tool.name,
                problems.join("; ")
            ))
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A running proxy; stop it to get the execution's tool statistics.
pub struct ProxyHandle {
    state: Arc<ExecState>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// Stops serving and returns (calls made, per-tool statistics).
    pub async fn stop(self) -> ProxySummary {
        self.stop.cancel();
        // In-flight requests of a finished execution need not complete.
        self.task.abort();
        let _ = self.task.await;
        self.state.summary()
    }
}

/// Errors starting a proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("cannot create the proxy socket {path}: {source}")]
    Bind {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("socket directory {path}: {source}")]
    SocketDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Starts serving `state` on `socket` (created with mode 0666: the token guards it).
pub fn serve(socket: &Path, state: Arc<ExecState>) -> Result<ProxyHandle, ProxyError> {
    use std::os::unix::fs::PermissionsExt;
    let bind_err = |source| ProxyError::Bind {
        path: socket.display().to_string(),
        source,
    };
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket).map_err(bind_err)?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o666)).map_err(bind_err)?;
    let app = routes::router(state.clone());
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::warn!(error = %e, "tool proxy stopped with an error");
        }
    });
    Ok(ProxyHandle { state, stop, task })
}

#[cfg(test)]
mod tests;
