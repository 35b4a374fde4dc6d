//! sessiond in front of an application: forward-auth answers, the login
//! redirect, and real nginx and Caddy with the shipped configurations in
//! front of a real upstream app.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::extract::Request;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use sessiond::{ServerConfig, StoreHandle};
use sessiond_core::MemoryStore;
use sessiond_gateway::redirect::login_location;
use sessiond_store_redis::testing::free_port;

use crate::common::{
    PASSWORD, TestApp, cookie_value, session_set_cookie, spawn_app_on, test_config,
};

/// Whether `program` can run here; without it the test says it skipped,
/// or fails under `SESSIOND_REQUIRE_PROXIES=1` (set by `.ci/run`).
fn proxy_available(program: &str) -> bool {
    crate::common::available(program, &["-v"], "SESSIOND_REQUIRE_PROXIES")
}

/// The design's tiers, for the application behind the gateway.
fn gateway_config(trusted: &str) -> ServerConfig {
    let mut config = test_config();
    config.server.trusted_proxies = vec![trusted.parse().unwrap()];
    config.access.rules = serde_json::from_value(json!([
        {"path": "/api/public", "allow": "public"},
        {"path": "/api/admin/**", "allow": ["admin"]},
        {"path": "/api/**", "allow": "authenticated"},
    ]))
    .unwrap();
    config.gateway.allowed_redirect_hosts = serde_json::from_value(json!(["127.0.0.1"])).unwrap();
    config
}

async fn gateway(trusted: &str) -> TestApp {
    spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new())),
        gateway_config(trusted),
    )
    .await
}

/// sessiond as the built-in proxy in front of `upstream`.
async fn proxy_gateway(upstream: &str, timeout: Duration) -> TestApp {
    let mut config = gateway_config("127.0.0.1/32");
    config.gateway.upstream = Some(format!("http://{upstream}"));
    config.gateway.upstream_timeout = timeout;
    config.server.request_timeout = Duration::from_secs(60);
    spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new())),
        config,
    )
    .await
}

/// An application that answers every request with what it received, plus
/// a slow route, an upload counter, a download of N bytes and a redirect.
async fn echo_app() -> String {
    named_echo_app("app").await
}

/// [`echo_app`], answering with its `name` too.
async fn named_echo_app(name: &'static str) -> String {
    use axum::routing::{get, post};
    let app = axum::Router::new()
        .route(
            "/api/public/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route(
            "/api/public/upload",
            post(|body: axum::body::Body| async move {
                use futures::StreamExt as _;
                let mut stream = body.into_data_stream();
                let mut bytes = 0u64;
                while let Some(chunk) = stream.next().await {
                    bytes += chunk.unwrap().len() as u64;
                }
                axum::Json(json!({"bytes": bytes}))
            }),
        )
        .route(
            "/api/public/download/{n}",
            get(
                |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                    let chunk = axum::body::Bytes::from(vec![7u8; 64 * 1024]);
                    let chunks = n / chunk.len() as u64;
                    let stream = futures::stream::iter(
                        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    );
                    axum::body::Body::from_stream(stream)
                },
            ),
        )
        .route(
            "/api/public/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no such order") }),
        )
        .route(
            "/api/public/redirect",
            get(|| async {
                (
                    StatusCode::FOUND,
                    [
                        ("location", "/elsewhere?x=1"),
                        ("set-cookie", "app=1; Path=/; HttpOnly"),
                    ],
                )
            }),
        )
        .fallback(move |req: Request| async move {
            let headers: serde_json::Map<String, Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or(""))))
                .collect();
            axum::Json(json!({"app": name, "path": req.uri().to_string(), "headers": headers}))
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn cookie_header(app: &TestApp, value: &str) -> String {
    format!("{}={value}", app.config.session_cookie().name)
}

