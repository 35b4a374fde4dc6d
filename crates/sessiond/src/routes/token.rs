//! The token endpoints: issue, refresh, revoke, JWKS.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};
use serde::{Deserialize, Serialize};
use sessiond_axum::{ApiError, ClientIp, ErrorCode, JsonOrForm, OptionalJson, Session};
use sessiond_core::metric;
use sessiond_jwt::TokenVerifier;
use utoipa::ToSchema;

use crate::routes::errors::ErrorBody;
use crate::state::SharedState;
use crate::tokens::{RefreshToken, Refreshed};

/// `POST /api/token` body with credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    username: String,
    password: String,
}

/// `POST /api/token/refresh` body (JSON, or the OAuth form encoding).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    refresh_token: String,
    /// Optional in JSON; required in the form encoding (RFC 6749 §6). A
    /// string, not [`GrantType`], so that another grant gets the RFC's
    /// `unsupported_grant_type` rather than a parse error.
    #[serde(default)]
    #[schema(value_type = Option<GrantType>)]
    grant_type: Option<String>,
}

/// The only grant this endpoint serves.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GrantType {
    /// `refresh_token`.
    RefreshToken,
}

/// The form encoding of [`RefreshRequest`], for the document only: the
/// handler reads both encodings into `RefreshRequest` and enforces the
/// form's `grant_type` itself (an OAuth client gets the RFC's error codes).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct RefreshForm {
    refresh_token: String,
    grant_type: GrantType,
}

/// `POST /api/token/revoke` body (RFC 7009).
#[derive(Debug, Deserialize, ToSchema)]
pub struct RevokeRequest {
    token: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as RFC 7009 allows; the token's shape says what it is
    token_type_hint: Option<String>,
}

/// The token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// A signed JWT (RFC 8725 rules; verify with the JWKS).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: u64,
    /// Single use: each refresh answers with a new one.
    pub refresh_token: String,
}

/// RFC 7009's answer: nothing to say, whatever the token was.
#[derive(Debug, Serialize, ToSchema)]
pub struct Empty {}

/// The token response (RFC 6749 §5.1), never cached.
async fn token_response(
    app: &SharedState,
    user: &str,
    roles: &[String],
    refresh: &RefreshToken,
) -> Result<Response, ApiError> {
    let access_token = app.tokens.issue_access(user, roles, &refresh.key).await?;
    let mut response = Json(TokenView {
        access_token,
        token_type: "Bearer",
        expires_in: app.tokens.settings().access_ttl.as_secs(),
        refresh_token: refresh.expose(),
    })
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// `POST /api/token`: a new token family, for JSON credentials, or for the
/// caller's cookie session (whose CSRF token the CSRF layer has checked).
#[utoipa::path(post, path = "/api/token", tag = "tokens", operation_id = "issue_token",
    request_body(content = Credentials, description = "credentials; without a body, the caller's cookie session"),
    security((), ("session_cookie" = [], "csrf_token" = [])),
    responses(
        (status = 200, body = TokenView, headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "`invalid_credentials`, or no body and no session"),
        (status = 403, body = ErrorBody, description = "`csrf_failed`"),
        (status = 409, body = ErrorBody, description = "`session_limit`: token families count as sessions"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`too_many_attempts` (with `Retry-After`)"),
        (status = 503, body = ErrorBody),
    ))]
pub async fn issue(
    State(app): State<SharedState>,
    ClientIp(client): ClientIp,
    session: Session,
    OptionalJson(credentials): OptionalJson<Credentials>,
) -> Result<Response, ApiError> {
    let (user, roles) = match credentials {
        Some(c) => {
            // Token clients are programs, not browsers: no device cookie,
            // so their failures count on the user's shared counter.
            let user = app
                .accounts
                .verify_credentials(&c.username, c.password, client, None)
                .await
                .inspect_err(|e| {
                    if let Some(event) = crate::events::sign_in_refused(&c.username, client, e) {
                        app.events.record(event);
                    }
                })?;
            (user.name, user.roles)
        }
        None => session
            .with_current(|s| (s.record.user_id.clone(), s.record.roles.clone()))
            .ok_or_else(ApiError::unauthenticated)?,
    };
    // The same client metadata as a cookie session: the peer and a device label.
    let (family, refresh) = app.families.start(&user, &roles, session.client()).await?;
    metrics::counter!(metric::TOKENS_ISSUED).increment(1);
    tracing::info!(target: "sessiond::security", event = "token_issued", user = %user, sid = %family.key.handle());
    app.events
        .record(crate::events::SecurityEvent::new("token_issued", Some(&user)).from_ip(client));
    token_response(&app, &user, &roles, &refresh).await
}

