//! The signing key ring, kept in the store so every node signs and verifies
//! with the same keys; access tokens are issued and verified here.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_core::{Backend, Clock, SessionKey, StoreError};
use sessiond_jwt::{
    AccessClaims, Algorithm, KeyError, KeyRing, KeySet, TokenVerifier, VerifiedCache, is_sealed,
};

use super::{TokenError, TokenSettings};

/// The store setting that holds the key ring.
pub const KEY_RING: &str = "jwt_key_ring";

/// The ring as last read from the store.
struct Loaded {
    ring: KeyRing,
    /// Exactly the bytes read, for the next compare-and-set.
    stored: Vec<u8>,
    keys: KeySet,
    jwks: String,
}

impl Loaded {
    fn new(ring: KeyRing, stored: Vec<u8>) -> Self {
        let keys = ring.key_set();
        let jwks = serde_json::to_string(&ring.jwks()).unwrap_or_default();
        Self {
            ring,
            stored,
            keys,
            jwks,
        }
    }
}

/// Issues and verifies access tokens; runs refresh families.
pub struct TokenService {
    store: Arc<dyn Backend>,
    settings: TokenSettings,
    loaded: RwLock<Option<Arc<Loaded>>>,
    /// When the ring was last read because of an unknown `kid` or a miss.
    last_forced_reload: Mutex<Option<Instant>>,
    /// Tokens that verified (a client repeats its token until it expires).
    verified: VerifiedCache,
    /// The session engine's clock: token times and key ages.
    clock: Arc<dyn Clock>,
}

