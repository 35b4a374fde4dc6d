//! The Redis store passes the shared conformance suite against a real
//! standalone Redis, a Sentinel deployment and a Cluster. One deployment per
//! topology is shared by the cases; each case gets its own key prefix.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
}
