//! The OpenAPI 3.1 document of sessiond's JSON API: the service API for
//! other backends (`/api/v1`) and the public routes browsers and token
//! clients use (login, logout, tokens, JWKS, the account, admin, health),
//! derived with `utoipa` from the handlers' annotations and the body types
//! they answer with. Served at `/api/v1/openapi.json`, shown as a page at
//! `/api/v1/docs`, committed as `docs/openapi.json`.
//!
//! Why `utoipa` and not `aide`: `utoipa` describes handlers with attributes
//! and leaves them and the route table as they are; `aide` wants its own
//! router types around every route. The table (`routes::table`) stays the
//! one list of routes; a test checks that every JSON route in it is in the
//! document, and says why each other one is not.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::service::views::{
    AttributeChanges, AttributesVersion, CookieAttributes, Identity, Introspection, NewAttributes,
    NewServiceKeyView, NewSessionView, Revoked, ServiceKeyView, ServiceKeys, SessionInfo,
    SessionsPage, UserChanged, UserView, UsersPage, Whoami,
};
use super::service::{
    IntrospectRequest, NewServiceKey, NewSessionRequest, NewUser, UserChange, WhoamiRequest,
};
use super::{SessionView, account, admin, auth, health, reauth, service, token};

pub use super::errors::{ErrorBody, ErrorDetail};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond API",
        description = "Sessions, tokens and users of a sessiond deployment. Browsers sign in with `POST /login` and carry the session cookie, with the CSRF token in `X-CSRF-Token` on unsafe requests; token clients use `POST /api/token` and send `Authorization: Bearer <access token>`; other backends and automation use the service API under `/api/v1` with a service key (`Authorization: Bearer sdk_…`). Every error is `{\"error\": {\"code\", \"message\"}}` with a stable code.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        auth::login_page,
        auth::login,
        auth::logout,
        account::csrf,
        token::issue,
        token::refresh,
        token::revoke,
        token::jwks,
        account::profile,
        account::list,
        account::revoke_others,
        account::revoke,
        account::change_password,
        reauth::reauthenticate,
        account::current_session,
        account::patch_attributes,
        admin::list_user_sessions,
        admin::revoke_user_sessions,
        admin::rotate_signing_key,
        health::healthz,
        health::readyz,
        service::whoami,
        service::introspect,
        service::create_session,
        service::user_sessions,
        service::revoke_user_sessions,
        service::revoke_session,
        service::patch_session_attributes,
        service::list_users,
        service::create_user,
        service::get_user,
        service::update_user,
        service::delete_user,
        service::list_service_keys,
        service::create_service_key,
        service::revoke_service_key,
        service::list_events,
    ),
    components(schemas(
        WhoamiRequest, IntrospectRequest, NewSessionRequest, NewUser, UserChange, NewServiceKey,
        Whoami, Identity, SessionInfo, Introspection, NewSessionView, CookieAttributes,
        SessionsPage, Revoked, AttributesVersion, UserView, UserChanged, UsersPage,
        ServiceKeyView, NewServiceKeyView, ServiceKeys, ErrorBody, ErrorDetail, NewAttributes,
        AttributeChanges, crate::service_keys::ServiceScope, service::Role, SessionView,
    )),
    modifiers(&Security),
    tags(
        (name = "session", description = "signing in and out with the session cookie"),
        (name = "tokens", description = "access tokens with rotating refresh tokens (RFC 6749, 7009), and the keys that verify them"),
        (name = "account", description = "the caller's own sessions, password and session attributes"),
        (name = "admin", description = "administrators (role `admin`)"),
        (name = "health", description = "liveness and readiness"),
        (name = "service", description = "the service API, for other backends (service keys)"),
    ),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        // `POST /api/token` takes credentials or no body at all (then the
        // cookie session). `Option<Credentials>` in the annotation would
        // also allow a JSON `null`, which the server refuses: the body is
        // optional, not nullable.
        if let Some(body) = doc
            .paths
            .paths
            .get_mut("/api/token")
            .and_then(|p| p.post.as_mut())
            .and_then(|op| op.request_body.as_mut())
            && let utoipa::openapi::RefOr::T(body) = body
        {
            body.required = Some(utoipa::openapi::Required::False);
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "service_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sdk_ + 43 base64url characters (sessiond service-key add)")
                    .description(Some(
                        "A service key; its scopes are listed on each operation.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `POST /api/token` or `/api/token/refresh`.",
                    ))
                    .build(),
            ),
        );
        // The cookie's name is `[cookie] name` (`__Host-sessiond` unless set).
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                sessiond_axum::CookieConfig::default().name,
                "The session cookie `POST /login` sets (its name is configurable: `[cookie] name`).".into(),
            ))),
        );
        components.add_security_scheme(
            "csrf_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                sessiond_axum::csrf::CSRF_HEADER,
                "The session's CSRF token (from the login answer or `GET /api/csrf`): cookie requests with an unsafe method need it.",
            ))),
        );
    }
}

