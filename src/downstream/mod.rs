//! The downstream client pool: one rmcp client per configured MCP server, whose tools the
//! sandboxed code reaches as `mcp__<server>__<tool>` through the per-execution proxy.
//!
//! Each server has a supervisor task that connects in the background, lists the tools,
//! keeps the list fresh on `notifications/tools/list_changed`, and reconnects: a failed
//! start is retried with exponential backoff (0.5 s doubling to 30 s), and a server that
//! died or dropped its session is restarted, at the latest when the next call needs it.
//! No server waits for another. Stdio children write their stderr into our log (target
//! `downstream`), never onto our stdout, which carries our own JSON-RPC.

/// Which servers to connect to: the `mcpServers` of the MCP client configuration files.
pub mod config;

mod client;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{QuitReason, RunningService};
use rmcp::{Peer, RoleClient, ServiceError};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use config::{
    load_servers, load_servers_from_env, DownstreamConfigError, ServerConfig, ServerEntry,
};

use client::{Connected, Handler};

/// First delay before retrying a failed connection.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// Longest delay between connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that lived this long resets the backoff when it ends.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Longest wait for a server to start and answer `initialize` and `tools/list`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for one connection to close (stdin closed, SIGTERM, then SIGKILL).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// One tool of a downstream server.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    /// The name the sandbox uses: `mcp__<server>__<tool>`.
    pub name: String,
    /// The server's configured name.
    pub server: String,
    /// The tool's own name on that server.
    pub tool: String,
    /// The tool's description, as the server gives it.
    pub description: Option<String>,
    /// The JSON Schema of the tool's arguments.
    pub input_schema: Arc<serde_json::Map<String, Value>>,
}

/// Where the connection to a server stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerStatus {
    /// Starting, or reconnecting after the connection ended.
    Connecting,
    /// Connected; its tool list is known.
    Ready,
    /// The last attempt failed (see the error); retried with backoff.
    Failed,
}

/// A server's state, for `health` and the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerState {
    /// The server's configured name.
    pub name: String,
    /// Where its connection stands.
    pub status: ServerStatus,
    /// How many of its tools are listed.
    pub tool_count: usize,
    /// Why the last attempt failed or the last connection ended.
    pub error: Option<String>,
}

/// Why a tool call did not produce a result. A result with `isError: true` is a result,
/// not one of these.
#[derive(Debug, thiserror::Error)]
pub enum DownstreamError {
    /// No listed tool has this name (or it is not of the form `mcp__<server>__<tool>`).
    #[error("unknown tool {name:?}")]
    UnknownTool {
        /// The name asked for.
        name: String,
    },
    /// The server is not connected, could not be restarted, or its connection broke during
    /// the call (the server is then reconnected).
    #[error("downstream server {server:?} is unavailable: {reason}")]
    ServerUnavailable {
        /// The server's name.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The tool did not answer within the server's call timeout; the request was cancelled.
    #[error("mcp__{server}__{tool} timed out after {timeout_ms} ms")]
    Timeout {
        /// The server's name.
        server: String,
        /// The tool's name on that server.
        tool: String,
        /// The timeout that expired.
        timeout_ms: u64,
    },
    /// The server answered with a protocol error (for example invalid parameters).
    #[error("mcp__{server}__{tool} failed: {message}")]
    Failed {
        /// The server's name.
        server: String,
        /// The tool's name on that server.
        tool: String,
        /// The server's error message.
        message: String,
    },
}

/// The pool of downstream clients. Create it with [`DownstreamPool::start`] inside a Tokio
/// runtime; end it with [`DownstreamPool::shutdown`] (dropping it also closes the clients,
/// without waiting).
pub struct DownstreamPool {
    servers: Vec<Arc<Server>>,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for DownstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .servers
            .iter()
            .map(|s| s.config.name.as_str())
            .collect();
        f.debug_struct("DownstreamPool")
            .field("servers", &names)
            .finish()
    }
}

