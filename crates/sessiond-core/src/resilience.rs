//! [`ResilientStore`]: deadlines, retries with backoff and full jitter, and a
//! circuit breaker around any store, so that a slow or dead store costs a
//! request a bounded, short time and an honest `Unavailable`.
//!
//! - Every call has a total budget (`call_timeout`), retries included.
//! - Only operations that are safe to repeat are retried (load, renew,
//!   delete, listing, revoke-all, user reads, ping): a create, cycle,
//!   attribute update or user write whose answer was lost may have happened,
//!   and repeating it could conflict or count twice, so it is not repeated.
//! - The breaker counts the latest outcomes (the last `window_calls`, within
//!   `window`). `NotFound` and
//!   `Conflict` are answers, not failures; `Unavailable` and deadlines are
//!   failures. Closed → Open when at least `min_calls` calls in the window
//!   failed at `failure_ratio` or more; Open → HalfOpen after `open_for`;
//!   HalfOpen lets `half_open_probes` calls through: all succeed → Closed,
//!   any fails → Open again. While open, calls fail at once, without
//!   touching the store. Every transition is logged.
//! - There is one breaker per part of the store that fails on its own
//!   ([`SessionStore::failure_domain`]): one for most stores, one per master
//!   on a Redis Cluster (plus one for calls that touch every master), so a
//!   dead master without a replica refuses only the sessions it holds.
//!
//! Time is tokio's clock, so tests drive it with `tokio::time::pause()`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::attempts::{Attempt, Counter, Refund};
use crate::metric;
use crate::policy::ExpiryPolicy;
use crate::policy::SessionLimit;
use crate::record::{AttributeBudget, AttributeChange, SessionRecord, UserRecord};
use crate::store::{
    Backend, CycleChanges, FailureDomain, Renewal, Scope, SessionStore, StoreError, UserStore,
};
use crate::time::Millis;
use crate::token::{SessionKey, user_shard};

/// A store operation, for metric labels, cached metric handles and the
/// retry rule.
#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Load,
    Renew,
    UpdateAttributes,
    Delete,
    Cycle,
    ListByUser,
    DeleteByUser,
    Sweep,
    Ping,
    Count,
    CreateUser,
    UpdateUser,
    GetUser,
    ListUsers,
    GetSetting,
    SwapSetting,
    TakeAttempt,
    RefundAttempts,
    RateStep,
    DeleteUser,
    CacheRead,
    CacheWrite,
    CacheInvalidate,
    AppendEvents,
    RecentEvents,
}

