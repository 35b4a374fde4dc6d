//! The near-cache: decoded session records this node loaded, kept in memory
//! and dropped the moment Redis says their key changed.
//!
//! The rules that make it safe to answer a verification from memory:
//! - **Served only while armed.** The cache is armed only while a tracking
//!   connection to every master is subscribed to invalidations
//!   ([`crate::tracking`]). A gap in that stream (a dropped or killed
//!   connection, a restarted Redis, a new master, a moved slot) disarms and
//!   empties it before anything is served again.
//! - **No stale fill.** A load takes a [`Ticket`] before it asks Redis and
//!   may fill the cache with its answer only if no invalidation of a key in
//!   the same stripe, and no flush, happened meanwhile: otherwise an
//!   invalidation that overtook the (older) answer would be lost.
//! - **Never past expiry.** A hit is checked against the session's own idle
//!   and absolute expiry at every use, and against a short maximum age that
//!   bounds the damage of anything unforeseen.
//! - **Bounded.** By entries and bytes (each entry weighs at least
//!   `bytes / entries`, so the byte bound also bounds the count).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use sessiond_core::{Millis, SessionKey, SessionRecord};

/// Bounds of the near-cache.
#[derive(Debug, Clone, Copy)]
pub struct NearCacheConfig {
    /// At most this many sessions.
    pub max_entries: u64,
    /// At most about this many bytes of decoded records.
    pub max_bytes: u64,
    /// A cached record older than this is loaded again, whatever the
    /// invalidations said: a safety net, not the mechanism.
    pub max_age: Duration,
}

impl Default for NearCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(10),
        }
    }
}

/// What the cache has done, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NearCacheStats {
    /// Sessions held now.
    pub entries: u64,
    /// Their weight (approximate bytes).
    pub bytes: u64,
    /// Loads answered from memory.
    pub hits: u64,
    /// Loads that went to Redis.
    pub misses: u64,
    /// Keys dropped because Redis (or this node's own write) changed them.
    pub invalidations: u64,
    /// Times everything was dropped (a gap in the invalidation stream).
    pub flushes: u64,
    /// Whether entries are being served.
    pub armed: bool,
}

#[derive(Clone)]
struct Entry {
    record: Arc<SessionRecord>,
    loaded: Instant,
    weight: u64,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<SessionKey, Entry> for ByWeight {
    fn weight(&self, _: &SessionKey, entry: &Entry) -> u64 {
        entry.weight
    }
}

/// Stripes of invalidation counters: a fill is refused when its stripe saw
/// an invalidation during the load. More stripes, fewer needless refusals.
const STRIPES: usize = 64;

/// Proof that a load began at a known point of the invalidation stream.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    seq: u64,
    epoch: u64,
}

pub(crate) struct NearCache {
    cache: Cache<SessionKey, Entry, ByWeight>,
    /// Invalidations per stripe; the lock orders an invalidation against a fill.
    stripes: Box<[Mutex<u64>]>,
    /// Incremented by every flush (taken under all stripe locks).
    epoch: AtomicU64,
    armed: AtomicBool,
    min_weight: u64,
    max_age: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
    flushes: AtomicU64,
}

fn lock(m: &Mutex<u64>) -> MutexGuard<'_, u64> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn stripe(key: &SessionKey) -> usize {
    // The first byte is the user's shard; the second is random.
    usize::from(key.0[1]) % STRIPES
}

/// A rough size of a decoded record in memory.
fn size_of(record: &SessionRecord) -> u64 {
    let strings = record.user_id.len()
        + record.csrf_secret.len()
        + record.roles.iter().map(|r| r.len() + 24).sum::<usize>()
        + record
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len() + 64)
            .sum::<usize>()
        + record.client.ip.as_deref().map_or(0, str::len)
        + record.client.user_agent.as_deref().map_or(0, str::len);
    (std::mem::size_of::<SessionRecord>() + 96 + strings) as u64
}

impl NearCache {
    pub(crate) fn new(config: NearCacheConfig) -> Self {
        let entries = config.max_entries.max(1);
        let bytes = config.max_bytes.max(1);
        Self {
            cache: Cache::with_weighter(
                usize::try_from(entries.min(1 << 20)).unwrap_or(1 << 20),
                bytes,
                ByWeight,
            ),
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            epoch: AtomicU64::new(0),
            armed: AtomicBool::new(false),
            min_weight: bytes.div_ceil(entries),
            max_age: config.max_age,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            invalidations: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
        }
    }

