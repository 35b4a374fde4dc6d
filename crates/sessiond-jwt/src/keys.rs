//! Signing keys, the key ring and its public JWKS.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims};
use crate::verify::KeySet;

/// A signature algorithm sessiond issues tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// Ed25519 (the default): small keys, fast, deterministic signatures.
    EdDSA,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256 and a 2048-bit key.
    RS256,
    /// HMAC-SHA-256 with a shared secret: only by explicit choice, since
    /// every verifier then holds a key that can also sign.
    HS256,
}

impl Algorithm {
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::HS256 => jsonwebtoken::Algorithm::HS256,
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::EdDSA => "EdDSA",
            Algorithm::ES256 => "ES256",
            Algorithm::RS256 => "RS256",
            Algorithm::HS256 => "HS256",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "EdDSA" | "eddsa" | "Ed25519" | "ed25519" => Ok(Algorithm::EdDSA),
            "ES256" | "es256" => Ok(Algorithm::ES256),
            "RS256" | "rs256" => Ok(Algorithm::RS256),
            "HS256" | "hs256" => Ok(Algorithm::HS256),
            other => Err(KeyError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Not one of EdDSA, ES256, RS256, HS256.
    #[error("unknown signature algorithm {0:?} (use EdDSA, ES256, RS256 or HS256)")]
    UnknownAlgorithm(String),
    /// The operating system's random source failed.
    #[error("cannot generate a key: {0}")]
    Generate(String),
    /// A stored key ring that does not parse.
    #[error("the stored key ring is unreadable: {0}")]
    Corrupt(String),
    /// Signing failed.
    #[error("cannot sign: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// A sealed (encrypted) ring or its key-encryption key is wrong.
    #[error("{0}")]
    Sealed(String),
}

/// A key as the ring stores it. `secret` is the private key (PKCS#8 DER for
/// EdDSA and ES256, PKCS#1 DER for RS256, the raw secret for HS256).
#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: Algorithm,
    created_at: u64,
    #[serde(default)]
    retired_at: Option<u64>,
    secret: String,
}

/// One signing key with its decoded forms, ready to sign and verify.
pub struct SigningKey {
    stored: StoredKey,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Option<Jwk>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.stored.kid)
            .field("alg", &self.stored.alg)
            .field("created_at", &self.stored.created_at)
            .field("retired_at", &self.stored.retired_at)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn corrupt(e: impl fmt::Display) -> KeyError {
    KeyError::Corrupt(e.to_string())
}

