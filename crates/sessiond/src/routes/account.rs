//! The caller's own account: profile, CSRF token, devices, password, and
//! the session's attributes.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sessiond_axum::{ApiError, ApiJson, CurrentUser, ErrorCode, Session};
use sessiond_core::{AttributeChange, SessionKey, StoreError};
use utoipa::ToSchema;

use crate::routes::SessionView;
use crate::routes::errors::ErrorBody;
use crate::routes::reauth::RecentAuth;
use crate::routes::service::views::{AttributeChanges, AttributesVersion};
use crate::state::SharedState;
use crate::tokens::RESERVED_PREFIX;

/// `GET /api/profile` answer.
#[derive(Serialize, ToSchema)]
pub struct Profile<'a> {
    user_id: &'a str,
    /// The first of `roles` (kept for older clients).
    role: Option<&'a str>,
    roles: &'a [String],
    /// The cookie session's times; `null` for a bearer caller.
    session: Option<SessionTimes>,
}

/// Session times in Unix seconds.
#[derive(Serialize, ToSchema)]
pub struct SessionTimes {
    created_at: u64,
    expires_at: u64,
    idle_expires_at: u64,
    absolute_expires_at: u64,
}

/// `GET /api/profile`: the hot path of every benchmark, so it serializes
/// borrowed fields instead of cloning the session. A bearer token is
/// trusted on its signature alone here.
#[utoipa::path(get, path = "/api/profile", tag = "account",
    security(("session_cookie" = []), ("access_token" = [])),
    responses(
        (status = 200, body = Profile),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
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

/// A CSRF token (masked afresh each time; any of them is good for the session).
#[derive(Debug, Serialize, ToSchema)]
pub struct CsrfToken {
    /// For the `X-CSRF-Token` header.
    pub csrf_token: String,
}

/// `GET /api/csrf`: a CSRF token for the current cookie session.
#[utoipa::path(get, path = "/api/csrf", tag = "session", operation_id = "csrf_token",
    security(("session_cookie" = [])),
    responses(
        (status = 200, body = CsrfToken),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn csrf(session: Session) -> Result<Json<CsrfToken>, ApiError> {
    let csrf_token = session.csrf_token().ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(CsrfToken { csrf_token }))
}

/// The caller's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sessions {
    /// Live sessions and token families, newest first.
    pub sessions: Vec<SessionView>,
}

/// How many sessions a request ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedCount {
    /// How many ended.
    pub revoked: usize,
}

/// `GET /api/sessions`: the caller's live sessions, the current one marked.
#[utoipa::path(get, path = "/api/sessions", tag = "account", operation_id = "list_own_sessions",
    security(("session_cookie" = []), ("access_token" = [])),
    responses(
        (status = 200, body = Sessions),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list(
    State(app): State<SharedState>,
    user: CurrentUser,
) -> Result<Json<Sessions>, ApiError> {
    let current = user.0.session.handle();
    let views: Vec<SessionView> = app
        .sessions
        .list_for_user(user.user_id())
        .await?
        .into_iter()
        .map(|s| SessionView::new(s, Some(&current)))
        .collect();
    Ok(Json(Sessions { sessions: views }))
}

fn no_such_session() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such session")
}

