//! One connection type over the three topologies.
//!
//! - Standalone: `redis`'s `ConnectionManager` (reconnects by itself).
//! - Cluster: `redis`'s `ClusterConnection` (MOVED/ASK, slot refresh, a
//!   replica promoted after its master died).
//! - Sentinel: ours. `redis`'s Sentinel support picks the master once and
//!   never asks again after a failover (upstream issue #1438), so
//!   [`SentinelConn`] asks the sentinels for the master, connects, checks
//!   `ROLE`, and forgets the connection on an I/O error or a `READONLY`
//!   answer (the old master came back as a replica); the next call asks the
//!   sentinels again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, TlsCertificates, Value,
};
use tokio::sync::Mutex;

/// Connection and response deadlines for every topology.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) connect: Duration,
    pub(crate) response: Duration,
}

/// A few multiplexed connections used in turn: replies are parsed on the
/// connection's own task, so one connection would put all parsing on one core.
#[derive(Clone)]
pub(crate) struct Pool {
    conns: Arc<[ConnectionManager]>,
    next: Arc<AtomicUsize>,
}

impl Pool {
    fn pick(&self) -> ConnectionManager {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }
}

#[derive(Clone)]
pub(crate) enum Conn {
    Single(Pool),
    Sentinel(Arc<SentinelConn>),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(p) => {
                let mut c = p.pick();
                Box::pin(async move { c.req_packed_command(cmd).await })
            }
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let mut c = s.current().await?;
                    let r = c.req_packed_command(cmd).await;
                    s.check(r).await
                })
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(p) => {
                let mut c = p.pick();
                Box::pin(async move { c.req_packed_commands(pipeline, offset, count).await })
            }
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => {
                let s = s.clone();
                Box::pin(async move {
                    let mut c = s.current().await?;
                    let r = c.req_packed_commands(pipeline, offset, count).await;
                    s.check(r).await
                })
            }
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

pub(crate) async fn connect_single(
    client: Client,
    t: Timeouts,
    pool_size: usize,
) -> RedisResult<Conn> {
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(t.connect))
        .set_response_timeout(Some(t.response))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(200));
    let mut conns = Vec::with_capacity(pool_size.max(1));
    for _ in 0..pool_size.max(1) {
        conns.push(ConnectionManager::new_with_config(client.clone(), config.clone()).await?);
    }
    Ok(Conn::Single(Pool {
        conns: conns.into(),
        next: Arc::new(AtomicUsize::new(0)),
    }))
}

/// Whether an error means "this connection no longer reaches the master".
fn lost_master(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(
            e.kind(),
            ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
        || e.code() == Some("READONLY")
}

/// How to reach any node of one deployment: plain or TLS (and which CA to
/// trust), and with which credentials. Nodes found at run time (the master
/// a sentinel names, Cluster masters from `CLUSTER SLOTS`) are reached the
/// same way as the ones in the URL.
///
/// Credentials go into the connection settings, never into a URL string:
/// a password with `@`, `/` or `%` in it needs no escaping, and no URL with
/// a password exists to be printed by accident.
#[derive(Clone, Default)]
pub(crate) struct Endpoint {
    pub(crate) tls: bool,
    /// PEM of the CA that signs the servers' certificates; `None`: the
    /// system's trust store.
    pub(crate) root_cert: Option<Vec<u8>>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
}

impl Endpoint {
    /// The connection settings for `host:port`.
    pub(crate) fn info(&self, host_port: &str) -> RedisResult<ConnectionInfo> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let info = format!("{scheme}://{host_port}").into_connection_info()?;
        let mut redis = info.redis_settings().clone().set_db(self.db);
        if let Some(u) = &self.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p);
        }
        Ok(info.set_redis_settings(redis))
    }

    /// The TLS material, when a CA was given.
    pub(crate) fn certificates(&self) -> Option<TlsCertificates> {
        self.root_cert
            .as_ref()
            .filter(|_| self.tls)
            .map(|ca| TlsCertificates {
                client_tls: None,
                root_cert: Some(ca.clone()),
            })
    }

    /// A client for `host:port`.
    pub(crate) fn client(&self, host_port: &str) -> RedisResult<Client> {
        let info = self.info(host_port)?;
        match self.certificates() {
            Some(certs) => Client::build_with_tls(info, certs),
            None => Client::open(info),
        }
    }
}

