//! Re-authentication for sensitive actions (ASVS 3.7.1): a session records
//! when its user last proved their password (`auth_time`: the sign-in, or
//! the last `POST /api/reauth`), and a handler that takes [`RecentAuth`]
//! runs (and learns who the caller is) only within the user's
//! re-authentication window (`[session]
//! reauth_window`, shorter per role); past it the caller gets 401
//! `reauthentication_required`, which the pages turn into a password
//! prompt.
//!
//! A bearer caller's proof is its token family's: the sign-in that started
//! it. To prove it again, it signs in for a new family.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sessiond_axum::{ApiError, ApiJson, CurrentUser, ErrorCode, Session};
use sessiond_core::AttributeChange;
use sessiond_core::record::AUTH_TIME_ATTRIBUTE;
use utoipa::ToSchema;

use crate::routes::errors::ErrorBody;
use crate::state::SharedState;

/// The caller, whose last password proof is recent enough for a sensitive
/// action. Take it instead of [`CurrentUser`]; it refuses with 401
/// `reauthentication_required` otherwise.
#[derive(Debug, Clone)]
pub struct RecentAuth(pub CurrentUser);

impl FromRequestParts<SharedState> for RecentAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let user = CurrentUser::from_request_parts(parts, app).await?;
        let session = Session::from_request_parts(parts, app).await?;
        // A cookie session is loaded already; a bearer caller's family is not.
        let record = match session.verified() {
            Some(s) => s.record,
            None => app
                .sessions
                .store()
                .load(&user.0.session, app.sessions.now())
                .await?
                .ok_or_else(ApiError::unauthenticated)?,
        };
        if recent_enough(app, &record) {
            Ok(Self(user))
        } else {
            tracing::info!(target: "sessiond::security", event = "reauthentication_required", user = %user.user_id());
            Err(ErrorCode::ReauthenticationRequired.into())
        }
    }
}

/// After the password was proven: the session records when (which opens
/// its window) and moves to a fresh token (a privilege change). The time.
pub(crate) async fn record_proof(
    app: &SharedState,
    session: &Session,
    user: &str,
) -> Result<sessiond_core::Millis, ApiError> {
    let now = app.sessions.now();
    session
        .update(&[AttributeChange::set(AUTH_TIME_ATTRIBUTE, now.to_string())])
        .await?;
    session.cycle(None).await?;
    tracing::info!(target: "sessiond::security", event = "reauthenticated", user = %user);
    app.events.record(crate::events::SecurityEvent::new(
        "reauthenticated",
        Some(user),
    ));
    Ok(now)
}

/// Whether `record`'s last password proof is within its user's window.
pub fn recent_enough(app: &SharedState, record: &sessiond_core::SessionRecord) -> bool {
    let window = app.config.reauth_window(&record.roles);
    let age = app.sessions.now().saturating_sub(record.auth_time());
    u128::from(age) <= window.as_millis()
}

/// `POST /api/reauth` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthRequest {
    /// The signed-in user's password.
    password: String,
}

/// A proven password.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reauthenticated {
    /// Unix seconds: when the password was proven.
    pub auth_time: u64,
    /// The session's new CSRF token (its token was cycled).
    pub csrf_token: Option<String>,
}

/// `POST /api/reauth`: the signed-in user proves their password again. The
/// session moves to a fresh token (a privilege change) and records the
/// time, which opens the re-authentication window.
#[utoipa::path(post, path = "/api/reauth", tag = "account", operation_id = "reauthenticate",
    request_body = ReauthRequest,
    security(("session_cookie" = [], "csrf_token" = [])),
    responses(
        (status = 200, body = Reauthenticated, headers(("set-cookie" = String, description = "the cycled session cookie"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "`wrong_password`, or `csrf_failed`"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`too_many_attempts` (with `Retry-After`)"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn reauthenticate(
    State(app): State<SharedState>,
    session: Session,
    ApiJson(body): ApiJson<ReauthRequest>,
) -> Result<Json<Reauthenticated>, ApiError> {
    // A cookie session only: a bearer caller proves it by signing in anew.
    let current = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let user = &current.record.user_id;
    app.accounts.prove_password(user, body.password).await?;
    let now = record_proof(&app, &session, user).await?;
    Ok(Json(Reauthenticated {
        auth_time: now / 1000,
        csrf_token: session.csrf_token(),
    }))
}
