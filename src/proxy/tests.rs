//! Router tests with a fake backend: every status code the protocol promises.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Map, Value};
use tower::ServiceExt;

use super::*;

const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Fake;

fn tool(name: &str, schema: Value) -> ToolInfo {
    let mut parts = name.splitn(3, "__").skip(1);
    ToolInfo {
        name: name.to_owned(),
        server: parts.next().unwrap_or_default().to_owned(),
        tool: parts.next().unwrap_or_default().to_owned(),
        description: Some(format!("the {name} tool")),
        input_schema: Arc::new(schema.as_object().cloned().unwrap_or_default()),
    }
}

fn tools() -> Vec<ToolInfo> {
    vec![
        tool(
            "mcp__time__get_current_time",
            json!({"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}),
        ),
        tool("mcp__git__git_log", json!({"type": "object"})),
        tool("mcp__slow__wait", json!({"type": "object"})),
        tool("mcp__broken__fail", json!({"type": "object"})),
    ]
}

impl ToolBackend for Fake {
    fn tools(&self) -> BoxFuture<'_, Vec<ToolInfo>> {
        Box::pin(async { tools() })
    }
    fn tool<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Option<ToolInfo>> {
        Box::pin(async move { tools().into_iter().find(|t| t.name == name) })
    }
    fn call<'a>(
        &'a self,
        name: &'a str,
        arguments: Option<Map<String, Value>>,
    ) -> BoxFuture<'a, Result<CallToolResult, DownstreamError>> {
        Box::pin(async move {
            match name {
                "mcp__slow__wait" => Err(DownstreamError::Timeout {
                    server: "slow".into(),
                    tool: "wait".into(),
                    timeout_ms: 10,
                }),
                "mcp__git__git_log"
                    if arguments.as_ref().is_some_and(|a| a.contains_key("fail")) =>
                {
                    Ok(CallToolResult::error(vec![ContentBlock::text(
                        "no such repo",
                    )]))
                }
                "mcp__broken__fail" => Err(DownstreamError::ServerUnavailable {
                    server: "broken".into(),
                    reason: "process exited".into(),
                }),
                _ => Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "{name} {}",
                    Value::Object(arguments.unwrap_or_default())
                ))])),
            }
        })
    }
}

fn state_with(allowed: &[&str], config: ProxyConfig) -> Arc<ExecState> {
    let requested: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
    let allowlist = Allowlist::new(&requested, None).unwrap();
    Arc::new(ExecState::new(
        TOKEN.to_owned(),
        allowlist,
        Arc::new(Fake),
        config,
    ))
}

fn state(allowed: &[&str]) -> Arc<ExecState> {
    state_with(allowed, ProxyConfig::default())
}

