//! Security events (sign-ins, failures, throttling, refresh-token reuse,
//! revocations, administrators' actions) kept in the store as one bounded
//! log (`[observability] security_events_kept`, the newest 10 000 by
//! default), shared by every node, for the admin console and the service
//! API.
//!
//! Recording never slows a request: [`Events::record`] puts the event on a
//! bounded channel and returns; one task per server writes what arrived in
//! batches (at most every [`FLUSH_EVERY`], or at [`BATCH`] events). If the
//! channel is full or the store refuses a batch, events are dropped and
//! counted (`sessiond_security_events_dropped_total`): the log is a view
//! for people, and the `sessiond::security` log target still has every
//! event.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessiond_core::{Backend, Clock, StoreError};
use tokio::sync::mpsc;
use utoipa::ToSchema;

/// Events a batch holds at most.
pub const BATCH: usize = 256;
/// How long an event waits for its batch at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Events waiting for a batch at most; more are dropped.
const QUEUE: usize = 4096;

/// One security event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecurityEvent {
    /// Unix milliseconds.
    pub at: u64,
    /// What happened: `login_succeeded`, `login_failed`, `login_throttled`,
    /// `logout`, `reauthenticated`, `password_changed`, `session_revoked`,
    /// `revoke_others`, `refresh_token_reused`, `admin_*`…
    pub kind: String,
    /// Whose account it concerns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Who did it, when not the user (an administrator, a service key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The client's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// More, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl SecurityEvent {
    /// An event of `kind` about `user` (at the time the recorder stamps).
    pub fn new(kind: &str, user: Option<&str>) -> Self {
        Self {
            at: 0,
            kind: kind.to_owned(),
            user: user.map(str::to_owned),
            actor: None,
            ip: None,
            detail: None,
        }
    }

    /// Done by `actor` (not the user).
    #[must_use]
    pub fn by(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_owned());
        self
    }

    /// From the client address `ip`.
    #[must_use]
    pub fn from_ip(mut self, ip: impl ToString) -> Self {
        self.ip = Some(ip.to_string());
        self
    }

    /// With more for people.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The event a refused sign-in leaves: wrong credentials (for the name
/// that was tried) or throttled; none for other failures (a busy hasher,
/// a store that did not answer).
pub fn sign_in_refused(
    name: &str,
    ip: std::net::IpAddr,
    e: &crate::accounts::AccountError,
) -> Option<SecurityEvent> {
    use crate::accounts::AccountError;
    let kind = match e {
        AccountError::InvalidCredentials => "login_failed",
        AccountError::Throttled { .. } => "login_throttled",
        _ => return None,
    };
    // A name is at most 128 characters when real; a longer one is cut.
    let name: String = name.chars().take(128).collect();
    Some(SecurityEvent::new(kind, Some(&name)).from_ip(ip))
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only about this user.
    pub user: Option<String>,
    /// Only of this kind (a trailing `*` matches a prefix: `admin_*`).
    pub kind: Option<String>,
}

impl EventFilter {
    fn admits(&self, e: &SecurityEvent) -> bool {
        let user_ok = self
            .user
            .as_ref()
            .is_none_or(|u| e.user.as_deref() == Some(u) || e.actor.as_deref() == Some(u));
        let kind_ok = self
            .kind
            .as_ref()
            .is_none_or(|k| match k.strip_suffix('*') {
                Some(prefix) => e.kind.starts_with(prefix),
                None => e.kind == *k,
            });
        user_ok && kind_ok
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<SecurityEvent>,
    store: Arc<dyn Backend>,
    clock: Arc<dyn Clock>,
    keep: usize,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").field("keep", &self.keep).finish()
    }
}

impl Events {
    /// A recorder into `store`'s log (keeping the newest `keep`), with its
    /// writer task on the current runtime.
    pub fn start(store: Arc<dyn Backend>, clock: Arc<dyn Clock>, keep: usize) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(rx, store.clone(), keep));
        Self {
            tx,
            store,
            clock,
            keep,
        }
    }

    /// Records `event` now, without waiting.
    pub fn record(&self, mut event: SecurityEvent) {
        event.at = self.clock.now();
        if self.tx.try_send(event).is_err() {
            metrics::counter!(sessiond_core::metric::SECURITY_EVENTS_DROPPED).increment(1);
        }
    }

    /// The newest events that pass `filter`, newest first, at most `limit`,
    /// from the newest `keep` the store holds.
    pub async fn recent(
        &self,
        filter: &EventFilter,
        limit: usize,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let raw = self.store.recent_events(self.keep).await?;
        Ok(raw
            .iter()
            .filter_map(|bytes| serde_json::from_slice::<SecurityEvent>(bytes).ok())
            .filter(|e| filter.admits(e))
            .take(limit)
            .collect())
    }
}

async fn write_batches(
    mut rx: mpsc::Receiver<SecurityEvent>,
    store: Arc<dyn Backend>,
    keep: usize,
) {
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH);
    loop {
        // Wait for the first event, then gather for at most FLUSH_EVERY.
        let Some(first) = rx.recv().await else { return };
        batch.push(encode(&first));
        let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(encode(&e)),
                Ok(None) | Err(_) => break,
            }
        }
        if let Err(e) = store.append_events(&batch, keep).await {
            tracing::warn!(error = %e, dropped = batch.len(), "security events could not be stored");
            metrics::counter!(sessiond_core::metric::SECURITY_EVENTS_DROPPED)
                .increment(batch.len() as u64);
        }
        batch.clear();
    }
}

fn encode(e: &SecurityEvent) -> Vec<u8> {
    serde_json::to_vec(e).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_matches_the_user_or_the_actor_and_a_kind_or_its_prefix() {
        let e = SecurityEvent::new("admin_roles_changed", Some("alice")).by("root");
        let f = |user: Option<&str>, kind: Option<&str>| EventFilter {
            user: user.map(str::to_owned),
            kind: kind.map(str::to_owned),
        };
        assert!(f(Some("alice"), None).admits(&e));
        assert!(f(Some("root"), Some("admin_*")).admits(&e));
        assert!(!f(Some("bob"), None).admits(&e));
        assert!(!f(None, Some("login_failed")).admits(&e));
    }
}
