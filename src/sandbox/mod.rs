//! Sandboxed execution: turns a validated request into a fresh hardened container, runs
//! the code in it, and removes it. Owns the concurrency cap, the removal of containers on
//! every path, and the reaping of orphans left by a crashed server.

pub mod engine;
pub mod isolation;
pub mod lifecycle;
pub mod output;
pub mod pool;
pub mod protocol;
pub mod reaper;
/// The seccomp profile (`seccomp/sandbox.json`) every sandbox container is started with.
pub mod seccomp;
pub mod spec;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use engine::Engine;
use isolation::Isolation;
use lifecycle::{OutputChunk, Removals, RunInput};
use pool::{Fresh, WarmPool};
use protocol::Secrets;
use reaper::Owner;
use spec::{container_spec, SpecInput};

use crate::audit::{AuditLimits, AuditLog, AuditPermissions, ExecutionRecord, ToolCallCount};
use crate::config::Settings;
use crate::egress::EgressLimits;
use crate::metrics::Metrics;
use crate::outcome::EgressUse;
use crate::outcome::ExecutionResult;
use crate::policy::mounts::{self, Grant, GrantError, GrantRoots};
use crate::policy::net::SystemResolver;
use crate::proxy::socket_dir::SocketDir;
use crate::proxy::{AuditContext, ExecState, ProxyConfig, ProxyError, ProxySummary, ToolBackend};
use crate::request::{ExecutionRequest, Language, RequestPolicy};

/// Errors of the sandbox machinery (not of the user's code, which is a normal result).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot reach the Docker engine at {endpoint}: {source}. Start dockerd (check with `docker info`) or set DOCKER_HOST; `code-executor-mcp doctor` checks the set-up")]
    EngineUnreachable {
        endpoint: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("sandbox image {image} is not present: run `make image-build` (or `code-executor-mcp doctor` to check the set-up)")]
    ImageMissing { image: String },
    #[error("docker could not {action} {target}: {source}")]
    Docker {
        action: &'static str,
        target: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("tool proxy: {0}")]
    Proxy(#[from] ProxyError),
    #[error("internal task failed: {0}")]
    Task(String),
    #[error("the execution was cancelled before it started")]
    Cancelled,
    #[error("the server is shutting down and takes no new executions")]
    ShuttingDown,
    #[error(transparent)]
    Isolation(#[from] isolation::IsolationError),
    // Not a `source`: the message already holds it (a chain would print it twice).
    #[error("host path grant: {0}; the execution was stopped before the code ran")]
    Grant(GrantError),
    #[error("egress proxy: {0}")]
    Egress(crate::egress::EgressError),
}

/// The state of the sandbox machinery, for `health` and `doctor`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxHealth {
    pub engine_reachable: bool,
    pub engine_version: Option<String>,
    pub engine_error: Option<String>,
    pub runtime: String,
    /// AppArmor profile applied to every container, if any.
    pub apparmor: Option<String>,
    /// Why AppArmor is not applied.
    pub apparmor_note: Option<String>,
    pub images: Vec<ImageHealth>,
    pub running_executions: usize,
    pub max_concurrent: usize,
    pub pool_sizes: std::collections::BTreeMap<String, usize>,
}

/// Whether one image is present.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageHealth {
    pub language: String,
    pub image: String,
    pub present: bool,
    pub error: Option<String>,
}

impl From<GrantError> for SandboxError {
    fn from(e: GrantError) -> Self {
        Self::Grant(e)
    }
}

impl From<crate::egress::EgressError> for SandboxError {
    fn from(e: crate::egress::EgressError) -> Self {
        Self::Egress(e)
    }
}

/// File name of the egress proxy's socket in an execution's socket directory.
pub const EGRESS_SOCKET_NAME: &str = "egress.sock";

/// What the audit record of an execution needs beyond its request and result.
#[derive(Debug, Default)]
struct AuditTrace {
    execution_id: String,
    container_id: String,
    refusals: Vec<String>,
}

/// Counts an execution as running (gauge and drain counter) for as long as it lives.
struct Running<'a>(&'a Sandbox);

