//! The masked CSRF token a client presents: verification must never panic
//! and must accept only a masking of the session's own secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_axum::csrf::{mask, verify};

const SECRET: &str = "w4Qb2YjQK1tQk0nT6u0Jb0fZyq1kS3xC2m9d7v5r8a0";

fuzz_target!(|data: &[u8]| {
    let Ok(presented) = std::str::from_utf8(data) else {
        return;
    };
    let accepted = verify(SECRET, presented);
    // A random string is a valid masking with negligible probability; a
    // fuzzer that finds one has found a bug.
    assert!(!accepted || presented.len() == 86, "accepted {presented:?}");
    assert!(verify(SECRET, &mask(SECRET)));
});
