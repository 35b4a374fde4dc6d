//! The claims of an access token.

use serde::{Deserialize, Serialize};

/// The JOSE `typ` of an access token (RFC 9068), so that an ID token or any
/// other JWT signed by the same key cannot be replayed as an access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// What an access token asserts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user.
    pub sub: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
    /// A unique id for this token.
    pub jti: String,
    /// The public handle of the session behind the token (revocable at once).
    pub sid: String,
    /// The user's roles when the token was issued.
    #[serde(default)]
    pub roles: Vec<String>,
}
