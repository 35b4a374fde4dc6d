//! Keeps the near-cache ([`crate::near`]) honest: one tracking connection
//! per master, fed by Redis's client-side caching invalidations.
//!
//! Why our own and not `redis`'s `cache-aio`: that cache keys on raw
//! replies, has no broadcasting mode, and after a reconnect merely orphans
//! old entries (a new epoch) on the connection it knows; it has nothing for
//! a Sentinel failover, and our reads go through our own connection types
//! ([`crate::conn`]). Here one dedicated RESP3 connection per master runs
//! `CLIENT TRACKING ON BCAST PREFIX <prefix>`: Redis then pushes the name
//! of every key under the prefix that any client changes or that expires,
//! whatever connection read it. Data connections need no tracking state of
//! their own, so they may reconnect freely.
//!
//! A gap in the stream disarms and empties the cache until tracking is on
//! again for every master: the connection drops (Redis restarted, `CLIENT
//! KILL`, network), a heartbeat `PING` gets no answer in time, a Sentinel
//! master stops being a master, or a Cluster's slot map changes (failover,
//! slot move, new node).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::aio::MultiplexedConnection;
use redis::{
    AsyncConnectionConfig, Client, ErrorKind, PushInfo, PushKind, RedisError, RedisResult, Value,
};
use sessiond_core::SessionKey;
use tokio::sync::mpsc;

use crate::conn::{Endpoint, SentinelConn, Timeouts};
use crate::near::NearCache;
use crate::shards::cluster_slots;

/// How often every tracking connection is checked (and the topology asked).
const HEARTBEAT: Duration = Duration::from_millis(500);
/// The pause before tracking is tried again after a gap...
const RETRY: Duration = Duration::from_millis(100);
/// ...doubling while it keeps failing, up to this.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// The name tracking connections carry in `CLIENT LIST`.
pub(crate) const CLIENT_NAME: &str = "sessiond-near-cache";

/// Where the masters are.
pub(crate) enum Masters {
    Single(Client),
    Sentinel(Arc<SentinelConn>),
    Cluster { seeds: Vec<Client>, node: Endpoint },
}

/// What the tracking connections were opened against; a change is a gap.
#[derive(Debug, PartialEq, Eq)]
enum Topology {
    Fixed,
    /// Slot ranges and the address of each range's master.
    Slots(Vec<(i64, i64, String, i64)>),
}

fn gap(why: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Io, why))
}

impl Masters {
    /// Clients for every master now, and the topology they came from.
    async fn current(&self, t: Timeouts) -> RedisResult<(Vec<Client>, Topology)> {
        match self {
            Masters::Single(c) => Ok((vec![c.clone()], Topology::Fixed)),
            Masters::Sentinel(s) => Ok((vec![s.master().await?], Topology::Fixed)),
            Masters::Cluster { seeds, node } => {
                let mut last = None;
                for seed in seeds {
                    let slots = async {
                        let mut c = seed
                            .get_multiplexed_async_connection_with_config(&config(t))
                            .await?;
                        cluster_slots(&mut c).await
                    }
                    .await;
                    match slots {
                        Ok(slots) => {
                            let mut masters: Vec<(String, i64)> =
                                slots.iter().map(|s| (s.2.clone(), s.3)).collect();
                            masters.sort();
                            masters.dedup();
                            let clients = masters
                                .iter()
                                .map(|(h, p)| node.client(&format!("{h}:{p}")))
                                .collect::<RedisResult<_>>()?;
                            return Ok((clients, Topology::Slots(slots)));
                        }
                        Err(e) => last = Some(e),
                    }
                }
                Err(last.unwrap_or_else(|| gap("no cluster node answered")))
            }
        }
    }

    /// Checks that the masters are still the ones tracked.
    async fn unchanged(
        &self,
        conns: &mut [MultiplexedConnection],
        was: &Topology,
    ) -> RedisResult<()> {
        match self {
            Masters::Single(_) => Ok(()),
            Masters::Sentinel(_) => {
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conns[0]).await?;
                match role.first() {
                    Some(Value::BulkString(r)) if r.as_slice() == b"master" => Ok(()),
                    _ => Err(gap("the tracked master is no longer a master")),
                }
            }
            Masters::Cluster { .. } => {
                let now = Topology::Slots(cluster_slots(&mut conns[0]).await?);
                if &now == was {
                    Ok(())
                } else {
                    Err(gap("the cluster's slot map changed"))
                }
            }
        }
    }
}

fn config(t: Timeouts) -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(t.connect))
        .set_response_timeout(Some(t.response))
}

/// The same client speaking RESP3 (invalidations arrive as push messages).
fn resp3(client: &Client) -> RedisResult<Client> {
    let info = client.get_connection_info().clone();
    let redis = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    Client::open(info.set_redis_settings(redis))
}

/// Ends the tracking thread when dropped.
pub(crate) struct Stop {
    _sender: tokio::sync::oneshot::Sender<()>,
}

/// Starts tracking on a thread of its own, with its own single-threaded
/// runtime, on which the tracking connections live. An invalidation then
/// waits for the operating system to wake one idle thread, not for a busy
/// worker of the server's runtime to reach the connection's task: under
/// load, that queue is most of the time a revocation takes to land.
pub(crate) fn spawn(
    masters: Masters,
    cache: Arc<NearCache>,
    prefix: String,
    t: Timeouts,
) -> std::io::Result<Stop> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("sessiond-near-cache".into())
        .spawn(move || {
            runtime.block_on(async move {
                tokio::select! {
                    () = run(masters, cache.clone(), prefix, t) => {}
                    _ = stopped => {}
                }
                cache.disarm();
            });
        })?;
    Ok(Stop { _sender: stop })
}

