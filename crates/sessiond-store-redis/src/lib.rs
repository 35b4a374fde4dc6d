//! The Redis session store: how sessiond runs on many nodes.
//!
//! Works against a standalone Redis, a Sentinel deployment (the master is
//! re-discovered after a failover: [`conn`]) and a Cluster.
//!
//! ## Data model
//! - One hash per session, `{prefix}{<shard>}s:<key>`, with the fields
//!   described in [`codec`]: `m` (the parts that never change field by
//!   field), `e`, `i`, `l`, `v` (expiries, last seen, version) and
//!   `a:<name>` per application attribute. `PEXPIREAT` at whichever expiry
//!   comes first, so Redis drops dead sessions by itself.
//! - One sorted set per user, `{prefix}{<shard>}u:<user>`: session keys
//!   scored by absolute expiry, trimmed as sessions are created.
//! - `<shard>` is two hex digits: the first byte of the session key, which
//!   the engine makes equal to the user's shard ([`sessiond_core::token::user_shard`]).
//!   A user's sessions and index therefore share a hash tag, hence a Cluster
//!   slot, and every multi-key change is one atomic Lua script ([`scripts`]),
//!   except `create` on a Cluster: two single-key scripts (hash, then index
//!   entry), which keep working while the slot migrates (see `create`).
//! - Users: `{prefix}user:<name>` (JSON) and the set `{prefix}users`.
//! - Attempt counters (login throttling): `{prefix}{att}a:<counter>`, an
//!   integer with `PEXPIREAT` at the end of its window. All share the hash
//!   tag `{att}`, so taking an attempt on a user's and an IP's counter is
//!   one script on one Cluster slot (one round trip, atomic). That slot sees
//!   only login traffic; counters are not `WAIT`ed for, since a count lost
//!   in a failover only ends a window early.
//!
//! Verifying a session is one `HGETALL`, or nothing at all when the
//! near-cache ([`near`], kept honest by [`tracking`]) has it: each node
//! keeps the sessions it loaded in memory and Redis pushes the name of every
//! session key that changes. Renewal is one script call, made
//! only when the renewal is due. Deletes remove the hash; the index entry of
//! a deleted session is removed by the next listing or revoke (a missing
//! hash is skipped and its entry dropped).

mod census;
mod codec;
mod conn;
mod near;
mod scripts;
mod shards;
mod tracking;

pub use near::{NearCacheConfig, NearCacheStats};

/// Entry points for the fuzz targets (`fuzz/`): the decoder of a session
/// hash as Redis returns it, which must refuse corrupt fields as `Corrupt`,
/// never panic.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use sessiond_core::{SessionRecord, StoreError};

    /// Decodes an `HGETALL` reply.
    pub fn decode(reply: redis::Value) -> Result<Option<SessionRecord>, StoreError> {
        crate::codec::decode(reply)
    }
}
#[cfg(feature = "testing")]
pub mod testing;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use redis::{AsyncCommands, RedisError, Value};
use sessiond_core::{
    Attempt, AttributeBudget, AttributeChange, CacheRead, Counter, CycleChanges, ExpiryPolicy,
    FailureDomain, Millis, OnLimit, Refund, Renewal, Scope, SessionKey, SessionLimit,
    SessionRecord, SessionStore, StoreError, UserRecord, UserStore,
};

use crate::census::Census;
use crate::codec::{corrupt, decode, decode_meta, encode, encode_meta, encode_secret};
use crate::conn::{Conn, Endpoint, SentinelConn, Timeouts};
use crate::near::NearCache;
use crate::scripts::evalsha;
use crate::shards::ShardMap;

/// How to reach Redis and how to store sessions there. Its `Debug` output
/// masks the passwords.
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user:pass@]host:port[/db]`,
    /// `redis+sentinel://[user:pass@]host:port,host:port/master-name` or
    /// `redis+cluster://[user:pass@]host:port,host:port`; `rediss…` instead
    /// of `redis…` for TLS to every node (the sentinels, the master they
    /// name, every Cluster node, including those found at run time).
    pub url: String,
    /// Prepended to every key, so applications can share one Redis. No `{` or `}`.
    pub prefix: String,
    /// Replica acknowledgements (`WAIT`) that create, cycle and revoke wait
    /// for before answering. 0 (the default) answers once the master has the
    /// write: fastest, but a session created just before the master dies may
    /// be lost in a failover. 1 makes an acknowledged session survive the
    /// master's death at the cost of one replication round trip per write.
    pub wait_replicas: u32,
    /// How long `WAIT` may take; fewer acknowledgements by then is an error.
    pub wait_timeout: Duration,
    /// Connection deadline.
    pub connect_timeout: Duration,
    /// Deadline for each answer.
    pub response_timeout: Duration,
    /// Multiplexed connections to a standalone Redis, used in turn.
    pub pool_size: usize,
    /// For `rediss://`: a PEM file of the CA that signed the server's
    /// certificate, instead of the system's trust store (private CAs).
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// How often the live-session figure (`count`) is refreshed by a
    /// background `SCAN` of the session keys ([`census`]).
    pub count_interval: Duration,
    /// The password for the URL's user (an ACL user, or `default`),
    /// replacing any in the URL: read from a file by the server, so that it
    /// stays out of the process list and the environment. For Sentinel it
    /// is the master's (and its replicas'); the sentinels have their own.
    pub password: Option<String>,
    /// The ACL user the sentinels are asked as (`None`: `default`).
    pub sentinel_username: Option<String>,
    /// The sentinels' password (sentinels configured with `requirepass` or
    /// ACL users); `None` asks them without one.
    pub sentinel_password: Option<String>,
    /// Keep the sessions this node loaded in memory, invalidated by Redis
    /// ([`near`]); `None` asks Redis on every verification.
    pub near_cache: Option<NearCacheConfig>,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |p: &Option<String>| p.as_ref().map(|_| "***");
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("wait_replicas", &self.wait_replicas)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("password", &masked(&self.password))
            .field("sentinel_username", &self.sentinel_username)
            .field("sentinel_password", &masked(&self.sentinel_password))
            .field("near_cache", &self.near_cache)
            .finish_non_exhaustive()
    }
}