impl Op {
    const COUNT: usize = 26;
    const ALL: [Op; Op::COUNT] = [
        Op::Create,
        Op::Load,
        Op::Renew,
        Op::UpdateAttributes,
        Op::Delete,
        Op::Cycle,
        Op::ListByUser,
        Op::DeleteByUser,
        Op::Sweep,
        Op::Ping,
        Op::Count,
        Op::CreateUser,
        Op::UpdateUser,
        Op::GetUser,
        Op::ListUsers,
        Op::GetSetting,
        Op::SwapSetting,
        Op::TakeAttempt,
        Op::RefundAttempts,
        Op::RateStep,
        Op::DeleteUser,
        Op::CacheRead,
        Op::CacheWrite,
        Op::CacheInvalidate,
        Op::AppendEvents,
        Op::RecentEvents,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Load => "load",
            Op::Renew => "renew",
            Op::UpdateAttributes => "update_attributes",
            Op::Delete => "delete",
            Op::Cycle => "cycle",
            Op::ListByUser => "list_by_user",
            Op::DeleteByUser => "delete_by_user",
            Op::Sweep => "sweep",
            Op::Ping => "ping",
            Op::Count => "count",
            Op::CreateUser => "create_user",
            Op::UpdateUser => "update_user",
            Op::GetUser => "get_user",
            Op::ListUsers => "list_users",
            Op::GetSetting => "get_setting",
            Op::SwapSetting => "swap_setting",
            Op::TakeAttempt => "take_attempt",
            Op::RefundAttempts => "refund_attempts",
            Op::RateStep => "rate_step",
            Op::DeleteUser => "delete_user",
            Op::CacheRead => "cache_read",
            Op::CacheWrite => "cache_write",
            Op::CacheInvalidate => "cache_invalidate",
            Op::AppendEvents => "append_events",
            Op::RecentEvents => "recent_events",
        }
    }

    /// Whether a failed call may be repeated. Only reads and operations
    /// whose repetition changes nothing: a create, cycle, attribute update
    /// or user write whose answer was lost may have happened, and repeating
    /// it could conflict or count twice. A compare-and-set is not repeated
    /// either: a retry after a lost reply would see its own write and
    /// answer false. Nor is an attempt counter change, which would count
    /// (or give back) twice.
    fn retried(self) -> bool {
        matches!(
            self,
            Op::Load
                | Op::Renew
                | Op::Delete
                | Op::ListByUser
                | Op::DeleteByUser
                | Op::Sweep
                | Op::Ping
                | Op::Count
                | Op::GetUser
                | Op::ListUsers
                | Op::DeleteUser
                | Op::GetSetting
                | Op::RecentEvents
        )
    }

    /// Whether the store acknowledges this write only once it is durable
    /// (on Redis with `wait_replicas`, after `WAIT`): its success shows
    /// that durable writes work again.
    fn durable(self) -> bool {
        matches!(
            self,
            Op::Create | Op::Cycle | Op::DeleteByUser | Op::SwapSetting
        )
    }
}

/// The store operations [`ResilientStore`] retries after a transient
/// failure (the `op` label values of `sessiond_store_retries_total`).
pub fn retried_operations() -> impl Iterator<Item = &'static str> {
    Op::ALL.into_iter().filter(|op| op.retried()).map(Op::name)
}

/// The outcomes `sessiond_store_operations_total` distinguishes.
const OUTCOMES: [&str; 9] = [
    "ok",
    "not_found",
    "conflict",
    "unavailable",
    "rejected",
    "corrupt",
    "too_large",
    "not_replicated",
    "session_limit",
];

/// Metric handles, made on first use (the registry lookup per call cost
/// more than the rest of a cached session check).
struct StoreMetrics {
    operations: Vec<std::sync::OnceLock<metrics::Counter>>,
    durations: Vec<std::sync::OnceLock<metrics::Histogram>>,
    retries: Vec<std::sync::OnceLock<metrics::Counter>>,
}

impl StoreMetrics {
    fn new() -> Self {
        Self {
            operations: (0..Op::COUNT * OUTCOMES.len())
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            durations: (0..Op::COUNT).map(|_| std::sync::OnceLock::new()).collect(),
            retries: (0..Op::COUNT).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

/// Settings of [`ResilientStore`].
#[derive(Debug, Clone, Copy)]
pub struct ResilienceConfig {
    /// Total time one store call may take, retries included.
    pub call_timeout: Duration,
    /// Retries after the first attempt, for operations safe to repeat.
    pub max_retries: u32,
    /// The first backoff's upper bound; doubles per retry (full jitter).
    pub base_backoff: Duration,
    /// The largest backoff upper bound.
    pub max_backoff: Duration,
    /// The circuit breaker.
    pub breaker: BreakerConfig,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(800),
            max_retries: 2,
            base_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            breaker: BreakerConfig::default(),
        }
    }
}

/// Settings of the circuit breaker.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// How far back outcomes count.
    pub window: Duration,
    /// At most this many of the latest outcomes count. A pure time window
    /// would be dominated by the thousands of successes before an outage
    /// and open far too late.
    pub window_calls: usize,
    /// Fewer calls than this in the window never open the breaker.
    pub min_calls: usize,
    /// Open when at least this share of the window's calls failed.
    pub failure_ratio: f64,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
    /// Calls let through while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            window_calls: 20,
            min_calls: 10,
            failure_ratio: 0.5,
            open_for: Duration::from_secs(1),
            half_open_probes: 3,
        }
    }
}

