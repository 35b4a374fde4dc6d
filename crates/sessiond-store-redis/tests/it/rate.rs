//! Rate limits on Redis: one GCRA step per request, shared by every store
//! (every node) on the same Redis, at Redis's clock.

use std::time::Duration;

use sessiond_core::{Rate, UserStore};
use sessiond_store_redis::testing;
use sessiond_store_redis::{RedisConfig, RedisStore};

#[tokio::test]
async fn two_nodes_share_one_rate_limit_and_a_refusal_says_when_to_retry() {
    if !testing::redis_available("rate limits") {
        return;
    }
    let server = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let config = RedisConfig::new(server.url());
    let (a, b) = (
        RedisStore::connect(&config).await.unwrap(),
        RedisStore::connect(&config).await.unwrap(),
    );
    let rate = Rate::parse("1/m", Some(5)).unwrap();
    let mut passed = 0;
    let mut remaining = Vec::new();
    for i in 0..12 {
        let store = if i % 2 == 0 { &a } else { &b };
        let o = store
            .rate_step("client:1", &rate)
            .await
            .unwrap()
            .expect("Redis shares limits");
        if o.allowed {
            passed += 1;
            remaining.push(o.remaining);
        } else {
            // The next token is a minute's fifth-of-burst away, at most a minute.
            assert!(
                o.retry_after > Duration::from_secs(50) && o.retry_after <= Duration::from_secs(60),
                "{o:?}"
            );
        }
    }
    assert_eq!(passed, 5, "the burst, across both nodes");
    assert_eq!(remaining, [4, 3, 2, 1, 0]);
    // Another key has its own budget.
    assert!(
        a.rate_step("client:2", &rate)
            .await
            .unwrap()
            .unwrap()
            .allowed
    );
}
