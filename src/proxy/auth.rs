//! The bearer-token check of the tool proxy: every request must carry the execution's
//! token, compared in constant time.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::proxy::routes::error_body;
use crate::proxy::ExecState;

/// True when `header_value` is exactly `Bearer <token>`.
pub fn bearer_matches(header_value: Option<&[u8]>, token: &str) -> bool {
    let Some(value) = header_value else {
        return false;
    };
    let Some(given) = value.strip_prefix(b"Bearer ") else {
        return false;
    };
    // `ct_eq` on slices of different lengths is false without looking at the bytes.
    given.ct_eq(token.as_bytes()).into()
}

/// Middleware: 401 unless the request carries the token.
pub async fn require_token(
    State(state): State<std::sync::Arc<ExecState>>,
    request: Request,
    next: Next,
) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if bearer_matches(value, &state.token) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            error_body("missing or wrong bearer token"),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ab12cd34";

    #[test]
    fn exact_token_passes() {
        assert!(bearer_matches(Some(b"Bearer ab12cd34"), TOKEN));
    }

    #[test]
    fn hostile_headers_fail() {
        for bad in [
            &b""[..],
            b"Bearer ",
            b"Bearer ab12cd3",
            b"Bearer ab12cd345",
            b"Bearer AB12CD34",
            b"bearer ab12cd34",
            b"Bearer  ab12cd34",
            b"Bearer ab12cd34 ",
            b"Bearer ab12cd34\0",
            b"Basic ab12cd34",
            b"ab12cd34",
            b"Bearer ab12cd34, Bearer x",
        ] {
            assert!(
                !bearer_matches(Some(bad), TOKEN),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(!bearer_matches(None, TOKEN));
    }

    #[test]
    fn empty_token_never_matches_an_empty_bearer_by_accident() {
        // A token is never empty in practice; the check still refuses a missing header.
        assert!(!bearer_matches(None, ""));
    }
}