/// The breaker's state, for `/readyz` and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail at once.
    Open,
    /// A few probe calls go through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// The value of the `sessiond_store_breaker_state` gauge: 0 closed, 1 half-open, 2 open.
    pub fn as_gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { admitted: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Breaker {
    /// The backend's name, for metric labels.
    backend: &'static str,
    /// The part of the store it guards (`store`, or a master's address).
    scope: String,
    config: BreakerConfig,
    state: State,
    /// (when, failed) for the calls in the window.
    outcomes: VecDeque<(Instant, bool)>,
}

/// Why a call did not reach the store.
#[derive(Debug, thiserror::Error)]
#[error("the circuit breaker is open: the store failed too often recently")]
pub struct BreakerOpen;

impl Breaker {
    fn transition(&mut self, to: State) {
        let from = self.public_state();
        self.state = to;
        let to = self.public_state();
        if from != to {
            metrics::gauge!(metric::STORE_BREAKER_STATE, "backend" => self.backend, "scope" => self.scope.clone())
                .set(to.as_gauge());
            metrics::counter!(metric::STORE_BREAKER_TRANSITIONS, "backend" => self.backend, "scope" => self.scope.clone(), "to" => to.as_str())
                .increment(1);
            match to {
                BreakerState::Open => tracing::error!(
                    scope = %self.scope,
                    from = from.as_str(),
                    to = to.as_str(),
                    "store circuit breaker opened"
                ),
                _ => tracing::warn!(
                    scope = %self.scope,
                    from = from.as_str(),
                    to = to.as_str(),
                    "store circuit breaker changed state"
                ),
            }
        }
    }

    fn public_state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// May a call go through now?
    fn admit(&mut self, now: Instant) -> bool {
        if let State::Open { until } = self.state {
            if now < until {
                return false;
            }
            // Open long enough: let probes through.
            self.transition(State::HalfOpen {
                admitted: 0,
                succeeded: 0,
            });
        }
        match &mut self.state {
            State::HalfOpen { admitted, .. } if *admitted >= self.config.half_open_probes => false,
            State::HalfOpen { admitted, .. } => {
                *admitted += 1;
                true
            }
            _ => true,
        }
    }

    fn record(&mut self, now: Instant, failed: bool) {
        match &mut self.state {
            State::HalfOpen { succeeded, .. } => {
                if failed {
                    // A probe failed: the store is still unwell.
                    self.transition(State::Open {
                        until: now + self.config.open_for,
                    });
                } else {
                    *succeeded += 1;
                    if *succeeded >= self.config.half_open_probes {
                        // Every probe answered: trust the store again, with a fresh window.
                        self.outcomes.clear();
                        self.transition(State::Closed);
                    }
                }
            }
            State::Open { .. } => {}
            State::Closed => {
                self.outcomes.push_back((now, failed));
                while self.outcomes.len() > self.config.window_calls
                    || self
                        .outcomes
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > self.config.window)
                {
                    self.outcomes.pop_front();
                }
                let calls = self.outcomes.len();
                let failures = self.outcomes.iter().filter(|(_, f)| *f).count();
                if calls >= self.config.min_calls
                    && failures as f64 >= self.config.failure_ratio * calls as f64
                {
                    // Too many failures in the window: stop sending calls for a while.
                    self.transition(State::Open {
                        until: now + self.config.open_for,
                    });
                }
            }
        }
    }
}

/// Breakers for the parts of a store beyond the whole; with more parts
/// than this (Cluster masters), parts share breakers.
const PART_BREAKERS: usize = 64;

/// A store wrapped in deadlines, retries and a circuit breaker per part.
pub struct ResilientStore {
    inner: Arc<dyn Backend>,
    config: ResilienceConfig,
    /// `[0]` guards the whole store; the others, its parts, made on first use.
    breakers: Box<[std::sync::OnceLock<Mutex<Breaker>>]>,
    metrics: StoreMetrics,
    /// When a write was last applied but not replicated, unless a durable
    /// write has succeeded since.
    shortfall: Mutex<Option<Instant>>,
}

