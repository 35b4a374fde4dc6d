//! `Application::build`: the one place the server is assembled, used by
//! `main` and by the tests alike (so tests run the real thing).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use http::StatusCode;
use sessiond_axum::{BearerLayer, ClientIpLayer, SessionLayer};
use sessiond_core::SessionManager;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::ServerConfig;
use crate::middleware;
use crate::observe::{AccessLog, ObserveLayer};
use crate::routes::{self, health};
use crate::state::{AppState, SharedState, StoreHandle};
use crate::tokens::TokenError;
use sessiond_jwt::KeyError;

/// A built server, bound to its port, not yet serving.
pub struct Application {
    listener: TcpListener,
    /// `/metrics` on its own address (`metrics_listen`).
    metrics_listener: Option<TcpListener>,
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
    /// The signing key ring in the store cannot be opened with this node's
    /// key-encryption key (or it has none): a configuration error, unlike a
    /// store that is down.
    #[error("the signing key ring cannot be read")]
    KeyRing(#[source] KeyError),
    /// `gateway.upstream` is not a usable URL.
    #[error("gateway.upstream")]
    Upstream(#[source] sessiond_gateway::proxy::ProxyError),
}

impl Application {
    /// Builds the server over `store` and binds `server.listen` (port 0 picks a free port).
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
        let listen = config.server.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| BuildError::Bind {
                addr: listen,
                source,
            })?;
        let o = &config.observability;
        let metrics_listener = match (o.metrics, o.metrics_listen) {
            (true, Some(addr)) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| BuildError::Bind { addr, source })?,
            ),
            _ => None,
        };
        if o.metrics && crate::observe::metrics_handle().is_none() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        let sessions = sessions
            .with_attribute_budget(config.attribute_budget())
            .with_rules(config.session_rules());
        let mut state = AppState::new(config, store, sessions)?;
        let g = &state.config.gateway;
        let upstream = |url: &str| {
            sessiond_gateway::proxy::Upstream::new(
                url,
                g.upstream_connect_timeout,
                g.upstream_timeout,
            )
            .map_err(BuildError::Upstream)
        };
        state.upstream = g.upstream.as_deref().map(upstream).transpose()?;
        for url in state
            .config
            .access
            .rules
            .iter()
            .filter_map(|r| r.upstream.as_deref())
        {
            state.rule_upstreams.insert(url.to_owned(), upstream(url)?);
        }
        let state = Arc::new(state);
        // Read (or create) the key ring now so the first token request does
        // not pay for it; if the store is down, the first use retries.
        match state.tokens.maintain().await {
            Ok(()) => {}
            Err(TokenError::Key(e @ KeyError::Sealed(_))) => {
                return Err(BuildError::KeyRing(e));
            }
            Err(e) => tracing::warn!(error = %e, "the signing key ring is not loaded yet"),
        }
        if state.config.tokens.key_encryption_key.is_none() && state.config.store.url.is_some() {
            tracing::warn!(
                "the signing keys are stored unencrypted in a shared store: set key_encryption_key_file \
                 (anyone who can read the store, its replicas or backups could mint access tokens)"
            );
        }
        state.tokens.spawn_maintenance(Duration::from_secs(60));
        Ok(Self {
            listener,
            metrics_listener,
            state,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.config.server.listen)
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests and
    /// closes the store.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let gauges = self.state.config.observability.metrics.then(|| {
            crate::observe::spawn_gauges(self.state.store.clone(), Duration::from_secs(5))
        });
        let metrics_server = self.metrics_listener.map(|listener| {
            let app = Router::new().route(routes::METRICS_PATH, get(health::metrics));
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        let server = &self.state.config.server;
        let limits = crate::serve::Limits {
            header_read_timeout: server.header_read_timeout,
            max_connections: server.max_connections,
        };
        let served =
            crate::serve::serve(self.listener, service(self.state.clone()), limits, shutdown).await;
        for task in [gauges, metrics_server].into_iter().flatten() {
            task.abort();
        }
        self.state.store.close().await;
        served
    }
}

/// The router wrapped in the server-wide layers.
///
/// The layers wrap the router once, rather than being added with
/// `Router::layer` (which wraps every route and clones the whole stack on
/// every request: measured at ~5% of the CPU of `GET /api/profile`).
/// Outermost first: header limit, `Host`, JSON errors and security headers
/// (`GuardLayer`); panics become a 500; the request deadline; the body
/// limit; bearer tokens (which drop a bearer request's cookie); the
/// session; CSRF.
pub fn service(
    state: SharedState,
) -> impl tower::Service<
    http::Request<axum::body::Body>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    let config = &state.config;
    let o = &config.observability;
    let access_log = o
        .access_log
        .then(|| AccessLog::stderr(config.json_logs()))
        .flatten();
    // A request span per request only when traces are exported: with the
    // text or JSON logs alone it would cost more than it gives.
    let spans = cfg!(feature = "otel") && o.otlp_endpoint.is_some();
    let observe = (o.metrics || access_log.is_some() || spans).then(|| {
        let mut templates = routes::templates();
        if state.upstream.is_some() || !state.rule_upstreams.is_empty() {
            templates.push(routes::GATEWAY_ROUTE);
        }
        ObserveLayer::new(templates, o.metrics, access_log, spans)
    });
    let server = &config.server;
    let client_ip = (!server.trusted_proxies.is_empty()).then(|| {
        ClientIpLayer::new()
            .with_trusted_proxies(server.trusted_proxies.clone(), server.forwarded_header)
    });
    tower::ServiceBuilder::new()
        // First, so that the access log, throttling and sessions all see the
        // same client address (without trusted proxies it is the peer's,
        // read where needed).
        .option_layer(client_ip)
        // Then, to time and count everything, refusals included.
        .option_layer(observe)
        // Then, so that even a panic's 500 gets the JSON shape and headers.
        .layer(
            middleware::GuardLayer::new(config.server.header_limit_bytes)
                .with_allowed_hosts(&config.server.allowed_hosts),
        )
        .map_response(axum::response::IntoResponse::into_response)
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.server.request_timeout,
        ))
        .layer(DefaultBodyLimit::max(config.server.body_limit_bytes))
        // Before the session layer: a bearer request's cookie is dropped.
        .layer(
            BearerLayer::new(state.tokens.clone())
                .with_other_credentials(crate::service_keys::PREFIX),
        )
        .layer(
            SessionLayer::new(state.sessions.clone())
                .with_cookie(config.session_cookie())
                .with_persistent_cookies(config.cookie.persistent),
        )
        // CSRF (sessiond's own routes) is a route layer in `routes::router`:
        // requests proxied to the application are judged by their access rule.
        .service(routes::router(state.clone()))
}
