//! One connection to one downstream server: spawning a stdio child (its stderr into our log)
//! or opening a Streamable HTTP session, the MCP handshake, and listing its tools.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientCapabilities, ClientConfig, Implementation, ProtocolVersion, Tool};
use rmcp::service::{ClientInitializeError, NotificationContext, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::ChildStderr;
use tokio::sync::Notify;

use super::config::{ServerConfig, ServerEntry};
use super::ToolInfo;

/// Longest stderr line logged as one record; longer lines are split.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// Stderr lines kept to explain a failed start or a crash.
const STDERR_TAIL_LINES: usize = 5;
/// Tools kept per server; more are dropped with a warning.
const MAX_TOOLS_PER_SERVER: usize = 1024;
/// Longest accepted downstream tool name (MCP spec: 1 to 128 characters).
const MAX_TOOL_NAME_LEN: usize = 128;
/// How long a failed start waits for the child's last stderr lines.
const STDERR_SETTLE: Duration = Duration::from_millis(300);

/// Our side of one connection: identifies us and turns `notifications/tools/list_changed`
/// into a refresh of the cached tool list.
pub(super) struct Handler {
    refresh: Arc<Notify>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        // Pinned to the `initialize` handshake: list-changed notifications then arrive
        // unscoped, which is what every server on PyPI and npm speaks today.
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(super::config::OWN_NAME, env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.refresh.notify_one();
    }
}

/// The last lines a child wrote to stderr.
#[derive(Clone, Default)]
pub(super) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == STDERR_TAIL_LINES {
            lines.pop_front();
        }
        lines.push_back(line.chars().take(300).collect());
    }

    /// `"; last stderr: a | b"`, or nothing when the child wrote nothing.
    pub(super) fn suffix(&self) -> String {
        let lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if lines.is_empty() {
            String::new()
        } else {
            let joined: Vec<&str> = lines.iter().map(String::as_str).collect();
            format!("; last stderr: {}", joined.join(" | "))
        }
    }
}

/// A live, initialized connection.
pub(super) struct Connected {
    pub running: RunningService<RoleClient, Handler>,
    pub pid: Option<u32>,
    pub tools: Vec<ToolInfo>,
    pub stderr: StderrTail,
}

/// Starts or opens the server, completes the MCP handshake and lists its tools.
/// `refresh` is notified when the server says its tool list changed.
/// The error is a one-line description for the log and `health`.
pub(super) async fn connect(
    config: &ServerConfig,
    refresh: Arc<Notify>,
) -> Result<Connected, String> {
    let handler = Handler { refresh };
    let stderr_tail = StderrTail::default();
    let (running, pid) = match &config.entry {
        ServerEntry::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).envs(env).kill_on_drop(true);
            let (transport, stderr) = TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start {command:?}: {e}"))?;
            let pid = transport.id();
            let stderr_task = stderr.map(|stderr| {
                tokio::spawn(log_stderr(config.name.clone(), stderr, stderr_tail.clone()))
            });
            match handler.serve(transport).await {
                Ok(running) => (running, pid),
                Err(e) => {
                    // The child's own explanation (a traceback, "command not found") is usually
                    // on its stderr: give the reader a moment to collect the last lines.
                    if let Some(task) = stderr_task {
                        let _ = tokio::time::timeout(STDERR_SETTLE, task).await;
                    }
                    return Err(format!(
                        "MCP handshake with {command:?} failed: {}{}",
                        describe_init_error(&e),
                        stderr_tail.suffix()
                    ));
                }
            }
        }
        ServerEntry::Http { url, headers } => {
            let mut custom = HashMap::with_capacity(headers.len());
            for (name, value) in headers {
                let name = axum::http::HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("invalid header name {name:?}"))?;
                let value = axum::http::HeaderValue::from_str(value)
                    .map_err(|_| format!("invalid value for header {name}"))?;
                custom.insert(name, value);
            }
            let transport = StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom),
            );
            let running = handler.serve(transport).await.map_err(|e| {
                format!(
                    "MCP handshake with {url} failed: {}",
                    describe_init_error(&e)
                )
            })?;
            (running, None)
        }
    };
    match list_tools(running.peer(), &config.name).await {
        Ok(tools) => Ok(Connected {
            running,
            pid,
            tools,
            stderr: stderr_tail,
        }),
        Err(e) => {
            let _ = running.cancel().await;
            Err(format!("tools/list failed: {}", describe_service_error(&e)))
        }
    }
}

