//! Sessions through the service API: `whoami`, introspection, and a
//! user's sessions (start, list, change, end).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use sessiond_axum::{ApiError, ApiJson, ErrorCode, JsonOrForm};
use sessiond_core::StoredSession;
use sessiond_jwt::TokenVerifier as _;
use utoipa::ToSchema;

use super::views::{
    AttributesVersion, CookieAttributes, Identity, Introspection, NewSessionView, Revoked,
    SessionInfo, SessionsPage, Whoami,
};
use super::{Page, ServiceCaller, limit_of, query};
use crate::routes::errors::ErrorBody;
use crate::service_keys::ServiceScope;
use crate::state::SharedState;
use crate::tokens::RefreshToken;

/// The body of `whoami`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhoamiRequest {
    /// The session cookie's value, as the backend's user sent it.
    token: String,
}

/// The identity and session a cookie value stands for (renewed as a
/// browser request would renew it), or 401 `unauthenticated`.
#[utoipa::path(post, path = "/api/v1/sessions/whoami", tag = "service",
    request_body = WhoamiRequest,
    security(("service_key" = ["sessions:read"])),
    responses(
        (status = 200, body = Whoami, description = "a live session"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "no such session, or no valid service key"),
        (status = 403, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn whoami(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<WhoamiRequest>,
) -> Result<Json<Whoami>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    let verified = app
        .sessions
        .verify(&body.token)
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    Ok(Json(Whoami::of(&verified.session)))
}

/// The form of an introspection request (RFC 7662 §2.1). Other
/// parameters are allowed and ignored, as the RFC asks.
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    token: String,
    /// `access_token`, `refresh_token` or `session`. Ignored: every kind is
    /// tried, as RFC 7662 asks of a server that cannot find the token by
    /// its hint.
    #[serde(default)]
    #[schema(nullable = false)]
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7662: `{"active": true, …}` for a live access token, refresh token
/// or session token, `{"active": false}` for anything else.
#[utoipa::path(post, path = "/api/v1/introspect", tag = "service",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security(("service_key" = ["sessions:read"])),
    responses(
        (status = 200, body = Introspection),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn introspect(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    JsonOrForm { value: body, .. }: JsonOrForm<IntrospectRequest>,
) -> Result<Json<Introspection>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    let token = body.token.trim();
    // An access token is a JWT: three dot-separated parts.
    if token.split('.').count() == 3 {
        return match app.tokens.verify(token).await {
            Ok(claims) => Ok(Json(Introspection {
                active: true,
                token_type: Some("access_token".into()),
                sub: Some(claims.sub),
                roles: Some(claims.roles),
                iss: Some(claims.iss),
                aud: Some(claims.aud),
                iat: Some(claims.iat),
                nbf: Some(claims.nbf),
                exp: Some(claims.exp),
                jti: Some(claims.jti),
                sid: Some(claims.sid),
                session: None,
            })),
            Err(sessiond_jwt::VerifyError::Unavailable(_)) => Err(ApiError::store_unavailable()),
            Err(_) => Ok(Json(Introspection::default())),
        };
    }
    let (kind, session) = match RefreshToken::parse(token) {
        Some(refresh) => ("refresh_token", app.families.current(&refresh).await?),
        None => (
            "session",
            app.sessions.verify(token).await?.map(|v| v.session),
        ),
    };
    Ok(Json(session.map_or_else(Introspection::default, |s| {
        Introspection {
            active: true,
            token_type: Some(kind.into()),
            sub: Some(s.record.user_id.clone()),
            roles: Some(s.record.roles.clone()),
            exp: Some(s.record.expires_at() / 1000),
            iat: Some(s.record.created_at / 1000),
            sid: Some(s.key.handle()),
            session: Some(SessionInfo::of(&s)),
            ..Introspection::default()
        }
    })))
}

/// The body of `POST /api/v1/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSessionRequest {
    /// The user the calling backend has authenticated itself.
    user: String,
    /// Attributes to start with (JSON values).
    #[serde(default)]
    #[schema(value_type = super::views::NewAttributes)]
    attributes: Map<String, Value>,
    /// "Keep me signed in": the remembered timeouts and a cookie with
    /// `Max-Age` (when `[session] remember_me` is on).
    #[serde(default)]
    remember: bool,
}

pub(super) async fn user_roles(app: &SharedState, name: &str) -> Result<Vec<String>, ApiError> {
    match app.store.backend.get_user(name).await? {
        Some(user) => Ok(user.roles),
        None => Err(ApiError::new(ErrorCode::NotFound, "no such user")),
    }
}

