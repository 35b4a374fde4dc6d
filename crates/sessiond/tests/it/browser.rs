//! The web pages in a real browser: Debian's chromium driven through
//! chromedriver (W3C WebDriver over HTTP). Without chromium/chromedriver the
//! test prints one SKIPPED line; `SESSIOND_REQUIRE_BROWSER=1` (set by
//! `.ci/run`) makes that a failure.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{PASSWORD, spawn_app};
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn browser_available() -> bool {
    let found = ["/usr/bin/chromium", "/usr/bin/chromedriver"]
        .iter()
        .all(|p| std::path::Path::new(p).exists());
    if !found {
        if std::env::var("SESSIOND_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
            panic!(
                "chromium/chromedriver are not installed, and SESSIOND_REQUIRE_BROWSER=1 makes that a failure"
            );
        }
        eprintln!(
            "SKIPPED browser test: chromium and chromium-driver are not installed (SESSIOND_REQUIRE_BROWSER=1 makes this a failure)"
        );
    }
    found
}

struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Driver {
    async fn start() -> Driver {
        let port = sessiond_store_redis::testing::free_port();
        let child = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--no-first-run", format!("--user-data-dir={}", profile.path().display())]
            }
        }}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {r}"))
            .to_owned();
        Driver {
            child,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn find(&self, css: &str) -> String {
        let v = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn cookies(&self) -> Vec<Value> {
        self.call(reqwest::Method::GET, "/cookie", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `script` in the page; its answer.
    async fn execute(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Resizes the window (CSS pixels).
    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// The page as a PNG.
    async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap()
    }

    /// axe-core's violations of impact "serious" or "critical" on the
    /// current page (id, impact, how many elements), after injecting
    /// `axe` (the source of axe.min.js).
    async fn serious_accessibility_violations(&self, axe: &str) -> Vec<Value> {
        self.execute(axe).await;
        let found = self
            .call(
                reqwest::Method::POST,
                "/execute/async",
                Some(json!({"script": "const done = arguments[arguments.length - 1];\
                    axe.run(document, {resultTypes: ['violations']})\
                      .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))}))))\
                      .catch(e => done([{id: 'axe-failed', impact: 'critical', nodes: [String(e)]}]));",
                    "args": []})),
            )
            .await;
        found
            .as_array()
            .unwrap_or_else(|| panic!("axe answered {found}"))
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .cloned()
            .collect()
    }

    /// Ends the WebDriver session, which closes Chrome.
    async fn quit(&self) {
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = self.http.delete(url).send().await;
    }

    /// Fills the login form and submits it.
    async fn sign_in(&self, user: &str, password: &str) {
        self.type_into("input[name=username]", user).await;
        self.type_into("input[name=password]", password).await;
        self.click("button[type=submit]").await;
    }

    /// Waits until the page source contains `text`.
    async fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let src = self.source().await;
            if src.contains(text) {
                return src;
            }
            assert!(
                Instant::now() < deadline,
                "page never showed {text:?}; last page:\n{src}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Chrome is chromedriver's child: end it first (a test that finished
        // has already closed it with `quit`; this covers a failed one).
        let _ = Command::new("pkill")
            .args(["-9", "-P", &self.child.id().to_string()])
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_person_signs_in_sees_their_devices_and_signs_out_in_a_real_browser() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let browser = Driver::start().await;
    let site = format!("http://127.0.0.1:{}", app.addr.port());

    // Signed out, the account page sends the browser to the login form.
    browser.goto(&format!("{site}/")).await;
    assert!(browser.url().await.ends_with("/login"));
    browser.wait_for("Sign in").await;

    // A wrong password shows the error on the form, and no session cookie.
    browser.sign_in("alice", "not-the-password").await;
    browser.wait_for("wrong username or password").await;
    assert!(
        browser
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != "__Host-sessiond")
    );

    browser.sign_in("alice", PASSWORD).await;
    let page = browser.wait_for("Signed in as").await;
    assert!(page.contains("id=\"user\">alice</strong>"), "{page}");
    assert!(
        page.contains("This device"),
        "the current session is marked in the device list"
    );

    // The browser holds the session cookie with the secure attributes.
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-sessiond")
        .expect("the browser kept the session cookie");
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["secure"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/");

    browser.click("form[action='/logout'] button").await;
    browser.wait_for("Sign in").await;
    assert!(
        browser
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != "__Host-sessiond"),
        "sign-out removed the cookie"
    );
    browser.goto(&format!("{site}/")).await;
    assert!(
        browser.url().await.ends_with("/login"),
        "signed out for real"
    );
    browser.quit().await;
}

/// axe-core's source: `.ci/run` installs it with npm under
/// `crates/sessiond/tests/browser` (its lock file pins the version).
fn axe_source() -> Option<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/axe-core/axe.min.js"
    );
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(_) if std::env::var("SESSIOND_REQUIRE_BROWSER").is_ok_and(|v| v == "1") => {
            panic!(
                "{path} is missing (npm ci --prefix crates/sessiond/tests/browser), and SESSIOND_REQUIRE_BROWSER=1 makes that a failure"
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED accessibility test: {path} is missing (npm ci --prefix crates/sessiond/tests/browser)"
            );
            None
        }
    }
}

