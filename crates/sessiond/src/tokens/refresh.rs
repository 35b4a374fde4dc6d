//! Refresh families: a refresh token is `<sid>.<secret>`, the public handle
//! of a server-side session made for the family and 256 random bits of
//! which the store holds only a SHA-256. See the module docs of `tokens`.
//!
//! Kept in the server rather than a library crate: a family is a session
//! plus attributes only this server's token routes read, and an embedder
//! who wants refresh tokens also needs the key ring, issuance and the
//! revocation endpoint, which is this server. If embedders ask, the whole
//! `tokens` module moves into a `sessiond-tokens` crate as one piece.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sessiond_core::token::secrets_equal;
use sessiond_core::{
    AttributeChange, ClientMeta, NewSession, SessionKey, SessionManager, StoreError, StoredSession,
};
use sessiond_jwt::KeyError;
use sha2::{Digest, Sha256};

use super::TokenError;

/// Attribute names of a token family's session. The cookie APIs cannot
/// reach them: a family's session token is never handed out.
mod attr {
    /// "token": this session is a refresh family.
    pub(super) const KIND: &str = "sessiond.kind";
    /// SHA-256 of the current secret.
    pub(super) const CURRENT: &str = "sessiond.rt.cur";
    /// SHA-256 of the previous secret.
    pub(super) const PREVIOUS: &str = "sessiond.rt.prev";
    /// When the previous secret was spent (ms).
    pub(super) const ROTATED_AT: &str = "sessiond.rt.at";
    /// The current secret sealed under the previous one (for the grace window).
    pub(super) const SEALED_NEXT: &str = "sessiond.rt.next";
    /// Truncated hashes of spent secrets, newest last (theft detection).
    pub(super) const SPENT: &str = "sessiond.rt.spent";
}

/// Attribute names under this prefix are the server's own (a family's
/// state); the attribute API refuses them.
pub const RESERVED_PREFIX: &str = "sessiond.";

/// How many spent secrets a family remembers: a replay of any of them is
/// recognised as theft; older ones are just invalid.
const SPENT_HISTORY: usize = 32;

/// A refresh token: a family's session handle and a secret.
#[derive(Clone)]
pub struct RefreshToken {
    /// The family's session.
    pub key: SessionKey,
    secret: [u8; 32],
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshToken")
            .field("sid", &self.key.handle())
            .finish_non_exhaustive()
    }
}

fn random32() -> Result<[u8; 32], TokenError> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| KeyError::Generate(e.to_string()))?;
    Ok(secret)
}

fn digest(secret: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret))
}

/// A one-time pad from the previous secret: only its holder can open the seal.
fn pad(previous: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sessiond refresh successor\0");
    h.update(previous);
    h.finalize().into()
}

fn seal(previous: &[u8; 32], next: &[u8; 32]) -> String {
    let pad = pad(previous);
    let sealed: Vec<u8> = next.iter().zip(pad).map(|(a, b)| a ^ b).collect();
    URL_SAFE_NO_PAD.encode(sealed)
}

fn open(previous: &[u8; 32], sealed: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if URL_SAFE_NO_PAD.decode_slice(sealed, &mut bytes) != Ok(32) {
        return None;
    }
    for (b, p) in bytes.iter_mut().zip(pad(previous)) {
        *b ^= p;
    }
    Some(bytes)
}

/// The first 16 bytes of a digest, as kept in the spent list.
fn short(digest: &str) -> &str {
    digest.get(..22).unwrap_or(digest)
}

impl RefreshToken {
    /// Parses `<sid>.<secret>`.
    pub fn parse(text: &str) -> Option<Self> {
        let (sid, secret) = text.split_once('.')?;
        let key = SessionKey::from_handle(sid).ok()?;
        let mut bytes = [0u8; 32];
        if secret.len() != 43 || URL_SAFE_NO_PAD.decode_slice(secret, &mut bytes) != Ok(32) {
            return None;
        }
        Some(Self { key, secret: bytes })
    }

    /// The token as the client receives it.
    pub fn expose(&self) -> String {
        format!(
            "{}.{}",
            self.key.handle(),
            URL_SAFE_NO_PAD.encode(self.secret)
        )
    }
}

/// Whether a session record with these attributes is a token family (not
/// a browser's session).
pub fn is_family(attributes: &BTreeMap<String, String>) -> bool {
    Family::of(attributes).is_some()
}

