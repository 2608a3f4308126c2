//! The MCP surface: the `executePython`, `executeTypescript` and `health` tools, served
//! over stdio. Validation errors become `invalid_params`; a failure of the user's code is
//! a normal result with `isError: true`.

// MCP logging (setLevel, log notifications) is deprecated by SEP-2577 but still used by
// today's clients.
#![allow(deprecated)]

pub mod api_keys;
pub mod http;
pub mod stream;

use std::sync::Arc;
use std::time::Instant;

use rmcp::handler::server::common::{schema_for_input, schema_for_type};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::model::{
    CallToolResult, ContentBlock, ErrorCode, Extensions, Implementation, JsonObject, LoggingLevel,
    RequestMetaObject, ServerCapabilities, ServerConfig, SetLevelRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{tool, tool_handler, tool_router, ErrorData, Peer, RoleServer, ServerHandler};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::VERSION;
use crate::downstream::DownstreamPool;
use crate::outcome::ExecutionResult;
use crate::policy::rate::ExecutionRateLimiter;
use crate::request::{ExecuteArgs, Language};
use crate::sandbox::{Sandbox, SandboxError};
use stream::Forwarder;

const PYTHON_DESCRIPTION: &str = "Run Python 3.11 code in a fresh, isolated container (no network unless `permissions.net` names hosts the operator allows, then through HTTP_PROXY; read-only filesystem except /tmp, /workspace and host paths granted by `permissions.read`/`write`; memory/CPU/process limits). Top-level `await` works. Returns stdout, stderr, exit code and the error with its traceback. Output streams as progress notifications while the code runs.";
const TYPESCRIPT_DESCRIPTION: &str = "Run TypeScript (Deno) code in a fresh, isolated container (no network unless `permissions.net` names hosts the operator allows, then fetch goes through the egress proxy; no file access but host paths granted by `permissions.read`/`write`; no env permissions; memory/CPU/process limits). Top-level `await` works. Returns stdout, stderr, exit code and the error with its stack. Output streams as progress notifications while the code runs.";

/// The MCP server handler.
#[derive(Clone)]
pub struct ExecutorServer {
    sandbox: Arc<Sandbox>,
    downstream: Arc<DownstreamPool>,
    started: Instant,
    log_level: Arc<Mutex<Option<LoggingLevel>>>,
    /// Shared by every session (the HTTP transport clones the handler per session).
    rate: Arc<ExecutionRateLimiter>,
    #[expect(
        dead_code,
        reason = "the tool_handler macro routes calls through this field"
    )]
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl ExecutorServer {
    pub fn new(sandbox: Arc<Sandbox>, downstream: Arc<DownstreamPool>) -> Self {
        let limits = &sandbox.settings().rate_limits;
        let rate = Arc::new(ExecutionRateLimiter::new(
            limits.executions_per_minute,
            limits.execution_burst,
        ));
        Self {
            rate,
            sandbox,
            downstream,
            started: Instant::now(),
            log_level: Arc::new(Mutex::new(None)),
            tool_router: Self::tool_router(),
        }
    }

    #[tool(name = "executePython", description = PYTHON_DESCRIPTION, input_schema = execute_input_schema(), output_schema = schema_for_output::<ExecutionResult>())]
    async fn execute_python(
        &self,
        args: JsonObject,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let client = client_name(&extensions);
        let span = tracing::info_span!("call", client = %client);
        self.execute(Language::Python, client, args, meta, peer, cancel)
            .instrument(span)
            .await
    }

    #[tool(name = "executeTypescript", description = TYPESCRIPT_DESCRIPTION, input_schema = execute_input_schema(), output_schema = schema_for_output::<ExecutionResult>())]
    async fn execute_typescript(
        &self,
        args: JsonObject,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
        extensions: Extensions,
    ) -> Result<CallToolResult, ErrorData> {
        let client = client_name(&extensions);
        let span = tracing::info_span!("call", client = %client);
        self.execute(Language::TypeScript, client, args, meta, peer, cancel)
            .instrument(span)
            .await
    }

    #[tool(
        name = "health",
        description = "Report whether the Docker engine is reachable, the sandbox images are present, the load, and uptime."
    )]
    async fn health(&self) -> Result<CallToolResult, ErrorData> {
        let sandbox = self.sandbox.health().await;
        let healthy = sandbox.engine_reachable && sandbox.images.iter().all(|i| i.present);
        let report = serde_json::json!({
            "healthy": healthy,
            "version": VERSION,
            "uptimeSecs": self.started.elapsed().as_secs(),
            "sandbox": sandbox,
            "downstreamServers": self.downstream.states().await,
        });
        let mut result = CallToolResult::structured(report.clone());
        result.content = vec![ContentBlock::text(
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )];
        Ok(result)
    }
}

