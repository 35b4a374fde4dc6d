//! A near-cache of decoded sessions in front of redb.
//!
//! It is coherent because this process is the only writer of the database
//! (redb's file lock) and every write goes through the writer thread, which
//! invalidates the keys it touched after each commit and before it answers.
//! A reader that missed fills the cache only if no invalidation hit its shard
//! between its lookup and its insert (the shard's epoch did not move), so a
//! record read from a snapshot older than a commit is never cached after that
//! commit's invalidation. Expiry is still checked on every hit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use sessiond_core::{SessionKey, SessionRecord};

const SHARDS: usize = 64;

#[derive(Default)]
struct Shard {
    map: HashMap<SessionKey, Arc<SessionRecord>>,
    epoch: u64,
}

pub(crate) struct NearCache {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
}

/// What a lookup saw: the record, or the shard epoch to fill the miss with
/// (`None` when the shard is full: no fill).
pub(crate) enum Lookup {
    Hit(Arc<SessionRecord>),
    Miss(Option<u64>),
}

impl NearCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS),
        }
    }

    fn shard(&self, key: &SessionKey) -> &RwLock<Shard> {
        // Keys are SHA-256 output: any byte is uniformly distributed.
        &self.shards[key.0[0] as usize % SHARDS]
    }

    pub(crate) fn get(&self, key: &SessionKey) -> Lookup {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shard.map.get(key) {
            Some(r) => Lookup::Hit(r.clone()),
            None => Lookup::Miss((shard.map.len() < self.per_shard).then_some(shard.epoch)),
        }
    }

    /// Caches a record read after a miss at `epoch`, unless the shard was
    /// invalidated since.
    pub(crate) fn fill(&self, key: SessionKey, record: Arc<SessionRecord>, epoch: u64) {
        if self.per_shard == 0 {
            return;
        }
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if shard.epoch != epoch {
            return;
        }
        if shard.map.len() >= self.per_shard {
            // Crude but bounded: drop an arbitrary entry (HashMap order is random).
            if let Some(victim) = shard.map.keys().next().copied() {
                shard.map.remove(&victim);
            }
        }
        shard.map.insert(key, record);
    }

    /// Forgets `keys` after a commit that changed them.
    pub(crate) fn invalidate<'a>(&self, keys: impl IntoIterator<Item = &'a SessionKey>) {
        for key in keys {
            let mut shard = self
                .shard(key)
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            shard.epoch += 1;
            shard.map.remove(key);
        }
    }
}
