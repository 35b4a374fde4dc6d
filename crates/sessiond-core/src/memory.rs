//! An in-memory store for tests and development: fast, and gone on restart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::attempts::{Attempt, AttemptCounters, Counter, Refund};
use crate::ops;
use crate::policy::ExpiryPolicy;
use crate::record::{AttributeBudget, AttributeChange, SessionRecord, UserRecord};
use crate::store::{CycleChanges, Renewal, SessionStore, StoreError, UserStore};
use crate::time::Millis;
use crate::token::SessionKey;

#[derive(Default)]
struct State {
    sessions: HashMap<SessionKey, SessionRecord>,
    by_user: HashMap<String, HashSet<SessionKey>>,
    users: BTreeMap<String, UserRecord>,
    settings: HashMap<String, Vec<u8>>,
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
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
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
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.users.contains_key(&user.name) {
            return Err(StoreError::Conflict);
        }
        state.users.insert(user.name.clone(), user.clone());
        Ok(())
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
}
