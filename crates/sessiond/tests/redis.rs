//! sessiond on Redis: several nodes share sessions, and a Sentinel failover
//! logs nobody out. Real `sessiond` processes, real Redis processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::process::{Node, add_user};
use common::{PASSWORD, cookie_value, session_set_cookie};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond_store_redis::testing::{self, SentinelDeployment};

async fn login(
    http: &reqwest::Client,
    base: &str,
    user: &str,
) -> Result<(String, String), StatusCode> {
    let r = http
        .post(format!("{base}/login"))
        .json(&json!({"username": user, "password": PASSWORD}))
        .send()
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if r.status() != StatusCode::OK {
        return Err(r.status());
    }
    let cookie = cookie_value(&session_set_cookie(r.headers(), "__Host-sessiond").unwrap());
    let body: Value = r.json().await.unwrap();
    Ok((cookie, body["csrf_token"].as_str().unwrap().to_owned()))
}

async fn profile(http: &reqwest::Client, base: &str, cookie: &str) -> StatusCode {
    http.get(format!("{base}/api/profile"))
        .header("cookie", format!("__Host-sessiond={cookie}"))
        .send()
        .await
        .map_or(StatusCode::BAD_GATEWAY, |r| r.status())
}

#[tokio::test]
async fn a_session_made_on_one_node_works_on_another_and_logout_anywhere_ends_it_everywhere() {
    if !testing::redis_available("multi-node") {
        return;
    }
    let redis = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let url = redis.url();
    add_user(&url, "alice", "user", PASSWORD);
    let (a, b) = (Node::start(&url, &[]).await, Node::start(&url, &[]).await);
    let http = reqwest::Client::new();
    let (cookie, csrf) = login(&http, &a.base, "alice").await.unwrap();
    assert_eq!(
        profile(&http, &b.base, &cookie).await,
        StatusCode::OK,
        "node B accepts node A's session"
    );
    let r = http
        .post(format!("{}/logout", b.base))
        .header("cookie", format!("__Host-sessiond={cookie}"))
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        profile(&http, &a.base, &cookie).await,
        StatusCode::UNAUTHORIZED,
        "node A sees the logout at once"
    );
}

#[tokio::test]
async fn a_sentinel_failover_loses_no_acknowledged_session_and_sessiond_recovers_by_itself() {
    if !testing::redis_available("sentinel failover") {
        return;
    }
    let mut deployment = tokio::task::spawn_blocking(SentinelDeployment::start)
        .await
        .unwrap();
    let url = deployment.url();
    add_user(&url, "alice", "user", PASSWORD);
    let node = Node::start(&url, &[("SESSIOND_REDIS_WAIT_REPLICAS", "1")]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let mut acked: Vec<String> = Vec::new();
    let mut first_failure: Option<Instant> = None;
    let mut recovered_after: Option<Duration> = None;
    let mut failures = 0;
    let started = Instant::now();
    let mut killed = false;
    let old_master = deployment.master.port;
    while started.elapsed() < Duration::from_secs(40) {
        if !killed && acked.len() >= 20 {
            deployment.master.kill(); // SIGKILL the master under load
            killed = true;
        }
        match login(&http, &node.base, "alice").await {
            Ok((cookie, _)) => {
                // Every acknowledged session must verify right away, too.
                assert_eq!(profile(&http, &node.base, &cookie).await, StatusCode::OK);
                acked.push(cookie);
                if let (Some(t), None) = (first_failure, recovered_after) {
                    recovered_after = Some(t.elapsed());
                }
                if recovered_after.is_some() && acked.len() >= 60 {
                    break;
                }
            }
            Err(status) => {
                assert!(killed, "a login failed before any fault: {status}");
                assert_ne!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "an outage must not look like bad credentials"
                );
                failures += 1;
                first_failure.get_or_insert_with(Instant::now);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let window = recovered_after.expect("sessiond did not recover after the failover");
    let new_master = deployment.master_port().unwrap();
    assert_ne!(new_master, old_master, "the sentinels promoted a replica");
    let mut lost = 0;
    for cookie in &acked {
        if profile(&http, &node.base, cookie).await != StatusCode::OK {
            lost += 1;
        }
    }
    eprintln!(
        "FAILOVER sentinel: failed_requests={failures} failure_window_ms={} acknowledged={} lost={lost}",
        window.as_millis(),
        acked.len()
    );
    assert_eq!(lost, 0, "acknowledged sessions were lost in the failover");
}
