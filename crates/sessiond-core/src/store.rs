//! The store contract every backend implements, and its error type.

use async_trait::async_trait;
use std::time::Duration;

use crate::attempts::{Attempt, Counter, Refund};
use crate::policy::{ExpiryPolicy, SessionLimit};
use crate::record::{AttributeBudget, AttributeChange, SessionRecord, UserRecord};
use crate::time::Millis;
use crate::token::SessionKey;

/// A boxed error from a backend, kept as the source of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in a store call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The session (or user) does not exist, or has expired.
    #[error("not found")]
    NotFound,
    /// The write conflicts with existing data: a key that already exists,
    /// or a version that changed since it was read.
    #[error("conflict")]
    Conflict,
    /// The store cannot be reached or did not answer in time. Retryable.
    #[error("store unavailable")]
    Unavailable(#[source] BoxError),
    /// The write would take the session's attributes over their
    /// [`crate::AttributeBudget`]; nothing was written.
    #[error("the session's attributes would exceed their budget")]
    TooLarge,
    /// The store applied the write but fewer replicas than required
    /// acknowledged it in time: it is not durable, so it is not
    /// acknowledged to the client. The store itself works (reads are
    /// served): this is not a store failure and does not feed the circuit
    /// breaker.
    #[error("the write reached {acknowledged} of {required} replicas in time")]
    NotReplicated {
        /// Replicas that acknowledged the write.
        acknowledged: u32,
        /// Replicas required (`redis.wait_replicas`).
        required: u32,
    },
    /// A new session was refused: the user holds as many live sessions as
    /// [`SessionLimit::max`] allows and the limit says
    /// [`crate::OnLimit::Refuse`]. Nothing was written.
    #[error("the user has {max} live sessions, the most allowed")]
    SessionLimit {
        /// The limit.
        max: usize,
    },
    /// The store answered with data sessiond cannot decode.
    #[error("corrupt data in the store: {0}")]
    Corrupt(String, #[source] Option<BoxError>),
}

impl StoreError {
    /// Wraps a backend error that means the store cannot be used right now.
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }

    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// The outcome of [`SessionStore::renew`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The idle expiry was extended to `idle_expires_at` and `last_seen` set.
    Extended {
        /// The new idle expiry.
        idle_expires_at: Millis,
    },
    /// Not under the threshold (or capped by the absolute expiry): nothing written.
    NotNeeded,
    /// The session does not exist or has expired.
    Gone,
}

/// The changes [`SessionStore::cycle`] makes while moving a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CycleChanges {
    /// New roles (a privilege change), or `None` to keep them.
    pub roles: Option<Vec<String>>,
    /// A new CSRF secret, or `None` to keep it.
    pub csrf_secret: Option<String>,
}

/// Where sessions live.
///
/// Every method is atomic with respect to the others. Stores are clock-free:
/// the engine passes `now`, and a store must never return a session that is
/// expired at that `now`, even if no sweeper has removed it yet.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Stores a new session. Fails with [`StoreError::Conflict`] if the key
    /// exists (never overwrites). Durable once it returns `Ok`.
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError>;

    /// [`SessionStore::create`] under a limit on the user's live sessions
    /// at `now`, as one atomic step: concurrent creates for one user never
    /// leave more than `limit.max` live sessions. Past the limit,
    /// [`crate::OnLimit::EvictOldest`] deletes the user's oldest sessions (by
    /// creation time) to make room and returns their keys;
    /// [`crate::OnLimit::Refuse`] writes nothing and fails with
    /// [`StoreError::SessionLimit`].
    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError>;

    /// The live session under `key`, or `None`.
    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Extends the idle expiry if, and only if, `policy` says a renewal is due
    /// at `now`; the check and the write are one atomic step.
    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError>;

    /// Applies field-level attribute changes to a live session and returns its
    /// new version. With `if_version`, fails with [`StoreError::Conflict`]
    /// unless the stored version matches. A missing or expired session gives
    /// [`StoreError::NotFound`]: an update never resurrects a deleted session.
    /// An update that would take the attributes over `budget` fails with
    /// [`StoreError::TooLarge`] and writes nothing; the check and the write
    /// are one atomic step.
    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError>;

    /// Deletes a session; `true` if it existed.
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError>;

    /// Moves a live session from `old` to `new` in one step, applying
    /// `changes`; the old key is dead when this returns. [`StoreError::NotFound`]
    /// if `old` is not live, [`StoreError::Conflict`] if `new` exists.
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError>;

    /// The user's live sessions.
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError>;

    /// Deletes all of a user's sessions except `except`; returns how many.
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError>;

    /// Removes up to `limit` sessions expired at `now`; returns how many.
    /// Stores whose backend expires keys by itself may do nothing.
    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError>;

    /// About how many sessions the store holds (expired ones not yet swept
    /// included), if it can say at once: the `sessiond_sessions_live`
    /// gauge. Must not wait on a long computation (it runs under the store's
    /// deadline); a store that has to walk its keys answers its last figure
    /// and refreshes it in the background (Redis). `None`: not known (yet).
    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(None)
    }

    /// Answers `Ok` when the store can serve requests (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// A short name for logs and metrics ("memory", "file", "redis").
    fn backend_name(&self) -> &'static str;

    /// Whether the backend drops expired sessions by itself (Redis TTLs), so
    /// that [`SessionStore::sweep`] has nothing to do.
    fn expires_keys_itself(&self) -> bool {
        false
    }

    /// Whether this store needs each session's key in its user's shard
    /// ([`crate::token::user_shard`]); the engine then generates tokens to
    /// match. Redis does, to keep a user's sessions in one Cluster slot.
    fn shards_by_user(&self) -> bool {
        false
    }

    /// Which part of the store that fails on its own serves `scope`: the
    /// circuit breaker of [`crate::ResilientStore`] opens per part, so one
    /// sick part does not take the others down. Most stores are one part
    /// ([`FailureDomain::WHOLE`]); a Redis Cluster is one per master.
    fn failure_domain(&self, _scope: Scope<'_>) -> FailureDomain {
        FailureDomain::WHOLE
    }

    /// How `domain` is named in logs, metrics and `/readyz` (a master's
    /// address; `store` for the whole store).
    fn failure_domain_name(&self, _domain: FailureDomain) -> String {
        "store".into()
    }
}

