//! Server-rendered HTML pages. No script at all, and styles from a file, so
//! the CSP can forbid every inline script and style.

use axum::extract::State;
use axum::response::{Html, IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use sessiond_axum::{ApiError, Session};

use crate::routes::SessionView;
use crate::state::SharedState;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str, status: StatusCode) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · sessiond</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut r = (status, Html(html)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An error for a browser (`Accept: text/html`): the same status and
/// `Retry-After` as the JSON answer, with its message on a page. The code
/// is shown too, so a user can quote it.
pub fn error(e: &ApiError) -> Response {
    let title = e.status.canonical_reason().unwrap_or("Error");
    let mut page = page(
        title,
        &format!(
            "<h1>{}</h1><p>{}</p><p class=\"code\">{}</p>",
            escape(title),
            escape(&e.message),
            escape(e.code.as_str())
        ),
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

/// The login form.
pub fn login(
    csrf_token: &str,
    rd: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
    offer_remember: bool,
) -> Response {
    let remember = if offer_remember {
        "<label><input name=\"remember\" type=\"checkbox\" value=\"true\"> Keep me signed in</label>"
    } else {
        ""
    };
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e)))
        .unwrap_or_default();
    let rd = rd
        .map(|rd| {
            format!(
                "<input type=\"hidden\" name=\"rd\" value=\"{}\">",
                escape(rd)
            )
        })
        .unwrap_or_default();
    page(
        "Sign in",
        &format!(
            "<h1>Sign in</h1>{error}<form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"csrf_token\" value=\"{}\">{rd}\
             <label>Username <input name=\"username\" autocomplete=\"username\" required></label>\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             {remember}<button type=\"submit\">Sign in</button></form>",
            escape(csrf_token)
        ),
        status,
    )
}

/// `GET /`: the signed-in user's account page with their devices, or a
/// redirect to the login page.
pub async fn home(State(app): State<SharedState>, session: Session) -> Result<Response, ApiError> {
    let Some(current) = session.verified() else {
        return Ok(Redirect::to("/login").into_response());
    };
    let csrf = session.csrf_token().unwrap_or_default();
    let sessions = app.sessions.list_for_user(&current.record.user_id).await?;
    let handle = current.key.handle();
    let rows: String = sessions
        .into_iter()
        .map(|s| SessionView::new(s, Some(&handle)))
        .map(|v| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(v.user_agent.as_deref().unwrap_or("unknown device")),
                escape(v.ip.as_deref().unwrap_or("")),
                v.created_at,
                if v.current { "this device" } else { "" }
            )
        })
        .collect();
    Ok(page(
        "Your account",
        &format!(
            "<h1>Signed in as <span id=\"user\">{user}</span></h1><p>Roles: {roles}</p>\
             <h2>Your sessions</h2><table><thead><tr><th>Device</th><th>IP</th><th>Created (Unix time)</th><th></th></tr></thead>\
             <tbody>{rows}</tbody></table>\
             <form method=\"post\" action=\"/logout\"><input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">\
             <button type=\"submit\">Sign out</button></form>",
            user = escape(&current.record.user_id),
            roles = escape(&current.record.roles.join(", ")),
            csrf = escape(&csrf),
        ),
        StatusCode::OK,
    ))
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