/// One configured server and what its supervisor publishes about it.
struct Server {
    config: ServerConfig,
    state: watch::Sender<Snapshot>,
    /// Wakes the supervisor: retry now (a call is waiting) or drop a broken connection.
    wake: Notify,
    /// Connections of this generation or older are to be dropped and reconnected.
    reconnect_generation: AtomicU64,
}

#[derive(Clone)]
struct Snapshot {
    status: ServerStatus,
    error: Option<String>,
    tools: Arc<[ToolInfo]>,
    conn: Option<Conn>,
    /// Finished connection attempts, successful or not.
    attempts: u64,
}

/// What a call needs of a live connection.
#[derive(Clone)]
struct Conn {
    peer: Peer<RoleClient>,
    pid: Option<u32>,
    generation: u64,
}

impl Snapshot {
    /// Tools are served while Ready, and while reconnecting after having been Ready.
    fn listed_tools(&self) -> &[ToolInfo] {
        match self.status {
            ServerStatus::Ready | ServerStatus::Connecting => &self.tools,
            ServerStatus::Failed => &[],
        }
    }
}

impl DownstreamPool {
    /// Starts connecting to every server in the background and returns at once. Servers
    /// whose names are invalid or repeated are reported as Failed and never started.
    pub fn start(servers: Vec<ServerConfig>) -> Arc<Self> {
        let shutdown = CancellationToken::new();
        let mut pool_servers: Vec<Arc<Server>> = Vec::with_capacity(servers.len());
        let mut tasks = Vec::with_capacity(servers.len());
        for config in servers {
            if pool_servers.iter().any(|s| s.config.name == config.name) {
                tracing::warn!(target: "downstream", server = %config.name, "ignoring repeated server name");
                continue;
            }
            let invalid = config::check_server_name(&config.name).err();
            let server = Arc::new(Server {
                state: watch::Sender::new(Snapshot {
                    status: if invalid.is_some() {
                        ServerStatus::Failed
                    } else {
                        ServerStatus::Connecting
                    },
                    error: invalid.map(|reason| format!("invalid server name: {reason}")),
                    tools: Arc::from(Vec::new()),
                    conn: None,
                    attempts: 0,
                }),
                config,
                wake: Notify::new(),
                reconnect_generation: AtomicU64::new(0),
            });
            if invalid.is_none() {
                tasks.push(tokio::spawn(supervise(server.clone(), shutdown.clone())));
            }
            pool_servers.push(server);
        }
        Arc::new(DownstreamPool {
            servers: pool_servers,
            shutdown,
            tasks: Mutex::new(tasks),
        })
    }

    /// The tools of every Ready server (and of servers reconnecting after having been
    /// Ready), in configuration order.
    pub async fn tools(&self) -> Vec<ToolInfo> {
        let mut out = Vec::new();
        for server in &self.servers {
            out.extend_from_slice(server.state.borrow().listed_tools());
        }
        out
    }

    /// One listed tool by its `mcp__<server>__<tool>` name.
    pub async fn tool(&self, name: &str) -> Option<ToolInfo> {
        let (server, _) = split_tool_name(name)?;
        let server = self.server(server)?;
        let snapshot = server.state.borrow();
        snapshot
            .listed_tools()
            .iter()
            .find(|t| t.name == name)
            .cloned()
    }

