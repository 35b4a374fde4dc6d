//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sessiond_axum::ApiError;

use crate::state::SharedState;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the store answers.
pub async fn readyz(State(app): State<SharedState>) -> Response {
    match app.store.backend.ping().await {
        Ok(()) => Json(json!({ "status": "ready", "store": app.store.backend.backend_name() }))
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unavailable");
            ApiError::store_unavailable().into_response()
        }
    }
}
