//! HTTP routes, by area, and the router: the one list of what the server
//! serves. The observe layer's `route` label takes its values from
//! [`templates`], which reads the same table, so the two cannot drift.
//!
//! Handlers read as the happy path: they take typed extractors, call the
//! domain (`accounts`, `tokens`, the session engine) and return
//! `Result<_, ApiError>`; every failure goes through `?` and its
//! [`sessiond_axum::ErrorCode`].

pub mod account;
pub mod admin;
pub mod admin_pages;
pub mod auth;
pub mod errors;
pub mod gateway;
pub mod health;
pub mod openapi;
pub mod pages;
pub mod reauth;
pub mod service;
pub mod token;

use axum::Router;
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use serde::Serialize;
use sessiond_axum::{
    ApiError, CsrfLayer, ErrorCode, Limit, RateLimitLayer, RequireLiveSessionLayer,
    RequireRoleLayer, ResponseCacheLayer,
};
use sessiond_core::StoredSession;

use crate::accounts::AccountError;
use crate::password::HashError;
use crate::state::SharedState;
use crate::tokens::TokenError;

/// How the HTTP API answers each account outcome: the one place where
/// domain errors meet error codes.
impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidCredentials => ErrorCode::InvalidCredentials.into(),
            AccountError::Throttled { retry_after } => ApiError::too_many_attempts(retry_after),
            AccountError::WrongPassword => ErrorCode::WrongPassword.into(),
            AccountError::WeakPassword(_) => ApiError::new(ErrorCode::WeakPassword, e.to_string()),
            AccountError::BadName(_)
            | AccountError::BadRole(_)
            | AccountError::BadLine(_)
            | AccountError::BadPassword(..) => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            AccountError::Exists(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            // The account was deleted while the session lived.
            AccountError::Missing(_) => ApiError::unauthenticated(),
            AccountError::Store(e) => e.into(),
            // The hashing queue is full: a login storm, not a fault.
            AccountError::Hash(HashError::Busy) => {
                ApiError::from(ErrorCode::Busy).with_retry_after(1)
            }
            AccountError::Hash(e) => {
                tracing::error!(error = %e, "password hashing failed");
                ApiError::internal()
            }
        }
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Store(e) => e.into(),
            TokenError::Key(e) => {
                tracing::error!(error = %e, "token signing failed");
                ApiError::internal()
            }
        }
    }
}

/// A session as the account and admin APIs show it: a public handle, never the token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// Public handle (SHA-256 of the token, base64url).
    pub id: String,
    /// Whether this is the session making the request.
    pub current: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, accurate to the renewal threshold.
    pub last_seen: u64,
    /// Unix seconds: when it ends if not renewed.
    pub expires_at: u64,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// Device label at creation ("Firefox 133 on Linux").
    pub user_agent: Option<String>,
    /// Signed in with "keep me signed in".
    pub remembered: bool,
    /// Unix seconds: when the user last proved their password for it.
    pub auth_time: u64,
}

impl SessionView {
    /// The view of `s`; `current` is the caller's own session handle.
    pub fn new(s: StoredSession, current: Option<&str>) -> Self {
        let id = s.key.handle();
        Self {
            remembered: s.record.remembered(),
            auth_time: s.record.auth_time() / 1000,
            current: current == Some(id.as_str()),
            id,
            created_at: s.record.created_at / 1000,
            last_seen: s.record.last_seen / 1000,
            expires_at: s.record.expires_at() / 1000,
            ip: s.record.client.ip,
            user_agent: s.record.client.user_agent,
        }
    }
}

/// Who may call a group of routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    /// Anyone.
    Public,
    /// A session or a bearer token (a bearer token is trusted on its
    /// signature alone: revocation takes effect when it expires).
    Stateless,
    /// A session, or a bearer token whose session is still live.
    SignedIn,
    /// As `SignedIn`, with the admin role.
    Admin,
}

