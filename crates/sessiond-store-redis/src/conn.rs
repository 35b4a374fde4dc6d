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
    AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    Value,
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

/// Builds a client for a node's host and port (credentials), for the
/// masters that Sentinel names and the Cluster nodes tracking connects to.
pub(crate) type NodeClient = Arc<dyn Fn(&str, u16) -> RedisResult<Client> + Send + Sync>;

/// Master discovery through Sentinel, re-done after a failover.
pub(crate) struct SentinelConn {
    sentinels: Vec<Client>,
    master_name: String,
    master_client: NodeClient,
    timeouts: Timeouts,
    current: Mutex<Option<MultiplexedConnection>>,
}

impl SentinelConn {
    pub(crate) async fn connect(
        sentinels: Vec<Client>,
        master_name: String,
        master_client: NodeClient,
        timeouts: Timeouts,
    ) -> RedisResult<Conn> {
        let s = Arc::new(Self {
            sentinels,
            master_name,
            master_client,
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
                let client = (self.master_client)(&host, port)?;
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
    nodes: Vec<String>,
    username: Option<&str>,
    password: Option<&str>,
    t: Timeouts,
) -> RedisResult<Conn> {
    let mut b = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(t.connect)
        .response_timeout(t.response)
        .retries(3);
    if let Some(u) = username {
        b = b.username(u);
    }
    if let Some(p) = password {
        b = b.password(p);
    }
    Ok(Conn::Cluster(b.build()?.get_async_connection().await?))
}
