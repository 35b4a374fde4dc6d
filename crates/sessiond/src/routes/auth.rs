//! Login and logout.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::json;
use sessiond_axum::cookie::find_cookie;
use sessiond_axum::csrf::same_origin;
use sessiond_axum::{ApiError, Session};
use sessiond_core::token::{random_secret, secrets_equal};

use crate::extract::JsonOrForm;
use crate::routes::pages;
use crate::state::SharedState;

/// The login form's double-submit CSRF cookie (before a session exists).
pub const LOGIN_CSRF_COOKIE: &str = "__Host-sessiond-login";

/// Longest accepted username and password (argon2 cost does not depend on
/// length, but an unbounded input is still a cheap way to waste memory).
const MAX_NAME: usize = 128;
const MAX_PASSWORD: usize = 1024;

/// `POST /login` body.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    csrf_token: Option<String>,
}

/// `GET /login`: the form, carrying a fresh CSRF token (double-submit cookie).
pub async fn login_page(State(app): State<SharedState>, session: Session) -> Response {
    let (token, cookie) = login_csrf(&app, &session);
    let mut response = pages::login(&token, None, StatusCode::OK);
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The form's token: the session's own CSRF token when a session exists
/// (the CSRF layer checks it), else a fresh double-submit value and its cookie.
fn login_csrf(app: &SharedState, session: &Session) -> (String, Option<HeaderValue>) {
    if let Some(t) = session.csrf_token() {
        return (t, None);
    }
    let token = random_secret();
    let secure = if app.config.cookie_secure {
        "; Secure"
    } else {
        ""
    };
    let name = login_cookie_name(app);
    let cookie = format!("{name}={token}; Path=/{secure}; HttpOnly; SameSite=Strict; Max-Age=3600");
    (token, HeaderValue::from_str(&cookie).ok())
}

/// The double-submit cookie's name: `__Host-` needs `Secure`, so a
/// deployment with insecure cookies (plain-HTTP development) drops the prefix.
fn login_cookie_name(app: &SharedState) -> &'static str {
    if app.config.cookie_secure {
        LOGIN_CSRF_COOKIE
    } else {
        "sessiond-login"
    }
}

fn login_csrf_ok(
    app: &SharedState,
    session: &Session,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> bool {
    if session.with_current(|_| ()).is_some() {
        return true; // the CSRF layer already checked the session's token
    }
    let name = login_cookie_name(app);
    match (find_cookie(headers, name), presented) {
        (Some(c), Some(p)) => !c.is_empty() && secrets_equal(c.as_bytes(), p.as_bytes()),
        _ => false,
    }
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

/// `POST /login` with a form (→ 303 to `/`) or JSON (→ 200 JSON).
pub async fn login(
    State(app): State<SharedState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    headers: HeaderMap,
    body: JsonOrForm<LoginRequest>,
) -> Response {
    let is_form = body.is_form;
    let req = body.value;
    let fail = |e: ApiError| -> Response {
        if is_form {
            let (token, cookie) = login_csrf(&app, &session);
            let mut page = pages::login(&token, Some(&e.message), e.status);
            if let Some(c) = cookie {
                page.headers_mut().append(header::SET_COOKIE, c);
            }
            if let Some(s) = e.retry_after {
                page.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(s));
            }
            page
        } else {
            e.into_response()
        }
    };
    // Login CSRF: a cross-site page must not be able to log a victim into
    // the attacker's account.
    if let Err(why) = same_origin(&headers, &app.config.allowed_origins) {
        tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = why, route = "/login");
        return fail(ApiError::csrf_failed(why));
    }
    if is_form && !login_csrf_ok(&app, &session, &headers, req.csrf_token.as_deref()) {
        tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = "login form token", route = "/login");
        return fail(ApiError::csrf_failed("missing or wrong form token"));
    }
    let user = match check_credentials(&app, &req.username, req.password, peer).await {
        Ok(user) => user,
        Err(e) => return fail(e),
    };
    let record = match session.login(&user.name, user.roles.clone()).await {
        Ok(r) => r,
        Err(e) => return fail(e.into()),
    };
    tracing::info!(target: "sessiond::security", event = "login_succeeded", user = %user.name);
    if is_form {
        return Redirect::to("/").into_response();
    }
    Json(json!({
        "user_id": record.user_id,
        "role": record.roles.first(),
        "roles": record.roles,
        "expires_at": record.expires_at() / 1000,
        "csrf_token": session.csrf_token(),
    }))
    .into_response()
}

/// Throttling, lookup and password check, shared by cookie login and token
/// issuance: 429 when throttled, 401 `invalid_credentials` for a wrong name
/// or password (indistinguishable, and equally slow), 503 when the store is down.
pub async fn check_credentials(
    app: &SharedState,
    username: &str,
    password: String,
    peer: SocketAddr,
) -> Result<sessiond_core::UserRecord, ApiError> {
    if username.is_empty() || username.len() > MAX_NAME || password.len() > MAX_PASSWORD {
        return Err(invalid_credentials());
    }
    let ip = peer.ip().to_string();
    let blocked = app
        .user_throttle
        .blocked(username)
        .into_iter()
        .chain(app.ip_throttle.blocked(&ip))
        .max();
    if let Some(wait) = blocked {
        metrics::counter!("sessiond_logins_total", "outcome" => "throttled").increment(1);
        tracing::warn!(target: "sessiond::security", event = "login_throttled", client_ip = %ip);
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            "too many failed logins; try again later",
        )
        .with_retry_after(wait));
    }
    let user = app.store.backend.get_user(username).await?;
    let verified = app
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await;
    match (verified, user) {
        (Ok(true), Some(user)) => {
            metrics::counter!("sessiond_logins_total", "outcome" => "success").increment(1);
            app.user_throttle.reset(&user.name);
            Ok(user)
        }
        (Ok(_), _) => {
            app.user_throttle.record_failure(username);
            app.ip_throttle.record_failure(&ip);
            metrics::counter!("sessiond_logins_total", "outcome" => "bad_credentials").increment(1);
            tracing::warn!(target: "sessiond::security", event = "login_failed", client_ip = %ip);
            Err(invalid_credentials())
        }
        (Err(e), _) => {
            tracing::error!(error = %e, "password verification failed");
            Err(ApiError::internal())
        }
    }
}

/// `POST /logout`: deletes the session and clears the cookie. A form post is
/// redirected to the login page.
pub async fn logout(session: Session, headers: HeaderMap) -> Response {
    if let Some(s) = session.verified() {
        tracing::info!(target: "sessiond::security", event = "logout", user = %s.record.user_id);
    }
    if let Err(e) = session.logout().await {
        return ApiError::from(e).into_response();
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        Redirect::to("/login").into_response()
    } else {
        Json(json!({ "logged_out": true })).into_response()
    }
}
