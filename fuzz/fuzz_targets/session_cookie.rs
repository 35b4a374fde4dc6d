//! The `Cookie` header and the session token in it: finding the cookie and
//! parsing the token must never panic, whatever the header holds.
#![no_main]

use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;
use sessiond_axum::CookieConfig;
use sessiond_core::SessionToken;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.append(header::COOKIE, value);
    if let Some(token) = CookieConfig::default().find(&headers) {
        if let Ok(parsed) = SessionToken::parse(token) {
            // A token that parses round-trips to the same text.
            assert_eq!(parsed.expose(), token);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SessionToken::parse(text);
    }
});
