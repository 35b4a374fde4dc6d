//! Fault injection: a real TCP proxy between sessiond and Redis adds latency,
//! cuts connections, blackholes traffic, and Redis itself is killed and
//! restarted, each under steady load. Asserted: no 401 ever (an outage is
//! not a logout), no request past the request deadline, recovery without a
//! restart, and no acknowledged session lost. The figures are printed
//! (`SCENARIO …` lines) for docs/resilience.md:
//! `cargo test -p sessiond --test faults -- --nocapture --test-threads=1`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::process::{Node, add_user};
use crate::common::{PASSWORD, cookie_value, session_set_cookie};
use reqwest::StatusCode;
use serde_json::json;
use sessiond_store_redis::testing::{self, Fault, FaultProxy, RedisProcess, free_port};

#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    took: Duration,
    status: Option<StatusCode>,
}

struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    acked: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn login(http: &reqwest::Client, base: &str) -> Option<String> {
    let r = http
        .post(format!("{base}/login"))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .ok()?;
    (r.status() == StatusCode::OK)
        .then(|| cookie_value(&session_set_cookie(r.headers(), "__Host-sessiond").unwrap()))
}

/// `n` of alice's sessions, one login after another; each must succeed.
async fn logins(http: &reqwest::Client, base: &str, n: usize) -> Vec<String> {
    let mut cookies = Vec::with_capacity(n);
    for i in 0..n {
        let cookie = login(http, base).await;
        cookies.push(cookie.unwrap_or_else(|| panic!("login {i} of {n} failed")));
    }
    cookies
}

async fn profile(http: &reqwest::Client, base: &str, cookie: &str) -> Option<StatusCode> {
    let r = http
        .get(format!("{base}/api/profile"))
        .header("cookie", format!("__Host-sessiond={cookie}"))
        .send()
        .await;
    r.ok().map(|r| r.status())
}

fn start_load(base: &str, cookies: Vec<String>) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (stop, samples, http, base, cookies) = (
            stop.clone(),
            samples.clone(),
            http.clone(),
            base.to_owned(),
            cookies.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let at = Instant::now();
                let status = profile(&http, &base, &cookies[i % cookies.len()]).await;
                samples.lock().unwrap().push(Sample {
                    at,
                    took: at.elapsed(),
                    status,
                });
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let (stop2, acked2, base2) = (stop.clone(), acked.clone(), base.to_owned());
    tasks.push(tokio::spawn(async move {
        while !stop2.load(Ordering::Relaxed) {
            if let Some(c) = login(&http, &base2).await {
                acked2.lock().unwrap().push(c);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }));
    Load {
        stop,
        samples,
        acked,
        tasks,
    }
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * 0.99).round() as usize)
        .copied()
        .unwrap_or_default()
}

