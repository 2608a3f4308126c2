//! code-executor-mcp: an MCP server that runs untrusted Python and TypeScript in a fresh,
//! hardened Docker container per execution.

/// The tamper-evident audit log of executions and tool calls.
pub mod audit;
/// Operator settings.
pub mod config;
/// The `doctor` checks of a deployment.
pub mod doctor;
/// Clients of the downstream MCP servers whose tools the sandbox may call.
pub mod downstream;
pub mod egress;
/// Prometheus metrics.
pub mod metrics;
/// The client-facing result of an execution.
pub mod outcome;
/// Pure policy rules: the tool allowlist and tool-name syntax.
pub mod policy;
/// The per-execution tool proxy on a Unix socket.
pub mod proxy;
/// Call arguments and their validation.
pub mod request;
/// Containers: spec, lifecycle, output capture, orphan reaping.
pub mod sandbox;
/// The MCP surface.
pub mod server;
