//! The OpenAPI 3.1 document of the service API, derived with `utoipa` from
//! the handlers' annotations and the body types they use.
//!
//! Why `utoipa` and not `aide`: `utoipa` describes handlers with attributes
//! and leaves them and the route table as they are; `aide` wants its own
//! router types around every route. The table (`routes::table`) stays the
//! one list of routes; a test checks that every `/api/v1` route in it is in
//! the document.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::sessions::{IntrospectRequest, NewSessionRequest, WhoamiRequest};
use super::users::{NewServiceKey, NewUser, UserChange};
use super::views::{
    AttributeChanges, AttributesVersion, CookieAttributes, ErrorBody, ErrorDetail, Identity,
    Introspection, NewAttributes, NewServiceKeyView, NewSessionView, Revoked, ServiceKeyView,
    ServiceKeys, SessionInfo, SessionsPage, UserChanged, UserView, UsersPage, Whoami,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "sessiond service API",
        description = "For other backends and automation: sessions and users of a sessiond deployment, authenticated by service keys (`Authorization: Bearer sdk_…`). Every error is `{\"error\": {\"code\", \"message\"}}` with a stable code.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        super::sessions::whoami,
        super::sessions::introspect,
        super::sessions::create_session,
        super::sessions::user_sessions,
        super::sessions::revoke_user_sessions,
        super::sessions::revoke_session,
        super::sessions::patch_session_attributes,
        super::users::list_users,
        super::users::create_user,
        super::users::get_user,
        super::users::update_user,
        super::users::delete_user,
        super::users::list_service_keys,
        super::users::create_service_key,
        super::users::revoke_service_key,
    ),
    components(schemas(
        WhoamiRequest, IntrospectRequest, NewSessionRequest, NewUser, UserChange, NewServiceKey,
        Whoami, Identity, SessionInfo, Introspection, NewSessionView, CookieAttributes,
        SessionsPage, Revoked, AttributesVersion, UserView, UserChanged, UsersPage,
        ServiceKeyView, NewServiceKeyView, ServiceKeys, ErrorBody, ErrorDetail, NewAttributes,
        AttributeChanges, crate::service_keys::ServiceScope, super::users::Role,
    )),
    modifiers(&Security),
    tags((name = "service", description = "the service API, for other backends")),
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
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
                parameters,
                body,
                responses,
            });
        }
    }
    Reference {
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
