//! An in-memory store for tests and development: fast, and gone on restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::attempts::{Attempt, AttemptCounters, Counter, Refund};
use crate::ops;
use crate::policy::ExpiryPolicy;
use crate::policy::SessionLimit;
use crate::record::{AttributeBudget, AttributeChange, SessionRecord, UserRecord};
use crate::store::{CacheRead, CycleChanges, Renewal, SessionStore, StoreError, UserStore};
use crate::time::Millis;
use crate::token::SessionKey;

#[derive(Default)]
struct State {
    sessions: HashMap<SessionKey, SessionRecord>,
    by_user: HashMap<String, HashSet<SessionKey>>,
    users: BTreeMap<String, UserRecord>,
    settings: HashMap<String, Vec<u8>>,
    /// The security-event log, oldest first.
    events: std::collections::VecDeque<Vec<u8>>,
}

impl State {
    fn remove(&mut self, key: &SessionKey) -> Option<SessionRecord> {
        let record = self.sessions.remove(key)?;
        if let Some(keys) = self.by_user.get_mut(&record.user_id) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_user.remove(&record.user_id);
            }
        }
        Some(record)
    }

    fn insert(&mut self, key: SessionKey, record: SessionRecord) {
        self.by_user
            .entry(record.user_id.clone())
            .or_default()
            .insert(key);
        self.sessions.insert(key, record);
    }

    /// The live record under `key`; an expired one is removed on the way.
    fn live(&mut self, key: &SessionKey, now: Millis) -> Option<&mut SessionRecord> {
        if self.sessions.get(key).is_some_and(|r| !r.is_live(now)) {
            self.remove(key);
        }
        self.sessions.get_mut(key)
    }
}

/// Sessions and users in a `HashMap` behind one mutex.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    attempts: AttemptCounters,
    response_cache: Option<Mutex<SharedCache>>,
}

/// The shared tier of a response cache, for tests that run several caches
/// (nodes) in one process on one store. Bounded: expired entries and
/// counters go when it is full, then everything (a cache may forget).
#[derive(Default)]
struct SharedCache {
    entries: HashMap<String, (Vec<u8>, Instant)>,
    generations: HashMap<String, (u64, Instant)>,
}

const SHARED_CACHE_MAX: usize = 10_000;

