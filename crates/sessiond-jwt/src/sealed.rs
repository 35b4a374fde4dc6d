//! The key ring encrypted at rest.
//!
//! The ring holds private signing keys, and it lives in the session store
//! so that every node signs with the same keys. Session records there are
//! harmless to a reader (they are keyed by a hash of the token, never the
//! token), but a readable private key lets anyone mint access tokens for any
//! user. So a deployment whose store others can read (a Redis replica, an
//! RDB backup) sets a key-encryption key, and the ring is stored sealed with
//! XChaCha20-Poly1305 (random 192-bit nonces, so no nonce bookkeeping across
//! nodes), bound to what it is by the associated data.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::KeyError;

/// What a sealed value starts with, so a reader knows which it has.
const PREFIX: &[u8] = b"sealed-v1:";
const NONCE_LEN: usize = 24;

/// A 256-bit key that encrypts the key ring in the store.
#[derive(Clone)]
pub struct KeyEncryptionKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryptionKey(..)")
    }
}

impl KeyEncryptionKey {
    /// A new random key, as base64url text (what `from_text` reads).
    pub fn generate_text() -> Result<String, KeyError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| KeyError::Generate(e.to_string()))?;
        Ok(URL_SAFE_NO_PAD.encode(key))
    }

    /// Reads a key written as 32 bytes in base64 (url-safe or standard,
    /// padded or not); surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let text = text.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD
            .decode(text.replace('+', "-").replace('/', "_"))
            .map_err(|_| KeyError::Sealed("the key-encryption key is not base64".into()))?;
        if bytes.len() != 32 {
            return Err(KeyError::Sealed(format!(
                "the key-encryption key must be 32 bytes, not {}",
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
            .map_err(|_| KeyError::Sealed("the key-encryption key is unusable".into()))?;
        Ok(Self { cipher })
    }

    /// `plain` encrypted and authenticated; `context` (for example the
    /// setting's name) must be the same to open it.
    pub fn seal(&self, plain: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Generate(e.to_string()))?;
        let sealed = self
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plain,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Sealed("encryption failed".into()))?;
        let mut body = nonce.to_vec();
        body.extend(sealed);
        let mut out = PREFIX.to_vec();
        out.extend(URL_SAFE_NO_PAD.encode(body).into_bytes());
        Ok(out)
    }

    /// The plaintext of a value [`seal`](Self::seal) made with this key and
    /// `context`. Any other key, context or a changed byte is an error.
    pub fn open(&self, stored: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        let body = stored
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or_else(|| KeyError::Sealed("not a sealed value".into()))?;
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| KeyError::Sealed("not a sealed value".into()))?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| {
                KeyError::Sealed(
                    "the stored key ring does not open with this key-encryption key".into(),
                )
            })
    }
}

/// Whether `stored` is a sealed value (rather than a ring in the clear).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek() -> KeyEncryptionKey {
        KeyEncryptionKey::from_text(&KeyEncryptionKey::generate_text().unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_context_and_untouched() {
        let (k, other) = (kek(), kek());
        let sealed = k.seal(b"private keys", b"jwt_key_ring").unwrap();
        assert!(is_sealed(&sealed));
        assert!(
            !sealed.windows(12).any(|w| w == b"private keys"),
            "the plaintext is not visible"
        );
        assert_eq!(k.open(&sealed, b"jwt_key_ring").unwrap(), b"private keys");
        assert!(other.open(&sealed, b"jwt_key_ring").is_err(), "another key");
        assert!(
            k.open(&sealed, b"other_setting").is_err(),
            "another context"
        );
        let mut tampered = sealed.clone();
        let last = tampered.len() - 1;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            k.open(&tampered, b"jwt_key_ring").is_err(),
            "a changed byte"
        );
        assert!(
            k.open(b"{\"keys\":[]}", b"jwt_key_ring").is_err(),
            "clear text"
        );
    }

    #[test]
    fn sealing_twice_gives_different_bytes() {
        let k = kek();
        assert_ne!(k.seal(b"x", b"c").unwrap(), k.seal(b"x", b"c").unwrap());
    }

    #[test]
    fn a_key_is_read_from_either_base64_alphabet_and_must_be_32_bytes() {
        use base64::engine::general_purpose::STANDARD;
        let raw = [0xfbu8; 32];
        let a = KeyEncryptionKey::from_text(&URL_SAFE_NO_PAD.encode(raw)).unwrap();
        let b = KeyEncryptionKey::from_text(&format!("{}\n", STANDARD.encode(raw))).unwrap();
        let sealed = a.seal(b"same key", b"c").unwrap();
        assert_eq!(b.open(&sealed, b"c").unwrap(), b"same key");
        assert!(KeyEncryptionKey::from_text(&URL_SAFE_NO_PAD.encode([1u8; 16])).is_err());
        assert!(KeyEncryptionKey::from_text("not base64!").is_err());
    }
}