    /// Calls a tool. A server that is not connected (it died, or its last start failed) is
    /// restarted first, waiting up to its call timeout; the call is then made once, within
    /// the server's call timeout, after which the request is cancelled.
    pub async fn call(
        &self,
        name: &str,
        arguments: Option<serde_json::Map<String, Value>>,
    ) -> Result<CallToolResult, DownstreamError> {
        let unknown = || DownstreamError::UnknownTool {
            name: name.to_owned(),
        };
        let (server_name, tool_name) = split_tool_name(name).ok_or_else(unknown)?;
        let server = self.server(server_name).ok_or_else(unknown)?;
        let timeout = server.config.call_timeout;
        let (conn, tools) = self.ready_connection(server, timeout).await?;
        if !tools.iter().any(|t| t.tool == tool_name) {
            return Err(unknown());
        }

        let mut params = CallToolRequestParams::new(tool_name.to_owned());
        params.arguments = arguments;
        let outcome = tokio::time::timeout(timeout, conn.peer.call_tool(params)).await;
        let error = match outcome {
            Ok(Ok(result)) => return Ok(result),
            // Dropping the call's future sent `notifications/cancelled` for it.
            Err(_) => {
                return Err(DownstreamError::Timeout {
                    server: server_name.to_owned(),
                    tool: tool_name.to_owned(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                })
            }
            Ok(Err(e)) => e,
        };
        tracing::warn!(target: "downstream", server = server_name, tool = tool_name, "tool call failed: {error}");
        Err(match error {
            ServiceError::McpError(e) => DownstreamError::Failed {
                server: server_name.to_owned(),
                tool: tool_name.to_owned(),
                message: e.message.into_owned(),
            },
            ServiceError::Timeout { timeout } => DownstreamError::Timeout {
                server: server_name.to_owned(),
                tool: tool_name.to_owned(),
                timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            },
            ServiceError::TransportSend(_) | ServiceError::TransportClosed => {
                server.request_reconnect(conn.generation);
                DownstreamError::ServerUnavailable {
                    server: server_name.to_owned(),
                    reason: format!(
                        "connection lost during the call ({}); reconnecting",
                        client::describe_service_error(&error)
                    ),
                }
            }
            other => DownstreamError::Failed {
                server: server_name.to_owned(),
                tool: tool_name.to_owned(),
                message: other.to_string(),
            },
        })
    }

    /// Every configured server's state, in configuration order.
    pub async fn states(&self) -> Vec<ServerState> {
        self.servers
            .iter()
            .map(|server| {
                let s = server.state.borrow();
                ServerState {
                    name: server.config.name.clone(),
                    status: s.status,
                    tool_count: s.listed_tools().len(),
                    error: s.error.clone(),
                }
            })
            .collect()
    }

    /// Waits until no server is Connecting, or `timeout` has passed.
    pub async fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for server in &self.servers {
            let mut rx = server.state.subscribe();
            let settled = rx.wait_for(|s| s.status != ServerStatus::Connecting);
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                return;
            }
        }
    }

    /// Closes every client: stdio children get their stdin closed, then SIGTERM, then
    /// SIGKILL, and are reaped. Later calls fail with ServerUnavailable.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for mut task in tasks {
            if tokio::time::timeout(CLOSE_TIMEOUT + Duration::from_secs(1), &mut task)
                .await
                .is_err()
            {
                tracing::warn!(target: "downstream", "a downstream client did not close in time");
                task.abort();
            }
        }
    }

    /// The process id of a stdio server's current child, for tests and diagnostics.
    #[doc(hidden)]
    pub async fn child_pid(&self, server: &str) -> Option<u32> {
        self.server(server)?.state.borrow().conn.as_ref()?.pid
    }

    fn server(&self, name: &str) -> Option<&Arc<Server>> {
        self.servers.iter().find(|s| s.config.name == name)
    }

    /// A live connection and the tools it lists, restarting the server first if needed.
    async fn ready_connection(
        &self,
        server: &Server,
        wait: Duration,
    ) -> Result<(Conn, Arc<[ToolInfo]>), DownstreamError> {
        let deadline = Instant::now() + wait;
        let unavailable = |reason: String| DownstreamError::ServerUnavailable {
            server: server.config.name.clone(),
            reason,
        };
        let mut rx = server.state.subscribe();
        // The attempt count when we asked for a retry: a newer failure is our answer.
        let mut retry_asked_at: Option<u64> = None;
        let mut woke = false;
        loop {
            if self.shutdown.is_cancelled() {
                return Err(unavailable("the downstream pool is shut down".into()));
            }
            let snapshot = rx.borrow_and_update().clone();
            match (snapshot.status, snapshot.conn) {
                (ServerStatus::Ready, Some(conn)) => {
                    if conn_alive(&conn) {
                        return Ok((conn, snapshot.tools));
                    }
                    tracing::info!(target: "downstream", server = %server.config.name, "server died; restarting it");
                    server.request_reconnect(conn.generation);
                    woke = true;
                }
                (ServerStatus::Failed, _) => match retry_asked_at {
                    Some(asked) if snapshot.attempts > asked => {
                        return Err(unavailable(
                            snapshot.error.unwrap_or_else(|| "connection failed".into()),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        retry_asked_at = Some(snapshot.attempts);
                        server.wake.notify_one();
                        woke = true;
                    }
                },
                // Reconnecting, perhaps in a backoff pause: a waiting call ends the pause.
                _ if !woke => {
                    server.wake.notify_one();
                    woke = true;
                }
                _ => {}
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                let s = server.state.borrow();
                let why = s
                    .error
                    .as_deref()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default();
                return Err(unavailable(format!(
                    "not connected after waiting {} ms{why}",
                    wait.as_millis()
                )));
            }
        }
    }
}

impl Drop for DownstreamPool {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    fn request_reconnect(&self, generation: u64) {
        self.reconnect_generation
            .fetch_max(generation, Ordering::SeqCst);
        self.wake.notify_one();
    }

    fn publish(&self, f: impl FnOnce(&mut Snapshot)) {
        self.state.send_modify(f);
    }
}

/// Splits `mcp__<server>__<tool>`. Server names never contain `__` nor end with `_`, so
/// the first `__` after the prefix is the separator.
fn split_tool_name(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("mcp__")?;
    let (server, tool) = rest.split_once("__")?;
    (!server.is_empty() && !tool.is_empty()).then_some((server, tool))
}

/// Whether a connection can still carry a request: its service loop runs and, for a stdio
/// server, its child has not exited (the loop may not have seen the EOF yet).
fn conn_alive(conn: &Conn) -> bool {
    !conn.peer.is_transport_closed() && conn.pid.is_none_or(process_alive)
}

#[cfg(target_os = "linux")]
fn process_alive(pid: u32) -> bool {
    // `/proc/<pid>/stat` is "pid (comm) S ...": the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X' | 'x')
        ),
        Err(_) => false,
    }
}