/// Checks the page with axe-core and, with `UPDATE_SCREENSHOTS=1`, saves
/// it as `docs/screenshots/{name}.png`.
async fn check_page(browser: &Driver, axe: &str, name: &str) {
    let serious = browser.serious_accessibility_violations(axe).await;
    assert!(serious.is_empty(), "{name}: axe found {serious:#?}");
    if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/screenshots");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), browser.screenshot().await).unwrap();
    }
}

#[tokio::test]
async fn a_person_manages_their_devices_and_password_in_chromium_with_no_serious_accessibility_faults()
 {
    if !browser_available() {
        return;
    }
    let Some(axe) = axe_source() else { return };
    let app = spawn_app().await;
    let browser = Driver::start().await;
    browser.resize(1024, 900).await;
    let site = format!("http://127.0.0.1:{}", app.addr.port());

    browser.goto(&format!("{site}/login")).await;
    browser.wait_for("Keep me signed in").await;
    check_page(&browser, &axe, "sign-in").await;
    browser.type_into("#username", "alice").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#remember").await;
    browser.click("button[type=submit]").await;
    browser.wait_for("Where you are signed in").await;

    // Another device, signed in with curl's manners.
    let other_device = || async {
        let mut phone = app.client();
        phone.http = reqwest::Client::builder()
            .user_agent("Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0")
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        assert_eq!(
            phone.login("alice", PASSWORD).await,
            reqwest::StatusCode::OK
        );
        phone
    };
    let mut phone = other_device().await;
    app.clock.advance(Duration::from_secs(3 * 60));
    browser.goto(&format!("{site}/")).await;
    let page = browser.wait_for("Firefox 133").await;
    assert!(
        page.contains("This device") && page.contains("Remembered"),
        "{page}"
    );
    assert!(page.contains("3 minutes ago"), "{page}");
    check_page(&browser, &axe, "account").await;

    // Sign the other device out: it is refused at once.
    browser.click("#devices form[action$='/end'] button").await;
    browser.wait_for("That device is signed out.").await;
    assert_eq!(
        phone.get("/api/profile").await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );

    // A password the rules refuse is explained beside the form; a good one is taken.
    browser.type_into("#current_password", PASSWORD).await;
    browser.type_into("#new_password", "qwertyuiop123").await;
    browser
        .click("form[action='/account/password'] button")
        .await;
    browser.wait_for("too easy to guess").await;
    check_page(&browser, &axe, "account-password-refused").await;
    browser.type_into("#current_password", PASSWORD).await;
    browser
        .type_into("#new_password", "saffron-glacier-rowboat")
        .await;
    browser
        .click("form[action='/account/password'] button")
        .await;
    browser.wait_for("Your password is changed").await;

    // Eleven minutes on, signing out everywhere else asks for the password first.
    let mut phone = app.client();
    phone.http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        phone.login("alice", "saffron-glacier-rowboat").await,
        reqwest::StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(11 * 60));
    browser.goto(&format!("{site}/")).await;
    browser.wait_for("Sign out of all other devices").await;
    browser.click("#end-others").await;
    browser.wait_for("Confirm your password").await;
    check_page(&browser, &axe, "confirm-password").await;
    browser
        .type_into("#password", "saffron-glacier-rowboat")
        .await;
    browser.click("form[action='/account/reauth'] button").await;
    browser.wait_for("Password confirmed").await;
    browser.click("#end-others").await;
    browser
        .wait_for("All your other devices are signed out.")
        .await;
    assert_eq!(
        phone.get("/api/profile").await.status(),
        reqwest::StatusCode::UNAUTHORIZED
    );

    // A page that does not exist, for a browser.
    browser.goto(&format!("{site}/no/such/page")).await;
    browser.wait_for("Not Found").await;
    check_page(&browser, &axe, "not-found").await;

    // On a phone's width: everything fits, nothing scrolls sideways.
    browser.resize(390, 844).await;
    browser.goto(&format!("{site}/")).await;
    browser.wait_for("Where you are signed in").await;
    let fits = browser
        .execute("return document.documentElement.scrollWidth <= window.innerWidth;")
        .await;
    assert_eq!(fits, true, "the account page scrolls sideways at 390 px");
    check_page(&browser, &axe, "account-phone").await;
    browser.quit().await;
}

