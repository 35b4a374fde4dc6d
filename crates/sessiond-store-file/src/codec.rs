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

/// Users gained `disabled` in format 2; postcard is not self-describing,
/// so a format-1 user is read as the record it was (`disabled`: false).
const USER_V2: u8 = 2;

#[derive(serde::Deserialize)]
struct UserV1 {
    name: String,
    password_hash: String,
    roles: Vec<String>,
    created_at: sessiond_core::Millis,
    updated_at: sessiond_core::Millis,
}

pub(crate) fn encode_user(user: &UserRecord) -> Vec<u8> {
    let mut out = vec![USER_V2];
    out.extend(postcard::to_stdvec(user).unwrap_or_default());
    out
}

pub(crate) fn decode_user(bytes: &[u8]) -> Result<UserRecord, StoreError> {
    match bytes.split_first() {
        Some((&USER_V2, rest)) => postcard::from_bytes(rest)
            .map_err(|e| StoreError::Corrupt("undecodable user".into(), Some(Box::new(e)))),
        _ => decode::<UserV1>(bytes, "user").map(|u| UserRecord {
            name: u.name,
            password_hash: u.password_hash,
            roles: u.roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
            disabled: false,
        }),
    }
}

pub(crate) fn key_from_slice(bytes: &[u8]) -> Result<SessionKey, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(SessionKey)
        .map_err(|_| StoreError::Corrupt("a session key of the wrong length".into(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_written_before_the_disabled_flag_reads_as_enabled() {
        let old = encode(&(
            "alice".to_owned(),
            "$argon2id$x".to_owned(),
            vec!["user".to_owned()],
            5u64,
            6u64,
        ));
        let user = decode_user(&old).unwrap();
        assert_eq!(
            (
                user.name.as_str(),
                user.created_at,
                user.updated_at,
                user.disabled
            ),
            ("alice", 5, 6, false)
        );
        let disabled = UserRecord {
            disabled: true,
            ..user
        };
        assert_eq!(decode_user(&encode_user(&disabled)).unwrap(), disabled);
    }
}
