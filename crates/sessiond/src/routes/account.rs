//! The caller's own account: profile, CSRF token, devices, password, and
//! the session's attributes.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sessiond_axum::{ApiError, ApiJson, CurrentUser, ErrorCode, Session};
use sessiond_core::{AttributeChange, SessionKey, StoreError};

use crate::routes::SessionView;
use crate::state::SharedState;
use crate::tokens::RESERVED_PREFIX;

/// `GET /api/profile` answer.
#[derive(Serialize)]
pub struct Profile<'a> {
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

/// `GET /api/profile`: the hot path of every benchmark, so it serializes
/// borrowed fields instead of cloning the session.
pub async fn profile(user: CurrentUser, session: Session) -> Response {
    let p = &user.0;
    let times = session.with_current(|s| SessionTimes {
        created_at: s.record.created_at / 1000,
        expires_at: s.record.expires_at() / 1000,
        idle_expires_at: s.record.idle_expires_at / 1000,
        absolute_expires_at: s.record.absolute_expires_at / 1000,
    });
    let profile = Profile {
        user_id: &p.user_id,
        role: p.roles.first().map(String::as_str),
        roles: &p.roles,
        session: times,
    };
    Json(profile).into_response()
}

/// `GET /api/csrf`: a CSRF token for the current cookie session.
pub async fn csrf(session: Session) -> Result<Json<Value>, ApiError> {
    let token = session.csrf_token().ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(json!({ "csrf_token": token })))
}

/// `GET /api/sessions`: the caller's live sessions, the current one marked.
pub async fn list(
    State(app): State<SharedState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let current = user.0.session.handle();
    let views: Vec<SessionView> = app
        .sessions
        .list_for_user(user.user_id())
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, Some(&current)))
        .collect();
    Ok(Json(json!({ "sessions": views })))
}

fn no_such_session() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such session")
}

/// `DELETE /api/sessions/{id}`: ends one of the caller's own sessions.
pub async fn revoke(
    State(app): State<SharedState>,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let key = SessionKey::from_handle(&id).map_err(|_| no_such_session())?;
    app.sessions
        .revoke_one(user.user_id(), &key)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => no_such_session(),
            e => e.into(),
        })?;
    tracing::info!(target: "sessiond::security", event = "session_revoked", user = %user.user_id());
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/sessions/revoke-others`: log out everywhere else.
pub async fn revoke_others(
    State(app): State<SharedState>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let n = app
        .sessions
        .revoke_user(user.user_id(), Some(&user.0.session))
        .await?;
    tracing::info!(target: "sessiond::security", event = "revoke_others", user = %user.user_id(), revoked = n);
    Ok(Json(json!({ "revoked": n })))
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
) -> Result<Json<Value>, ApiError> {
    let revoked = app
        .accounts
        .change_password(
            user.user_id(),
            body.current_password,
            body.new_password,
            Some(&user.0.session),
        )
        .await?;
    // A cookie session gets a fresh token (privilege change); a bearer
    // caller's family keeps going (its refresh token is rotated on use).
    if session.verified().is_some() {
        session.cycle(None).await?;
    }
    Ok(Json(
        json!({ "revoked_sessions": revoked, "csrf_token": session.csrf_token() }),
    ))
}

/// Longest attribute name accepted by the attributes API.
const MAX_ATTRIBUTE_NAME: usize = 128;
/// At most this many attributes change in one request.
const MAX_ATTRIBUTE_CHANGES: usize = 64;

/// `GET /api/session`: the current session with its attributes (JSON values).
pub async fn current_session(session: Session) -> Result<Json<Value>, ApiError> {
    let s = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let attributes: serde_json::Map<String, Value> = s
        .record
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
        .collect();
    Ok(Json(json!({
        "id": s.key.handle(),
        "user_id": s.record.user_id,
        "roles": s.record.roles,
        "version": s.record.version,
        "attributes": attributes,
    })))
}

/// The changes a PATCH body asks for, checked: 1 to 64 names of 1-128
/// bytes, none of them the server's own. The session's budget is the store's
/// to enforce, atomically with the write.
pub(crate) fn attribute_changes(
    changes: serde_json::Map<String, Value>,
) -> Result<Vec<AttributeChange>, ApiError> {
    if changes.is_empty() || changes.len() > MAX_ATTRIBUTE_CHANGES {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            format!("send 1 to {MAX_ATTRIBUTE_CHANGES} attributes"),
        ));
    }
    changes
        .into_iter()
        .map(|(name, value)| {
            if name.is_empty() || name.chars().count() > MAX_ATTRIBUTE_NAME {
                return Err(ApiError::new(
                    ErrorCode::InvalidBody,
                    "attribute names must be 1-128 characters",
                ));
            }
            if name.starts_with(RESERVED_PREFIX) {
                return Err(ApiError::new(
                    ErrorCode::InvalidBody,
                    format!(
                        "attribute names starting with {RESERVED_PREFIX:?} are the server's own"
                    ),
                ));
            }
            Ok(match value {
                Value::Null => AttributeChange::remove(name),
                v => AttributeChange::set(name, v.to_string()),
            })
        })
        .collect()
}

/// `PATCH /api/session/attributes`: `{"name": value, "other": null}` sets
/// `name` and removes `other`, field by field: concurrent requests that
/// change other names are never overwritten.
pub async fn patch_attributes(
    session: Session,
    ApiJson(changes): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    let changes = attribute_changes(changes)?;
    let version = session.update(&changes).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::unauthenticated(),
        e => e.into(),
    })?;
    Ok(Json(json!({ "version": version })))
}
