//! Login and logout.

use axum::Json;
use axum::extract::State;
use axum::response::{AppendHeaders, IntoResponse, Redirect, Response};
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};
use sessiond_axum::csrf::same_origin;
use sessiond_axum::{ApiError, BodyKind, ClientIp, JsonOrForm, Session, body_kind};
use sessiond_core::token::{random_secret, secrets_equal};
use utoipa::ToSchema;

use crate::routes::errors::ErrorBody;
use crate::routes::pages;
use crate::state::SharedState;

/// `POST /login` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    username: String,
    password: String,
    /// The login form's token (form posts only).
    #[serde(default)]
    csrf_token: Option<String>,
    /// Where to go after a form login (checked against the redirect policy).
    #[serde(default)]
    rd: Option<String>,
    /// "Keep me signed in": the remembered timeouts and a cookie that
    /// outlives the browser (when `[session] remember_me` is on; ignored
    /// otherwise). A form's checkbox sends `true`.
    #[serde(default, deserialize_with = "checkbox")]
    #[schema(value_type = bool)]
    remember: bool,
}

/// A checkbox: JSON `true`/`false`, or a form's `true`/`on`/`1`/`false`
/// (a form leaves an unchecked box out).
fn checkbox<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Bool(bool),
        Text(String),
    }
    match Either::deserialize(d)? {
        Either::Bool(b) => Ok(b),
        Either::Text(t) => match t.as_str() {
            "true" | "on" | "1" => Ok(true),
            "false" | "off" | "0" | "" => Ok(false),
            _ => Err(serde::de::Error::custom("remember must be true or false")),
        },
    }
}

/// A JSON login's answer; the session itself is in the `Set-Cookie`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    /// The user.
    pub user_id: String,
    /// The first of `roles` (kept for older clients).
    pub role: Option<String>,
    /// The roles the session was signed in with.
    pub roles: Vec<String>,
    /// Unix seconds: when the session ends unless used again.
    pub expires_at: u64,
    /// For the `X-CSRF-Token` header of the session's unsafe requests.
    pub csrf_token: Option<String>,
}

/// A logout's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoggedOut {
    /// Always true: there is no session any more.
    pub logged_out: bool,
}

/// `GET /login` query.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// Where to go after signing in: a path on this site or an allowed host
    /// (`[gateway] allowed_redirect_hosts`); anything else is ignored.
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
    /// Whether to show "keep me signed in".
    offer_remember: bool,
}

impl LoginForm {
    /// The form's token: the session's own CSRF token when a session exists
    /// (the CSRF layer checks it), else a fresh double-submit value.
    fn new(app: &SharedState, session: &Session, rd: Option<String>) -> Self {
        let offer_remember = app.config.session.remember_me;
        match session.csrf_token() {
            Some(token) => Self {
                token,
                cookie: None,
                rd,
                offer_remember,
            },
            None => {
                let token = random_secret();
                let cookie = Some(app.login_csrf_cookie.set(&token, 3600));
                Self {
                    token,
                    cookie,
                    rd,
                    offer_remember,
                }
            }
        }
    }

    fn render(self, error: Option<&ApiError>) -> Response {
        let mut page = pages::login(&self.token, self.rd.as_deref(), error, self.offer_remember);
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
#[utoipa::path(get, path = "/login", tag = "session",
    params(LoginQuery),
    responses(
        (status = 200, content_type = "text/html", body = String, description = "the sign-in page"),
        (status = 429, body = ErrorBody),
    ))]
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
/// The document describes the JSON use; the form belongs to the sign-in
/// page (a failed form post gets the page again, with the same status).
#[utoipa::path(post, path = "/login", tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginView, description = "signed in: a new session, in `Set-Cookie`",
            headers(("set-cookie" = String, description = "the session cookie"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
        (status = 403, body = ErrorBody, description = "`csrf_failed`: a cross-site request, or a session's request without its token"),
        (status = 409, body = ErrorBody, description = "`session_limit`: the user has as many sessions as allowed and the limit refuses new ones"),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 429, body = ErrorBody, description = "`too_many_attempts` (with `Retry-After`)"),
        (status = 503, body = ErrorBody),
    ))]
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
        .map_err(|e| {
            if let Some(event) = crate::events::sign_in_refused(&req.username, client, &e) {
                app.events.record(event);
            }
            fail(e.into())
        })?;
    let record = session
        .login_remembered(&user.name, user.roles.clone(), req.remember)
        .await
        .map_err(|e| fail(e.into()))?;
    tracing::info!(target: "sessiond::security", event = "login_succeeded", user = %user.name);
    app.events.record(
        crate::events::SecurityEvent::new("login_succeeded", Some(&user.name)).from_ip(client),
    );
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
        Json(LoginView {
            role: record.roles.first().cloned(),
            expires_at: record.expires_at() / 1000,
            csrf_token: session.csrf_token(),
            user_id: record.user_id,
            roles: record.roles,
        }),
    )
        .into_response())
}

/// `POST /logout`: deletes the session and clears the cookie. A form post is
/// redirected to the login page. Without a session it has nothing to do
/// and says so the same way.
#[utoipa::path(post, path = "/logout", tag = "session",
    security((), ("session_cookie" = [], "csrf_token" = [])),
    responses(
        (status = 200, body = LoggedOut, headers(("set-cookie" = String, description = "clears the session cookie"))),
        (status = 403, body = ErrorBody, description = "`csrf_failed`"),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn logout(
    State(app): State<SharedState>,
    session: Session,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(s) = session.verified() {
        tracing::info!(target: "sessiond::security", event = "logout", user = %s.record.user_id);
        app.events.record(crate::events::SecurityEvent::new(
            "logout",
            Some(&s.record.user_id),
        ));
    }
    session.logout().await?;
    Ok(if body_kind(&headers) == Some(BodyKind::Form) {
        Redirect::to("/login").into_response()
    } else {
        Json(LoggedOut { logged_out: true }).into_response()
    })
}
