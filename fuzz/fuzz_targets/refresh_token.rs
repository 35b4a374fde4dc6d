//! Refresh tokens (`<sid>.<secret>`): parsing never panics, and what parses
//! round-trips to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond::tokens::RefreshToken;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(token) = RefreshToken::parse(text) {
        assert_eq!(token.expose(), text);
    }
});