/// `url` with any user information replaced by `***`: how a store URL is
/// shown in messages and logs, since it may carry a password.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            // User information ends at the last '@' before the path.
            let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
            match authority.rfind('@') {
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    }
}

impl RedisConfig {
    /// A configuration for `url` with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "sessiond:".into(),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            pool_size: 1,
            tls_ca_file: None,
            count_interval: Duration::from_secs(300),
            password: None,
            sentinel_username: None,
            sentinel_password: None,
            near_cache: Some(NearCacheConfig::default()),
        }
    }
}

/// Errors connecting to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The URL is not one of the accepted forms.
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// The key prefix contains `{` or `}` (it would change hash slots).
    #[error("the key prefix must not contain '{{' or '}}'")]
    Prefix,
    /// Redis could not be reached.
    #[error("cannot connect to Redis")]
    Redis(#[from] RedisError),
    /// The TLS CA file could not be read.
    #[error("cannot read the TLS CA file {0}")]
    Tls(std::path::PathBuf, #[source] std::io::Error),
}

/// Sessions and users in Redis. Cloning shares the connection.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// Where writes that `WAIT` for replicas go, one at a time: a
    /// connection of their own, because Redis blocks a client for as long
    /// as its `WAIT` lasts, and session checks must not queue behind one
    /// (with a replica down, each would wait `wait_timeout`). One at a
    /// time, so that when the first finds the replicas missing the writes
    /// behind it are refused at once rather than each waiting out its own
    /// `WAIT` (and the request deadline). The same as `conn` without `WAIT`.
    durable_conn: Arc<tokio::sync::Mutex<Conn>>,
    /// With a durability shortfall seen, when the next durable write may
    /// try (see [`RedisStore::run_script`]).
    durability: Arc<std::sync::Mutex<Option<Instant>>>,
    prefix: String,
    census: Arc<Census>,
    wait_replicas: u32,
    wait_timeout: Duration,
    cluster: bool,
    /// On a Cluster: which master serves which slot (the breakers' scopes).
    shards: Option<Arc<ShardMap>>,
    near: Option<Arc<NearCache>>,
    /// Stops the tracking thread when the last clone of the store is dropped.
    _tracker: Option<Arc<tracking::Stop>>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// The three deployments a URL can name.
enum Topology {
    Single,
    Sentinel,
    Cluster,
}

/// The parts of a store URL.
struct ParsedUrl {
    scheme: String,
    username: Option<String>,
    password: Option<String>,
    /// The user information had no `:` (`redis://WORD@host`).
    bare_userinfo: bool,
    hosts: Vec<String>,
    path: String,
}

fn parse_url(url: &str) -> Result<ParsedUrl, ConnectError> {
    let bad = || ConnectError::Url(url.split('@').next_back().unwrap_or("").to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts: Vec<String> = hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    if hosts.is_empty() {
        return Err(bad());
    }
    let (username, password, bare) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((n, p)) => (
                (!n.is_empty()).then(|| n.to_owned()),
                Some(p.to_owned()),
                false,
            ),
            None => (None, Some(u.to_owned()), true),
        },
        None => (None, None, false),
    };
    Ok(ParsedUrl {
        scheme: scheme.to_owned(),
        username,
        password,
        bare_userinfo: bare,
        hosts,
        path: path.to_owned(),
    })
}

/// The durable connection, held for one write and its `WAIT`.
type DurableTurn<'a> = tokio::sync::MutexGuard<'a, Conn>;

/// With replicas missing, how often a durable write tries again.
const DURABILITY_PROBE_EVERY: Duration = Duration::from_secs(1);

fn unavailable(e: RedisError) -> StoreError {
    StoreError::unavailable(e)
}

impl RedisStore {
    /// Connects (and, for Sentinel, discovers the master).
    pub async fn connect(config: &RedisConfig) -> Result<Self, ConnectError> {
        if config.prefix.contains(['{', '}']) {
            return Err(ConnectError::Prefix);
        }
        let t = Timeouts {
            connect: config.connect_timeout,
            response: config.response_timeout,
        };
        let (conn, cluster, masters) = Self::open(config, t).await?;
        let durable_conn = if config.wait_replicas > 0 {
            Self::open(config, t).await?.0
        } else {
            conn.clone()
        };
        let (near, tracker) = match config.near_cache {
            Some(c) => {
                let near = Arc::new(NearCache::new(c));
                let stop = tracking::spawn(masters, near.clone(), config.prefix.clone(), t)
                    .map_err(|e| ConnectError::Redis(RedisError::from(e)))?;
                (Some(near), Some(Arc::new(stop)))
            }
            None => (None, None),
        };
        let shards = if cluster {
            let map = Arc::new(ShardMap::new());
            if let Err(e) = map.refresh(&mut conn.clone()).await {
                tracing::warn!(error = %e, "could not read the cluster's slot map yet");
            }
            shards::spawn_refresh(Arc::downgrade(&map), conn.clone());
            Some(map)
        } else {
            None
        };
        Ok(Self {
            near,
            shards,
            _tracker: tracker,
            conn,
            durable_conn: Arc::new(tokio::sync::Mutex::new(durable_conn)),
            durability: Arc::default(),
            prefix: config.prefix.clone(),
            census: Arc::new(Census::new(config.count_interval, &config.prefix)),
            wait_replicas: config.wait_replicas,
            wait_timeout: config.wait_timeout,
            cluster,
        })
    }

