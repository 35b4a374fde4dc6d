//! Login throttling: attempts counted per username, per client IP and per
//! known device, in fixed windows kept in the store
//! ([`sessiond_core::UserStore::take_attempt`]), so every node sharing the
//! store counts together: N nodes do not allow N times the guesses. Unknown
//! usernames are counted like known ones, so the answers never reveal
//! whether a name exists.
//!
//! An attempt takes its place on every counter *before* its password hash
//! is computed ([`Throttle::reserve`], one atomic store call: on Redis one
//! round trip) and counts at once; an attempt that succeeded is given back
//! afterwards ([`Slot::succeeded`]). So a burst of concurrent guesses cannot
//! all pass an "is this key blocked?" check made before any of them failed:
//! at most `limit` guesses per counter are ever evaluated per window,
//! however many arrive at once and on whichever nodes.
//!
//! Written here rather than with `governor`: governor's limiters live in
//! one process and spend a cell on every check, and throttling must count
//! failures only, across nodes.

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::{Attempt, Backend, Clock, Counter, Refund, StoreError};

/// What a counter counts: the key kinds, named once.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// Login attempts for a user name without a device cookie for it.
    User(&'a str),
    /// Login attempts from a client address.
    Ip(&'a std::net::IpAddr),
    /// Login attempts carrying a valid device cookie (its id).
    Device(&'a str),
    /// Current-password checks by a signed-in user (password change).
    Reauth(&'a str),
}

impl Key<'_> {
    fn name(self) -> String {
        match self {
            Key::User(name) => format!("login:user:{name}"),
            Key::Ip(ip) => format!("login:ip:{ip}"),
            Key::Device(id) => format!("login:device:{id}"),
            Key::Reauth(name) => format!("reauth:user:{name}"),
        }
    }
}

/// Why a place could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A counter is at its limit.
    #[error("too many attempts; try again in {0} s")]
    Throttled(u64),
    /// The store could not count.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Attempt counters in the store, with one window length.
#[derive(Clone)]
pub struct Throttle {
    store: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    window: Duration,
}

/// A place held for one attempt on each of its counters. Settle it with
/// [`Slot::failed`] (it stays counted) or [`Slot::succeeded`]; dropped
/// unsettled (the check itself failed, say the store was down), it is given
/// back in the background.
#[must_use = "a slot counts against the limits until it is settled"]
pub struct Slot {
    throttle: Throttle,
    keys: Vec<String>,
    settled: bool,
}

impl Throttle {
    /// Counters in `store`, windows of `window`, on `clock`.
    pub fn new(store: Arc<dyn Backend>, clock: Arc<dyn Clock>, window: Duration) -> Self {
        Self {
            store,
            clock,
            window,
        }
    }

    /// Takes a place on every `(key, limit)` at once, or none: refused with
    /// the seconds to wait when one of them is full.
    pub async fn reserve(&self, counters: &[(Key<'_>, u32)]) -> Result<Slot, Refusal> {
        let counters: Vec<Counter> = counters
            .iter()
            .map(|(key, limit)| Counter::new(key.name(), *limit))
            .collect();
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        match self
            .store
            .take_attempt(&counters, window_ms, self.clock.now())
            .await?
        {
            Attempt::Taken => Ok(Slot {
                throttle: self.clone(),
                keys: counters.into_iter().map(|c| c.key).collect(),
                settled: false,
            }),
            Attempt::Refused { retry_after_ms } => {
                Err(Refusal::Throttled(retry_after_ms.div_ceil(1000).max(1)))
            }
        }
    }

    async fn refund(&self, refunds: Vec<(String, Refund)>) {
        if let Err(e) = self.store.refund_attempts(&refunds, self.clock.now()).await {
            // A place not given back only shortens the user's allowance
            // until the window ends; the attempt itself has its answer.
            tracing::warn!(error = %e, "could not give back a login attempt");
        }
    }
}

impl Slot {
    /// The attempt failed: it stays counted for the rest of the window.
    pub fn failed(mut self) {
        self.settled = true;
    }

    /// The attempt succeeded: its places are given back, and the counter of
    /// `forget` (if any) loses its whole window (a device whose owner got in).
    pub async fn succeeded(mut self, forget: Option<Key<'_>>) {
        self.settled = true;
        let forget = forget.map(Key::name);
        let refunds = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|k| {
                let how = if forget.as_ref() == Some(&k) {
                    Refund::All
                } else {
                    Refund::One
                };
                (k, how)
            })
            .collect();
        self.throttle.refund(refunds).await;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let refunds: Vec<_> = std::mem::take(&mut self.keys)
            .into_iter()
            .map(|k| (k, Refund::One))
            .collect();
        let throttle = self.throttle.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { throttle.refund(refunds).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessiond_core::{ManualClock, MemoryStore};

    fn throttle() -> (Throttle, ManualClock) {
        let clock = ManualClock::starting_now();
        let t = Throttle::new(
            Arc::new(MemoryStore::new()),
            Arc::new(clock.clone()),
            Duration::from_secs(60),
        );
        (t, clock)
    }

    #[tokio::test]
    async fn a_key_is_refused_after_the_limit_until_its_window_ends() {
        let (t, clock) = throttle();
        for _ in 0..3 {
            t.reserve(&[(Key::User("alice"), 3)])
                .await
                .unwrap()
                .failed();
        }
        match t.reserve(&[(Key::User("alice"), 3)]).await {
            Err(Refusal::Throttled(secs)) => assert_eq!(secs, 60),
            _ => panic!("alice is throttled"),
        }
        assert!(t.reserve(&[(Key::User("bob"), 3)]).await.is_ok());
        clock.advance(Duration::from_secs(60));
        assert!(t.reserve(&[(Key::User("alice"), 3)]).await.is_ok());
    }

    #[tokio::test]
    async fn a_success_gives_its_place_back_and_forgets_the_named_counter() {
        let (t, _) = throttle();
        let device = Key::Device("d1");
        for _ in 0..2 {
            t.reserve(&[(device, 3)]).await.unwrap().failed();
        }
        t.reserve(&[(device, 3), (Key::User("x"), 1)])
            .await
            .unwrap()
            .succeeded(Some(device))
            .await;
        for _ in 0..3 {
            t.reserve(&[(device, 3)]).await.expect("forgotten").failed();
        }
        // The user counter got its one place back.
        assert!(t.reserve(&[(Key::User("x"), 1)]).await.is_ok());
    }

    #[tokio::test]
    async fn places_held_in_flight_count_and_come_back_when_dropped() {
        let (t, _) = throttle();
        let mut held = Vec::new();
        for _ in 0..5 {
            held.push(t.reserve(&[(Key::User("alice"), 5)]).await.unwrap());
        }
        assert!(t.reserve(&[(Key::User("alice"), 5)]).await.is_err());
        drop(held); // unsettled: given back in the background
        tokio::task::yield_now().await;
        for _ in 0..10 {
            if t.reserve(&[(Key::User("alice"), 5)]).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("dropped places were not given back");
    }
}