/// A refresh family's attributes, read from its session record.
struct Family<'a>(&'a BTreeMap<String, String>);

impl<'a> Family<'a> {
    /// `None` unless the session was made for a token family.
    fn of(attributes: &'a BTreeMap<String, String>) -> Option<Self> {
        (attributes.get(attr::KIND).map(String::as_str) == Some("token"))
            .then_some(Self(attributes))
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        self.0.get(name).map(String::as_str)
    }

    /// Whether attribute `name` holds `digest` (constant time).
    fn holds(&self, name: &str, digest: &str) -> bool {
        self.get(name)
            .is_some_and(|d| secrets_equal(d.as_bytes(), digest.as_bytes()))
    }

    /// Whether `digest` is one of the remembered spent secrets (the previous
    /// one included: each rotation adds the secret it spends).
    fn was_spent(&self, digest: &str) -> bool {
        self.get(attr::SPENT).is_some_and(|list| {
            list.split(',')
                .any(|s| secrets_equal(s.as_bytes(), short(digest).as_bytes()))
        })
    }
}

/// What presenting a refresh token led to.
#[derive(Debug)]
pub enum Refreshed {
    /// A new refresh token (the presented one is spent), for this user.
    Rotated {
        /// The successor.
        token: RefreshToken,
        /// The user.
        user: String,
        /// The user's roles.
        roles: Vec<String>,
        /// `true` when this is the successor an earlier concurrent refresh
        /// already made (the grace window), not a new one.
        replayed: bool,
    },
    /// A spent token came back after the grace window: the family was revoked.
    Theft {
        /// Whose family.
        user: String,
    },
    /// Unknown, expired or revoked.
    Invalid,
}

impl Refreshed {
    /// The family of `presented` continues with secret `next`.
    fn successor(
        presented: &RefreshToken,
        next: [u8; 32],
        record: &sessiond_core::SessionRecord,
        replayed: bool,
    ) -> Self {
        Refreshed::Rotated {
            token: RefreshToken {
                key: presented.key,
                secret: next,
            },
            user: record.user_id.clone(),
            roles: record.roles.clone(),
            replayed,
        }
    }
}

/// Refresh families over the session engine (and so on its clock).
#[derive(Clone)]
pub struct RefreshFamilies {
    sessions: SessionManager,
    grace: Duration,
}