/// Logs `user` in at `base` (sessiond itself or through a proxy): (cookie, CSRF token).
/// Signs in, remembered ("keep me signed in"), so that a renewal also
/// renews the cookie (a browser-session cookie has no lifetime to renew).
async fn login(app: &TestApp, base: &str, user: &str) -> (String, String) {
    let r = http()
        .post(format!("{base}/login"))
        .json(&json!({"username": user, "password": PASSWORD, "remember": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "login of {user} at {base}");
    let name = app.config.session_cookie().name;
    let cookie = cookie_value(&session_set_cookie(r.headers(), &name).unwrap());
    let body: Value = r.json().await.unwrap();
    (cookie, body["csrf_token"].as_str().unwrap().to_owned())
}

async fn verify(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut rb = http().get(format!("{}{path}", app.base));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn forward_auth_answers_follow_the_rules_and_the_caller() {
    let app = gateway("127.0.0.1/32").await;
    let (alice, _) = login(&app, &app.base, "alice").await;
    let (root, _) = login(&app, &app.base, "root").await;
    let alice = cookie_header(&app, &alice);
    let root = cookie_header(&app, &root);
    let original = |url: &'static str, method: &'static str| {
        [("x-original-url", url), ("x-original-method", method)]
    };
    let public = original("https://app.example/api/public/x", "GET");
    let profile = original("https://app.example/api/profile", "GET");
    let admin = original("https://app.example/api/admin/users", "GET");

    let r = verify(&app, "/auth/verify", &public).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-auth-request-user"],
        "",
        "anonymous: present and empty"
    );

    let r = verify(&app, "/auth/verify", &profile).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[LOCATION],
        "https://app.example/login?rd=https%3A%2F%2Fapp.example%2Fapi%2Fprofile"
    );

    let with = |cookie: &str, h: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, String)> = h.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        v.push(("cookie", cookie.to_owned()));
        v
    };
    let send = |pairs: Vec<(&str, String)>, path: &'static str| {
        let mut rb = http().get(format!("{}{path}", app.base));
        for (k, v) in pairs {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    let r = send(with(&alice, &profile), "/auth/verify").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-user"], "alice");
    assert_eq!(r.headers()["remote-user"], "alice");
    assert_eq!(r.headers()["x-auth-request-groups"], "user");
    let public_id = r.headers()["x-auth-request-session"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !alice.contains(&public_id),
        "the public id is not the token"
    );
    assert_eq!(r.headers()["cache-control"], "private, max-age=0");

    // Every spelling of the admin path is the admin path.
    for url in [
        "https://app.example/api/admin/users",
        "https://app.example/api/public/../admin/users",
        "https://app.example/api/%61dmin/users",
        "https://app.example//api//admin/users",
    ] {
        let r = send(
            with(
                &alice,
                &[("x-original-url", url), ("x-original-method", "GET")],
            ),
            "/auth/verify",
        )
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{url}");
    }
    let r = send(with(&root, &admin), "/auth/verify").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A bearer token is a caller too.
    let token: Value = crate::common::token_request(&app.base, "alice", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let r = send(
        vec![
            ("authorization", bearer),
            ("x-original-url", "https://app.example/api/profile".into()),
            ("x-original-method", "GET".into()),
        ],
        "/auth/verify",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-auth-request-user"], "alice");

    // An unsafe method with a cookie from another site: refused.
    let post = original("https://app.example/api/items", "POST");
    let mut cross = with(&alice, &post);
    cross.push(("origin", "https://evil.example".into()));
    let r = send(cross, "/auth/verify").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut same = with(&alice, &post);
    same.push(("origin", "https://app.example".into()));
    assert_eq!(
        send(same, "/auth/verify").await.unwrap().status(),
        StatusCode::OK
    );

    // A request no rule matches, or a description nginx never sends: 403.
    let r = send(
        with(&root, &original("https://app.example/other", "GET")),
        "/auth/verify",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(
        with(
            &root,
            &[("x-original-url", "https://app.example/api/profile")],
        ),
        "/auth/verify",
    )
    .await
    .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "no method: refused, not guessed"
    );

    // /auth/forward: browsers get the redirect itself, 302 or 303.
    let traefik = |method: &'static str| {
        vec![
            ("x-forwarded-method", method.to_owned()),
            ("x-forwarded-proto", "https".to_owned()),
            ("x-forwarded-host", "app.example".to_owned()),
            ("x-forwarded-uri", "/api/profile?tab=1".to_owned()),
        ]
    };
    let mut browser = traefik("GET");
    browser.push(("accept", "text/html,application/xhtml+xml".into()));
    let r = send(browser, "/auth/forward").await.unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(
        r.headers()[LOCATION],
        "https://app.example/login?rd=https%3A%2F%2Fapp.example%2Fapi%2Fprofile%3Ftab%3D1"
    );
    let mut form_post = traefik("POST");
    form_post.push(("accept", "text/html".into()));
    assert_eq!(
        send(form_post, "/auth/forward").await.unwrap().status(),
        StatusCode::SEE_OTHER
    );
    let r = send(traefik("GET"), "/auth/forward").await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "not a browser");
    assert_eq!(r.headers()["content-type"], "application/json");
}

