//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sessiond_axum::{ApiError, ErrorCode};
use sessiond_core::BreakerState;
use utoipa::ToSchema;

use crate::routes::errors::ErrorBody;
use crate::state::SharedState;

/// The liveness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// The readiness answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready`, or `degraded` (answers, but see the other fields).
    pub status: &'static str,
    /// Whether the store can make writes durable now.
    pub durable_writes: bool,
    /// Cluster masters whose circuit breakers are open.
    pub impaired_shards: Vec<String>,
    /// `file`, `memory`, `redis`…
    pub store: &'static str,
    /// The store's circuit breaker: `closed`, `half_open`; absent without one.
    pub breaker: Option<&'static str>,
}

/// `GET /healthz`: the process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `GET /readyz`: the store answers and its circuit breaker is not open
/// (then the 503 says so in `x-breaker-state: open`). A store that serves
/// reads but cannot make writes durable, or a Cluster with some masters'
/// breakers open (`impaired_shards`), is `"degraded"`, still 200: every
/// node shares that store, so taking this one out of rotation would only
/// refuse the session checks it can still answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, body = ErrorBody, description = "the store does not answer, or its breaker is open (`x-breaker-state: open`)"),
    ))]
pub async fn readyz(State(app): State<SharedState>) -> Result<Json<Readiness>, Response> {
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
    Ok(Json(Readiness {
        status: if durable && impaired.is_empty() {
            "ready"
        } else {
            "degraded"
        },
        durable_writes: durable,
        impaired_shards: impaired,
        store: app.store.backend.backend_name(),
        breaker: breaker.map(BreakerState::as_str),
    }))
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
