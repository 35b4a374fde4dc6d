//! The caller's own account: profile, CSRF token, devices, password.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sessiond_axum::{ApiError, CurrentUser, Session};
use sessiond_core::{SessionKey, StoreError};

use crate::extract::ApiJson;
use crate::routes::SessionView;
use crate::state::SharedState;

/// Shortest accepted new password (NIST SP 800-63B's floor for user-chosen secrets).
pub const MIN_PASSWORD: usize = 8;
/// Longest accepted password.
pub const MAX_PASSWORD: usize = 1024;

/// `GET /api/profile` answer.
#[derive(Serialize)]
struct Profile<'a> {
    user_id: &'a str,
    role: Option<&'a str>,
    roles: &'a [String],
    session: Option<SessionTimes>,
}

/// Session times in Unix seconds.
#[derive(Serialize)]
struct SessionTimes {
    created_at: u64,
    expires_at: u64,
    idle_expires_at: u64,
    absolute_expires_at: u64,
}

/// `GET /api/profile`: the hot path of every benchmark, so it borrows from
/// the session instead of cloning it.
pub async fn profile(user: CurrentUser, session: Session) -> Response {
    let p = &user.0;
    let times = session.with_current(|s| SessionTimes {
        created_at: s.record.created_at / 1000,
        expires_at: s.record.expires_at() / 1000,
        idle_expires_at: s.record.idle_expires_at / 1000,
        absolute_expires_at: s.record.absolute_expires_at / 1000,
    });
    Json(Profile {
        user_id: &p.user_id,
        role: p.roles.first().map(String::as_str),
        roles: &p.roles,
        session: times,
    })
    .into_response()
}

/// `GET /api/csrf`: a CSRF token for the current cookie session.
pub async fn csrf(session: Session) -> Response {
    match session.csrf_token() {
        Some(t) => Json(json!({ "csrf_token": t })).into_response(),
        None => ApiError::unauthenticated().into_response(),
    }
}

/// `GET /api/sessions`: the caller's live sessions, the current one marked.
pub async fn list(State(app): State<SharedState>, user: CurrentUser) -> Response {
    match app.sessions.list_for_user(&user.0.user_id).await {
        Ok(sessions) => {
            let views: Vec<SessionView> = sessions
                .into_iter()
                .map(|s| SessionView::new(s, Some(&user.0.session.handle())))
                .collect();
            Json(json!({ "sessions": views })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `DELETE /api/sessions/{id}`: ends one of the caller's own sessions.
pub async fn revoke(
    State(app): State<SharedState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Response {
    let not_found =
        || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such session").into_response();
    let Ok(key) = SessionKey::from_handle(&id) else {
        return not_found();
    };
    match app.sessions.revoke_one(&user.0.user_id, &key).await {
        Ok(()) => {
            tracing::info!(target: "sessiond::security", event = "session_revoked", user = %user.0.user_id);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(StoreError::NotFound) => not_found(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/sessions/revoke-others`: log out everywhere else.
pub async fn revoke_others(State(app): State<SharedState>, user: CurrentUser) -> Response {
    let current = Some(user.0.session);
    match app
        .sessions
        .revoke_user(&user.0.user_id, current.as_ref())
        .await
    {
        Ok(n) => {
            tracing::info!(target: "sessiond::security", event = "revoke_others", user = %user.0.user_id, revoked = n);
            Json(json!({ "revoked": n })).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/password` body.
#[derive(Debug, Deserialize)]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /api/password`: changes the password, ends every other session of
/// the user and moves the current one to a fresh token.
pub async fn change_password(
    State(app): State<SharedState>,
    user: CurrentUser,
    session: Session,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Response {
    let name = user.0.user_id;
    if body.new_password.len() < MIN_PASSWORD || body.new_password.len() > MAX_PASSWORD {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "weak_password",
            format!("the new password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long"),
        )
        .into_response();
    }
    if let Some(wait) = app.user_throttle.blocked(&name) {
        return ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed attempts",
        )
        .with_retry_after(wait)
        .into_response();
    }
    let mut account = match app.store.backend.get_user(&name).await {
        Ok(Some(u)) => u,
        Ok(None) => return ApiError::unauthenticated().into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    match app
        .hasher
        .verify(body.current_password, Some(account.password_hash.clone()))
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            app.user_throttle.record_failure(&name);
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong_password",
                "the current password is wrong",
            )
            .into_response();
        }
        Err(_) => return ApiError::internal().into_response(),
    }
    account.password_hash = match app.hasher.hash(body.new_password).await {
        Ok(h) => h,
        Err(_) => return ApiError::internal().into_response(),
    };
    account.updated_at = app.sessions.now();
    if let Err(e) = app.store.backend.update_user(&account).await {
        return ApiError::from(e).into_response();
    }
    let current = Some(user.0.session);
    let revoked = match app.sessions.revoke_user(&name, current.as_ref()).await {
        Ok(n) => n,
        Err(e) => return ApiError::from(e).into_response(),
    };
    // A cookie session gets a fresh token (privilege change); a bearer
    // caller's family keeps going (its refresh token is rotated on use).
    if session.verified().is_some()
        && let Err(e) = session.cycle(None).await
    {
        return ApiError::from(e).into_response();
    }
    tracing::info!(target: "sessiond::security", event = "password_changed", user = %name, revoked);
    Json(json!({ "revoked_sessions": revoked, "csrf_token": session.csrf_token() })).into_response()
}

/// Longest attribute name and value accepted by the attributes API.
const MAX_ATTRIBUTE_NAME: usize = 128;
/// At most this many attributes change in one request.
const MAX_ATTRIBUTE_CHANGES: usize = 64;

/// `GET /api/session`: the current session with its attributes (JSON values).
pub async fn current_session(session: Session) -> Response {
    let Some(s) = session.verified() else {
        return ApiError::unauthenticated().into_response();
    };
    let attributes: serde_json::Map<String, serde_json::Value> = s
        .record
        .attributes
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::from_str(v).unwrap_or(serde_json::Value::Null),
            )
        })
        .collect();
    Json(json!({
        "id": s.key.handle(),
        "user_id": s.record.user_id,
        "roles": s.record.roles,
        "version": s.record.version,
        "attributes": attributes,
    }))
    .into_response()
}

/// `PATCH /api/session/attributes`: `{"name": value, "other": null}` sets
/// `name` and removes `other`, field by field: concurrent requests that
/// change other names are never overwritten.
pub async fn patch_attributes(
    session: Session,
    ApiJson(changes): ApiJson<serde_json::Map<String, serde_json::Value>>,
) -> Response {
    if changes.is_empty() || changes.len() > MAX_ATTRIBUTE_CHANGES {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("send 1 to {MAX_ATTRIBUTE_CHANGES} attributes"),
        )
        .into_response();
    }
    let mut list = Vec::with_capacity(changes.len());
    for (name, value) in changes {
        if name.is_empty() || name.len() > MAX_ATTRIBUTE_NAME {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                "attribute names must be 1-128 bytes",
            )
            .into_response();
        }
        list.push(match value {
            serde_json::Value::Null => sessiond_core::AttributeChange::remove(name),
            v => sessiond_core::AttributeChange::set(name, v.to_string()),
        });
    }
    match session.update(&list).await {
        Ok(version) => Json(json!({ "version": version })).into_response(),
        Err(StoreError::NotFound) => ApiError::unauthenticated().into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
