//! Login throttling: failed attempts counted per username and per client IP
//! in a fixed window. Unknown usernames are counted like known ones, so the
//! answers never reveal whether a name exists.
//!
//! Written here rather than with `governor`: governor's keyed limiters consume
//! a cell on every check, and throttling must count only failures while
//! letting a caller ask "is this key blocked?" without spending anything.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counters for one kind of key (username or IP).
pub struct Throttle {
    limit: u32,
    window: Duration,
    entries: Mutex<HashMap<String, Window>>,
}

/// Above this many tracked keys, expired windows are pruned on insert.
const PRUNE_AT: usize = 100_000;

impl Throttle {
    /// Allows `limit` failures per key per `window`.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `Some(seconds to wait)` if `key` is blocked now.
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let entries = self.entries();
        let w = entries.get(key)?;
        let elapsed = w.started.elapsed();
        (w.failures >= self.limit && elapsed < self.window)
            .then(|| (self.window - elapsed).as_secs().max(1))
    }

    /// Counts one failure for `key`.
    pub fn record_failure(&self, key: &str) {
        let mut entries = self.entries();
        if entries.len() >= PRUNE_AT {
            let window = self.window;
            entries.retain(|_, w| w.started.elapsed() < window);
        }
        let w = entries.entry(key.to_owned()).or_insert(Window {
            started: Instant::now(),
            failures: 0,
        });
        if w.started.elapsed() >= self.window {
            *w = Window {
                started: Instant::now(),
                failures: 0,
            };
        }
        w.failures += 1;
    }

    /// Forgets `key` (after a successful login).
    pub fn reset(&self, key: &str) {
        self.entries().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_blocked_after_the_limit_and_reset_clears_it() {
        let t = Throttle::new(3, Duration::from_secs(60));
        for _ in 0..2 {
            t.record_failure("alice");
        }
        assert_eq!(t.blocked("alice"), None);
        t.record_failure("alice");
        assert!(t.blocked("alice").is_some_and(|s| s <= 60));
        assert_eq!(t.blocked("bob"), None);
        t.reset("alice");
        assert_eq!(t.blocked("alice"), None);
    }
}