/// Runs one fault under load and checks and prints the outcome.
async fn scenario(name: &str, base: &str, cookies: &[String], fault: impl AsyncFnOnce()) {
    let load = start_load(base, cookies.to_vec());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let fault_start = Instant::now();
    fault().await;
    let fault_end = Instant::now();
    // Recovery: the first verification that started after the fault and succeeded.
    let deadline = fault_end + Duration::from_secs(10);
    let recovered = loop {
        let found = load
            .samples
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.at >= fault_end && s.status == Some(StatusCode::OK))
            .map(|s| s.at + s.took);
        if let Some(t) = found {
            break t.duration_since(fault_end);
        }
        assert!(
            Instant::now() < deadline,
            "{name}: sessiond did not recover within 10 s of the fault ending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    load.stop.store(true, Ordering::Relaxed);
    for t in load.tasks {
        t.await.unwrap();
    }
    let samples = load.samples.lock().unwrap().clone();
    assert!(
        samples
            .iter()
            .all(|s| s.status != Some(StatusCode::UNAUTHORIZED)),
        "{name}: an outage answered 401"
    );
    assert!(
        samples.iter().all(|s| s.took < Duration::from_secs(11)),
        "{name}: a request ran past the request deadline"
    );
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= fault_start && s.at < fault_end)
        .collect();
    let errors = during
        .iter()
        .filter(|s| s.status != Some(StatusCode::OK))
        .count();
    let http = reqwest::Client::new();
    let acked = load.acked.lock().unwrap().clone();
    let mut lost = 0;
    for c in &acked {
        if profile(&http, base, c).await != Some(StatusCode::OK) {
            lost += 1;
        }
    }
    eprintln!(
        "SCENARIO {name}: fault_s={:.1} requests_during={} errors_during={} ({:.0}%) p99_during_ms={:.1} recovery_ms={} acknowledged={} lost={lost}",
        fault_end.duration_since(fault_start).as_secs_f64(),
        during.len(),
        errors,
        100.0 * errors as f64 / during.len().max(1) as f64,
        p99(during.iter().map(|s| s.took).collect()).as_secs_f64() * 1e3,
        recovered.as_millis(),
        acked.len()
    );
    assert_eq!(lost, 0, "{name}: acknowledged sessions were lost");
    assert!(
        recovered < Duration::from_secs(5),
        "{name}: recovery took {recovered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessiond_answers_fast_and_honestly_under_redis_faults_and_recovers_by_itself() {
    if !testing::redis_available("fault injection") {
        return;
    }
    // Redis with an fsync-per-write AOF, so a killed and restarted Redis keeps what it acknowledged.
    let aof = ["--appendonly", "yes", "--appendfsync", "always"].map(String::from);
    let mut redis = tokio::task::spawn_blocking(move || RedisProcess::start(free_port(), &aof))
        .await
        .unwrap();
    add_user(&redis.url(), "alice", "user", PASSWORD);
    let proxy = FaultProxy::start(redis.port).await;
    let node = Node::start(&format!("redis://127.0.0.1:{}", proxy.port), &[]).await;
    let http = reqwest::Client::new();
    let cookies = logins(&http, &node.base, 20).await;

    scenario("latency_200ms", &node.base, &cookies, async || {
        proxy.set(Fault::Latency(Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.set(Fault::Pass);
    })
    .await;

    scenario("cut_every_second", &node.base, &cookies, async || {
        for _ in 0..4 {
            proxy.cut_all();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
    .await;

    scenario("blackhole_10s", &node.base, &cookies, async || {
        proxy.set(Fault::Blackhole);
        tokio::time::sleep(Duration::from_secs(10)).await;
        proxy.set(Fault::Pass);
        proxy.cut_all(); // connections that swallowed requests are useless now
    })
    .await;

    scenario("refuse_connections_3s", &node.base, &cookies, async || {
        proxy.set(Fault::Refuse);
        proxy.cut_all();
        tokio::time::sleep(Duration::from_secs(3)).await;
        proxy.set(Fault::Pass);
    })
    .await;

    scenario(
        "redis_killed_and_restarted",
        &node.base,
        &cookies,
        async || {
            redis.kill();
            tokio::time::sleep(Duration::from_secs(3)).await;
            // Blocks this worker for the moments the restart takes; the load runs on the other.
            redis.restart();
        },
    )
    .await;
}

/// Polls `INFO replication` on `port` until it reports `connected_slaves:n`.
async fn until_replicas(port: u16, n: usize) {
    let want = format!("connected_slaves:{n}");
    for _ in 0..200 {
        let info = tokio::task::spawn_blocking(move || {
            testing::command(port, &["INFO", "replication"]).unwrap_or_default()
        })
        .await
        .unwrap();
        if info.contains(&want) && (n == 0 || info.contains("state=online")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the master on port {port} never reported {want}");
}

async fn readyz(http: &reqwest::Client, base: &str) -> serde_json::Value {
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "reads still work: ready or degraded"
    );
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_replica_logins_get_durability_unavailable_and_session_checks_stay_200() {
    if !testing::redis_available("durability shortfall") {
        return;
    }
    let master = tokio::task::spawn_blocking(testing::standalone)
        .await
        .unwrap();
    let master_port = master.port;
    let mut replica = tokio::task::spawn_blocking(move || {
        let of = [
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ];
        RedisProcess::start(free_port(), &of)
    })
    .await
    .unwrap();
    until_replicas(master_port, 1).await;
    add_user(&master.url(), "alice", "user", PASSWORD);
    // Ten of alice's logins at once are more than her throttling allows in
    // flight (5); this test is about durability, so raise it.
    let env = [
        ("SESSIOND_REDIS__WAIT_REPLICAS", "1"),
        ("SESSIOND_LOGIN__FAILURES_PER_USER", "1000"),
    ];
    let node = Node::start(&master.url(), &env).await;
    let http = reqwest::Client::new();
    let cookies = logins(&http, &node.base, 20).await;

    tokio::task::block_in_place(|| replica.kill());
    until_replicas(master_port, 0).await;

    // 200 logins and 2 000 session checks, interleaved on 10 tasks.
    let tasks: Vec<_> = (0..10)
        .map(|t| {
            let (http, base, cookies) = (http.clone(), node.base.clone(), cookies.clone());
            tokio::spawn(async move {
                let mut logins = Vec::new();
                let mut checks = Vec::new();
                for i in 0..200 {
                    if i % 10 == 0 {
                        let r = http
                            .post(format!("{base}/login"))
                            .json(&json!({"username": "alice", "password": PASSWORD}))
                            .send()
                            .await
                            .unwrap();
                        let retry_after = r.headers().get("retry-after").cloned();
                        let status = r.status();
                        let body: serde_json::Value = r.json().await.unwrap();
                        logins.push((status, body["error"]["code"].clone(), retry_after));
                    }
                    let cookie = &cookies[(t * 7 + i) % cookies.len()];
                    checks.push(profile(&http, &base, cookie).await);
                }
                (logins, checks)
            })
        })
        .collect();
    let (mut logins, mut checks) = (Vec::new(), Vec::new());
    for t in tasks {
        let (l, c) = t.await.unwrap();
        logins.extend(l);
        checks.extend(c);
    }
    assert_eq!((logins.len(), checks.len()), (200, 2000));
    for (status, code, retry_after) in &logins {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(code, "durability_unavailable");
        assert!(retry_after.is_some(), "503 with Retry-After");
    }
    let failed = checks
        .iter()
        .filter(|c| **c != Some(StatusCode::OK))
        .count();
    assert_eq!(failed, 0, "every session check answered 200");
    let ready = readyz(&http, &node.base).await;
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["durable_writes"], false);

    // The replica comes back: logins succeed again within seconds.
    tokio::task::block_in_place(|| replica.restart());
    until_replicas(master_port, 1).await;
    let back = Instant::now();
    let cookie = loop {
        if let Some(c) = login(&http, &node.base).await {
            break c;
        }
        assert!(
            back.elapsed() < Duration::from_secs(10),
            "logins did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "SCENARIO durability_shortfall: logins_refused=200 checks_ok=2000 login_recovery_ms={}",
        back.elapsed().as_millis()
    );
    assert_eq!(readyz(&http, &node.base).await["status"], "ready");
    // The 200 sessions the master applied but could not replicate were
    // removed: alice's list holds the 20 from before and the new one.
    let r = http
        .get(format!("{}/api/sessions", node.base))
        .header("cookie", format!("__Host-sessiond={cookie}"))
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = r.json().await.unwrap();
    let sessions = list["sessions"].as_array().map_or(0, Vec::len);
    assert_eq!(sessions, 21, "{list}");
}
