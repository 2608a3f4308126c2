//! The tool proxy's HTTP routes: call a tool, list and search tools, read one tool's
//! schema. Status codes follow the architecture: 401 token, 403 not allowed, 404 unknown,
//! 422 arguments fail the schema, 429 rate or call cap, 502 downstream error, 504 timeout.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::audit::{Decision, ToolCallRecord, ToolOutcome};
use crate::downstream::{DownstreamError, ToolInfo};
use crate::policy::net::check_tool_arguments;
use crate::proxy::{auth, ExecState};

/// A JSON error body: `{"error": message}`.
pub fn error_body(message: impl Into<String>) -> Json<Value> {
    Json(json!({ "error": message.into() }))
}

fn fail(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    let mut response = (status, error_body(message.clone())).into_response();
    response.extensions_mut().insert(FailureReason(message));
    response
}

/// The message of a refused or failed call, kept for the audit record.
#[derive(Debug, Clone)]
struct FailureReason(String);

/// How long names found in tool arguments may take to resolve for the SSRF guard.
const SSRF_RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The proxy's router for one execution.
pub fn router(state: Arc<ExecState>) -> Router {
    Router::new()
        .route("/v1/tools/call", post(call_tool))
        .route("/v1/tools", get(list_tools))
        .route("/v1/tools/{name}", get(get_tool))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(state.config.max_request_bytes))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    name: String,
    #[serde(default)]
    arguments: Option<Map<String, Value>>,
}

async fn call_tool(
    State(state): State<Arc<ExecState>>,
    body: Result<Json<CallBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => {
            // 413 for an oversized body, 400 for anything malformed.
            let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                e.status()
            } else {
                StatusCode::BAD_REQUEST
            };
            return fail(
                status,
                format!(
                    "request body must be {{\"name\": string, \"arguments\": object}}: {}",
                    e.body_text()
                ),
            );
        }
    };
    let started = Instant::now();
    let response = call_tool_inner(&state, &body).await;
    let reported_error = response.extensions().get::<ToolReportedError>().is_some();
    let ok = response.status().is_success() && !reported_error;
    state.record(&body.name, ok, started.elapsed());
    if let Some(audit) = &state.audit {
        let outcome = match response.status() {
            StatusCode::OK if reported_error => ToolOutcome::Error,
            StatusCode::OK => ToolOutcome::Ok,
            StatusCode::FORBIDDEN => ToolOutcome::Refused,
            StatusCode::NOT_FOUND => ToolOutcome::UnknownTool,
            StatusCode::UNPROCESSABLE_ENTITY => ToolOutcome::InvalidArguments,
            StatusCode::TOO_MANY_REQUESTS => ToolOutcome::RateLimited,
            StatusCode::GATEWAY_TIMEOUT => ToolOutcome::Timeout,
            _ => ToolOutcome::Error,
        };
        let refused = matches!(
            outcome,
            ToolOutcome::Refused | ToolOutcome::RateLimited | ToolOutcome::InvalidArguments
        );
        let record = ToolCallRecord {
            execution_id: audit.execution_id.clone(),
            client: Some(audit.client.clone()),
            tool: body.name.chars().take(256).collect(),
            decision: if refused {
                Decision::Refused
            } else {
                Decision::Allowed
            },
            reason: response
                .extensions()
                .get::<FailureReason>()
                .map(|r| r.0.clone()),
            duration_ms: started.elapsed().as_millis() as u64,
            outcome,
            ..ToolCallRecord::default()
        }
        .with_arguments(&Value::Object(body.arguments.clone().unwrap_or_default()));
        if let Err(e) = audit.log.record_tool_call(&record) {
            tracing::error!(error = %e, "could not write the audit record of a tool call");
        }
    }
    response
}

/// Marks a 200 response whose tool result has `isError: true`: an error in the summary.
#[derive(Debug, Clone, Copy)]
struct ToolReportedError;