impl<'a> Running<'a> {
    fn start(sandbox: &'a Sandbox) -> Self {
        sandbox.metrics.running(1);
        sandbox
            .running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(sandbox)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.metrics.running(-1);
        self.0
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Runs executions in fresh containers.
#[derive(Debug)]
pub struct Sandbox {
    engine: Engine,
    settings: Settings,
    owner: String,
    me: Owner,
    permits: Arc<Semaphore>,
    removals: Removals,
    shutdown: CancellationToken,
    tools: Arc<dyn ToolBackend>,
    pool: WarmPool,
    refill: tokio::sync::Notify,
    metrics: Arc<Metrics>,
    running: std::sync::atomic::AtomicUsize,
    draining: std::sync::atomic::AtomicBool,
    isolation: tokio::sync::OnceCell<Isolation>,
    grant_roots: std::sync::OnceLock<Result<GrantRoots, String>>,
    audit: Option<Arc<AuditLog>>,
    image_ids: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// What an execution may reach beyond a plain sandbox: host paths and egress.
#[derive(Debug, Clone, Default)]
struct Access {
    grants: Vec<Grant>,
    /// Deno's `--allow-net` targets for the granted hosts, when egress is granted.
    egress_hosts: Option<Vec<String>>,
}

impl Access {
    fn of(request: &ExecutionRequest) -> Self {
        Self {
            grants: request.grants.clone(),
            egress_hosts: request
                .net
                .as_ref()
                .map(|policy| spec::deno_net_targets(policy.rules())),
        }
    }

    /// Deno's command line when it needs more than the image's entrypoint grants.
    fn deno_entrypoint(&self) -> Option<Vec<String>> {
        if self.grants.is_empty() && self.egress_hosts.is_none() {
            return None;
        }
        let read: Vec<&str> = self
            .grants
            .iter()
            .filter(|g| !g.writable)
            .filter_map(|g| g.path.to_str())
            .collect();
        let write: Vec<&str> = self
            .grants
            .iter()
            .filter(|g| g.writable)
            .filter_map(|g| g.path.to_str())
            .collect();
        Some(spec::deno_command(
            &read,
            &write,
            self.egress_hosts.as_deref(),
        ))
    }
}

impl std::fmt::Debug for dyn ToolBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToolBackend")
    }
}

impl Sandbox {
    /// A sandbox whose executions call tools from `tools`.
    pub fn new(settings: Settings, tools: Arc<dyn ToolBackend>) -> Self {
        let me = Owner::current();
        Self {
            tools,
            pool: WarmPool::default(),
            metrics: Arc::new(Metrics::new()),
            running: std::sync::atomic::AtomicUsize::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            refill: tokio::sync::Notify::new(),
            engine: Engine::new(),
            owner: me.label(),
            me,
            permits: Arc::new(Semaphore::new(settings.max_concurrent)),
            settings,
            removals: Removals::new(),
            shutdown: CancellationToken::new(),
            isolation: tokio::sync::OnceCell::new(),
            grant_roots: std::sync::OnceLock::new(),
            audit: None,
            image_ids: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// Writes one audit record per execution (and the proxy one per tool call) to `log`.
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// The audit log, when it is on.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// The operator's grant roots, canonicalised once. Never grantable besides the fixed
    /// list of `policy::mounts`: the socket base and the engine's socket.
    pub fn grant_roots(&self) -> Result<&GrantRoots, String> {
        self.grant_roots
            .get_or_init(|| {
                let mut never = vec![self.settings.socket_base.clone()];
                if let Some(path) = std::env::var("DOCKER_HOST")
                    .ok()
                    .and_then(|h| h.strip_prefix("unix://").map(std::path::PathBuf::from))
                {
                    never.push(path);
                }
                GrantRoots::new(&self.settings.grants.allowed_roots, &never)
                    .map_err(|e| format!("grants.allowed_roots (ALLOWED_PROJECTS): {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The operator policy calls are validated against.
    pub fn request_policy(&self) -> RequestPolicy<'_> {
        RequestPolicy {
            limits: &self.settings.limits,
            operator_tools: self.settings.tools.allowed.as_deref(),
            grant_roots: self.grant_roots().ok(),
            egress: &self.settings.egress,
        }
    }

    /// The runtime and AppArmor profile every container gets, decided on first use from the
    /// settings and the engine (`docker info`). An engine error is retried on the next call;
    /// a runtime or profile the operator asked for and the host lacks is an error every time.
    pub async fn isolation(&self) -> Result<&Isolation, SandboxError> {
        self.isolation
            .get_or_try_init(|| async {
                let docker = self.engine.docker().await?;
                let info = docker.info().await.map_err(|source| SandboxError::Docker {
                    action: "read",
                    target: "engine info".to_owned(),
                    source,
                })?;
                let decided =
                    isolation::decide(&self.settings.sandbox, &info, std::path::Path::new("/sys"))?;
                tracing::info!(
                    runtime = %decided.runtime,
                    apparmor = decided.apparmor_profile.as_deref().unwrap_or("none"),
                    note = decided.apparmor_note.as_deref().unwrap_or(""),
                    "sandbox isolation decided"
                );
                Ok(decided)
            })
            .await
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Warm containers per language now.
    pub fn pool_sizes(&self) -> [(&'static str, usize); 2] {
        [
            ("python", self.pool.len(Language::Python)),
            ("typescript", self.pool.len(Language::TypeScript)),
        ]
    }

    /// The image that runs `language`.
    pub fn image_for(&self, language: Language) -> &str {
        match language {
            Language::Python => &self.settings.python_image,
            Language::TypeScript => &self.settings.deno_image,
        }
    }

    /// Removes containers left by earlier server processes; returns how many.
    pub async fn reap_orphans(&self) -> Result<usize, SandboxError> {
        reaper::reap_orphans(
            &self.engine,
            &self.removals,
            &self.me,
            self.settings.orphan_age_secs,
        )
        .await
    }

    /// Runs one execution in a new container. Output chunks go to `events` while the code
    /// runs. `cancel` stops it (the container is killed and removed).
    pub async fn execute(
        &self,
        request: &ExecutionRequest,
        events: Option<UnboundedSender<OutputChunk>>,
        cancel: CancellationToken,
    ) -> Result<ExecutionResult, SandboxError> {
        let warnings = crate::policy::patterns::scan(request.language.as_str(), &request.code);
        let mut trace = AuditTrace::default();
        let mut outcome = self
            .execute_inner(request, events, cancel, &mut trace)
            .await;
        if let Ok(result) = &mut outcome {
            result.warnings = warnings.clone();
        }
        self.write_audit(request, &outcome, trace, warnings).await;
        outcome
    }

    async fn execute_inner(
        &self,
        request: &ExecutionRequest,
        events: Option<UnboundedSender<OutputChunk>>,
        cancel: CancellationToken,
        trace: &mut AuditTrace,
    ) -> Result<ExecutionResult, SandboxError> {
        trace.execution_id = uuid::Uuid::new_v4().simple().to_string();
        if self.shutdown.is_cancelled() || self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(SandboxError::ShuttingDown);
        }
        let stop = self.shutdown.child_token();
        let _stop_guard = stop.clone().drop_guard();
        let linked = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => linked.cancel(),
                _ = linked.cancelled() => {}
            }
        });

        let _permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit.map_err(|_| SandboxError::ShuttingDown)?,
            _ = stop.cancelled() => return Err(if self.shutdown.is_cancelled() { SandboxError::ShuttingDown } else { SandboxError::Cancelled }),
        };

        let language = request.language.as_str();
        let _running = Running::start(self);
        let t0 = Instant::now();
        // Grants and egress change the container's mounts, environment and (for Deno)
        // command line: such an execution gets a container made for it.
        let access = Access::of(request);
        let warm = if request.memory_mb == self.settings.limits.memory_mb
            && !request.needs_own_container()
        {
            self.pool.take(request.language, self.pool_max_age())
        } else {
            None
        };
        let warm_start = warm.is_some();
        let fresh = match warm {
            Some(fresh) => fresh,
            None => tokio::select! {
                fresh = self.fresh_container(request.language, request.memory_mb, false, &access, Some(trace.execution_id.clone())) => fresh?,
                _ = stop.cancelled() => return Err(SandboxError::Cancelled),
            },
        };
        // `socket_dir` lives to the end of this function, on every path: then the socket
        // and its directory are removed.
        let Fresh {
            container: prepared,
            socket_dir,
            execution_id,
        } = fresh;
        tracing::debug!(execution = %execution_id, container = %prepared.id(), warm_start, ms = t0.elapsed().as_millis() as u64, "container ready");
        trace.execution_id = execution_id.clone();
        trace.container_id = prepared.id().to_owned();
        let secrets = Secrets::generate();
        let proxy_state = ExecState::new(
            secrets.token.clone(),
            request.allowlist.clone(),
            self.tools.clone(),
            ProxyConfig {
                max_calls: self.settings.tools.max_calls_per_execution,
                calls_per_second: self.settings.tools.calls_per_second,
                burst: self.settings.tools.calls_per_second,
                ssrf_guard: self.settings.tools.ssrf_guard,
                ssrf_exempt: self.settings.tools.ssrf_guard_exempt.clone(),
                ..ProxyConfig::default()
            },
        );
        let proxy_state = match &self.audit {
            Some(log) => proxy_state.with_audit(AuditContext {
                log: log.clone(),
                execution_id: execution_id.clone(),
                client: request.client.clone(),
            }),
            None => proxy_state,
        };
        let proxy = crate::proxy::serve(&socket_dir.socket(), Arc::new(proxy_state))?;
        // The egress proxy listens before the code runs (the runner checks its socket).
        let egress = match &request.net {
            Some(policy) => Some(crate::egress::serve(
                &socket_dir.path().join(EGRESS_SOCKET_NAME),
                Arc::new(policy.clone()),
                Arc::new(SystemResolver),
                EgressLimits {
                    max_bytes: self.settings.egress.max_bytes,
                    ..EgressLimits::default()
                },
            )?),
            None => None,
        };
        let run = prepared
            .run(
                RunInput {
                    code: &request.code,
                    stdin: &request.stdin,
                    timeout: request.timeout,
                    secrets: &secrets,
                    output_cap: self.settings.limits.output_cap_bytes,
                },
                events,
                stop.clone(),
            )
            .await;
        if warm_start {
            // Refill now, not when the container was taken: on a small machine a container
            // starting beside the running code slows it down.
            self.refill.notify_waiters();
        }
        let tools = proxy.stop().await;
        let egress = match egress {
            Some(handle) => Some(handle.stop().await),
            None => None,
        };
        let mut result = ExecutionResult::from_run(
            run,
            execution_id,
            language,
            request.timeout.as_millis() as u64,
            request.memory_mb,
        );
        self.record_metrics(&result, &tools);
        if let Some(e) = egress {
            if !e.refusals.is_empty() {
                self.metrics.refusals("egress", e.refusals.len() as u64);
            }
            trace.refusals.extend(e.refusals.iter().cloned());
            result.egress = Some(EgressUse {
                connections: e.connections,
                bytes_up: e.bytes_up,
                bytes_down: e.bytes_down,
                refusals: e.refusals,
            });
        }
        for (kind, count) in &tools.refusals {
            trace.refusals.push(format!("tool proxy: {kind} x{count}"));
        }
        result.tool_calls_made = tools.calls;
        result.tool_call_summary = tools.per_tool;
        result.warm_start = warm_start;
        result.runtime = self
            .isolation()
            .await
            .map(|i| i.runtime.clone())
            .unwrap_or_default();
        tracing::info!(
            execution = %result.execution_id,
            language,
            success = result.success,
            exit_code = ?result.exit_code,
            timed_out = result.timed_out,
            oom_killed = result.oom_killed,
            ms = result.execution_time_ms,
            "execution finished"
        );
        Ok(result)
    }

    /// Writes the execution's audit record (when the log is on). A write failure is
    /// logged, never hidden from the operator, but does not fail the user's execution.
    async fn write_audit(
        &self,
        request: &ExecutionRequest,
        outcome: &Result<ExecutionResult, SandboxError>,
        mut trace: AuditTrace,
        warnings: Vec<String>,
    ) {
        let Some(log) = &self.audit else { return };
        let image = self.image_for(request.language).to_owned();
        let isolation = self.isolation().await.ok();
        let mut record = ExecutionRecord {
            execution_id: trace.execution_id.clone(),
            client: Some(request.client.clone()),
            language: request.language.as_str().to_owned(),
            allowed_tools: request.allowed_tools.clone(),
            permissions: AuditPermissions {
                read: request.permissions.read.clone(),
                write: request.permissions.write.clone(),
                net: request.permissions.net.clone(),
            },
            limits: AuditLimits {
                memory_mb: request.memory_mb,
                timeout_ms: request.timeout.as_millis() as u64,
                cpus: self.settings.limits.cpus,
                pids: self.settings.limits.pids.max(0) as u64,
            },
            runtime: isolation.map(|i| i.runtime.clone()).unwrap_or_default(),
            apparmor: isolation.and_then(|i| i.apparmor_profile.clone()),
            image_id: self.image_id(&image).await.unwrap_or(image),
            container_id: std::mem::take(&mut trace.container_id),
            warnings,
            ..ExecutionRecord::default()
        }
        .with_code(&request.code);
        match outcome {
            Ok(r) => {
                record.exit_code = r.exit_code;
                record.duration_ms = r.execution_time_ms;
                record.timed_out = r.timed_out;
                record.oom_killed = r.oom_killed;
                record.truncated = r.truncated;
                record.warm_start = r.warm_start;
                record.success = r.success;
                record.tool_calls = r.tool_calls_made;
                record.tool_call_summary = r
                    .tool_call_summary
                    .iter()
                    .map(|(name, s)| {
                        (
                            name.clone(),
                            ToolCallCount {
                                calls: s.calls,
                                errors: s.errors,
                            },
                        )
                    })
                    .collect();
            }
            Err(e) => trace.refusals.push(format!("did not run: {e}")),
        }
        record.refusals = trace.refusals;
        if let Err(e) = log.record_execution(&record) {
            tracing::error!(error = %e, execution = %record.execution_id, "could not write the audit record of an execution");
        }
    }

    /// The id (`sha256:...`) of an image, looked up once per image name.
    async fn image_id(&self, image: &str) -> Option<String> {
        if let Some(id) = self
            .image_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(image)
        {
            return Some(id.clone());
        }
        let docker = self.engine.docker().await.ok()?;
        let id = docker.inspect_image(image).await.ok()?.id?;
        self.image_ids
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(image.to_owned(), id.clone());
        Some(id)
    }

    fn record_metrics(&self, result: &ExecutionResult, tools: &ProxySummary) {
        let outcome = if result.success {
            "success"
        } else if result.timed_out {
            "timeout"
        } else if result.oom_killed {
            "oom"
        } else if result.error_type.as_deref() == Some("Cancelled") {
            "cancelled"
        } else {
            "error"
        };
        let seconds = result.execution_time_ms as f64 / 1000.0;
        self.metrics.execution(&result.language, outcome, seconds);
        for (tool, stats) in &tools.per_tool {
            self.metrics
                .tool_calls(tool, stats.calls - stats.errors, stats.errors);
        }
        for (kind, count) in &tools.refusals {
            self.metrics.refusals(kind, *count);
        }
    }

    /// Creates, attaches and starts a container for one execution, with its socket directory.
    /// The work runs in a task of its own that finishes even when the caller goes away (a
    /// cancelled call, shutdown): a container the engine has created is then removed by its
    /// guard instead of being left behind.
    async fn fresh_container(
        &self,
        language: Language,
        memory_mb: u64,
        preload: bool,
        access: &Access,
        execution_id: Option<String>,
    ) -> Result<Fresh, SandboxError> {
        let isolation = self.isolation().await?;
        let execution_id =
            execution_id.unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        // A path swapped for a symlink since it was approved is caught here, before the
        // engine mounts it, and again after the container started (below).
        mounts::recheck(&access.grants)?;
        let grant_mounts = mounts::grant_mounts(&access.grants);
        let entrypoint = match language {
            Language::TypeScript => access.deno_entrypoint(),
            Language::Python => None,
        };
        let socket_dir = SocketDir::create(&self.settings.socket_base, &execution_id)?;
        let spec = container_spec(&SpecInput {
            image: self.image_for(language),
            language: language.as_str(),
            execution_id: &execution_id,
            owner: &self.owner,
            memory_mb,
            limits: &self.settings.limits,
            proxy_dir: Some(socket_dir.path()),
            preload,
            isolation,
            grant_mounts: &grant_mounts,
            egress_port: access
                .egress_hosts
                .as_ref()
                .map(|_| spec::EGRESS_RELAY_PORT),
            entrypoint,
        });
        let docker = self.engine.docker().await?.clone();
        let removals = self.removals.clone();
        let grants = access.grants.clone();
        let task = self.removals.spawn(async move {
            let name = format!("code-executor-{execution_id}");
            let container = lifecycle::prepare(&docker, &removals, &name, spec).await?;
            if !grants.is_empty() {
                // The engine mounted the paths at start; the runner is still waiting for
                // its request, so no code has run. Dropping `container` removes it.
                let mounted = container.mounts().await?;
                mounts::verify_mounts(&grants, &mounted, &[spec::PROXY_MOUNT])?;
                mounts::recheck(&grants)?;
            }
            Ok(Fresh {
                container,
                socket_dir,
                execution_id,
            })
        });
        task.await
            .unwrap_or_else(|e| Err(SandboxError::Task(e.to_string())))
    }

    fn pool_max_age(&self) -> Duration {
        Duration::from_secs(self.settings.pool_max_age_secs)
    }

    /// Starts keeping `pool_size` warm containers per language, refilled in the background.
    pub fn start_pool(self: &Arc<Self>) {
        if self.settings.pool_size == 0 {
            return;
        }
        for language in [Language::Python, Language::TypeScript] {
            let sandbox = self.clone();
            tokio::spawn(async move { sandbox.keep_warm(language).await });
        }
    }

    async fn keep_warm(&self, language: Language) {
        let mut backoff = Duration::from_millis(500);
        loop {
            if self.shutdown.is_cancelled() {
                return;
            }
            let have = self.pool.prune(language, self.pool_max_age());
            if have < self.settings.pool_size {
                // A refill holds a permit only while it prepares: it counts against the cap.
                let permit = tokio::select! {
                    p = self.permits.acquire() => p,
                    _ = self.shutdown.cancelled() => return,
                };
                let made = self
                    .fresh_container(
                        language,
                        self.settings.limits.memory_mb,
                        true,
                        &Access::default(),
                        None,
                    )
                    .await;
                // The permit is held until the container is in the pool or dropped: shutdown,
                // which waits for every permit, then finds it and removes it.
                match made {
                    Ok(fresh) if !self.shutdown.is_cancelled() => {
                        self.pool.put(language, fresh);
                        drop(permit);
                        backoff = Duration::from_millis(500);
                        continue;
                    }
                    Ok(fresh) => {
                        drop(fresh);
                        drop(permit);
                        return;
                    }
                    Err(e) => {
                        drop(permit);
                        tracing::warn!(language = language.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "could not prepare a warm container");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = self.shutdown.cancelled() => return,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            // Full: wait for a take, or look again for dead or aged containers.
            tokio::select! {
                _ = self.refill.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = self.shutdown.cancelled() => return,
            }
        }
    }

    /// Reports engine, images and load.
    pub async fn health(&self) -> SandboxHealth {
        let mut health = SandboxHealth {
            engine_reachable: false,
            engine_version: None,
            engine_error: None,
            runtime: String::new(),
            apparmor: None,
            apparmor_note: None,
            images: Vec::new(),
            running_executions: self.settings.max_concurrent - self.permits.available_permits(),
            max_concurrent: self.settings.max_concurrent,
            pool_sizes: [
                ("python".to_owned(), self.pool.len(Language::Python)),
                ("typescript".to_owned(), self.pool.len(Language::TypeScript)),
            ]
            .into(),
        };
        match self.engine.docker().await {
            Ok(docker) => match docker.version().await {
                Ok(v) => {
                    health.engine_reachable = true;
                    health.engine_version = v.version;
                }
                Err(e) => {
                    health.engine_error = Some(format!(
                        "engine at {} did not answer: {e}",
                        Engine::endpoint()
                    ))
                }
            },
            Err(e) => health.engine_error = Some(e.to_string()),
        }
        match self.isolation().await {
            Ok(iso) => {
                health.runtime = iso.runtime.clone();
                health.apparmor = iso.apparmor_profile.clone();
                health.apparmor_note = iso.apparmor_note.clone();
            }
            Err(e) => health.runtime = format!("unavailable: {e}"),
        }
        for language in [Language::Python, Language::TypeScript] {
            let image = self.image_for(language).to_owned();
            let (present, error) = if health.engine_reachable {
                match self.engine.require_image(&image).await {
                    Ok(()) => (true, None),
                    Err(e) => (false, Some(e.to_string())),
                }
            } else {
                (false, Some("engine unreachable".to_owned()))
            };
            health.images.push(ImageHealth {
                language: language.as_str().to_owned(),
                image,
                present,
                error,
            });
        }
        health
    }

    /// Stops taking executions and waits up to `grace` for the running ones to finish on
    /// their own. Returns how many were still running.
    pub async fn drain(&self, grace: Duration) -> usize {
        use std::sync::atomic::Ordering;
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let running = self.running.load(Ordering::SeqCst);
            if running == 0 || tokio::time::Instant::now() >= deadline {
                if running > 0 {
                    tracing::warn!(
                        running,
                        "grace period over: killing the executions still running"
                    );
                }
                return running;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops taking executions, cancels the running ones and waits (up to `grace`) until
    /// their containers are removed.
    pub async fn shutdown(&self, grace: Duration) {
        self.shutdown.cancel();
        self.pool.drain();
        let drained = async {
            // Every running execution holds a permit until its container is handed for removal.
            let _all = self
                .permits
                .acquire_many(self.settings.max_concurrent as u32)
                .await;
            self.removals.wait_idle().await;
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!("shutdown grace period ended with removals still pending; the reaper removes leftovers at next start");
        }
    }
}
