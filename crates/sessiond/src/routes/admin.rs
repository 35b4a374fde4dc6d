//! Admin APIs (role `admin`, enforced by the router's role layer).

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};
use sessiond_axum::{ApiError, CurrentUser, ErrorCode};

use crate::routes::SessionView;
use crate::state::SharedState;

async fn known_user(app: &SharedState, name: &str) -> Result<(), ApiError> {
    match app.store.backend.get_user(name).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such user")),
    }
}

/// `GET /api/admin/users/{name}/sessions`.
pub async fn list_user_sessions(
    State(app): State<SharedState>,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known_user(&app, &name).await?;
    let current = admin.0.session.handle();
    let views: Vec<SessionView> = app
        .sessions
        .list_for_user(&name)
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, Some(&current)))
        .collect();
    Ok(Json(json!({ "user": name, "sessions": views })))
}

/// `DELETE /api/admin/users/{name}/sessions`: logs the user out everywhere.
pub async fn revoke_user_sessions(
    State(app): State<SharedState>,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    known_user(&app, &name).await?;
    let n = app.sessions.revoke_user(&name, None).await?;
    tracing::info!(target: "sessiond::security", event = "revoke_all", user = %name, by = %admin.user_id(), revoked = n);
    Ok(Json(json!({ "user": name, "revoked": n })))
}

/// `POST /api/admin/keys/rotate`: retires the active signing key (every node
/// picks up the new one; tokens signed with the old key stay valid until
/// they expire).
pub async fn rotate_signing_key(
    State(app): State<SharedState>,
    admin: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let kid = app.tokens.rotate().await?;
    tracing::info!(target: "sessiond::security", event = "signing_key_rotated_by_admin", admin = %admin.user_id(), kid = %kid);
    Ok(Json(json!({ "kid": kid })))
}
