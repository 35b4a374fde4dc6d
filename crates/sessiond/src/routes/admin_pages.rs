//! The admin console (role `admin`, enforced by the router's role layer):
//! an overview, users (search, roles, access, a temporary password, their
//! sessions) and keys (signing-key rotation, service keys). Server-rendered
//! from the same layout as the user's pages; every action is a form POST
//! with the CSRF token, and needs a recent password proof (the prompt
//! comes first when the last one is too old). The domain does the work:
//! `Accounts`, the session engine, `TokenService`, `ServiceKeys`.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use serde::Deserialize;
use sessiond_axum::{ApiError, CurrentUser, ErrorCode, JsonOrForm, Session};
use sessiond_core::{SessionKey, StoreError};

use crate::accounts::AccountError;
use crate::routes::SessionView;
use crate::routes::pages::{DeviceRow, SignedIn, When, reauth_page, render};
use crate::routes::reauth::recent_enough;
use crate::state::SharedState;

/// Users on one page of the list.
const PAGE: usize = 25;

#[derive(Template)]
#[template(path = "admin.html")]
struct Overview {
    title: &'static str,
    signed_in: Option<SignedIn>,
    logins: usize,
    failures: usize,
    sessions: Option<u64>,
    store: &'static str,
    breaker: &'static str,
    durable: bool,
}

/// `GET /admin`: what the store holds and how it is.
pub async fn overview(
    State(app): State<SharedState>,
    session: Session,
) -> Result<Response, ApiError> {
    let backend = &app.store.backend;
    let hour_ago = app.sessions.now().saturating_sub(3_600_000);
    let recent = app
        .events
        .recent(&crate::events::EventFilter::default(), usize::MAX)
        .await?;
    let last_hour = recent.iter().take_while(|e| e.at >= hour_ago);
    let (mut logins, mut failures) = (0, 0);
    for e in last_hour {
        match e.kind.as_str() {
            "login_succeeded" => logins += 1,
            "login_failed" | "login_throttled" => failures += 1,
            _ => {}
        }
    }
    Ok(render(
        &Overview {
            title: "Admin",
            signed_in: SignedIn::of(&session),
            logins,
            failures,
            sessions: backend.count().await?,
            store: backend.backend_name(),
            breaker: app
                .store
                .breaker_state()
                .map_or("none", sessiond_core::BreakerState::as_str),
            durable: !app.store.durability_degraded(),
        },
        StatusCode::OK,
    ))
}

struct UserRow {
    name: String,
    roles: String,
    sessions: usize,
    last_sign_in: Option<When>,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage {
    title: &'static str,
    signed_in: Option<SignedIn>,
    q: String,
    users: Vec<UserRow>,
    next: Option<String>,
}

/// `?q&cursor` of the user list.
#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
    cursor: Option<String>,
}

/// `GET /admin/users`: users by name, a page at a time, `q` a prefix.
pub async fn users(
    State(app): State<SharedState>,
    session: Session,
    query: Result<Query<UsersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let (records, next) = app
        .accounts
        .page_of_users(&query.q, query.cursor.as_deref(), PAGE)
        .await?;
    let now = app.sessions.now();
    let mut users = Vec::with_capacity(records.len());
    for u in records {
        let sessions = app.sessions.list_for_user(&u.name).await?;
        users.push(UserRow {
            last_sign_in: sessions
                .iter()
                .map(|s| s.record.created_at)
                .max()
                .map(|t| When::of(t / 1000, now / 1000)),
            sessions: sessions.len(),
            roles: u.roles.join(", "),
            disabled: u.disabled,
            name: u.name,
        });
    }
    Ok(render(
        &UsersPage {
            title: "Users",
            signed_in: SignedIn::of(&session),
            q: query.q,
            users,
            next,
        },
        StatusCode::OK,
    ))
}

#[derive(Template)]
#[template(path = "admin_user.html")]
struct UserPage {
    title: String,
    signed_in: Option<SignedIn>,
    csrf_token: String,
    name: String,
    roles: String,
    disabled: bool,
    devices: Vec<DeviceRow>,
    notice: Option<&'static str>,
    error: Option<String>,
}

/// `?done=` after an action on a user.
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

fn user_notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "roles" => "Roles saved; the user's sessions ended.",
        "disabled" => "Disabled; the user's sessions ended.",
        "enabled" => "Enabled.",
        "password" => "Password set; the user's sessions ended.",
        "ended" => "Session ended.",
        "ended-all" => "All of the user's sessions ended.",
        "confirmed" => "Password confirmed. You can now do what you asked for.",
        _ => return None,
    })
}