/// How long one durability shortfall keeps the store reported as degraded
/// when no durable write comes to show it has recovered.
const DEGRADED_FOR: Duration = Duration::from_secs(30);

impl std::fmt::Debug for ResilientStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientStore")
            .field("config", &self.config)
            .field("breaker", &self.breaker_state())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn full_jitter(cap: Duration) -> Duration {
    let mut b = [0u8; 8];
    // Without randomness, back off by the whole cap (still bounded).
    if getrandom::fill(&mut b).is_err() {
        return cap;
    }
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if nanos == 0 {
        0
    } else {
        u64::from_le_bytes(b) % nanos
    })
}

impl ResilientStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Backend>, config: ResilienceConfig) -> Self {
        let store = Self {
            inner,
            config,
            breakers: (0..=PART_BREAKERS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            metrics: StoreMetrics::new(),
            shortfall: Mutex::new(None),
        };
        store.breaker(FailureDomain::WHOLE);
        store
    }

    /// Whether durable writes are being refused: one was applied but not
    /// replicated in the last 30 s and none has succeeded since. Reads are
    /// still served (`/readyz` says "degraded").
    pub fn durability_degraded(&self) -> bool {
        self.shortfall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some_and(|at| at.elapsed() < DEGRADED_FOR)
    }

    fn note_durability(&self, durable: bool) {
        let mut shortfall = self
            .shortfall
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *shortfall = (!durable).then(Instant::now);
    }

    /// The breaker of `domain`, made on first use.
    fn breaker(&self, domain: FailureDomain) -> &Mutex<Breaker> {
        let i = match domain.0 {
            0 => 0,
            n => 1 + (n as usize - 1) % PART_BREAKERS,
        };
        self.breakers[i].get_or_init(|| {
            let backend = self.inner.backend_name();
            let scope = self.inner.failure_domain_name(domain);
            metrics::gauge!(metric::STORE_BREAKER_STATE, "backend" => backend, "scope" => scope.clone())
                .set(0.0);
            Mutex::new(Breaker {
                backend,
                scope,
                config: self.config.breaker,
                state: State::Closed,
                outcomes: VecDeque::new(),
            })
        })
    }

    /// The state of the breaker that guards the whole store.
    pub fn breaker_state(&self) -> BreakerState {
        lock(self.breaker(FailureDomain::WHOLE)).public_state()
    }

    /// Every breaker in use: the part it guards and its state, the whole
    /// store's first.
    pub fn breaker_states(&self) -> Vec<(String, BreakerState)> {
        self.breakers
            .iter()
            .filter_map(|b| b.get())
            .map(|b| {
                let b = lock(b);
                (b.scope.clone(), b.public_state())
            })
            .collect()
    }

    /// The parts of the store (not the whole) whose breaker is not closed:
    /// the requests they serve are being refused.
    pub fn impaired_parts(&self) -> Vec<String> {
        self.breakers[1..]
            .iter()
            .filter_map(|b| b.get())
            .filter_map(|b| {
                let b = lock(b);
                (b.public_state() != BreakerState::Closed).then(|| b.scope.clone())
            })
            .collect()
    }

