//! The session engine: the rules of creating, verifying, renewing, cycling
//! and revoking sessions, over any [`SessionStore`]. No I/O of its own.

use std::sync::Arc;

use crate::policy::{ExpiryPolicy, SessionRules};
use crate::record::{
    AttributeBudget, AttributeChange, ClientMeta, REMEMBERED_ATTRIBUTE, SessionRecord,
};
use crate::store::{CycleChanges, Renewal, SessionStore, StoreError};
use crate::time::{Clock, Millis, SystemClock};
use crate::token::{SessionKey, SessionToken, random_secret};

/// A live session as the store holds it: its key and its record as of
/// this request. (The axum crate's `Session` is the request extractor
/// around one of these.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The store key (also the public handle, via [`SessionKey::handle`]).
    pub key: SessionKey,
    /// The record.
    pub record: SessionRecord,
}

/// The result of [`SessionManager::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The session.
    pub session: StoredSession,
    /// Whether this verification renewed the idle expiry (the caller should
    /// refresh the cookie's Max-Age).
    pub renewed: bool,
}

/// What a new session needs.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    /// The user.
    pub user_id: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// Client metadata.
    pub client: ClientMeta,
    /// Attributes written with the session in the same store call.
    pub attributes: std::collections::BTreeMap<String, String>,
    /// The user asked to stay signed in: the session gets the remembered
    /// expiry policy, if the rules have one (else this is ignored).
    pub remember: bool,
}

/// The engine: expiry policy, clock and store.
#[derive(Clone)]
pub struct SessionManager {
    store: Arc<dyn SessionStore>,
    rules: Arc<SessionRules>,
    budget: AttributeBudget,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("store", &self.store.backend_name())
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

/// How many times a create retries after a key collision. A collision of
/// 256-bit random tokens means a broken random source, so after a few
/// attempts the error is passed on instead of looping.
const CREATE_ATTEMPTS: usize = 3;

impl SessionManager {
    /// An engine with the system clock.
    pub fn new(store: Arc<dyn SessionStore>, policy: ExpiryPolicy) -> Self {
        Self {
            store,
            rules: Arc::new(SessionRules::new(policy)),
            clock: Arc::new(SystemClock),
            budget: AttributeBudget::default(),
        }
    }

    /// Replaces the clock (tests use a [`crate::ManualClock`]).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Replaces the session rules (remembered sessions, per-role timeouts,
    /// the limit on a user's sessions); their expiry policy replaces the
    /// one given to [`SessionManager::new`].
    #[must_use]
    pub fn with_rules(mut self, rules: SessionRules) -> Self {
        self.rules = Arc::new(rules);
        self
    }

    /// The expiry policy of sessions without roles that change it, not remembered.
    pub fn policy(&self) -> &ExpiryPolicy {
        &self.rules.expiry
    }

    /// The session rules.
    pub fn rules(&self) -> &SessionRules {
        &self.rules
    }

