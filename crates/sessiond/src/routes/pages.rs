//! Server-rendered HTML pages, from askama templates (`templates/`, one
//! layout, escaped automatically): sign-in, the account security page
//! (devices, token families, password change), the password prompt before
//! a sensitive action, and error pages for browsers. No script at all, and
//! styles from one file, so the CSP forbids every inline script and style.
//!
//! Every action is a form POST carrying the session's CSRF token (the
//! CSRF layer checks it); each answers with a redirect back to the page
//! (303, so a reload does not repeat it) or the page again with the error
//! beside the form it concerns.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use sessiond_axum::{ApiError, CurrentUser, ErrorCode, JsonOrForm, Session};
use sessiond_core::{SessionKey, StoreError, StoredSession};

use crate::routes::SessionView;
use crate::routes::reauth::{recent_enough, record_proof};
use crate::state::SharedState;

/// Who is signed in, for the layout's header (with the sign-out form).
pub(crate) struct SignedIn {
    pub(crate) name: String,
    pub(crate) csrf_token: String,
    /// Whether to link the admin console.
    pub(crate) admin: bool,
}

impl SignedIn {
    pub(crate) fn of(session: &Session) -> Option<Self> {
        let (name, admin) =
            session.with_current(|s| (s.record.user_id.clone(), s.record.has_role("admin")))?;
        Some(Self {
            name,
            admin,
            csrf_token: session.csrf_token().unwrap_or_default(),
        })
    }
}

/// A page, or the generic error page if the template cannot render.
pub(crate) fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => {
            let mut r = (status, Html(html)).into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "a page could not be rendered");
            ApiError::internal().into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    signed_in: Option<SignedIn>,
    heading: &'a str,
    message: &'a str,
    code: &'a str,
    retry_after: Option<u64>,
}

