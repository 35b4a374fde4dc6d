//! Access tokens and refresh-token families.
//!
//! **Key ring.** One ring per deployment, kept in the store as the setting
//! [`KEY_RING`], so every node sharing the store signs and verifies with the
//! same keys. Changes (first key, rotation, pruning) are compare-and-set, so
//! two nodes rotating at once cannot both win. Nodes re-read the ring every
//! minute and at once (at most once a second) when a token names a `kid`
//! they do not hold: a rotation on one node is never a 401 on another.
//!
//! **Refresh families.** A refresh token is `<sid>.<secret>`: the public
//! handle of a server-side session made for the token family, and 256 random
//! bits of which the store holds only a SHA-256. Refreshing replaces the
//! secret with a versioned attribute write (two concurrent refreshes cannot
//! both rotate). The previous secret stays valid for a short grace window and
//! then returns the *same* successor, sealed in the store under a key derived
//! from the previous secret (so a store dump does not reveal it). A spent
//! secret presented after the grace window is theft: the family (the session)
//! is deleted. Logout, revoke-all and password changes delete sessions, and
//! so end families, at once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_core::token::secrets_equal;
use sessiond_core::{AttributeChange, Backend, SessionKey, SessionManager, StoreError};
use sessiond_jwt::{
    AccessClaims, Algorithm, KeyEncryptionKey, KeyError, KeyRing, KeySet, Rules, TokenVerifier,
    VerifiedCache, is_sealed,
};
use sha2::{Digest, Sha256};

/// The store setting that holds the key ring.
pub const KEY_RING: &str = "jwt_key_ring";

/// Attribute names of a token family's session. The cookie APIs cannot
/// reach them: a family's session token is never handed out.
mod attr {
    /// "token": this session is a refresh family.
    pub(super) const KIND: &str = "sessiond.kind";
    /// SHA-256 of the current secret.
    pub(super) const CURRENT: &str = "sessiond.rt.cur";
    /// SHA-256 of the previous secret.
    pub(super) const PREVIOUS: &str = "sessiond.rt.prev";
    /// When the previous secret was spent (ms).
    pub(super) const ROTATED_AT: &str = "sessiond.rt.at";
    /// The current secret sealed under the previous one (for the grace window).
    pub(super) const SEALED_NEXT: &str = "sessiond.rt.next";
    /// Truncated hashes of spent secrets, newest last (theft detection).
    pub(super) const SPENT: &str = "sessiond.rt.spent";
}

/// How many spent secrets a family remembers: a replay of any of them is
/// recognised as theft; older ones are just invalid.
const SPENT_HISTORY: usize = 32;

/// Token settings, from the server configuration.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Algorithm of new keys.
    pub algorithm: Algorithm,
    /// Issuer and audience of issued tokens, and the verification rules.
    pub rules: Rules,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// How long a just-spent refresh token still yields the same successor.
    pub refresh_grace: Duration,
    /// Rotate the signing key when it is this old; `None`: only by command.
    pub rotate_after: Option<Duration>,
    /// Seals the key ring before it goes into the store; `None`: stored in
    /// the clear (fine for a store only this host can read).
    pub encryption: Option<KeyEncryptionKey>,
    /// The key-encryption key being replaced: a ring sealed with it still
    /// opens, and is sealed again with `encryption`.
    pub previous_encryption: Option<KeyEncryptionKey>,
}

/// Errors of the token machinery.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
}

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
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl TokenService {
    /// A service over `store`; the ring is read on first use.
    pub fn new(store: Arc<dyn Backend>, settings: TokenSettings) -> Self {
        Self {
            store,
            settings,
            loaded: RwLock::new(None),
            last_forced_reload: Mutex::new(None),
            verified: VerifiedCache::default(),
        }
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
                let ring = KeyRing::generate(self.settings.algorithm, unix_secs())?;
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
                    ring.rotate(self.settings.algorithm, unix_secs())
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
                    ring.rotate(alg, unix_secs()).map(|()| true)
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
        let now = unix_secs();
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
        let now = unix_secs();
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
        match loaded.keys.verify_cached(token, rules, &self.verified) {
            // Another node may have rotated: read the ring and try once more.
            Err(VerifyError::UnknownKey) => match self.forced_reload().await {
                Some(fresh) => fresh.keys.verify_cached(token, rules, &self.verified),
                None => Err(VerifyError::UnknownKey),
            },
            other => other,
        }
    }
}

