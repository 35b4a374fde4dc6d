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

/// The body of `POST /api/v1/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSessionRequest {
    /// The user the calling backend has authenticated itself.
    user: String,
    /// Attributes to start with (JSON values).
    #[serde(default)]
    attributes: Map<String, Value>,
}

async fn user_roles(app: &SharedState, name: &str) -> Result<Vec<String>, ApiError> {
    match app.store.backend.get_user(name).await? {
        Some(user) => Ok(user.roles),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such user")),
    }
}

/// `POST /api/v1/sessions` `{"user", "attributes"}`: a new session for a
/// user the calling backend has authenticated (single sign-on bridges,
/// magic links). The token is in the answer once, with the attributes its
/// cookie should have. Scope `sessions:write`.
pub async fn create_session(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewSessionRequest>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let roles = user_roles(&app, &body.user).await?;
    let attributes = if body.attributes.is_empty() {
        Default::default()
    } else {
        super::account::attribute_changes(body.attributes)?
            .into_iter()
            .filter_map(|c| Some((c.name, c.value?)))
            .collect()
    };
    let (token, session) = app
        .sessions
        .create(sessiond_core::NewSession {
            user_id: body.user.clone(),
            roles,
            client: sessiond_core::ClientMeta::default(),
            attributes,
        })
        .await?;
    tracing::info!(target: "sessiond::security", event = "session_created_by_service", user = %body.user, by = %caller.0.name);
    let cookie = app.config.session_cookie();
    let mut view = session_json(&session);
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({
            "token": token.expose(),
            "user": view["user"].take(),
            "session": view["session"].take(),
            "cookie": {
                "name": cookie.name,
                "path": "/",
                "secure": cookie.secure,
                "http_only": true,
                "same_site": match cookie.same_site {
                    sessiond_axum::SameSite::Strict => "Strict",
                    sessiond_axum::SameSite::Lax => "Lax",
                },
                "max_age": app.config.policy().idle_timeout.as_secs(),
            },
        })),
    ))
}

/// Largest page of a listing.
const MAX_PAGE: usize = 100;

/// `?limit&cursor` of a listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET /api/v1/users/{id}/sessions?limit&cursor`: the user's live
/// sessions, oldest first, a page at a time (the cursor is opaque: the
/// last session's public id). Scope `sessions:read`.
pub async fn user_sessions(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(user): axum::extract::Path<String>,
    query: Result<axum::extract::Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    let axum::extract::Query(page) =
        query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let limit = page.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit is 1 to {MAX_PAGE}"),
        ));
    }
    user_roles(&app, &user).await?;
    let mut sessions = app.sessions.list_for_user(&user).await?;
    sessions.sort_by(|a, b| {
        (a.record.created_at, a.key.handle()).cmp(&(b.record.created_at, b.key.handle()))
    });
    let start = match &page.cursor {
        None => 0,
        Some(after) => match sessions.iter().position(|s| s.key.handle() == *after) {
            Some(i) => i + 1,
            // The session the cursor named has ended: start after the
            // sessions created no later than... nothing to anchor on, so
            // the cursor is refused rather than a page skipped or repeated.
            None => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "the cursor names a session that has ended; list again from the start",
                ));
            }
        },
    };
    let page: Vec<&StoredSession> = sessions.iter().skip(start).take(limit).collect();
    let next = (start + page.len() < sessions.len())
        .then(|| page.last().map(|s| s.key.handle()))
        .flatten();
    let items: Vec<Value> = page
        .iter()
        .map(|s| session_json(s)["session"].clone())
        .collect();
    Ok(Json(
        json!({ "user": user, "sessions": items, "next_cursor": next }),
    ))
}

/// `?except=<public id>` of a revocation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Except {
    #[serde(default)]
    except: Option<String>,
}

