//! JWT verification (header, claims, sizes): any input is refused with a
//! `VerifyError`, never a panic, and nothing unsigned is accepted.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sessiond_jwt::{Algorithm, KeySet, Rules};

fn keys() -> &'static (KeySet, Rules) {
    static KEYS: OnceLock<(KeySet, Rules)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ring = sessiond_jwt::KeyRing::generate(Algorithm::EdDSA, 1_800_000_000).expect("a key");
        (ring.key_set(), Rules::new("sessiond", "sessiond"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(token) = std::str::from_utf8(data) else {
        return;
    };
    let (keys, rules) = keys();
    // The fuzzer cannot forge an Ed25519 signature: acceptance is a bug.
    assert!(
        keys.verify_at(token, rules, 1_800_000_100).is_err(),
        "accepted {token:?}"
    );
});
