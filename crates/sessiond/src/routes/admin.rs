//! Admin APIs (role `admin`, enforced by the router's role layer).

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use sessiond_axum::{ApiError, CurrentUser, ErrorCode};
use utoipa::ToSchema;

use crate::routes::SessionView;
use crate::routes::errors::ErrorBody;
use crate::routes::reauth::RecentAuth;
use crate::routes::service::views::Revoked;
use crate::state::SharedState;

/// A user's sessions, as an administrator sees them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserSessions {
    /// The user's id.
    pub user: String,
    /// Their live sessions and token families.
    pub sessions: Vec<SessionView>,
}

/// The new signing key.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotatedKey {
    /// Its key id (`kid` in the JWKS and in new tokens' headers).
    pub kid: String,
}

async fn known_user(app: &SharedState, name: &str) -> Result<(), ApiError> {
    match app.store.backend.get_user(name).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such user")),
    }
}

/// `GET /api/admin/users/{name}/sessions`.
#[utoipa::path(get, path = "/api/admin/users/{name}/sessions", tag = "admin", operation_id = "admin_list_user_sessions",
    params(("name" = String, Path, description = "the user's id")),
    security(("session_cookie" = []), ("access_token" = [])),
    responses(
        (status = 200, body = UserSessions),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "not an administrator"),
        (status = 404, body = ErrorBody, description = "no such user"), (status = 503, body = ErrorBody),
    ))]
pub async fn list_user_sessions(
    State(app): State<SharedState>,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Result<Json<UserSessions>, ApiError> {
    known_user(&app, &name).await?;
    let current = admin.0.session.handle();
    let views: Vec<SessionView> = app
        .sessions
        .list_for_user(&name)
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, Some(&current)))
        .collect();
    Ok(Json(UserSessions {
        user: name,
        sessions: views,
    }))
}

/// `DELETE /api/admin/users/{name}/sessions`: logs the user out everywhere.
#[utoipa::path(delete, path = "/api/admin/users/{name}/sessions", tag = "admin", operation_id = "admin_revoke_user_sessions",
    params(("name" = String, Path, description = "the user's id")),
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 200, body = Revoked),
        (status = 401, body = ErrorBody, description = "no session, or `reauthentication_required` (`POST /api/reauth`)"),
        (status = 403, body = ErrorBody, description = "not an administrator, or `csrf_failed`"),
        (status = 404, body = ErrorBody, description = "no such user"), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_user_sessions(
    State(app): State<SharedState>,
    RecentAuth(admin): RecentAuth,
    Path(name): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    known_user(&app, &name).await?;
    let n = app.sessions.revoke_user(&name, None).await?;
    tracing::info!(target: "sessiond::security", event = "revoke_all", user = %name, by = %admin.user_id(), revoked = n);
    app.events.record(
        crate::events::SecurityEvent::new("admin_revoked_sessions", Some(&name))
            .by(admin.user_id())
            .with_detail(format!("{n} ended")),
    );
    Ok(Json(Revoked {
        user: name,
        revoked: n,
    }))
}

/// `POST /api/admin/keys/rotate`: retires the active signing key (every node
/// picks up the new one; tokens signed with the old key stay valid until
/// they expire).
#[utoipa::path(post, path = "/api/admin/keys/rotate", tag = "admin",
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 200, body = RotatedKey),
        (status = 401, body = ErrorBody, description = "no session, or `reauthentication_required` (`POST /api/reauth`)"),
        (status = 403, body = ErrorBody, description = "not an administrator, or `csrf_failed`"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn rotate_signing_key(
    State(app): State<SharedState>,
    RecentAuth(admin): RecentAuth,
) -> Result<Json<RotatedKey>, ApiError> {
    let kid = app.tokens.rotate().await?;
    tracing::info!(target: "sessiond::security", event = "signing_key_rotated_by_admin", admin = %admin.user_id(), kid = %kid);
    app.events.record(
        crate::events::SecurityEvent::new("admin_rotated_signing_key", None)
            .by(admin.user_id())
            .with_detail(format!("new key {kid}")),
    );
    Ok(Json(RotatedKey { kid }))
}
