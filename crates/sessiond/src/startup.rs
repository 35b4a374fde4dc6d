//! `Application::build`: the one place the server is assembled, used by
//! `main` and by the tests alike (so tests run the real thing).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use http::StatusCode;
use sessiond_axum::{CsrfLayer, RequireRoleLayer, SessionLayer};
use sessiond_core::SessionManager;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerConfig;
use crate::middleware;
use crate::routes::{account, admin, auth, health, pages};
use crate::state::{AppState, SharedState, StoreHandle};

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: SharedState,
}

/// Errors building the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The password hasher could not be set up.
    #[error(transparent)]
    Hasher(#[from] crate::password::HashError),
}

impl Application {
    /// Builds the server over `store` and binds `config.listen` (port 0 picks a free port).
    pub async fn build(config: ServerConfig, store: StoreHandle) -> Result<Self, BuildError> {
        let sessions = SessionManager::new(store.backend.clone(), config.policy());
        Self::build_with(config, store, sessions).await
    }

    /// As [`Application::build`], with a given engine (tests inject a clock).
    pub async fn build_with(
        config: ServerConfig,
        store: StoreHandle,
        sessions: SessionManager,
    ) -> Result<Self, BuildError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| BuildError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let state = Arc::new(AppState::new(config, store, sessions)?);
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.listen)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and
    /// closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, service)
            .with_graceful_shutdown(shutdown)
            .await;
        self.state.store.close().await;
        served
    }
}

/// The whole HTTP surface.
pub fn router(state: SharedState) -> Router {
    let config = &state.config;
    let session_layer = SessionLayer::new(state.sessions.clone()).with_cookie(config.cookie());
    let header_limit = config.header_limit_bytes;

    let signed_in = Router::new()
        .route("/api/profile", get(account::profile))
        .route("/api/sessions", get(account::list))
        .route("/api/sessions/revoke-others", post(account::revoke_others))
        .route("/api/sessions/{id}", delete(account::revoke))
        .route("/api/password", post(account::change_password))
        .route("/api/session", get(account::current_session))
        .route(
            "/api/session/attributes",
            axum::routing::patch(account::patch_attributes),
        )
        .route_layer(RequireRoleLayer::authenticated());
    let admin = Router::new()
        .route(
            "/api/admin/users/{name}/sessions",
            get(admin::list_user_sessions).delete(admin::revoke_user_sessions),
        )
        .route_layer(RequireRoleLayer::role("admin"));
    let public = Router::new()
        .route("/", get(pages::home))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/api/csrf", get(account::csrf))
        .route("/api/public/ping", get(health::healthz))
        .route("/assets/app.css", get(pages::stylesheet))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz));

    let mut app = Router::new()
        .merge(public)
        .merge(signed_in)
        .merge(admin)
        .with_state(state.clone())
        // Innermost first: CSRF needs the session the session layer loaded.
        .layer(CsrfLayer::new().with_allowed_origins(config.allowed_origins.clone()))
        .layer(session_layer)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(config.request_timeout_secs),
        ))
        .layer(axum::middleware::from_fn(move |req, next| {
            middleware::limit_headers(header_limit, req, next)
        }));
    for (name, value) in middleware::security_headers() {
        app = app.layer(SetResponseHeaderLayer::if_not_present(name, value));
    }
    app.layer(axum::middleware::from_fn(middleware::json_errors))
        .layer(CatchPanicLayer::new())
}
