//! The application state shared by every handler.

use std::path::PathBuf;
use std::sync::Arc;

use sessiond_core::{Backend, BreakerState, ResilienceConfig, ResilientStore, SessionManager};
use sessiond_store_file::{FileStore, FileStoreConfig};
use sessiond_store_redis::{NearCacheConfig, NearCacheStats, RedisConfig, RedisStore};

use sessiond_axum::{CookieConfig, SameSite};

use crate::accounts::{Accounts, ThrottleLimits};
use crate::config::ServerConfig;
use crate::devices::DeviceCookies;
use crate::password::{HashError, Hasher, PoolConfig};
use crate::tokens::{RefreshFamilies, TokenService};

/// The login form's double-submit CSRF cookie (before a session exists).
pub const LOGIN_CSRF_COOKIE: &str = "__Host-sessiond-login";

/// The device cookie set at each sign-in (see [`crate::devices`]).
pub const DEVICE_COOKIE: &str = "__Host-sessiond-device";

/// Errors opening the configured store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The Redis password file could not be read.
    #[error("cannot read the Redis password file {}", path.display())]
    PasswordFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The embedded file store.
    #[error("cannot open the embedded store in {}", dir.display())]
    File {
        /// The data directory.
        dir: std::path::PathBuf,
        /// Why (redb's lock error when another process has it open).
        #[source]
        source: sessiond_store_file::OpenError,
    },
    /// Redis.
    #[error("cannot use the Redis store at {url}")]
    Redis {
        /// The configured URL, its password left out.
        url: String,
        /// Why.
        #[source]
        source: sessiond_store_redis::ConnectError,
    },
}

/// The store the server runs on, with whatever closing it needs.
#[derive(Clone)]
pub struct StoreHandle {
    /// Sessions and users (behind deadlines, retries and a circuit breaker
    /// when opened from configuration).
    pub backend: Arc<dyn Backend>,
    file: Option<FileStore>,
    redis: Option<RedisStore>,
    resilient: Option<Arc<ResilientStore>>,
}

impl StoreHandle {
    /// Opens the configured store: Redis when `store` is set, else the
    /// embedded file store in `data_dir`.
    pub async fn open(config: &ServerConfig) -> Result<Self, OpenStoreError> {
        match &config.store.url {
            Some(url) => {
                let r = &config.redis;
                let mut redis = RedisConfig::new(url.clone());
                redis.prefix.clone_from(&r.prefix);
                redis.wait_replicas = r.wait_replicas;
                redis.pool_size = r.pool_size;
                redis.count_interval = r.count_interval;
                redis.tls_ca_file.clone_from(&r.tls_ca_file);
                redis.near_cache = r.near_cache.then_some(NearCacheConfig {
                    max_entries: r.near_cache_max_entries,
                    max_bytes: r.near_cache_max_bytes,
                    max_age: r.near_cache_max_age,
                });
                redis.password = r.password_file.as_deref().map(read_secret).transpose()?;
                redis.sentinel_username.clone_from(&r.sentinel_username);
                redis.sentinel_password = r
                    .sentinel_password_file
                    .as_deref()
                    .map(read_secret)
                    .transpose()?;
                let store =
                    RedisStore::connect(&redis)
                        .await
                        .map_err(|source| OpenStoreError::Redis {
                            url: sessiond_store_redis::redact_url(url),
                            source,
                        })?;
                let mut handle = Self::from_backend(Arc::new(store.clone()));
                handle.redis = Some(store);
                Ok(handle.resilient(config))
            }
            None => Ok(Self::open_file(config)?.resilient(config)),
        }
    }

    /// Wraps the backend in deadlines, retries and a circuit breaker.
    fn resilient(mut self, config: &ServerConfig) -> Self {
        let settings = ResilienceConfig {
            call_timeout: config.store.timeout,
            max_retries: config.store.retries,
            ..ResilienceConfig::default()
        };
        let store = Arc::new(ResilientStore::new(self.backend.clone(), settings));
        self.backend = store.clone();
        self.resilient = Some(store);
        self
    }

    /// The state of the breaker that guards the whole store, when there is one.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.resilient.as_ref().map(|r| r.breaker_state())
    }

    /// Every breaker in use (one per Cluster master, besides the whole
    /// store's) and its state.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.resilient
            .as_ref()
            .map(|r| r.breaker_states())
            .unwrap_or_default()
    }

    /// The parts of the store (Cluster masters) whose breaker is not
    /// closed: the sessions they hold are refused, the others served.
    pub fn impaired_parts(&self) -> Vec<String> {
        self.resilient
            .as_ref()
            .map(|r| r.impaired_parts())
            .unwrap_or_default()
    }

    /// Whether the store is serving reads but refusing durable writes
    /// (Redis: fewer replicas than `redis.wait_replicas` acknowledge).
    pub fn durability_degraded(&self) -> bool {
        self.resilient
            .as_ref()
            .is_some_and(|r| r.durability_degraded())
    }

    /// Opens the embedded file store in the configured data directory.
    pub fn open_file(config: &ServerConfig) -> Result<Self, OpenStoreError> {
        let dir = &config.store.data_dir;
        let store = FileStore::open(dir, FileStoreConfig::default()).map_err(|source| {
            OpenStoreError::File {
                dir: dir.clone(),
                source,
            }
        })?;
        Ok(Self {
            backend: Arc::new(store.clone()),
            file: Some(store),
            redis: None,
            resilient: None,
        })
    }

    /// Wraps any backend (tests use the memory store).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            file: None,
            redis: None,
            resilient: None,
        }
    }

    /// What the Redis near-cache holds and has done, when there is one.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.redis.as_ref().and_then(RedisStore::near_cache_stats)
    }

    /// The account operations over this store (what the CLI uses; the
    /// server builds its own in [`AppState::new`]).
    pub fn accounts(&self, config: &ServerConfig) -> Result<Accounts, HashError> {
        let sessions = SessionManager::new(self.backend.clone(), config.policy())
            .with_rules(config.session_rules());
        Ok(Accounts::new(
            self.backend.clone(),
            sessions,
            Hasher::new(PoolConfig::batch(), config.argon2_params())?,
            throttle_limits(config),
        )
        .with_password_rules(config.password_rules()))
    }

    /// Flushes and closes the store.
    pub async fn close(&self) {
        if let Some(file) = &self.file {
            file.close().await;
        }
    }
}