impl SigningKey {
    /// A fresh key (`now` in Unix seconds). RS256 takes about a second.
    pub fn generate(alg: Algorithm, now: u64) -> Result<Self, KeyError> {
        let generate = |e: &dyn fmt::Display| KeyError::Generate(e.to_string());
        let secret: Vec<u8> = match alg {
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::EncodePrivateKey;
                let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
                key.to_pkcs8_der()
                    .map_err(|e| generate(&e))?
                    .as_bytes()
                    .to_vec()
            }
            Algorithm::ES256 => {
                use p256::pkcs8::EncodePrivateKey;
                let key = p256::ecdsa::SigningKey::random(&mut OsRng);
                key.to_pkcs8_der()
                    .map_err(|e| generate(&e))?
                    .as_bytes()
                    .to_vec()
            }
            Algorithm::RS256 => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| generate(&e))?;
                key.to_pkcs1_der()
                    .map_err(|e| generate(&e))?
                    .as_bytes()
                    .to_vec()
            }
            Algorithm::HS256 => {
                let mut secret = vec![0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| generate(&e))?;
                secret
            }
        };
        let mut kid = [0u8; 12];
        getrandom::fill(&mut kid).map_err(|e| generate(&e))?;
        Self::from_stored(StoredKey {
            kid: b64(&kid),
            alg,
            created_at: now,
            retired_at: None,
            secret: STANDARD.encode(secret),
        })
    }

    fn from_stored(stored: StoredKey) -> Result<Self, KeyError> {
        let der = STANDARD.decode(&stored.secret).map_err(corrupt)?;
        let mut jwk = Jwk {
            kty: String::new(),
            key_use: Some("sig".into()),
            alg: Some(stored.alg.name().into()),
            kid: Some(stored.kid.clone()),
            crv: None,
            x: None,
            y: None,
            n: None,
            e: None,
        };
        let (encoding, jwk) = match stored.alg {
            Algorithm::EdDSA => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_pkcs8_der(&der).map_err(corrupt)?;
                jwk.kty = "OKP".into();
                jwk.crv = Some("Ed25519".into());
                jwk.x = Some(b64(key.verifying_key().as_bytes()));
                (EncodingKey::from_ed_der(&der), Some(jwk))
            }
            Algorithm::ES256 => {
                use p256::pkcs8::DecodePrivateKey;
                let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).map_err(corrupt)?;
                let point = key.verifying_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(corrupt("an ES256 public key without coordinates"));
                };
                jwk.kty = "EC".into();
                jwk.crv = Some("P-256".into());
                jwk.x = Some(b64(x));
                jwk.y = Some(b64(y));
                (EncodingKey::from_ec_der(&der), Some(jwk))
            }
            Algorithm::RS256 => {
                use rsa::pkcs1::DecodeRsaPrivateKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::from_pkcs1_der(&der).map_err(corrupt)?;
                jwk.kty = "RSA".into();
                jwk.n = Some(b64(&key.n().to_bytes_be()));
                jwk.e = Some(b64(&key.e().to_bytes_be()));
                (EncodingKey::from_rsa_der(&der), Some(jwk))
            }
            Algorithm::HS256 => (EncodingKey::from_secret(&der), None),
        };
        let decoding = match &jwk {
            Some(jwk) => jwk.decoding_key().map_err(corrupt)?.1,
            None => DecodingKey::from_secret(&der),
        };
        Ok(Self {
            stored,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The key id (`kid`).
    pub fn kid(&self) -> &str {
        &self.stored.kid
    }

    /// The algorithm this key signs with (and the only one it verifies).
    pub fn alg(&self) -> Algorithm {
        self.stored.alg
    }

    /// When the key was made (Unix seconds).
    pub fn created_at(&self) -> u64 {
        self.stored.created_at
    }

    /// When a newer key replaced it (Unix seconds), if one has.
    pub fn retired_at(&self) -> Option<u64> {
        self.stored.retired_at
    }

    /// The public key as a JWK; `None` for HS256, whose key is secret.
    pub fn jwk(&self) -> Option<&Jwk> {
        self.jwk.as_ref()
    }

    /// Signs `claims` as an `at+jwt` with this key's `kid`.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        let mut header = Header::new(self.stored.alg.jwt());
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(self.stored.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Signs any claims under any header with this key (attack tokens in tests).
    #[cfg(feature = "testing")]
    pub(crate) fn sign_raw(
        &self,
        header: &Header,
        claims: &serde_json::Value,
    ) -> Result<String, KeyError> {
        Ok(jsonwebtoken::encode(header, claims, &self.encoding)?)
    }

    pub(crate) fn decoding(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The keys of one issuer, oldest first: one active key that signs, and
/// retired keys kept only while tokens they signed can still be alive.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

#[derive(Serialize, Deserialize)]
struct StoredRing {
    keys: Vec<StoredKey>,
}

impl KeyRing {
    /// A ring with one fresh key.
    pub fn generate(alg: Algorithm, now: u64) -> Result<Self, KeyError> {
        Ok(Self {
            keys: vec![SigningKey::generate(alg, now)?],
        })
    }

    /// Reads a ring written by [`KeyRing::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let stored: StoredRing = serde_json::from_slice(bytes).map_err(corrupt)?;
        let keys = stored
            .keys
            .into_iter()
            .map(SigningKey::from_stored)
            .collect::<Result<Vec<_>, _>>()?;
        if !keys.iter().any(|k| k.retired_at().is_none()) {
            return Err(corrupt("the key ring has no active key"));
        }
        Ok(Self { keys })
    }

    /// The stored form (contains the private keys).
    pub fn to_bytes(&self) -> Vec<u8> {
        let stored = StoredRing {
            keys: self.keys.iter().map(|k| k.stored.clone()).collect(),
        };
        // Serialising strings and integers cannot fail.
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// The key that signs new tokens: the newest one not retired.
    pub fn active(&self) -> &SigningKey {
        self.keys
            .iter()
            .rev()
            .find(|k| k.retired_at().is_none())
            .unwrap_or_else(|| &self.keys[self.keys.len() - 1])
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }

    /// Retires the active key and makes a new one active. Tokens the old key
    /// signed stay valid: it keeps verifying until [`KeyRing::prune`].
    pub fn rotate(&mut self, alg: Algorithm, now: u64) -> Result<(), KeyError> {
        let fresh = SigningKey::generate(alg, now)?;
        for key in &mut self.keys {
            key.stored.retired_at.get_or_insert(now);
        }
        self.keys.push(fresh);
        Ok(())
    }

    /// Drops keys retired more than `keep_secs` ago (the longest a token can
    /// live, plus leeway). Returns how many it dropped.
    pub fn prune(&mut self, now: u64, keep_secs: u64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|k| {
            k.retired_at()
                .is_none_or(|at| at.saturating_add(keep_secs) > now)
        });
        before - self.keys.len()
    }

    /// The public keys of every key that can still verify (HS256 keys are
    /// never published).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().filter_map(|k| k.jwk().cloned()).collect(),
        }
    }

    /// The verification keys, by `kid`.
    pub fn key_set(&self) -> KeySet {
        let mut set = KeySet::default();
        for key in &self.keys {
            set.insert(key.kid(), key.alg(), key.decoding().clone());
        }
        set
    }
}

/// A public key in JWK form (RFC 7517).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwk {
    /// Key type: OKP, EC or RSA.
    pub kty: String,
    /// Public key use: "sig".
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
    /// The algorithm the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Curve (OKP, EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    /// Public point x (OKP, EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    /// Public point y (EC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// Modulus (RSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    /// Exponent (RSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
}

