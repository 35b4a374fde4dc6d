//! The near-cache: a session ended on one node is refused by another that
//! had it in memory, on every topology, and nothing cached before a gap in
//! the invalidation stream (a killed tracking connection, a restarted
//! Redis, a failover) is served after it.
//!
//! Every store here keeps cached records for an hour (`max_age`), so a
//! refusal can only come from an invalidation or a flush, never from age.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond_core::testing::{key_for, sample_record};
use sessiond_core::{Clock, SessionKey, SessionStore, SystemClock};
use sessiond_store_redis::testing::{
    self, ClusterDeployment, RedisProcess, SentinelDeployment, command,
};
use sessiond_store_redis::{NearCacheConfig, RedisConfig, RedisStore};

fn config(url: String, prefix: &str) -> RedisConfig {
    let mut c = RedisConfig::new(url);
    c.prefix = prefix.into();
    c.near_cache = Some(NearCacheConfig {
        max_age: Duration::from_secs(3600),
        ..NearCacheConfig::default()
    });
    c
}

fn now() -> u64 {
    SystemClock.now()
}

/// Two nodes' stores on one deployment, both with their cache armed.
async fn nodes(url: String, prefix: &str) -> (Arc<RedisStore>, Arc<RedisStore>) {
    let a = Arc::new(
        RedisStore::connect(&config(url.clone(), prefix))
            .await
            .unwrap(),
    );
    let b = Arc::new(RedisStore::connect(&config(url, prefix)).await.unwrap());
    armed(&a).await;
    armed(&b).await;
    (a, b)
}

