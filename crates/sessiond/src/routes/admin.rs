//! Admin APIs (role `admin`, enforced by the router's role layer).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use sessiond_axum::{ApiError, CurrentUser};

use crate::routes::SessionView;
use crate::state::SharedState;

async fn known_user(app: &SharedState, name: &str) -> Result<(), Response> {
    match app.store.backend.get_user(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such user").into_response())
        }
        Err(e) => Err(ApiError::from(e).into_response()),
    }
}

/// `GET /api/admin/users/{name}/sessions`.
pub async fn list_user_sessions(
    State(app): State<SharedState>,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = known_user(&app, &name).await {
        return r;
    }
    match app.sessions.list_for_user(&name).await {
        Ok(sessions) => {
            let views: Vec<SessionView> = sessions
                .into_iter()
                .map(|s| SessionView::new(s, Some(&admin.0.session.handle())))
                .collect();
            Json(json!({ "user": name, "sessions": views })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /api/admin/users/{name}/sessions`: logs the user out everywhere.
pub async fn revoke_user_sessions(
    State(app): State<SharedState>,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = known_user(&app, &name).await {
        return r;
    }
    match app.sessions.revoke_user(&name, None).await {
        Ok(n) => {
            tracing::info!(target: "sessiond::security", event = "revoke_all", user = %name, by = %admin.0.user_id, revoked = n);
            Json(json!({ "user": name, "revoked": n })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/admin/keys/rotate`: retires the active signing key (every node
/// picks up the new one; tokens signed with the old key stay valid until
/// they expire).
pub async fn rotate_signing_key(State(app): State<SharedState>, admin: CurrentUser) -> Response {
    match app.tokens.rotate().await {
        Ok(kid) => {
            tracing::info!(target: "sessiond::security", event = "signing_key_rotated_by_admin", admin = %admin.user_id(), kid = %kid);
            Json(json!({ "kid": kid })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
