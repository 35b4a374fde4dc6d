//! The service API (`/api/v1`) for other backends, authenticated by
//! service keys ([`crate::service_keys`]): `whoami` (is this cookie a live
//! session, and whose?) and token introspection (RFC 7662).
//!
//! These are not cookie requests: the bearer layer drops the cookie of a
//! request that carries a service key, so neither CSRF nor the caller's
//! own session is involved.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sessiond_axum::{ApiError, ApiJson, ErrorCode, JsonOrForm};
use sessiond_core::StoredSession;
use sessiond_jwt::TokenVerifier as _;

use crate::service_keys::{PREFIX, ServiceKey, ServiceKeyError, ServiceScope};
use crate::state::SharedState;
use crate::tokens::RefreshToken;

impl From<ServiceKeyError> for ApiError {
    fn from(e: ServiceKeyError) -> Self {
        match e {
            ServiceKeyError::Store(e) => e.into(),
            ServiceKeyError::Exists(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            ServiceKeyError::BadName(_)
            | ServiceKeyError::UnknownScope(_)
            | ServiceKeyError::NoScope => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            ServiceKeyError::Contended => ApiError::from(ErrorCode::Busy).with_retry_after(1),
            ServiceKeyError::Corrupt(_) => {
                tracing::error!(error = %e, "the stored service keys cannot be read");
                ApiError::internal()
            }
        }
    }
}

/// The caller of a service-API route: a live service key. Missing or
/// unknown: 401 `invalid_service_key`.
#[derive(Debug, Clone)]
pub struct ServiceCaller(pub ServiceKey);

impl ServiceCaller {
    /// 403 `insufficient_scope` unless the key has `scope`.
    pub fn require(&self, scope: ServiceScope) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this operation needs the scope {scope}"),
            ))
        }
    }
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && key.starts_with(PREFIX)).then_some(key)
}

impl FromRequestParts<SharedState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        let refused = || ApiError::from(ErrorCode::InvalidServiceKey);
        let secret = presented(&parts.headers).ok_or_else(refused)?;
        let key = app
            .service_keys
            .authenticate(secret)
            .await?
            .ok_or_else(refused)?;
        Ok(Self(key))
    }
}

/// The body of `whoami`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhoamiRequest {
    /// The session cookie's value, as the backend's user sent it.
    token: String,
}

/// A session as the service API shows it: the identity, the times, the
/// public id and the attributes (never the token).
fn session_json(s: &StoredSession) -> Value {
    let r = &s.record;
    let attributes: Map<String, Value> = r
        .attributes
        .iter()
        // The server's own bookkeeping (refresh families) is not the
        // application's business.
        .filter(|(k, _)| !k.starts_with(crate::tokens::RESERVED_PREFIX))
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
        .collect();
    json!({
        "user": { "id": r.user_id, "roles": r.roles },
        "session": {
            "id": s.key.handle(),
            "created_at": r.created_at / 1000,
            "last_seen": r.last_seen / 1000,
            "idle_expires_at": r.idle_expires_at / 1000,
            "absolute_expires_at": r.absolute_expires_at / 1000,
            "attributes": attributes,
        },
    })
}

/// `POST /api/v1/sessions/whoami` `{"token"}`: the session and identity a
/// cookie value stands for (renewed as a browser request would renew
/// it), or 401 `unauthenticated`. Scope `sessions:read`.
pub async fn whoami(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<WhoamiRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    let verified = app
        .sessions
        .verify(&body.token)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(session_json(&verified.session)))
}

/// The form of an introspection request (RFC 7662 §2.1).
#[derive(Debug, Deserialize)]
pub struct IntrospectRequest {
    token: String,
    /// A hint the server may ignore (§2.1); checked when given.
    #[serde(default)]
    token_type_hint: Option<String>,
}

/// `POST /api/v1/introspect` (RFC 7662, form `token=`): `{"active": true,
/// …}` for a live access token, refresh token or session token, `{"active":
/// false}` for anything else. Scope `sessions:read`.
pub async fn introspect(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    JsonOrForm { value: body, .. }: JsonOrForm<IntrospectRequest>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    if let Some(hint) = &body.token_type_hint
        && !matches!(hint.as_str(), "access_token" | "refresh_token" | "session")
    {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "token_type_hint is access_token, refresh_token or session",
        ));
    }
    let inactive = || Json(json!({ "active": false }));
    let token = body.token.trim();
    // An access token is a JWT: three dot-separated parts.
    if token.split('.').count() == 3 {
        return Ok(match app.tokens.verify(token).await {
            Ok(claims) => Json(json!({
                "active": true,
                "token_type": "access_token",
                "sub": claims.sub,
                "roles": claims.roles,
                "iss": claims.iss,
                "aud": claims.aud,
                "iat": claims.iat,
                "nbf": claims.nbf,
                "exp": claims.exp,
                "jti": claims.jti,
                "sid": claims.sid,
            })),
            Err(sessiond_jwt::VerifyError::Unavailable(_)) => {
                return Err(ApiError::store_unavailable());
            }
            Err(_) => inactive(),
        });
    }
    if let Some(refresh) = RefreshToken::parse(token) {
        return Ok(match app.families.current(&refresh).await? {
            Some(family) => {
                let mut view = session_json(&family);
                Json(json!({
                    "active": true,
                    "token_type": "refresh_token",
                    "sub": family.record.user_id,
                    "exp": family.record.expires_at() / 1000,
                    "sid": family.key.handle(),
                    "session": view["session"].take(),
                }))
            }
            None => inactive(),
        });
    }
    Ok(match app.sessions.verify(token).await? {
        Some(verified) => {
            let s = &verified.session;
            let mut view = session_json(s);
            Json(json!({
                "active": true,
                "token_type": "session",
                "sub": s.record.user_id,
                "roles": s.record.roles,
                "exp": s.record.expires_at() / 1000,
                "iat": s.record.created_at / 1000,
                "sid": s.key.handle(),
                "session": view["session"].take(),
            }))
        }
        None => inactive(),
    })
}