#[tokio::test]
async fn forward_auth_ignores_forwarded_headers_from_an_untrusted_peer() {
    let app = gateway("10.0.0.0/8").await;
    let (alice, _) = login(&app, &app.base, "alice").await;
    let r = verify(
        &app,
        "/auth/verify",
        &[
            ("x-original-url", "https://app.example/api/public"),
            ("x-original-method", "GET"),
            ("cookie", &cookie_header(&app, &alice)),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("trusted_proxies"),
        "{body}"
    );
}

#[tokio::test]
async fn the_login_page_sends_the_browser_on_only_to_this_site_or_an_allowed_host() {
    let app = gateway("127.0.0.1/32").await;
    for (rd, kept) in [
        ("/api/profile?x=1", Some("/api/profile?x=1")),
        (
            "http://127.0.0.1:9999/app",
            Some("http://127.0.0.1:9999/app"),
        ),
        ("//evil.example/", None),
        ("https://evil.example/", None),
        ("/\\evil.example", None),
        ("javascript:alert(1)", None),
    ] {
        let page = http()
            .get(format!("{}{}", app.base, login_location("/login", rd)))
            .send()
            .await
            .unwrap();
        let csrf_cookie = format!(
            "__Host-sessiond-login={}",
            cookie_value(&session_set_cookie(page.headers(), "__Host-sessiond-login").unwrap())
        );
        let html = page.text().await.unwrap();
        let token = crate::common::form_csrf_token(&html);
        assert_eq!(html.contains("name=\"rd\""), kept.is_some(), "{rd}: {html}");
        // The form posts rd back; the server checks it again.
        let r = http()
            .post(format!("{}/login", app.base))
            .header("cookie", csrf_cookie)
            .form(&[
                ("username", "alice"),
                ("password", PASSWORD),
                ("csrf_token", &token),
                ("rd", rd),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{rd}");
        assert_eq!(r.headers()[LOCATION], kept.unwrap_or("/"), "{rd}");
    }
}

/// What the echo app saw, through a proxy at `base`.
async fn through(
    base: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let mut rb = http()
        .get(format!("{base}{path}"))
        .header("accept", "text/html");
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let body = r.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// The table every proxy in front of the app must pass.
async fn a_proxy_in_front_protects_the_app(app: &TestApp, proxy: &str) {
    // A public path passes without a session; a client-sent identity is dropped.
    let (status, _, seen) = through(
        proxy,
        "/api/public/x",
        &[("x-auth-request-user", "admin"), ("remote-user", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{proxy}");
    assert_eq!(seen["path"], "/api/public/x");
    assert!(
        seen["headers"].get("x-auth-request-user").is_none(),
        "{seen}"
    );
    assert!(seen["headers"].get("remote-user").is_none(), "{seen}");

    // A protected path without a session: to the login page, with rd.
    let (status, headers, _) = through(proxy, "/api/account?tab=2", &[]).await;
    assert_eq!(status, StatusCode::FOUND, "{proxy}");
    let location = headers[LOCATION].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{proxy}/login?rd=http%3A%2F%2F127.0.0.1%3A")),
        "{location}"
    );
    assert!(
        location.ends_with("%2Fapi%2Faccount%3Ftab%3D2"),
        "{location}"
    );

    // Signed in (through the proxy): the app sees who, never a forged copy.
    let (token, csrf) = login(app, proxy, "alice").await;
    let cookie = cookie_header(app, &token);
    let (status, headers, seen) = through(
        proxy,
        "/api/account",
        &[("cookie", &cookie), ("x-auth-request-user", "admin")],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{proxy}");
    assert!(
        headers.get(SET_COOKIE).is_none(),
        "{proxy}: a cookie without a renewal: {headers:?}"
    );
    assert_eq!(seen["headers"]["x-auth-request-user"], "alice", "{seen}");
    assert_eq!(seen["headers"]["remote-user"], "alice");
    assert_eq!(seen["headers"]["x-auth-request-groups"], "user");
    assert!(
        seen["headers"]["x-auth-request-session"]
            .as_str()
            .is_some_and(|s| !s.is_empty() && !token.contains(s))
    );

    // A user on an admin path.
    let (status, _, _) = through(proxy, "/api/admin/users", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{proxy}");

    // A renewed session's cookie reaches the browser through the proxy.
    let s = app
        .config
        .session_rules()
        .expiry_for(&["user".to_owned()], true);
    app.clock
        .advance(s.idle_timeout - s.renewal_threshold + Duration::from_secs(60));
    let (status, headers, _) = through(proxy, "/api/account", &[("cookie", &cookie)]).await;
    assert_eq!(status, StatusCode::OK);
    let name = app.config.session_cookie().name;
    assert!(
        session_set_cookie(&headers, &name).is_some(),
        "{proxy}: no renewed cookie in {headers:?}"
    );

    // Logout on sessiond: the next proxied request is refused at once.
    let r = http()
        .post(format!("{}/logout", app.base))
        .header("cookie", &cookie)
        .header("x-csrf-token", csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, _, _) = through(proxy, "/api/account", &[("cookie", &cookie)]).await;
    assert_eq!(
        status,
        StatusCode::FOUND,
        "{proxy}: a logged-out session passed"
    );
}

/// A proxy process in a folder of its own, killed when dropped.
struct Proxy {
    child: Child,
    _dir: tempfile::TempDir,
    base: String,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master then stops its workers (SIGKILL would
        // leave them running, orphaned).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_for(base: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while reqwest::get(format!("{base}/api/public/ready"))
        .await
        .is_err()
    {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "proxy exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "the proxy did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy")
        .join(path)
}

async fn nginx(sessiond: &str, upstream: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir(dir.path().join("snippets")).unwrap();
    for snippet in ["sessiond-location.conf", "sessiond-auth.conf"] {
        std::fs::copy(
            deploy(&format!("nginx/{snippet}")),
            dir.path().join("snippets").join(snippet),
        )
        .unwrap();
    }
    let site = std::fs::read_to_string(deploy("nginx/example-site.conf"))
        .unwrap()
        .replace("server 127.0.0.1:8080;", &format!("server {sessiond};"))
        .replace("server 127.0.0.1:3000;", &format!("server {upstream};"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base, &mut child, &dir.path().join("error.log")).await;
    Proxy {
        child,
        _dir: dir,
        base,
    }
}

async fn caddy(sessiond: &str, upstream: &str) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // No admin endpoint, no certificates, no state outside the folder.
    let caddyfile = format!(
        "{{\n\tadmin off\n\tauto_https off\n}}\n{}",
        std::fs::read_to_string(deploy("caddy/Caddyfile")).unwrap()
    );
    let path = dir.path().join("Caddyfile");
    std::fs::write(&path, caddyfile).unwrap();
    let log = dir.path().join("caddy.log");
    let mut child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .env("SITE", format!("http://127.0.0.1:{port}"))
        .env("SESSIOND", sessiond)
        .env("APP", upstream)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(&base, &mut child, &log).await;
    Proxy {
        child,
        _dir: dir,
        base,
    }
}

#[tokio::test]
async fn nginx_with_the_shipped_snippets_protects_an_app() {
    if !proxy_available("nginx") {
        return;
    }
    let app = gateway("127.0.0.1/32").await;
    let upstream = echo_app().await;
    let proxy = nginx(&app.addr.to_string(), &upstream).await;
    a_proxy_in_front_protects_the_app(&app, &proxy.base).await;
}

#[tokio::test]
async fn caddy_with_the_shipped_caddyfile_protects_an_app() {
    if !proxy_available("caddy") {
        return;
    }
    let app = gateway("127.0.0.1/32").await;
    let upstream = echo_app().await;
    let proxy = caddy(&app.addr.to_string(), &upstream).await;
    a_proxy_in_front_protects_the_app(&app, &proxy.base).await;
}

#[tokio::test]
async fn the_built_in_proxy_protects_an_app_and_never_shows_it_the_session_cookie() {
    let upstream = echo_app().await;
    let app = proxy_gateway(&upstream, Duration::from_secs(10)).await;
    a_proxy_in_front_protects_the_app(&app, &app.base).await;

    let (token, _) = login(&app, &app.base, "bob").await;
    let cookie = format!("{}; theme=dark", cookie_header(&app, &token));
    let (status, _, seen) = through(
        &app.base,
        "/api/account?x=1",
        &[("cookie", &cookie), ("x-forwarded-for", "6.6.6.6")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["path"], "/api/account?x=1");
    assert_eq!(
        seen["headers"]["cookie"], "theme=dark",
        "the token never reaches the app"
    );
    assert_eq!(seen["headers"]["x-auth-request-user"], "bob");
    // The peer (127.0.0.1) is a trusted proxy here: its chain is kept and
    // the peer appended (the untrusted case is in the streaming test).
    assert_eq!(seen["headers"]["x-forwarded-for"], "6.6.6.6, 127.0.0.1");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    assert!(
        seen["headers"]
            .get("connection")
            .is_none_or(|c| c != "upgrade")
    );

    // The application's answers pass as they are: its errors keep their
    // body, and its pages get none of sessiond's security headers.
    let r = http()
        .get(format!("{}/api/public/missing", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(
        !r.headers().contains_key("content-security-policy"),
        "{:?}",
        r.headers()
    );
    assert_eq!(r.text().await.unwrap(), "no such order");

    // The application's Location and Set-Cookie pass unchanged.
    let r = http()
        .get(format!("{}/api/public/redirect", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    assert_eq!(r.headers()[LOCATION], "/elsewhere?x=1");
    assert_eq!(r.headers()[SET_COOKIE], "app=1; Path=/; HttpOnly");

    // An unsafe method with the session cookie must come from the site itself.
    let post = |origin: &'static str| {
        http()
            .post(format!("{}/api/items", app.base))
            .header("cookie", cookie.clone())
            .header("origin", origin)
            .json(&json!({"name": "x"}))
            .send()
    };
    let r = post("https://evil.example").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let own = format!("http://{}", app.addr);
    let own: &'static str = Box::leak(own.into_boxed_str());
    let r = post(own).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "same-site POST reaches the app");
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["path"], "/api/items");

    // sessiond's own routes are still sessiond's.
    assert_eq!(
        http()
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// A process's peak resident memory, bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn the_built_in_proxy_streams_large_bodies_both_ways_in_bounded_memory() {
    use futures::StreamExt as _;
    // 1 GiB each way.
    const SIZE: u64 = 1024 * 1024 * 1024;
    let upstream = echo_app().await;
    // A sessiond process of its own, so that its memory is its own.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sessiond.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nrequest_timeout = \"60s\"\n[gateway]\nupstream = \"http://{upstream}\"\n\
             [[access.rules]]\npath = \"/api/public\"\nallow = \"public\"\n"
        ),
    )
    .unwrap();
    let node = crate::common::process::Node::start_file_with(
        &dir.path().join("data"),
        &[("SESSIOND_CONFIG", config.to_str().unwrap())],
    )
    .await;
    let pid = node.child.id();
    // No trusted proxies on this node: a client's X-Forwarded-* is replaced.
    let (_, _, seen) = through(
        &node.base,
        "/api/public/x",
        &[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(seen["headers"]["x-forwarded-for"], "127.0.0.1", "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
    // Warm up: the first requests allocate the pools.
    let r = http()
        .get(format!("{}/api/public/download/{}", node.base, 1 << 20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 1 << 20);
    let before = peak_rss(pid);

    let chunk = bytes::Bytes::from(vec![1u8; 256 * 1024]);
    let chunks = SIZE / chunk.len() as u64;
    let body = reqwest::Body::wrap_stream(futures::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    ));
    let r = http()
        .post(format!("{}/api/public/upload", node.base))
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let counted: Value = r.json().await.unwrap();
    assert_eq!(counted["bytes"], SIZE);

    let r = http()
        .get(format!("{}/api/public/download/{SIZE}", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let mut stream = r.bytes_stream();
    let mut got = 0u64;
    while let Some(chunk) = stream.next().await {
        got += chunk.unwrap().len() as u64;
    }
    assert_eq!(got, SIZE);
    let grew = peak_rss(pid).saturating_sub(before);
    eprintln!(
        "streaming: {} MiB each way through sessiond, its peak memory grew {} KiB",
        SIZE >> 20,
        grew >> 10
    );
    assert!(
        grew < 32 * 1024 * 1024,
        "peak memory grew {} MiB for {} MiB each way",
        grew >> 20,
        SIZE >> 20
    );
}

/// An upstream that accepts any `Upgrade`, answers 101 and echoes bytes.
async fn upgrade_echo() -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                assert!(head.contains("upgrade: websocket"), "{head}");
                assert!(
                    !head.contains("__host-sessiond="),
                    "the token reached the app: {head}"
                );
                socket
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
                    .await
                    .unwrap();
                let (mut r, mut w) = socket.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_websocket_passes_the_built_in_proxy_after_the_access_check() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let upstream = upgrade_echo().await;
    let app = proxy_gateway(&upstream, Duration::from_secs(10)).await;
    let open = |cookie: Option<String>| {
        let addr = app.addr;
        async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let cookie = cookie
                .map(|c| format!("cookie: {c}\r\n"))
                .unwrap_or_default();
            let req = format!(
                "GET /api/chat HTTP/1.1\r\nhost: {addr}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{cookie}\r\n"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                assert_ne!(
                    s.read(&mut byte).await.unwrap(),
                    0,
                    "closed: {}",
                    String::from_utf8_lossy(&head)
                );
                head.push(byte[0]);
            }
            (s, String::from_utf8_lossy(&head).into_owned())
        }
    };
    // Without a session: refused before anything reaches the app.
    let (_, head) = open(None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (token, _) = login(&app, &app.base, "alice").await;
    let (mut s, head) = open(Some(cookie_header(&app, &token))).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for message in [&b"hello"[..], b"through the gateway"] {
        s.write_all(message).await.unwrap();
        let mut echo = vec![0u8; message.len()];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, message);
    }
}

#[tokio::test]
async fn an_application_that_is_down_or_slow_gets_502_or_504_with_the_error_shape() {
    let nothing = format!("127.0.0.1:{}", free_port());
    let down = proxy_gateway(&nothing, Duration::from_secs(5)).await;
    let r = http()
        .get(format!("{}/api/public/x", down.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_gateway");
    // A browser gets the same status as a page.
    let r = http()
        .get(format!("{}/api/public/x", down.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers()
    );
    let page = r.text().await.unwrap();
    assert!(
        page.contains("<h1>Bad Gateway</h1>") && page.contains("bad_gateway"),
        "{page}"
    );

    let upstream = echo_app().await;
    let slow = proxy_gateway(&upstream, Duration::from_millis(300)).await;
    let started = Instant::now();
    let r = http()
        .get(format!("{}/api/public/slow", slow.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited for the slow answer"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn a_rule_can_send_its_paths_to_an_application_of_its_own() {
    let (main, reports) = (
        named_echo_app("main").await,
        named_echo_app("reports").await,
    );
    let mut config = gateway_config("127.0.0.1/32");
    let mut rules: Vec<sessiond_gateway::AccessRule> = serde_json::from_value(json!([
        {"path": "/reports/**", "allow": "public", "upstream": format!("http://{reports}")},
    ]))
    .unwrap();
    rules.append(&mut config.access.rules);
    config.access.rules = rules;
    config.gateway.upstream = Some(format!("http://{main}"));
    let app = spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new())),
        config,
    )
    .await;
    let (_, _, seen) = through(&app.base, "/reports/q3", &[]).await;
    assert_eq!(seen["app"], "reports", "{seen}");
    let (_, _, seen) = through(&app.base, "/api/public/x", &[]).await;
    assert_eq!(seen["app"], "main", "{seen}");
}

/// A gateway on `store` in front of `upstream` with a rate on `/api/public`.
async fn limited_gateway(
    store: StoreHandle,
    upstream: &str,
    rate: &str,
    burst: u32,
    key: &str,
) -> TestApp {
    let mut config = gateway_config("127.0.0.1/32");
    config.access.rules[0] = serde_json::from_value(json!(
        {"path": "/api/public", "allow": "public", "rate": rate, "burst": burst, "rate_key": key}
    ))
    .unwrap();
    config.gateway.upstream = Some(format!("http://{upstream}"));
    spawn_app_on(store, config).await
}

#[tokio::test]
async fn a_rule_with_a_rate_limits_each_client_and_says_when_to_come_back() {
    let upstream = echo_app().await;
    let store = StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new()));
    let app = limited_gateway(store, &upstream, "1/m", 2, "ip").await;
    for remaining in [1, 0] {
        let r = http()
            .get(format!("{}/api/public/x", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["ratelimit-policy"], "\"/api/public\";q=1;w=60");
        let state = r.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            state.starts_with(&format!("\"/api/public\";r={remaining};")),
            "{state}"
        );
    }
    let r = http()
        .get(format!("{}/api/public/x", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.headers()["retry-after"],
        "60",
        "one a minute once the burst of two is spent"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Paths of other rules are not limited.
    let (token, _) = login(&app, &app.base, "alice").await;
    for _ in 0..5 {
        let (status, _, _) = through(
            &app.base,
            "/api/account",
            &[("cookie", &cookie_header(&app, &token))],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_a_rate_limit_and_a_dead_redis_lets_requests_through() {
    if !sessiond_store_redis::testing::redis_available("gateway rate limit") {
        return;
    }
    let mut redis = tokio::task::spawn_blocking(sessiond_store_redis::testing::standalone)
        .await
        .unwrap();
    let upstream = echo_app().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = test_config();
        config.store.url = Some(redis.url());
        let store = StoreHandle::open(&config).await.unwrap();
        // A burst of 100 refilled slowly (100 a minute), so that the count
        // below is the shared budget whatever the machine's speed.
        nodes.push(limited_gateway(store, &upstream, "100/m", 100, "route").await);
    }
    let requests = (0..400).map(|i| {
        let url = format!("{}/api/public/x", nodes[i % 2].base);
        async move { http().get(url).send().await.unwrap().status() }
    });
    let started = Instant::now();
    let statuses = futures::future::join_all(requests).await;
    let passed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    eprintln!(
        "rate limit across two nodes: {passed} of 400 passed, {limited} limited, in {:?}",
        started.elapsed()
    );
    assert_eq!(passed + limited, 400);
    assert!((100..=102).contains(&passed), "{passed} passed");

    // Redis dies: the limit cannot be checked and requests pass (fail open).
    tokio::task::spawn_blocking(move || redis.kill())
        .await
        .unwrap();
    for node in &nodes {
        let r = http()
            .get(format!("{}/api/public/y", node.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "fail open");
    }
}

#[tokio::test]
async fn sessionds_own_public_routes_can_be_rate_limited_per_client_but_never_health_checks() {
    let mut config = test_config();
    config.rate_limit.public = Some("1/m".into());
    config.rate_limit.public_burst = Some(2);
    let app = spawn_app_on(
        StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new())),
        config,
    )
    .await;
    let get = |path: &'static str| http().get(format!("{}{path}", app.base)).send();
    assert_eq!(
        get("/.well-known/jwks.json").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(get("/login").await.unwrap().status(), StatusCode::OK);
    let r = get("/api/public/ping").await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "60");
    for _ in 0..5 {
        assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    }
}

/// An application with a cacheable listing whose version changes with
/// every write to one of its items; it counts the listing's fetches.
async fn catalogue_app() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let version = Arc::new(AtomicU64::new(0));
    let fetches = Arc::new(AtomicU64::new(0));
    let (v, f) = (version.clone(), fetches.clone());
    let app = axum::Router::new()
        .route(
            "/api/public/items",
            axum::routing::get(move || async move {
                f.fetch_add(1, Ordering::SeqCst);
                (
                    [("cache-control", "public, max-age=300")],
                    format!("items v{}", v.load(Ordering::SeqCst)),
                )
            }),
        )
        .route(
            "/api/public/items/{n}",
            axum::routing::post(move || async move {
                version.fetch_add(1, Ordering::SeqCst);
                StatusCode::NO_CONTENT
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, fetches)
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_the_response_cache_and_a_write_invalidates_both() {
    use std::sync::atomic::Ordering;
    if !sessiond_store_redis::testing::redis_available("gateway response cache") {
        return;
    }
    let mut redis = tokio::task::spawn_blocking(sessiond_store_redis::testing::standalone)
        .await
        .unwrap();
    let (upstream, fetches) = catalogue_app().await;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let mut config = gateway_config("127.0.0.1/32");
        config.store.url = Some(redis.url());
        config.gateway.upstream = Some(format!("http://{upstream}"));
        let store = StoreHandle::open(&config).await.unwrap();
        nodes.push(spawn_app_on(store, config).await);
    }
    let (a, b) = (&nodes[0].base, &nodes[1].base);
    let listing = |base: &str| {
        let url = format!("{base}/api/public/items");
        async move {
            // One site behind a load balancer: the same Host on every node.
            let r = http()
                .get(url)
                .header("host", "app.test")
                .send()
                .await
                .unwrap();
            let status = r.status();
            let x_cache = r.headers()["x-cache"].to_str().unwrap().to_owned();
            let cache_status = r.headers()["cache-status"].to_str().unwrap().to_owned();
            // A hit leaves as the application's answers do: none of
            // sessiond's own security headers over it.
            assert!(
                !r.headers().contains_key("content-security-policy"),
                "{x_cache}"
            );
            (status, x_cache, cache_status, r.text().await.unwrap())
        }
    };
    let (_, x, _, body) = listing(a).await;
    assert_eq!((x.as_str(), body.as_str()), ("MISS", "items v0"));
    let (_, x, status, body) = listing(b).await;
    assert_eq!(
        (x.as_str(), body.as_str()),
        ("HIT", "items v0"),
        "node A's miss filled node B"
    );
    assert!(status.starts_with("sessiond; hit"), "{status}");
    assert_eq!(fetches.load(Ordering::SeqCst), 1);

    // A write through node B: node A's next read is a miss with the new data.
    let write = http()
        .post(format!("{b}/api/public/items/1"))
        .header("host", "app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::NO_CONTENT);
    let (_, x, _, body) = listing(a).await;
    assert_eq!((x.as_str(), body.as_str()), ("MISS", "items v1"));
    assert_eq!(listing(b).await.1, "HIT");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // Redis dies: the cache steps aside, the application still answers.
    tokio::task::spawn_blocking(move || redis.kill())
        .await
        .unwrap();
    for base in [a, b] {
        let (status, x, cache_status, body) = listing(base).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!((x.as_str(), body.as_str()), ("BYPASS", "items v1"));
        assert_eq!(
            cache_status,
            "sessiond; fwd=bypass; detail=store-unavailable"
        );
    }
}