/// An error for a browser (`Accept: text/html`): the same status and
/// `Retry-After` as the JSON answer, with its message on a page. The code
/// is shown too, so a user can quote it.
pub fn error(e: &ApiError) -> Response {
    let heading = e.status.canonical_reason().unwrap_or("Error");
    let mut page = render(
        &ErrorPage {
            title: heading,
            signed_in: None,
            heading,
            message: &e.message,
            code: e.code.as_str(),
            retry_after: e.retry_after,
        },
        e.status,
    );
    if let Some(secs) = e.retry_after {
        page.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    page
}

/// Whether the client is a browser asking for a page.
pub fn wants_html(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    title: &'a str,
    signed_in: Option<SignedIn>,
    csrf_token: &'a str,
    rd: Option<&'a str>,
    error: Option<String>,
    offer_remember: bool,
}

/// The sign-in form, with the error of the last attempt if any (a
/// throttled attempt says how long to wait).
pub fn login(
    csrf_token: &str,
    rd: Option<&str>,
    error: Option<&ApiError>,
    offer_remember: bool,
) -> Response {
    let message = error.map(|e| match e.retry_after {
        Some(secs) if e.code == ErrorCode::TooManyAttempts => {
            format!("Too many failed attempts. Try again in {}.", wait(secs))
        }
        _ => e.message.clone(),
    });
    render(
        &LoginPage {
            title: "Sign in",
            signed_in: None,
            csrf_token,
            rd,
            error: message,
            offer_remember,
        },
        error.map_or(StatusCode::OK, |e| e.status),
    )
}

/// "45 seconds", "3 minutes".
fn wait(secs: u64) -> String {
    match secs {
        0..=1 => "a second".into(),
        2..=119 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// A time as the page shows it: relative ("3 minutes ago"), exact (on
/// hover) and machine-readable.
pub(crate) struct When {
    pub(crate) iso: String,
    pub(crate) exact: String,
    pub(crate) ago: String,
}

impl When {
    pub(crate) fn of(unix_secs: u64, now_secs: u64) -> Self {
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs);
        let iso = humantime::format_rfc3339_seconds(at).to_string();
        let exact = format!("{} UTC", iso.trim_end_matches('Z').replacen('T', " ", 1));
        Self {
            ago: ago(now_secs.saturating_sub(unix_secs)),
            iso,
            exact,
        }
    }
}

/// "just now", "1 minute ago", "3 hours ago", "2 days ago".
fn ago(secs: u64) -> String {
    let (n, unit) = match secs {
        0..=59 => return "just now".into(),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// One device (or token family) on the account page.
pub(crate) struct DeviceRow {
    pub(crate) id: String,
    pub(crate) label: String,
    pub(crate) ip: Option<String>,
    pub(crate) current: bool,
    pub(crate) remembered: bool,
    pub(crate) created_iso: String,
    pub(crate) created_exact: String,
    pub(crate) created_ago: String,
    pub(crate) seen_iso: String,
    pub(crate) seen_exact: String,
    pub(crate) seen_ago: String,
}

impl DeviceRow {
    pub(crate) fn of(view: SessionView, now_secs: u64) -> Self {
        let created = When::of(view.created_at, now_secs);
        let seen = When::of(view.last_seen, now_secs);
        Self {
            label: view.user_agent.unwrap_or_else(|| "Unknown device".into()),
            id: view.id,
            ip: view.ip,
            current: view.current,
            remembered: view.remembered,
            created_iso: created.iso,
            created_exact: created.exact,
            created_ago: created.ago,
            seen_iso: seen.iso,
            seen_exact: seen.exact,
            seen_ago: seen.ago,
        }
    }
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    title: &'static str,
    signed_in: Option<SignedIn>,
    csrf_token: String,
    notice: Option<&'static str>,
    error: Option<String>,
    devices: Vec<DeviceRow>,
    tokens: Vec<DeviceRow>,
    others: bool,
    password_error: Option<String>,
    min_length: usize,
    rules: String,
}

/// What the page says after an action (`?done=`).
#[derive(Debug, Default, Deserialize)]
pub struct AccountQuery {
    done: Option<String>,
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "signed-out" => "That device is signed out.",
        "others-signed-out" => "All your other devices are signed out.",
        "password-changed" => "Your password is changed; your other devices are signed out.",
        "confirmed" => "Password confirmed. You can now do what you asked for.",
        _ => return None,
    })
}

/// The account page's inline errors.
#[derive(Default)]
struct Problems {
    notice: Option<&'static str>,
    error: Option<String>,
    password_error: Option<String>,
}

async fn account_page(
    app: &SharedState,
    session: &Session,
    current: &StoredSession,
    problems: Problems,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let now = app.sessions.now() / 1000;
    let handle = current.key.handle();
    let (mut devices, mut tokens) = (Vec::new(), Vec::new());
    for s in app.sessions.list_for_user(&current.record.user_id).await? {
        let family = crate::tokens::is_family(&s.record.attributes);
        let row = DeviceRow::of(SessionView::new(s, Some(&handle)), now);
        if family {
            tokens.push(row)
        } else {
            devices.push(row)
        }
    }
    let rules = app.accounts.password_rules();
    let page = AccountPage {
        title: "Account security",
        signed_in: SignedIn::of(session),
        csrf_token: session.csrf_token().unwrap_or_default(),
        notice: problems.notice,
        error: problems.error,
        others: devices.iter().any(|d| !d.current) || !tokens.is_empty(),
        devices,
        tokens,
        password_error: problems.password_error,
        min_length: rules.min_length,
        rules: format!(
            "At least {} characters; any characters, spaces included. Not a common or easily guessed password, and not containing your user name.",
            rules.min_length
        ),
    };
    Ok(render(&page, status))
}

/// `GET /`: the signed-in user's account security page, or the sign-in page.
pub async fn home(
    State(app): State<SharedState>,
    session: Session,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some(current) = session.verified() else {
        return Ok(Redirect::to("/login").into_response());
    };
    let done = query.ok().and_then(|q| q.0.done);
    let problems = Problems {
        notice: notice(done.as_deref()),
        ..Problems::default()
    };
    account_page(&app, &session, &current, problems, StatusCode::OK).await
}

fn back(done: &str) -> Response {
    Redirect::to(&format!("/?done={done}")).into_response()
}

/// `POST /account/sessions/{id}/end`: signs one of the user's other
/// devices (or token families) out.
pub async fn end_session(
    State(app): State<SharedState>,
    session: Session,
    user: CurrentUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let current = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let ended = match SessionKey::from_handle(&id) {
        Ok(key) => app.sessions.revoke_one(user.user_id(), &key).await,
        Err(_) => Err(StoreError::NotFound),
    };
    match ended {
        Ok(()) => {
            tracing::info!(target: "sessiond::security", event = "session_revoked", user = %user.user_id());
            app.events.record(crate::events::SecurityEvent::new(
                "session_revoked",
                Some(user.user_id()),
            ));
            Ok(back("signed-out"))
        }
        Err(StoreError::NotFound) => {
            let problems = Problems {
                error: Some("That session had already ended.".into()),
                ..Problems::default()
            };
            account_page(&app, &session, &current, problems, StatusCode::NOT_FOUND).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "reauth.html")]
struct ReauthPage<'a> {
    title: &'static str,
    signed_in: Option<SignedIn>,
    csrf_token: String,
    window: String,
    error: Option<String>,
    next: &'a str,
}

/// The password prompt; after it, the browser goes back to `next` (a page
/// of this site).
pub(crate) fn reauth_page(
    app: &SharedState,
    session: &Session,
    error: Option<String>,
    status: StatusCode,
    next: &str,
) -> Response {
    let roles = session
        .with_current(|s| s.record.roles.clone())
        .unwrap_or_default();
    let window = app.config.reauth_window(&roles);
    render(
        &ReauthPage {
            title: "Confirm your password",
            signed_in: SignedIn::of(session),
            csrf_token: session.csrf_token().unwrap_or_default(),
            window: humantime::format_duration(window).to_string(),
            error,
            next: local(next),
        },
        status,
    )
}

/// `POST /account/sessions/end-others`: signs every other device out,
/// after asking for the password if the last proof is too old.
pub async fn end_other_sessions(
    State(app): State<SharedState>,
    session: Session,
) -> Result<Response, ApiError> {
    let current = session.verified().ok_or_else(ApiError::unauthenticated)?;
    if !recent_enough(&app, &current.record) {
        return Ok(reauth_page(
            &app,
            &session,
            None,
            StatusCode::UNAUTHORIZED,
            "/",
        ));
    }
    let n = app
        .sessions
        .revoke_user(&current.record.user_id, Some(&current.key))
        .await?;
    tracing::info!(target: "sessiond::security", event = "revoke_others", user = %current.record.user_id, revoked = n);
    app.events.record(
        crate::events::SecurityEvent::new("revoke_others", Some(&current.record.user_id))
            .with_detail(format!("{n} ended")),
    );
    Ok(back("others-signed-out"))
}

/// The password change form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    current_password: String,
    new_password: String,
}

/// `POST /account/password`: changes the password (the current one is the
/// proof), ends every other session and moves this one to a fresh token.
pub async fn change_password(
    State(app): State<SharedState>,
    session: Session,
    JsonOrForm { value: form, .. }: JsonOrForm<PasswordForm>,
) -> Result<Response, ApiError> {
    let current = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let changed = app
        .accounts
        .change_password(
            &current.record.user_id,
            form.current_password,
            form.new_password,
            Some(&current.key),
        )
        .await;
    match changed {
        Ok(_) => {
            app.events.record(crate::events::SecurityEvent::new(
                "password_changed",
                Some(&current.record.user_id),
            ));
            session.cycle(None).await?;
            Ok(back("password-changed"))
        }
        Err(e) => {
            let e = ApiError::from(e);
            if e.status.is_server_error() {
                return Err(e);
            }
            let problems = Problems {
                password_error: Some(e.message.clone()),
                ..Problems::default()
            };
            account_page(&app, &session, &current, problems, e.status).await
        }
    }
}

/// The password prompt's form.
#[derive(Debug, Deserialize)]
pub struct ReauthForm {
    password: String,
    /// The page to go back to.
    #[serde(default)]
    next: Option<String>,
}

/// `next` if it is a page of this site (a path: not `//host`, not a URL),
/// else the account page.
fn local(next: &str) -> &str {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if ok { next } else { "/" }
}

/// `POST /account/reauth`: the password prompt before a sensitive action.
pub async fn reauthenticate(
    State(app): State<SharedState>,
    session: Session,
    JsonOrForm { value: form, .. }: JsonOrForm<ReauthForm>,
) -> Result<Response, ApiError> {
    let current = session.verified().ok_or_else(ApiError::unauthenticated)?;
    let user = current.record.user_id.clone();
    if let Err(e) = app.accounts.prove_password(&user, form.password).await {
        let e = ApiError::from(e);
        if e.status.is_server_error() {
            return Err(e);
        }
        let message = match e.retry_after {
            Some(secs) => format!("Too many failed attempts. Try again in {}.", wait(secs)),
            None => e.message.clone(),
        };
        let next = form.next.as_deref().unwrap_or("/");
        return Ok(reauth_page(&app, &session, Some(message), e.status, next));
    }
    record_proof(&app, &session, &user).await?;
    let next = local(form.next.as_deref().unwrap_or("/"));
    Ok(Redirect::to(&format!("{next}?done=confirmed")).into_response())
}

/// `GET /assets/app.css`.
pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../assets/app.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_say_them() {
        assert_eq!(ago(5), "just now");
        assert_eq!(ago(60), "1 minute ago");
        assert_eq!(ago(3 * 60 + 20), "3 minutes ago");
        assert_eq!(ago(2 * 3600), "2 hours ago");
        assert_eq!(ago(86_400), "1 day ago");
        let w = When::of(1_764_552_960, 1_764_553_140);
        assert_eq!(w.iso, "2025-12-01T01:36:00Z");
        assert_eq!(w.exact, "2025-12-01 01:36:00 UTC");
        assert_eq!(w.ago, "3 minutes ago");
        assert_eq!(wait(45), "45 seconds");
        assert_eq!(wait(900), "15 minutes");
    }

    #[test]
    fn what_a_page_shows_is_escaped() {
        let html = LoginPage {
            title: "Sign in",
            signed_in: None,
            csrf_token: "\"><script>alert(1)</script>",
            rd: Some("/x?a=<b>"),
            error: Some("<img src=x onerror=alert(1)>".into()),
            offer_remember: true,
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(html.contains("&#60;img src=x"), "shown as text: {html}");
    }
}