/// Every route: (template, tier, handlers). `/metrics` is added by
/// [`router`] when it is served on the main listener.
fn table() -> Vec<(&'static str, Tier, MethodRouter<SharedState>)> {
    use Tier::{Admin, Public, SignedIn, Stateless};
    vec![
        ("/", Public, get(pages::home)),
        ("/login", Public, get(auth::login_page).post(auth::login)),
        ("/logout", Public, post(auth::logout)),
        ("/auth/verify", Public, get(gateway::verify)),
        ("/auth/forward", Public, get(gateway::forward)),
        ("/api/csrf", Public, get(account::csrf)),
        ("/api/token", Public, post(token::issue)),
        ("/api/token/refresh", Public, post(token::refresh)),
        ("/api/token/revoke", Public, post(token::revoke)),
        ("/.well-known/jwks.json", Public, get(token::jwks)),
        ("/api/public/ping", Public, get(health::healthz)),
        ("/assets/app.css", Public, get(pages::stylesheet)),
        ("/healthz", Public, get(health::healthz)),
        ("/readyz", Public, get(health::readyz)),
        ("/api/profile", Stateless, get(account::profile)),
        ("/api/sessions", SignedIn, get(account::list)),
        (
            "/api/sessions/revoke-others",
            SignedIn,
            post(account::revoke_others),
        ),
        ("/api/sessions/{id}", SignedIn, delete(account::revoke)),
        ("/api/password", SignedIn, post(account::change_password)),
        ("/api/reauth", SignedIn, post(reauth::reauthenticate)),
        // The account page's forms.
        (
            "/account/sessions/{id}/end",
            SignedIn,
            post(pages::end_session),
        ),
        (
            "/account/sessions/end-others",
            SignedIn,
            post(pages::end_other_sessions),
        ),
        ("/account/password", SignedIn, post(pages::change_password)),
        ("/account/reauth", SignedIn, post(pages::reauthenticate)),
        ("/api/session", SignedIn, get(account::current_session)),
        (
            "/api/session/attributes",
            SignedIn,
            patch(account::patch_attributes),
        ),
        (
            "/api/admin/users/{name}/sessions",
            Admin,
            get(admin::list_user_sessions).delete(admin::revoke_user_sessions),
        ),
        (
            "/api/admin/keys/rotate",
            Admin,
            post(admin::rotate_signing_key),
        ),
        // The admin console's pages and forms.
        ("/admin", Admin, get(admin_pages::overview)),
        ("/admin/users", Admin, get(admin_pages::users)),
        ("/admin/users/{name}", Admin, get(admin_pages::user)),
        (
            "/admin/users/{name}/roles",
            Admin,
            post(admin_pages::set_roles),
        ),
        (
            "/admin/users/{name}/disabled",
            Admin,
            post(admin_pages::set_disabled),
        ),
        (
            "/admin/users/{name}/password",
            Admin,
            post(admin_pages::set_password),
        ),
        (
            "/admin/users/{name}/sessions/end-all",
            Admin,
            post(admin_pages::end_all),
        ),
        (
            "/admin/users/{name}/sessions/{id}/end",
            Admin,
            post(admin_pages::end_one),
        ),
        ("/admin/keys", Admin, get(admin_pages::keys)),
        ("/admin/events", Admin, get(admin_pages::events)),
        ("/admin/keys/rotate", Admin, post(admin_pages::rotate)),
        (
            "/admin/service-keys",
            Admin,
            post(admin_pages::create_service_key),
        ),
        (
            "/admin/service-keys/{name}/revoke",
            Admin,
            post(admin_pages::revoke_service_key),
        ),
        // The service API: a service key, checked by each handler.
        ("/api/v1/openapi.json", Public, get(openapi::document)),
        ("/api/v1/docs", Public, get(openapi::reference_page)),
        ("/api/v1/sessions/whoami", Public, post(service::whoami)),
        ("/api/v1/introspect", Public, post(service::introspect)),
        ("/api/v1/sessions", Public, post(service::create_session)),
        (
            "/api/v1/sessions/{id}",
            Public,
            delete(service::revoke_session),
        ),
        (
            "/api/v1/sessions/{id}/attributes",
            Public,
            patch(service::patch_session_attributes),
        ),
        (
            "/api/v1/service-keys",
            Public,
            get(service::list_service_keys).post(service::create_service_key),
        ),
        (
            "/api/v1/service-keys/{name}",
            Public,
            delete(service::revoke_service_key),
        ),
        (
            "/api/v1/users",
            Public,
            get(service::list_users).post(service::create_user),
        ),
        (
            "/api/v1/users/{id}",
            Public,
            get(service::get_user)
                .patch(service::update_user)
                .delete(service::delete_user),
        ),
        ("/api/v1/events", Public, get(service::list_events)),
        (
            "/api/v1/users/{id}/sessions",
            Public,
            get(service::user_sessions).delete(service::revoke_user_sessions),
        ),
    ]
}

