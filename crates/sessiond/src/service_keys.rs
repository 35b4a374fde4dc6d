//! Service keys: how other backends and automation authenticate to the
//! service API (`/api/v1`).
//!
//! - A key is `sdk_` and 256 random bits (base64url): the prefix makes a
//!   leaked key recognisable to secret scanners and tells it apart from an
//!   access token in `Authorization: Bearer`.
//! - Only its SHA-256 is stored (a random 256-bit secret needs no slow
//!   hash: there is nothing to guess), and it is compared in constant time.
//! - The keys live in one setting of the store (`service_keys`), so every
//!   node sees a new or revoked key at its next request; changes are
//!   compare-and-set, so two nodes never lose each other's change.
//! - Each use records the time, at most once a minute per key (a write per
//!   request would make every service call a store write).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sessiond_core::{Backend, Clock, StoreError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Every service key starts with this.
pub const PREFIX: &str = "sdk_";
const SETTING: &str = "service_keys";
/// A key's last use is recorded at most this often (seconds).
const LAST_USED_EVERY: u64 = 60;

/// What a service key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum ServiceScope {
    /// Read sessions (`whoami`, introspection, listings).
    #[serde(rename = "sessions:read")]
    SessionsRead,
    /// Create, change and end sessions.
    #[serde(rename = "sessions:write")]
    SessionsWrite,
    /// Read users.
    #[serde(rename = "users:read")]
    UsersRead,
    /// Create, change and delete users.
    #[serde(rename = "users:write")]
    UsersWrite,
    /// Rotate the signing keys.
    #[serde(rename = "keys:rotate")]
    KeysRotate,
    /// Everything, including managing service keys.
    #[serde(rename = "admin")]
    Admin,
}

impl ServiceScope {
    /// Every scope.
    pub const ALL: [ServiceScope; 6] = [
        ServiceScope::SessionsRead,
        ServiceScope::SessionsWrite,
        ServiceScope::UsersRead,
        ServiceScope::UsersWrite,
        ServiceScope::KeysRotate,
        ServiceScope::Admin,
    ];

    /// The scope as written (`sessions:read`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceScope::SessionsRead => "sessions:read",
            ServiceScope::SessionsWrite => "sessions:write",
            ServiceScope::UsersRead => "users:read",
            ServiceScope::UsersWrite => "users:write",
            ServiceScope::KeysRotate => "keys:rotate",
            ServiceScope::Admin => "admin",
        }
    }
}

impl fmt::Display for ServiceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceScope {
    type Err = ServiceKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s.trim())
            .ok_or_else(|| ServiceKeyError::UnknownScope(s.to_owned()))
    }
}

/// A service key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceKey {
    /// Its name (`billing-backend`).
    pub name: String,
    /// SHA-256 of the key, hex.
    hash: String,
    /// What it may do.
    pub scopes: BTreeSet<ServiceScope>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds of its last use, to the minute.
    pub last_used: Option<u64>,
    /// Its own rate limit (`"100/s"`, `"20/m"`), if any; shared by every
    /// node on a store that shares limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

impl ServiceKey {
    /// Its rate limit, if it has one (checked when the key was made).
    pub fn rate(&self) -> Option<sessiond_core::Rate> {
        self.rate
            .as_deref()
            .and_then(|r| sessiond_core::Rate::parse(r, None).ok())
    }

    /// Whether the key may do what `scope` allows (`admin` allows all).
    pub fn allows(&self, scope: ServiceScope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&ServiceScope::Admin)
    }
}

