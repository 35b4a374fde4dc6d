//! sessiond on Redis: several nodes share sessions, and a Sentinel failover
//! logs nobody out. Real `sessiond` processes, real Redis processes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::{Node, add_user};
use crate::common::{PASSWORD, cookie_value, session_set_cookie, token_request};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond_store_redis::testing::{self, ClusterDeployment, SentinelDeployment};

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

/// Two sessiond processes on one fresh standalone Redis that has the user
/// `alice`; `None` when Redis cannot run here (a failure under CI).
async fn two_nodes_with_alice(what: &str) -> Option<(testing::RedisProcess, Node, Node)> {
    if !testing::redis_available(what) {
        return None;
    }
    let redis = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let url = redis.url();
    add_user(&url, "alice", "user", PASSWORD);
    let (a, b) = (Node::start(&url, &[]).await, Node::start(&url, &[]).await);
    Some((redis, a, b))
}

#[tokio::test]
async fn a_session_made_on_one_node_works_on_another_and_logout_anywhere_ends_it_everywhere() {
    let Some((_redis, a, b)) = two_nodes_with_alice("multi-node").await else {
        return;
    };
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
    let node = Node::start(&url, &[("SESSIOND_REDIS__WAIT_REPLICAS", "1")]).await;
    let old_master = deployment.master.port;
    let outcome = login_through_a_fault(&node, || deployment.master.kill()).await;
    assert_ne!(
        deployment.master_port().unwrap(),
        old_master,
        "the sentinels promoted a replica"
    );
    outcome.report_and_check(&node, "sentinel").await;
}

#[tokio::test]
async fn a_cluster_master_killed_under_load_loses_no_acknowledged_session() {
    if !testing::redis_available("cluster failover") {
        return;
    }
    let mut deployment = tokio::task::spawn_blocking(ClusterDeployment::start)
        .await
        .unwrap();
    let url = deployment.url();
    add_user(&url, "alice", "user", PASSWORD);
    let node = Node::start(&url, &[("SESSIOND_REDIS__WAIT_REPLICAS", "1")]).await;
    // The master that owns alice's sessions: the one node that has her index.
    let http = reqwest::Client::new();
    login(&http, &node.base, "alice").await.unwrap();
    let index = format!(
        "sessiond:{{{:02x}}}u:alice",
        sessiond_core::token::user_shard("alice")
    );
    let owner = deployment
        .nodes
        .iter()
        .position(|n| {
            testing::command(n.port, &["EXISTS", &index]).is_some_and(|r| r.starts_with(":1"))
        })
        .expect("a node owns alice's slot");
    // With one replica per master, the promoted replica has none left, so
    // `WAIT 1` cannot succeed (and sessiond rightly refuses to acknowledge
    // creates) until the dead node is back as its replica: restart it after 6 s,
    // as an operator or a supervisor would.
    let victim = Arc::new(Mutex::new(deployment.nodes.remove(owner)));
    let restarter = victim.clone();
    let outcome = login_through_a_fault(&node, move || {
        restarter.lock().unwrap().kill();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(6));
            restarter.lock().unwrap().restart();
        });
    })
    .await;
    outcome.report_and_check(&node, "cluster").await;
    drop(victim);
}

struct Outcome {
    acked: Vec<String>,
    failures: usize,
    window: Duration,
}

impl Outcome {
    async fn report_and_check(&self, node: &Node, topology: &str) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut lost = 0;
        for cookie in &self.acked {
            if profile(&http, &node.base, cookie).await != StatusCode::OK {
                lost += 1;
            }
        }
        eprintln!(
            "FAILOVER {topology}: failed_requests={} failure_window_ms={} acknowledged={} lost={lost}",
            self.failures,
            self.window.as_millis(),
            self.acked.len()
        );
        assert_eq!(lost, 0, "acknowledged sessions were lost in the failover");
    }
}