/// The path of the Prometheus endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// The `route` label of requests the built-in proxy passes to the
/// application (everything that is not one of sessiond's routes).
pub const GATEWAY_ROUTE: &str = "/{*application}";

/// Every route template the server can serve (the values of the `route`
/// label; any other path is `unmatched`).
pub fn templates() -> Vec<&'static str> {
    table()
        .into_iter()
        .map(|(path, _, _)| path)
        .chain([METRICS_PATH])
        .collect()
}

/// The routes, with role tiers as route layers, without the server-wide layers.
pub fn router(state: SharedState) -> Router {
    let mut tiers: [Router<SharedState>; 4] = Default::default();
    for (path, tier, handlers) in table() {
        let slot = &mut tiers[tier as usize];
        *slot = std::mem::take(slot).route(path, handlers);
    }
    let [mut public, stateless, signed_in, admin] = tiers;
    // On the main listener unless it has its own (`metrics_listen`).
    let o = &state.config.observability;
    if o.metrics && o.metrics_listen.is_none() {
        public = public.route(METRICS_PATH, get(health::metrics));
    }
    // sessiond's own public routes, limited per client address when
    // `[rate_limit] public` is set (health checks are not).
    if let Some(rate) = state.config.rate_limit.public_rate() {
        let store = state.store.backend.clone();
        let limits = RateLimitLayer::new(store, move |req| {
            let path = req.uri().path();
            (path != "/healthz" && path != "/readyz" && path != METRICS_PATH).then(|| Limit {
                policy: "public".into(),
                key: sessiond_axum::ClientIp::of(req.extensions())
                    .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                rate,
            })
        })
        .with_fail_closed(state.config.gateway.rate_limit_fail_closed);
        public = public.route_layer(limits);
    }
    // Routes that act on sessions or the account: a bearer caller's session must be live.
    let live = RequireLiveSessionLayer::new(state.sessions.clone())
        .with_store_down_policy(state.config.tokens.bearer_when_store_down);
    // CSRF needs the session the session layer loaded. A route layer, so
    // that requests the gateway proxies to the application (the fallback)
    // are judged by their access rule's origin check instead: sessiond
    // cannot know the application's CSRF tokens.
    let csrf = CsrfLayer::new()
        .with_allowed_origins(state.config.csrf.allowed_origins.clone())
        .with_exempt_paths(["/api/token/refresh", "/api/token/revoke"]);
    let router = Router::new()
        .merge(public)
        .merge(stateless.route_layer(RequireRoleLayer::authenticated()))
        .merge(
            signed_in
                .route_layer(live.clone())
                .route_layer(RequireRoleLayer::authenticated()),
        )
        .merge(
            admin
                .route_layer(live)
                .route_layer(RequireRoleLayer::role("admin")),
        )
        .route_layer(csrf);
    // The application behind the gateway: response cache, rate limit, then
    // the access rules and the proxy.
    let router = if state.upstream.is_some() || !state.rule_upstreams.is_empty() {
        router.fallback_service(application(&state))
    } else {
        router
    };
    router.with_state(state)
}