/// What can go wrong with service keys.
#[derive(Debug, thiserror::Error)]
pub enum ServiceKeyError {
    /// A name that is empty, too long or has characters other than
    /// letters, digits, `-`, `_` and `.`.
    #[error("a service key name is 1 to 64 letters, digits, '-', '_' or '.': {0:?}")]
    BadName(String),
    /// A scope that does not exist.
    #[error(
        "unknown scope {0:?} (scopes: sessions:read, sessions:write, users:read, users:write, keys:rotate, admin)"
    )]
    UnknownScope(String),
    /// No scope at all.
    #[error("a service key needs at least one scope")]
    NoScope,
    /// A rate that cannot be read.
    #[error("a service key's rate is like \"100/s\", \"20/m\" or \"1000/h\": {0}")]
    BadRate(String),
    /// The name is taken.
    #[error("a service key named {0:?} exists")]
    Exists(String),
    /// The keys in the store cannot be read.
    #[error("the stored service keys cannot be read")]
    Corrupt(#[source] serde_json::Error),
    /// Other nodes kept changing the keys.
    #[error("the service keys changed under this change too often; try again")]
    Contended,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The service keys of a store.
#[derive(Clone)]
pub struct ServiceKeys {
    store: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
}

fn digest(secret: &str) -> String {
    use std::fmt::Write as _;
    Sha256::digest(secret.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ServiceKeys {
    /// The keys kept in `store`, with `clock` for creation and use times.
    pub fn new(store: Arc<dyn Backend>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    fn now(&self) -> u64 {
        self.clock.now() / 1000
    }

    async fn read(&self) -> Result<(Option<Vec<u8>>, Vec<ServiceKey>), ServiceKeyError> {
        let raw = self.store.get_setting(SETTING).await?;
        let keys = match &raw {
            Some(bytes) => serde_json::from_slice(bytes).map_err(ServiceKeyError::Corrupt)?,
            None => Vec::new(),
        };
        Ok((raw, keys))
    }

    /// Applies `change` to the keys with compare-and-set; `change` says
    /// whether there is anything to write.
    async fn change<T>(
        &self,
        mut change: impl FnMut(&mut Vec<ServiceKey>) -> Result<(bool, T), ServiceKeyError>,
    ) -> Result<T, ServiceKeyError> {
        for _ in 0..8 {
            let (raw, mut keys) = self.read().await?;
            let (write, out) = change(&mut keys)?;
            if !write {
                return Ok(out);
            }
            let bytes = serde_json::to_vec(&keys).map_err(ServiceKeyError::Corrupt)?;
            if self
                .store
                .swap_setting(SETTING, raw.as_deref(), &bytes)
                .await?
            {
                return Ok(out);
            }
        }
        Err(ServiceKeyError::Contended)
    }

    /// A new key named `name`: the stored record, and the key itself
    /// (shown once: only its hash is kept).
    pub async fn add(
        &self,
        name: &str,
        scopes: BTreeSet<ServiceScope>,
    ) -> Result<(ServiceKey, String), ServiceKeyError> {
        self.add_limited(name, scopes, None).await
    }

    /// As [`ServiceKeys::add`], with a rate limit of its own (`"100/s"`).
    pub async fn add_limited(
        &self,
        name: &str,
        scopes: BTreeSet<ServiceScope>,
        rate: Option<&str>,
    ) -> Result<(ServiceKey, String), ServiceKeyError> {
        if !valid_name(name) {
            return Err(ServiceKeyError::BadName(name.to_owned()));
        }
        if scopes.is_empty() {
            return Err(ServiceKeyError::NoScope);
        }
        if let Some(r) = rate {
            sessiond_core::Rate::parse(r, None)
                .map_err(|e| ServiceKeyError::BadRate(format!("{r:?}: {e}")))?;
        }
        let secret = format!("{PREFIX}{}", sessiond_core::token::random_secret());
        let record = ServiceKey {
            name: name.to_owned(),
            hash: digest(&secret),
            scopes,
            created_at: self.now(),
            last_used: None,
            rate: rate.map(str::to_owned),
        };
        self.change(|keys| {
            if keys.iter().any(|k| k.name == record.name) {
                return Err(ServiceKeyError::Exists(record.name.clone()));
            }
            keys.push(record.clone());
            Ok((true, ()))
        })
        .await?;
        tracing::info!(target: "sessiond::security", event = "service_key_created", name, "service key created");
        Ok((record, secret))
    }

    /// Every key, by name.
    pub async fn list(&self) -> Result<Vec<ServiceKey>, ServiceKeyError> {
        let (_, mut keys) = self.read().await?;
        keys.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(keys)
    }

    /// Revokes the key named `name`; `false` if there is none.
    pub async fn revoke(&self, name: &str) -> Result<bool, ServiceKeyError> {
        let revoked = self
            .change(|keys| {
                let before = keys.len();
                keys.retain(|k| k.name != name);
                let gone = keys.len() != before;
                Ok((gone, gone))
            })
            .await?;
        if revoked {
            tracing::info!(target: "sessiond::security", event = "service_key_revoked", name, "service key revoked");
        }
        Ok(revoked)
    }

    /// The key `secret` stands for, if it is one of ours; records its use.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<ServiceKey>, ServiceKeyError> {
        if !secret.starts_with(PREFIX) {
            return Ok(None);
        }
        let hash = digest(secret);
        let (_, keys) = self.read().await?;
        // Every stored hash is compared, in constant time each: no early
        // exit tells how far a guess got.
        let mut found = None;
        for key in keys {
            if bool::from(key.hash.as_bytes().ct_eq(hash.as_bytes())) {
                found = Some(key);
            }
        }
        let Some(key) = found else {
            return Ok(None);
        };
        let now = self.now();
        if key
            .last_used
            .is_none_or(|at| now.saturating_sub(at) >= LAST_USED_EVERY)
        {
            // Best effort: a lost race or a store hiccup only delays it.
            let name = key.name.clone();
            let recorded = self
                .change(|keys| {
                    let Some(k) = keys.iter_mut().find(|k| k.name == name) else {
                        return Ok((false, ()));
                    };
                    if k.last_used
                        .is_some_and(|at| now.saturating_sub(at) < LAST_USED_EVERY)
                    {
                        return Ok((false, ()));
                    }
                    k.last_used = Some(now);
                    Ok((true, ()))
                })
                .await;
            if let Err(e) = recorded {
                tracing::debug!(error = %e, "a service key's last use was not recorded");
            }
        }
        Ok(Some(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_core::{ManualClock, MemoryStore};

    fn keys() -> (ServiceKeys, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        (
            ServiceKeys::new(Arc::new(MemoryStore::new()), clock.clone()),
            clock,
        )
    }

    fn scopes(list: &[ServiceScope]) -> BTreeSet<ServiceScope> {
        list.iter().copied().collect()
    }

    #[tokio::test]
    async fn a_key_is_shown_once_stored_as_a_hash_and_authenticates_until_revoked() {
        let (keys, _) = keys();
        let (record, secret) = keys
            .add("billing", scopes(&[ServiceScope::SessionsRead]))
            .await
            .unwrap();
        assert!(
            secret.starts_with("sdk_") && secret.len() == 4 + 43,
            "{secret}"
        );
        let stored = keys.store.get_setting(SETTING).await.unwrap().unwrap();
        assert!(!String::from_utf8(stored).unwrap().contains(&secret[4..]));
        let found = keys.authenticate(&secret).await.unwrap().unwrap();
        assert_eq!(found.name, record.name);
        assert!(found.allows(ServiceScope::SessionsRead));
        assert!(!found.allows(ServiceScope::UsersWrite));
        assert!(keys.authenticate("sdk_wrong").await.unwrap().is_none());
        assert!(keys.authenticate(&secret[4..]).await.unwrap().is_none());
        assert!(keys.revoke("billing").await.unwrap());
        assert!(!keys.revoke("billing").await.unwrap());
        assert!(keys.authenticate(&secret).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn names_are_unique_and_checked_and_a_key_needs_a_scope() {
        let (keys, _) = keys();
        let admin = scopes(&[ServiceScope::Admin]);
        keys.add("ops", admin.clone()).await.unwrap();
        assert!(matches!(
            keys.add("ops", admin.clone()).await,
            Err(ServiceKeyError::Exists(_))
        ));
        assert!(matches!(
            keys.add("no spaces", admin.clone()).await,
            Err(ServiceKeyError::BadName(_))
        ));
        assert!(matches!(
            keys.add("empty", BTreeSet::new()).await,
            Err(ServiceKeyError::NoScope)
        ));
        assert!("users:delete".parse::<ServiceScope>().is_err());
        assert_eq!(
            "keys:rotate".parse::<ServiceScope>().unwrap(),
            ServiceScope::KeysRotate
        );
    }

    #[tokio::test]
    async fn a_use_is_recorded_at_most_once_a_minute() {
        let (keys, clock) = keys();
        let (_, secret) = keys
            .add("ci", scopes(&[ServiceScope::UsersRead]))
            .await
            .unwrap();
        keys.authenticate(&secret).await.unwrap();
        let first = keys.list().await.unwrap()[0].last_used.unwrap();
        clock.advance(std::time::Duration::from_secs(30));
        keys.authenticate(&secret).await.unwrap();
        assert_eq!(keys.list().await.unwrap()[0].last_used, Some(first));
        clock.advance(std::time::Duration::from_secs(31));
        keys.authenticate(&secret).await.unwrap();
        assert_eq!(keys.list().await.unwrap()[0].last_used, Some(first + 61));
    }
}