async fn send(
    state: &Arc<ExecState>,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header("content-type", "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = routes::router(state.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn call(state: &Arc<ExecState>, name: &str, args: Value) -> (StatusCode, Value) {
    send(
        state,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(json!({"name": name, "arguments": args})),
    )
    .await
}

#[tokio::test]
async fn allowed_call_reaches_the_backend() {
    let s = state(&["mcp__time__*"]);
    let (status, body) = call(
        &s,
        "mcp__time__get_current_time",
        json!({"timezone": "Europe/Paris"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Europe/Paris"));
    let summary = s.summary();
    let calls = summary.calls;
    let summary = summary.per_tool;
    assert_eq!(calls, 1);
    assert_eq!(summary["mcp__time__get_current_time"].errors, 0);
}

#[tokio::test]
async fn missing_or_wrong_token_is_401_everywhere() {
    let s = state(&["mcp__time__*"]);
    for token in [None, Some("wrong"), Some(&TOKEN[1..])] {
        let (status, _) = send(
            &s,
            "POST",
            "/v1/tools/call",
            token,
            Some(json!({"name": "mcp__time__get_current_time"})),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = send(&s, "GET", "/v1/tools", token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        s.summary().calls,
        0,
        "refused requests never reach the counters"
    );
}

#[tokio::test]
async fn unlisted_tool_is_403_and_names_the_allowlist() {
    let s = state(&["mcp__time__*"]);
    let (status, body) = call(&s, "mcp__git__git_log", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"].as_str().unwrap().contains("mcp__time__*"),
        "{body}"
    );
    assert_eq!(s.summary().refusals.get("tool_not_allowed"), Some(&1));
    let (status, body) = call(&state(&[]), "mcp__git__git_log", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("allowedTools is empty"),
        "{body}"
    );
}

#[tokio::test]
async fn a_tool_reporting_is_error_counts_as_an_error() {
    let s = state(&["mcp__git__*"]);
    let (status, body) = call(&s, "mcp__git__git_log", json!({"fail": true})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["isError"], true);
    let summary = s.summary().per_tool;
    assert_eq!(summary["mcp__git__git_log"].calls, 1);
    assert_eq!(summary["mcp__git__git_log"].errors, 1);
}

#[tokio::test]
async fn unknown_tool_is_404() {
    let s = state(&["mcp__*__*"]);
    let (status, _) = call(&s, "mcp__time__nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn schema_violation_is_422_naming_the_field() {
    let s = state(&["mcp__time__*"]);
    let (status, body) = call(&s, "mcp__time__get_current_time", json!({"timezone": 5})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("timezone"),
        "{body}"
    );
    let (status, body) = call(&s, "mcp__time__get_current_time", json!({})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("timezone"),
        "{body}"
    );
}

#[tokio::test]
async fn downstream_failures_map_to_502_and_504() {
    let s = state(&["mcp__*__*"]);
    assert_eq!(
        call(&s, "mcp__slow__wait", json!({})).await.0,
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(
        call(&s, "mcp__broken__fail", json!({})).await.0,
        StatusCode::BAD_GATEWAY
    );
    let summary = s.summary().per_tool;
    assert_eq!(summary["mcp__slow__wait"].errors, 1);
}

#[tokio::test]
async fn call_cap_and_rate_limit_are_429() {
    let s = state_with(
        &["mcp__*__*"],
        ProxyConfig {
            max_calls: 2,
            ..ProxyConfig::default()
        },
    );
    assert_eq!(
        call(&s, "mcp__git__git_log", json!({})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&s, "mcp__git__git_log", json!({})).await.0,
        StatusCode::OK
    );
    let (status, body) = call(&s, "mcp__git__git_log", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body["error"].as_str().unwrap().contains("cap of 2"));

    let s = state_with(
        &["mcp__*__*"],
        ProxyConfig {
            calls_per_second: 1,
            burst: 1,
            ..ProxyConfig::default()
        },
    );
    assert_eq!(
        call(&s, "mcp__git__git_log", json!({})).await.0,
        StatusCode::OK
    );
    let (status, body) = call(&s, "mcp__git__git_log", json!({})).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let message = body["error"].as_str().unwrap();
    let retry_ms: u64 = message
        .split("retry after ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no retry-after in {message:?}"));
    assert!((1..=1000).contains(&retry_ms), "{message}");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused() {
    let s = state_with(
        &["mcp__*__*"],
        ProxyConfig {
            max_request_bytes: 64,
            ..ProxyConfig::default()
        },
    );
    let (status, _) = call(&s, "mcp__git__git_log", json!({"x": "y".repeat(200)})).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let s = state(&["mcp__*__*"]);
    let (status, body) = send(
        &s,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(json!({"tool": "x"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("name"), "{body}");
}

#[tokio::test]
async fn listing_and_search_flag_allowed_tools() {
    let s = state(&["mcp__time__*"]);
    let (status, body) = send(&s, "GET", "/v1/tools", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let list = body["tools"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    let time = list
        .iter()
        .find(|t| t["name"] == "mcp__time__get_current_time")
        .unwrap();
    assert_eq!(time["allowed"], true);
    assert!(list
        .iter()
        .filter(|t| t["name"] != "mcp__time__get_current_time")
        .all(|t| t["allowed"] == false));

    let (_, body) = send(
        &s,
        "GET",
        "/v1/tools?q=GIT%20log&limit=5",
        Some(TOKEN),
        None,
    )
    .await;
    let names: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mcp__git__git_log"]);

    let (status, body) = send(
        &s,
        "GET",
        "/v1/tools/mcp__time__get_current_time",
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["inputSchema"]["required"][0], "timezone");
    assert_eq!(
        send(&s, "GET", "/v1/tools/mcp__x__y", Some(TOKEN), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn serves_on_a_unix_socket_and_stops() {
    let dir = std::env::temp_dir().join(format!("ce-proxy-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("proxy.sock");
    let handle = serve(&sock, state(&["mcp__time__*"])).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o666
    );
    let mut stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /v1/tools HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert_eq!(handle.stop().await.calls, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

struct NoDns;

impl crate::policy::net::Resolve for NoDns {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _port: u16,
    ) -> BoxFuture<'a, std::io::Result<Vec<std::net::IpAddr>>> {
        Box::pin(async move {
            match host {
                "rebind.example" => Ok(vec!["127.0.0.1".parse().unwrap()]),
                _ => Ok(vec!["93.184.215.14".parse().unwrap()]),
            }
        })
    }
}

fn guarded(config: ProxyConfig) -> Arc<ExecState> {
    let allowlist = Allowlist::new(&["mcp__git__*".to_owned()], None).unwrap();
    Arc::new(
        ExecState::new(TOKEN.to_owned(), allowlist, Arc::new(Fake), config)
            .with_resolver(Arc::new(NoDns)),
    )
}

#[tokio::test]
async fn tool_arguments_aimed_at_internal_addresses_are_refused_before_the_call() {
    let state = guarded(ProxyConfig::default());
    for target in [
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:6379/",
        "http://0x7f.1/",
        "gopher://[::ffff:127.0.0.1]:25/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://rebind.example/",
        "file:///etc/passwd",
    ] {
        let (status, body) = send(
            &state,
            "POST",
            "/v1/tools/call",
            Some(TOKEN),
            Some(json!({"name": "mcp__git__git_log", "arguments": {"nested": [{"url": target}]}})),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{target}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("tool arguments refused"),
            "{target}: {message}"
        );
    }
    let (status, _) = send(
        &state,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(json!({"name": "mcp__git__git_log", "arguments": {"url": "https://example.com/x"}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a public URL passes");
    assert_eq!(state.summary().refusals.get("ssrf"), Some(&7));
}

#[tokio::test]
async fn the_operator_can_exempt_a_server_or_turn_the_guard_off() {
    let exempt = guarded(ProxyConfig {
        ssrf_exempt: vec!["git".to_owned()],
        ..ProxyConfig::default()
    });
    let call = json!({"name": "mcp__git__git_log", "arguments": {"url": "http://127.0.0.1:6379/"}});
    let (status, _) = send(
        &exempt,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(call.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let off = guarded(ProxyConfig {
        ssrf_guard: false,
        ..ProxyConfig::default()
    });
    let (status, _) = send(&off, "POST", "/v1/tools/call", Some(TOKEN), Some(call)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_call_is_audited_with_its_decision_and_without_plaintext_arguments() {
    let dir =
        std::env::temp_dir().join(format!("ce-proxy-audit-{}", uuid::Uuid::new_v4().simple()));
    let log = Arc::new(
        crate::audit::AuditLog::open(&dir, crate::audit::AuditOptions::default()).unwrap(),
    );
    let allowlist = Allowlist::new(&["mcp__time__*".to_owned()], None).unwrap();
    let state = Arc::new(
        ExecState::new(
            TOKEN.to_owned(),
            allowlist,
            Arc::new(Fake),
            ProxyConfig::default(),
        )
        .with_resolver(Arc::new(NoDns))
        .with_audit(AuditContext {
            log: log.clone(),
            execution_id: "exec-9".to_owned(),
            client: "alice".to_owned(),
        }),
    );
    let secret = "Europe/Secretville";
    let (ok, _) = send(
        &state,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(json!({"name": "mcp__time__get_current_time", "arguments": {"timezone": secret}})),
    )
    .await;
    assert_eq!(ok, StatusCode::OK);
    let (refused, _) = send(
        &state,
        "POST",
        "/v1/tools/call",
        Some(TOKEN),
        Some(json!({"name": "mcp__git__git_log", "arguments": {}})),
    )
    .await;
    assert_eq!(refused, StatusCode::FORBIDDEN);
    let text = std::fs::read_to_string(dir.join(crate::audit::CURRENT)).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["kind"], "toolCall");
    assert_eq!(lines[0]["executionId"], "exec-9");
    assert_eq!(lines[0]["client"], "alice");
    assert_eq!(lines[0]["decision"], "allowed");
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(lines[1]["decision"], "refused");
    assert!(lines[1]["reason"].as_str().unwrap().contains("not allowed"));
    assert!(
        !text.contains(secret),
        "arguments are hashed, never written: {text}"
    );
    assert_eq!(
        lines[0]["argumentsSha256"].as_str().unwrap(),
        crate::audit::sha256_hex(json!({"timezone": secret}).to_string().as_bytes())
    );
    assert!(crate::audit::verify(&dir).unwrap().is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