    /// Runs `op` under the deadline, retrying when the operation is safe to
    /// repeat ([`Op::retried`]) and the failure is transient, with the
    /// breaker deciding whether to try at all.
    /// One store call through the breaker, deadline and retries, measured
    /// as `sessiond_store_operations_total` / `_duration_seconds` by `name`.
    async fn call<T, F, Fut>(&self, which: Op, scope: Scope<'_>, op: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let backend = self.inner.backend_name();
        let name = which.name();
        let breaker = self.breaker(self.inner.failure_domain(scope));
        let span = tracing::debug_span!("store", backend, op = name);
        let (result, elapsed) =
            tracing::Instrument::instrument(self.attempts(backend, which, breaker, op), span).await;
        let outcome = match &result {
            Ok(_) => 0,
            Err(StoreError::NotFound) => 1,
            Err(StoreError::Conflict) => 2,
            Err(StoreError::Unavailable(e)) if e.is::<BreakerOpen>() => 4,
            Err(StoreError::Unavailable(_)) => 3,
            Err(StoreError::TooLarge) => 6,
            Err(StoreError::SessionLimit { .. }) => 8,
            Err(StoreError::NotReplicated { .. }) => {
                self.note_durability(false);
                7
            }
            Err(_) => 5,
        };
        if result.is_ok() && which.durable() {
            self.note_durability(true);
        }
        self.metrics.operations[which as usize * OUTCOMES.len() + outcome]
            .get_or_init(|| {
                metrics::counter!(metric::STORE_OPERATIONS, "backend" => backend, "op" => name, "outcome" => OUTCOMES[outcome])
            })
            .increment(1);
        self.metrics.durations[which as usize]
            .get_or_init(|| {
                metrics::histogram!(metric::STORE_OPERATION_DURATION, "backend" => backend, "op" => name)
            })
            .record(elapsed.as_secs_f64());
        result
    }

    async fn attempts<T, F, Fut>(
        &self,
        backend: &'static str,
        which: Op,
        breaker: &Mutex<Breaker>,
        op: F,
    ) -> (Result<T, StoreError>, Duration)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        // Clock readings are reused (admission, deadline, breaker, the
        // duration metric): on a cached session check they add up.
        let started = Instant::now();
        let deadline = started + self.config.call_timeout;
        let mut attempt = 0u32;
        let mut admitted_at = started;
        loop {
            if !lock(breaker).admit(admitted_at) {
                return (
                    Err(StoreError::unavailable(BreakerOpen)),
                    admitted_at - started,
                );
            }
            let outcome = tokio::time::timeout_at(deadline, op()).await;
            let now = Instant::now();
            let error = match outcome {
                Ok(Ok(v)) => {
                    lock(breaker).record(now, false);
                    return (Ok(v), now - started);
                }
                // An answer, even "not found" or "conflict", means the store works.
                Ok(Err(e)) if !e.is_retryable() => {
                    lock(breaker).record(now, false);
                    return (Err(e), now - started);
                }
                Ok(Err(e)) => e,
                Err(_) => StoreError::unavailable("the store call ran past its deadline"),
            };
            lock(breaker).record(now, true);
            let cap = self
                .config
                .base_backoff
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(self.config.max_backoff);
            let pause = full_jitter(cap);
            if !which.retried() || attempt >= self.config.max_retries || now + pause >= deadline {
                return (Err(error), now - started);
            }
            self.metrics.retries[which as usize]
                .get_or_init(|| {
                    metrics::counter!(metric::STORE_RETRIES, "backend" => backend, "op" => which.name())
                })
                .increment(1);
            tokio::time::sleep(pause).await;
            attempt += 1;
            admitted_at = Instant::now();
        }
    }
}

