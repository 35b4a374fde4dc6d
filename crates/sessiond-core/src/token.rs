//! Session tokens (the secret in the cookie) and session keys (what stores index by).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length in bytes of a session token's random part: 256 bits.
pub const TOKEN_BYTES: usize = 32;
/// Length of a token's text form: base64url of 32 bytes, no padding.
pub const TOKEN_TEXT_LEN: usize = 43;

/// Why a presented token was refused before any store lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The text is not 43 characters of base64url.
    #[error("malformed session token")]
    Malformed,
}

/// The secret a client holds: 256 bits from the operating system's CSPRNG.
///
/// Its text form (base64url, no padding) goes into the cookie; stores never
/// see it, only its [`SessionKey`]. `Debug` does not print the secret, so a
/// token that ends up in a log line by mistake leaks nothing.
#[derive(Clone)]
pub struct SessionToken([u8; TOKEN_BYTES]);

impl SessionToken {
    /// A fresh token from the OS CSPRNG.
    ///
    /// # Panics
    /// If the operating system has no randomness to give; sessiond cannot
    /// issue safe tokens without it, so it refuses to go on.
    #[allow(clippy::expect_used)]
    pub fn generate() -> Self {
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes).expect("the OS random number generator failed");
        Self(bytes)
    }

    /// A fresh token whose key's first byte is `shard` (see [`user_shard`]).
    /// Costs about 256 tries (SHA-256 of 32 bytes each) on average.
    #[allow(clippy::expect_used)]
    pub fn generate_in_shard(shard: u8) -> Self {
        let mut pool = [0u8; TOKEN_BYTES * 64];
        loop {
            getrandom::fill(&mut pool).expect("the OS random number generator failed");
            for chunk in pool.chunks_exact(TOKEN_BYTES) {
                let mut bytes = [0u8; TOKEN_BYTES];
                bytes.copy_from_slice(chunk);
                let token = Self(bytes);
                if token.key().0[0] == shard {
                    return token;
                }
            }
        }
    }

    /// Parses a token's text form. Anything that is not exactly 43
    /// base64url characters is refused without a store lookup.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        if text.len() != TOKEN_TEXT_LEN {
            return Err(TokenError::Malformed);
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        match URL_SAFE_NO_PAD.decode_slice(text.as_bytes(), &mut bytes) {
            Ok(TOKEN_BYTES) => Ok(Self(bytes)),
            _ => Err(TokenError::Malformed),
        }
    }

    /// The text form for a cookie or a response body.
    pub fn expose(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// The key stores index this session by: SHA-256 of the secret.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl PartialEq for SessionToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}
impl Eq for SessionToken {}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// SHA-256 of a [`SessionToken`]: the only identity a store ever sees.
///
/// A dump of the store, or a list of its keys, cannot be replayed as a cookie:
/// finding a token from its key is a SHA-256 preimage. For the same reason
/// the key doubles as the session's public handle in the account APIs
/// ([`SessionKey::handle`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// The public handle shown in APIs ("your devices"): base64url of the key.
    pub fn handle(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses a public handle back into a key.
    pub fn from_handle(handle: &str) -> Result<Self, TokenError> {
        if handle.len() != TOKEN_TEXT_LEN {
            return Err(TokenError::Malformed);
        }
        let mut bytes = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(handle.as_bytes(), &mut bytes) {
            Ok(32) => Ok(Self(bytes)),
            _ => Err(TokenError::Malformed),
        }
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell keys apart in a test failure.
        write!(f, "SessionKey({}…)", &self.handle()[..8])
    }
}

/// The shard of a user: the first byte of SHA-256 of the user id.
///
/// Stores that keep a user's sessions together (Redis Cluster, where a
/// user's sessions and index must share a hash slot for atomic scripts) ask
/// for keys whose first byte is the user's shard, so the shard can be read
/// off any key without knowing the user.
pub fn user_shard(user_id: &str) -> u8 {
    Sha256::digest(user_id.as_bytes())[0]
}

/// Compares two secrets in constant time (CSRF tokens, refresh tokens).
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// 32 random bytes from the OS CSPRNG, base64url: for CSRF secrets and the like.
#[allow(clippy::expect_used)]
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_round_trips_through_its_text_form() {
        let token = SessionToken::generate();
        let text = token.expose();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        let parsed = SessionToken::parse(&text).expect("parses");
        assert_eq!(parsed, token);
        assert_eq!(parsed.key(), token.key());
    }

    #[test]
    fn two_generated_tokens_differ() {
        assert_ne!(SessionToken::generate(), SessionToken::generate());
    }

    #[test]
    fn malformed_token_texts_are_refused() {
        for bad in [
            "",
            "short",
            &"a".repeat(42),
            &"a".repeat(44),
            &"+".repeat(43),
            &"/".repeat(43),
            &"=".repeat(43),
            "ééééééééééééééééééééé€",
        ] {
            assert_eq!(
                SessionToken::parse(bad),
                Err(TokenError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_key_is_not_the_token() {
        let token = SessionToken::generate();
        assert_ne!(token.key().handle(), token.expose());
        assert_eq!(
            SessionKey::from_handle(&token.key().handle()),
            Ok(token.key())
        );
    }

    #[test]
    fn a_token_generated_in_a_shard_has_a_key_in_that_shard() {
        for shard in [0u8, 7, 255] {
            let t = SessionToken::generate_in_shard(shard);
            assert_eq!(t.key().0[0], shard);
            assert_eq!(SessionToken::parse(&t.expose()), Ok(t));
        }
        assert_eq!(user_shard("alice"), user_shard("alice"));
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let token = SessionToken::generate();
        assert!(!format!("{token:?}").contains(&token.expose()));
    }
}
