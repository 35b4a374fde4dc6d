//! Access-token verification by the rules of RFC 8725.

use std::collections::HashMap;
use std::fmt;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};

use crate::cache::VerifiedCache;
use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims};
use crate::keys::{Algorithm, Jwks};

/// The largest leeway [`Rules::with_leeway`] accepts: clocks that disagree
/// by more are a fault to fix, not to hide.
const MAX_LEEWAY_SECS: u64 = 300;

/// What a valid token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The only accepted `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf` (seconds).
    pub leeway_secs: u64,
    /// Longer tokens are refused before any decoding.
    pub max_token_bytes: usize,
}

impl Rules {
    /// Rules for tokens from `issuer` meant for `audience`: 30 s leeway, 8 KiB at most.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: 30,
            max_token_bytes: 8 * 1024,
        }
    }

    /// Sets the leeway, at most 300 s.
    #[must_use]
    pub fn with_leeway(mut self, secs: u64) -> Self {
        self.leeway_secs = secs.min(MAX_LEEWAY_SECS);
        self
    }

    /// Sets the longest accepted token.
    #[must_use]
    pub fn with_max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = bytes;
        self
    }
}

/// Why a token was refused. Every variant is a 401 `invalid_token` to a
/// client; the variants exist for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Longer than [`Rules::max_token_bytes`].
    #[error("the token is too large")]
    TooLarge,
    /// Not three base64url parts with a JSON header and claims.
    #[error("the token is malformed")]
    Malformed,
    /// Header `typ` is not `at+jwt`.
    #[error("the token is not an access token")]
    WrongType,
    /// No key with the token's `kid`.
    #[error("the token's key is unknown")]
    UnknownKey,
    /// The header's `alg` is not the one its key is for (`none`, key confusion).
    #[error("the token's algorithm is not allowed for its key")]
    DisallowedAlgorithm,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// Wrong or missing `iss`.
    #[error("the token is from another issuer")]
    WrongIssuer,
    /// Wrong or missing `aud`.
    #[error("the token is for another audience")]
    WrongAudience,
    /// The keys could not be fetched (a remote verifier with no keys yet).
    #[error("the verification keys are unavailable: {0}")]
    Unavailable(String),
}

impl VerifyError {
    /// A short stable label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            VerifyError::TooLarge => "too_large",
            VerifyError::Malformed => "malformed",
            VerifyError::WrongType => "wrong_type",
            VerifyError::UnknownKey => "unknown_key",
            VerifyError::DisallowedAlgorithm => "disallowed_algorithm",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::WrongIssuer => "wrong_issuer",
            VerifyError::WrongAudience => "wrong_audience",
            VerifyError::Unavailable(_) => "unavailable",
        }
    }
}

/// Verification keys by `kid`, each with the one algorithm it accepts.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, (Algorithm, DecodingKey)>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.keys.keys()).finish()
    }
}

/// The header fields verification needs, read without trusting them.
pub(crate) struct Peeked {
    pub(crate) kid: String,
    alg: jsonwebtoken::Algorithm,
}