/// `DELETE /api/sessions/{id}`: ends one of the caller's own sessions.
#[utoipa::path(delete, path = "/api/sessions/{id}", tag = "account", operation_id = "revoke_own_session",
    params(("id" = String, Path, description = "the session's public id (from `GET /api/sessions`)")),
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 204, description = "ended"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "`csrf_failed`"),
        (status = 404, body = ErrorBody, description = "no such session of the caller's"),
        (status = 503, body = ErrorBody),
    ))]
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
    app.events.record(crate::events::SecurityEvent::new(
        "session_revoked",
        Some(user.user_id()),
    ));
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/sessions/revoke-others`: log out everywhere else.
#[utoipa::path(post, path = "/api/sessions/revoke-others", tag = "account", operation_id = "revoke_other_sessions",
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 200, body = RevokedCount),
        (status = 401, body = ErrorBody, description = "no session, or `reauthentication_required`: the last password proof is older than the re-authentication window (`POST /api/reauth`)"),
        (status = 403, body = ErrorBody, description = "`csrf_failed`"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_others(
    State(app): State<SharedState>,
    RecentAuth(user): RecentAuth,
) -> Result<Json<RevokedCount>, ApiError> {
    let n = app
        .sessions
        .revoke_user(user.user_id(), Some(&user.0.session))
        .await?;
    tracing::info!(target: "sessiond::security", event = "revoke_others", user = %user.user_id(), revoked = n);
    app.events.record(
        crate::events::SecurityEvent::new("revoke_others", Some(user.user_id()))
            .with_detail(format!("{n} ended")),
    );
    Ok(Json(RevokedCount { revoked: n }))
}

/// `POST /api/password` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    current_password: String,
    /// Must follow the password rules: at least `passwords.min_length` characters (12 unless configured; never fewer than 8), at most 1024, not easy to guess, not containing the user name; 400 `weak_password` says which rule.
    #[schema(min_length = 8, max_length = 1024)]
    new_password: String,
}

/// A changed password.
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    /// The user's other sessions and token families, all ended.
    pub revoked_sessions: usize,
    /// The cookie session's new CSRF token (its token was cycled).
    pub csrf_token: Option<String>,
}

/// `POST /api/password`: changes the password, ends every other session of
/// the user and moves the current one to a fresh token.
#[utoipa::path(post, path = "/api/password", tag = "account",
    request_body = PasswordChange,
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 200, body = PasswordChanged, headers(("set-cookie" = String, description = "the cycled session cookie"))),
        (status = 400, body = ErrorBody, description = "`weak_password`, or a malformed body"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`wrong_password` (the current one), or `csrf_failed`"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`too_many_attempts`"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn change_password(
    State(app): State<SharedState>,
    user: CurrentUser,
    session: Session,
    ApiJson(body): ApiJson<PasswordChange>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let revoked = app
        .accounts
        .change_password(
            user.user_id(),
            body.current_password,
            body.new_password,
            Some(&user.0.session),
        )
        .await?;
    app.events.record(crate::events::SecurityEvent::new(
        "password_changed",
        Some(user.user_id()),
    ));
    // A cookie session gets a fresh token (privilege change); a bearer
    // caller's family keeps going (its refresh token is rotated on use).
    if session.verified().is_some() {
        session.cycle(None).await?;
    }
    Ok(Json(PasswordChanged {
        revoked_sessions: revoked,
        csrf_token: session.csrf_token(),
    }))
}

/// Longest attribute name accepted by the attributes API.
const MAX_ATTRIBUTE_NAME: usize = 128;
/// At most this many attributes change in one request.
const MAX_ATTRIBUTE_CHANGES: usize = 64;

/// The caller's session with its attributes.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrentSession {
    /// The public id.
    pub id: String,
    /// The user.
    pub user_id: String,
    /// The roles it was signed in with.
    pub roles: Vec<String>,
    /// Grows with every change of the attributes.
    pub version: u64,
    /// The application's attributes (JSON values).
    #[schema(value_type = Object)]
    pub attributes: serde_json::Map<String, Value>,
}

/// `GET /api/session`: the current session with its attributes (JSON values).
#[utoipa::path(get, path = "/api/session", tag = "account",
    security(("session_cookie" = []), ("access_token" = [])),
    responses(
        (status = 200, body = CurrentSession),
        (status = 401, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn current_session(session: Session) -> Result<Json<CurrentSession>, ApiError> {
    let s = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let attributes: serde_json::Map<String, Value> = s
        .record
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
        .collect();
    Ok(Json(CurrentSession {
        id: s.key.handle(),
        user_id: s.record.user_id,
        roles: s.record.roles,
        version: s.record.version,
        attributes,
    }))
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
#[utoipa::path(patch, path = "/api/session/attributes", tag = "account",
    request_body = AttributeChanges,
    security(("session_cookie" = [], "csrf_token" = []), ("access_token" = [])),
    responses(
        (status = 200, body = AttributesVersion),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`csrf_failed`"),
        (status = 413, body = ErrorBody, description = "the body, or the session's attribute budget, is exceeded"),
        (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn patch_attributes(
    session: Session,
    ApiJson(changes): ApiJson<serde_json::Map<String, Value>>,
) -> Result<Json<AttributesVersion>, ApiError> {
    let changes = attribute_changes(changes)?;
    let version = session.update(&changes).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::unauthenticated(),
        e => e.into(),
    })?;
    Ok(Json(AttributesVersion { version }))
}
