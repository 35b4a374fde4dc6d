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