    /// One connection to the deployment the URL names; `true` for a
    /// Cluster; where its masters are, for the near-cache's tracking.
    async fn open(
        config: &RedisConfig,
        t: Timeouts,
    ) -> Result<(Conn, bool, tracking::Masters), ConnectError> {
        let mut u = parse_url(&config.url)?;
        if let Some(password) = &config.password {
            // With the password given apart, `redis://NAME@host` names the
            // user (alone it would be the legacy `redis://PASSWORD@host`).
            if u.bare_userinfo {
                u.username = u.password.take();
            }
            u.password = Some(password.clone());
        }
        let (topology, tls) = match u.scheme.as_str() {
            "redis" => (Topology::Single, false),
            "rediss" => (Topology::Single, true),
            "redis+sentinel" => (Topology::Sentinel, false),
            "rediss+sentinel" => (Topology::Sentinel, true),
            "redis+cluster" => (Topology::Cluster, false),
            "rediss+cluster" => (Topology::Cluster, true),
            _ => return Err(ConnectError::Url(format!("unknown scheme {}://", u.scheme))),
        };
        let root_cert = match &config.tls_ca_file {
            Some(ca) if tls => {
                Some(std::fs::read(ca).map_err(|e| ConnectError::Tls(ca.clone(), e))?)
            }
            _ => None,
        };
        let data = Endpoint {
            tls,
            root_cert,
            username: u.username.clone(),
            password: u.password.clone(),
            db: 0,
        };
        let (conn, cluster, masters) = match topology {
            Topology::Single => {
                let db = match u.path.as_str() {
                    "" => 0,
                    db => db.parse().map_err(|_| {
                        ConnectError::Url(format!("database /{db} is not a number"))
                    })?,
                };
                let data = Endpoint { db, ..data };
                let client = data.client(&u.hosts[0])?;
                (
                    conn::connect_single(client.clone(), t, config.pool_size).await?,
                    false,
                    tracking::Masters::Single(client),
                )
            }
            Topology::Sentinel => {
                if u.path.is_empty() {
                    return Err(ConnectError::Url(
                        "redis+sentinel:// needs /master-name".into(),
                    ));
                }
                // The sentinels have credentials of their own (or none).
                let sentinel = Endpoint {
                    username: config.sentinel_username.clone(),
                    password: config.sentinel_password.clone(),
                    ..data.clone()
                };
                let sentinels = u
                    .hosts
                    .iter()
                    .map(|h| sentinel.client(h))
                    .collect::<Result<Vec<_>, _>>()?;
                let conn = SentinelConn::connect(sentinels, u.path.clone(), data, t).await?;
                let Conn::Sentinel(sentinel) = &conn else {
                    unreachable!("SentinelConn::connect makes a Sentinel connection")
                };
                let masters = tracking::Masters::Sentinel(sentinel.clone());
                (conn, false, masters)
            }
            Topology::Cluster => {
                let conn = conn::connect_cluster(&u.hosts, &data, t).await?;
                let seeds = u
                    .hosts
                    .iter()
                    .map(|h| data.client(h))
                    .collect::<Result<Vec<_>, _>>()?;
                (conn, true, tracking::Masters::Cluster { seeds, node: data })
            }
        };
        Ok((conn, cluster, masters))
    }

    fn member(key: &SessionKey) -> String {
        URL_SAFE_NO_PAD.encode(key.0)
    }

    fn session_key(&self, key: &SessionKey) -> String {
        format!("{}{{{:02x}}}s:{}", self.prefix, key.0[0], Self::member(key))
    }

    fn index_key(&self, shard: u8, user: &str) -> String {
        format!("{}{{{shard:02x}}}u:{user}", self.prefix)
    }

    /// The hash and index keys of a new session, which must be in its
    /// user's shard (the engine makes keys to match: `shards_by_user`).
    fn new_session_keys(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
    ) -> Result<(String, String), StoreError> {
        let shard = sessiond_core::token::user_shard(&record.user_id);
        if key.0[0] != shard {
            return Err(StoreError::Corrupt(
                "a session key outside its user's shard".into(),
                None,
            ));
        }
        Ok((
            self.session_key(key),
            self.index_key(shard, &record.user_id),
        ))
    }

    /// The security-event log: one list, newest first, in one slot.
    fn events_key(&self) -> String {
        format!("{}{{ev}}events", self.prefix)
    }

    fn user_key(&self, name: &str) -> String {
        format!("{}user:{name}", self.prefix)
    }

    fn setting_key(&self, name: &str) -> String {
        format!("{}setting:{name}", self.prefix)
    }

    fn attempt_key(&self, counter: &str) -> String {
        format!("{}{{att}}a:{counter}", self.prefix)
    }

