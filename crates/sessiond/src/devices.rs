//! Device cookies, after OWASP's "Slow Down Online Guessing Attacks with
//! Device Cookies": a browser where a user signed in gets a signed cookie
//! naming a device id for that user. A later login attempt for the same
//! user that carries it is counted on the device's own throttling counter
//! instead of the user's shared one, so a stranger who sends wrong
//! passwords for `alice` locks out only anonymous attempts for `alice`, not
//! Alice on a browser she used before. The stranger cannot present Alice's
//! device cookie: it is `HttpOnly`, `__Host-` and bound to her name by a
//! MAC only the server can compute.
//!
//! Value: `<id>.<expires>.<mac>`, with a random 256-bit `id`, `expires` in
//! Unix seconds, and `mac` = HMAC-SHA-256 over a label, the id, the expiry
//! and the user name (the name is not in the cookie: it does not tell
//! whoever reads the browser's cookies who signed in). One cookie per
//! browser: signing in as another user replaces it.
//!
//! The MAC key is a setting in the store, created by the first node that
//! needs it (compare-and-set), so every node recognises every node's cookies.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use sessiond_axum::CookieConfig;
use sessiond_core::token::random_secret;
use sessiond_core::{Backend, Millis, StoreError};
use tokio::sync::OnceCell;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The store setting holding the MAC key.
const KEY_SETTING: &str = "device_cookie_key";
/// The MAC key's length in bytes.
pub const KEY_LEN: usize = 32;
/// Domain separation: this MAC means "a device of this user", nothing else.
const LABEL: &[u8] = b"sessiond device cookie v1";
/// Longest cookie value considered (id, expiry and MAC are far shorter).
const MAX_VALUE: usize = 128;

/// A device that signed in as the user before (the id in its cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceId(String);

impl DeviceId {
    /// The id, for the throttling counter's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Issues and recognises device cookies.
pub struct DeviceCookies {
    cookie: CookieConfig,
    lifetime: Duration,
    store: Arc<dyn Backend>,
    key: OnceCell<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for DeviceCookies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCookies")
            .field("cookie", &self.cookie.name)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

impl DeviceCookies {
    /// Cookies named and marked by `cookie`, valid for `lifetime`, signed
    /// with the key kept in `store`.
    pub fn new(cookie: CookieConfig, lifetime: Duration, store: Arc<dyn Backend>) -> Self {
        Self {
            cookie,
            lifetime,
            store,
            key: OnceCell::new(),
        }
    }

    async fn key(&self) -> Result<&[u8; KEY_LEN], StoreError> {
        self.key
            .get_or_try_init(|| async {
                loop {
                    if let Some(bytes) = self.store.get_setting(KEY_SETTING).await? {
                        return <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                            StoreError::Corrupt("the device cookie key".into(), None)
                        });
                    }
                    let mut fresh = [0u8; KEY_LEN];
                    getrandom::fill(&mut fresh)
                        .map_err(|e| StoreError::Corrupt(format!("no randomness: {e}"), None))?;
                    if self.store.swap_setting(KEY_SETTING, None, &fresh).await? {
                        return Ok(fresh);
                    }
                    // Another node created it first: read theirs.
                }
            })
            .await
    }

    /// The device in the request if its cookie is valid for `user` at `now`.
    pub async fn recognise(
        &self,
        headers: &HeaderMap,
        user: &str,
        now: Millis,
    ) -> Result<Option<DeviceId>, StoreError> {
        match self.cookie.find(headers) {
            Some(value) => Ok(check(self.key().await?, value, user, now)),
            None => Ok(None),
        }
    }

    /// A `Set-Cookie` for a new device of `user`, or for `device` again
    /// (its counter stays the same) with a fresh expiry.
    pub async fn issue(
        &self,
        user: &str,
        device: Option<&DeviceId>,
        now: Millis,
    ) -> Result<HeaderValue, StoreError> {
        let id = device.map_or_else(random_secret, |d| d.0.clone());
        let expires = now / 1000 + self.lifetime.as_secs();
        let value = value(self.key().await?, &id, expires, user);
        Ok(self.cookie.set(&value, self.lifetime.as_secs()))
    }
}