/// What a store call touches, so that a store made of parts that fail apart
/// can say which part serves it ([`SessionStore::failure_domain`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Scope<'a> {
    /// One user's sessions and session index: the user's shard
    /// ([`crate::token::user_shard`], also the first byte of each of the
    /// user's session keys on stores that shard by user).
    Shard(u8),
    /// One user account.
    User(&'a str),
    /// One server-wide setting.
    Setting(&'a str),
    /// The login attempt counters.
    Attempts,
    /// One rate-limit key.
    RateLimit(&'a str),
    /// The shared response cache's generation counters (and entries).
    ResponseCache,
    /// The security-event log.
    Events,
    /// Every part at once (listings, counts, pings).
    Whole,
}

/// A part of a store that fails on its own. 0 is the whole store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureDomain(pub u32);

impl FailureDomain {
    /// The store as one.
    pub const WHOLE: Self = Self(0);
}

/// Where user accounts, server-wide settings and attempt counters live (in
/// the same backend as the sessions, so every node sharing a store sees the
/// same users, for instance the same JWT signing keys, and counts login
/// attempts together).
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Adds a user; [`StoreError::Conflict`] if the name is taken.
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Replaces an existing user; [`StoreError::NotFound`] if there is none.
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// The user with this name.
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Every user, sorted by name.
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Removes a user; `false` if there was none. Their sessions are the
    /// caller's to end.
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError>;
    /// A setting's value (an opaque blob, at most a few KiB).
    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Compare-and-set: stores `value` only if the current value equals
    /// `expected` (`None`: the setting does not exist yet). `false` when
    /// another writer got there first; re-read and decide again.
    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError>;
    /// Takes one attempt on every counter in `counters`, as one atomic step:
    /// if each is below its limit in its current window, each gains one and
    /// the answer is [`Attempt::Taken`]; otherwise nothing changes and the
    /// answer is [`Attempt::Refused`] with the time until the blocking
    /// window ends. A counter's window starts at the attempt that finds it
    /// empty and lasts `window_ms`. Counters need not survive a restart or
    /// a failover (a lost count resets a limit early; it never blocks).
    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError>;
    /// Gives attempts back: each named counter loses one ([`Refund::One`],
    /// never going below zero) or its whole window ([`Refund::All`]).
    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        now: Millis,
    ) -> Result<(), StoreError>;
    /// One request against the rate limit `rate` for `key` ([`crate::rate::gcra`]),
    /// shared by every node on this store, at the store's own clock.
    /// `None` (the default): this store keeps no shared limits, and the
    /// caller limits in its own process ([`crate::LocalRates`]).
    async fn rate_step(
        &self,
        _key: &str,
        _rate: &crate::Rate,
    ) -> Result<Option<crate::RateOutcome>, StoreError> {
        Ok(None)
    }

    /// Appends security events (opaque blobs, oldest first) to the
    /// store's one bounded log, which then keeps the newest `keep`; one
    /// atomic step, so concurrent appends never leave more than `keep`.
    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError>;

    /// The newest `limit` events of the log, newest first.
    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// Whether this store holds the shared tier of a response cache (the
    /// `cache_*` calls), so that one node's fill serves every node and an
    /// invalidation reaches every node. `false` (the default): a cache in
    /// front of this store keeps entries and generations in the node's own
    /// memory (a store that is not shared between nodes).
    fn shares_response_cache(&self) -> bool {
        false
    }

    /// One cached response (the blob stored under `key`, if asked for and
    /// present) and the current value of each generation counter in
    /// `generations` (0 for a counter never bumped), read together.
    /// Only called when [`UserStore::shares_response_cache`].
    async fn cache_read(
        &self,
        _key: Option<&str>,
        _generations: &[String],
    ) -> Result<CacheRead, StoreError> {
        Err(no_shared_cache())
    }

    /// Stores a cached response for `ttl` (it may be dropped earlier).
    async fn cache_write(
        &self,
        _key: &str,
        _value: &[u8],
        _ttl: Duration,
    ) -> Result<(), StoreError> {
        Err(no_shared_cache())
    }

    /// Bumps each generation counter in `generations`: every entry read
    /// with an older value of one of them is stale from now on, on every
    /// node. A counter is kept at least `keep` after its last bump (longer
    /// than any entry lives: a counter that vanished while an entry read
    /// before its bump still lived would make that entry current again).
    async fn cache_invalidate(
        &self,
        _generations: &[String],
        _keep: Duration,
    ) -> Result<(), StoreError> {
        Err(no_shared_cache())
    }
}

fn no_shared_cache() -> StoreError {
    StoreError::Unavailable("this store keeps no shared response cache".into())
}

/// What [`UserStore::cache_read`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheRead {
    /// The blob stored under the key, if any.
    pub entry: Option<Vec<u8>>,
    /// The generations asked for, in order.
    pub generations: Vec<u64>,
}

/// A backend that stores both sessions and users.
pub trait Backend: SessionStore + UserStore {}
impl<T: SessionStore + UserStore> Backend for T {}
