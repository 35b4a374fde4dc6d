//! The expiry policy (idle timeout, absolute lifetime, sliding renewal) and
//! the session rules around it: remembered sessions, per-role timeouts and
//! the limit on a user's live sessions.

use std::collections::BTreeMap;
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

/// How many live sessions one user may hold, and what a new one past that
/// does ([`crate::SessionStore::create_limited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    /// Live sessions at most (at least 1).
    pub max: usize,
    /// What a session past `max` does.
    pub on_limit: OnLimit,
}

/// See [`SessionLimit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnLimit {
    /// The user's oldest sessions (by creation) end to make room.
    #[default]
    EvictOldest,
    /// The new session is refused ([`crate::StoreError::SessionLimit`]).
    Refuse,
}

/// What one role changes in the session rules; a user with several roles
/// gets the strictest value of each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoleRules {
    /// A shorter idle timeout (admins: 10 minutes).
    pub idle_timeout: Option<Duration>,
    /// A shorter absolute lifetime.
    pub absolute_lifetime: Option<Duration>,
    /// Fewer live sessions (0 is "unlimited", so it never makes a limit stricter).
    pub max_sessions: Option<usize>,
}

/// The session rules of a deployment: the expiry policy, the policy of
/// remembered sessions ("keep me signed in"), per-role overrides and the
/// limit on a user's live sessions (token families count). The engine
/// asks them for each session by its roles and remembered flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRules {
    /// Sessions signed in without "remember me".
    pub expiry: ExpiryPolicy,
    /// Remembered sessions; `None`: remember-me is off.
    pub remember: Option<ExpiryPolicy>,
    /// Live sessions per user at most; 0: unlimited.
    pub max_sessions: usize,
    /// What a session past the limit does.
    pub on_limit: OnLimit,
    /// Overrides by role name.
    pub roles: BTreeMap<String, RoleRules>,
}

impl Default for SessionRules {
    fn default() -> Self {
        Self::new(ExpiryPolicy::default())
    }
}

impl SessionRules {
    /// Rules with `expiry` for every session and nothing else.
    pub fn new(expiry: ExpiryPolicy) -> Self {
        Self {
            expiry,
            remember: None,
            max_sessions: 0,
            on_limit: OnLimit::EvictOldest,
            roles: BTreeMap::new(),
        }
    }

    /// The expiry policy of a session with `roles`, remembered or not: the
    /// remembered policy if asked for and on, made stricter by each role.
    /// The renewal threshold keeps its share of the idle timeout, so that a
    /// 14-day session is renewed when less than its last share remains,
    /// not in its last five minutes.
    pub fn expiry_for(&self, roles: &[String], remembered: bool) -> ExpiryPolicy {
        let base = match (remembered, self.remember) {
            (true, Some(remember)) => remember,
            _ => self.expiry,
        };
        let mut idle = base.idle_timeout;
        let mut absolute = base.absolute_lifetime;
        for rule in roles.iter().filter_map(|r| self.roles.get(r)) {
            idle = rule.idle_timeout.map_or(idle, |t| t.min(idle));
            absolute = rule.absolute_lifetime.map_or(absolute, |t| t.min(absolute));
        }
        // The common case, on every session check: nothing changed.
        if base == self.expiry && idle == base.idle_timeout && absolute == base.absolute_lifetime {
            return self.expiry;
        }
        let share = self.expiry.renewal_threshold.as_secs_f64()
            / self.expiry.idle_timeout.as_secs_f64().max(1e-3);
        ExpiryPolicy {
            idle_timeout: idle,
            absolute_lifetime: absolute,
            renewal_threshold: idle.mul_f64(share.clamp(0.0, 1.0)),
        }
    }

    /// The limit on the live sessions of a user with `roles`: the smallest
    /// positive of the deployment's and the roles'; `None`: unlimited.
    pub fn limit_for(&self, roles: &[String]) -> Option<SessionLimit> {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r)?.max_sessions)
            .chain([self.max_sessions])
            .filter(|&n| n > 0)
            .min()
            .map(|max| SessionLimit {
                max,
                on_limit: self.on_limit,
            })
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

    fn rules() -> SessionRules {
        let mut rules = SessionRules::new(ExpiryPolicy::default());
        rules.remember = Some(ExpiryPolicy {
            idle_timeout: Duration::from_secs(14 * 24 * 3600),
            absolute_lifetime: Duration::from_secs(30 * 24 * 3600),
            renewal_threshold: Duration::ZERO,
        });
        rules.max_sessions = 5;
        rules.roles.insert(
            "admin".into(),
            RoleRules {
                idle_timeout: Some(Duration::from_secs(600)),
                max_sessions: Some(2),
                ..RoleRules::default()
            },
        );
        rules.roles.insert(
            "auditor".into(),
            RoleRules {
                absolute_lifetime: Some(Duration::from_secs(3600)),
                max_sessions: Some(0),
                ..RoleRules::default()
            },
        );
        rules
    }

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn a_user_with_several_roles_gets_the_strictest_value_of_each() {
        let p = rules().expiry_for(&roles(&["user", "admin", "auditor"]), false);
        assert_eq!(p.idle_timeout, Duration::from_secs(600));
        assert_eq!(p.absolute_lifetime, Duration::from_secs(3600));
        assert_eq!(
            rules()
                .limit_for(&roles(&["auditor", "admin"]))
                .unwrap()
                .max,
            2
        );
        assert_eq!(rules().limit_for(&roles(&["auditor"])).unwrap().max, 5);
        assert_eq!(SessionRules::default().limit_for(&roles(&["user"])), None);
    }

    #[test]
    fn a_remembered_session_gets_the_long_policy_with_a_proportional_threshold() {
        let p = rules().expiry_for(&roles(&["user"]), true);
        assert_eq!(p.idle_timeout, Duration::from_secs(14 * 24 * 3600));
        // 5 of 30 minutes: a sixth of the idle timeout.
        assert_eq!(p.renewal_threshold, Duration::from_secs(14 * 24 * 3600 / 6));
        let mut off = rules();
        off.remember = None;
        assert_eq!(
            off.expiry_for(&roles(&["user"]), true),
            ExpiryPolicy::default()
        );
        // A role's shorter timeout still wins over remembering.
        let admin = rules().expiry_for(&roles(&["admin"]), true);
        assert_eq!(admin.idle_timeout, Duration::from_secs(600));
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