/// The chain in front of the application: cache → rate limit → access
/// rules and proxy. A layer that has nothing to do is left out (without
/// rates, each request would match its rule twice for nothing).
fn application(state: &SharedState) -> Router {
    let proxy = Router::new()
        .fallback(any(gateway::proxy))
        .with_state(state.clone());
    let limited = if state.access.has_rates() {
        proxy.layer(
            RateLimitLayer::new(
                state.store.backend.clone(),
                gateway::rate_limit_of(state.clone()),
            )
            .with_fail_closed(state.config.gateway.rate_limit_fail_closed),
        )
    } else {
        proxy
    };
    let c = &state.config.cache;
    if !c.enabled {
        return limited;
    }
    limited.layer(
        ResponseCacheLayer::new(
            state.store.backend.clone(),
            gateway::cache_rule_of(state.clone()),
        )
        .with_max_bytes(c.max_bytes)
        .with_max_entry_bytes(c.max_entry_bytes)
        .with_max_ttl(c.max_ttl)
        .with_coalesce_wait(c.coalesce_wait)
        .with_credential_cookies([state.own_cookies[0].clone()])
        // A hit is the application's answer, stored: it leaves as the
        // proxy passes the application's answers on.
        .with_hit_extension(crate::middleware::FromApplication),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the code generates, so an API
    /// change shows in review. `UPDATE_OPENAPI=1 cargo test -p
    /// sessiond --lib openapi` writes it anew.
    #[test]
    fn the_committed_openapi_document_is_the_one_the_code_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let generated = openapi::openapi_json();
        if std::env::var("UPDATE_OPENAPI").as_deref() == Ok("1") {
            std::fs::write(path, generated).unwrap();
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from the generated document; run UPDATE_OPENAPI=1 cargo test -p sessiond --lib openapi and commit it"
        );
    }

    /// Routes the document leaves out, each with its reason.
    const UNDOCUMENTED: [(&str, &str); 24] = [
        ("/admin/events", "an admin page"),
        ("/", "a page"),
        ("/admin", "an admin page"),
        ("/admin/users", "an admin page"),
        ("/admin/users/{name}", "an admin page"),
        ("/admin/users/{name}/roles", "an admin page's form"),
        ("/admin/users/{name}/disabled", "an admin page's form"),
        ("/admin/users/{name}/password", "an admin page's form"),
        (
            "/admin/users/{name}/sessions/end-all",
            "an admin page's form",
        ),
        (
            "/admin/users/{name}/sessions/{id}/end",
            "an admin page's form",
        ),
        ("/admin/keys", "an admin page"),
        ("/admin/keys/rotate", "an admin page's form"),
        ("/admin/service-keys", "an admin page's form"),
        ("/admin/service-keys/{name}/revoke", "an admin page's form"),
        ("/account/sessions/{id}/end", "a page's form"),
        ("/account/sessions/end-others", "a page's form"),
        ("/account/password", "a page's form"),
        ("/account/reauth", "a page's form"),
        ("/assets/app.css", "the pages' stylesheet"),
        (
            "/auth/verify",
            "forward-auth for proxies: answers by status and headers (docs/gateway.md)",
        ),
        ("/auth/forward", "forward-auth for proxies, as /auth/verify"),
        (
            "/api/public/ping",
            "the load harness's public route: /healthz under another name",
        ),
        ("/api/v1/openapi.json", "the document itself"),
        ("/api/v1/docs", "the document as a page"),
    ];

    /// The table and the document name the same paths, but for the few
    /// left out on purpose (the methods of each are checked against the
    /// live server in `tests/it/service.rs`).
    #[test]
    fn every_json_route_of_the_table_is_in_the_openapi_document_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(openapi::openapi_json()).unwrap();
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let served: std::collections::BTreeSet<String> = table()
            .into_iter()
            .map(|(path, _, _)| path.to_owned())
            .filter(|path| UNDOCUMENTED.iter().all(|(p, _)| p != path))
            .collect();
        assert_eq!(documented, served);
        for (path, _) in UNDOCUMENTED {
            assert!(templates().contains(&path), "{path} is still served");
        }
    }

    #[test]
    fn every_operation_of_the_openapi_document_has_its_own_operation_id() {
        let doc: serde_json::Value = serde_json::from_str(openapi::openapi_json()).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for ops in doc["paths"].as_object().unwrap().values() {
            for op in ops.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert!(seen.insert(id.to_owned()), "{id} twice");
            }
        }
        assert_eq!(seen.len(), 37);
    }

    #[test]
    fn with_the_proxy_on_every_other_path_is_labelled_as_the_application() {
        let mut templates = templates();
        templates.push(GATEWAY_ROUTE);
        let layer = crate::observe::ObserveLayer::new(templates, true, None, false);
        assert_eq!(layer.route_label("/app/orders/7"), GATEWAY_ROUTE);
        assert_eq!(layer.route_label("/api/sessions"), "/api/sessions");
        assert_eq!(layer.route_label("/login"), "/login");
    }

    #[test]
    fn every_route_of_the_table_gets_its_own_template_as_the_metrics_route_label() {
        let templates = templates();
        assert!(templates.len() >= 20, "{templates:?}");
        let layer = crate::observe::ObserveLayer::new(templates.clone(), true, None, false);
        for route in &templates {
            let concrete = route.replace("{id}", "x").replace("{name}", "y");
            assert_eq!(layer.route_label(&concrete), *route);
        }
    }
}
