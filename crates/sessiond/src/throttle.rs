//! Login throttling: failed attempts counted per username and per client IP
//! in a fixed window. Unknown usernames are counted like known ones, so the
//! answers never reveal whether a name exists.
//!
//! An attempt takes a slot *before* its password hash is computed
//! ([`Throttle::reserve`]) and settles it afterwards (a failure stays
//! counted, a success or an error gives the slot back). Slots in flight
//! count against the limit, so a burst of concurrent guesses cannot all
//! pass an "is this key blocked?" check made before any of them failed: at
//! most `limit` guesses per key are ever evaluated per window, however many
//! arrive at once.
//!
//! Written here rather than with `governor`: governor's keyed limiters spend
//! a cell on every check, and throttling must count failures only while
//! holding a place for attempts still being checked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

struct Window {
    started: Instant,
    failures: u32,
    in_flight: u32,
}

struct Inner {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

/// Failure counters for one kind of key (username or IP).
#[derive(Clone)]
pub struct Throttle {
    inner: Arc<Inner>,
}

/// Above this many tracked keys, expired idle windows are pruned on insert.
const PRUNE_AT: usize = 100_000;

/// A place held for one attempt. Settle it with [`Slot::failed`] or
/// [`Slot::succeeded`]; dropped unsettled (the check itself failed, say the
/// store was down), it just gives the place back.
#[must_use = "a slot counts against the limit until it is settled or dropped"]
pub struct Slot {
    throttle: Throttle,
    key: String,
    settled: bool,
}

impl Throttle {
    /// Allows `limit` failures per key per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                limit,
                window,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn entries(&self) -> MutexGuard<'_, HashMap<String, Window>> {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Seconds until `w`'s window ends, at least 1.
    fn wait(&self, w: &Window) -> u64 {
        self.inner
            .window
            .saturating_sub(w.started.elapsed())
            .as_secs()
            .max(1)
    }

    /// Takes a place for one attempt on `key`, or answers how many seconds
    /// to wait when the failures so far and the attempts in flight already
    /// reach the limit.
    pub fn reserve(&self, key: &str) -> Result<Slot, u64> {
        let mut entries = self.entries();
        if entries.len() >= PRUNE_AT {
            let window = self.inner.window;
            entries.retain(|_, w| w.in_flight > 0 || w.started.elapsed() < window);
        }
        let w = entries.entry(key.to_owned()).or_insert(Window {
            started: Instant::now(),
            failures: 0,
            in_flight: 0,
        });
        if w.started.elapsed() >= self.inner.window {
            w.started = Instant::now();
            w.failures = 0;
        }
        if w.failures.saturating_add(w.in_flight) >= self.inner.limit {
            return Err(self.wait(w));
        }
        w.in_flight += 1;
        Ok(Slot {
            throttle: self.clone(),
            key: key.to_owned(),
            settled: false,
        })
    }

    /// `Some(seconds to wait)` if `key` has used up its failures now (slots
    /// in flight aside).
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let entries = self.entries();
        let w = entries.get(key)?;
        (w.failures >= self.inner.limit && w.started.elapsed() < self.inner.window)
            .then(|| self.wait(w))
    }

    fn settle(&self, key: &str, failed: bool, reset: bool) {
        let mut entries = self.entries();
        if let Some(w) = entries.get_mut(key) {
            w.in_flight = w.in_flight.saturating_sub(1);
            if failed {
                w.failures = w.failures.saturating_add(1);
            }
            if reset {
                w.failures = 0;
            }
            if w.in_flight == 0 && w.failures == 0 {
                entries.remove(key);
            }
        }
    }
}

impl Slot {
    /// The attempt failed: it stays counted for the rest of the window.
    pub fn failed(mut self) {
        self.settled = true;
        self.throttle.settle(&self.key, true, false);
    }

    /// The attempt succeeded: the place is given back and, with `reset`,
    /// the key's earlier failures are forgotten (a user who got in).
    pub fn succeeded(mut self, reset: bool) {
        self.settled = true;
        self.throttle.settle(&self.key, false, reset);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.settled {
            self.throttle.settle(&self.key, false, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_the_limit_and_a_success_clears_it() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.reserve("alice").expect("a place").failed();
        }
        assert_eq!(t.blocked("alice"), None);
        t.reserve("alice").expect("a place").failed();
        assert!(t.blocked("alice").is_some_and(|s| s <= 60));
        assert!(t.reserve("alice").is_err());
        assert!(t.reserve("bob").is_ok());
        let t = Throttle::new(3, Duration::from_secs(60));
        t.reserve("carol").expect("a place").failed();
        t.reserve("carol").expect("a place").succeeded(true);
        for _ in 0..3 {
            t.reserve("carol").expect("forgotten").failed();
        }
    }

    #[test]
    fn attempts_in_flight_hold_their_places_so_a_burst_cannot_overrun_the_limit() {
        let t = Throttle::new(5, Duration::from_secs(60));
        let held: Vec<Slot> = (0..5)
            .map(|_| t.reserve("alice").expect("a place"))
            .collect();
        assert!(t.reserve("alice").is_err(), "five in flight fill the limit");
        drop(held); // unsettled: the places come back, nothing was counted
        assert!(t.blocked("alice").is_none());
        let held: Vec<Slot> = (0..5)
            .map(|_| t.reserve("alice").expect("a place"))
            .collect();
        for slot in held {
            slot.failed();
        }
        assert!(t.reserve("alice").is_err());
    }
}
