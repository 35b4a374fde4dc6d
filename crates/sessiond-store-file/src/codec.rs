//! The on-disk encoding: a format byte, then postcard.

use sessiond_core::{SessionKey, SessionRecord, StoreError, UserRecord};

const FORMAT_V1: u8 = 1;

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![FORMAT_V1];
    // Serializing plain structs of strings, integers and maps cannot fail.
    out.extend(postcard::to_stdvec(value).unwrap_or_default());
    out
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StoreError::Corrupt(format!("undecodable {what}"), Some(Box::new(e)))),
        _ => Err(StoreError::Corrupt(
            format!("{what} in an unknown format"),
            None,
        )),
    }
}

pub(crate) fn encode_session(record: &SessionRecord) -> Vec<u8> {
    encode(record)
}

pub(crate) fn decode_session(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    decode(bytes, "session")
}

pub(crate) fn encode_user(user: &UserRecord) -> Vec<u8> {
    encode(user)
}

pub(crate) fn decode_user(bytes: &[u8]) -> Result<UserRecord, StoreError> {
    decode(bytes, "user")
}

pub(crate) fn key_from_slice(bytes: &[u8]) -> Result<SessionKey, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(SessionKey)
        .map_err(|_| StoreError::Corrupt("a session key of the wrong length".into(), None))
}