    fn rate_key(&self, key: &str) -> String {
        format!("{}rl:{key}", self.prefix)
    }

    /// A cached response: no hash tag, so entries spread over a Cluster.
    fn cache_entry_key(&self, key: &str) -> String {
        format!("{}rc:{key}", self.prefix)
    }

    /// A response-cache generation counter: all in one slot, so one
    /// `MGET` reads every counter a lookup needs.
    fn cache_generation_key(&self, name: &str) -> String {
        format!("{}{{rcg}}g:{name}", self.prefix)
    }

    fn users_key(&self) -> String {
        format!("{}users", self.prefix)
    }

    /// The turn of a write that must be durable (`None` without
    /// `wait_replicas`: write as any other). After a durability shortfall,
    /// durable writes are refused here, before anything is written, except
    /// one a second that tries for real: a replica's outage then costs one
    /// `wait_timeout` a second on the durable connection instead of one per
    /// login, and leaves nothing behind on the master.
    async fn durable_turn(&self) -> Result<Option<DurableTurn<'_>>, StoreError> {
        if self.wait_replicas == 0 {
            return Ok(None);
        }
        let turn = self.durable_conn.lock().await;
        let mut next = self
            .durability
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *next {
            Some(at) if Instant::now() < at => Err(StoreError::NotReplicated {
                acknowledged: 0,
                required: self.wait_replicas,
            }),
            // This caller probes; the next try is a second away.
            Some(_) => {
                *next = Some(Instant::now() + DURABILITY_PROBE_EVERY);
                Ok(Some(turn))
            }
            None => Ok(Some(turn)),
        }
    }

    fn note_durability(&self, durable: bool) {
        let mut next = self
            .durability
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *next = (!durable).then(|| Instant::now() + DURABILITY_PROBE_EVERY);
    }

    /// Best effort: removes a session created on the master but not
    /// acknowledged to anyone (its write failed or was not replicated).
    /// Were this to fail too, the hash would still expire by itself.
    async fn remove_unacknowledged(&self, skey: &str, index: &str, key: &SessionKey) {
        let mut conn = self.conn();
        let _: Result<i64, _> = conn.del(skey).await;
        let _: Result<i64, _> = conn.zrem(index, Self::member(key)).await;
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// Drops this node's cached copy of a session it just wrote (whether
    /// or not the write succeeded: it may have been applied).
    fn forget(&self, key: &SessionKey) {
        if let Some(near) = &self.near {
            near.invalidate(key);
        }
    }

    /// A failed call: the connection may have been lost and re-made, and
    /// with it the certainty that the near-cache saw every change.
    fn lost(&self, e: RedisError) -> StoreError {
        if let Some(near) = &self.near
            && (e.is_io_error() || e.is_connection_dropped() || e.is_timeout())
        {
            near.flush();
        }
        unavailable(e)
    }

    /// What the near-cache holds and has done (`None` when it is off).
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.near.as_ref().map(|n| n.stats())
    }

    /// Runs a script; with a [`DurableTurn`] (a write that must be
    /// durable), on the durable connection with `WAIT` pipelined behind it
    /// (`WAIT` counts only the calling connection's writes). Loads the
    /// script on `NOSCRIPT`.
    async fn run_script(
        &self,
        script: &redis::Script,
        cmd: redis::Cmd,
        turn: Option<DurableTurn<'_>>,
    ) -> Result<Value, StoreError> {
        let durable = turn.is_some();
        let mut conn = turn
            .as_ref()
            .map_or_else(|| self.conn(), |c| Conn::clone(c));
        for attempt in 0..2 {
            let result: Result<Value, RedisError> = if durable {
                let timeout = u64::try_from(self.wait_timeout.as_millis()).unwrap_or(u64::MAX);
                let r: Result<(Value, i64), RedisError> = redis::pipe()
                    .add_command(cmd.clone())
                    .cmd("WAIT")
                    .arg(self.wait_replicas)
                    .arg(timeout)
                    .query_async(&mut conn)
                    .await;
                match r {
                    Ok((v, acked)) if acked >= i64::from(self.wait_replicas) => {
                        self.note_durability(true);
                        Ok(v)
                    }
                    Ok((_, acked)) => {
                        self.note_durability(false);
                        return Err(StoreError::NotReplicated {
                            acknowledged: u32::try_from(acked).unwrap_or(0),
                            required: self.wait_replicas,
                        });
                    }
                    Err(e) => Err(e),
                }
            } else {
                cmd.query_async(&mut conn).await
            };
            match result {
                Err(e)
                    if attempt == 0
                        && e.kind()
                            == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    script.load_async(&mut conn).await.map_err(unavailable)?;
                }
                other => return other.map_err(|e| self.lost(e)),
            }
        }
        Err(StoreError::unavailable("the script could not be loaded"))
    }
}

/// How often a limited create reads the user's index again when it changed
/// between the read and the script (concurrent sign-ins of one user).
const LIMITED_CREATE_ATTEMPTS: usize = 32;

fn int(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        _ => Err(corrupt("a script answer that is not an integer")),
    }
}