#[cfg(not(target_os = "linux"))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// How a served connection ended.
enum End {
    Shutdown,
    Reconnect,
    Closed(String),
}

/// Connects, serves and reconnects one server until the pool shuts down.
async fn supervise(server: Arc<Server>, shutdown: CancellationToken) {
    let name = server.config.name.clone();
    let mut backoff = INITIAL_BACKOFF;
    let mut generation = 0u64;
    loop {
        generation += 1;
        server.publish(|s| {
            s.status = ServerStatus::Connecting;
            s.conn = None;
        });
        let attempt_started = Instant::now();
        let refresh = Arc::new(Notify::new());
        let attempt = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, client::connect(&server.config, refresh.clone())) => r,
            _ = shutdown.cancelled() => break,
        };
        let result = attempt.unwrap_or_else(|_| {
            Err(format!(
                "no answer within {} s of starting",
                CONNECT_TIMEOUT.as_secs()
            ))
        });
        match result {
            Ok(Connected {
                running,
                pid,
                tools,
                stderr,
            }) => {
                tracing::info!(target: "downstream", server = %name, tools = tools.len(), ?pid, "downstream server ready");
                let peer = running.peer().clone();
                server.publish(|s| {
                    s.status = ServerStatus::Ready;
                    s.error = None;
                    s.tools = Arc::from(tools);
                    s.conn = Some(Conn {
                        peer: peer.clone(),
                        pid,
                        generation,
                    });
                    s.attempts += 1;
                });
                let connected_at = Instant::now();
                let end =
                    serve_connection(&server, running, peer, generation, refresh, &shutdown).await;
                let reason = match end {
                    End::Shutdown => break,
                    End::Reconnect => "a call found the connection dead or broken".to_owned(),
                    End::Closed(reason) => format!("{reason}{}", stderr.suffix()),
                };
                tracing::warn!(target: "downstream", server = %name, "downstream server disconnected: {reason}; reconnecting");
                server.publish(|s| {
                    s.status = ServerStatus::Connecting;
                    s.error = Some(reason);
                    s.conn = None;
                });
                if connected_at.elapsed() >= STABLE_AFTER {
                    backoff = INITIAL_BACKOFF;
                    continue;
                }
            }
            Err(error) => {
                tracing::warn!(
                    target: "downstream",
                    server = %name,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot connect to downstream server: {error}"
                );
                server.publish(|s| {
                    s.status = ServerStatus::Failed;
                    s.error = Some(error);
                    s.tools = Arc::from(Vec::new());
                    s.conn = None;
                    s.attempts += 1;
                });
            }
        }
        // Back off; a waiting call cuts the wait short, but attempts stay INITIAL_BACKOFF apart.
        let retry_at = Instant::now() + backoff;
        tokio::select! {
            _ = tokio::time::sleep_until(retry_at) => {}
            _ = server.wake.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep_until(attempt_started + INITIAL_BACKOFF) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            _ = shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    server.publish(|s| {
        s.status = ServerStatus::Failed;
        s.error = Some("the downstream pool is shut down".into());
        s.tools = Arc::from(Vec::new());
        s.conn = None;
    });
}