fn throttle_limits(config: &ServerConfig) -> ThrottleLimits {
    ThrottleLimits {
        per_user: config.login.failures_per_user,
        per_device: config.login.failures_per_device,
        per_ip: config.login.failures_per_ip,
        window: config.login.throttle_window,
    }
}

/// Shared state: the engine, the domain services, the configuration.
pub struct AppState {
    /// The session engine.
    pub sessions: SessionManager,
    /// The store (users live here too).
    pub store: StoreHandle,
    /// Credentials, passwords, users.
    pub accounts: Accounts,
    /// The security-event log.
    pub events: crate::events::Events,
    /// The signing key ring and access tokens.
    pub tokens: Arc<TokenService>,
    /// Refresh-token families.
    pub families: RefreshFamilies,
    /// The service API's keys.
    pub service_keys: crate::service_keys::ServiceKeys,
    /// Service keys' own rate limits (checked by the service API's
    /// extractor, not as a layer: no request is classified).
    pub service_limits: sessiond_axum::RateLimitLayer,
    /// The login form's double-submit cookie.
    pub login_csrf_cookie: CookieConfig,
    /// Device cookies (throttling per known browser).
    pub devices: DeviceCookies,
    /// Which peers are proxies (`server.trusted_proxies`), for forward-auth
    /// and the proxy's `X-Forwarded-*`.
    pub trusted_proxies: sessiond_axum::TrustedProxies,
    /// sessiond's own cookies, which the built-in proxy never passes on.
    pub own_cookies: [String; 3],
    /// The gateway's access rules (`[access]`), ready to decide.
    pub access: sessiond_gateway::AccessRules,
    /// `Cache-Control` of allowed forward-auth answers (`gateway.auth_cache_max_age`).
    pub auth_cache_control: http::HeaderValue,
    /// The application behind the built-in proxy (`gateway.upstream`).
    pub upstream: Option<sessiond_gateway::proxy::Upstream<axum::body::Body>>,
    /// The applications access rules name (`upstream` in a rule), by URL.
    pub rule_upstreams:
        std::collections::HashMap<String, sessiond_gateway::proxy::Upstream<axum::body::Body>>,
    /// The configuration.
    pub config: ServerConfig,
}

/// What handlers receive.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// Builds the state from configuration and an open store. Every part
    /// runs on the engine's clock.
    pub fn new(
        config: ServerConfig,
        store: StoreHandle,
        sessions: SessionManager,
    ) -> Result<Self, HashError> {
        let hasher = Hasher::new(
            PoolConfig {
                threads: config.login.hash_threads(),
                queue: config.login.hash_queue,
                nice: config.login.hash_nice,
            },
            config.argon2_params(),
        )?;
        let settings = config.token_settings();
        tokio::task::spawn_blocking(crate::password_rules::PasswordRules::warm_up);
        Ok(Self {
            events: crate::events::Events::start(
                store.backend.clone(),
                sessions.clock(),
                config.observability.security_events_kept,
            ),
            accounts: Accounts::new(
                store.backend.clone(),
                sessions.clone(),
                hasher,
                throttle_limits(&config),
            )
            .with_password_rules(config.password_rules()),
            families: RefreshFamilies::new(sessions.clone(), settings.refresh_grace),
            service_keys: crate::service_keys::ServiceKeys::new(
                store.backend.clone(),
                sessions.clock(),
            ),
            service_limits: sessiond_axum::RateLimitLayer::new(store.backend.clone(), |_| None),
            tokens: Arc::new(TokenService::new(
                store.backend.clone(),
                settings,
                sessions.clock(),
            )),
            login_csrf_cookie: CookieConfig::new(
                LOGIN_CSRF_COOKIE,
                config.cookie.secure,
                SameSite::Strict,
            ),
            devices: DeviceCookies::new(
                CookieConfig::new(DEVICE_COOKIE, config.cookie.secure, SameSite::Strict),
                config.login.device_cookie_lifetime,
                store.backend.clone(),
            ),
            trusted_proxies: sessiond_axum::TrustedProxies::new(
                config.server.trusted_proxies.clone(),
                config.server.forwarded_header,
            ),
            own_cookies: [
                config.session_cookie().name,
                LOGIN_CSRF_COOKIE.to_owned(),
                DEVICE_COOKIE.to_owned(),
            ],
            access: config.access.rules(),
            auth_cache_control: http::HeaderValue::from_str(&format!(
                "private, max-age={}",
                config.gateway.auth_cache_max_age.as_secs()
            ))
            .unwrap_or(http::HeaderValue::from_static("private, max-age=0")),
            upstream: None,
            rule_upstreams: std::collections::HashMap::new(),
            sessions,
            store,
            config,
        })
    }
}

/// A password kept in a file: one line, a final newline ignored.
fn read_secret(path: &std::path::Path) -> Result<String, OpenStoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| OpenStoreError::PasswordFile {
        path: path.to_owned(),
        source,
    })?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}