    /// The live record of `key` if it is cached, armed, young enough and
    /// not expired at `now`.
    pub(crate) fn get(&self, key: &SessionKey, now: Millis) -> Option<SessionRecord> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let hit = self
            .cache
            .get(key)
            .filter(|e| e.loaded.elapsed() < self.max_age && e.record.is_live(now));
        match hit {
            Some(e) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(SessionRecord::clone(&e.record))
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Taken before a load asks Redis; `None` while disarmed (nothing
    /// loaded then may be cached).
    pub(crate) fn ticket(&self, key: &SessionKey) -> Option<Ticket> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let seq = *lock(&self.stripes[stripe(key)]);
        Some(Ticket {
            seq,
            epoch: self.epoch.load(Ordering::Acquire),
        })
    }

    /// Caches what a load found, unless its key's stripe was invalidated or
    /// the cache flushed since the ticket was taken.
    pub(crate) fn fill(&self, key: SessionKey, ticket: Ticket, record: &SessionRecord) {
        let seq = lock(&self.stripes[stripe(&key)]);
        if *seq != ticket.seq
            || self.epoch.load(Ordering::Acquire) != ticket.epoch
            || !self.armed.load(Ordering::Acquire)
        {
            return;
        }
        let entry = Entry {
            record: Arc::new(record.clone()),
            loaded: Instant::now(),
            weight: size_of(record).max(self.min_weight),
        };
        self.cache.insert(key, entry);
        drop(seq);
    }

    /// Drops `key` (Redis said it changed, or this node wrote it).
    pub(crate) fn invalidate(&self, key: &SessionKey) {
        let mut seq = lock(&self.stripes[stripe(key)]);
        *seq += 1;
        self.cache.remove(key);
        drop(seq);
        self.invalidations.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops everything, ordering itself against fills in progress.
    pub(crate) fn flush(&self) {
        let guards: Vec<_> = self.stripes.iter().map(lock).collect();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.cache.clear();
        drop(guards);
        self.flushes.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops serving and drops everything: the invalidation stream has a gap.
    pub(crate) fn disarm(&self) {
        self.armed.store(false, Ordering::Release);
        self.flush();
    }

    /// Serves again: tracking is on for every master. Called only after
    /// Redis acknowledged the tracking commands, so every read that starts
    /// from now on is covered by invalidations.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::Release);
    }

    pub(crate) fn stats(&self) -> NearCacheStats {
        NearCacheStats {
            entries: self.cache.len() as u64,
            bytes: self.cache.weight(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            invalidations: self.invalidations.load(Ordering::Relaxed),
            flushes: self.flushes.load(Ordering::Relaxed),
            armed: self.armed.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(now: Millis) -> SessionRecord {
        SessionRecord {
            user_id: "alice".into(),
            roles: vec!["user".into()],
            created_at: now,
            last_seen: now,
            idle_expires_at: now + 60_000,
            absolute_expires_at: now + 120_000,
            csrf_secret: "s".repeat(43),
            client: Default::default(),
            attributes: Default::default(),
            version: 1,
        }
    }

    fn key(i: u32) -> SessionKey {
        let mut k = [0u8; 32];
        k[1..5].copy_from_slice(&i.to_be_bytes());
        k[1] = (i % 251) as u8;
        SessionKey(k)
    }

    fn armed(config: NearCacheConfig) -> NearCache {
        let c = NearCache::new(config);
        c.arm();
        c
    }

    #[test]
    fn a_filled_record_is_served_until_it_is_invalidated() {
        let c = armed(NearCacheConfig::default());
        let t = c.ticket(&key(1)).unwrap();
        c.fill(key(1), t, &record(1_000));
        assert_eq!(c.get(&key(1), 2_000).unwrap().user_id, "alice");
        c.invalidate(&key(1));
        assert!(c.get(&key(1), 2_000).is_none());
    }

    #[test]
    fn an_invalidation_during_the_load_refuses_the_fill() {
        let c = armed(NearCacheConfig::default());
        let t = c.ticket(&key(1)).unwrap();
        c.invalidate(&key(1));
        c.fill(key(1), t, &record(1_000));
        assert!(c.get(&key(1), 2_000).is_none());
    }

    #[test]
    fn a_flush_during_the_load_refuses_the_fill() {
        let c = armed(NearCacheConfig::default());
        let t = c.ticket(&key(1)).unwrap();
        c.flush();
        c.fill(key(1), t, &record(1_000));
        assert!(c.get(&key(1), 2_000).is_none());
    }

    #[test]
    fn nothing_is_served_or_filled_while_disarmed() {
        let c = armed(NearCacheConfig::default());
        let t = c.ticket(&key(1)).unwrap();
        c.fill(key(1), t, &record(1_000));
        c.disarm();
        assert!(c.ticket(&key(1)).is_none());
        c.fill(key(1), t, &record(1_000));
        c.arm();
        assert!(c.get(&key(1), 2_000).is_none(), "the gap emptied the cache");
    }

    #[test]
    fn an_expired_session_is_never_served() {
        let c = armed(NearCacheConfig::default());
        let t = c.ticket(&key(1)).unwrap();
        c.fill(key(1), t, &record(1_000));
        assert!(c.get(&key(1), 1_000 + 60_000).is_none(), "idle expiry");
    }

    #[test]
    fn a_record_older_than_the_maximum_age_is_loaded_again() {
        let c = armed(NearCacheConfig {
            max_age: Duration::ZERO,
            ..NearCacheConfig::default()
        });
        let t = c.ticket(&key(1)).unwrap();
        c.fill(key(1), t, &record(1_000));
        assert!(c.get(&key(1), 2_000).is_none());
    }

    #[test]
    fn filling_beyond_the_bounds_evicts_and_never_grows_past_them() {
        let config = NearCacheConfig {
            max_entries: 500,
            max_bytes: 1024 * 1024,
            max_age: Duration::from_secs(60),
        };
        let c = armed(config);
        for i in 0..5_000 {
            let t = c.ticket(&key(i)).unwrap();
            c.fill(key(i), t, &record(1_000));
            let s = c.stats();
            assert!(s.entries <= 500, "{} entries after {i}", s.entries);
            assert!(s.bytes <= 1024 * 1024);
        }
        assert!(c.stats().entries >= 250, "the cache is used, not emptied");

        let by_bytes = armed(NearCacheConfig {
            max_entries: 1_000_000,
            max_bytes: 64 * 1024,
            max_age: Duration::from_secs(60),
        });
        for i in 0..5_000 {
            let t = by_bytes.ticket(&key(i)).unwrap();
            by_bytes.fill(key(i), t, &record(1_000));
            assert!(by_bytes.stats().bytes <= 64 * 1024);
        }
        assert!(by_bytes.stats().entries > 10);
    }
}