/// A refresh token: a family's session handle and a secret.
#[derive(Clone)]
pub struct RefreshToken {
    /// The family's session.
    pub key: SessionKey,
    secret: [u8; 32],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("sid", &self.key.handle())
            .finish_non_exhaustive()
    }
}

fn random32() -> Result<[u8; 32], TokenError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(secret)
}

fn digest(secret: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret))
}

/// A one-time pad from the previous secret: only its holder can open the seal.
fn pad(previous: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiond refresh successor\0");
    h.update(previous);
    h.finalize().into()
}

fn seal(previous: &[u8; 32], next: &[u8; 32]) -> String {
    let pad = pad(previous);
    let sealed: Vec<u8> = next.iter().zip(pad).map(|(a, b)| a ^ b).collect();
    URL_SAFE_NO_PAD.encode(sealed)
}

fn open(previous: &[u8; 32], sealed: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if URL_SAFE_NO_PAD.decode_slice(sealed, &mut bytes) != Ok(32) {
        return None;
    }
    for (b, p) in bytes.iter_mut().zip(pad(previous)) {
        *b ^= p;
    }
    Some(bytes)
}

/// The first 16 bytes of a digest, as kept in the spent list.
fn short(digest: &str) -> &str {
    digest.get(..22).unwrap_or(digest)
}

impl RefreshToken {
    /// Parses `<sid>.<secret>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (sid, secret) = text.split_once('.')?;
        let key = SessionKey::from_handle(sid).ok()?;
        let mut bytes = [0u8; 32];
        if secret.len() != 43 || URL_SAFE_NO_PAD.decode_slice(secret, &mut bytes) != Ok(32) {
            return None;
        }
        Some(Self { key, secret: bytes })
    }

    /// The token as the client receives it.
    pub fn expose(&self) -> String {
        format!(
            "{}.{}",
            self.key.handle(),
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }
}

/// The attributes of a new family, and the secret to hand out once the
/// session exists.
pub fn new_family() -> Result<([u8; 32], BTreeMap<String, String>), TokenError> {
    let secret = random32()?;
    let attributes = BTreeMap::from([
        (attr::KIND.to_owned(), "token".to_owned()),
        (attr::CURRENT.to_owned(), digest(&secret)),
    ]);
    Ok((secret, attributes))
}

/// A refresh family's attributes, read from its session record.
struct Family<'a>(&'a BTreeMap<String, String>);

