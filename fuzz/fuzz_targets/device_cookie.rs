//! A device cookie a client presents (`__Host-sessiond-device`), for the
//! user name it tries to sign in as: checking it must never panic, must
//! accept nothing the server did not MAC, and must accept what it did.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::devices::{KEY_LEN, check, value};

const KEY: [u8; KEY_LEN] = [7; KEY_LEN];
const NOW: u64 = 1_800_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // "user\0value": the name typed into the form and the cookie's value.
    let (user, presented) = text.split_once('\0').unwrap_or(("alice", text));
    let accepted = check(&KEY, presented, user, NOW);
    assert!(accepted.is_none(), "accepted a forged cookie {presented:?} for {user:?}");
    // Whatever the id and name, a value the server made round-trips.
    if presented.len() <= 64 && !presented.contains('.') {
        let made = value(&KEY, presented, NOW / 1000 + 60, user);
        let id = check(&KEY, &made, user, NOW);
        assert_eq!(id.as_ref().map(|d| d.as_str()), Some(presented));
    }
});