impl Jwk {
    /// The algorithm and verification key, if this is a signing key of a
    /// kind sessiond accepts. The algorithm comes from the key's type and
    /// curve, never from the token, and must agree with `alg` when present.
    pub(crate) fn decoding_key(&self) -> Result<(Algorithm, DecodingKey), String> {
        fn need<'a>(v: &'a Option<String>, kty: &str, name: &str) -> Result<&'a str, String> {
            v.as_deref()
                .ok_or_else(|| format!("a {kty} JWK without {name}"))
        }
        let kty = self.kty.as_str();
        let (alg, key) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => (
                Algorithm::EdDSA,
                DecodingKey::from_ed_components(need(&self.x, kty, "x")?),
            ),
            ("EC", Some("P-256")) => (
                Algorithm::ES256,
                DecodingKey::from_ec_components(need(&self.x, kty, "x")?, need(&self.y, kty, "y")?),
            ),
            ("RSA", _) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_components(
                    need(&self.n, kty, "n")?,
                    need(&self.e, kty, "e")?,
                ),
            ),
            (kty, crv) => return Err(format!("unsupported JWK {kty}/{crv:?}")),
        };
        if self.key_use.as_deref().is_some_and(|u| u != "sig") {
            return Err("a JWK not meant for signatures".into());
        }
        if let Some(declared) = &self.alg
            && declared != alg.name()
        {
            return Err(format!("a {} JWK that claims alg {declared}", self.kty));
        }
        Ok((alg, key.map_err(|e| e.to_string())?))
    }
}

/// A JWK Set: what `/.well-known/jwks.json` serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}
