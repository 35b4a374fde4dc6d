//! Access tokens and refresh-token families: two systems on one clock
//! (the session engine's, so both run on a manual clock in tests).
//!
//! - `ring.rs`: [`TokenService`], the signing key ring shared through the
//!   store, access-token issuance and verification.
//! - `refresh.rs`: [`RefreshFamilies`], refresh tokens as server-side
//!   sessions: rotation, the grace window, theft detection.
//!
//! **Key ring.** One ring per deployment, kept in the store as the setting
//! [`KEY_RING`], so every node sharing the store signs and verifies with the
//! same keys. Changes (first key, rotation, pruning) are compare-and-set, so
//! two nodes rotating at once cannot both win. Nodes re-read the ring every
//! minute and at once (at most once a second) when a token names a `kid`
//! they do not hold: a rotation on one node is never a 401 on another.
//!
//! **Refresh families.** A refresh token is `<sid>.<secret>`: the public
//! handle of a server-side session made for the token family, and 256 random
//! bits of which the store holds only a SHA-256. Refreshing replaces the
//! secret with a versioned attribute write (two concurrent refreshes cannot
//! both rotate). The previous secret stays valid for a short grace window and
//! then returns the *same* successor, sealed in the store under a key derived
//! from the previous secret (so a store dump does not reveal it). A spent
//! secret presented after the grace window is theft: the family (the session)
//! is deleted. Logout, revoke-all and password changes delete sessions, and
//! so end families, at once.

mod refresh;
mod ring;

use std::time::Duration;

use sessiond_core::StoreError;
use sessiond_jwt::{Algorithm, KeyEncryptionKey, KeyError, Rules};

pub use refresh::{RESERVED_PREFIX, RefreshFamilies, RefreshToken, Refreshed, is_family};
pub use ring::{KEY_RING, TokenService};

/// Token settings, from the server configuration.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Algorithm of new keys.
    pub algorithm: Algorithm,
    /// Issuer and audience of issued tokens, and the verification rules.
    pub rules: Rules,
    /// Access-token lifetime.
    pub access_ttl: Duration,
    /// How long a just-spent refresh token still yields the same successor.
    pub refresh_grace: Duration,
    /// Rotate the signing key when it is this old; `None`: only by command.
    pub rotate_after: Option<Duration>,
    /// Seals the key ring before it goes into the store; `None`: stored in
    /// the clear (fine for a store only this host can read).
    pub encryption: Option<KeyEncryptionKey>,
    /// The key-encryption key being replaced: a ring sealed with it still
    /// opens, and is sealed again with `encryption`.
    pub previous_encryption: Option<KeyEncryptionKey>,
}

/// Errors of the token machinery.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be made or read.
    #[error(transparent)]
    Key(#[from] KeyError),
}
