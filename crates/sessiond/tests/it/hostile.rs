//! Hostile clients (issue 12): bursts of guesses, malformed hosts, stalled
//! connections. Each test fails on the code before the fix it pins.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// Sends `n` concurrent JSON logins; returns how many got each status.
async fn burst(app: &TestApp, logins: Vec<(String, String)>) -> (usize, usize, usize) {
    let client = reqwest::Client::new();
    let answers = futures::future::join_all(logins.into_iter().map(|(user, password)| {
        let client = client.clone();
        let url = format!("{}/login", app.base);
        async move {
            client
                .post(url)
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    }))
    .await;
    let count = |s: StatusCode| answers.iter().filter(|a| **a == s).count();
    let (ok, unauthorized, throttled) = (
        count(StatusCode::OK),
        count(StatusCode::UNAUTHORIZED),
        count(StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(
        ok + unauthorized + throttled,
        answers.len(),
        "only 200, 401 or 429: {answers:?}"
    );
    (ok, unauthorized, throttled)
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_for_one_user_gets_at_most_the_limit_evaluated() {
    let app = spawn_app().await;
    let limit = app.config.login.failures_per_user as usize;
    let guesses = (0..50)
        .map(|i| ("alice".to_owned(), format!("wrong-guess-{i}")))
        .collect();
    let (ok, unauthorized, throttled) = burst(&app, guesses).await;
    assert_eq!(ok, 0);
    assert!(
        unauthorized <= limit,
        "{unauthorized} guesses were evaluated, the limit is {limit}"
    );
    assert_eq!(unauthorized + throttled, 50);
    // The right password is refused too now: the window is used up.
    let mut c = app.client();
    assert_eq!(
        c.login("alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_burst_of_concurrent_failures_from_one_ip_gets_at_most_the_ip_limit_evaluated() {
    // A queue long enough for the whole burst: this is about the IP limit,
    // not the hashing queue (a test of its own below).
    let app = app_with(|c| c.login.hash_queue = 1000).await;
    let limit = app.config.login.failures_per_ip as usize;
    // Distinct user names, so only the per-IP limit applies.
    let guesses = (0..limit + 10)
        .map(|i| (format!("nobody{i}"), "wrong-password".to_owned()))
        .collect();
    let (ok, unauthorized, throttled) = burst(&app, guesses).await;
    assert_eq!(ok, 0);
    assert!(
        unauthorized <= limit,
        "{unauthorized} failures were evaluated, the IP limit is {limit}"
    );
    assert_eq!(unauthorized + throttled, limit + 10);
    assert!(throttled >= 10);
}

/// Writes `raw` on a new connection and returns the status line of the answer.
async fn raw_status(addr: std::net::SocketAddr, raw: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_request_without_exactly_one_valid_host_is_a_400() {
    let app = spawn_app().await;
    let ok = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(app.addr, ok).await, "HTTP/1.1 200 OK");
    for bad in [
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: user@evil.example\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: a b\r\nConnection: close\r\n\r\n",
    ] {
        assert_eq!(
            raw_status(app.addr, bad).await,
            "HTTP/1.1 400 Bad Request",
            "{bad:?}"
        );
    }
    // HTTP/1.0 predates Host.
    let old = "GET /healthz HTTP/1.0\r\n\r\n";
    assert_eq!(raw_status(app.addr, old).await, "HTTP/1.0 200 OK");
}

#[tokio::test]
async fn allowed_hosts_refuse_other_names_and_the_json_says_why() {
    let mut config = test_config();
    config.server.allowed_hosts = vec!["auth.example.com".into()];
    let app = spawn_app_on(
        sessiond::StoreHandle::from_backend(std::sync::Arc::new(sessiond_core::MemoryStore::new())),
        config,
    )
    .await;
    let ours = "GET /healthz HTTP/1.1\r\nHost: auth.example.com:443\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(app.addr, ours).await, "HTTP/1.1 200 OK");
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "127.0.0.1 is not ours");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_host");
}

/// A server on the memory store with `config` changed by `f`.
async fn app_with(f: impl FnOnce(&mut sessiond::ServerConfig)) -> TestApp {
    let mut config = test_config();
    f(&mut config);
    spawn_app_on(
        sessiond::StoreHandle::from_backend(std::sync::Arc::new(sessiond_core::MemoryStore::new())),
        config,
    )
    .await
}

/// Reads until the peer closes (`Ok(bytes)`) or `limit` passes (`Err`).
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    limit: std::time::Duration,
) -> Result<Vec<u8>, ()> {
    use tokio::io::AsyncReadExt;
    let mut all = Vec::new();
    tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .map_err(|_| ())?;
    Ok(all)
}

#[tokio::test]
async fn a_stalled_request_head_is_closed_within_the_timeout_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let app = app_with(|c| c.server.header_read_timeout = std::time::Duration::from_secs(1)).await;
    let mut stalled = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stalled
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let r = reqwest::get(format!("{}/healthz", app.base)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "others are served meanwhile");
    assert!(started.elapsed() < std::time::Duration::from_millis(900));
    read_until_closed(&mut stalled, std::time::Duration::from_secs(5))
        .await
        .expect("the stalled connection is closed by the server");
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncWriteExt;
    let app = app_with(|c| c.server.header_read_timeout = std::time::Duration::from_secs(1)).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut conn, std::time::Duration::from_secs(5))
        .await
        .expect("closed once idle");
    assert!(answered.starts_with(b"HTTP/1.1 200 OK"));
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let app = app_with(|c| c.server.max_connections = 2).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        held.push(s);
    }
    let client = reqwest::Client::new();
    let url = format!("{}/healthz", app.base);
    let third = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served past the cap"
    );
    drop(held.pop());
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), third)
        .await
        .expect("served once a place is free")
        .unwrap()
        .unwrap();
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408_not_a_server_error() {
    use tokio::io::AsyncWriteExt;
    let app = app_with(|c| c.server.request_timeout = std::time::Duration::from_secs(1)).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 200\r\n\r\n{\"username\":",
    )
    .await
    .unwrap();
    let answer = read_until_closed(&mut conn, std::time::Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408 Request Timeout"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

#[tokio::test]
async fn attributes_past_the_session_budget_are_a_413_and_nothing_is_written() {
    let app = app_with(|c| c.session.max_attribute_bytes = 4096).await;
    let mut c = app.login("alice").await;
    let patch = |body: serde_json::Value| (reqwest::Method::PATCH, "/api/session/attributes", body);
    let (m, p, small) = patch(json!({"theme": "dark"}));
    assert_eq!(
        c.unsafe_json(m, p, Some(small)).await.status(),
        StatusCode::OK
    );
    // 64 attributes of 900 bytes: the shape that grew one session to 2.25 MB.
    let big: serde_json::Map<String, serde_json::Value> = (0..64)
        .map(|i| (format!("blob{i}"), json!("x".repeat(900))))
        .collect();
    let (m, p, body) = patch(serde_json::Value::Object(big));
    let r = c.unsafe_json(m, p, Some(body)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let error: serde_json::Value = r.json().await.unwrap();
    assert_eq!(error["error"]["code"], "attributes_too_large");
    let session: serde_json::Value = c.get("/api/session").await.json().await.unwrap();
    assert_eq!(
        session["attributes"],
        json!({"theme": "dark"}),
        "nothing of the refused change was written"
    );
    // The server's own names cannot be written through the API.
    let (m, p, reserved) = patch(json!({"sessiond.rt.cur": "forged"}));
    let r = c.unsafe_json(m, p, Some(reserved)).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// A JSON login with an `X-Forwarded-For` header.
async fn login_via(
    app: &TestApp,
    user: &str,
    password: &str,
    forwarded_for: &str,
) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{}/login", app.base))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
    let app = app_with(|c| c.login.failures_per_ip = 3).await;
    for i in 0..3 {
        let r = login_via(
            &app,
            &format!("nobody{i}"),
            "wrong-password",
            &format!("198.51.100.{i}"),
        )
        .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    // A fresh address in the header does not buy a fresh window.
    let r = login_via(&app, "nobody9", "wrong-password", "198.51.100.99").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = login_via(&app, "alice", PASSWORD, "203.0.113.7").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the peer is what counts"
    );
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_is_the_client_for_throttling_and_sessions() {
    let app = app_with(|c| {
        c.login.failures_per_ip = 3;
        c.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    for i in 0..3 {
        // The client's own claim first, the address the proxy saw last.
        let hops = format!("6.6.6.6, 198.51.100.{i}");
        let r = login_via(&app, &format!("nobody{i}"), "wrong-password", &hops).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let blocked = login_via(&app, "nobody9", "wrong-password", "198.51.100.2").await;
    assert_eq!(
        blocked.status(),
        StatusCode::UNAUTHORIZED,
        "another client's window"
    );
    let r = login_via(&app, "nobody9", "wrong-password", "6.6.6.6, 198.51.100.0").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login_via(&app, "nobody9", "wrong-password", "198.51.100.0").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login_via(&app, "nobody9", "wrong-password", "198.51.100.0").await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "198.51.100.0 used its 3"
    );

    let r = login_via(&app, "alice", PASSWORD, "203.0.113.7").await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = session_set_cookie(r.headers(), "__Host-sessiond").unwrap();
    let mut c = app.client();
    c.session = Some(cookie_value(&cookie));
    let listed: serde_json::Value = c.get("/api/sessions").await.json().await.unwrap();
    assert_eq!(listed["sessions"][0]["ip"], "203.0.113.7");
}

/// A JSON login to `base`, presenting `cookie` (`name=value`) if any.
async fn login_presenting(
    base: &str,
    user: &str,
    password: &str,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut rb = reqwest::Client::new()
        .post(format!("{base}/login"))
        .json(&json!({"username": user, "password": password}));
    if let Some(cookie) = cookie {
        rb = rb.header("cookie", cookie);
    }
    rb.send().await.unwrap()
}

/// The `name=value` of the device cookie a login set.
fn device_cookie(r: &reqwest::Response) -> String {
    let set = session_set_cookie(r.headers(), sessiond::state::DEVICE_COOKIE)
        .expect("a successful login sets the device cookie");
    assert!(set.contains("HttpOnly") && set.contains("Secure") && set.contains("Path=/"));
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn a_stranger_who_exhausts_alices_anonymous_limit_does_not_lock_her_out_of_her_own_browser() {
    let app = spawn_app().await;
    let limit = app.config.login.failures_per_user;
    let first = login_presenting(&app.base, "alice", PASSWORD, None).await;
    assert_eq!(first.status(), StatusCode::OK);
    let cookies: Vec<_> = first.headers().get_all("set-cookie").iter().collect();
    assert!(
        cookies[0]
            .to_str()
            .unwrap()
            .starts_with(&format!("{}=", app.config.session_cookie().name)),
        "the session cookie comes first, for clients that keep only one: {cookies:?}"
    );
    let alices_browser = device_cookie(&first);
    // Someone else guesses alice's password until her name is throttled.
    for _ in 0..limit {
        let r = login_presenting(&app.base, "alice", "a-wrong-guess", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_presenting(&app.base, "alice", PASSWORD, None).await;
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "anonymous: throttled"
    );
    // A made-up or altered device cookie does not open a new counter.
    let (name, value) = alices_browser.split_once('=').unwrap();
    for forged in [
        format!("{name}=made-up.9999999999.AAAA"),
        format!("{name}=x{value}"),
    ] {
        let r = login_presenting(&app.base, "alice", PASSWORD, Some(&forged)).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{forged}");
    }
    // Nor does alice's cookie help with another user's name.
    for _ in 0..limit {
        let r = login_presenting(&app.base, "bob", "a-wrong-guess", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_presenting(&app.base, "bob", PASSWORD, Some(&alices_browser)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Alice, on her browser, still gets in (a typo first, evaluated too).
    let r = login_presenting(&app.base, "alice", "a-typo", Some(&alices_browser)).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login_presenting(&app.base, "alice", PASSWORD, Some(&alices_browser)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(session_set_cookie(r.headers(), &app.config.session_cookie().name).is_some());
}

#[tokio::test]
async fn a_device_has_its_own_limit_so_a_stolen_device_cookie_still_meets_one() {
    let app = app_with(|c| c.login.failures_per_device = 3).await;
    let first = login_presenting(&app.base, "alice", PASSWORD, None).await;
    let device = device_cookie(&first);
    for _ in 0..3 {
        let r = login_presenting(&app.base, "alice", "wrong", Some(&device)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_presenting(&app.base, "alice", PASSWORD, Some(&device)).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Anonymous attempts for alice were not spent by the device's failures.
    let r = login_presenting(&app.base, "alice", PASSWORD, None).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn past_the_hashing_queue_a_login_gets_a_fast_503_busy_and_costs_no_attempt() {
    let app = app_with(|c| {
        c.login.max_concurrent_hashes = Some(1);
        c.login.hash_queue = 2;
        c.login.failures_per_user = 40;
    })
    .await;
    // 30 logins for alice at once: one hashing, two waiting, the rest busy.
    let client = reqwest::Client::new();
    let answers = futures::future::join_all((0..30).map(|_| {
        client
            .post(format!("{}/login", app.base))
            .json(&json!({"username": "alice", "password": PASSWORD}))
            .send()
    }))
    .await;
    let mut busy = 0;
    for r in answers {
        let r = r.unwrap();
        match r.status() {
            StatusCode::OK | StatusCode::TOO_MANY_REQUESTS => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(r.headers()["retry-after"], "1");
                let (_, code) = error_code(r).await;
                assert_eq!(code, "busy");
                busy += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy >= 20, "only {busy} of 30 were refused as busy");
    // Busy answers spent none of alice's 40 attempts: wrong passwords are
    // still evaluated 40 times before she is throttled.
    for _ in 0..40 {
        let r = login_presenting(&app.base, "alice", "wrong", None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = login_presenting(&app.base, "alice", "wrong", None).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