/// Runs until the store is dropped.
async fn run(masters: Masters, cache: Arc<NearCache>, prefix: String, t: Timeouts) {
    let mut failures = 0u32;
    loop {
        let (was_armed, e) = track(&masters, &cache, &prefix, t).await;
        cache.disarm();
        if was_armed {
            failures = 0;
            tracing::warn!(error = %e, "near-cache invalidations interrupted; cache emptied until tracking resumes");
        } else {
            // Tracking could not be set up (Redis down, an ACL without
            // CLIENT TRACKING, an old Redis): back off, so that a setup
            // that cannot work costs a log line and a connection every few
            // seconds, not ten a second. Session checks read Redis meanwhile.
            failures = failures.saturating_add(1);
            tracing::warn!(error = %e, attempt = failures, "near-cache tracking could not be set up; every session check reads Redis until it is");
        }
        let pause = RETRY.saturating_mul(2u32.saturating_pow(failures.min(6)));
        tokio::time::sleep(pause.min(MAX_RETRY)).await;
    }
}

/// Marks a stretch of tracking over when it is left, however it is left.
struct Ended(Arc<AtomicBool>);

impl Drop for Ended {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One unbroken stretch of invalidations; returns whether it got as far as
/// arming the cache, and why it ended.
async fn track(
    masters: &Masters,
    cache: &Arc<NearCache>,
    prefix: &str,
    t: Timeouts,
) -> (bool, RedisError) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Pushes from this stretch's connections count only while it lasts: a
    // connection dropped when it ends reports its disconnection later, and
    // must not disarm the next stretch's cache.
    let live = Arc::new(AtomicBool::new(true));
    let _ended = Ended(live.clone());
    // Applied on the connection's own task as each push is parsed, not
    // handed to this task: under load a hop through the scheduler is most
    // of the time an invalidation takes to land.
    let sender = {
        let (cache, prefix) = (cache.clone(), prefix.to_owned());
        move |push: PushInfo| {
            if !live.load(Ordering::Acquire) {
                return Ok(());
            }
            match push.kind {
                PushKind::Invalidate => invalidate(&cache, &prefix, &push.data),
                PushKind::Disconnection => {
                    cache.disarm();
                    let _ = tx.send(());
                }
                _ => {}
            }
            Ok::<(), redis::aio::SendError>(())
        }
    };
    let opened: RedisResult<_> = async {
        let (clients, topology) = masters.current(t).await?;
        let mut conns = Vec::with_capacity(clients.len());
        for client in &clients {
            let mut c = resp3(client)?
                .get_multiplexed_async_connection_with_config(
                    &config(t).set_push_sender(sender.clone()),
                )
                .await?;
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(CLIENT_NAME)
                .exec_async(&mut c)
                .await?;
            redis::cmd("CLIENT")
                .arg(&["TRACKING", "ON", "BCAST", "PREFIX"][..])
                .arg(prefix)
                .exec_async(&mut c)
                .await?;
            conns.push(c);
        }
        Ok((conns, topology))
    }
    .await;
    let (mut conns, topology) = match opened {
        Ok(x) => x,
        Err(e) => return (false, e),
    };
    // Anything a tracking connection of an earlier stretch reported may
    // still be queued; this stretch starts from an empty cache.
    cache.flush();
    cache.arm();
    tracing::info!(masters = conns.len(), "near-cache armed");
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = rx.recv() => return (true, gap("a tracking connection closed")),
            _ = heartbeat.tick() => {
                for c in &mut conns {
                    if let Err(e) = redis::cmd("PING").exec_async(c).await {
                        return (true, e);
                    }
                }
                if let Err(e) = masters.unchanged(&mut conns, &topology).await {
                    return (true, e);
                }
            }
        }
    }
}

/// Applies one invalidation message: a list of keys, or null for "all"
/// (`FLUSHDB`, `FLUSHALL`).
fn invalidate(cache: &NearCache, prefix: &str, data: &[Value]) {
    for item in data {
        match item {
            Value::Array(keys) => {
                for k in keys {
                    if let Value::BulkString(name) = k
                        && let Some(key) = session_key(prefix, name)
                    {
                        cache.invalidate(&key);
                    }
                }
            }
            Value::Nil => cache.flush(),
            _ => {}
        }
    }
}

/// The session key a Redis key name holds (`{prefix}{xx}s:<base64>`), if any.
pub(crate) fn session_key(prefix: &str, name: &[u8]) -> Option<SessionKey> {
    let rest = name.strip_prefix(prefix.as_bytes())?;
    if rest.len() < 6 || rest[0] != b'{' || rest[3] != b'}' || &rest[4..6] != b"s:" {
        return None;
    }
    let mut bytes = [0u8; 32];
    (URL_SAFE_NO_PAD.decode_slice(&rest[6..], &mut bytes) == Ok(32)).then_some(SessionKey(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_session_keys_under_the_prefix_name_a_session() {
        let key = SessionKey([7; 32]);
        let name = format!("app:{{07}}s:{}", URL_SAFE_NO_PAD.encode(key.0));
        assert_eq!(session_key("app:", name.as_bytes()), Some(key));
        assert_eq!(session_key("other:", name.as_bytes()), None);
        assert_eq!(session_key("app:", b"app:{07}u:alice"), None);
        assert_eq!(session_key("app:", b"app:{att}a:ip:1"), None);
        assert_eq!(session_key("app:", b"app:{07}s:short"), None);
        assert_eq!(session_key("app:", b"app:"), None);
    }
}