impl SharedCache {
    fn make_room<V>(map: &mut HashMap<String, (V, Instant)>) {
        if map.len() >= SHARED_CACHE_MAX {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store that also holds a response cache's shared tier
    /// ([`UserStore::shares_response_cache`]), as Redis does: for tests
    /// that run several nodes in one process. Off in [`MemoryStore::new`]:
    /// on one node the cache's own memory tier is enough.
    pub fn sharing_response_cache() -> Self {
        Self {
            response_cache: Some(Mutex::default()),
            ..Self::default()
        }
    }

    fn response_cache(&self) -> Result<std::sync::MutexGuard<'_, SharedCache>, StoreError> {
        self.response_cache
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            .ok_or_else(|| StoreError::Unavailable("no shared response cache".into()))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change
        // (each method mutates only after all checks), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.sessions.contains_key(key) {
            return Err(StoreError::Conflict);
        }
        state.insert(*key, record.clone());
        Ok(())
    }

    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let mut state = self.state();
        if state.sessions.contains_key(key) {
            return Err(StoreError::Conflict);
        }
        let live = state
            .by_user
            .get(&record.user_id)
            .into_iter()
            .flatten()
            .filter_map(|k| {
                let r = state.sessions.get(k)?;
                r.is_live(now).then_some((r.created_at, *k))
            })
            .collect();
        let evicted = ops::make_room(live, limit)?;
        for k in &evicted {
            state.remove(k);
        }
        state.insert(*key, record.clone());
        Ok(evicted)
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.state().live(key, now).cloned())
    }

    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        Ok(match self.state().live(key, now) {
            Some(record) => ops::renew(record, now, policy),
            None => Renewal::Gone,
        })
    }

    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        let mut state = self.state();
        let record = state.live(key, now).ok_or(StoreError::NotFound)?;
        ops::update_attributes(record, now, changes, if_version, budget)
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        Ok(self.state().remove(key).is_some())
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        let mut state = self.state();
        if state.live(old, now).is_none() {
            return Err(StoreError::NotFound);
        }
        if state.sessions.contains_key(new) {
            return Err(StoreError::Conflict);
        }
        let mut record = state.remove(old).ok_or(StoreError::NotFound)?;
        ops::cycle(&mut record, now, changes)?;
        state.insert(*new, record.clone());
        Ok(record)
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let state = self.state();
        let Some(keys) = state.by_user.get(user_id) else {
            return Ok(Vec::new());
        };
        Ok(keys
            .iter()
            .filter_map(|k| {
                state
                    .sessions
                    .get(k)
                    .filter(|r| r.is_live(now))
                    .map(|r| (*k, r.clone()))
            })
            .collect())
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let mut state = self.state();
        let keys: Vec<SessionKey> = state
            .by_user
            .get(user_id)
            .map(|keys| {
                keys.iter()
                    .filter(|k| Some(*k) != except)
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for key in &keys {
            state.remove(key);
        }
        Ok(keys.len())
    }

    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        let mut state = self.state();
        let expired: Vec<SessionKey> = state
            .sessions
            .iter()
            .filter(|(_, r)| !r.is_live(now))
            .map(|(k, _)| *k)
            .take(limit)
            .collect();
        for key in &expired {
            state.remove(key);
        }
        Ok(expired.len())
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(Some(self.state().sessions.len() as u64))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError> {
        let mut state = self.state();
        state.events.extend(events.iter().cloned());
        while state.events.len() > keep {
            state.events.pop_front();
        }
        Ok(())
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        Ok(self
            .state()
            .events
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.users.contains_key(&user.name) {
            return Err(StoreError::Conflict);
        }
        state.users.insert(user.name.clone(), user.clone());
        Ok(())
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.state().users.remove(name).is_some())
    }

    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        let slot = state
            .users
            .get_mut(&user.name)
            .ok_or(StoreError::NotFound)?;
        *slot = user.clone();
        Ok(())
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.state().users.get(name).cloned())
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        Ok(self.state().users.values().cloned().collect())
    }

    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state().settings.get(name).cloned())
    }

    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let mut state = self.state();
        if state.settings.get(name).map(Vec::as_slice) != expected {
            return Ok(false);
        }
        state.settings.insert(name.to_owned(), value.to_vec());
        Ok(true)
    }

    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError> {
        Ok(self.attempts.take(counters, window_ms, now))
    }

    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.attempts.refund(refunds, now);
        Ok(())
    }

    fn shares_response_cache(&self) -> bool {
        self.response_cache.is_some()
    }

    async fn cache_read(
        &self,
        key: Option<&str>,
        generations: &[String],
    ) -> Result<CacheRead, StoreError> {
        let cache = self.response_cache()?;
        let now = Instant::now();
        Ok(CacheRead {
            entry: key
                .and_then(|k| cache.entries.get(k))
                .filter(|(_, until)| *until > now)
                .map(|(bytes, _)| bytes.clone()),
            generations: generations
                .iter()
                .map(|g| {
                    cache
                        .generations
                        .get(g)
                        .filter(|(_, until)| *until > now)
                        .map_or(0, |(n, _)| *n)
                })
                .collect(),
        })
    }

    async fn cache_write(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let mut cache = self.response_cache()?;
        SharedCache::make_room(&mut cache.entries);
        if cache.entries.len() >= SHARED_CACHE_MAX {
            cache.entries.clear();
        }
        cache
            .entries
            .insert(key.to_owned(), (value.to_vec(), Instant::now() + ttl));
        Ok(())
    }

    async fn cache_invalidate(
        &self,
        generations: &[String],
        keep: Duration,
    ) -> Result<(), StoreError> {
        let mut cache = self.response_cache()?;
        // Counters are never cleared wholesale: one that vanished early
        // would make older entries current again.
        SharedCache::make_room(&mut cache.generations);
        let until = Instant::now() + keep;
        for g in generations {
            let slot = cache.generations.entry(g.clone()).or_insert((0, until));
            slot.0 += 1;
            slot.1 = until;
        }
        Ok(())
    }
}