async fn call_tool_inner(state: &ExecState, body: &CallBody) -> Response {
    if let Err(message) = state.admit() {
        return fail(StatusCode::TOO_MANY_REQUESTS, message);
    }
    if !state.allowlist.allows(&body.name) {
        state.refuse("tool_not_allowed");
        let allowed = if state.allowlist.is_empty() {
            "allowedTools is empty: pass allowedTools with the call to permit tools".to_owned()
        } else {
            format!("allowedTools is {:?}", state.allowlist.requested())
        };
        return fail(
            StatusCode::FORBIDDEN,
            format!("tool {:?} is not allowed: {allowed}", body.name),
        );
    }
    let Some(tool) = state.backend.tool(&body.name).await else {
        return fail(
            StatusCode::NOT_FOUND,
            format!(
                "unknown tool {:?}: list tools with discover_mcp_tools()",
                body.name
            ),
        );
    };
    let arguments = Value::Object(body.arguments.clone().unwrap_or_default());
    if let Err(message) = state.check_arguments(&tool, &arguments) {
        return fail(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    if state.ssrf_guard_applies(&body.name) {
        if let Err(refusal) =
            check_tool_arguments(&arguments, state.resolver.as_ref(), SSRF_RESOLVE_TIMEOUT).await
        {
            state.refuse("ssrf");
            return fail(
                StatusCode::FORBIDDEN,
                format!(
                    "{refusal} (the operator can exempt a server with tools.ssrf_guard_exempt)"
                ),
            );
        }
    }
    match state.backend.call(&body.name, body.arguments.clone()).await {
        Ok(result) => {
            let value = serde_json::to_value(&result).unwrap_or(Value::Null);
            let size = value.to_string().len();
            if size > state.config.max_response_bytes {
                return fail(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "tool {:?} returned {size} bytes, over the proxy's cap of {} bytes",
                        body.name, state.config.max_response_bytes
                    ),
                );
            }
            let mut response = (StatusCode::OK, Json(value)).into_response();
            if result.is_error == Some(true) {
                response.extensions_mut().insert(ToolReportedError);
            }
            response
        }
        Err(e @ DownstreamError::Timeout { .. }) => {
            fail(StatusCode::GATEWAY_TIMEOUT, e.to_string())
        }
        Err(e @ DownstreamError::UnknownTool { .. }) => fail(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => fail(StatusCode::BAD_GATEWAY, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

fn describe(tool: &ToolInfo, allowed: bool, with_schema: bool) -> Value {
    let mut v = json!({
        "name": tool.name,
        "server": tool.server,
        "description": tool.description,
        "allowed": allowed,
    });
    if with_schema {
        v["inputSchema"] = Value::Object((*tool.input_schema).clone());
    }
    v
}

async fn list_tools(
    State(state): State<Arc<ExecState>>,
    Query(query): Query<ListQuery>,
) -> Response {
    let tools = state.backend.tools().await;
    let needle = query
        .q
        .as_deref()
        .map(str::to_lowercase)
        .filter(|q| !q.trim().is_empty());
    let mut matched: Vec<(usize, Value)> = tools
        .iter()
        .filter_map(|t| {
            let score = match &needle {
                None => 0,
                Some(q) => search_score(t, q)?,
            };
            Some((score, describe(t, state.allowlist.allows(&t.name), true)))
        })
        .collect();
    matched.sort_by_key(|m| std::cmp::Reverse(m.0));
    let limit = query.limit.unwrap_or(usize::MAX);
    let tools: Vec<Value> = matched.into_iter().take(limit).map(|(_, v)| v).collect();
    (StatusCode::OK, Json(json!({ "tools": tools }))).into_response()
}

/// Ranks a tool for a lower-case query: every word must appear in the name or
/// description; name hits weigh more.
fn search_score(tool: &ToolInfo, query: &str) -> Option<usize> {
    let name = tool.name.to_lowercase();
    let description = tool.description.as_deref().unwrap_or("").to_lowercase();
    let mut score = 0;
    for word in query.split_whitespace() {
        let in_name = name.contains(word);
        let in_description = description.contains(word);
        if !in_name && !in_description {
            return None;
        }
        score += if in_name { 3 } else { 1 };
    }
    Some(score)
}

async fn get_tool(State(state): State<Arc<ExecState>>, Path(name): Path<String>) -> Response {
    match state.backend.tool(&name).await {
        Some(tool) => (
            StatusCode::OK,
            Json(describe(&tool, state.allowlist.allows(&tool.name), true)),
        )
            .into_response(),
        None => fail(StatusCode::NOT_FOUND, format!("unknown tool {name:?}")),
    }
}
