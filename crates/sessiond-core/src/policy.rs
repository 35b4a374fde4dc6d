//! The expiry policy: idle timeout, absolute lifetime, sliding renewal.

use std::time::Duration;

use crate::record::SessionRecord;
use crate::time::{Millis, millis};

/// How long sessions live and when they are renewed.
///
/// A session ends at whichever comes first: `idle_timeout` after it was last
/// renewed, or `absolute_lifetime` after it was created. A request extends
/// the idle expiry only when less than `renewal_threshold` of it remains, so
/// a busy session costs at most one store write per threshold window, never
/// one per request, and never lives past its absolute lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryPolicy {
    /// Idle timeout (default 30 minutes).
    pub idle_timeout: Duration,
    /// Absolute lifetime (default 12 hours).
    pub absolute_lifetime: Duration,
    /// Renew only when less than this remains of the idle timeout (default 5 minutes).
    pub renewal_threshold: Duration,
}

impl Default for ExpiryPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_lifetime: Duration::from_secs(12 * 60 * 60),
            renewal_threshold: Duration::from_secs(5 * 60),
        }
    }
}

impl ExpiryPolicy {
    /// The idle expiry for a session created at `now`.
    pub fn initial_idle_expiry(&self, now: Millis) -> Millis {
        self.renewed_idle_expiry(now, self.absolute_expiry(now))
    }

    /// The absolute expiry for a session created at `now`.
    pub fn absolute_expiry(&self, now: Millis) -> Millis {
        now.saturating_add(millis(self.absolute_lifetime))
    }

    /// The idle expiry a renewal at `now` sets, capped by the absolute expiry.
    pub fn renewed_idle_expiry(&self, now: Millis, absolute_expires_at: Millis) -> Millis {
        now.saturating_add(millis(self.idle_timeout))
            .min(absolute_expires_at)
    }

    /// Whether a renewal at `now` is due: the session is live, less than the
    /// threshold remains, and renewing would actually move the expiry.
    pub fn needs_renewal(&self, record: &SessionRecord, now: Millis) -> bool {
        self.renewal_due(record.idle_expires_at, record.absolute_expires_at, now)
    }

    /// [`ExpiryPolicy::needs_renewal`] on the two expiry times alone, for
    /// stores that decide inside an atomic step.
    pub fn renewal_due(
        &self,
        idle_expires_at: Millis,
        absolute_expires_at: Millis,
        now: Millis,
    ) -> bool {
        now < idle_expires_at
            && now < absolute_expires_at
            && idle_expires_at.saturating_sub(now) < millis(self.renewal_threshold)
            && self.renewed_idle_expiry(now, absolute_expires_at) > idle_expires_at
    }

    /// The threshold, idle timeout and lifetime in milliseconds.
    pub fn threshold_millis(&self) -> Millis {
        millis(self.renewal_threshold)
    }

    /// The idle timeout in milliseconds.
    pub fn idle_millis(&self) -> Millis {
        millis(self.idle_timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Millis = 60_000;

    #[test]
    fn renewal_is_due_only_under_the_threshold() {
        let p = ExpiryPolicy::default();
        let now = 1_000_000;
        let abs = p.absolute_expiry(now);
        let idle = p.initial_idle_expiry(now);
        assert_eq!(idle, now + 30 * MIN);
        assert!(!p.renewal_due(idle, abs, now + 24 * MIN));
        assert!(p.renewal_due(idle, abs, now + 26 * MIN));
        assert!(
            !p.renewal_due(idle, abs, now + 30 * MIN),
            "expired sessions are not renewed"
        );
    }

    #[test]
    fn renewal_never_passes_the_absolute_expiry() {
        let p = ExpiryPolicy::default();
        let abs = 100 * MIN;
        assert_eq!(p.renewed_idle_expiry(90 * MIN, abs), abs);
        // Already capped: renewing would not move anything, so it is not due.
        assert!(!p.renewal_due(abs, abs, abs - MIN));
    }
}