/// The document as served and committed (pretty JSON, a final newline).
pub fn openapi_json() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut text = ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
        text.push('\n');
        text
    })
}

/// `GET /api/v1/openapi.json`.
pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], openapi_json())
}

/// One operation as the reference page shows it.
struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    scopes: Vec<String>,
    /// Each way to authenticate ("session_cookie + csrf_token"); empty: none needed.
    credentials: Vec<String>,
    parameters: Vec<String>,
    body: Option<String>,
    responses: Vec<(String, String)>,
}

/// The human-readable reference: the same document, as a page (server
/// rendered, no script, no asset fetched from anywhere).
#[derive(askama::Template)]
#[template(path = "api_docs.html")]
struct Reference {
    title: String,
    /// The layout's header: the reference page shows no account.
    signed_in: Option<super::pages::SignedIn>,
    description: String,
    operations: Vec<Operation>,
}

fn schema_name(value: &serde_json::Value) -> String {
    let schema = &value["schema"];
    schema["$ref"]
        .as_str()
        .map(|r| r.rsplit('/').next().unwrap_or(r).to_owned())
        .or_else(|| schema["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "JSON".into())
}

/// The alternatives of an operation's `security`, each as its schemes
/// joined with `+` (`none` for the empty alternative).
fn credentials(security: &serde_json::Value) -> Vec<String> {
    security
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|alt| alt.as_object())
        .map(|alt| {
            if alt.is_empty() {
                "none".to_owned()
            } else {
                alt.keys().cloned().collect::<Vec<_>>().join(" + ")
            }
        })
        .collect()
}

fn reference() -> Reference {
    let doc: serde_json::Value =
        serde_json::from_str(openapi_json()).unwrap_or(serde_json::Value::Null);
    let mut operations = Vec::new();
    for (path, ops) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in ops.as_object().into_iter().flatten() {
            let method = method.to_uppercase();
            let scopes = op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["service_key"].as_array())
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect();
            let credentials = credentials(&op["security"]);
            let parameters = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    format!(
                        "{} ({}){}",
                        p["name"].as_str().unwrap_or(""),
                        p["in"].as_str().unwrap_or(""),
                        p["description"]
                            .as_str()
                            .map(|d| format!(": {d}"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            let body = op["requestBody"]["content"].as_object().and_then(|c| {
                c.iter()
                    .next()
                    .map(|(ct, v)| format!("{ct}: {}", schema_name(v)))
            });
            let responses = op["responses"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(status, r)| {
                    let body = r["content"]
                        .as_object()
                        .and_then(|c| c.values().next().map(schema_name));
                    let description = r["description"].as_str().unwrap_or("");
                    let text = match body {
                        Some(b) if description.is_empty() => b,
                        Some(b) => format!("{b}: {description}"),
                        None => description.to_owned(),
                    };
                    (status.clone(), text)
                })
                .collect();
            operations.push(Operation {
                anchor: format!(
                    "{}-{}",
                    method.to_lowercase(),
                    path.trim_start_matches('/')
                        .replace(['/', '{', '}', '.'], "-")
                ),
                summary: op["summary"].as_str().unwrap_or("").to_owned(),
                method,
                path: path.clone(),
                scopes,
                credentials,
                parameters,
                body,
                responses,
            });
        }
    }
    Reference {
        signed_in: None,
        title: doc["info"]["title"].as_str().unwrap_or("API").to_owned(),
        description: doc["info"]["description"].as_str().unwrap_or("").to_owned(),
        operations,
    }
}

/// `GET /api/v1/docs`: the reference page.
pub async fn reference_page() -> axum::response::Response {
    use askama::Template as _;
    match reference().render() {
        Ok(html) => axum::response::Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "the API reference could not be rendered");
            sessiond_axum::ApiError::internal().into_response()
        }
    }
}