/// `DELETE /api/v1/users/{id}/sessions[?except=<public id>]`: ends the
/// user's sessions (all, or all but one). Scope `sessions:write`.
pub async fn revoke_user_sessions(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(user): axum::extract::Path<String>,
    query: Result<axum::extract::Query<Except>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let axum::extract::Query(q) =
        query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    user_roles(&app, &user).await?;
    let except = q.except.as_deref().map(public_id).transpose()?;
    let n = app.sessions.revoke_user(&user, except.as_ref()).await?;
    tracing::info!(target: "sessiond::security", event = "revoke_all", user = %user, by = %caller.0.name, revoked = n);
    Ok(Json(json!({ "user": user, "revoked": n })))
}

fn public_id(id: &str) -> Result<sessiond_core::SessionKey, ApiError> {
    sessiond_core::SessionKey::from_handle(id)
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such session"))
}

/// `DELETE /api/v1/sessions/{public id}`: ends one session; 404 if there
/// is none. Scope `sessions:write`.
pub async fn revoke_session(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let key = public_id(&id)?;
    if !app.sessions.delete(&key).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "no such session"));
    }
    tracing::info!(target: "sessiond::security", event = "session_revoked_by_service", session = %id, by = %caller.0.name);
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `PATCH /api/v1/sessions/{public id}/attributes`: field-level changes
/// (`null` removes), as the session's own attributes API. Scope
/// `sessions:write`.
pub async fn patch_session_attributes(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
    ApiJson(changes): ApiJson<Map<String, Value>>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let key = public_id(&id)?;
    let changes = super::account::attribute_changes(changes)?;
    let version = app
        .sessions
        .update_attributes(&key, &changes, None)
        .await
        .map_err(|e| match e {
            sessiond_core::StoreError::NotFound => {
                ApiError::new(ErrorCode::NotFound, "no such session")
            }
            e => e.into(),
        })?;
    Ok(Json(json!({ "version": version })))
}

/// A user as the service API shows it (never the password hash).
fn user_json(u: &sessiond_core::UserRecord) -> Value {
    json!({
        "id": u.name,
        "roles": u.roles,
        "disabled": u.disabled,
        "created_at": u.created_at / 1000,
        "updated_at": u.updated_at / 1000,
    })
}

/// `?limit&cursor&q` of the user listing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
    /// Names starting with this.
    #[serde(default)]
    q: Option<String>,
}

fn limit_of(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit is 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// `GET /api/v1/users?limit&cursor&q`: users by name, a page at a time
/// (the cursor is opaque: the last name, base64url), `q` a name prefix.
/// Scope `users:read`.
pub async fn list_users(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    query: Result<axum::extract::Query<UserPage>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    caller.require(ServiceScope::UsersRead)?;
    let axum::extract::Query(page) =
        query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let limit = limit_of(page.limit)?;
    let after = match &page.cursor {
        None => None,
        Some(c) => Some(
            URL_SAFE_NO_PAD
                .decode(c)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::BadRequest, "the cursor is not one of ours")
                })?,
        ),
    };
    let prefix = page.q.unwrap_or_default();
    let mut users: Vec<_> = app
        .store
        .backend
        .list_users()
        .await?
        .into_iter()
        .filter(|u| u.name.starts_with(&prefix))
        .filter(|u| after.as_ref().is_none_or(|a| u.name > *a))
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let more = users.len() > limit;
    users.truncate(limit);
    let next = more
        .then(|| users.last().map(|u| URL_SAFE_NO_PAD.encode(&u.name)))
        .flatten();
    let items: Vec<Value> = users.iter().map(user_json).collect();
    Ok(Json(json!({ "users": items, "next_cursor": next })))
}

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    password: String,
    #[serde(default = "default_roles")]
    roles: Vec<String>,
}

fn default_roles() -> Vec<String> {
    vec!["user".into()]
}

/// `POST /api/v1/users` `{"name", "password", "roles"}`: 201 with the
/// user; 409 if the name is taken. Scope `users:write`.
pub async fn create_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    let user = app
        .accounts
        .add_with_roles(&body.name, body.password, &body.roles)
        .await?;
    tracing::info!(target: "sessiond::security", event = "user_created_by_service", user = %user.name, by = %caller.0.name);
    Ok((axum::http::StatusCode::CREATED, Json(user_json(&user))))
}

fn no_such_user() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such user")
}