async fn user_page(
    app: &SharedState,
    session: &Session,
    name: &str,
    notice: Option<&'static str>,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let user = app
        .store
        .backend
        .get_user(name)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such user"))?;
    let now = app.sessions.now() / 1000;
    let devices = app
        .sessions
        .list_for_user(name)
        .await?
        .into_iter()
        .map(|s| DeviceRow::of(SessionView::new(s, None), now))
        .collect();
    Ok(render(
        &UserPage {
            title: format!("{name} · Users"),
            signed_in: SignedIn::of(session),
            csrf_token: session.csrf_token().unwrap_or_default(),
            name: user.name,
            roles: user.roles.join(", "),
            disabled: user.disabled,
            devices,
            notice,
            error,
        },
        status,
    ))
}

/// `GET /admin/users/{name}`.
pub async fn user(
    State(app): State<SharedState>,
    session: Session,
    Path(name): Path<String>,
    query: Result<Query<DoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let done = query.ok().and_then(|q| q.0.done);
    user_page(
        &app,
        &session,
        &name,
        user_notice(done.as_deref()),
        None,
        StatusCode::OK,
    )
    .await
}

/// The password prompt, unless the administrator's last proof is recent
/// enough for an admin action. `back` is the page to return to.
fn needs_reauth(app: &SharedState, session: &Session, back: &str) -> Option<Response> {
    let fresh = session
        .with_current(|s| recent_enough(app, &s.record))
        .unwrap_or(false);
    (!fresh).then(|| reauth_page(app, session, None, StatusCode::UNAUTHORIZED, back))
}

/// An account error on the user's page, beside the forms (a 5xx stays an error).
async fn refused(
    app: &SharedState,
    session: &Session,
    name: &str,
    e: AccountError,
) -> Result<Response, ApiError> {
    let e = match e {
        AccountError::Missing(_) => ApiError::new(ErrorCode::NotFound, "no such user"),
        e => ApiError::from(e),
    };
    if e.status.is_server_error() || e.code == ErrorCode::NotFound {
        return Err(e);
    }
    user_page(app, session, name, None, Some(e.message), e.status).await
}

fn done(name: &str, what: &str) -> Response {
    Redirect::to(&format!("/admin/users/{name}?done={what}")).into_response()
}

/// The roles form: names separated by commas.
#[derive(Debug, Deserialize)]
pub struct RolesForm {
    roles: String,
}

/// `POST /admin/users/{name}/roles`.
pub async fn set_roles(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path(name): Path<String>,
    JsonOrForm { value: form, .. }: JsonOrForm<RolesForm>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, &format!("/admin/users/{name}")) {
        return Ok(prompt);
    }
    let roles: Vec<String> = form
        .roles
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    match app.accounts.update(&name, Some(roles), None).await {
        Ok(_) => {
            tracing::info!(target: "sessiond::security", event = "admin_roles_changed", user = %name, by = %admin.user_id());
            app.events.record(
                crate::events::SecurityEvent::new("admin_roles_changed", Some(&name))
                    .by(admin.user_id()),
            );
            Ok(done(&name, "roles"))
        }
        Err(e) => refused(&app, &session, &name, e).await,
    }
}

/// The access form.
#[derive(Debug, Deserialize)]
pub struct DisabledForm {
    disabled: bool,
}

/// `POST /admin/users/{name}/disabled`.
pub async fn set_disabled(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path(name): Path<String>,
    JsonOrForm { value: form, .. }: JsonOrForm<DisabledForm>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, &format!("/admin/users/{name}")) {
        return Ok(prompt);
    }
    match app.accounts.update(&name, None, Some(form.disabled)).await {
        Ok(_) => {
            tracing::info!(target: "sessiond::security", event = "admin_access_changed", user = %name, disabled = form.disabled, by = %admin.user_id());
            app.events.record(
                crate::events::SecurityEvent::new(
                    if form.disabled {
                        "admin_disabled_user"
                    } else {
                        "admin_enabled_user"
                    },
                    Some(&name),
                )
                .by(admin.user_id()),
            );
            Ok(done(
                &name,
                if form.disabled { "disabled" } else { "enabled" },
            ))
        }
        Err(e) => refused(&app, &session, &name, e).await,
    }
}

/// The temporary password form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    password: String,
}

