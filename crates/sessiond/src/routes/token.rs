//! The token endpoints: issue, refresh, revoke, JWKS.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use sessiond_axum::{ApiError, Session};
use sessiond_core::{ClientMeta, NewSession};
use sessiond_jwt::TokenVerifier;

use crate::extract::JsonOrForm;
use crate::routes::auth::check_credentials;
use crate::state::SharedState;
use crate::tokens::{self, RefreshToken, Refreshed, TokenError};

/// `POST /api/token` body with credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    username: String,
    password: String,
}

/// `POST /api/token/refresh` body (JSON, or the OAuth form encoding).
#[derive(Debug, Deserialize)]
pub struct RefreshRequest {
    refresh_token: String,
    #[serde(default)]
    grant_type: Option<String>,
}

/// `POST /api/token/revoke` body (RFC 7009).
#[derive(Debug, Deserialize)]
pub struct RevokeRequest {
    token: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted as RFC 7009 allows; the token's shape says what it is
    token_type_hint: Option<String>,
}

fn invalid_grant() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "the refresh token is invalid, expired or revoked",
    )
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Store(e) => e.into(),
            TokenError::Key(e) => {
                tracing::error!(error = %e, "token signing failed");
                ApiError::internal()
            }
        }
    }
}

/// The token response (RFC 6749 §5.1), never cached.
fn token_response(access_token: String, expires_in: u64, refresh: &RefreshToken) -> Response {
    let mut response = Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "refresh_token": refresh.expose(),
    }))
    .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn client_meta(headers: &HeaderMap, peer: SocketAddr) -> ClientMeta {
    ClientMeta {
        ip: Some(peer.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(256).collect()),
    }
}

/// `POST /api/token`: a new token family, for JSON credentials, or for the
/// caller's cookie session (whose CSRF token the CSRF layer has checked).
pub async fn issue(
    State(app): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (user, roles) = if body.is_empty() {
        match session.with_current(|s| (s.record.user_id.clone(), s.record.roles.clone())) {
            Some(who) => who,
            None => return ApiError::unauthenticated().into_response(),
        }
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
        if !is_json {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            )
            .into_response();
        }
        let credentials: Credentials = match serde_json::from_slice(&body) {
            Ok(c) => c,
            Err(e) if e.is_syntax() || e.is_eof() => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    "the body is not valid JSON",
                )
                .into_response();
            }
            Err(_) => {
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "send {\"username\": …, \"password\": …}",
                )
                .into_response();
            }
        };
        match check_credentials(&app, &credentials.username, credentials.password, peer).await {
            Ok(user) => (user.name, user.roles),
            Err(e) => return e.into_response(),
        }
    };
    let (secret, attributes) = match tokens::new_family() {
        Ok(f) => f,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let new = NewSession {
        user_id: user.clone(),
        roles: roles.clone(),
        client: client_meta(&headers, peer),
        attributes,
    };
    let (_, family) = match app.sessions.create(new).await {
        Ok(created) => created,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let access = match app.tokens.issue_access(&user, &roles, &family.key).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    metrics::counter!("sessiond_tokens_issued_total").increment(1);
    tracing::info!(target: "sessiond::security", event = "token_issued", user = %user, sid = %family.key.handle());
    token_response(
        access,
        app.tokens.settings().access_ttl.as_secs(),
        &tokens::family_token(family.key, secret),
    )
}

/// `POST /api/token/refresh`: spends a refresh token for a new pair.
pub async fn refresh(State(app): State<SharedState>, body: JsonOrForm<RefreshRequest>) -> Response {
    let request = body.value;
    if request
        .grant_type
        .as_deref()
        .is_some_and(|g| g != "refresh_token")
        || (body.is_form && request.grant_type.is_none())
    {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be refresh_token",
        )
        .into_response();
    }
    let Some(presented) = RefreshToken::parse(&request.refresh_token) else {
        return invalid_grant().into_response();
    };
    let grace = app.tokens.settings().refresh_grace;
    match tokens::refresh(&app.sessions, &presented, grace).await {
        Ok(Refreshed::Rotated {
            token,
            user,
            roles,
            replayed,
        }) => {
            let outcome = if replayed { "grace_replay" } else { "rotated" };
            metrics::counter!("sessiond_token_refreshes_total", "outcome" => outcome).increment(1);
            if replayed {
                tracing::info!(target: "sessiond::security", event = "refresh_replayed_in_grace", user = %user, sid = %token.key.handle());
            }
            match app.tokens.issue_access(&user, &roles, &token.key).await {
                Ok(access) => {
                    token_response(access, app.tokens.settings().access_ttl.as_secs(), &token)
                }
                Err(e) => ApiError::from(e).into_response(),
            }
        }
        Ok(Refreshed::Theft { user }) => {
            metrics::counter!("sessiond_token_refreshes_total", "outcome" => "reuse_detected")
                .increment(1);
            tracing::warn!(target: "sessiond::security", event = "refresh_token_reused", user = %user, sid = %presented.key.handle(), "a spent refresh token came back: the family is revoked");
            invalid_grant().into_response()
        }
        Ok(Refreshed::Invalid) => {
            metrics::counter!("sessiond_token_refreshes_total", "outcome" => "invalid")
                .increment(1);
            invalid_grant().into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `POST /api/token/revoke` (RFC 7009): ends the family of a refresh token
/// or of an access token's session. Always 200 for a well-formed request,
/// whether or not the token was valid, so that it cannot be used as an oracle.
pub async fn revoke(State(app): State<SharedState>, body: JsonOrForm<RevokeRequest>) -> Response {
    let token = body.value.token;
    let result = if let Some(refresh) = RefreshToken::parse(&token) {
        tokens::revoke(&app.sessions, &refresh).await
    } else if let Ok(claims) = app.tokens.verify(&token).await {
        match sessiond_core::SessionKey::from_handle(&claims.sid) {
            Ok(key) => app.sessions.delete(&key).await.map_err(TokenError::from),
            Err(_) => Ok(false),
        }
    } else {
        Ok(false)
    };
    match result {
        Ok(revoked) => {
            if revoked {
                tracing::info!(target: "sessiond::security", event = "token_family_revoked");
            }
            Json(json!({})).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `GET /.well-known/jwks.json`: the public keys that can verify a live token.
pub async fn jwks(State(app): State<SharedState>) -> Response {
    match app.tokens.jwks().await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/jwk-set+json"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            body,
        )
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
