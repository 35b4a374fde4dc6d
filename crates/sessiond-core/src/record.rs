//! What a store keeps for one session.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::Millis;

/// The attribute that marks a remembered session ("keep me signed in"):
/// it gets the remembered expiry policy and a persistent cookie.
/// Attributes under `sessiond.` are the server's own: the attribute APIs
/// neither show nor accept them.
pub const REMEMBERED_ATTRIBUTE: &str = "sessiond.remember";
/// The attribute that holds when the user last proved their password for
/// this session (Unix ms): at sign-in, and at each re-authentication.
pub const AUTH_TIME_ATTRIBUTE: &str = "sessiond.auth_time";

/// Where a session was created from, for the "your devices" view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientMeta {
    /// The client's IP address as the server saw it.
    pub ip: Option<String>,
    /// The `User-Agent` header, truncated by the server.
    pub user_agent: Option<String>,
}

/// One session as stored.
///
/// Times are milliseconds since the Unix epoch. `attributes` holds the
/// application's own data, one value per name; stores update it field by
/// field ([`AttributeChange`]) so that concurrent requests changing
/// different names never overwrite each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The user this session authenticates.
    pub user_id: String,
    /// The user's roles when the session was created or last cycled.
    pub roles: Vec<String>,
    /// When the session was created.
    pub created_at: Millis,
    /// When the session was last renewed (accurate to the renewal threshold:
    /// renewal, not every request, writes it).
    pub last_seen: Millis,
    /// The session ends at this time unless it is renewed first.
    pub idle_expires_at: Millis,
    /// The session ends at this time whatever happens.
    pub absolute_expires_at: Millis,
    /// The per-session secret CSRF tokens are checked against.
    pub csrf_secret: String,
    /// Client metadata for the device list.
    pub client: ClientMeta,
    /// Application attributes.
    pub attributes: BTreeMap<String, String>,
    /// Incremented by every write; lets a caller detect a concurrent change.
    pub version: u64,
}

impl SessionRecord {
    /// Whether the session is still live at `now`.
    pub fn is_live(&self, now: Millis) -> bool {
        now < self.idle_expires_at && now < self.absolute_expires_at
    }

    /// When the session ends if nothing renews it.
    pub fn expires_at(&self) -> Millis {
        self.idle_expires_at.min(self.absolute_expires_at)
    }

    /// Whether the user asked to stay signed in ([`REMEMBERED_ATTRIBUTE`]).
    pub fn remembered(&self) -> bool {
        self.attributes.contains_key(REMEMBERED_ATTRIBUTE)
    }

    /// When the user last proved their password for this session: the
    /// [`AUTH_TIME_ATTRIBUTE`], or the creation time for sessions made
    /// before it existed.
    pub fn auth_time(&self) -> Millis {
        self.attributes
            .get(AUTH_TIME_ATTRIBUTE)
            .and_then(|v| v.parse().ok())
            .unwrap_or(self.created_at)
    }

    /// Whether the session has the given role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Records a renewal: the new idle expiry, seen at `now`, one version more.
    pub fn apply_renewal(&mut self, idle_expires_at: Millis, now: Millis) {
        self.idle_expires_at = idle_expires_at;
        self.last_seen = now;
        self.version += 1;
    }

    /// Applies field-level attribute changes (`None` removes) and counts one
    /// version; returns the new version.
    pub fn apply_attribute_changes(&mut self, changes: &[AttributeChange]) -> u64 {
        for change in changes {
            match &change.value {
                Some(v) => self.attributes.insert(change.name.clone(), v.clone()),
                None => self.attributes.remove(&change.name),
            };
        }
        self.version += 1;
        self.version
    }
}

/// How much a session may hold in attributes: a count and a total of name
/// and value bytes. Every store checks it in the same atomic step as the
/// write, so a burst of concurrent updates cannot overrun it, and an update
/// that would is refused whole ([`crate::StoreError::TooLarge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeBudget {
    /// Attributes per session.
    pub max_count: usize,
    /// Bytes of names and values per session.
    pub max_bytes: usize,
}

impl Default for AttributeBudget {
    /// 64 attributes, 16 KiB.
    fn default() -> Self {
        Self {
            max_count: 64,
            max_bytes: 16 * 1024,
        }
    }
}

impl AttributeBudget {
    /// Whether `attributes` with `changes` applied stay within the budget.
    pub fn admits(
        &self,
        attributes: &BTreeMap<String, String>,
        changes: &[AttributeChange],
    ) -> bool {
        let mut after: BTreeMap<&str, usize> = attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.len()))
            .collect();
        for c in changes {
            match &c.value {
                Some(v) => after.insert(c.name.as_str(), v.len()),
                None => after.remove(c.name.as_str()),
            };
        }
        let bytes: usize = after.iter().map(|(k, v)| k.len() + v).sum();
        after.len() <= self.max_count && bytes <= self.max_bytes
    }
}

/// One field-level change to a session's attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// The attribute's name.
    pub name: String,
    /// The new value, or `None` to remove the attribute.
    pub value: Option<String>,
}

impl AttributeChange {
    /// Sets `name` to `value`.
    pub fn set(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: Some(value.into()),
        }
    }

    /// Removes `name`.
    pub fn remove(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: None,
        }
    }
}

/// A user account as the server stores it, next to the sessions so that every
/// node sharing a store sees the same users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The login name (also the sessions' `user_id`).
    pub name: String,
    /// The password's argon2id hash in PHC string form.
    pub password_hash: String,
    /// The user's roles; the first is the primary role.
    pub roles: Vec<String>,
    /// When the account was created.
    pub created_at: Millis,
    /// When the account (for example its password) last changed.
    pub updated_at: Millis,
    /// A disabled account cannot sign in (its sessions were ended when it
    /// was disabled). Absent in records written before it existed: enabled.
    #[serde(default)]
    pub disabled: bool,
}