/// All tools of the server (every page), as [`ToolInfo`]s. Tools whose names do not follow
/// the MCP naming rule (1 to 128 of `A-Z a-z 0-9 _ - .`) are dropped with a warning: they
/// could not be matched safely by allowlist globs. Duplicates keep the first definition.
pub(super) async fn list_tools(
    peer: &Peer<RoleClient>,
    server: &str,
) -> Result<Vec<ToolInfo>, rmcp::ServiceError> {
    let tools = peer.list_all_tools().await?;
    Ok(to_tool_infos(server, tools))
}

/// A handshake error without rmcp's transport type names: the context and the root cause.
fn describe_init_error(e: &ClientInitializeError) -> String {
    match e {
        ClientInitializeError::TransportError { error, context } => {
            format!("{context}: {}", root_cause(error.error.as_ref()))
        }
        other => other.to_string(),
    }
}

/// A request error; for a transport failure, its root cause ("Connection refused", ...).
pub(super) fn describe_service_error(e: &rmcp::ServiceError) -> String {
    match e {
        rmcp::ServiceError::TransportSend(error) => root_cause(error.error.as_ref()),
        other => other.to_string(),
    }
}

fn root_cause(mut e: &(dyn std::error::Error + 'static)) -> String {
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

fn to_tool_infos(server: &str, tools: Vec<Tool>) -> Vec<ToolInfo> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(tools.len().min(MAX_TOOLS_PER_SERVER));
    for tool in tools {
        if !valid_tool_name(&tool.name) {
            tracing::warn!(target: "downstream", server, tool = ?tool.name, "ignoring tool with an invalid name");
            continue;
        }
        if !seen.insert(tool.name.clone()) {
            tracing::warn!(target: "downstream", server, tool = %tool.name, "ignoring duplicate tool");
            continue;
        }
        if out.len() == MAX_TOOLS_PER_SERVER {
            tracing::warn!(target: "downstream", server, "more than {MAX_TOOLS_PER_SERVER} tools; ignoring the rest");
            break;
        }
        out.push(ToolInfo {
            name: format!("mcp__{server}__{}", tool.name),
            server: server.to_owned(),
            tool: tool.name.into_owned(),
            description: tool.description.map(|d| d.into_owned()),
            input_schema: tool.input_schema,
        });
    }
    out
}

fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Copies the child's stderr into our log, one record per line (target `downstream`, field
/// `server`), until the child closes it. Control characters are replaced so that a child
/// cannot forge log lines; overlong lines are split.
async fn log_stderr(server: String, stderr: ChildStderr, tail: StderrTail) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(256);
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_STDERR_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) => break,
            Ok(_) => {
                let raw = String::from_utf8_lossy(&buf);
                let line: String = raw
                    .trim_end_matches(['\n', '\r'])
                    .chars()
                    .map(|c| {
                        if c.is_control() && c != '\t' {
                            '\u{fffd}'
                        } else {
                            c
                        }
                    })
                    .collect();
                if line.trim().is_empty() {
                    continue;
                }
                tracing::info!(target: "downstream", server = %server, "{line}");
                tail.push(&line);
            }
            Err(e) => {
                tracing::debug!(target: "downstream", server = %server, "stderr read failed: {e}");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> Tool {
        serde_json::from_value(
            json!({"name": name, "description": "d", "inputSchema": {"type": "object"}}),
        )
        .unwrap()
    }

    #[test]
    fn tool_infos_are_named_and_filtered() {
        let infos = to_tool_infos(
            "time",
            vec![
                tool("get_current_time"),
                tool("convert-time.v2"),
                tool("get_current_time"),
                tool("evil*"),
                tool("white space"),
                tool(""),
                tool("nul\0"),
                tool(&"x".repeat(129)),
            ],
        );
        let names: Vec<&str> = infos.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["mcp__time__get_current_time", "mcp__time__convert-time.v2"]
        );
        assert_eq!(infos[0].server, "time");
        assert_eq!(infos[0].tool, "get_current_time");
        assert_eq!(infos[0].description.as_deref(), Some("d"));
        assert_eq!(infos[0].input_schema.get("type"), Some(&json!("object")));
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let tail = StderrTail::default();
        assert_eq!(tail.suffix(), "");
        for i in 0..8 {
            tail.push(&format!("line {i}"));
        }
        assert_eq!(
            tail.suffix(),
            "; last stderr: line 3 | line 4 | line 5 | line 6 | line 7"
        );
    }
}
