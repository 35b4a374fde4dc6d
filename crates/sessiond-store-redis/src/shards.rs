//! Which Cluster master serves which keys: the failure domains of the
//! circuit breaker ([`sessiond_core::SessionStore::failure_domain`]), so
//! that a master that is down, with no replica to take over, refuses only
//! the sessions in its slots while the other masters keep serving theirs.
//!
//! The map comes from `CLUSTER SLOTS`, read at connect and then every
//! second in the background (a failover or slot move shows within about a
//! second; until then calls are judged by the old owner's breaker, which
//! costs at most a few refused calls). Each master address keeps the number
//! it was first given, so a breaker's history stays with its master.

use std::sync::{Arc, LazyLock, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{ErrorKind, RedisError, RedisResult, Value};
use sessiond_core::FailureDomain;

use crate::conn::Conn;

const SLOTS: usize = 16_384;

/// How often the map is read again.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// The Cluster slot of `key` (CRC16 of its hash tag, as Redis computes it).
pub(crate) fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let close = key[open + 1..].iter().position(|b| *b == b'}')?;
            Some(&key[open + 1..open + 1 + close])
        })
        .filter(|tag| !tag.is_empty());
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOTS as u16
}

/// The slot of each session shard's hash tag (`{00}` … `{ff}`).
static SHARD_SLOTS: LazyLock<[u16; 256]> =
    LazyLock::new(|| std::array::from_fn(|shard| slot(format!("{{{shard:02x}}}").as_bytes())));

pub(crate) fn shard_slot(shard: u8) -> u16 {
    SHARD_SLOTS[usize::from(shard)]
}

struct Table {
    /// Per slot: 1 + the index of its master in `masters`; 0 when unknown.
    owner: Box<[u32]>,
}

/// Slot → master, for the breakers.
pub(crate) struct ShardMap {
    table: RwLock<Arc<Table>>,
    /// Every master address seen, in the order first seen (append only).
    masters: RwLock<Vec<String>>,
}

impl ShardMap {
    pub(crate) fn new() -> Self {
        Self {
            table: RwLock::new(Arc::new(Table {
                owner: vec![0; SLOTS].into(),
            })),
            masters: RwLock::default(),
        }
    }

    /// The master that serves `slot` (the whole store while unknown).
    pub(crate) fn domain(&self, slot: u16) -> FailureDomain {
        let table = self
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        FailureDomain(table.owner[usize::from(slot)])
    }

    /// The address of the master numbered `domain`.
    pub(crate) fn name(&self, domain: FailureDomain) -> String {
        let masters = self
            .masters
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (domain.0 as usize)
            .checked_sub(1)
            .and_then(|i| masters.get(i))
            .cloned()
            .unwrap_or_else(|| "store".into())
    }

    /// Takes a `CLUSTER SLOTS` answer as the new map.
    pub(crate) fn update(&self, ranges: &[(i64, i64, String, i64)]) {
        let mut masters = self
            .masters
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut owner = vec![0u32; SLOTS];
        for (start, end, host, port) in ranges {
            let address = format!("{host}:{port}");
            let index = match masters.iter().position(|m| *m == address) {
                Some(i) => i,
                None => {
                    masters.push(address);
                    masters.len() - 1
                }
            };
            let (Ok(start), Ok(end)) = (usize::try_from(*start), usize::try_from(*end)) else {
                continue;
            };
            for o in owner.iter_mut().take(end.min(SLOTS - 1) + 1).skip(start) {
                *o = u32::try_from(index + 1).unwrap_or(0);
            }
        }
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(Table {
            owner: owner.into(),
        });
    }

    /// Reads the map from the Cluster once.
    pub(crate) async fn refresh(&self, conn: &mut Conn) -> RedisResult<()> {
        let ranges = cluster_slots(conn).await?;
        self.update(&ranges);
        Ok(())
    }
}

/// Keeps `map` current until the store that owns it is dropped.
pub(crate) fn spawn_refresh(map: Weak<ShardMap>, mut conn: Conn) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(map) = map.upgrade() else { return };
            if let Err(e) = map.refresh(&mut conn).await {
                // The node asked may be the one that is down; the next
                // tick asks another.
                tracing::debug!(error = %e, "could not read the cluster's slot map");
            }
        }
    });
}

fn unexpected() -> RedisError {
    RedisError::from((ErrorKind::Io, "an unexpected CLUSTER SLOTS answer"))
}

/// `CLUSTER SLOTS` as sorted (start, end, master host, master port).
pub(crate) async fn cluster_slots(
    c: &mut impl ConnectionLike,
) -> RedisResult<Vec<(i64, i64, String, i64)>> {
    let reply: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(c).await?;
    let mut out = Vec::new();
    for range in reply {
        let Value::Array(items) = range else {
            return Err(unexpected());
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (items.first(), items.get(1), items.get(2))
        else {
            return Err(unexpected());
        };
        let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1)) else {
            return Err(unexpected());
        };
        let host = match host {
            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            Value::SimpleString(s) | Value::VerbatimString { text: s, .. } => s.clone(),
            _ => return Err(unexpected()),
        };
        out.push((*start, *end, host, *port));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_computed_as_redis_computes_them() {
        // Values from `CLUSTER KEYSLOT`.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            slot(b"a{}b"),
            slot(b"a{}b"),
            "an empty tag hashes the whole key"
        );
        assert_eq!(slot(b"sessiond:{7f}s:abc"), slot(b"7f"));
    }

    #[test]
    fn each_master_keeps_its_number_across_updates() {
        let map = ShardMap::new();
        assert_eq!(
            map.domain(5),
            FailureDomain::WHOLE,
            "unknown before the first map"
        );
        map.update(&[(0, 8191, "a".into(), 1), (8192, 16383, "b".into(), 2)]);
        assert_eq!(map.name(map.domain(5)), "a:1");
        assert_eq!(map.name(map.domain(9000)), "b:2");
        let b = map.domain(9000);
        // b's slots move to a new master c; b keeps its number.
        map.update(&[(0, 8191, "a".into(), 1), (8192, 16383, "c".into(), 3)]);
        assert_eq!(map.name(map.domain(9000)), "c:3");
        assert_eq!(map.name(b), "b:2");
        assert_ne!(map.domain(9000), b);
    }
}