/// Serves one live connection: refreshes the tool list when the server announces a change,
/// and returns when the connection ends, a call reports it broken, or the pool shuts down.
async fn serve_connection(
    server: &Arc<Server>,
    running: RunningService<RoleClient, Handler>,
    peer: Peer<RoleClient>,
    generation: u64,
    refresh: Arc<Notify>,
    shutdown: &CancellationToken,
) -> End {
    let refresher = tokio::spawn(refresh_tools(server.clone(), peer, generation, refresh));
    let _stop_refresher = AbortOnDrop(refresher);
    let cancel = running.cancellation_token();
    let done = running.waiting();
    tokio::pin!(done);
    loop {
        tokio::select! {
            quit = &mut done => {
                return End::Closed(match quit {
                    Ok(QuitReason::Closed) => "the server closed the connection (process exited or session ended)".to_owned(),
                    Ok(QuitReason::Cancelled) => "the connection was cancelled".to_owned(),
                    Ok(QuitReason::JoinError(e)) | Err(e) => format!("the client task failed: {e}"),
                    Ok(other) => format!("the connection ended: {other:?}"),
                });
            }
            _ = shutdown.cancelled() => {
                cancel.cancel();
                if tokio::time::timeout(CLOSE_TIMEOUT, &mut done).await.is_err() {
                    tracing::warn!(target: "downstream", server = %server.config.name, "client did not close in time");
                }
                return End::Shutdown;
            }
            _ = server.wake.notified() => {
                if server.reconnect_generation.load(Ordering::SeqCst) >= generation {
                    cancel.cancel();
                    let _ = tokio::time::timeout(CLOSE_TIMEOUT, &mut done).await;
                    return End::Reconnect;
                }
            }
        }
    }
}