/// Logs in (creating sessions) in a loop, injects `fault` after 20
/// acknowledged logins, and goes on until sessiond has recovered and 60
/// sessions were acknowledged in all. Every acknowledged session must verify
/// at once; no failure may be a 401.
async fn login_through_a_fault(node: &Node, fault: impl FnOnce()) -> Outcome {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut fault = Some(fault);
    let mut acked: Vec<String> = Vec::new();
    let mut first_failure: Option<Instant> = None;
    let mut recovered_after: Option<Duration> = None;
    let mut failures = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if acked.len() >= 20
            && let Some(f) = fault.take()
        {
            f(); // SIGKILL under load
        }
        match login(&http, &node.base, "alice").await {
            Ok((cookie, _)) => {
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
                assert!(fault.is_none(), "a login failed before any fault: {status}");
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
    assert!(
        acked.len() >= 60,
        "sessiond did not recover after the fault ({} acknowledged)",
        acked.len()
    );
    Outcome {
        acked,
        failures,
        window: recovered_after.unwrap_or_default(),
    }
}

#[tokio::test]
async fn with_redis_down_a_cookie_request_gets_a_fast_503_never_a_401_and_recovers_after() {
    if !testing::redis_available("redis down") {
        return;
    }
    let mut redis = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let url = redis.url();
    add_user(&url, "alice", "user", PASSWORD);
    let node = Node::start(&url, &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (cookie, _) = login(&http, &node.base, "alice").await.unwrap();
    let tokens: Value = token_request(&node.base, "alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();

    redis.kill();
    // The degradation policy: an access token keeps working on its signature
    // (its 5-minute lifetime bounds the staleness); the cookie fails closed below.
    let r = http
        .get(format!("{}/api/profile", node.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "bearer tokens survive a store outage"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "alice");
    for _ in 0..5 {
        let started = Instant::now();
        let r = http
            .get(format!("{}/api/profile", node.base))
            .header("cookie", format!("__Host-sessiond={cookie}"))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(
            r.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "an outage is not a logout"
        );
        assert!(r.headers().contains_key("retry-after"));
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "store_unavailable");
        // Bounded by the store's connect/response deadlines (1 s each), not a hang.
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
    let r = http
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "readiness reports the outage"
    );

    // Enough failures open the circuit breaker: from then on a request does
    // not even try Redis and fails fast.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let _ = profile(&http, &node.base, &cookie).await;
        let r = http
            .get(format!("{}/readyz", node.base))
            .send()
            .await
            .unwrap();
        if r.headers()
            .get("x-breaker-state")
            .is_some_and(|v| v == "open")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never opened");
    }
    let started = Instant::now();
    assert_eq!(
        profile(&http, &node.base, &cookie).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let fast = started.elapsed();
    assert!(
        fast < Duration::from_millis(100),
        "an open breaker answers at once (took {fast:?})"
    );
    eprintln!("REDIS DOWN: 503 with the breaker open in {fast:?}");

    // Redis comes back (empty: it kept nothing on disk), and sessiond with it.
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    add_user(&redis.url(), "alice", "user", PASSWORD);
    let deadline = Instant::now() + Duration::from_secs(10);
    while login(&http, &node.base, "alice").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "sessiond did not recover after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_nodes_on_one_redis_count_login_failures_together() {
    let Some((_redis, a, b)) = two_nodes_with_alice("shared throttling").await else {
        return;
    };
    let http = reqwest::Client::new();
    // 40 concurrent guesses for alice, half on each node. Counted per node,
    // each would allow the limit (5): up to 10 evaluated.
    let answers = futures::future::join_all((0..40).map(|i| {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        http.post(format!("{base}/login"))
            .json(&json!({"username": "alice", "password": format!("guess-{i}")}))
            .send()
    }))
    .await;
    let statuses: Vec<StatusCode> = answers.into_iter().map(|r| r.unwrap().status()).collect();
    let evaluated = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(evaluated + throttled, 40, "{statuses:?}");
    assert_eq!(evaluated, 5, "the default limit, across both nodes");
    for node in [&a, &b] {
        assert_eq!(
            login(&http, &node.base, "alice").await.unwrap_err(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}

#[tokio::test]
async fn an_acl_user_with_its_password_in_a_file_reaches_a_redis_that_refuses_the_default_user() {
    if !testing::redis_available("ACL user") {
        return;
    }
    let secret = "pw-from-a-file-7f3a";
    let acl: Vec<String> = [
        "--user",
        "default",
        "off",
        "--user",
        "sessiond",
        "on",
        ">pw-from-a-file-7f3a",
        "~*",
        "&*",
        "+@all",
    ]
    .map(String::from)
    .into();
    let redis = tokio::task::spawn_blocking(move || {
        testing::RedisProcess::start(testing::free_port(), &acl)
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("redis-password");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let url = format!("redis://sessiond@127.0.0.1:{}", redis.port);
    let list = |envs: &[(&str, &std::path::Path)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--store", &url, "user", "list"])
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    let refused = list(&[]);
    assert_eq!(refused.status.code(), Some(1), "no password: refused");
    let with_file = list(&[("SESSIOND_REDIS__PASSWORD_FILE", &file)]);
    assert!(
        with_file.status.success(),
        "{}",
        String::from_utf8_lossy(&with_file.stderr)
    );
    let file_env = file.to_str().unwrap();
    let node = Node::start(&url, &[("SESSIOND_REDIS__PASSWORD_FILE", file_env)]).await;
    let r = reqwest::get(format!("{}/readyz", node.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The password is in neither the command line nor the environment.
    let pid = node.child.id();
    for what in ["cmdline", "environ"] {
        let raw = std::fs::read(format!("/proc/{pid}/{what}")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&raw).contains(secret),
            "the password is in /proc/{pid}/{what}"
        );
    }
}

#[tokio::test]
async fn a_tls_sentinel_deployment_with_acl_users_is_reached_with_every_secret_read_from_files() {
    if !testing::redis_available("TLS + ACL Sentinel") {
        return;
    }
    let security = testing::Security {
        tls: Some(Arc::new(testing::TestCa::make())),
        acl: true,
    };
    let ca = security.tls.clone().unwrap();
    let deployment = tokio::task::spawn_blocking(move || SentinelDeployment::start_with(&security))
        .await
        .unwrap();
    let url = deployment
        .url()
        .replacen("://", &format!("://{}@", testing::ACL_USER), 1);
    let dir = tempfile::tempdir().unwrap();
    let (master_file, sentinel_file) = (dir.path().join("master"), dir.path().join("sentinel"));
    std::fs::write(&master_file, format!("{}\n", testing::ACL_PASSWORD)).unwrap();
    std::fs::write(&sentinel_file, testing::SENTINEL_PASSWORD).unwrap();
    let list = |envs: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(["--store", &url, "user", "list"])
            .env("SESSIOND_REDIS__TLS_CA_FILE", &ca.ca)
            .env("SESSIOND_REDIS__PASSWORD_FILE", &master_file)
            .env("SESSIOND_REDIS__SENTINEL_USERNAME", testing::SENTINEL_USER)
            .envs(envs.iter().copied())
            .output()
            .unwrap()
    };
    // Without the sentinels' password: refused, and no secret in the message.
    let refused = list(&[]);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "no sentinel password: refused"
    );
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("***@"), "{message}");
    for secret in [testing::ACL_PASSWORD, testing::SENTINEL_PASSWORD] {
        assert!(!message.contains(secret), "{message}");
    }
    let sentinel_file = sentinel_file.to_str().unwrap();
    let with_files = list(&[("SESSIOND_REDIS__SENTINEL_PASSWORD_FILE", sentinel_file)]);
    assert!(
        with_files.status.success(),
        "{}",
        String::from_utf8_lossy(&with_files.stderr)
    );
}

/// Polls `node` with `cookie` (or a bearer token) until it answers 401;
/// fails after 2 s. Returns how long that took.
async fn refused_on(http: &reqwest::Client, url: &str, auth: (&str, String)) -> Duration {
    let t = Instant::now();
    loop {
        let status = http
            .get(url)
            .header(auth.0, auth.1.clone())
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::UNAUTHORIZED {
            return t.elapsed();
        }
        assert_eq!(status, StatusCode::OK, "{url}");
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{url} still accepted an ended session after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn with_the_near_cache_every_way_of_ending_a_session_on_one_node_is_refused_by_the_other_at_once()
 {
    if !testing::redis_available("near-cache across nodes") {
        return;
    }
    let redis = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let url = redis.url();
    for (name, role) in [("alice", "user"), ("bob", "user"), ("root", "admin")] {
        add_user(&url, name, role, PASSWORD);
    }
    // No grace window, so a replayed refresh token is theft at once.
    let envs = [("SESSIOND_TOKENS__REFRESH_GRACE", "0s")];
    let (a, b) = (
        Node::start(&url, &envs).await,
        Node::start(&url, &envs).await,
    );
    let http = reqwest::Client::new();
    let cookie = |c: &str| ("cookie", format!("__Host-sessiond={c}"));
    let on_b = format!("{}/api/profile", b.base);
    let warm = |c: String| {
        let (http, on_b) = (http.clone(), on_b.clone());
        async move {
            for _ in 0..3 {
                let r = http
                    .get(&on_b)
                    .header("cookie", format!("__Host-sessiond={c}"));
                assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
            }
        }
    };
    let post = |base: &str, path: &str, (c, csrf): &(String, String), body: Value| {
        http.post(format!("{base}{path}"))
            .header("cookie", format!("__Host-sessiond={c}"))
            .header("x-csrf-token", csrf)
            .json(&body)
            .send()
    };

    // Logout on A.
    let s = login(&http, &a.base, "alice").await.unwrap();
    warm(s.0.clone()).await;
    assert_eq!(
        post(&a.base, "/logout", &s, json!({}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let waited = refused_on(&http, &on_b, cookie(&s.0)).await;
    eprintln!("logout on A refused on B after {waited:?}");

    // "Sign out of all other devices" on A.
    let (phone, laptop) = (
        login(&http, &a.base, "alice").await.unwrap(),
        login(&http, &a.base, "alice").await.unwrap(),
    );
    warm(phone.0.clone()).await;
    let r = post(&a.base, "/api/sessions/revoke-others", &laptop, json!({})).await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    refused_on(&http, &on_b, cookie(&phone.0)).await;

    // A password change on A.
    let (phone, laptop) = (
        login(&http, &a.base, "bob").await.unwrap(),
        login(&http, &a.base, "bob").await.unwrap(),
    );
    warm(phone.0.clone()).await;
    let body = json!({"current_password": PASSWORD, "new_password": "another-long-password"});
    let r = post(&a.base, "/api/password", &laptop, body).await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    refused_on(&http, &on_b, cookie(&phone.0)).await;

    // An administrator on A ends alice's sessions.
    let victim = login(&http, &a.base, "alice").await.unwrap();
    warm(victim.0.clone()).await;
    let admin = login(&http, &a.base, "root").await.unwrap();
    let r = http
        .delete(format!("{}/api/admin/users/alice/sessions", a.base))
        .header("cookie", format!("__Host-sessiond={}", admin.0))
        .header("x-csrf-token", &admin.1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    refused_on(&http, &on_b, cookie(&victim.0)).await;

    // Refresh-token theft detected on A ends the family B checks.
    let issued: Value = token_request(&a.base, "alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let (access, stolen) = (
        issued["access_token"].as_str().unwrap().to_owned(),
        issued["refresh_token"].as_str().unwrap().to_owned(),
    );
    let sessions_on_b = format!("{}/api/sessions", b.base);
    let bearer = || ("authorization", format!("Bearer {access}"));
    for _ in 0..3 {
        let r = http.get(&sessions_on_b).header("authorization", bearer().1);
        assert_eq!(r.send().await.unwrap().status(), StatusCode::OK);
    }
    let rotated = crate::common::refresh_request(&a.base, &stolen).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let replayed = crate::common::refresh_request(&a.base, &stolen).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    refused_on(&http, &sessions_on_b, bearer()).await;

    // B answered from memory all along (the gauges refresh every 5 s).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let metrics = http
            .get(format!("{}/metrics", b.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let hits: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("sessiond_redis_near_cache_hits_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if hits >= 10.0 {
            // What the alert rules query about the cache is exposed too.
            assert!(
                metrics.contains("sessiond_redis_near_cache_armed 1"),
                "{metrics}"
            );
            for name in [
                "_misses_total",
                "_invalidations_total",
                "_flushes_total",
                "_entries",
            ] {
                assert!(
                    metrics.contains(&format!("sessiond_redis_near_cache{name} ")),
                    "{name}"
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B never answered from its near-cache"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(redis);
}

#[tokio::test]
async fn on_a_cluster_one_dead_master_refuses_only_its_own_sessions_and_they_recover_with_it() {
    if !testing::redis_available("sick shard") {
        return;
    }
    let cluster =
        tokio::task::spawn_blocking(|| ClusterDeployment::start_with(false, &Default::default()))
            .await
            .unwrap();
    let url = cluster.url();
    let http = reqwest::Client::new();
    let users: Vec<String> = (0..18).map(|i| format!("shard-user-{i}")).collect();
    for u in &users {
        add_user(&url, u, "user", PASSWORD);
    }
    let node = Node::start(&url, &[]).await;
    let mut cookies = Vec::new();
    for u in &users {
        cookies.push(login(&http, &node.base, u).await.unwrap().0);
    }
    // The master that holds the first user's sessions goes down; each
    // user's sessions live on the master of their shard's slot.
    let victim = (0..3)
        .find(|&i| {
            let shard = sessiond_core::token::user_shard(&users[0]);
            let slot = testing::shard_slot(shard);
            cluster
                .slots_of(i)
                .iter()
                .any(|(a, b)| (*a..=*b).contains(&slot))
        })
        .unwrap();
    let on_victim = |user: &str| {
        let slot = testing::shard_slot(sessiond_core::token::user_shard(user));
        cluster
            .slots_of(victim)
            .iter()
            .any(|(a, b)| (*a..=*b).contains(&slot))
    };
    let (sick, healthy): (Vec<_>, Vec<_>) =
        users.iter().zip(&cookies).partition(|(u, _)| on_victim(u));
    assert!(!sick.is_empty() && !healthy.is_empty());
    let mut cluster = cluster;
    let victim_addr = cluster.nodes[victim].addr();
    cluster.nodes[victim].kill();

    // 2 000 checks of sessions on the two live masters, interleaved with
    // checks of the dead master's sessions.
    let started = Instant::now();
    let mut sick_answers = Vec::new();
    for i in 0..2_000 {
        let (_, cookie) = healthy[i % healthy.len()];
        assert_eq!(
            profile(&http, &node.base, cookie).await,
            StatusCode::OK,
            "check {i} of a session on a live master"
        );
        if i % 4 == 0 {
            let (_, cookie) = sick[i % sick.len()];
            let t = Instant::now();
            let status = profile(&http, &node.base, cookie).await;
            // Refused as unavailable, never as logged out.
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "check {i}");
            sick_answers.push((t - started, t.elapsed()));
        }
    }
    // The dead master's breaker is open, and only its: fast refusals.
    let ready: Value = http
        .get(format!("{}/readyz", node.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_eq!(ready["impaired_shards"], json!([victim_addr]), "{ready}");
    let slow: Vec<_> = sick_answers
        .iter()
        .filter(|(_, took)| *took > Duration::from_millis(100))
        .collect();
    let last_slow = slow.last().map_or(Duration::ZERO, |(at, _)| *at);
    let mut took: Vec<Duration> = sick_answers.iter().map(|(_, d)| *d).collect();
    took.sort();
    eprintln!(
        "sick shard: {} refusals, {} over 100 ms (the last {last_slow:?} after the kill), median {:?}, max {:?}",
        took.len(),
        slow.len(),
        took[took.len() / 2],
        took[took.len() - 1]
    );
    assert!(
        took[took.len() / 2] < Duration::from_millis(100),
        "the dead master's sessions were not refused fast: median {:?}",
        took[took.len() / 2]
    );

    // The master comes back with its data: every session is served again.
    let back = Instant::now();
    let _cluster = tokio::task::spawn_blocking(move || {
        cluster.nodes[victim].restart();
        cluster
    })
    .await
    .unwrap();
    for (user, cookie) in &sick {
        loop {
            match profile(&http, &node.base, cookie).await {
                StatusCode::OK => break,
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(
                        back.elapsed() < Duration::from_secs(20),
                        "{user}'s session was still refused 20 s after its master came back"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => panic!("{user}: {other} after its master came back"),
            }
        }
    }
    eprintln!(
        "sick shard: all sessions served again {:?} after the restart began",
        back.elapsed()
    );
    for (_, cookie) in &healthy {
        assert_eq!(profile(&http, &node.base, cookie).await, StatusCode::OK);
    }
}
