//! The Streamable HTTP transport for team deployments: MCP at `/mcp` behind API keys,
//! `/healthz`, `/readyz` and `/metrics` on the same listener.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::downstream::{DownstreamPool, ServerStatus};
use crate::sandbox::Sandbox;
use crate::server::api_keys::ApiKeys;
use crate::server::ExecutorServer;

/// The name of the authenticated client, put into each MCP request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientName(pub String);

/// Settings of the HTTP listener.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub addr: SocketAddr,
    pub keys: ApiKeys,
    /// `Host` values accepted (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser origins accepted (`https://host:port`); empty leaves `Origin` unchecked,
    /// which suits non-browser agents; the `Host` check stays on either way.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("refusing to serve on {addr} without API keys: anyone on the network could run code. Set CODE_EXECUTOR_API_KEYS_FILE (lines `client-name:key`) or bind a loopback address such as 127.0.0.1:3333")]
    NoKeysOnPublicAddress { addr: SocketAddr },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Refuses a configuration that would expose code execution to the network unauthenticated.
pub fn check_exposure(addr: SocketAddr, keys: &ApiKeys) -> Result<(), HttpError> {
    if keys.is_empty() && !addr.ip().is_loopback() {
        return Err(HttpError::NoKeysOnPublicAddress { addr });
    }
    Ok(())
}

#[derive(Clone)]
struct AppState {
    sandbox: Arc<Sandbox>,
    downstream: Arc<DownstreamPool>,
    keys: Arc<ApiKeys>,
}

/// The whole HTTP application. Cancelling `sessions` ends every MCP session.
pub fn router(
    options: &HttpOptions,
    sandbox: Arc<Sandbox>,
    downstream: Arc<DownstreamPool>,
    sessions: CancellationToken,
) -> Router {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = options.allowed_hosts.clone();
    config.allowed_origins = options.allowed_origins.clone();
    config.max_request_body_bytes = options.max_body_bytes;
    config.cancellation_token = sessions;
    let handler = ExecutorServer::new(sandbox.clone(), downstream.clone());
    let mcp = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let state = AppState {
        sandbox,
        downstream,
        keys: Arc::new(options.keys.clone()),
    };
    let protected = Router::new()
        .nest_service("/mcp", mcp)
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_key,
        ));
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state)
}

/// Serves until `listener` is cancelled (no new connections) and the open ones have
/// closed, which cancelling `sessions` forces by ending the MCP sessions.
pub async fn serve(
    options: HttpOptions,
    sandbox: Arc<Sandbox>,
    downstream: Arc<DownstreamPool>,
    listener: CancellationToken,
    sessions: CancellationToken,
) -> Result<(), HttpError> {
    check_exposure(options.addr, &options.keys)?;
    let tcp = tokio::net::TcpListener::bind(options.addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: options.addr,
            source,
        })?;
    let app = router(&options, sandbox, downstream, sessions);
    axum::serve(tcp, app)
        .with_graceful_shutdown(listener.cancelled_owned())
        .await
        .map_err(HttpError::Serve)
}

/// 401 unless the request carries a configured key (no keys: loopback only, open).
async fn require_key(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    if state.keys.is_empty() {
        request
            .extensions_mut()
            .insert(ClientName("local".to_owned()));
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    match state.keys.client_for(given) {
        Some(name) => {
            let name = ClientName(name.to_owned());
            request.extensions_mut().insert(name);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(json!({"error": "missing or unknown API key: send Authorization: Bearer <key>"})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let downstream: Vec<(String, bool)> = state
        .downstream
        .states()
        .await
        .into_iter()
        .map(|s| (s.name, s.status == ServerStatus::Ready))
        .collect();
    let text = state
        .sandbox
        .metrics()
        .encode(&state.sandbox.pool_sizes(), &downstream);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<AppState>) -> Response {
    let health = state.sandbox.health().await;
    let mut reasons = Vec::new();
    if !health.engine_reachable {
        reasons.push(
            health
                .engine_error
                .clone()
                .unwrap_or_else(|| "engine unreachable".into()),
        );
    }
    for image in health.images.iter().filter(|i| !i.present) {
        reasons.push(format!(
            "image {} missing: run `make image-build`",
            image.image
        ));
    }
    let target = state.sandbox.settings().pool_size;
    for (language, size) in &health.pool_sizes {
        if *size < target {
            reasons.push(format!(
                "warm pool for {language} has {size} of {target} containers"
            ));
        }
    }
    let downstream = state.downstream.states().await;
    for s in downstream
        .iter()
        .filter(|s| s.status != ServerStatus::Ready)
    {
        reasons.push(format!("downstream server {} is {:?}", s.name, s.status).to_lowercase());
    }
    let status = if reasons.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": reasons.is_empty(), "reasons": reasons, "sandbox": health, "downstreamServers": downstream}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_keys_only_on_loopback() {
        let none = ApiKeys::default();
        assert!(check_exposure("127.0.0.1:3333".parse().unwrap(), &none).is_ok());
        assert!(check_exposure("[::1]:3333".parse().unwrap(), &none).is_ok());
        for public in ["0.0.0.0:3333", "[::]:3333", "10.1.2.3:3333"] {
            let err = check_exposure(public.parse().unwrap(), &none).unwrap_err();
            assert!(err.to_string().contains("API keys"), "{err}");
        }
        let keys = ApiKeys::parse("ci:0123456789abcdef").unwrap();
        assert!(check_exposure("0.0.0.0:3333".parse().unwrap(), &keys).is_ok());
    }
}
