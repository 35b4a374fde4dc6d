//! sessiond's access tokens, for the server that issues them and for the
//! services that accept them.
//!
//! - [`KeyRing`]: signing keys (EdDSA by default, ES256, RS256; HS256 only
//!   when asked for), rotation that never logs anyone out, and the public
//!   [`Jwks`] of every key that can still verify a live token.
//! - [`AccessClaims`] and [`Rules`]: what an access token says (RFC 9068
//!   `at+jwt`) and how it is checked (RFC 8725): the algorithm is the key's,
//!   never the header's choice; `iss`, `aud`, `exp`, `nbf` are required and
//!   checked with a bounded leeway; oversized or malformed tokens are refused
//!   before any parsing.
//! - [`KeyEncryptionKey`]: the ring sealed (XChaCha20-Poly1305) before it
//!   goes into a store that others may read.
//! - [`VerifiedCache`]: tokens that verified, by their exact bytes, so a
//!   token presented again skips the signature check (each hit re-checks
//!   `exp`, `nbf` and the key).
//! - [`TokenVerifier`]: what a bearer-token middleware needs. The server
//!   implements it over its own key ring; another service uses
//!   [`RemoteJwks`] (feature `remote`) with nothing but the JWKS URL:
//!
//! ```no_run
//! # async fn demo() -> Result<(), sessiond_jwt::VerifyError> {
//! use sessiond_jwt::{RemoteJwks, Rules, TokenVerifier};
//! let verifier = RemoteJwks::new(
//!     "https://auth.example.com/.well-known/jwks.json",
//!     Rules::new("https://auth.example.com", "orders-api"),
//! );
//! let claims = verifier.verify("eyJ...").await?;
//! println!("{} ({:?}) in session {}", claims.sub, claims.roles, claims.sid);
//! # Ok(()) }
//! ```

mod cache;
mod claims;
mod keys;
#[cfg(feature = "remote")]
mod remote;
mod sealed;
mod verify;

#[cfg(feature = "testing")]
pub mod testing;

pub use cache::VerifiedCache;
pub use claims::{ACCESS_TOKEN_TYPE, AccessClaims};
pub use keys::{Algorithm, Jwk, Jwks, KeyError, KeyRing, SigningKey};
#[cfg(feature = "remote")]
pub use remote::RemoteJwks;
pub use sealed::{KeyEncryptionKey, is_sealed};
pub use verify::{KeySet, Rules, TokenVerifier, VerifyError};