#[tokio::test]
async fn an_administrator_works_the_console_in_chromium_with_no_serious_accessibility_faults() {
    if !browser_available() {
        return;
    }
    let Some(axe) = axe_source() else { return };
    let app = spawn_app().await;
    let browser = Driver::start().await;
    browser.resize(1024, 900).await;
    let site = format!("http://127.0.0.1:{}", app.addr.port());
    let mut alice = app.login("alice").await;

    browser.goto(&format!("{site}/login")).await;
    browser.sign_in("root", PASSWORD).await;
    browser.wait_for("Where you are signed in").await;
    browser.goto(&format!("{site}/admin")).await;
    browser.wait_for("Sessions in the store").await;
    check_page(&browser, &axe, "admin").await;

    browser.goto(&format!("{site}/admin/users")).await;
    browser.type_into("#q", "al").await;
    browser.click("form[role=search] button").await;
    let page = browser.wait_for("/admin/users/alice").await;
    assert!(!page.contains("/admin/users/bob"), "{page}");
    check_page(&browser, &axe, "admin-users").await;

    browser.click("a[href='/admin/users/alice']").await;
    browser.wait_for("End all of alice").await;
    check_page(&browser, &axe, "admin-user").await;
    browser.click("#end-all").await;
    browser.wait_for("All of the user's sessions ended.").await;
    assert_eq!(
        alice.get("/api/profile").await.status(),
        reqwest::StatusCode::UNAUTHORIZED,
        "ended at once"
    );

    browser.goto(&format!("{site}/admin/keys")).await;
    browser.wait_for("Rotate the signing key").await;
    check_page(&browser, &axe, "admin-keys").await;
    browser.click("#rotate").await;
    browser.wait_for("The signing key is rotated").await;

    // The console's log shows all of it, newest first (batched: a moment).
    browser.goto(&format!("{site}/admin/events")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !browser.source().await.contains("admin_rotated_signing_key") {
        assert!(Instant::now() < deadline, "the rotation never showed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        browser.goto(&format!("{site}/admin/events")).await;
    }
    let page = browser.wait_for("admin_revoked_sessions").await;
    assert!(page.contains("login_succeeded"), "{page}");
    check_page(&browser, &axe, "admin-events").await;
    browser.quit().await;
}

#[tokio::test]
async fn a_cross_site_form_cannot_sign_a_browser_in() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    // A page on another origin (another port) posting the login form to sessiond.
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_port = evil.local_addr().unwrap().port();
    let target = format!("http://127.0.0.1:{}/login", app.addr.port());
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\"><input name=username value=alice>\
         <input name=password value=\"{PASSWORD}\"><input name=csrf_token value=guess><button>go</button></form>"
    );
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || async move { axum::response::Html(page) }),
        );
        axum::serve(evil, app).await.unwrap();
    });
    let browser = Driver::start().await;
    browser
        .goto(&format!("http://127.0.0.1:{evil_port}/"))
        .await;
    browser.click("button").await;
    browser.wait_for("CSRF check failed").await;
    assert!(
        browser
            .cookies()
            .await
            .iter()
            .all(|c| c["name"] != "__Host-sessiond")
    );
    browser.quit().await;
}
