//! Rate limits: the generic cell rate algorithm (GCRA), as one pure step
//! ([`gcra`]) that the in-process limiter ([`LocalRates`]) and the Redis
//! store's script both apply, so a limit answers the same (allowed,
//! remaining, retry after) whichever store holds it.
//!
//! GCRA keeps one number per key, the theoretical arrival time (TAT) of the
//! next request at the steady rate. A request is allowed while the TAT is at
//! most `burst - 1` intervals ahead of now, and moves it one interval on.
//! Why not `governor` for the in-process side: its state cannot be mirrored
//! in a Lua script (nanoseconds since its own start, internal to the crate),
//! and the two must agree to the microsecond for `RateLimit` headers to mean
//! the same on every store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// `limit` requests per `period`, in bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Requests per period at the steady rate.
    pub limit: u32,
    /// The period.
    pub period: Duration,
    /// Requests allowed at once from an idle start (at least 1).
    pub burst: u32,
}

/// Why a rate cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rate is N/s, N/m or N/h with N ≥ 1 (and a burst ≥ 1), not {0:?}")]
pub struct RateError(pub String);

impl Rate {
    /// Reads `"100/s"`, `"20/m"`, `"1000/h"`, with `burst` (`None`: the limit).
    pub fn parse(text: &str, burst: Option<u32>) -> Result<Self, RateError> {
        let bad = || RateError(text.to_owned());
        let (n, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let limit: u32 = n.trim().parse().map_err(|_| bad())?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        let burst = burst.unwrap_or(limit);
        if limit == 0 || burst == 0 {
            return Err(bad());
        }
        Ok(Self {
            limit,
            period,
            burst,
        })
    }

    /// The steady interval between requests, microseconds (at least 1).
    pub fn emission_us(&self) -> u64 {
        (u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX) / u64::from(self.limit)).max(1)
    }

    /// How far ahead of now the TAT may be for a request to pass, microseconds.
    pub fn tolerance_us(&self) -> u64 {
        self.emission_us()
            .saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateOutcome {
    /// Whether it passes.
    pub allowed: bool,
    /// Requests that would pass right after this one.
    pub remaining: u32,
    /// Until the limit is back to a full burst.
    pub reset: Duration,
    /// Until the next request can pass (zero when allowed).
    pub retry_after: Duration,
}

/// One GCRA step for a key whose stored TAT is `tat` (`None`: never seen or
/// expired), at `now` (microseconds): the outcome and the TAT to store
/// (`None`: unchanged, the request was refused).
pub fn gcra(tat: Option<u64>, now: u64, rate: &Rate) -> (RateOutcome, Option<u64>) {
    let (t, tau) = (rate.emission_us(), rate.tolerance_us());
    let tat = tat.unwrap_or(now).max(now);
    if tat - now > tau {
        let outcome = RateOutcome {
            allowed: false,
            remaining: 0,
            reset: Duration::from_micros(tat - now),
            retry_after: Duration::from_micros(tat - now - tau),
        };
        return (outcome, None);
    }
    let new = tat + t;
    let remaining = (now + tau + t).saturating_sub(new) / t;
    let outcome = RateOutcome {
        allowed: true,
        remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        reset: Duration::from_micros(new - now),
        retry_after: Duration::ZERO,
    };
    (outcome, Some(new))
}

/// Microseconds since the Unix epoch, for [`gcra`].
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Rate limits kept in this process (stores that do not share them: the
/// memory and file stores, one node). Keys whose TAT has passed are the
/// same as absent, so they are dropped when the map grows.
#[derive(Debug, Default)]
pub struct LocalRates {
    /// The TATs, and the size at which expired ones are next dropped.
    tats: Mutex<(HashMap<String, u64>, usize)>,
}

/// Expired keys are dropped once the map reaches this many keys, then
/// again at twice the size left after each pass, so that a flood of live
/// keys costs one pass per doubling, not one per request.
const PRUNE_AT: usize = 100_000;

impl LocalRates {
    /// An empty set of limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// One request for `key` under `rate`, now.
    pub fn step(&self, key: &str, rate: &Rate) -> RateOutcome {
        self.step_at(key, rate, now_us())
    }

    /// [`LocalRates::step`] at `now` (microseconds).
    pub fn step_at(&self, key: &str, rate: &Rate, now: u64) -> RateOutcome {
        let mut guard = self
            .tats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tats, prune_at) = &mut *guard;
        let (outcome, new) = gcra(tats.get(key).copied(), now, rate);
        if let Some(new) = new {
            if tats.len() >= (*prune_at).max(PRUNE_AT) && !tats.contains_key(key) {
                tats.retain(|_, tat| *tat > now);
                *prune_at = tats.len() * 2;
            }
            tats.insert(key.to_owned(), new);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_requests_pass_at_the_steady_rate() {
        let rate = Rate::parse("10/s", Some(3)).unwrap();
        let local = LocalRates::new();
        let t0 = 1_000_000_000;
        let passed: Vec<u32> = (0..3)
            .map(|_| local.step_at("k", &rate, t0))
            .map(|o| o.remaining)
            .collect();
        assert_eq!(passed, [2, 1, 0]);
        let refused = local.step_at("k", &rate, t0);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert!(!local.step_at("k", &rate, t0 + 99_999).allowed);
        assert!(local.step_at("k", &rate, t0 + 100_000).allowed);
        // Another key has its own budget.
        assert!(local.step_at("other", &rate, t0).allowed);
        // Idle for a second: a full burst again.
        let back = local.step_at("k", &rate, t0 + 2_000_000);
        assert_eq!((back.allowed, back.remaining), (true, 2));
    }

    #[test]
    fn keys_whose_time_has_passed_are_dropped_once_the_map_is_full() {
        let rate = Rate::parse("1000/s", Some(1)).unwrap();
        let local = LocalRates::new();
        let t0 = 1_000_000_000;
        for i in 0..PRUNE_AT {
            local.step_at(&format!("k{i}"), &rate, t0);
        }
        // A second later every key has passed its TAT: the next new key
        // drops them all, and the map starts again small.
        local.step_at("new", &rate, t0 + 1_000_000);
        let guard = local.tats.lock().unwrap();
        assert_eq!(guard.0.len(), 1);
        assert_eq!(guard.1, 0, "the next pass waits for the map to double");
    }

    #[test]
    fn rates_are_read_from_text() {
        assert_eq!(
            Rate::parse("100/s", Some(200)).unwrap(),
            Rate {
                limit: 100,
                period: Duration::from_secs(1),
                burst: 200
            }
        );
        assert_eq!(Rate::parse("20/m", None).unwrap().burst, 20);
        for bad in ["", "100", "0/s", "10/d", "x/s", "-1/s"] {
            assert!(Rate::parse(bad, None).is_err(), "{bad}");
        }
        assert!(Rate::parse("1/s", Some(0)).is_err());
    }
}