fn mac(key: &[u8; KEY_LEN], id: &str, expires: u64, user: &str) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in [
        LABEL,
        id.as_bytes(),
        &expires.to_be_bytes(),
        user.as_bytes(),
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The device named by a device cookie's `value` if its MAC under `key`
/// holds for `user` and it has not expired at `now`. Pure, for the fuzz
/// target (`fuzz/fuzz_targets/device_cookie.rs`).
pub fn check(key: &[u8; KEY_LEN], value: &str, user: &str, now: Millis) -> Option<DeviceId> {
    if value.len() > MAX_VALUE {
        return None;
    }
    let mut parts = value.split('.');
    let (Some(id), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let (Ok(expires), Ok(tag)) = (expires.parse::<u64>(), URL_SAFE_NO_PAD.decode(tag)) else {
        return None;
    };
    if expires.saturating_mul(1000) <= now {
        return None;
    }
    mac(key, id, expires, user)
        .verify_slice(&tag)
        .is_ok()
        .then(|| DeviceId(id.to_owned()))
}

/// A device cookie value for `id` and `user` until `expires` (Unix seconds).
pub fn value(key: &[u8; KEY_LEN], id: &str, expires: u64, user: &str) -> String {
    let tag = mac(key, id, expires, user).finalize().into_bytes();
    format!("{id}.{expires}.{}", URL_SAFE_NO_PAD.encode(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use sessiond_axum::SameSite;
    use sessiond_core::MemoryStore;

    fn devices(store: Arc<dyn Backend>) -> DeviceCookies {
        DeviceCookies::new(
            CookieConfig::new("__Host-sessiond-device", true, SameSite::Strict),
            Duration::from_secs(3600),
            store,
        )
    }

    fn presenting(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(pair).unwrap());
        headers
    }

    #[tokio::test]
    async fn a_device_cookie_is_recognised_for_its_user_only_and_until_it_expires() {
        let store: Arc<dyn Backend> = Arc::new(MemoryStore::new());
        let d = devices(store.clone());
        let now = 1_800_000_000_000;
        let cookie = d.issue("alice", None, now).await.unwrap();
        let headers = presenting(&cookie);
        let id = d.recognise(&headers, "alice", now).await.unwrap();
        assert!(id.is_some());
        assert_eq!(d.recognise(&headers, "bob", now).await.unwrap(), None);
        assert_eq!(
            d.recognise(&headers, "alice", now + 3_600_000)
                .await
                .unwrap(),
            None,
            "expired"
        );
        // Another node with the same store recognises it.
        let other = devices(store);
        assert_eq!(other.recognise(&headers, "alice", now).await.unwrap(), id);
        // Reissued, the device keeps its id.
        let again = d.issue("alice", id.as_ref(), now).await.unwrap();
        assert_eq!(
            d.recognise(&presenting(&again), "alice", now)
                .await
                .unwrap(),
            id
        );
    }

    #[tokio::test]
    async fn a_forged_or_altered_device_cookie_is_not_recognised() {
        let d = devices(Arc::new(MemoryStore::new()));
        let now = 1_800_000_000_000;
        let cookie = d.issue("alice", None, now).await.unwrap();
        let value = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let (name, v) = value.split_once('=').unwrap();
        let (id, rest) = v.split_once('.').unwrap();
        let (expires, tag) = rest.split_once('.').unwrap();
        let later = expires.parse::<u64>().unwrap() + 1000;
        for forged in [
            format!("{name}=x{id}.{expires}.{tag}"),
            format!("{name}={id}.{later}.{tag}"),
            format!("{name}={id}.{expires}.AAAA{tag}"),
            format!("{name}={id}.{expires}"),
            format!("{name}={id}.{expires}.{tag}.x"),
            format!("{name}={}", "a".repeat(4000)),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(header::COOKIE, HeaderValue::from_str(&forged).unwrap());
            assert_eq!(
                d.recognise(&headers, "alice", now).await.unwrap(),
                None,
                "{forged}"
            );
        }
    }
}