/// `GET /api/v1/users/{id}`. Scope `users:read`.
pub async fn get_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::UsersRead)?;
    let user = app
        .store
        .backend
        .get_user(&name)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(Json(user_json(&user)))
}

/// The body of `PATCH /api/v1/users/{id}`: any of the three.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default)]
    roles: Option<Vec<String>>,
    #[serde(default)]
    disabled: Option<bool>,
    /// A password set by an administrator (ends every session of the user).
    #[serde(default)]
    password: Option<String>,
}

/// `PATCH /api/v1/users/{id}` `{"roles"?, "disabled"?, "password"?}`: a
/// role change, disabling or a new password ends every session and token
/// family of the user at once (see `Accounts::update`). Scope `users:write`.
pub async fn update_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(name): axum::extract::Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    if change.roles.is_none() && change.disabled.is_none() && change.password.is_none() {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "send roles, disabled or password",
        ));
    }
    let missing = |e: crate::accounts::AccountError| match e {
        crate::accounts::AccountError::Missing(_) => no_such_user(),
        e => e.into(),
    };
    let mut ended = 0;
    if let Some(password) = change.password {
        ended += app
            .accounts
            .set_password(&name, password)
            .await
            .map_err(missing)?;
    }
    let (user, more) = app
        .accounts
        .update(&name, change.roles, change.disabled)
        .await
        .map_err(missing)?;
    tracing::info!(target: "sessiond::security", event = "user_changed_by_service", user = %name, by = %caller.0.name);
    let mut body = user_json(&user);
    body["sessions_ended"] = json!(ended + more);
    Ok(Json(body))
}

/// `DELETE /api/v1/users/{id}`: the user and every session and token
/// family of theirs. Scope `users:write`.
pub async fn delete_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    app.accounts.delete(&name).await?.ok_or_else(no_such_user)?;
    tracing::info!(target: "sessiond::security", event = "user_deleted_by_service", user = %name, by = %caller.0.name);
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// A service key as the API shows it (never the key or its hash).
fn key_json(k: &ServiceKey) -> Value {
    json!({
        "name": k.name,
        "scopes": k.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        "created_at": k.created_at,
        "last_used": k.last_used,
    })
}

/// `GET /api/v1/service-keys`: every key, by name. Scope `admin`.
pub async fn list_service_keys(
    State(app): State<SharedState>,
    caller: ServiceCaller,
) -> Result<Json<Value>, ApiError> {
    caller.require(ServiceScope::Admin)?;
    let keys: Vec<Value> = app
        .service_keys
        .list()
        .await?
        .iter()
        .map(key_json)
        .collect();
    Ok(Json(json!({ "service_keys": keys })))
}

/// The body of `POST /api/v1/service-keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceKey {
    name: String,
    scopes: Vec<String>,
}

/// `POST /api/v1/service-keys` `{"name", "scopes"}`: 201 with the key,
/// shown this once. Scope `admin`.
pub async fn create_service_key(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewServiceKey>,
) -> Result<(axum::http::StatusCode, Json<Value>), ApiError> {
    caller.require(ServiceScope::Admin)?;
    let scopes = body
        .scopes
        .iter()
        .map(|s| s.parse::<ServiceScope>())
        .collect::<Result<_, _>>()?;
    let (record, secret) = app.service_keys.add(&body.name, scopes).await?;
    tracing::info!(target: "sessiond::security", event = "service_key_created_by_service", name = %record.name, by = %caller.0.name);
    let mut out = key_json(&record);
    out["key"] = json!(secret);
    Ok((axum::http::StatusCode::CREATED, Json(out)))
}

/// `DELETE /api/v1/service-keys/{name}`: revoked on every node at once;
/// 404 if there is none. Scope `admin`.
pub async fn revoke_service_key(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(ServiceScope::Admin)?;
    if !app.service_keys.revoke(&name).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "no such service key"));
    }
    tracing::info!(target: "sessiond::security", event = "service_key_revoked_by_service", name = %name, by = %caller.0.name);
    Ok(axum::http::StatusCode::NO_CONTENT)
}