/// `POST /admin/users/{name}/password`.
pub async fn set_password(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path(name): Path<String>,
    JsonOrForm { value: form, .. }: JsonOrForm<PasswordForm>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, &format!("/admin/users/{name}")) {
        return Ok(prompt);
    }
    match app.accounts.set_password(&name, form.password).await {
        Ok(_) => {
            tracing::info!(target: "sessiond::security", event = "admin_password_set", user = %name, by = %admin.user_id());
            app.events.record(
                crate::events::SecurityEvent::new("admin_password_set", Some(&name))
                    .by(admin.user_id()),
            );
            Ok(done(&name, "password"))
        }
        Err(e) => refused(&app, &session, &name, e).await,
    }
}

/// `POST /admin/users/{name}/sessions/end-all`.
pub async fn end_all(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, &format!("/admin/users/{name}")) {
        return Ok(prompt);
    }
    // The administrator's own session survives ending their own others.
    let keep = (admin.user_id() == name).then_some(admin.0.session);
    let n = app.sessions.revoke_user(&name, keep.as_ref()).await?;
    tracing::info!(target: "sessiond::security", event = "revoke_all", user = %name, by = %admin.user_id(), revoked = n);
    app.events.record(
        crate::events::SecurityEvent::new("admin_revoked_sessions", Some(&name))
            .by(admin.user_id())
            .with_detail(format!("{n} ended")),
    );
    Ok(done(&name, "ended-all"))
}