/// A new session for a user the calling backend has authenticated (single
/// sign-on bridges, magic links). The token is in the answer once, with
/// the attributes its cookie should have.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "service",
    request_body = NewSessionRequest,
    security(("service_key" = ["sessions:write"])),
    responses(
        (status = 201, body = NewSessionView, links(
            ("revoke" = (operation_id = "revoke_session", parameters(("id" = "$response.body#/session/id")))),
            ("attributes" = (operation_id = "patch_session_attributes", parameters(("id" = "$response.body#/session/id")))),
            ("sessions" = (operation_id = "user_sessions", parameters(("id" = "$response.body#/user/id")))),
        )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "no such user"),
        (status = 409, body = ErrorBody, description = "`session_limit`: the user has as many sessions as allowed and the limit refuses new ones"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn create_session(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewSessionRequest>,
) -> Result<(StatusCode, Json<NewSessionView>), ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let roles = user_roles(&app, &body.user).await?;
    let attributes = if body.attributes.is_empty() {
        Default::default()
    } else {
        crate::routes::account::attribute_changes(body.attributes)?
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
            remember: body.remember,
        })
        .await?;
    tracing::info!(target: "sessiond::security", event = "session_created_by_service", user = %body.user, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_created_session", Some(&body.user))
            .by(&format!("service key {}", caller.0.name)),
    );
    let cookie = app.config.session_cookie();
    Ok((
        StatusCode::CREATED,
        Json(NewSessionView {
            token: token.expose(),
            user: Identity {
                id: session.record.user_id.clone(),
                roles: session.record.roles.clone(),
            },
            session: SessionInfo::of(&session),
            cookie: CookieAttributes {
                name: cookie.name,
                path: "/".into(),
                secure: cookie.secure,
                http_only: true,
                same_site: match cookie.same_site {
                    sessiond_axum::SameSite::Strict => "Strict".into(),
                    sessiond_axum::SameSite::Lax => "Lax".into(),
                },
                max_age: session.record.remembered().then(|| {
                    session
                        .record
                        .expires_at()
                        .saturating_sub(app.sessions.now())
                        .div_ceil(1000)
                }),
            },
        }),
    ))
}

/// The user's live sessions, oldest first, a page at a time (the cursor
/// is opaque: pass back the `next_cursor` of the previous page).
#[utoipa::path(get, path = "/api/v1/users/{id}/sessions", tag = "service",
    params(("id" = String, Path, description = "the user"), Page),
    security(("service_key" = ["sessions:read"])),
    responses(
        (status = 200, body = SessionsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn user_sessions(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(user): Path<String>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<SessionsPage>, ApiError> {
    caller.require(ServiceScope::SessionsRead)?;
    let page = query(page)?;
    let limit = limit_of(page.limit)?;
    user_roles(&app, &user).await?;
    let mut sessions = app.sessions.list_for_user(&user).await?;
    sessions.sort_by_key(|s| (s.record.created_at, s.key.handle()));
    // The cursor is the last session's place in the order (creation time,
    // public id): a page goes on from there even if that session ended.
    let place = |s: &StoredSession| (s.record.created_at, s.key.handle());
    let start = match &page.cursor {
        None => 0,
        Some(cursor) => {
            let after = cursor
                .split_once('.')
                .and_then(|(ms, id)| Some((ms.parse::<u64>().ok()?, id.to_owned())))
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::BadRequest, "the cursor is not one of ours")
                })?;
            sessions.iter().take_while(|s| place(s) <= after).count()
        }
    };
    let page: Vec<&StoredSession> = sessions.iter().skip(start).take(limit).collect();
    let next_cursor = (start + page.len() < sessions.len())
        .then(|| {
            page.last()
                .map(|s| format!("{}.{}", s.record.created_at, s.key.handle()))
        })
        .flatten();
    Ok(Json(SessionsPage {
        user,
        sessions: page.into_iter().map(SessionInfo::of).collect(),
        next_cursor,
    }))
}

/// `?except=<public id>` of a revocation.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Except {
    /// A session to keep.
    #[serde(default)]
    except: Option<String>,
}

fn public_id(id: &str) -> Result<sessiond_core::SessionKey, ApiError> {
    sessiond_core::SessionKey::from_handle(id)
        .map_err(|_| ApiError::new(ErrorCode::NotFound, "no such session"))
}

/// Ends the user's sessions and token families: all, or all but one.
#[utoipa::path(delete, path = "/api/v1/users/{id}/sessions", tag = "service",
    params(("id" = String, Path, description = "the user"), Except),
    security(("service_key" = ["sessions:write"])),
    responses(
        (status = 200, body = Revoked),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_user_sessions(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(user): Path<String>,
    except: Result<Query<Except>, QueryRejection>,
) -> Result<Json<Revoked>, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let q = query(except)?;
    user_roles(&app, &user).await?;
    let except = q.except.as_deref().map(public_id).transpose()?;
    let revoked = app.sessions.revoke_user(&user, except.as_ref()).await?;
    tracing::info!(target: "sessiond::security", event = "revoke_all", user = %user, by = %caller.0.name, revoked);
    app.events.record(
        crate::events::SecurityEvent::new("service_revoked_sessions", Some(&user))
            .by(&format!("service key {}", caller.0.name)),
    );
    Ok(Json(Revoked { user, revoked }))
}

/// Ends one session; 404 if there is none.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "service",
    params(("id" = String, Path, description = "the session's public id")),
    security(("service_key" = ["sessions:write"])),
    responses(
        (status = 204, description = "ended"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_session(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let key = public_id(&id)?;
    if !app.sessions.delete(&key).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "no such session"));
    }
    tracing::info!(target: "sessiond::security", event = "session_revoked_by_service", session = %id, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_revoked_session", None)
            .by(&format!("service key {}", caller.0.name)),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Field-level attribute changes (`null` removes), as the session's own
/// attributes API.
#[utoipa::path(patch, path = "/api/v1/sessions/{id}/attributes", tag = "service",
    params(("id" = String, Path, description = "the session's public id")),
    request_body(content = super::views::AttributeChanges),
    security(("service_key" = ["sessions:write"])),
    responses(
        (status = 200, body = AttributesVersion),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn patch_session_attributes(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(id): Path<String>,
    ApiJson(changes): ApiJson<Map<String, Value>>,
) -> Result<Json<AttributesVersion>, ApiError> {
    caller.require(ServiceScope::SessionsWrite)?;
    let key = public_id(&id)?;
    let changes = crate::routes::account::attribute_changes(changes)?;
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
    Ok(Json(AttributesVersion { version }))
}
