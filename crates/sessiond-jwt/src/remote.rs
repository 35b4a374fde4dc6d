//! Verification for another service, with only the issuer's JWKS URL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, RwLock};

use crate::cache::VerifiedCache;
use crate::claims::AccessClaims;
use crate::keys::Jwks;
use crate::verify::{KeySet, Rules, TokenVerifier, VerifyError, peek};

/// A JWKS answer larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// A [`TokenVerifier`] over a remote JWK Set.
///
/// Keys are fetched on first use and kept for the `Cache-Control: max-age`
/// the issuer sends (bounded to 30 s – 1 h, 5 min without one). A token with
/// an unknown `kid` (the issuer rotated) triggers a refetch, at most once per
/// [`RemoteJwks::with_min_refetch_interval`] so that a flood of forged kids
/// cannot turn this service into a load generator against the issuer. When a
/// refresh fails, the keys already held stay in use.
pub struct RemoteJwks {
    url: String,
    rules: Rules,
    http: reqwest::Client,
    keys: RwLock<Cached>,
    /// Serialises fetches: concurrent misses wait for one request.
    fetching: Mutex<()>,
    min_refetch: Duration,
    verified: VerifiedCache,
}

struct Cached {
    set: Arc<KeySet>,
    fetched_at: Option<Instant>,
    max_age: Duration,
}

impl RemoteJwks {
    /// A verifier for tokens checked against `rules`, with keys from `jwks_url`.
    pub fn new(jwks_url: impl Into<String>, rules: Rules) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self {
            url: jwks_url.into(),
            rules,
            http,
            keys: RwLock::new(Cached {
                set: Arc::new(KeySet::default()),
                fetched_at: None,
                max_age: Duration::from_secs(300),
            }),
            fetching: Mutex::new(()),
            min_refetch: Duration::from_secs(10),
            verified: VerifiedCache::default(),
        }
    }

    /// The shortest time between two fetches caused by unknown kids (default 10 s).
    #[must_use]
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// How many keys are cached now.
    pub async fn cached_keys(&self) -> usize {
        self.keys.read().await.set.len()
    }

    /// Fetches unless another caller did so within `min_age`.
    async fn refresh(&self, min_age: Duration) -> Result<(), VerifyError> {
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(at) = self.keys.read().await.fetched_at
            && at.elapsed() < min_age
        {
            return Ok(());
        }
        let fetched = self.fetch().await;
        let mut cached = self.keys.write().await;
        // A failed fetch still counts, so an unreachable issuer is not hammered.
        cached.fetched_at = Some(Instant::now());
        match fetched {
            Ok((set, max_age)) => {
                tracing::debug!(keys = set.len(), url = %self.url, "JWKS fetched");
                cached.set = Arc::new(set);
                cached.max_age = max_age;
                Ok(())
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "JWKS fetch failed");
                if cached.set.is_empty() {
                    Err(VerifyError::Unavailable(reason))
                } else {
                    Ok(())
                }
            }
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Duration), String> {
        let response = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age)
            .unwrap_or(300)
            .clamp(30, 3600);
        let body = response.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("the JWKS is too large".into());
        }
        let jwks: Jwks = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        Ok((KeySet::from_jwks(&jwks), Duration::from_secs(max_age)))
    }
}

fn parse_max_age(value: &str) -> Option<u64> {
    value
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.trim().parse().ok())
}

#[async_trait::async_trait]
impl TokenVerifier for RemoteJwks {
    async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        {
            let cached = self.keys.read().await;
            if cached
                .fetched_at
                .is_some_and(|at| at.elapsed() < cached.max_age)
                && let Ok(claims) = cached.set.verify_cached_only(
                    token,
                    &self.rules,
                    &self.verified,
                    crate::verify::unix_now(),
                )
            {
                return Ok(claims);
            }
        }
        // Shape, size and header first: garbage never causes a fetch.
        let peeked = peek(token, &self.rules)?;
        let (stale, known) = {
            let cached = self.keys.read().await;
            let stale = cached
                .fetched_at
                .is_none_or(|at| at.elapsed() >= cached.max_age);
            (stale, cached.set.contains(&peeked.kid))
        };
        if stale {
            self.refresh(Duration::ZERO).await?;
        } else if !known {
            self.refresh(self.min_refetch).await?;
        }
        let set = self.keys.read().await.set.clone();
        let claims = set.verify_peeked(token, &peeked, &self.rules, crate::verify::unix_now())?;
        self.verified.insert(token, &peeked.kid, &claims);
        Ok(claims)
    }
}
