//! The application state shared by every handler.

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::{Backend, BreakerState, ResilienceConfig, ResilientStore, SessionManager};
use sessiond_store_file::{FileStore, FileStoreConfig};
use sessiond_store_redis::{RedisConfig, RedisStore};

use crate::config::ServerConfig;
use crate::password::Hasher;
use crate::throttle::Throttle;

/// Errors opening the configured store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenStoreError {
    /// The embedded file store.
    #[error(transparent)]
    File(#[from] sessiond_store_file::OpenError),
    /// Redis.
    #[error(transparent)]
    Redis(#[from] sessiond_store_redis::ConnectError),
}

/// The store the server runs on, with whatever closing it needs.
#[derive(Clone)]
pub struct StoreHandle {
    /// Sessions and users (behind deadlines, retries and a circuit breaker
    /// when opened from configuration).
    pub backend: Arc<dyn Backend>,
    file: Option<FileStore>,
    resilient: Option<Arc<ResilientStore>>,
}

impl StoreHandle {
    /// Opens the configured store: Redis when `store` is set, else the
    /// embedded file store in `data_dir`.
    pub async fn open(config: &ServerConfig) -> Result<Self, OpenStoreError> {
        match &config.store {
            Some(url) => {
                let mut redis = RedisConfig::new(url.clone());
                redis.prefix.clone_from(&config.redis_prefix);
                redis.wait_replicas = config.redis_wait_replicas;
                redis.pool_size = config.redis_pool_size;
                redis.count_interval = Duration::from_secs(config.redis_count_interval_secs);
                redis.tls_ca_file.clone_from(&config.redis_tls_ca_file);
                let store = RedisStore::connect(&redis).await?;
                Ok(Self::from_backend(Arc::new(store)).resilient(config))
            }
            None => Ok(Self::open_file(config)?.resilient(config)),
        }
    }

    /// Wraps the backend in deadlines, retries and a circuit breaker.
    fn resilient(mut self, config: &ServerConfig) -> Self {
        let settings = ResilienceConfig {
            call_timeout: Duration::from_millis(config.store_timeout_ms),
            max_retries: config.store_retries,
            ..ResilienceConfig::default()
        };
        let store = Arc::new(ResilientStore::new(self.backend.clone(), settings));
        self.backend = store.clone();
        self.resilient = Some(store);
        self
    }

    /// The circuit breaker's state, when there is one.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.resilient.as_ref().map(|r| r.breaker_state())
    }

    /// Opens the embedded file store in the configured data directory.
    pub fn open_file(config: &ServerConfig) -> Result<Self, sessiond_store_file::OpenError> {
        let store = FileStore::open(&config.data_dir, FileStoreConfig::default())?;
        Ok(Self {
            backend: Arc::new(store.clone()),
            file: Some(store),
            resilient: None,
        })
    }

    /// Wraps any backend (tests use the memory store).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            file: None,
            resilient: None,
        }
    }

    /// Flushes and closes the store.
    pub async fn close(&self) {
        if let Some(file) = &self.file {
            file.close().await;
        }
    }
}

/// Shared state: engine, users, hasher, throttles, configuration.
pub struct AppState {
    /// The session engine.
    pub sessions: SessionManager,
    /// The store (users live here too).
    pub store: StoreHandle,
    /// argon2id on the blocking pool.
    pub hasher: Hasher,
    /// Failed logins per username.
    pub user_throttle: Throttle,
    /// Failed logins per client IP.
    pub ip_throttle: Throttle,
    /// Access tokens and refresh families.
    pub tokens: Arc<crate::tokens::TokenService>,
    /// The configuration.
    pub config: ServerConfig,
}

/// What handlers receive.
pub type SharedState = Arc<AppState>;

impl AppState {
    /// Builds the state from configuration and an open store.
    pub fn new(
        config: ServerConfig,
        store: StoreHandle,
        sessions: SessionManager,
    ) -> Result<Self, crate::password::HashError> {
        let window = Duration::from_secs(config.login_throttle_window_secs);
        Ok(Self {
            sessions,
            hasher: Hasher::new(config.max_concurrent_hashes)?,
            user_throttle: Throttle::new(config.login_failures_per_user, window),
            ip_throttle: Throttle::new(config.login_failures_per_ip, window),
            tokens: Arc::new(crate::tokens::TokenService::new(
                store.backend.clone(),
                config.tokens(),
            )),
            store,
            config,
        })
    }
}