impl TokenService {
    /// A service over `store` on `clock` (the session engine's); the ring
    /// is read on first use.
    pub fn new(store: Arc<dyn Backend>, settings: TokenSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            settings,
            loaded: RwLock::new(None),
            last_forced_reload: Mutex::new(None),
            verified: VerifiedCache::default(),
            clock,
        }
    }

    /// Now, in Unix seconds, by the engine's clock.
    fn unix_secs(&self) -> u64 {
        self.clock.now() / 1000
    }

    /// The settings.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    fn current(&self) -> Option<Arc<Loaded>> {
        self.loaded.read().ok()?.clone()
    }

    fn install(&self, loaded: Loaded) -> Arc<Loaded> {
        let loaded = Arc::new(loaded);
        if let Ok(mut slot) = self.loaded.write() {
            *slot = Some(loaded.clone());
        }
        loaded
    }

    /// The ring as it goes into the store: sealed when a key-encryption key
    /// is configured.
    fn seal(&self, ring: &KeyRing) -> Result<Vec<u8>, TokenError> {
        let bytes = ring.to_bytes();
        Ok(match &self.settings.encryption {
            Some(kek) => kek.seal(&bytes, KEY_RING.as_bytes())?,
            None => bytes,
        })
    }

    /// The ring from its stored bytes, sealed or in the clear, and whether
    /// it should be written again under the current key-encryption key (it
    /// is in the clear, or sealed with the previous one).
    fn open(&self, stored: &[u8]) -> Result<(KeyRing, bool), TokenError> {
        let (current, previous) = (
            &self.settings.encryption,
            &self.settings.previous_encryption,
        );
        if !is_sealed(stored) {
            return Ok((KeyRing::from_bytes(stored)?, current.is_some()));
        }
        let Some(kek) = current else {
            return Err(KeyError::Sealed(
                "the key ring in the store is encrypted: configure the same key_encryption_key_file as the other nodes".into(),
            )
            .into());
        };
        let context = KEY_RING.as_bytes();
        match (kek.open(stored, context), previous) {
            (Ok(plain), _) => Ok((KeyRing::from_bytes(&plain)?, false)),
            (Err(_), Some(old)) => Ok((KeyRing::from_bytes(&old.open(stored, context)?)?, true)),
            (Err(e), None) => Err(e.into()),
        }
    }

    /// Reads the ring from the store, creating it (or moving it to the
    /// configured algorithm, or sealing a ring found in the clear) when needed.
    async fn reload(&self) -> Result<Arc<Loaded>, TokenError> {
        for _ in 0..5 {
            let Some(stored) = self.store.get_setting(KEY_RING).await? else {
                let ring = KeyRing::generate(self.settings.algorithm, self.unix_secs())?;
                let bytes = self.seal(&ring)?;
                if self.store.swap_setting(KEY_RING, None, &bytes).await? {
                    tracing::info!(kid = ring.active().kid(), alg = %self.settings.algorithm, sealed = self.settings.encryption.is_some(), "created the signing key ring");
                    return Ok(self.install(Loaded::new(ring, bytes)));
                }
                continue; // another node created it first: read theirs
            };
            let (ring, reseal) = self.open(&stored)?;
            if reseal {
                // A key-encryption key was configured for a ring in the
                // clear, or replaces the one the ring is sealed with.
                let sealed = self.seal(&ring)?;
                if self
                    .store
                    .swap_setting(KEY_RING, Some(&stored), &sealed)
                    .await?
                {
                    tracing::info!(target: "sessiond::security", event = "signing_keys_sealed", "the signing key ring in the store is now encrypted");
                }
                continue;
            }
            if ring.active().alg() != self.settings.algorithm {
                // The configured algorithm changed: rotate to it (old tokens keep verifying).
                self.change(&stored, |ring| {
                    ring.rotate(self.settings.algorithm, self.unix_secs())
                        .map(|()| true)
                })
                .await?;
                continue;
            }
            return Ok(self.install(Loaded::new(ring, stored)));
        }
        Err(StoreError::Conflict.into())
    }

    /// Applies `f` to the ring stored as `expected` and writes it back if
    /// `f` says it changed. `false` if another writer changed it first.
    async fn change(
        &self,
        expected: &[u8],
        f: impl FnOnce(&mut KeyRing) -> Result<bool, KeyError>,
    ) -> Result<bool, TokenError> {
        let (mut ring, _) = self.open(expected)?;
        if !f(&mut ring)? {
            return Ok(true);
        }
        let bytes = self.seal(&ring)?;
        Ok(self
            .store
            .swap_setting(KEY_RING, Some(expected), &bytes)
            .await?)
    }

    /// The ring, reading it if this node has none yet.
    async fn ring(&self) -> Result<Arc<Loaded>, TokenError> {
        match self.current() {
            Some(loaded) => Ok(loaded),
            None => self.reload().await,
        }
    }

    /// Reads the ring again unless that happened less than a second ago.
    async fn forced_reload(&self) -> Option<Arc<Loaded>> {
        {
            let mut last = self.last_forced_reload.lock().ok()?;
            if last.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return None;
            }
            *last = Some(Instant::now());
        }
        match self.reload().await {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the signing key ring");
                None
            }
        }
    }

    /// Retires the active key and starts signing with a new one. Returns the new `kid`.
    pub async fn rotate(&self) -> Result<String, TokenError> {
        for _ in 0..5 {
            let loaded = self.reload().await?;
            let alg = self.settings.algorithm;
            if self
                .change(&loaded.stored, |ring| {
                    ring.rotate(alg, self.unix_secs()).map(|()| true)
                })
                .await?
            {
                let loaded = self.reload().await?;
                let kid = loaded.ring.active().kid().to_owned();
                tracing::info!(target: "sessiond::security", event = "signing_key_rotated", kid = %kid);
                return Ok(kid);
            }
        }
        Err(StoreError::Conflict.into())
    }

    /// The periodic job: re-read the ring, rotate when the active key is due,
    /// and drop retired keys no live token can need.
    pub async fn maintain(&self) -> Result<(), TokenError> {
        let loaded = self.reload().await?;
        let now = self.unix_secs();
        let loaded = match self.settings.rotate_after {
            Some(after) if loaded.ring.active().created_at() + after.as_secs() <= now => {
                self.rotate().await?;
                self.reload().await?
            }
            _ => loaded,
        };
        let keep = self.settings.access_ttl.as_secs() + self.settings.rules.leeway_secs + 60;
        if loaded.ring.keys().iter().any(|k| {
            k.retired_at()
                .is_some_and(|at| at.saturating_add(keep) <= now)
        }) {
            self.change(&loaded.stored, |ring| Ok(ring.prune(now, keep) > 0))
                .await?;
            self.reload().await?;
        }
        Ok(())
    }

    /// Runs [`TokenService::maintain`] every `every` until the service is dropped.
    pub fn spawn_maintenance(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(service) = weak.upgrade() else { break };
                if let Err(e) = service.maintain().await {
                    tracing::warn!(error = %e, "key ring maintenance failed; retrying next round");
                }
            }
        });
    }

    /// Every key (kid, algorithm, created, retired), oldest first.
    pub async fn describe(&self) -> Result<Vec<(String, Algorithm, u64, Option<u64>)>, TokenError> {
        let loaded = self.reload().await?;
        Ok(loaded
            .ring
            .keys()
            .iter()
            .map(|k| (k.kid().to_owned(), k.alg(), k.created_at(), k.retired_at()))
            .collect())
    }

    /// The JWK Set document.
    pub async fn jwks(&self) -> Result<String, TokenError> {
        Ok(self.ring().await?.jwks.clone())
    }

    /// A signed access token for `user` in session `sid`.
    pub async fn issue_access(
        &self,
        user: &str,
        roles: &[String],
        sid: &SessionKey,
    ) -> Result<String, TokenError> {
        let loaded = self.ring().await?;
        let now = self.unix_secs();
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| KeyError::Generate(e.to_string()))?;
        let claims = AccessClaims {
            iss: self.settings.rules.issuer.clone(),
            aud: self.settings.rules.audience.clone(),
            sub: user.to_owned(),
            iat: now,
            nbf: now,
            exp: now + self.settings.access_ttl.as_secs(),
            jti: URL_SAFE_NO_PAD.encode(jti),
            sid: sid.handle(),
            roles: roles.to_vec(),
        };
        Ok(loaded.ring.active().sign(&claims)?)
    }
}

