//! The Redis store passes the shared conformance suite against a real
//! standalone Redis, a Sentinel deployment and a Cluster. One deployment per
//! topology is shared by the cases; each case gets its own key prefix.

use std::sync::{Arc, OnceLock};

use sessiond_core::Backend;
use sessiond_store_redis::testing::{self, ClusterDeployment, RedisProcess, SentinelDeployment};
use sessiond_store_redis::{RedisConfig, RedisStore};

fn prefix() -> String {
    format!(
        "t{}:",
        &sessiond_core::token::random_secret()[..10].replace(['-', '_'], "x")
    )
}

/// `None` (the case is skipped, with one printed line) without redis-server,
/// unless SESSIOND_REQUIRE_REDIS=1 makes that a failure.
async fn connect(
    url: impl FnOnce() -> String + Send + 'static,
    topology: &str,
) -> Option<(Arc<dyn Backend>, ())> {
    if !testing::redis_available(&format!("redis {topology} conformance")) {
        return None;
    }
    let url = tokio::task::spawn_blocking(url).await.unwrap();
    let mut config = RedisConfig::new(url);
    config.prefix = prefix();
    Some((Arc::new(RedisStore::connect(&config).await.unwrap()), ()))
}

/// `count` reports this prefix's sessions only (not another application's,
/// not users or indexes) and follows deletes, through the background walk.
async fn census_case(url: impl FnOnce() -> String + Send + 'static, topology: &str) {
    use sessiond_core::{ExpiryPolicy, NewSession, SessionManager, SessionStore};
    if !testing::redis_available(&format!("redis {topology} session count")) {
        return;
    }
    let url = tokio::task::spawn_blocking(url).await.unwrap();
    let open = |prefix: String| {
        let mut config = RedisConfig::new(url.clone());
        config.prefix = prefix;
        config.count_interval = std::time::Duration::ZERO;
        async move { Arc::new(RedisStore::connect(&config).await.unwrap()) }
    };
    let (ours, theirs) = (open(prefix()).await, open(prefix()).await);
    let session = |user: usize| NewSession {
        user_id: format!("user{user}"),
        roles: vec!["user".into()],
        ..Default::default()
    };
    let mine = SessionManager::new(ours.clone(), ExpiryPolicy::default());
    let mut tokens = Vec::new();
    for i in 0..40 {
        tokens.push(mine.create(session(i % 8)).await.unwrap().0);
    }
    let other = SessionManager::new(theirs.clone(), ExpiryPolicy::default());
    for i in 0..5 {
        other.create(session(i)).await.unwrap();
    }
    let settles_at = |want: u64| {
        let ours = ours.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut last = None;
            while std::time::Instant::now() < deadline {
                last = ours.count().await.unwrap();
                if last == Some(want) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("{topology}: the count stayed at {last:?}, not {want}");
        }
    };
    settles_at(40).await;
    for t in &tokens[..10] {
        assert!(mine.delete(&t.key()).await.unwrap());
    }
    settles_at(30).await;
}

mod standalone {
    use super::*;
    static SERVER: OnceLock<RedisProcess> = OnceLock::new();
    async fn make() -> Option<(Arc<dyn Backend>, ())> {
        connect(
            || SERVER.get_or_init(testing::standalone).url(),
            "standalone",
        )
        .await
    }
    sessiond_core::store_conformance_tests!(make);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_session_count_is_this_prefixs_sessions_and_follows_deletes() {
        census_case(
            || SERVER.get_or_init(testing::standalone).url(),
            "standalone",
        )
        .await;
    }
}

mod sentinel {
    use super::*;
    static DEPLOYMENT: OnceLock<SentinelDeployment> = OnceLock::new();
    async fn make() -> Option<(Arc<dyn Backend>, ())> {
        connect(
            || DEPLOYMENT.get_or_init(SentinelDeployment::start).url(),
            "sentinel",
        )
        .await
    }
    sessiond_core::store_conformance_tests!(make);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_session_count_is_this_prefixs_sessions_and_follows_deletes() {
        census_case(
            || DEPLOYMENT.get_or_init(SentinelDeployment::start).url(),
            "sentinel",
        )
        .await;
    }
}

mod cluster {
    use super::*;
    static DEPLOYMENT: OnceLock<ClusterDeployment> = OnceLock::new();
    async fn make() -> Option<(Arc<dyn Backend>, ())> {
        connect(
            || DEPLOYMENT.get_or_init(ClusterDeployment::start).url(),
            "cluster",
        )
        .await
    }
    sessiond_core::store_conformance_tests!(make);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_session_count_is_this_prefixs_sessions_and_follows_deletes() {
        census_case(
            || DEPLOYMENT.get_or_init(ClusterDeployment::start).url(),
            "cluster",
        )
        .await;
    }
}
