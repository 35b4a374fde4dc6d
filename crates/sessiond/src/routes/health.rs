//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sessiond_axum::{ApiError, ErrorCode};
use sessiond_core::BreakerState;

use crate::state::SharedState;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers and its circuit breaker is not open
/// (then the 503 says so in `x-breaker-state: open`). A store that serves
/// reads but cannot make writes durable, or a Cluster with some masters'
/// breakers open (`impaired_shards`), is `"degraded"`, still 200: every
/// node shares that store, so taking this one out of rotation would only
/// refuse the session checks it can still answer.
pub async fn readyz(State(app): State<SharedState>) -> Result<Json<Value>, Response> {
    let breaker = app.store.breaker_state();
    if breaker == Some(BreakerState::Open) {
        return Err(([("x-breaker-state", "open")], ApiError::store_unavailable()).into_response());
    }
    app.store.backend.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check: store unavailable");
        ApiError::store_unavailable().into_response()
    })?;
    let durable = !app.store.durability_degraded();
    let impaired = app.store.impaired_parts();
    Ok(Json(json!({
        "status": if durable && impaired.is_empty() { "ready" } else { "degraded" },
        "durable_writes": durable,
        "impaired_shards": impaired,
        "store": app.store.backend.backend_name(),
        "breaker": breaker.map(BreakerState::as_str),
    })))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics() -> Result<impl IntoResponse, ApiError> {
    let handle = crate::observe::metrics_handle().ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "metrics are not recorded by this process",
        )
    })?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    ))
}