impl<'a> Family<'a> {
    /// `None` unless the session was made for a token family.
    fn of(attributes: &'a BTreeMap<String, String>) -> Option<Self> {
        (attributes.get(attr::KIND).map(String::as_str) == Some("token"))
            .then_some(Self(attributes))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether attribute `name` holds `digest` (constant time).
    fn holds(&self, name: &str, digest: &str) -> bool {
        self.get(name)
            .is_some_and(|d| secrets_equal(d.as_bytes(), digest.as_bytes()))
    }

    /// Whether `digest` is one of the remembered spent secrets (the previous
    /// one included: each rotation adds the secret it spends).
    fn was_spent(&self, digest: &str) -> bool {
        self.get(attr::SPENT).is_some_and(|list| {
            list.split(',')
                .any(|s| secrets_equal(s.as_bytes(), short(digest).as_bytes()))
        })
    }
}

/// The refresh token of a family created with [`new_family`].
pub fn family_token(key: SessionKey, secret: [u8; 32]) -> RefreshToken {
    RefreshToken { key, secret }
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Refreshed {
    /// A new refresh token (the presented one is spent), for this user.
    Rotated {
        /// The successor.
        token: RefreshToken,
        /// The user.
        user: String,
        /// The user's roles.
        roles: Vec<String>,
        /// `true` when this is the successor an earlier concurrent refresh
        /// already made (the grace window), not a new one.
        replayed: bool,
    },
    /// A spent token came back after the grace window: the family was revoked.
    Theft {
        /// Whose family.
        user: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Spends `presented` and returns its successor; see the module docs.
pub async fn refresh(
    sessions: &SessionManager,
    presented: &RefreshToken,
    grace: Duration,
) -> Result<Refreshed, TokenError> {
    let presented_digest = digest(&presented.secret);
    for _ in 0..4 {
        let Some(verified) = sessions.verify_key(presented.key).await? else {
            return Ok(Refreshed::Invalid);
        };
        let record = verified.session.record;
        let Some(family) = Family::of(&record.attributes) else {
            return Ok(Refreshed::Invalid);
        };
        if family.holds(attr::CURRENT, &presented_digest) {
            let next = random32()?;
            let mut spent: Vec<&str> = family
                .get(attr::SPENT)
                .map(|s| s.split(',').filter(|p| !p.is_empty()).collect())
                .unwrap_or_default();
            spent.push(short(&presented_digest));
            let skip = spent.len().saturating_sub(SPENT_HISTORY);
            let spent = spent[skip..].join(",");
            let changes = [
                AttributeChange::set(attr::CURRENT, digest(&next)),
                AttributeChange::set(attr::PREVIOUS, presented_digest.clone()),
                AttributeChange::set(attr::ROTATED_AT, sessions.now().to_string()),
                AttributeChange::set(attr::SEALED_NEXT, seal(&presented.secret, &next)),
                AttributeChange::set(attr::SPENT, spent),
            ];
            match sessions
                .update_attributes(&presented.key, &changes, Some(record.version))
                .await
            {
                Ok(_) => {
                    return Ok(Refreshed::Rotated {
                        token: RefreshToken {
                            key: presented.key,
                            secret: next,
                        },
                        user: record.user_id.clone(),
                        roles: record.roles.clone(),
                        replayed: false,
                    });
                }
                // A concurrent refresh won: read again, we are probably in its grace window.
                Err(StoreError::Conflict) => continue,
                Err(StoreError::NotFound) => return Ok(Refreshed::Invalid),
                Err(e) => return Err(e.into()),
            }
        }
        let rotated_at: u64 = family
            .get(attr::ROTATED_AT)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        if family.holds(attr::PREVIOUS, &presented_digest)
            && sessions.now() <= rotated_at.saturating_add(grace_ms)
            && let Some(next) = family
                .get(attr::SEALED_NEXT)
                .and_then(|s| open(&presented.secret, s))
        {
            return Ok(Refreshed::Rotated {
                token: RefreshToken {
                    key: presented.key,
                    secret: next,
                },
                user: record.user_id.clone(),
                roles: record.roles.clone(),
                replayed: true,
            });
        }
        if family.was_spent(&presented_digest) {
            sessions.delete(&presented.key).await?;
            return Ok(Refreshed::Theft {
                user: record.user_id.clone(),
            });
        }
        return Ok(Refreshed::Invalid);
    }
    Err(StoreError::Conflict.into())
}

/// Ends the family of `presented` if the token is (or was) one of its
/// secrets. `true` if a session was deleted.
pub async fn revoke(
    sessions: &SessionManager,
    presented: &RefreshToken,
) -> Result<bool, TokenError> {
    let now = sessions.now();
    let Some(record) = sessions.store().load(&presented.key, now).await? else {
        return Ok(false);
    };
    let d = digest(&presented.secret);
    let known = Family::of(&record.attributes)
        .is_some_and(|f| f.holds(attr::CURRENT, &d) || f.was_spent(&d));
    if !known {
        return Ok(false);
    }
    Ok(sessions.delete(&presented.key).await?)
}