    /// The expiry policy `record` lives by (its roles, remembered or not).
    pub fn policy_for(&self, record: &SessionRecord) -> ExpiryPolicy {
        self.rules.expiry_for(&record.roles, record.remembered())
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SessionStore> {
        &self.store
    }

    /// The engine's clock, for components that must agree with it (token
    /// lifetimes, refresh grace windows, key rotation).
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    /// Creates a session under a fresh token, within the user's session
    /// limit if the rules set one: past it, the user's oldest sessions end
    /// (their keys are logged out of every node at once, as any delete),
    /// or the create fails with [`StoreError::SessionLimit`].
    pub async fn create(
        &self,
        new: NewSession,
    ) -> Result<(SessionToken, StoredSession), StoreError> {
        let now = self.now();
        let remember = new.remember && self.rules.remember.is_some();
        let policy = self.rules.expiry_for(&new.roles, remember);
        let mut attributes = new.attributes;
        if remember {
            attributes.insert(REMEMBERED_ATTRIBUTE.into(), "1".into());
        }
        let limit = self.rules.limit_for(&new.roles);
        let record = SessionRecord {
            user_id: new.user_id,
            roles: new.roles,
            created_at: now,
            last_seen: now,
            idle_expires_at: policy.initial_idle_expiry(now),
            absolute_expires_at: policy.absolute_expiry(now),
            csrf_secret: random_secret(),
            client: new.client,
            attributes,
            version: 1,
        };
        let shard = self
            .store
            .shards_by_user()
            .then(|| crate::token::user_shard(&record.user_id));
        let mut attempt = 0;
        loop {
            let token = shard.map_or_else(SessionToken::generate, SessionToken::generate_in_shard);
            let key = token.key();
            let created = match limit {
                None => self.store.create(&key, &record).await.map(|()| Vec::new()),
                Some(limit) => self.store.create_limited(&key, &record, now, limit).await,
            };
            match created {
                Ok(evicted) => {
                    metrics::counter!(crate::metric::SESSIONS_CREATED).increment(1);
                    if !evicted.is_empty() {
                        metrics::counter!(crate::metric::SESSIONS_REVOKED)
                            .increment(evicted.len() as u64);
                        tracing::info!(target: "sessiond::security", event = "session_limit_evicted", user = %record.user_id, evicted = evicted.len());
                    }
                    return Ok((token, StoredSession { key, record }));
                }
                Err(StoreError::Conflict) if attempt + 1 < CREATE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Verifies a presented token: `None` for a malformed, unknown or expired
    /// one. One store round trip, plus one write only when a renewal is due.
    pub async fn verify(&self, token: &str) -> Result<Option<Verified>, StoreError> {
        let Ok(token) = SessionToken::parse(token) else {
            return Ok(None);
        };
        self.verify_key(token.key()).await
    }

    /// [`SessionManager::verify`] for an already parsed key.
    pub async fn verify_key(&self, key: SessionKey) -> Result<Option<Verified>, StoreError> {
        let now = self.now();
        let Some(mut record) = self.store.load(&key, now).await? else {
            return Ok(None);
        };
        let mut renewed = false;
        let policy = self.policy_for(&record);
        if policy.needs_renewal(&record, now) {
            match self.store.renew(&key, now, &policy).await? {
                Renewal::Extended { idle_expires_at } => {
                    record.apply_renewal(idle_expires_at, now);
                    renewed = true;
                }
                Renewal::NotNeeded => {}
                // Deleted between the load and the renew: logout wins.
                Renewal::Gone => return Ok(None),
            }
        }
        Ok(Some(Verified {
            session: StoredSession { key, record },
            renewed,
        }))
    }

    /// Moves a session to a fresh token (login, privilege change); the old
    /// token is dead at once. The CSRF secret is replaced too.
    pub async fn cycle(
        &self,
        old: &SessionKey,
        roles: Option<Vec<String>>,
    ) -> Result<(SessionToken, StoredSession), StoreError> {
        let changes = CycleChanges {
            roles,
            csrf_secret: Some(random_secret()),
        };
        // The new key stays in the old key's shard (the same user's).
        let shard = self.store.shards_by_user().then_some(old.0[0]);
        let mut attempt = 0;
        loop {
            let token = shard.map_or_else(SessionToken::generate, SessionToken::generate_in_shard);
            let key = token.key();
            match self.store.cycle(old, &key, self.now(), &changes).await {
                Ok(record) => return Ok((token, StoredSession { key, record })),
                Err(StoreError::Conflict) if attempt + 1 < CREATE_ATTEMPTS => attempt += 1,
                Err(e) => return Err(e),
            }
        }
    }

    /// Field-level attribute update; see [`SessionStore::update_attributes`].
    pub async fn update_attributes(
        &self,
        key: &SessionKey,
        changes: &[AttributeChange],
        if_version: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.store
            .update_attributes(key, self.now(), changes, if_version, self.budget)
            .await
    }

    /// The attribute budget every update is held to.
    pub fn attribute_budget(&self) -> AttributeBudget {
        self.budget
    }

    /// Sets the attribute budget (default: 64 attributes, 16 KiB).
    #[must_use]
    pub fn with_attribute_budget(mut self, budget: AttributeBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Ends one session (logout).
    pub async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let existed = self.store.delete(key).await?;
        if existed {
            metrics::counter!(crate::metric::SESSIONS_REVOKED).increment(1);
        }
        Ok(existed)
    }

    /// The user's live sessions, newest first.
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<StoredSession>, StoreError> {
        let mut sessions: Vec<StoredSession> = self
            .store
            .list_by_user(user_id, self.now())
            .await?
            .into_iter()
            .map(|(key, record)| StoredSession { key, record })
            .collect();
        sessions.sort_by(|a, b| {
            b.record
                .created_at
                .cmp(&a.record.created_at)
                .then(a.key.cmp(&b.key))
        });
        Ok(sessions)
    }

    /// Ends all of the user's sessions but `except` (log out everywhere).
    pub async fn revoke_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let n = self.store.delete_by_user(user_id, except).await?;
        metrics::counter!(crate::metric::SESSIONS_REVOKED).increment(n as u64);
        Ok(n)
    }

    /// Ends one of the user's sessions by its public key; `NotFound` if the
    /// session is not the user's (so one user cannot probe another's handles).
    pub async fn revoke_one(&self, user_id: &str, key: &SessionKey) -> Result<(), StoreError> {
        match self.store.load(key, self.now()).await? {
            Some(record) if record.user_id == user_id => {
                self.delete(key).await?;
                Ok(())
            }
            _ => Err(StoreError::NotFound),
        }
    }
}