impl std::fmt::Debug for RefreshFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshFamilies")
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl RefreshFamilies {
    /// Families kept as sessions of `sessions`; a just-spent token still
    /// yields the same successor for `grace`.
    pub fn new(sessions: SessionManager, grace: Duration) -> Self {
        Self { sessions, grace }
    }

    /// Starts a family for `user`: its session and its first refresh token.
    pub async fn start(
        &self,
        user: &str,
        roles: &[String],
        client: ClientMeta,
    ) -> Result<(StoredSession, RefreshToken), TokenError> {
        let secret = random32()?;
        let attributes = BTreeMap::from([
            (attr::KIND.to_owned(), "token".to_owned()),
            (attr::CURRENT.to_owned(), digest(&secret)),
        ]);
        let new = NewSession {
            user_id: user.to_owned(),
            roles: roles.to_vec(),
            client,
            attributes,
            // A family lives by the refresh token's own rotation.
            remember: false,
        };
        let (_, family) = self.sessions.create(new).await?;
        let token = RefreshToken {
            key: family.key,
            secret,
        };
        Ok((family, token))
    }

    /// The family's session when `presented` is its current refresh token
    /// (introspection: nothing is rotated, a spent token is simply not
    /// active).
    pub async fn current(
        &self,
        presented: &RefreshToken,
    ) -> Result<Option<sessiond_core::StoredSession>, TokenError> {
        let Some(verified) = self.sessions.verify_key(presented.key).await? else {
            return Ok(None);
        };
        let live = Family::of(&verified.session.record.attributes)
            .is_some_and(|family| family.holds(attr::CURRENT, &digest(&presented.secret)));
        Ok(live.then_some(verified.session))
    }

    /// Spends `presented` and returns its successor; see the module docs.
    pub async fn refresh(&self, presented: &RefreshToken) -> Result<Refreshed, TokenError> {
        let (sessions, grace) = (&self.sessions, self.grace);
        let presented_digest = digest(&presented.secret);
        for _ in 0..4 {
            let Some(verified) = sessions.verify_key(presented.key).await? else {
                return Ok(Refreshed::Invalid);
            };
            let record = verified.session.record;
            let Some(family) = Family::of(&record.attributes) else {
                return Ok(Refreshed::Invalid);
            };
            if family.holds(attr::CURRENT, &presented_digest) {
                let next = random32()?;
                let mut spent: Vec<&str> = family
                    .get(attr::SPENT)
                    .map(|s| s.split(',').filter(|p| !p.is_empty()).collect())
                    .unwrap_or_default();
                spent.push(short(&presented_digest));
                let skip = spent.len().saturating_sub(SPENT_HISTORY);
                let spent = spent[skip..].join(",");
                let changes = [
                    AttributeChange::set(attr::CURRENT, digest(&next)),
                    AttributeChange::set(attr::PREVIOUS, presented_digest.clone()),
                    AttributeChange::set(attr::ROTATED_AT, sessions.now().to_string()),
                    AttributeChange::set(attr::SEALED_NEXT, seal(&presented.secret, &next)),
                    AttributeChange::set(attr::SPENT, spent),
                ];
                match sessions
                    .update_attributes(&presented.key, &changes, Some(record.version))
                    .await
                {
                    Ok(_) => return Ok(Refreshed::successor(presented, next, &record, false)),
                    // A concurrent refresh won: read again, we are probably in its grace window.
                    Err(StoreError::Conflict) => continue,
                    Err(StoreError::NotFound) => return Ok(Refreshed::Invalid),
                    Err(e) => return Err(e.into()),
                }
            }
            let rotated_at: u64 = family
                .get(attr::ROTATED_AT)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
            if family.holds(attr::PREVIOUS, &presented_digest)
                && sessions.now() <= rotated_at.saturating_add(grace_ms)
                && let Some(next) = family
                    .get(attr::SEALED_NEXT)
                    .and_then(|s| open(&presented.secret, s))
            {
                return Ok(Refreshed::successor(presented, next, &record, true));
            }
            if family.was_spent(&presented_digest) {
                sessions.delete(&presented.key).await?;
                return Ok(Refreshed::Theft {
                    user: record.user_id.clone(),
                });
            }
            return Ok(Refreshed::Invalid);
        }
        Err(StoreError::Conflict.into())
    }

    /// Ends the family of `presented` if the token is (or was) one of its
    /// secrets. `true` if a session was deleted.
    pub async fn revoke(&self, presented: &RefreshToken) -> Result<bool, TokenError> {
        let sessions = &self.sessions;
        let now = sessions.now();
        let Some(record) = sessions.store().load(&presented.key, now).await? else {
            return Ok(false);
        };
        let d = digest(&presented.secret);
        let known = Family::of(&record.attributes)
            .is_some_and(|f| f.holds(attr::CURRENT, &d) || f.was_spent(&d));
        if !known {
            return Ok(false);
        }
        Ok(sessions.delete(&presented.key).await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sessiond_core::{ExpiryPolicy, ManualClock, MemoryStore};

    use super::*;

    fn families() -> (RefreshFamilies, ManualClock) {
        let clock = ManualClock::starting_now();
        let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default())
            .with_clock(Arc::new(clock.clone()));
        (
            RefreshFamilies::new(sessions, Duration::from_secs(5)),
            clock,
        )
    }

    fn rotated(r: Refreshed) -> (RefreshToken, bool) {
        match r {
            Refreshed::Rotated {
                token, replayed, ..
            } => (token, replayed),
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_spent_token_yields_the_same_successor_inside_the_grace_window_and_revokes_after_it()
    {
        let (families, clock) = families();
        let (_, first) = families
            .start("alice", &["user".into()], ClientMeta::default())
            .await
            .expect("started");
        let (second, replayed) = rotated(families.refresh(&first).await.expect("refreshed"));
        assert!(!replayed);

        clock.advance(Duration::from_secs(4));
        let (again, replayed) = rotated(families.refresh(&first).await.expect("in grace"));
        assert!(replayed);
        assert_eq!(again.expose(), second.expose(), "the same successor");

        clock.advance(Duration::from_secs(2));
        assert!(matches!(
            families.refresh(&first).await.expect("answered"),
            Refreshed::Theft { .. }
        ));
        assert!(
            matches!(
                families.refresh(&second).await.expect("answered"),
                Refreshed::Invalid
            ),
            "theft ended the whole family"
        );
    }
}
