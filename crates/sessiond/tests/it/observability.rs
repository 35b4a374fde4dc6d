//! Metrics, request ids and what the dashboard and alerts rely on, against
//! the real server on the file store (behind the resilience decorator, as
//! `sessiond serve` runs it).

use std::collections::BTreeSet;

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sessiond::StoreHandle;

async fn file_app(dir: &tempfile::TempDir, config: sessiond::ServerConfig) -> TestApp {
    let mut config = config;
    config.store.data_dir = dir.path().to_owned();
    spawn_app_on(StoreHandle::open(&config).await.unwrap(), config).await
}

/// Runs the flows whose metrics the dashboard and the alerts query.
async fn exercise(app: &TestApp) {
    let http = reqwest::Client::new();
    let mut c = app.client();
    assert_eq!(
        c.login("alice", "wrong-password").await,
        StatusCode::UNAUTHORIZED
    );
    let mut c2 = app.login("alice").await;
    assert_eq!(c2.get("/api/profile").await.status(), StatusCode::OK);
    // A CSRF refusal.
    let rb = c2.request(Method::POST, "/api/sessions/revoke-others");
    assert_eq!(c2.send(rb).await.status(), StatusCode::FORBIDDEN);
    // Tokens: issue, a refused bearer token, refresh, reuse after the grace window.
    let pair: Value = token_request(&app.base, "bob", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let r = http
        .get(format!("{}/api/profile", app.base))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let refresh = pair["refresh_token"].as_str().unwrap();
    let r = refresh_request(&app.base, refresh).await;
    assert_eq!(r.status(), StatusCode::OK);
    app.clock.advance(std::time::Duration::from_secs(10));
    let r = refresh_request(&app.base, refresh).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        c2.unsafe_json(Method::POST, "/logout", None).await.status(),
        StatusCode::OK
    );
}

async fn scrape(base: &str) -> String {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    r.text().await.unwrap()
}

/// The sessiond_* metric names a PromQL document refers to, histogram
/// suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("sessiond_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        names.insert(name.to_owned());
        i = end;
    }
    names
}

/// The names `/metrics` exposes (from the sample lines).
fn exposed(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| l.starts_with("sessiond_"))
        .flat_map(metric_names)
        .collect()
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_query_is_exposed_after_a_flow() {
    let dir = tempfile::tempdir().unwrap();
    let app = file_app(&dir, test_config()).await;
    exercise(&app).await;
    let body = scrape(&app.base).await;
    let exposed = exposed(&body);

    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    for file in [
        "deploy/grafana/sessiond.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let wanted = metric_names(&text);
        assert!(wanted.len() >= 5, "{file} queries sessiond metrics");
        // The Redis store's own series exist only on Redis; the near-cache
        // test in tests/it/redis.rs checks them on a real Redis.
        let missing: Vec<_> = wanted
            .difference(&exposed)
            .filter(|name| !name.starts_with("sessiond_redis_"))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} queries metrics /metrics lacks: {missing:?}"
        );
    }
    // Grafana can load the dashboard: valid JSON with panels and queries.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/sessiond.json")).unwrap(),
    )
    .unwrap();
    assert!(dashboard["panels"].as_array().unwrap().len() >= 8);
    app.stop().await;
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_never_by_raw_path() {
    let dir = tempfile::tempdir().unwrap();
    let app = file_app(&dir, test_config()).await;
    let mut c = app.login("alice").await;
    let secret_looking = "AAAAsecretlookingidAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = c
        .unsafe_json(
            Method::DELETE,
            &format!("/api/sessions/{secret_looking}"),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(c.get("/no/such/page").await.status(), StatusCode::NOT_FOUND);
    let body = scrape(&app.base).await;
    assert!(
        body.contains(r#"route="/api/sessions/{id}""#),
        "the template is the label"
    );
    assert!(body.contains(r#"route="unmatched""#));
    assert!(!body.contains(secret_looking), "no raw path in any label");
    assert!(!body.contains("/no/such/page"));
    // Store calls are counted by backend and operation; the breaker is closed.
    assert!(
        body.contains(r#"sessiond_store_operations_total{backend="file",op="load",outcome="ok"}"#)
    );
    assert!(body.contains(r#"sessiond_store_breaker_state{backend="file",scope="store"} 0"#));
    assert!(body.contains("sessiond_store_operation_duration_seconds_bucket{"));
    assert!(body.contains("sessiond_http_request_duration_seconds_bucket{"));
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_is_taken_from_the_caller_or_made_and_always_returned() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-123");
    let made = |r: &reqwest::Response| r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let a = http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    let b = http
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_eq!(made(&a).len(), 24);
    assert_ne!(
        made(&a),
        made(&b),
        "an unusable id is replaced by a fresh one"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener_or_be_turned_off() {
    let port = sessiond_store_redis::testing::free_port();
    let app = spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(sessiond_core::MemoryStore::new())),
        {
            let mut config = test_config();
            config.observability.metrics_listen =
                Some(format!("127.0.0.1:{port}").parse().unwrap());
            config
        },
    )
    .await;
    let r = reqwest::get(format!("{}/metrics", app.base)).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "not on the public listener"
    );
    let body = scrape(&format!("http://127.0.0.1:{port}")).await;
    assert!(body.contains("sessiond_build_info"));
    app.stop().await;

    let off = spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(sessiond_core::MemoryStore::new())),
        {
            let mut config = test_config();
            config.observability.metrics = false;
            config
        },
    )
    .await;
    let r = reqwest::get(format!("{}/metrics", off.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    off.stop().await;
}

#[tokio::test]
async fn the_real_server_logs_one_json_line_per_request_with_its_request_id() {
    let dir = tempfile::tempdir().unwrap();
    seed_file_store(dir.path()).await;
    let mut node = crate::common::process::Node::start_file_with(
        dir.path(),
        &[
            ("SESSIOND_LOG", "info"),
            ("SESSIOND_OBSERVABILITY__LOG_FORMAT", "json"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = http
        .get(format!("{}/healthz", node.base))
        .header("x-request-id", "obs-1")
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "obs-1");
    let r = http
        .get(format!("{}/api/profile", node.base))
        .header("x-request-id", "obs-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = http
        .post(format!("{}/login", node.base))
        .json(&json!({"username": "alice", "password": "not-her-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let stderr = node.stop_and_read_stderr("-TERM").await;

    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let access = |id: &str| {
        lines
            .iter()
            .find(|l| l["target"] == "sessiond::access" && l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no access line for {id} in {stderr}"))
            .clone()
    };
    let first = access("obs-1");
    assert_eq!(first["span"]["route"], "/healthz");
    assert_eq!(first["span"]["method"], "GET");
    assert_eq!(
        first["span"]["trace_id"],
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(first["fields"]["status"], 200);
    assert!(first["fields"]["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(access("obs-2")["fields"]["status"], 401);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["target"] == "sessiond::access")
            .count(),
        3 + 1, // the three requests above and the harness's /healthz poll that got through
        "one line per request: {stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["target"] == "sessiond::security" && l["fields"]["event"] == "login_failed"),
        "security events are distinct, searchable lines"
    );
}
