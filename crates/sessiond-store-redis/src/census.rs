//! How many sessions the store holds, for the `sessiond_sessions_live` gauge.
//!
//! Redis cannot count one application's keys in O(1) when the keyspace is
//! shared (other prefixes, the user records and indexes), so `count`
//! answers from a figure that a background `SCAN` of the session keys
//! refreshes at most once per interval (5 minutes by default). The walk
//! runs on its own task, outside the store's deadlines and circuit breaker
//! (a walk over a million keys is long, not failed), in batches of 1000
//! with a pause between so other commands never wait long behind it; on a
//! Cluster it walks every master. The figure is an estimate: it is as old
//! as the last walk, and `SCAN` may return a key twice while Redis rehashes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisResult, Value};

use crate::conn::Conn;

const BATCH: usize = 1000;
const PAUSE: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    figure: Option<u64>,
    walked_at: Option<Instant>,
    walking: bool,
}

/// The last figure, and whether a walk is under way.
pub(crate) struct Census {
    every: Duration,
    /// `SCAN MATCH` pattern of the session keys ([`session_pattern`]).
    pattern: String,
    state: Mutex<State>,
}

impl Census {
    pub(crate) fn new(every: Duration, prefix: &str) -> Self {
        Self {
            every,
            pattern: session_pattern(prefix),
            state: Mutex::new(State::default()),
        }
    }

    /// The last figure (`None` before the first walk has finished); starts a
    /// walk when the figure is older than the interval and none is running.
    pub(crate) fn figure(self: &Arc<Self>, conn: &Conn) -> Option<u64> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        let due = state.walked_at.is_none_or(|at| at.elapsed() >= self.every);
        if due && !state.walking {
            state.walking = true;
            let (census, mut conn) = (self.clone(), conn.clone());
            tokio::spawn(async move {
                let walked = walk(&mut conn, &census.pattern).await;
                if let Ok(mut state) = census.state.lock() {
                    state.walking = false;
                    match walked {
                        Ok(n) => {
                            state.figure = Some(n);
                            state.walked_at = Some(Instant::now());
                        }
                        // Try again at the next call; keep the old figure meanwhile.
                        Err(e) => tracing::debug!(error = %e, "counting Redis sessions failed"),
                    }
                }
            });
        }
        state.figure
    }
}

/// Counts the keys matching `pattern` on every master.
async fn walk(conn: &mut Conn, pattern: &str) -> RedisResult<u64> {
    match conn {
        Conn::Cluster(cluster) => {
            let nodes: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(cluster)
                .await?;
            let mut total = 0;
            for (host, port) in masters(&nodes) {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port,
                });
                let mut cursor = "0".to_owned();
                loop {
                    let reply = cluster
                        .route_command(scan(&cursor, pattern), routing.clone())
                        .await?;
                    let (next, n) = page(reply)?;
                    total += n;
                    if next == "0" {
                        break;
                    }
                    cursor = next;
                    tokio::time::sleep(PAUSE).await;
                }
            }
            Ok(total)
        }
        _ => {
            let mut total = 0;
            let mut cursor = "0".to_owned();
            loop {
                let reply: Value = scan(&cursor, pattern).query_async(conn).await?;
                let (next, n) = page(reply)?;
                total += n;
                if next == "0" {
                    return Ok(total);
                }
                cursor = next;
                tokio::time::sleep(PAUSE).await;
            }
        }
    }
}

fn scan(cursor: &str, pattern: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("SCAN");
    cmd.arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(BATCH);
    cmd
}

/// The next cursor and how many keys one `SCAN` reply lists.
fn page(reply: Value) -> RedisResult<(String, u64)> {
    let (cursor, keys): (String, Vec<Value>) = redis::from_redis_value(reply)?;
    Ok((cursor, keys.len() as u64))
}

/// The masters in a `CLUSTER NODES` answer that are not failing.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let addr = addr.split('@').next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// A `SCAN MATCH` pattern for the session keys under `prefix`: the prefix
/// with glob characters escaped, then `{xx}s:*`.
fn session_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str("{??}s:*");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_masters_of_a_cluster_nodes_answer_are_read_and_failing_ones_skipped() {
        let nodes = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7003@17003 slave a1 0 0 1 connected
d4 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
";
        assert_eq!(
            masters(nodes),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)]
        );
    }

    #[test]
    fn the_session_pattern_escapes_glob_characters_of_the_prefix() {
        assert_eq!(session_pattern("sessiond:"), "sessiond:{??}s:*");
        assert_eq!(session_pattern("a*b?[c]:"), "a\\*b\\?\\[c\\]:{??}s:*");
    }
}