/// `POST /api/token/refresh`: spends a refresh token for a new pair. A
/// refresh token spent twice (outside a short grace for lost answers)
/// revokes its whole family.
#[utoipa::path(post, path = "/api/token/refresh", tag = "tokens", operation_id = "refresh_token",
    request_body(content(
        (RefreshRequest = "application/json"),
        (RefreshForm = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, body = TokenView, headers(("cache-control" = String, description = "`no-store`"))),
        (status = 400, body = ErrorBody, description = "`invalid_grant`, `unsupported_grant_type`, or a malformed body"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn refresh(
    State(app): State<SharedState>,
    body: JsonOrForm<RefreshRequest>,
) -> Result<Response, ApiError> {
    let is_form = body.is_form();
    let request = body.value;
    let grant_type_ok = match request.grant_type.as_deref() {
        Some(g) => g == "refresh_token",
        // The OAuth form encoding requires it; JSON callers may leave it out.
        None => !is_form,
    };
    if !grant_type_ok {
        return Err(ErrorCode::UnsupportedGrantType.into());
    }
    let presented = RefreshToken::parse(&request.refresh_token).ok_or(ErrorCode::InvalidGrant)?;
    let outcome = app.families.refresh(&presented).await?;
    let label = match &outcome {
        Refreshed::Rotated { replayed: true, .. } => "grace_replay",
        Refreshed::Rotated { .. } => "rotated",
        Refreshed::Theft { .. } => "reuse_detected",
        Refreshed::Invalid => "invalid",
    };
    metrics::counter!(metric::TOKEN_REFRESHES, "outcome" => label).increment(1);
    match outcome {
        Refreshed::Rotated {
            token,
            user,
            roles,
            replayed,
        } => {
            if replayed {
                tracing::info!(target: "sessiond::security", event = "refresh_replayed_in_grace", user = %user, sid = %token.key.handle());
            }
            token_response(&app, &user, &roles, &token).await
        }
        Refreshed::Theft { user } => {
            tracing::warn!(target: "sessiond::security", event = "refresh_token_reused", user = %user, sid = %presented.key.handle(), "a spent refresh token came back: the family is revoked");
            app.events.record(
                crate::events::SecurityEvent::new("refresh_token_reused", Some(&user))
                    .with_detail("a spent refresh token came back: its family is revoked"),
            );
            Err(ErrorCode::InvalidGrant.into())
        }
        Refreshed::Invalid => Err(ErrorCode::InvalidGrant.into()),
    }
}

/// `POST /api/token/revoke` (RFC 7009): ends the family of a refresh token
/// or of an access token's session. Always 200 for a well-formed request,
/// whether or not the token was valid, so that it cannot be used as an oracle.
#[utoipa::path(post, path = "/api/token/revoke", tag = "tokens", operation_id = "revoke_token",
    request_body(content(
        (RevokeRequest = "application/json"),
        (RevokeRequest = "application/x-www-form-urlencoded"),
    )),
    responses(
        (status = 200, body = Empty, description = "revoked, or nothing to revoke"),
        (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke(
    State(app): State<SharedState>,
    body: JsonOrForm<RevokeRequest>,
) -> Result<Json<Empty>, ApiError> {
    let token = body.value.token;
    let revoked = if let Some(refresh) = RefreshToken::parse(&token) {
        app.families.revoke(&refresh).await?
    } else if let Ok(claims) = app.tokens.verify(&token).await
        && let Ok(key) = sessiond_core::SessionKey::from_handle(&claims.sid)
    {
        app.sessions.delete(&key).await?
    } else {
        false
    };
    if revoked {
        tracing::info!(target: "sessiond::security", event = "token_family_revoked");
    }
    Ok(Json(Empty {}))
}

/// `GET /.well-known/jwks.json`: the public keys that can verify a live token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses(
        (status = 200, content((sessiond_jwt::Jwks = "application/jwk-set+json")),
            headers(("cache-control" = String, description = "`public, max-age=300`"))),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn jwks(State(app): State<SharedState>) -> Result<impl IntoResponse, ApiError> {
    Ok((
        [
            (header::CONTENT_TYPE, "application/jwk-set+json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        app.tokens.jwks().await?,
    ))
}