#[async_trait]
impl SessionStore for ResilientStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.call(Op::Create, Scope::Shard(key.0[0]), || {
            self.inner.create(key, record)
        })
        .await
    }
    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        // Counted as a create: not retried either (a lost answer may mean
        // it happened, and evicted).
        self.call(Op::Create, Scope::Shard(key.0[0]), || {
            self.inner.create_limited(key, record, now, limit)
        })
        .await
    }
    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.call(Op::Load, Scope::Shard(key.0[0]), || {
            self.inner.load(key, now)
        })
        .await
    }
    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        // Renewing twice is harmless: the second finds nothing due.
        self.call(Op::Renew, Scope::Shard(key.0[0]), || {
            self.inner.renew(key, now, policy)
        })
        .await
    }
    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        self.call(Op::UpdateAttributes, Scope::Shard(key.0[0]), || {
            self.inner
                .update_attributes(key, now, changes, if_version, budget)
        })
        .await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.call(Op::Delete, Scope::Shard(key.0[0]), || {
            self.inner.delete(key)
        })
        .await
    }
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        self.call(Op::Cycle, Scope::Shard(old.0[0]), || {
            self.inner.cycle(old, new, now, changes)
        })
        .await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        self.call(Op::ListByUser, Scope::Shard(user_shard(user_id)), || {
            self.inner.list_by_user(user_id, now)
        })
        .await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        self.call(Op::DeleteByUser, Scope::Shard(user_shard(user_id)), || {
            self.inner.delete_by_user(user_id, except)
        })
        .await
    }
    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        self.call(Op::Sweep, Scope::Whole, || self.inner.sweep(now, limit))
            .await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.call(Op::Ping, Scope::Whole, || self.inner.ping())
            .await
    }
    async fn count(&self) -> Result<Option<u64>, StoreError> {
        self.call(Op::Count, Scope::Whole, || self.inner.count())
            .await
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn shards_by_user(&self) -> bool {
        self.inner.shards_by_user()
    }
    fn expires_keys_itself(&self) -> bool {
        self.inner.expires_keys_itself()
    }
    fn failure_domain(&self, scope: Scope<'_>) -> FailureDomain {
        self.inner.failure_domain(scope)
    }
    fn failure_domain_name(&self, domain: FailureDomain) -> String {
        self.inner.failure_domain_name(domain)
    }
}

#[async_trait]
impl UserStore for ResilientStore {
    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError> {
        // Not retried: a batch whose answer was lost may be in the log.
        self.call(Op::AppendEvents, Scope::Events, || {
            self.inner.append_events(events, keep)
        })
        .await
    }
    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.call(Op::RecentEvents, Scope::Events, || {
            self.inner.recent_events(limit)
        })
        .await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.call(Op::CreateUser, Scope::User(&user.name), || {
            self.inner.create_user(user)
        })
        .await
    }
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.call(Op::UpdateUser, Scope::User(&user.name), || {
            self.inner.update_user(user)
        })
        .await
    }
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.call(Op::GetUser, Scope::User(name), || self.inner.get_user(name))
            .await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.call(Op::ListUsers, Scope::Whole, || self.inner.list_users())
            .await
    }
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.call(Op::DeleteUser, Scope::User(name), || {
            self.inner.delete_user(name)
        })
        .await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.call(Op::GetSetting, Scope::Setting(name), || {
            self.inner.get_setting(name)
        })
        .await
    }
    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.call(Op::SwapSetting, Scope::Setting(name), || {
            self.inner.swap_setting(name, expected, value)
        })
        .await
    }
    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError> {
        self.call(Op::TakeAttempt, Scope::Attempts, || {
            self.inner.take_attempt(counters, window_ms, now)
        })
        .await
    }
    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.call(Op::RefundAttempts, Scope::Attempts, || {
            self.inner.refund_attempts(refunds, now)
        })
        .await
    }
    async fn rate_step(
        &self,
        key: &str,
        rate: &crate::Rate,
    ) -> Result<Option<crate::RateOutcome>, StoreError> {
        // Not retried: a step whose answer was lost may have counted.
        self.call(Op::RateStep, Scope::RateLimit(key), || {
            self.inner.rate_step(key, rate)
        })
        .await
    }
    fn shares_response_cache(&self) -> bool {
        self.inner.shares_response_cache()
    }
    // None retried: a cache that cannot answer at once is bypassed, and a
    // bump is idempotent in effect but its caller handles the failure.
    async fn cache_read(
        &self,
        key: Option<&str>,
        generations: &[String],
    ) -> Result<crate::CacheRead, StoreError> {
        self.call(Op::CacheRead, Scope::ResponseCache, || {
            self.inner.cache_read(key, generations)
        })
        .await
    }
    async fn cache_write(
        &self,
        key: &str,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.call(Op::CacheWrite, Scope::ResponseCache, || {
            self.inner.cache_write(key, value, ttl)
        })
        .await
    }
    async fn cache_invalidate(
        &self,
        generations: &[String],
        keep: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.call(Op::CacheInvalidate, Scope::ResponseCache, || {
            self.inner.cache_invalidate(generations, keep)
        })
        .await
    }
}