/// Size, shape, `typ` and `kid` checks that need no key.
pub(crate) fn peek(token: &str, rules: &Rules) -> Result<Peeked, VerifyError> {
    if token.len() > rules.max_token_bytes {
        return Err(VerifyError::TooLarge);
    }
    let well_formed = token.bytes().filter(|b| *b == b'.').count() == 2
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !well_formed {
        return Err(VerifyError::Malformed);
    }
    // An unknown `alg` (including "none") fails here: jsonwebtoken has no such variant.
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    let typ_ok = header.typ.as_deref().is_some_and(|t| {
        t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(VerifyError::WrongType);
    }
    let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
    Ok(Peeked {
        kid,
        alg: header.alg,
    })
}

impl KeySet {
    /// The keys of a JWK Set; keys of unsupported kinds or without a `kid`
    /// are skipped (with a log line), not fatal.
    pub fn from_jwks(jwks: &Jwks) -> Self {
        let mut set = KeySet::default();
        for jwk in &jwks.keys {
            let Some(kid) = &jwk.kid else {
                tracing::warn!("skipping a JWK without kid");
                continue;
            };
            match jwk.decoding_key() {
                Ok((alg, key)) => set.insert(kid, alg, key),
                Err(reason) => tracing::warn!(kid, %reason, "skipping a JWK"),
            }
        }
        set
    }

    /// Adds a key.
    pub fn insert(&mut self, kid: &str, alg: Algorithm, key: DecodingKey) {
        self.keys.insert(kid.to_owned(), (alg, key));
    }

    /// Whether a key with this `kid` is present.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    /// How many keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` against these keys and `rules`, now.
    pub fn verify(&self, token: &str, rules: &Rules) -> Result<AccessClaims, VerifyError> {
        self.verify_at(token, rules, unix_now())
    }

    /// Verifies `token` as of `now` (Unix seconds): a server that runs on an
    /// injected clock checks `exp` and `nbf` on that clock too.
    pub fn verify_at(
        &self,
        token: &str,
        rules: &Rules,
        now: u64,
    ) -> Result<AccessClaims, VerifyError> {
        let peeked = peek(token, rules)?;
        self.verify_peeked(token, &peeked, rules, now)
    }

    /// [`KeySet::verify`], remembering tokens that verified in `cache` so
    /// that the next presentation of the same token skips the signature check.
    pub fn verify_cached(
        &self,
        token: &str,
        rules: &Rules,
        cache: &VerifiedCache,
    ) -> Result<AccessClaims, VerifyError> {
        self.verify_cached_at(token, rules, cache, unix_now())
    }

    /// [`KeySet::verify_cached`] as of `now` (Unix seconds).
    pub fn verify_cached_at(
        &self,
        token: &str,
        rules: &Rules,
        cache: &VerifiedCache,
        now: u64,
    ) -> Result<AccessClaims, VerifyError> {
        if let Ok(claims) = self.verify_cached_only(token, rules, cache, now) {
            return Ok(claims);
        }
        let peeked = peek(token, rules)?;
        let claims = self.verify_peeked(token, &peeked, rules, now)?;
        cache.insert(token, &peeked.kid, &claims);
        Ok(claims)
    }

    /// The cached claims of `token`, if it verified before and still would.
    pub(crate) fn verify_cached_only(
        &self,
        token: &str,
        rules: &Rules,
        cache: &VerifiedCache,
        now: u64,
    ) -> Result<AccessClaims, ()> {
        if token.len() > rules.max_token_bytes {
            return Err(());
        }
        cache.get(token, self, rules, now).ok_or(())
    }

    pub(crate) fn verify_peeked(
        &self,
        token: &str,
        peeked: &Peeked,
        rules: &Rules,
        now: u64,
    ) -> Result<AccessClaims, VerifyError> {
        let (alg, key) = self.keys.get(&peeked.kid).ok_or(VerifyError::UnknownKey)?;
        // The key decides the algorithm: an HS256 token "signed" with a
        // public key, or any other mismatch, stops here.
        if peeked.alg != alg.jwt() {
            return Err(VerifyError::DisallowedAlgorithm);
        }
        let mut validation = Validation::new(alg.jwt());
        // Times are checked below against `now`, so that a caller on an
        // injected clock gets the same answers as on the system clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&rules.issuer]);
        validation.set_audience(&[&rules.audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<AccessClaims>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::ExpiredSignature => VerifyError::Expired,
                ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
                ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
                ErrorKind::InvalidAudience => VerifyError::WrongAudience,
                ErrorKind::MissingRequiredClaim(c) if c == "iss" => VerifyError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) if c == "aud" => VerifyError::WrongAudience,
                ErrorKind::InvalidAlgorithm => VerifyError::DisallowedAlgorithm,
                _ => VerifyError::Malformed,
            })?;
        if claims.exp.saturating_add(rules.leeway_secs) < now {
            return Err(VerifyError::Expired);
        }
        if claims.nbf > now.saturating_add(rules.leeway_secs) {
            return Err(VerifyError::NotYetValid);
        }
        Ok(claims)
    }
}

/// Now, in Unix seconds, by the system clock.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Turns a bearer token into claims; what a bearer-token middleware needs.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    /// The token's claims if it is valid now.
    async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError>;
}