/// Master discovery through Sentinel, re-done after a failover.
pub(crate) struct SentinelConn {
    sentinels: Vec<Client>,
    master_name: String,
    master: Endpoint,
    timeouts: Timeouts,
    current: Mutex<Option<MultiplexedConnection>>,
}

impl SentinelConn {
    pub(crate) async fn connect(
        sentinels: Vec<Client>,
        master_name: String,
        master: Endpoint,
        timeouts: Timeouts,
    ) -> RedisResult<Conn> {
        let s = Arc::new(Self {
            sentinels,
            master_name,
            master,
            timeouts,
            current: Mutex::new(None),
        });
        s.current().await?;
        Ok(Conn::Sentinel(s))
    }

    fn config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeouts.connect))
            .set_response_timeout(Some(self.timeouts.response))
    }

    /// The connection to the master, discovering it if there is none.
    async fn current(&self) -> RedisResult<MultiplexedConnection> {
        let mut guard = self.current.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = self.discover().await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn check<T>(&self, r: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &r
            && lost_master(e)
        {
            tracing::warn!(error = %e, master = %self.master_name, "lost the Redis master; asking the sentinels again");
            *self.current.lock().await = None;
        }
        r
    }

    async fn discover(&self) -> RedisResult<MultiplexedConnection> {
        self.discover_master().await.map(|(_, c)| c)
    }

    /// A client for the master the sentinels name now (checked with `ROLE`),
    /// for the near-cache's tracking connection.
    pub(crate) async fn master(&self) -> RedisResult<Client> {
        self.discover_master().await.map(|(client, _)| client)
    }

    /// Asks each sentinel in turn for the master and connects to the first
    /// address that really is a master.
    async fn discover_master(&self) -> RedisResult<(Client, MultiplexedConnection)> {
        let mut last: Option<RedisError> = None;
        for sentinel in &self.sentinels {
            let addr: RedisResult<(String, u16)> = async {
                let mut c = sentinel
                    .get_multiplexed_async_connection_with_config(&self.config())
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master_name)
                    .query_async(&mut c)
                    .await
            }
            .await;
            let (host, port) = match addr {
                Ok(a) => a,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            let attempt: RedisResult<(Client, MultiplexedConnection)> = async {
                let client = self.master.client(&format!("{host}:{port}"))?;
                let mut c = client
                    .get_multiplexed_async_connection_with_config(&self.config())
                    .await?;
                let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut c).await?;
                match role.first() {
                    Some(Value::BulkString(r)) if r.as_slice() == b"master" => Ok((client, c)),
                    _ => Err(RedisError::from((
                        ErrorKind::Io,
                        "the address the sentinel named is not a master yet",
                    ))),
                }
            }
            .await;
            match attempt {
                Ok(c) => {
                    tracing::info!(master = %self.master_name, %host, port, "connected to the Redis master");
                    return Ok(c);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| RedisError::from((ErrorKind::Io, "no sentinel answered"))))
    }
}

pub(crate) async fn connect_cluster(
    seeds: &[String],
    endpoint: &Endpoint,
    t: Timeouts,
) -> RedisResult<Conn> {
    let nodes = seeds
        .iter()
        .map(|h| endpoint.info(h))
        .collect::<RedisResult<Vec<_>>>()?;
    // Nodes discovered later (`CLUSTER SLOTS`, MOVED/ASK) are reached with
    // the same TLS settings and credentials as these seeds.
    let mut b = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(t.connect)
        .response_timeout(t.response)
        .retries(3);
    if endpoint.tls {
        b = b.tls(redis::TlsMode::Secure);
    }
    if let Some(certs) = endpoint.certificates() {
        b = b.certs(certs);
    }
    if let Some(u) = &endpoint.username {
        b = b.username(u);
    }
    if let Some(p) = &endpoint.password {
        b = b.password(p);
    }
    Ok(Conn::Cluster(b.build()?.get_async_connection().await?))
}