/// Re-lists the tools each time `refresh` is notified, while `generation` is current.
async fn refresh_tools(
    server: Arc<Server>,
    peer: Peer<RoleClient>,
    generation: u64,
    refresh: Arc<Notify>,
) {
    let name = server.config.name.clone();
    loop {
        refresh.notified().await;
        let listed =
            tokio::time::timeout(server.config.call_timeout, client::list_tools(&peer, &name))
                .await;
        match listed {
            Ok(Ok(tools)) => {
                tracing::info!(target: "downstream", server = %name, tools = tools.len(), "tool list changed");
                server.publish(|s| {
                    if s.conn.as_ref().is_some_and(|c| c.generation == generation) {
                        s.tools = Arc::from(tools);
                    }
                });
            }
            Ok(Err(e)) => {
                tracing::warn!(target: "downstream", server = %name, "tools/list after a change failed: {e}")
            }
            Err(_) => {
                tracing::warn!(target: "downstream", server = %name, "tools/list after a change timed out")
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_split_at_the_first_separator() {
        assert_eq!(
            split_tool_name("mcp__time__get_current_time"),
            Some(("time", "get_current_time"))
        );
        assert_eq!(
            split_tool_name("mcp__git__git__log"),
            Some(("git", "git__log"))
        );
        assert_eq!(split_tool_name("mcp__a-b__x"), Some(("a-b", "x")));
        for bad in [
            "",
            "mcp__",
            "mcp__time",
            "mcp__time__",
            "mcp____x",
            "time__x",
            "MCP__time__x",
            "mcp_time__x",
        ] {
            assert_eq!(split_tool_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn states_serialize_as_documented() {
        let state = ServerState {
            name: "time".into(),
            status: ServerStatus::Ready,
            tool_count: 2,
            error: None,
        };
        assert_eq!(
            serde_json::to_value(&state).unwrap(),
            serde_json::json!({"name": "time", "status": "ready", "toolCount": 2, "error": null})
        );
        assert_eq!(
            serde_json::to_value(ServerStatus::Connecting).unwrap(),
            "connecting"
        );
        assert_eq!(
            serde_json::to_value(ServerStatus::Failed).unwrap(),
            "failed"
        );
    }

    #[test]
    fn errors_read_well() {
        let e = DownstreamError::Timeout {
            server: "slow".into(),
            tool: "wait".into(),
            timeout_ms: 1500,
        };
        assert_eq!(e.to_string(), "mcp__slow__wait timed out after 1500 ms");
        let e = DownstreamError::UnknownTool {
            name: "mcp__x__y".into(),
        };
        assert_eq!(e.to_string(), "unknown tool \"mcp__x__y\"");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_process_is_alive() {
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }

    #[tokio::test]
    async fn a_missing_command_fails_without_blocking_others() {
        let pool = DownstreamPool::start(vec![
            ServerConfig {
                name: "bogus".into(),
                entry: ServerEntry::Stdio {
                    command: "/nonexistent/definitely-not-a-server".into(),
                    args: vec![],
                    env: Default::default(),
                },
                call_timeout: Duration::from_secs(2),
            },
            ServerConfig {
                name: "bad__name".into(),
                entry: ServerEntry::Stdio {
                    command: "true".into(),
                    args: vec![],
                    env: Default::default(),
                },
                call_timeout: Duration::from_secs(2),
            },
        ]);
        pool.wait_ready(Duration::from_secs(10)).await;
        let states = pool.states().await;
        assert_eq!(states.len(), 2);
        assert!(
            states.iter().all(|s| s.status == ServerStatus::Failed),
            "{states:?}"
        );
        assert!(
            states[0].error.as_deref().unwrap().contains("cannot start"),
            "{states:?}"
        );
        assert!(
            states[1]
                .error
                .as_deref()
                .unwrap()
                .contains("invalid server name"),
            "{states:?}"
        );
        assert!(pool.tools().await.is_empty());

        let err = pool.call("mcp__bogus__anything", None).await.unwrap_err();
        assert!(
            matches!(err, DownstreamError::ServerUnavailable { .. }),
            "{err:?}"
        );
        let err = pool.call("mcp__nobody__x", None).await.unwrap_err();
        assert!(
            matches!(err, DownstreamError::UnknownTool { .. }),
            "{err:?}"
        );
        let err = pool.call("not-a-tool-name", None).await.unwrap_err();
        assert!(
            matches!(err, DownstreamError::UnknownTool { .. }),
            "{err:?}"
        );

        pool.shutdown().await;
        let err = pool.call("mcp__bogus__anything", None).await.unwrap_err();
        assert!(err.to_string().contains("shut down"), "{err}");
    }
}
