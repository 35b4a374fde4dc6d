//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sessiond_axum::ApiError;
use sessiond_core::BreakerState;

use crate::state::SharedState;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers and its circuit breaker is not open.
pub async fn readyz(State(app): State<SharedState>) -> Response {
    let breaker = app.store.breaker_state();
    if breaker == Some(BreakerState::Open) {
        let mut r = ApiError::store_unavailable().into_response();
        r.headers_mut()
            .insert("x-breaker-state", http::HeaderValue::from_static("open"));
        return r;
    }
    match app.store.backend.ping().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "store": app.store.backend.backend_name(),
            "breaker": breaker.map(BreakerState::as_str),
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unavailable");
            ApiError::store_unavailable().into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Response {
    match crate::observe::metrics_handle() {
        Some(handle) => (
            [(
                http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            handle.render(),
        )
            .into_response(),
        None => ApiError::new(
            http::StatusCode::NOT_FOUND,
            "not_found",
            "metrics are not recorded by this process",
        )
        .into_response(),
    }
}