#[async_trait::async_trait]
impl TokenVerifier for TokenService {
    async fn verify(&self, token: &str) -> Result<AccessClaims, sessiond_jwt::VerifyError> {
        use sessiond_jwt::VerifyError;
        let rules = &self.settings.rules;
        let loaded = match self.current() {
            Some(l) => l,
            None => self.forced_reload().await.ok_or_else(|| {
                VerifyError::Unavailable("the signing keys are not loaded".into())
            })?,
        };
        match loaded
            .keys
            .verify_cached_at(token, rules, &self.verified, self.unix_secs())
        {
            // Another node may have rotated: read the ring and try once more.
            Err(VerifyError::UnknownKey) => match self.forced_reload().await {
                Some(fresh) => {
                    fresh
                        .keys
                        .verify_cached_at(token, rules, &self.verified, self.unix_secs())
                }
                None => Err(VerifyError::UnknownKey),
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sessiond_core::{ManualClock, MemoryStore};
    use sessiond_jwt::{Algorithm, Rules};

    use super::*;

    fn settings(rotate_after: Duration) -> TokenSettings {
        TokenSettings {
            algorithm: Algorithm::EdDSA,
            rules: Rules::new("iss", "aud"),
            access_ttl: Duration::from_secs(300),
            refresh_grace: Duration::from_secs(5),
            rotate_after: Some(rotate_after),
            encryption: None,
            previous_encryption: None,
        }
    }

    #[tokio::test]
    async fn the_key_rotates_when_it_is_due_by_the_injected_clock_and_tokens_expire_by_it() {
        let clock = ManualClock::starting_now();
        let service = TokenService::new(
            Arc::new(MemoryStore::new()),
            settings(Duration::from_secs(86_400)),
            Arc::new(clock.clone()),
        );
        service.maintain().await.expect("creates the ring");
        let first = service.describe().await.expect("keys");
        let sid = SessionKey::from_handle(&"A".repeat(43)).expect("a handle");
        let token = service
            .issue_access("alice", &["user".into()], &sid)
            .await
            .expect("signed");

        clock.advance(Duration::from_secs(3600));
        service.maintain().await.expect("maintained");
        assert_eq!(
            service.describe().await.expect("keys"),
            first,
            "not due yet"
        );

        // A day later on the manual clock (the access token has long expired
        // by it, so check the next one): the active key is replaced.
        clock.advance(Duration::from_secs(86_400));
        service.maintain().await.expect("rotated");
        let after = service.describe().await.expect("keys");
        assert_eq!(after.len(), 2);
        assert!(after[0].3.is_some(), "the first key is retired");
        let fresh = service
            .issue_access("alice", &["user".into()], &sid)
            .await
            .expect("signed");
        assert_eq!(service.verify(&fresh).await.expect("verifies").sub, "alice");
        // The old token was issued 25 h ago by this clock: expired by it too.
        assert!(service.verify(&token).await.is_err());
    }
}