fn parse_member(m: &str) -> Result<SessionKey, StoreError> {
    let mut bytes = [0u8; 32];
    if URL_SAFE_NO_PAD.decode_slice(m, &mut bytes) != Ok(32) {
        return Err(corrupt("an index member"));
    }
    Ok(SessionKey(bytes))
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        let (skey, index) = self.new_session_keys(key, record)?;
        let created = if self.cluster {
            // Two single-key steps instead of one script over both keys:
            // while the user's slot migrates between masters, a script over
            // a key that has moved and one that has not gets TRYAGAIN until
            // the move ends (logins would fail for its whole length), but a
            // single-key step is redirected (ASK) and succeeds. The session
            // goes first, so a listing never sees an entry without its hash
            // (it would drop it as stale). Until the index step succeeds
            // nobody holds the token (it is returned only after this), so a
            // failure in between leaves an unusable, unlisted hash, which
            // is deleted here if Redis allows, and expires anyway. Each step
            // is durable on its own: during a move they may land on
            // different masters, and WAIT counts one node's writes.
            let mut cmd = evalsha(&scripts::SESSION_ADD, &[&skey]);
            cmd.arg(record.expires_at());
            for (k, v) in encode(record) {
                cmd.arg(k).arg(v);
            }
            let turn = self.durable_turn().await?;
            let created = match self.run_script(&scripts::SESSION_ADD, cmd, turn).await {
                Err(e @ StoreError::NotReplicated { .. }) => {
                    self.remove_unacknowledged(&skey, &index, key).await;
                    return Err(e);
                }
                other => other?,
            };
            if int(&created)? == 1 {
                let mut cmd = evalsha(&scripts::INDEX_ADD, &[&index]);
                cmd.arg(Self::member(key))
                    .arg(record.absolute_expires_at)
                    .arg(record.created_at);
                let added = match self.durable_turn().await {
                    Ok(turn) => self.run_script(&scripts::INDEX_ADD, cmd, turn).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = added {
                    self.remove_unacknowledged(&skey, &index, key).await;
                    return Err(e);
                }
            }
            created
        } else {
            let mut cmd = evalsha(&scripts::CREATE, &[&skey, &index]);
            cmd.arg(Self::member(key))
                .arg(record.expires_at())
                .arg(record.absolute_expires_at)
                .arg(record.created_at);
            for (k, v) in encode(record) {
                cmd.arg(k).arg(v);
            }
            let turn = self.durable_turn().await?;
            match self.run_script(&scripts::CREATE, cmd, turn).await {
                Err(e @ StoreError::NotReplicated { .. }) => {
                    // The master has a session whose token nobody will get:
                    // unusable, but it would show in the user's device list
                    // (and count towards a session limit) until it expired.
                    self.remove_unacknowledged(&skey, &index, key).await;
                    return Err(e);
                }
                other => other?,
            }
        };
        match int(&created)? {
            0 => Err(StoreError::Conflict),
            _ => Ok(()),
        }
    }

    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        let (skey, index) = self.new_session_keys(key, record)?;
        // One script over the new session, the index and the user's
        // sessions, all in the user's slot (also on a Cluster: the
        // two-step create that survives a slot migration cannot count
        // atomically, so while the user's slot moves, a limited create
        // gets TRYAGAIN and fails like an unavailable store). Every key
        // the script touches is declared: the index is read first, and
        // the script starts over (answer -2) if it changed meanwhile.
        for _ in 0..LIMITED_CREATE_ATTEMPTS {
            let members: Vec<String> = self
                .conn()
                .zrange(&index, 0, -1)
                .await
                .map_err(unavailable)?;
            let parsed = members
                .iter()
                .map(|m| parse_member(m))
                .collect::<Result<Vec<_>, _>>()?;
            let session_keys: Vec<String> = parsed.iter().map(|k| self.session_key(k)).collect();
            let mut keys: Vec<&str> = vec![&skey, &index];
            keys.extend(session_keys.iter().map(String::as_str));
            let mut cmd = evalsha(&scripts::CREATE_LIMITED, &keys);
            cmd.arg(Self::member(key))
                .arg(record.expires_at())
                .arg(record.absolute_expires_at)
                .arg(now)
                .arg(limit.max.max(1))
                .arg(u8::from(limit.on_limit == OnLimit::Refuse))
                .arg(members.len());
            for m in &members {
                cmd.arg(m);
            }
            for (k, v) in encode(record) {
                cmd.arg(k).arg(v);
            }
            let turn = self.durable_turn().await?;
            let answer = match self.run_script(&scripts::CREATE_LIMITED, cmd, turn).await {
                Err(e @ StoreError::NotReplicated { .. }) => {
                    self.remove_unacknowledged(&skey, &index, key).await;
                    return Err(e);
                }
                other => other?,
            };
            let Value::Array(items) = answer else {
                return Err(corrupt("a session-limit answer that is not a list"));
            };
            match items.first().map(int).transpose()? {
                Some(1) => {
                    let mut evicted = Vec::new();
                    for item in &items[1..] {
                        let member = match item {
                            Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                            Value::SimpleString(s) => s.clone(),
                            _ => return Err(corrupt("an evicted member that is not a string")),
                        };
                        let evicted_key = parse_member(&member)?;
                        self.forget(&evicted_key);
                        evicted.push(evicted_key);
                    }
                    return Ok(evicted);
                }
                Some(0) => {
                    return Err(StoreError::SessionLimit {
                        max: limit.max.max(1),
                    });
                }
                Some(-1) => return Err(StoreError::Conflict),
                Some(-2) => continue,
                _ => return Err(corrupt("an unknown session-limit answer")),
            }
        }
        // The index kept changing under us: as busy as a store that does
        // not answer, and as retryable.
        Err(StoreError::unavailable(
            "the user's sessions changed on every attempt to count them",
        ))
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if let Some(record) = self.near.as_ref().and_then(|n| n.get(key, now)) {
            return Ok(Some(record));
        }
        let ticket = self.near.as_ref().and_then(|n| n.ticket(key));
        let reply: Value = redis::cmd("HGETALL")
            .arg(self.session_key(key))
            .query_async(&mut self.conn())
            .await
            .map_err(|e| self.lost(e))?;
        let record = decode(reply)?.filter(|r| r.is_live(now));
        if let (Some(near), Some(ticket), Some(r)) = (&self.near, ticket, &record) {
            near.fill(*key, ticket, r);
        }
        Ok(record)
    }

    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        let skey = self.session_key(key);
        let mut cmd = evalsha(&scripts::RENEW, &[&skey]);
        cmd.arg(now)
            .arg(policy.threshold_millis())
            .arg(policy.idle_millis());
        let renewed = self.run_script(&scripts::RENEW, cmd, None).await;
        self.forget(key);
        Ok(match int(&renewed?)? {
            -2 => Renewal::Gone,
            -1 => Renewal::NotNeeded,
            n => Renewal::Extended {
                idle_expires_at: u64::try_from(n).map_err(|_| corrupt("renewal"))?,
            },
        })
    }

    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        let skey = self.session_key(key);
        let mut cmd = evalsha(&scripts::UPDATE, &[&skey]);
        cmd.arg(now)
            .arg(if_version.map(|v| v.to_string()).unwrap_or_default())
            .arg(budget.max_count)
            .arg(budget.max_bytes);
        for c in changes {
            match &c.value {
                Some(v) => cmd.arg(&c.name).arg("s").arg(v),
                None => cmd.arg(&c.name).arg("d").arg(""),
            };
        }
        let updated = self.run_script(&scripts::UPDATE, cmd, None).await;
        self.forget(key);
        match int(&updated?)? {
            -2 => Err(StoreError::NotFound),
            -3 => Err(StoreError::Conflict),
            -4 => Err(StoreError::TooLarge),
            n => u64::try_from(n).map_err(|_| corrupt("version")),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let deleted: Result<i64, _> = self.conn().del(self.session_key(key)).await;
        self.forget(key);
        Ok(deleted.map_err(|e| self.lost(e))? > 0)
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        let old_key = self.session_key(old);
        let old_meta: Option<Vec<u8>> =
            self.conn().hget(&old_key, "m").await.map_err(unavailable)?;
        let Some(old_meta) = old_meta else {
            return Err(StoreError::NotFound);
        };
        if new.0[0] != old.0[0] {
            return Err(StoreError::Corrupt(
                "a cycled key outside its user's shard".into(),
                None,
            ));
        }
        let mut meta = decode_meta(&old_meta)?;
        if let Some(roles) = &changes.roles {
            meta.roles.clone_from(roles);
        }

        let new_key = self.session_key(new);
        let index = self.index_key(old.0[0], &meta.user_id);
        let mut cmd = evalsha(&scripts::CYCLE, &[&old_key, &new_key, &index]);
        cmd.arg(now)
            .arg(Self::member(old))
            .arg(Self::member(new))
            .arg(old_meta)
            .arg(encode_meta(&meta))
            .arg(
                changes
                    .csrf_secret
                    .as_deref()
                    .map(encode_secret)
                    .unwrap_or_default(),
            );
        let cycled = self
            .run_script(&scripts::CYCLE, cmd, self.durable_turn().await?)
            .await;
        self.forget(old);
        match cycled? {
            Value::Array(items) if matches!(items.as_slice(), [Value::Int(_)]) => {
                Err(if matches!(items[0], Value::Int(-3)) {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                })
            }
            reply => decode(reply)?.ok_or_else(|| corrupt("an empty cycled session")),
        }
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let index = self.index_key(sessiond_core::token::user_shard(user_id), user_id);
        let mut conn = self.conn();
        let members: Vec<String> = conn
            .zrangebyscore(&index, format!("({now}"), "+inf")
            .await
            .map_err(unavailable)?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let keys = members
            .iter()
            .map(|m| parse_member(m))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pipe = redis::pipe();
        for key in &keys {
            pipe.cmd("HGETALL").arg(self.session_key(key));
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        let mut out = Vec::new();
        let mut stale = Vec::new();
        for ((key, reply), member) in keys.into_iter().zip(replies).zip(&members) {
            match decode(reply)? {
                Some(r) if r.user_id == user_id && r.is_live(now) => out.push((key, r)),
                Some(_) => {}
                None => stale.push(member.clone()),
            }
        }
        if !stale.is_empty() {
            // Repair: entries of deleted or expired sessions.
            let _: Result<i64, _> = conn.zrem(&index, stale).await;
        }
        Ok(out)
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        let index = self.index_key(sessiond_core::token::user_shard(user_id), user_id);
        let members: Vec<String> = self
            .conn()
            .zrange(&index, 0, -1)
            .await
            .map_err(unavailable)?;
        if members.is_empty() {
            return Ok(0);
        }
        let parsed = members
            .iter()
            .map(|m| parse_member(m))
            .collect::<Result<Vec<_>, _>>()?;
        let session_keys: Vec<String> = parsed.iter().map(|k| self.session_key(k)).collect();
        let mut keys: Vec<&str> = vec![&index];
        keys.extend(session_keys.iter().map(String::as_str));
        let mut cmd = evalsha(&scripts::DELETE_USER, &keys);
        cmd.arg(except.map(Self::member).unwrap_or_default());
        for m in &members {
            cmd.arg(m);
        }
        let deleted = self
            .run_script(&scripts::DELETE_USER, cmd, self.durable_turn().await?)
            .await;
        for key in &parsed {
            self.forget(key);
        }
        let n = int(&deleted?)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    async fn sweep(&self, _now: Millis, _limit: usize) -> Result<usize, StoreError> {
        // Redis expires session hashes by itself (PEXPIREAT), and index
        // entries are trimmed on create and repaired on listing.
        Ok(0)
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.census.figure(&self.conn))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = match &self.conn {
            // redis-rs sends PING to every master and wants every answer: one
            // master down would make the whole Cluster look down. Ready means
            // some sessions can be served; the masters that are down show as
            // open breakers (`/readyz` lists them).
            Conn::Cluster(c) => {
                use redis::cluster_routing::{
                    MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo,
                };
                let reply = c
                    .clone()
                    .route_command(
                        redis::cmd("PING"),
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllMasters,
                            Some(ResponsePolicy::OneSucceeded),
                        )),
                    )
                    .await
                    .map_err(unavailable)?;
                redis::from_redis_value(reply).map_err(|_| corrupt("PING answer"))?
            }
            _ => redis::cmd("PING")
                .query_async(&mut self.conn())
                .await
                .map_err(unavailable)?,
        };
        if pong == "PONG" {
            Ok(())
        } else {
            Err(corrupt("PING answer"))
        }
    }

    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn shards_by_user(&self) -> bool {
        true
    }

    fn expires_keys_itself(&self) -> bool {
        true
    }

    fn failure_domain(&self, scope: Scope<'_>) -> FailureDomain {
        let Some(map) = &self.shards else {
            return FailureDomain::WHOLE;
        };
        let slot = match scope {
            Scope::Shard(shard) => shards::shard_slot(shard),
            Scope::User(name) => shards::slot(self.user_key(name).as_bytes()),
            Scope::Setting(name) => shards::slot(self.setting_key(name).as_bytes()),
            Scope::Attempts => shards::slot(b"att"),
            Scope::RateLimit(key) => shards::slot(self.rate_key(key).as_bytes()),
            Scope::ResponseCache => shards::slot(b"rcg"),
            Scope::Events => shards::slot(b"ev"),
            _ => return FailureDomain::WHOLE,
        };
        map.domain(slot)
    }

    fn failure_domain_name(&self, domain: FailureDomain) -> String {
        self.shards
            .as_ref()
            .map_or_else(|| "store".into(), |map| map.name(domain))
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(user)
            .map_err(|e| StoreError::Corrupt("user".into(), Some(Box::new(e))))?;
        let mut conn = self.conn();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.user_key(&user.name))
            .arg(json)
            .arg("NX")
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if set.is_none() {
            return Err(StoreError::Conflict);
        }
        let _: i64 = conn
            .sadd(self.users_key(), &user.name)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let json = serde_json::to_string(user)
            .map_err(|e| StoreError::Corrupt("user".into(), Some(Box::new(e))))?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.user_key(&user.name))
            .arg(json)
            .arg("XX")
            .query_async(&mut self.conn())
            .await
            .map_err(unavailable)?;
        set.map(drop).ok_or(StoreError::NotFound)
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let removed: i64 = conn.del(self.user_key(name)).await.map_err(unavailable)?;
        let _: i64 = conn
            .srem(self.users_key(), name)
            .await
            .map_err(unavailable)?;
        Ok(removed == 1)
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let json: Option<String> = self
            .conn()
            .get(self.user_key(name))
            .await
            .map_err(unavailable)?;
        json.map(|j| {
            serde_json::from_str(&j)
                .map_err(|e| StoreError::Corrupt("user".into(), Some(Box::new(e))))
        })
        .transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut names: Vec<String> = self
            .conn()
            .smembers(self.users_key())
            .await
            .map_err(unavailable)?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            if let Some(u) = self.get_user(&name).await? {
                out.push(u);
            }
        }
        Ok(out)
    }
    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // LPUSH puts each at the head: oldest first in, newest first out.
        // MULTI: the push and the trim are one step to every other client.
        let key = self.events_key();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .lpush(&key, events)
            .ignore()
            .ltrim(&key, 0, isize::try_from(keep).unwrap_or(isize::MAX) - 1)
            .ignore();
        pipe.query_async::<()>(&mut self.conn())
            .await
            .map_err(unavailable)
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.conn()
            .lrange(
                self.events_key(),
                0,
                isize::try_from(limit).unwrap_or(isize::MAX) - 1,
            )
            .await
            .map_err(unavailable)
    }

    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn()
            .get(self.setting_key(name))
            .await
            .map_err(unavailable)
    }

    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let key = self.setting_key(name);
        let mut cmd = scripts::evalsha(&scripts::SWAP_SETTING, &[&key]);
        cmd.arg(if expected.is_some() { "1" } else { "0" })
            .arg(expected.unwrap_or_default())
            .arg(value);
        // Durable like a session write: a key ring lost in a failover would
        // invalidate every access token signed with it.
        match self
            .run_script(&scripts::SWAP_SETTING, cmd, self.durable_turn().await?)
            .await?
        {
            Value::Int(n) => Ok(n == 1),
            other => Err(StoreError::Corrupt(
                format!("unexpected script reply {other:?}"),
                None,
            )),
        }
    }

    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError> {
        if counters.is_empty() {
            return Ok(Attempt::Taken);
        }
        let keys: Vec<String> = counters.iter().map(|c| self.attempt_key(&c.key)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = scripts::evalsha(&scripts::TAKE_ATTEMPT, &keys);
        cmd.arg(now.saturating_add(window_ms));
        for c in counters {
            cmd.arg(c.limit);
        }
        let reply = self.run_script(&scripts::TAKE_ATTEMPT, cmd, None).await?;
        Ok(match int(&reply)? {
            n if n < 0 => Attempt::Taken,
            n => Attempt::Refused {
                retry_after_ms: n.unsigned_abs(),
            },
        })
    }

    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        _now: Millis,
    ) -> Result<(), StoreError> {
        if refunds.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = refunds.iter().map(|(k, _)| self.attempt_key(k)).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = scripts::evalsha(&scripts::REFUND_ATTEMPTS, &keys);
        for (_, refund) in refunds {
            cmd.arg(match refund {
                Refund::One => "1",
                Refund::All => "all",
            });
        }
        self.run_script(&scripts::REFUND_ATTEMPTS, cmd, None)
            .await
            .map(drop)
    }

    async fn rate_step(
        &self,
        key: &str,
        rate: &sessiond_core::Rate,
    ) -> Result<Option<sessiond_core::RateOutcome>, StoreError> {
        let k = self.rate_key(key);
        let mut cmd = scripts::evalsha(&scripts::RATE_STEP, &[&k]);
        cmd.arg(rate.emission_us()).arg(rate.tolerance_us());
        let reply = self.run_script(&scripts::RATE_STEP, cmd, None).await?;
        let Value::Array(items) = reply else {
            return Err(corrupt("a rate answer that is not a list"));
        };
        let [allowed, remaining, reset, retry] = items.as_slice() else {
            return Err(corrupt("a rate answer of the wrong length"));
        };
        let micros = |v: &Value| int(v).map(|n| Duration::from_micros(n.unsigned_abs()));
        Ok(Some(sessiond_core::RateOutcome {
            allowed: int(allowed)? == 1,
            remaining: u32::try_from(int(remaining)?.max(0)).unwrap_or(u32::MAX),
            reset: micros(reset)?,
            retry_after: micros(retry)?,
        }))
    }

    fn shares_response_cache(&self) -> bool {
        true
    }

    async fn cache_read(
        &self,
        key: Option<&str>,
        generations: &[String],
    ) -> Result<CacheRead, StoreError> {
        let counters: Vec<String> = generations
            .iter()
            .map(|g| self.cache_generation_key(g))
            .collect();
        // Both in flight at once: one round trip, whatever the topology
        // (on a Cluster the entry and the counters live on different masters).
        let (mut a, mut b) = (self.conn(), self.conn());
        let entry = async {
            match key {
                Some(k) => a.get::<_, Option<Vec<u8>>>(self.cache_entry_key(k)).await,
                None => Ok(None),
            }
        };
        let values = async {
            if counters.is_empty() {
                return Ok(Vec::new());
            }
            redis::cmd("MGET")
                .arg(&counters)
                .query_async::<Vec<Option<u64>>>(&mut b)
                .await
        };
        let (entry, values) = tokio::join!(entry, values);
        Ok(CacheRead {
            entry: entry.map_err(unavailable)?,
            generations: values
                .map_err(unavailable)?
                .into_iter()
                .map(Option::unwrap_or_default)
                .collect(),
        })
    }

    async fn cache_write(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.conn()
            .pset_ex::<_, _, ()>(self.cache_entry_key(key), value, ms)
            .await
            .map_err(unavailable)
    }

    async fn cache_invalidate(
        &self,
        generations: &[String],
        keep: Duration,
    ) -> Result<(), StoreError> {
        if generations.is_empty() {
            return Ok(());
        }
        let counters: Vec<String> = generations
            .iter()
            .map(|g| self.cache_generation_key(g))
            .collect();
        let keys: Vec<&str> = counters.iter().map(String::as_str).collect();
        let mut cmd = scripts::evalsha(&scripts::CACHE_INVALIDATE, &keys);
        cmd.arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX).max(1));
        self.run_script(&scripts::CACHE_INVALIDATE, cmd, None)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisConfig, redact_url};

    #[test]
    fn a_redis_url_in_a_message_never_shows_its_password() {
        assert_eq!(
            redact_url("redis://user:secret@10.0.0.1:6379/0"),
            "redis://***@10.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://:secret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url("redis://h:1/x@y"), "redis://h:1/x@y");
        assert_eq!(
            redact_url("rediss+cluster://u:p@ss@a:1,b:2"),
            "rediss+cluster://***@a:1,b:2"
        );
        assert_eq!(
            redact_url("redis+cluster://a:1,b:2"),
            "redis+cluster://a:1,b:2"
        );
    }

    #[test]
    fn a_configuration_printed_for_debugging_masks_every_password() {
        let mut config = RedisConfig::new("rediss+sentinel://app:url-secret@h:1,h:2/m");
        config.password = Some("file-secret".into());
        config.sentinel_password = Some("sentinel-secret".into());
        let shown = format!("{config:?}");
        for secret in ["url-secret", "file-secret", "sentinel-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("h:1,h:2/m"), "{shown}");
    }
}
