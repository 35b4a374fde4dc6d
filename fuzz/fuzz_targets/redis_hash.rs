//! The Redis store's session-hash decoder: fields split from the input
//! (by 0xFF) as an HGETALL reply; corrupt fields are `Corrupt`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redis::Value;
use sessiond_core::StoreError;
use sessiond_store_redis::fuzzing::decode;

fuzz_target!(|data: &[u8]| {
    let items: Vec<Value> = data
        .split(|b| *b == 0xFF)
        .map(|field| Value::BulkString(field.to_vec()))
        .collect();
    let result = decode(Value::Array(items));
    assert!(
        matches!(result, Ok(_) | Err(StoreError::Corrupt(..))),
        "{result:?}"
    );
});
