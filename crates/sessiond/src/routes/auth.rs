//! Login and logout.

use axum::Json;
use axum::extract::State;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};
use sessiond_axum::csrf::same_origin;
use sessiond_axum::{ApiError, BodyKind, ClientIp, JsonOrForm, Session, body_kind};
use sessiond_core::token::{random_secret, secrets_equal};

use crate::routes::pages;
use crate::state::SharedState;

/// `POST /login` body.
#[derive(Debug, Deserialize)]
pub struct LoginRequest {
    username: String,
    password: String,
    #[serde(default)]
    csrf_token: Option<String>,
    /// Where to go after a form login (checked against the redirect policy).
    #[serde(default)]
    rd: Option<String>,
}

/// `GET /login` query.
#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    rd: Option<String>,
}

/// `rd` if the login page may send the browser there.
fn safe_rd(app: &SharedState, rd: Option<&str>) -> Option<String> {
    let rd = rd?;
    let kept = app.config.gateway.allowed_redirect_hosts.check(rd);
    if kept.is_none() {
        tracing::warn!(target: "sessiond::security", event = "redirect_refused", "login rd refused: not a path on this site or an allowed host");
    }
    kept
}

/// A login form to render: its CSRF token and, when there is no session
/// yet, the double-submit cookie that goes with it.
struct LoginForm {
    token: String,
    cookie: Option<HeaderValue>,
    /// Where to go afterwards, already checked.
    rd: Option<String>,
}

impl LoginForm {
    /// The form's token: the session's own CSRF token when a session exists
    /// (the CSRF layer checks it), else a fresh double-submit value.
    fn new(app: &SharedState, session: &Session, rd: Option<String>) -> Self {
        match session.csrf_token() {
            Some(token) => Self {
                token,
                cookie: None,
                rd,
            },
            None => {
                let token = random_secret();
                let cookie = Some(app.login_csrf_cookie.set(&token, 3600));
                Self { token, cookie, rd }
            }
        }
    }

    fn render(self, error: Option<&ApiError>) -> Response {
        let (message, status) = error.map_or((None, StatusCode::OK), |e| {
            (Some(e.message.as_str()), e.status)
        });
        let mut page = pages::login(&self.token, self.rd.as_deref(), message, status);
        let headers = page.headers_mut();
        if let Some(cookie) = self.cookie {
            headers.append(header::SET_COOKIE, cookie);
        }
        if let Some(secs) = error.and_then(|e| e.retry_after) {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        page
    }
}

/// A failed login: the login page again, with the message, for a form
/// post; the JSON error otherwise.
pub struct LoginFailure {
    error: ApiError,
    form: Option<LoginForm>,
}

impl IntoResponse for LoginFailure {
    fn into_response(self) -> Response {
        match self.form {
            Some(form) => form.render(Some(&self.error)),
            None => self.error.into_response(),
        }
    }
}

/// `GET /login`: the form, carrying a fresh CSRF token (double-submit cookie).
pub async fn login_page(
    State(app): State<SharedState>,
    session: Session,
    query: Result<axum::extract::Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A malformed query is no reason to refuse the form: it just has no `rd`.
    let rd = query.ok().and_then(|q| safe_rd(&app, q.0.rd.as_deref()));
    LoginForm::new(&app, &session, rd).render(None)
}

/// Whether a login form carries the right double-submit token.
fn login_csrf_ok(
    app: &SharedState,
    session: &Session,
    headers: &HeaderMap,
    presented: Option<&str>,
) -> bool {
    if session.with_current(|_| ()).is_some() {
        return true; // the CSRF layer already checked the session's token
    }
    match (app.login_csrf_cookie.find(headers), presented) {
        (Some(c), Some(p)) => !c.is_empty() && secrets_equal(c.as_bytes(), p.as_bytes()),
        _ => false,
    }
}

/// `POST /login` with a form (→ 303 to `/`) or JSON (→ 200 JSON).
pub async fn login(
    State(app): State<SharedState>,
    ClientIp(client): ClientIp,
    session: Session,
    headers: HeaderMap,
    body: JsonOrForm<LoginRequest>,
) -> Result<Response, LoginFailure> {
    let is_form = body.is_form();
    let req = body.value;
    let rd = safe_rd(&app, req.rd.as_deref());
    let fail = |error: ApiError| LoginFailure {
        error,
        form: is_form.then(|| LoginForm::new(&app, &session, rd.clone())),
    };
    // Login CSRF: a cross-site page must not be able to log a victim into
    // the attacker's account.
    same_origin(&headers, &app.config.csrf.allowed_origins).map_err(|why| {
        tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = why, route = "/login");
        fail(ApiError::csrf_failed(why))
    })?;
    if is_form && !login_csrf_ok(&app, &session, &headers, req.csrf_token.as_deref()) {
        tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = "login form token", route = "/login");
        return Err(fail(ApiError::csrf_failed("missing or wrong form token")));
    }
    let now = app.sessions.now();
    let device = app
        .devices
        .recognise(&headers, &req.username, now)
        .await
        .map_err(|e| fail(e.into()))?;
    let user = app
        .accounts
        .verify_credentials(&req.username, req.password, client, device.as_ref())
        .await
        .map_err(|e| fail(e.into()))?;
    let record = session
        .login(&user.name, user.roles.clone())
        .await
        .map_err(|e| fail(e.into()))?;
    tracing::info!(target: "sessiond::security", event = "login_succeeded", user = %user.name);
    // The session exists now: a device cookie that cannot be made (its key
    // unreadable) must not turn the login into an error. Without it the
    // browser just stays on the anonymous counter.
    let device_cookie = match app.devices.issue(&user.name, device.as_ref(), now).await {
        Ok(cookie) => AppendHeaders(Some((header::SET_COOKIE, cookie))),
        Err(e) => {
            tracing::warn!(error = %e, "no device cookie for this sign-in");
            AppendHeaders(None)
        }
    };
    if is_form {
        let to = rd.as_deref().unwrap_or("/");
        return Ok((device_cookie, Redirect::to(to)).into_response());
    }
    Ok((
        device_cookie,
        Json(json!({
            "user_id": record.user_id,
            "role": record.roles.first(),
            "roles": record.roles,
            "expires_at": record.expires_at() / 1000,
            "csrf_token": session.csrf_token(),
        })),
    )
        .into_response())
}

/// `POST /logout`: deletes the session and clears the cookie. A form post is
/// redirected to the login page.
pub async fn logout(session: Session, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(s) = session.verified() {
        tracing::info!(target: "sessiond::security", event = "logout", user = %s.record.user_id);
    }
    session.logout().await?;
    Ok(if body_kind(&headers) == Some(BodyKind::Form) {
        Redirect::to("/login").into_response()
    } else {
        Json::<Value>(json!({ "logged_out": true })).into_response()
    })
}
