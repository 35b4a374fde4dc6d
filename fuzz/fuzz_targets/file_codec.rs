//! The file store's record decoders: corrupt bytes are `Corrupt`, never a
//! panic (a damaged database must not take the server down).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessiond_core::StoreError;
use sessiond_store_file::fuzzing::{decode_session, decode_user};

fuzz_target!(|data: &[u8]| {
    for result in [decode_session(data).map(drop), decode_user(data).map(drop)] {
        assert!(matches!(result, Ok(()) | Err(StoreError::Corrupt(..))));
    }
});
