//! The configuration loader: any file gives a configuration or a
//! `ConfigError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sessiond::ServerConfig::from_toml(text);
});