/// `POST /admin/users/{name}/sessions/{id}/end`.
pub async fn end_one(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, &format!("/admin/users/{name}")) {
        return Ok(prompt);
    }
    let ended = match SessionKey::from_handle(&id) {
        Ok(key) => app.sessions.revoke_one(&name, &key).await,
        Err(_) => Err(StoreError::NotFound),
    };
    match ended {
        Ok(()) => {
            tracing::info!(target: "sessiond::security", event = "session_revoked_by_admin", user = %name, by = %admin.user_id());
            app.events.record(
                crate::events::SecurityEvent::new("admin_revoked_session", Some(&name))
                    .by(admin.user_id()),
            );
            Ok(done(&name, "ended"))
        }
        Err(StoreError::NotFound) => {
            user_page(
                &app,
                &session,
                &name,
                None,
                Some("That session had already ended.".into()),
                StatusCode::NOT_FOUND,
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

struct SigningKeyRow {
    kid: String,
    algorithm: String,
    created: When,
    status: String,
}

struct ServiceKeyRow {
    name: String,
    scopes: String,
    created: When,
    last_used: Option<When>,
}

#[derive(Template)]
#[template(path = "admin_keys.html")]
struct KeysPage {
    title: &'static str,
    signed_in: Option<SignedIn>,
    csrf_token: String,
    signing: Vec<SigningKeyRow>,
    service: Vec<ServiceKeyRow>,
    notice: Option<&'static str>,
    error: Option<String>,
    new_key: Option<String>,
}

async fn keys_page(
    app: &SharedState,
    session: &Session,
    notice: Option<&'static str>,
    error: Option<String>,
    new_key: Option<String>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = app.sessions.now() / 1000;
    let signing = app
        .tokens
        .describe()
        .await?
        .into_iter()
        .map(|(kid, alg, created, retired)| SigningKeyRow {
            kid,
            algorithm: format!("{alg:?}"),
            created: When::of(created, now),
            status: retired.map_or_else(
                || "signing new tokens".into(),
                |_| "retiring: verifies tokens it signed until they expire".into(),
            ),
        })
        .collect();
    let service = app
        .service_keys
        .list()
        .await?
        .into_iter()
        .map(|k| ServiceKeyRow {
            scopes: k
                .scopes
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            created: When::of(k.created_at, now),
            last_used: k.last_used.map(|t| When::of(t, now)),
            name: k.name,
        })
        .collect();
    Ok(render(
        &KeysPage {
            title: "Keys",
            signed_in: SignedIn::of(session),
            csrf_token: session.csrf_token().unwrap_or_default(),
            signing,
            service,
            notice,
            error,
            new_key,
        },
        status,
    ))
}

/// `GET /admin/keys`.
pub async fn keys(
    State(app): State<SharedState>,
    session: Session,
    query: Result<Query<DoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let done = query.ok().and_then(|q| q.0.done);
    let notice = match done.as_deref() {
        Some("rotated") => {
            Some("The signing key is rotated; tokens signed before stay valid until they expire.")
        }
        Some("revoked") => Some("The service key is revoked on every node."),
        Some("confirmed") => Some("Password confirmed. You can now do what you asked for."),
        _ => None,
    };
    keys_page(&app, &session, notice, None, None, StatusCode::OK).await
}

/// `POST /admin/keys/rotate`.
pub async fn rotate(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, "/admin/keys") {
        return Ok(prompt);
    }
    let kid = app.tokens.rotate().await?;
    tracing::info!(target: "sessiond::security", event = "signing_key_rotated_by_admin", admin = %admin.user_id(), kid = %kid);
    app.events.record(
        crate::events::SecurityEvent::new("admin_rotated_signing_key", None)
            .by(admin.user_id())
            .with_detail(format!("new key {kid}")),
    );
    Ok(Redirect::to("/admin/keys?done=rotated").into_response())
}

/// The new service key form.
#[derive(Debug, Deserialize)]
pub struct ServiceKeyForm {
    name: String,
    /// Scopes separated by commas.
    scopes: String,
}

/// `POST /admin/service-keys`: the key is on the answer page, once.
pub async fn create_service_key(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    JsonOrForm { value: form, .. }: JsonOrForm<ServiceKeyForm>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, "/admin/keys") {
        return Ok(prompt);
    }
    let scopes: Result<std::collections::BTreeSet<_>, _> = form
        .scopes
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect();
    let made = match scopes {
        Ok(scopes) => app
            .service_keys
            .add(form.name.trim(), scopes)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(ApiError::new(ErrorCode::InvalidBody, e.to_string())),
    };
    match made {
        Ok((key, secret)) => {
            tracing::info!(target: "sessiond::security", event = "service_key_created_by_admin", key = %key.name, by = %admin.user_id());
            app.events.record(
                crate::events::SecurityEvent::new("admin_created_service_key", None)
                    .by(admin.user_id())
                    .with_detail(key.name.clone()),
            );
            let mut page = keys_page(
                &app,
                &session,
                Some("Service key created."),
                None,
                Some(secret),
                StatusCode::OK,
            )
            .await?;
            page.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            Ok(page)
        }
        Err(e) if e.status.is_client_error() => {
            keys_page(&app, &session, None, Some(e.message), None, e.status).await
        }
        Err(e) => Err(e),
    }
}

/// `POST /admin/service-keys/{name}/revoke`.
pub async fn revoke_service_key(
    State(app): State<SharedState>,
    session: Session,
    admin: CurrentUser,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(prompt) = needs_reauth(&app, &session, "/admin/keys") {
        return Ok(prompt);
    }
    if app.service_keys.revoke(&name).await? {
        tracing::info!(target: "sessiond::security", event = "service_key_revoked_by_admin", key = %name, by = %admin.user_id());
        app.events.record(
            crate::events::SecurityEvent::new("admin_revoked_service_key", None)
                .by(admin.user_id())
                .with_detail(name.clone()),
        );
        Ok(Redirect::to("/admin/keys?done=revoked").into_response())
    } else {
        keys_page(
            &app,
            &session,
            None,
            Some("No such service key.".into()),
            None,
            StatusCode::NOT_FOUND,
        )
        .await
    }
}

struct EventRow {
    when: When,
    kind: String,
    user: Option<String>,
    actor: Option<String>,
    ip: Option<String>,
    detail: Option<String>,
}

#[derive(Template)]
#[template(path = "admin_events.html")]
struct EventsPage {
    title: &'static str,
    signed_in: Option<SignedIn>,
    user: String,
    kind: String,
    kept: usize,
    events: Vec<EventRow>,
}

/// `?user&kind` of the event list.
#[derive(Debug, Default, Deserialize)]
pub struct EventsQuery {
    #[serde(default)]
    user: String,
    #[serde(default)]
    kind: String,
}

/// Events on one page.
const EVENTS_SHOWN: usize = 200;

/// `GET /admin/events`: the newest security events, filtered by user and kind.
pub async fn events(
    State(app): State<SharedState>,
    session: Session,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))?;
    let filter = crate::events::EventFilter {
        user: (!query.user.is_empty()).then(|| query.user.clone()),
        kind: (!query.kind.is_empty()).then(|| query.kind.clone()),
    };
    let now = app.sessions.now() / 1000;
    let events = app
        .events
        .recent(&filter, EVENTS_SHOWN)
        .await?
        .into_iter()
        .map(|e| EventRow {
            when: When::of(e.at / 1000, now),
            kind: e.kind,
            user: e.user,
            actor: e.actor,
            ip: e.ip,
            detail: e.detail,
        })
        .collect();
    Ok(render(
        &EventsPage {
            title: "Security events",
            signed_in: SignedIn::of(&session),
            user: query.user,
            kind: query.kind,
            kept: app.config.observability.security_events_kept,
            events,
        },
        StatusCode::OK,
    ))
}