async fn armed(store: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.near_cache_stats().unwrap().armed {
        assert!(Instant::now() < deadline, "the near-cache never armed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn session(store: &RedisStore, user: &str) -> SessionKey {
    let key = key_for(store, user);
    store
        .create(&key, &sample_record(user, now(), &Default::default()))
        .await
        .unwrap();
    key
}

/// Loads `key` until an answer comes from memory: the session is cached.
async fn cached(store: &RedisStore, key: &SessionKey) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let hits = store.near_cache_stats().unwrap().hits;
        assert!(store.load(key, now()).await.unwrap().is_some());
        if store.near_cache_stats().unwrap().hits > hits {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the session never came from the cache"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long until `store` refuses `key`; fails after 2 s.
async fn refused(store: &RedisStore, key: &SessionKey) -> Duration {
    let t = Instant::now();
    while store.load(key, now()).await.unwrap().is_some() {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "an ended session was still served from the cache"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    t.elapsed()
}

/// The first answer `store` gives for `key` (retrying store errors, as a
/// client retries a 503, for up to 30 s) is a refusal.
async fn refused_at_once(store: &RedisStore, key: &SessionKey) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match store.load(key, now()).await {
            Ok(None) => return,
            Ok(Some(_)) => panic!("a session deleted in the gap was accepted"),
            Err(e) => {
                assert!(Instant::now() < deadline, "the store never came back: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Logout, revoke-all and a token cycle on node A each end a session that
/// node B answers from memory; B refuses each within the bounded poll.
async fn ends_on_one_node_are_seen_by_the_other(url: String, topology: &str) {
    let (a, b) = nodes(url, &format!("near{}:", testing::free_port())).await;

    let logout = session(&a, "alice").await;
    cached(&b, &logout).await;
    assert!(a.delete(&logout).await.unwrap());
    let waited = refused(&b, &logout).await;
    eprintln!("{topology}: logout refused by the other node after {waited:?}");

    let (one, two, kept) = (
        session(&a, "bob").await,
        session(&a, "bob").await,
        session(&a, "bob").await,
    );
    for k in [&one, &two, &kept] {
        cached(&b, k).await;
    }
    assert_eq!(a.delete_by_user("bob", Some(&kept)).await.unwrap(), 2);
    refused(&b, &one).await;
    refused(&b, &two).await;
    assert!(b.load(&kept, now()).await.unwrap().is_some());

    let cycled = session(&a, "carol").await;
    cached(&b, &cycled).await;
    let fresh = key_for(&*a, "carol");
    a.cycle(&cycled, &fresh, now(), &Default::default())
        .await
        .unwrap();
    refused(&b, &cycled).await;
    assert!(b.load(&fresh, now()).await.unwrap().is_some());

    // An attribute written on A is what B answers next, not its cached copy.
    let k = session(&a, "dave").await;
    cached(&b, &k).await;
    let change = sessiond_core::AttributeChange {
        name: "cart".into(),
        value: Some("3 items".into()),
    };
    a.update_attributes(&k, now(), &[change], None, Default::default())
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        let r = b.load(&k, now()).await.unwrap().unwrap();
        if r.attributes.get("cart").map(String::as_str) == Some("3 items") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(2), "B kept a stale copy");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_standalone_a_session_ended_on_one_node_is_refused_by_another_that_cached_it() {
    if !testing::redis_available("near-cache standalone") {
        return;
    }
    let server = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    ends_on_one_node_are_seen_by_the_other(server.url(), "standalone").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_sentinel_a_session_ended_on_one_node_is_refused_by_another_that_cached_it() {
    if !testing::redis_available("near-cache sentinel") {
        return;
    }
    let d = tokio::task::spawn_blocking(SentinelDeployment::start)
        .await
        .unwrap();
    ends_on_one_node_are_seen_by_the_other(d.url(), "sentinel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_cluster_a_session_ended_on_one_node_is_refused_by_another_that_cached_it() {
    if !testing::redis_available("near-cache cluster") {
        return;
    }
    let d = tokio::task::spawn_blocking(ClusterDeployment::start)
        .await
        .unwrap();
    ends_on_one_node_are_seen_by_the_other(d.url(), "cluster").await;
}

/// The Redis key of a session under `prefix` (to change it behind the store's back).
fn redis_key(prefix: &str, key: &SessionKey) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.0);
    format!("{prefix}{{{:02x}}}s:{encoded}", key.0[0])
}

/// The id of the near-cache's tracking connection on a server.
fn tracking_client(port: u16) -> Option<String> {
    let list = command(port, &["CLIENT", "LIST"])?;
    list.lines()
        .find(|l| l.contains("name=sessiond-near-cache"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|id| id.strip_prefix("id="))
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_while_the_tracking_connection_was_killed_is_refused() {
    if !testing::redis_available("near-cache tracking killed") {
        return;
    }
    let server = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let port = server.port;
    let store = RedisStore::connect(&config(server.url(), "gap:"))
        .await
        .unwrap();
    armed(&store).await;
    let (gone, kept) = (session(&store, "erin").await, session(&store, "erin").await);
    cached(&store, &gone).await;
    cached(&store, &kept).await;
    let flushes = store.near_cache_stats().unwrap().flushes;

    // Kill the tracking connection and delete behind this node's back (a
    // plain DEL from another client) before it can subscribe again.
    let name = redis_key("gap:", &gone);
    tokio::task::spawn_blocking(move || {
        let id = tracking_client(port).expect("a tracking connection");
        assert!(
            command(port, &["CLIENT", "KILL", "ID", &id])
                .unwrap()
                .contains(":1")
        );
        assert!(command(port, &["DEL", &name]).unwrap().contains(":1"));
    })
    .await
    .unwrap();
    refused(&store, &gone).await;
    assert!(
        store.near_cache_stats().unwrap().flushes > flushes,
        "the gap emptied the cache"
    );
    armed(&store).await;
    cached(&store, &kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_redis_restart_nothing_cached_before_it_is_served() {
    if !testing::redis_available("near-cache restart") {
        return;
    }
    // Persistent, so the sessions outlive the restart and only the cache
    // could wrongly remember the one deleted right after it.
    let port = testing::free_port();
    let mut server = tokio::task::spawn_blocking(move || {
        RedisProcess::start(port, &["--appendonly".into(), "yes".into()])
    })
    .await
    .unwrap();
    let store = RedisStore::connect(&config(server.url(), "restart:"))
        .await
        .unwrap();
    armed(&store).await;
    let (gone, kept) = (
        session(&store, "frank").await,
        session(&store, "frank").await,
    );
    cached(&store, &gone).await;
    cached(&store, &kept).await;
    let name = redis_key("restart:", &gone);
    let server = tokio::task::spawn_blocking(move || {
        server.kill();
        server.restart();
        assert!(command(port, &["DEL", &name]).unwrap().contains(":1"));
        server
    })
    .await
    .unwrap();
    refused_at_once(&store, &gone).await;
    armed(&store).await;
    cached(&store, &kept).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sentinel_failover_no_session_deleted_around_it_is_accepted() {
    if !testing::redis_available("near-cache sentinel failover") {
        return;
    }
    let mut d = tokio::task::spawn_blocking(SentinelDeployment::start)
        .await
        .unwrap();
    let mut c = config(d.url(), "fo:");
    c.wait_replicas = 1;
    let store = RedisStore::connect(&c).await.unwrap();
    armed(&store).await;
    let keys: Vec<SessionKey> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(session(&store, "grace").await);
        }
        v
    };
    for k in &keys {
        cached(&store, k).await;
    }
    // Deleted before the failover (replicated: `wait_replicas`).
    assert!(store.delete(&keys[0]).await.unwrap());
    let old = d.master.port;
    let d = tokio::task::spawn_blocking(move || {
        d.master.kill();
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.master_port() == Some(old) {
            assert!(Instant::now() < deadline, "no failover");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    })
    .await
    .unwrap();
    // Deleted on the new master, possibly before this node tracks it.
    let new = d.master_port().unwrap();
    let name = redis_key("fo:", &keys[1]);
    assert!(command(new, &["DEL", &name]).unwrap().contains(":1"));
    for k in &keys[..2] {
        refused_at_once(&store, k).await;
    }
    armed(&store).await;
    cached(&store, &keys[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_cluster_failover_no_session_deleted_around_it_is_accepted() {
    if !testing::redis_available("near-cache cluster failover") {
        return;
    }
    let d = tokio::task::spawn_blocking(ClusterDeployment::start)
        .await
        .unwrap();
    let store = RedisStore::connect(&config(d.url(), "cfo:")).await.unwrap();
    armed(&store).await;
    let user = "heidi";
    let keys = [session(&store, user).await, session(&store, user).await];
    for k in &keys {
        cached(&store, k).await;
    }
    // Promote the replica of the master that holds the user's slot
    // (a manual failover: the old master stays up, as a replica).
    let tag = format!("{{{:02x}}}", keys[0].0[0]);
    let name = redis_key("cfo:", &keys[0]);
    let ports: Vec<u16> = d.nodes.iter().map(|n| n.port).collect();
    tokio::task::spawn_blocking(move || {
        let slot = command(ports[0], &["CLUSTER", "KEYSLOT", &tag]).unwrap();
        let slot = slot.trim().trim_start_matches(':').to_owned();
        let replica = ports
            .iter()
            .copied()
            .find(|p| {
                command(*p, &["ROLE"]).is_some_and(|r| r.contains("slave"))
                    && command(*p, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
                        .is_some_and(|r| r.trim() != ":0")
            })
            .expect("a replica of the slot's master");
        assert!(
            command(replica, &["CLUSTER", "FAILOVER"])
                .unwrap()
                .contains("OK")
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !command(replica, &["ROLE"]).is_some_and(|r| r.contains("master")) {
            assert!(Instant::now() < deadline, "no failover");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Deleted on the new master right after it took over.
        assert!(command(replica, &["DEL", &name]).unwrap().contains(":1"));
    })
    .await
    .unwrap();
    refused_at_once(&store, &keys[0]).await;
    armed(&store).await;
    cached(&store, &keys[1]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_permission_to_track_the_store_works_and_never_serves_from_memory() {
    if !testing::redis_available("near-cache without CLIENT TRACKING") {
        return;
    }
    let acl: Vec<String> = [
        "--user",
        "default",
        "on",
        "nopass",
        "~*",
        "&*",
        "+@all",
        "-client|tracking",
    ]
    .map(String::from)
    .into();
    let server =
        tokio::task::spawn_blocking(move || RedisProcess::start(testing::free_port(), &acl))
            .await
            .unwrap();
    let store = RedisStore::connect(&config(server.url(), "noperm:"))
        .await
        .unwrap();
    let key = session(&store, "ivan").await;
    for _ in 0..20 {
        assert!(store.load(&key, now()).await.unwrap().is_some());
    }
    assert!(store.delete(&key).await.unwrap());
    assert!(store.load(&key, now()).await.unwrap().is_none());
    let stats = store.near_cache_stats().unwrap();
    assert!(!stats.armed);
    assert_eq!(
        stats.hits, 0,
        "nothing may come from memory without invalidations"
    );
}
