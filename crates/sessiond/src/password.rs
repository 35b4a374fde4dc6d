//! Password hashing (argon2id) off the async runtime, with a bound on how
//! many hashes run at once so a login storm cannot starve session checks.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The hasher was shut down.
    #[error("password hasher unavailable")]
    Unavailable,
    /// argon2 failed (it does not for valid parameters).
    #[error("password hashing failed: {0}")]
    Argon2(String),
}

/// argon2id with OWASP's recommended parameters: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    // Constant parameters that argon2 accepts; `Params::DEFAULT` is the fallback.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or(Params::DEFAULT);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password (blocking: call from a blocking thread).
pub fn hash_blocking(password: &str) -> Result<String, HashError> {
    argon2()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// Checks a password against a PHC hash (blocking). A malformed hash never matches.
pub fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Runs argon2 on tokio's blocking pool, at most `limit` at a time.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("available", &self.permits.available_permits())
            .finish()
    }
}

impl Hasher {
    /// A hasher running at most `limit` hashes at once.
    pub fn new(limit: usize) -> Result<Self, HashError> {
        let dummy = hash_blocking(&sessiond_core::token::random_secret())?;
        Ok(Self {
            permits: Arc::new(Semaphore::new(limit.max(1))),
            dummy_hash: dummy.into(),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(
            self.hash_inner(password),
            tracing::debug_span!("password_hash", op = "hash"),
        )
        .await;
        metrics::histogram!(sessiond_core::metric::PASSWORD_HASH_DURATION, "op" => "hash")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn hash_inner(&self, password: String) -> Result<String, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Unavailable)?;
        tokio::task::spawn_blocking(move || hash_blocking(&password))
            .await
            .map_err(|_| HashError::Unavailable)?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when the
    /// user is unknown (`None`): same cost, same `false`.
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, HashError> {
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(
            self.verify_inner(password, hash),
            tracing::debug_span!("password_hash", op = "verify"),
        )
        .await;
        metrics::histogram!(sessiond_core::metric::PASSWORD_HASH_DURATION, "op" => "verify")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn verify_inner(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| HashError::Unavailable)?;
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&password, &hash))
            .await
            .map_err(|_| HashError::Unavailable)?;
        Ok(ok && known)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_blocking("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_blocking("correct horse", &h));
        assert!(!verify_blocking("battery staple", &h));
        assert!(!verify_blocking("correct horse", "not a hash"));
    }
}
