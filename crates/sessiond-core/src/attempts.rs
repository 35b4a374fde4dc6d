//! Attempt counters: fixed-window counts kept in the store, so that a limit
//! (login throttling) holds across every node that shares it.
//!
//! An attempt is *taken* before the work it guards is done and counts at
//! once; an attempt that turned out fine is *refunded* afterwards. Taking is
//! all-or-nothing over several counters (the user's and the client IP's):
//! either each is below its limit and each gains one, or none changes.
//! [`AttemptCounters`] is the in-process implementation the memory and file
//! stores use; Redis runs the same rules in one Lua script.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::time::Millis;

/// One counter to take an attempt on, with its limit per window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    /// The counter's name ("user:alice", "ip:203.0.113.9"); at most
    /// [`Counter::MAX_KEY`] bytes.
    pub key: String,
    /// Attempts allowed per window.
    pub limit: u32,
}

impl Counter {
    /// Longest counter name a store must accept.
    pub const MAX_KEY: usize = 256;

    /// A counter named `key` allowing `limit` attempts per window.
    pub fn new(key: impl Into<String>, limit: u32) -> Self {
        Self {
            key: key.into(),
            limit,
        }
    }
}

/// The answer to taking an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Every counter was below its limit and now counts this attempt.
    Taken,
    /// A counter is at its limit: nothing changed. Its window ends in
    /// `retry_after_ms`.
    Refused {
        /// Milliseconds until the blocking counter's window ends.
        retry_after_ms: u64,
    },
}

/// What a refund does to a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refund {
    /// Gives back one attempt (it succeeded, or was never evaluated).
    One,
    /// Forgets the counter's window entirely (a user who got in).
    All,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    ends_at: Millis,
}

/// Above this many counters, expired windows are pruned on the next take.
const PRUNE_AT: usize = 100_000;

/// Attempt counters in this process (memory and file stores: one node).
#[derive(Debug, Default)]
pub struct AttemptCounters {
    windows: Mutex<HashMap<String, Window>>,
}

impl AttemptCounters {
    fn windows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Window>> {
        // Every change below is made after all checks: poison is harmless.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// See [`crate::UserStore::take_attempt`].
    pub fn take(&self, counters: &[Counter], window_ms: u64, now: Millis) -> Attempt {
        let mut windows = self.windows();
        if windows.len() >= PRUNE_AT {
            windows.retain(|_, w| w.ends_at > now);
        }
        let live = |w: &Window| w.ends_at > now;
        let blocked = counters
            .iter()
            .filter_map(|c| {
                let w = windows.get(&c.key).filter(|w| live(w))?;
                (w.count >= c.limit).then(|| w.ends_at.saturating_sub(now))
            })
            .max();
        if let Some(retry_after_ms) = blocked {
            return Attempt::Refused { retry_after_ms };
        }
        for c in counters {
            let w = windows.entry(c.key.clone()).or_insert(Window {
                count: 0,
                ends_at: now,
            });
            if !live(w) {
                *w = Window {
                    count: 0,
                    ends_at: now.saturating_add(window_ms),
                };
            }
            w.count = w.count.saturating_add(1);
        }
        Attempt::Taken
    }

    /// See [`crate::UserStore::refund_attempts`].
    pub fn refund(&self, refunds: &[(String, Refund)], now: Millis) {
        let mut windows = self.windows();
        for (key, refund) in refunds {
            let Some(w) = windows.get_mut(key) else {
                continue;
            };
            w.count = match refund {
                Refund::One => w.count.saturating_sub(1),
                Refund::All => 0,
            };
            if w.count == 0 || w.ends_at <= now {
                windows.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_take_changes_none_of_the_counters() {
        let c = AttemptCounters::default();
        let user = Counter::new("user:alice", 2);
        let ip = Counter::new("ip:1", 10);
        assert_eq!(c.take(&[user.clone(), ip.clone()], 1000, 0), Attempt::Taken);
        assert_eq!(
            c.take(&[user.clone(), ip.clone()], 1000, 10),
            Attempt::Taken
        );
        assert_eq!(
            c.take(&[user.clone(), ip.clone()], 1000, 400),
            Attempt::Refused {
                retry_after_ms: 600
            }
        );
        // The IP counter still holds 2: eight more attempts from it pass.
        for i in 0..8 {
            assert_eq!(
                c.take(
                    &[Counter::new(format!("user:{i}"), 5), ip.clone()],
                    1000,
                    500
                ),
                Attempt::Taken
            );
        }
        assert!(matches!(c.take(&[ip], 1000, 500), Attempt::Refused { .. }));
        assert_eq!(c.take(&[user], 1000, 1000), Attempt::Taken, "a new window");
    }

    #[test]
    fn refunds_give_back_one_or_forget_the_window() {
        let c = AttemptCounters::default();
        let user = Counter::new("user:bob", 1);
        assert_eq!(c.take(std::slice::from_ref(&user), 1000, 0), Attempt::Taken);
        c.refund(&[(user.key.clone(), Refund::One)], 1);
        assert_eq!(c.take(std::slice::from_ref(&user), 1000, 2), Attempt::Taken);
        c.refund(&[(user.key.clone(), Refund::All)], 3);
        assert_eq!(c.take(&[user], 1000, 4), Attempt::Taken);
    }
}
