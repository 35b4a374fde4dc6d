//! A session as hash fields.
//!
//! - `m`: what never changes field by field (user, roles, created, client
//!   metadata): a format byte and postcard. Only a cycle rewrites it.
//! - `x`: the CSRF secret as its 32 raw bytes (a cycle replaces it).
//! - `e`, `i`, `l`, `v`: absolute and idle expiry, last seen (Unix ms) and
//!   version, in decimal, because the Lua scripts read and change them.
//! - `c`: the creation time (Unix ms) again, for the session-limit script,
//!   which cannot read `m` (written since session limits; not read back).
//! - `a:<name>`: one field per application attribute.
//!
//! Fewer fields than one per record member keeps both the reply that every
//! verification parses and Redis's memory per session small, and every value
//! stays under Redis's default `hash-max-listpack-value` (64 bytes) for a
//! typical session, so hashes keep the compact listpack encoding.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::Value;
use serde::{Deserialize, Serialize};
use sessiond_core::{ClientMeta, SessionRecord, StoreError};

const FORMAT: u8 = 2;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Meta {
    pub(crate) user_id: String,
    pub(crate) roles: Vec<String>,
    pub(crate) created_at: u64,
    pub(crate) client: ClientMeta,
}

pub(crate) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected Redis data: {what}"), None)
}

pub(crate) fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(meta).unwrap_or_default());
    out
}

pub(crate) fn decode_meta(bytes: &[u8]) -> Result<Meta, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => {
            postcard::from_bytes(rest).map_err(|_| corrupt("session metadata"))
        }
        _ => Err(corrupt("session metadata in an unknown format")),
    }
}

pub(crate) fn meta_of(record: &SessionRecord) -> Meta {
    Meta {
        user_id: record.user_id.clone(),
        roles: record.roles.clone(),
        created_at: record.created_at,
        client: record.client.clone(),
    }
}

/// The CSRF secret as stored: its 32 raw bytes when it is base64url of 32
/// bytes (as sessiond makes them), else its text.
pub(crate) fn encode_secret(secret: &str) -> Vec<u8> {
    let mut raw = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(secret, &mut raw) {
        Ok(32) if secret.len() == 43 => raw.to_vec(),
        _ => secret.as_bytes().to_vec(),
    }
}

fn decode_secret(bytes: Vec<u8>) -> Result<String, StoreError> {
    if bytes.len() == 32 {
        return Ok(URL_SAFE_NO_PAD.encode(bytes));
    }
    String::from_utf8(bytes).map_err(|_| corrupt("a CSRF secret"))
}

/// Field/value pairs for `HSET`.
pub(crate) fn encode(record: &SessionRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut f: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"m".to_vec(), encode_meta(&meta_of(record))),
        (b"x".to_vec(), encode_secret(&record.csrf_secret)),
        (
            b"e".to_vec(),
            record.absolute_expires_at.to_string().into_bytes(),
        ),
        (
            b"i".to_vec(),
            record.idle_expires_at.to_string().into_bytes(),
        ),
        (b"l".to_vec(), record.last_seen.to_string().into_bytes()),
        (b"v".to_vec(), record.version.to_string().into_bytes()),
        (b"c".to_vec(), record.created_at.to_string().into_bytes()),
    ];
    for (k, v) in &record.attributes {
        f.push((format!("a:{k}").into_bytes(), v.clone().into_bytes()));
    }
    f
}

fn number(v: &[u8]) -> Result<u64, StoreError> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("a non-numeric field"))
}

fn bytes(v: Value) -> Result<Vec<u8>, StoreError> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        _ => Err(corrupt("a hash field that is not a string")),
    }
}

/// Decodes an `HGETALL` reply (RESP2 array or RESP3 map) without an
/// intermediate map; `None` for a missing (empty) or foreign hash.
pub(crate) fn decode(reply: Value) -> Result<Option<SessionRecord>, StoreError> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut pairs = Vec::with_capacity(it.len() / 2);
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        Value::Nil => return Ok(None),
        _ => return Err(corrupt("an HGETALL reply that is not a list")),
    };
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut meta = None;
    let mut csrf_secret = String::new();
    let (mut e, mut i, mut l, mut v) = (0, 0, 0, 0);
    let mut attributes = BTreeMap::new();
    for (k, val) in pairs {
        let k = bytes(k)?;
        let val = bytes(val)?;
        match k.as_slice() {
            b"m" => meta = Some(decode_meta(&val)?),
            b"x" => csrf_secret = decode_secret(val)?,
            b"e" => e = number(&val)?,
            b"i" => i = number(&val)?,
            b"l" => l = number(&val)?,
            b"v" => v = number(&val)?,
            name => {
                if let Some(name) = name.strip_prefix(b"a:") {
                    let name = String::from_utf8(name.to_vec())
                        .map_err(|_| corrupt("an attribute name"))?;
                    let value =
                        String::from_utf8(val).map_err(|_| corrupt("an attribute value"))?;
                    attributes.insert(name, value);
                }
            }
        }
    }
    // A hash without metadata is not a session (an update that raced a
    // delete in some other writer, or a foreign key): treat it as absent.
    let Some(meta) = meta else { return Ok(None) };
    Ok(Some(SessionRecord {
        user_id: meta.user_id,
        roles: meta.roles,
        created_at: meta.created_at,
        last_seen: l,
        idle_expires_at: i,
        absolute_expires_at: e,
        csrf_secret,
        client: meta.client,
        attributes,
        version: v,
    }))
}