impl ExecutorServer {
    async fn execute(
        &self,
        language: Language,
        client: String,
        args: JsonObject,
        meta: RequestMetaObject,
        peer: Peer<RoleServer>,
        cancel: CancellationToken,
    ) -> Result<CallToolResult, ErrorData> {
        // Deserialised here rather than by rmcp's `Parameters`, so that a malformed call is an
        // `invalid_params` error like every other refused argument.
        let args: ExecuteArgs = serde_json::from_value(serde_json::Value::Object(args))
            .map_err(|e| ErrorData::invalid_params(format!("invalid arguments: {e}"), None))?;
        if let Err(limited) = self.rate.check(&client) {
            self.sandbox.metrics().refusals("rate_limited", 1);
            tracing::warn!(%client, retry_after_ms = limited.retry_after.as_millis() as u64, "execution refused: rate limited");
            return Err(ErrorData::new(
                RATE_LIMITED,
                limited.to_string(),
                Some(serde_json::json!({ "retryAfterMs": limited.retry_after.as_millis() as u64 })),
            ));
        }
        let request = args
            .validate(language, &self.sandbox.request_policy(), &client)
            .map_err(|e| ErrorData::invalid_params(e.to_string(), None))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let forwarder = Forwarder {
            peer,
            progress_token: meta.get_progress_token(),
            log_level: self.log_level.clone(),
            execution_label: format!("{} execution", language.as_str()),
        };
        let forwarding = tokio::spawn(forwarder.run(rx));
        let outcome = self.sandbox.execute(&request, Some(tx), cancel).await;
        // The sender is gone with `execute`; let every notification go out before the result.
        let _ = forwarding.await;
        match outcome {
            Ok(result) => Ok(tool_result(&result)),
            Err(e @ (SandboxError::Cancelled | SandboxError::ShuttingDown)) => {
                Err(ErrorData::internal_error(e.to_string(), None))
            }
            Err(e) => {
                tracing::error!(error = %e, "execution could not run");
                Err(ErrorData::internal_error(e.to_string(), None))
            }
        }
    }
}

/// A log span naming the client: its API key's name over HTTP, `stdio` otherwise.
/// JSON-RPC error code of a call refused by the per-client rate limit (server-defined
/// range); `data.retryAfterMs` says when to try again.
pub const RATE_LIMITED: ErrorCode = ErrorCode(-32029);

/// Who made the call: the API key's client name over HTTP, `stdio` for the stdio transport
/// (one client per process).
fn client_name(extensions: &Extensions) -> String {
    extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<http::ClientName>())
        .map_or_else(|| "stdio".to_owned(), |c| c.0.clone())
}

/// The input schema of the execution tools, from [`ExecuteArgs`].
fn execute_input_schema() -> Arc<JsonObject> {
    schema_for_input::<ExecuteArgs>().unwrap_or_else(|_| schema_for_type::<ExecuteArgs>())
}

/// The MCP tool result of an execution.
pub fn tool_result(result: &ExecutionResult) -> CallToolResult {
    let value = serde_json::to_value(result).unwrap_or_default();
    let mut out = if result.success {
        CallToolResult::structured(value)
    } else {
        CallToolResult::structured_error(value)
    };
    out.content = vec![ContentBlock::text(result.summary())];
    out
}

#[tool_handler]
impl ServerHandler for ExecutorServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_logging().build())
            .with_server_info(Implementation::new("code-executor-mcp", VERSION))
            .with_instructions(
                "Run Python (executePython) or TypeScript (executeTypescript) in a fresh sandbox container per call. \
                 Print what you want back; output is capped at 1 MiB per stream.",
            )
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        *self.log_level.lock().await = Some(request.level);
        Ok(())
    }
}
