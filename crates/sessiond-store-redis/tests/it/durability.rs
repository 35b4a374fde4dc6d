//! `wait_replicas`: writes wait for replica acknowledgements.

use sessiond_core::testing::{key_for, sample_record};
use sessiond_core::{Clock, SessionStore, SystemClock};
use sessiond_store_redis::testing::{self, SentinelDeployment};
use sessiond_store_redis::{RedisConfig, RedisStore};

#[tokio::test]
async fn with_wait_replicas_a_create_returns_only_once_replicas_have_it() {
    if !testing::redis_available("wait_replicas") {
        return;
    }
    let d = tokio::task::spawn_blocking(SentinelDeployment::start)
        .await
        .unwrap();
    let mut config = RedisConfig::new(d.url());
    config.wait_replicas = 2;
    config.wait_timeout = std::time::Duration::from_secs(3);
    let store = RedisStore::connect(&config).await.unwrap();
    let key = key_for(&store, "durable");
    let record = sample_record("durable", SystemClock.now(), &Default::default());
    let t = std::time::Instant::now();
    store.create(&key, &record).await.unwrap();
    eprintln!("create with WAIT 2 took {:?}", t.elapsed());
    // Asking for more replicas than exist fails instead of pretending.
    config.wait_replicas = 3;
    config.wait_timeout = std::time::Duration::from_millis(100);
    let greedy = RedisStore::connect(&config).await.unwrap();
    let key = key_for(&greedy, "durable");
    assert!(greedy.create(&key, &record).await.is_err());
}
