//! A cache of verified tokens.
//!
//! A client sends the same access token with every request until it expires,
//! and an Ed25519 verification costs ~30 µs of CPU (ES256 ~150 µs): more than
//! everything else a request does. So, as API gateways do (Envoy's
//! `jwt_cache_config`), a token that verified once is remembered, keyed by
//! the *entire* token string (exact match: nothing short of the same bytes,
//! signature included, can hit). A hit still re-checks `exp` and `nbf` with
//! the same leeway, and that the signing key is still in the key set, so a
//! cached token never outlives what a fresh verification would accept.

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::claims::AccessClaims;
use crate::verify::{KeySet, Rules};

#[derive(Clone)]
struct Entry {
    claims: std::sync::Arc<AccessClaims>,
    kid: std::sync::Arc<str>,
}

/// Weight of an entry: the token plus a rough size of its claims.
#[derive(Clone)]
struct ByBytes;

impl Weighter<String, Entry> for ByBytes {
    fn weight(&self, token: &String, _: &Entry) -> u64 {
        token.len() as u64 + 256
    }
}

/// Tokens that verified, until they expire or are evicted.
pub struct VerifiedCache {
    cache: Cache<String, Entry, ByBytes>,
}

impl std::fmt::Debug for VerifiedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedCache")
            .field("entries", &self.cache.len())
            .finish()
    }
}

impl Default for VerifiedCache {
    /// 16 MiB: about 25 000 typical tokens.
    fn default() -> Self {
        Self::with_capacity_bytes(16 * 1024 * 1024)
    }
}

impl VerifiedCache {
    /// A cache holding at most about `bytes` of tokens.
    pub fn with_capacity_bytes(bytes: u64) -> Self {
        Self {
            cache: Cache::with_weighter((bytes / 640).max(16) as usize, bytes, ByBytes),
        }
    }

    /// How many tokens are cached.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The claims of `token` if it verified before and would still verify at `now`.
    pub(crate) fn get(
        &self,
        token: &str,
        keys: &KeySet,
        rules: &Rules,
        now: u64,
    ) -> Option<AccessClaims> {
        let entry = self.cache.get(token)?;
        let leeway = rules.leeway_secs;
        // The same tests jsonwebtoken applies on a fresh verification.
        let expired = entry.claims.exp < now.saturating_sub(leeway);
        let immature = entry.claims.nbf > now + leeway;
        if expired || !keys.contains(&entry.kid) {
            self.cache.remove(token);
            return None;
        }
        if immature {
            return None;
        }
        Some((*entry.claims).clone())
    }

    pub(crate) fn insert(&self, token: &str, kid: &str, claims: &AccessClaims) {
        self.cache.insert(
            token.to_owned(),
            Entry {
                claims: std::sync::Arc::new(claims.clone()),
                kid: kid.into(),
            },
        );
    }
}
