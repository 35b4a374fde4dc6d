//! `rediss…`: the store talks to real TLS-only Redis deployments
//! (standalone, Sentinel, Cluster), verifying certificates against a given
//! CA, and refuses what it cannot verify. The Sentinel and Cluster ones
//! also refuse the default user: ACL users everywhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond_core::testing::{key_for, sample_record};
use sessiond_core::{Clock, SessionStore, SystemClock};
use sessiond_store_redis::testing::{
    self, ACL_PASSWORD, ACL_USER, ClusterDeployment, RedisProcess, SENTINEL_PASSWORD,
    SENTINEL_USER, Security, SentinelDeployment, TestCa, free_port,
};
use sessiond_store_redis::{RedisConfig, RedisStore};

#[tokio::test]
async fn a_tls_redis_serves_sessions_and_an_unverifiable_certificate_is_refused() {
    if !testing::redis_available("redis TLS") {
        return;
    }
    let ca = TestCa::make();
    let tls_port = free_port();
    let server = RedisProcess::start_tls(tls_port, &ca.server_args());
    let mut config = RedisConfig::new(format!("rediss://127.0.0.1:{}", server.port));
    config.tls_ca_file = Some(ca.ca.clone().into());
    let store = RedisStore::connect(&config).await.unwrap();
    let key = key_for(&store, "tls");
    let record = sample_record("tls", SystemClock.now(), &Default::default());
    store.create(&key, &record).await.unwrap();
    assert_eq!(
        store.load(&key, SystemClock.now()).await.unwrap(),
        Some(record)
    );

    // Without the CA the certificate cannot be verified: no connection.
    config.tls_ca_file = None;
    assert!(RedisStore::connect(&config).await.is_err());
    // Plain text to a TLS port does not work either.
    assert!(
        RedisStore::connect(&RedisConfig::new(format!(
            "redis://127.0.0.1:{}",
            server.port
        )))
        .await
        .is_err()
    );
}

fn secured() -> Security {
    Security {
        tls: Some(Arc::new(TestCa::make())),
        acl: true,
    }
}

/// `url` as the ACL user (its password given apart), trusting `ca`.
fn secured_config(url: &str, ca: &TestCa) -> RedisConfig {
    let mut config = RedisConfig::new(url.replacen("://", &format!("://{ACL_USER}@"), 1));
    config.tls_ca_file = Some(ca.ca.clone().into());
    config.password = Some(ACL_PASSWORD.into());
    config
}

/// Without the CA the certificates cannot be verified, and the servers
/// speak no plain text: no connection either way.
async fn refused_without_the_ca_or_in_plain_text(config: &RedisConfig) {
    let mut unverified = config.clone();
    unverified.tls_ca_file = None;
    assert!(RedisStore::connect(&unverified).await.is_err());
    let mut plain = config.clone();
    plain.url = config.url.replacen("rediss+", "redis+", 1);
    assert!(RedisStore::connect(&plain).await.is_err());
}

/// Sessions of 64 users (64 shards, so every master of a Cluster holds
/// some) are written and read back; then the near-cache arms, which needs
/// a RESP3 tracking connection to every master over TLS as the ACL user.
async fn serves_sessions(store: &RedisStore) {
    let now = SystemClock.now();
    for i in 0..64 {
        let user = format!("user{i}");
        let key = key_for(store, &user);
        let record = sample_record(&user, now, &Default::default());
        store.create(&key, &record).await.unwrap();
        assert_eq!(store.load(&key, now).await.unwrap(), Some(record));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.near_cache_stats().unwrap().armed {
        assert!(Instant::now() < deadline, "the near-cache never armed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tls_cluster_with_an_acl_user_serves_sessions_on_every_master() {
    if !testing::redis_available("redis TLS cluster") {
        return;
    }
    let security = secured();
    let ca = security.tls.clone().unwrap();
    let sec = security.clone();
    let cluster = tokio::task::spawn_blocking(move || ClusterDeployment::start_with(false, &sec))
        .await
        .unwrap();
    let config = secured_config(&cluster.url(), &ca);
    assert!(config.url.starts_with("rediss+cluster://"), "{config:?}");
    let store = RedisStore::connect(&config).await.unwrap();
    serves_sessions(&store).await;
    // Every master holds sessions: the nodes the seeds redirected to were
    // reached over TLS as the ACL user too.
    for node in &cluster.nodes {
        let keys = security.ask(node.port, &["DBSIZE"]).unwrap();
        assert_ne!(keys.trim(), "0", "node {} holds nothing", node.port);
    }

    let mut anonymous = config.clone();
    anonymous.password = None;
    assert!(RedisStore::connect(&anonymous).await.is_err());
    refused_without_the_ca_or_in_plain_text(&config).await;
}

#[tokio::test]
async fn a_tls_sentinel_deployment_with_acl_users_on_the_sentinels_and_the_master_serves_sessions()
{
    if !testing::redis_available("redis TLS sentinel") {
        return;
    }
    let security = secured();
    let ca = security.tls.clone().unwrap();
    let sec = security.clone();
    let deployment = tokio::task::spawn_blocking(move || SentinelDeployment::start_with(&sec))
        .await
        .unwrap();
    let mut config = secured_config(&deployment.url(), &ca);
    assert!(config.url.starts_with("rediss+sentinel://"), "{config:?}");
    config.sentinel_username = Some(SENTINEL_USER.into());
    config.sentinel_password = Some(SENTINEL_PASSWORD.into());
    let store = RedisStore::connect(&config).await.unwrap();
    serves_sessions(&store).await;

    // The sentinels refuse a client without their password, even one with
    // the master's; and nothing works in plain text.
    let mut no_sentinel_password = config.clone();
    no_sentinel_password.sentinel_password = None;
    let e = RedisStore::connect(&no_sentinel_password)
        .await
        .unwrap_err();
    let message = format!("{e} {e:?} {:?}", std::error::Error::source(&e));
    for secret in [ACL_PASSWORD, SENTINEL_PASSWORD] {
        assert!(!message.contains(secret), "{message}");
    }
    refused_without_the_ca_or_in_plain_text(&config).await;
}
