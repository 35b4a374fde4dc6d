//! Test harness: the real server on port 0, a manual clock, typed helpers.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::header::{COOKIE, HeaderMap, HeaderValue, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sessiond::accounts::AccountError;
use sessiond::{Application, ServerConfig, StoreHandle};
use sessiond_core::testing::CountingStore;
use sessiond_core::{Backend, ExpiryPolicy, ManualClock, MemoryStore, SessionManager};

pub const PASSWORD: &str = "correct-horse-battery";

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub clock: ManualClock,
    pub store: Arc<dyn Backend>,
    pub counting: Arc<CountingStore<dyn Backend>>,
    pub config: ServerConfig,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn test_config() -> ServerConfig {
    ServerConfig {
        server: sessiond::config::ServerSection {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        ..ServerConfig::default()
    }
}

/// [`test_config`] on the embedded store in `dir`.
pub fn file_config(dir: &std::path::Path) -> ServerConfig {
    let mut config = test_config();
    config.store.data_dir = dir.to_owned();
    config
}

/// `POST {base}/api/token` with JSON credentials.
pub async fn token_request(base: &str, user: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/token"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

/// `POST /api/token/refresh` with a JSON body.
pub async fn refresh_request(base: &str, refresh_token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/api/token/refresh"))
        .json(&json!({"refresh_token": refresh_token}))
        .send()
        .await
        .unwrap()
}

/// Creates user `alice` (role user, password [`PASSWORD`]) in a file store
/// in `dir` and closes it, for tests that then start the real binary there.
/// Returns the configuration pointing at `dir`.
pub async fn seed_file_store(dir: &std::path::Path) -> ServerConfig {
    let config = file_config(dir);
    let store = StoreHandle::open_file(&config).unwrap();
    store
        .accounts(&config)
        .unwrap()
        .add("alice", PASSWORD.into(), "user")
        .await
        .unwrap();
    store.close().await;
    config
}

/// A server on the memory store with users `alice`, `bob` (role user) and `root` (admin).
pub async fn spawn_app() -> TestApp {
    spawn_app_on(
        StoreHandle::from_backend(Arc::new(MemoryStore::new())),
        test_config(),
    )
    .await
}

pub async fn spawn_app_on(store: StoreHandle, config: ServerConfig) -> TestApp {
    let backend = store.backend.clone();
    let accounts = store.accounts(&config).unwrap();
    for (name, role) in [("alice", "user"), ("bob", "user"), ("root", "admin")] {
        match accounts.add(name, PASSWORD.into(), role).await {
            Ok(()) | Err(AccountError::Exists(_)) => {}
            Err(e) => panic!("seeding {name}: {e}"),
        }
    }
    let clock = ManualClock::starting_now();
    let counting = Arc::new(CountingStore::new(backend.clone()));
    let sessions =
        SessionManager::new(counting.clone(), config.policy()).with_clock(Arc::new(clock.clone()));
    let app = Application::build_with(config.clone(), store, sessions)
        .await
        .unwrap();
    let addr = app.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        addr,
        base: format!("http://{addr}"),
        clock,
        store: backend,
        counting,
        config,
        shutdown: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    pub fn client(&self) -> Client {
        Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
            cookie_name: self.config.session_cookie().name,
            session: None,
            csrf: None,
        }
    }

    /// A client logged in as `user`.
    pub async fn login(&self, user: &str) -> Client {
        let mut c = self.client();
        assert_eq!(
            c.login(user, PASSWORD).await,
            StatusCode::OK,
            "login of {user}"
        );
        c
    }

    /// Stops the server gracefully and waits for it (the store is closed).
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub fn policy(&self) -> ExpiryPolicy {
        self.config.policy()
    }
}

/// An HTTP client that keeps the session cookie and the CSRF token by hand
/// (reqwest's cookie store rightly refuses `Secure` cookies over plain HTTP).
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie_name: String,
    pub session: Option<String>,
    pub csrf: Option<String>,
}

/// The `name=value` and attributes of the session cookie in a response.
pub fn session_set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned()
}

impl Client {
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = &self.session {
            rb = rb.header(COOKIE, format!("{}={s}", self.cookie_name));
        }
        rb
    }

    /// Sends and keeps any session cookie change.
    pub async fn send(&mut self, rb: reqwest::RequestBuilder) -> reqwest::Response {
        let r = rb.send().await.unwrap();
        if let Some(sc) = session_set_cookie(r.headers(), &self.cookie_name) {
            let v = cookie_value(&sc);
            self.session = if v.is_empty() { None } else { Some(v) };
        }
        r
    }

    /// Logs in with JSON; keeps the cookie and the CSRF token; returns the status.
    pub async fn login(&mut self, user: &str, password: &str) -> StatusCode {
        let rb = self
            .request(Method::POST, "/login")
            .json(&json!({ "username": user, "password": password }));
        let r = self.send(rb).await;
        let status = r.status();
        if status == StatusCode::OK {
            let body: Value = r.json().await.unwrap();
            self.csrf = body["csrf_token"].as_str().map(str::to_owned);
        }
        status
    }

    pub async fn get(&mut self, path: &str) -> reqwest::Response {
        let rb = self.request(Method::GET, path);
        self.send(rb).await
    }

    /// An unsafe request carrying the CSRF token.
    pub async fn unsafe_json(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut rb = self.request(method, path);
        if let Some(t) = &self.csrf {
            rb = rb.header("x-csrf-token", HeaderValue::from_str(t).unwrap());
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        self.send(rb).await
    }

    pub async fn refresh_csrf(&mut self) {
        let r = self.get("/api/csrf").await;
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        self.csrf = body["csrf_token"].as_str().map(str::to_owned);
    }
}

/// Asserts the JSON error shape and returns its code.
pub async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    assert!(
        ct.starts_with("application/json"),
        "status {status}: not JSON ({ct}): {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let code = v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error.code in {text}"))
        .to_owned();
    assert!(
        v["error"]["message"].is_string(),
        "no error.message in {text}"
    );
    (status, code)
}

/// The CSRF token of the login form in `html`.
pub fn form_csrf_token(html: &str) -> String {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has a login form")
        .to_owned()
}

/// Whether `program` runs here (`program --version`, or `args`). Without
/// it a test says it skipped, or fails when `require` (a
/// `SESSIOND_REQUIRE_*` variable `.ci/run` sets) is `1`: in CI a missing
/// dependency is a failure, never a skip counted as a pass.
pub fn available(program: &str, args: &[&str], require: &str) -> bool {
    let args = if args.is_empty() {
        &["--version"][..]
    } else {
        args
    };
    if std::process::Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{program} is not installed, and {require}=1 makes that a failure"
    );
    eprintln!("SKIPPED: {program} is not installed ({require}=1 makes this a failure)");
    false
}
