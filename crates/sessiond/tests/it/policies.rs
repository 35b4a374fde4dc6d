//! Session policies on a real server: the limit on a user's sessions,
//! "keep me signed in", re-authentication for sensitive actions, per-role
//! timeouts and the password rules.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sessiond::config::{OnLimitSetting, RoleSection};
use sessiond::{ServerConfig, StoreHandle};
use sessiond_core::{Clock as _, MemoryStore};

use crate::common::{
    PASSWORD, TestApp, error_code, session_set_cookie, spawn_app, spawn_app_on, test_config,
    token_request,
};

async fn app_with(change: impl FnOnce(&mut ServerConfig)) -> TestApp {
    let mut config = test_config();
    change(&mut config);
    let store = StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new()));
    spawn_app_on(store, config).await
}

async fn login(app: &TestApp, user: &str, remember: Option<bool>) -> reqwest::Response {
    let mut body = json!({"username": user, "password": PASSWORD});
    if let Some(r) = remember {
        body["remember"] = json!(r);
    }
    reqwest::Client::new()
        .post(format!("{}/login", app.base))
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn session_cookie(app: &TestApp, r: &reqwest::Response) -> String {
    session_set_cookie(r.headers(), &app.config.session_cookie().name).expect("a session cookie")
}

async fn profile_status(app: &TestApp, cookie: &str) -> StatusCode {
    let value = crate::common::cookie_value(cookie);
    reqwest::Client::new()
        .get(format!("{}/api/profile", app.base))
        .header(
            "cookie",
            format!("{}={value}", app.config.session_cookie().name),
        )
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_remembered_sign_in_outlives_the_browser_and_the_normal_idle_timeout() {
    let app = spawn_app().await;
    let remembered = login(&app, "alice", Some(true)).await;
    assert_eq!(remembered.status(), StatusCode::OK);
    let remembered = session_cookie(&app, &remembered);
    let max_age: u64 = remembered
        .split("Max-Age=")
        .nth(1)
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.parse().ok())
        .expect("a remembered session's cookie has a Max-Age");
    assert_eq!(max_age, 14 * 24 * 3600);
    let plain = session_cookie(&app, &login(&app, "alice", None).await);
    assert!(
        !plain.contains("Max-Age"),
        "a browser-session cookie: {plain}"
    );
    // An hour later the normal session has idled out (30 minutes); the
    // remembered one lives on.
    app.clock.advance(Duration::from_secs(3600));
    assert_eq!(profile_status(&app, &plain).await, StatusCode::UNAUTHORIZED);
    assert_eq!(profile_status(&app, &remembered).await, StatusCode::OK);
}

#[tokio::test]
async fn renewing_a_remembered_session_refreshes_its_cookie_lifetime() {
    let app = spawn_app().await;
    let r = login(&app, "alice", Some(true)).await;
    let cookie = session_cookie(&app, &r);
    let policy = app
        .config
        .session_rules()
        .expiry_for(&["user".to_owned()], true);
    // Just under a sixth of the 14 days left: the renewal is due.
    app.clock
        .advance(policy.idle_timeout - policy.renewal_threshold + Duration::from_secs(60));
    let value = crate::common::cookie_value(&cookie);
    let r = reqwest::Client::new()
        .get(format!("{}/api/profile", app.base))
        .header(
            "cookie",
            format!("{}={value}", app.config.session_cookie().name),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let renewed = session_cookie(&app, &r);
    assert!(renewed.contains("Max-Age=1209600"), "{renewed}");
}

#[tokio::test]
async fn the_device_list_says_which_sessions_are_remembered() {
    let app = spawn_app().await;
    login(&app, "alice", Some(true)).await;
    let mut client = app.client();
    assert_eq!(client.login("alice", PASSWORD).await, StatusCode::OK);
    let r = client.get("/api/sessions").await;
    let body: Value = r.json().await.unwrap();
    let mut flags: Vec<(bool, bool)> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["current"].as_bool().unwrap(),
                s["remembered"].as_bool().unwrap(),
            )
        })
        .collect();
    flags.sort_unstable();
    assert_eq!(flags, [(false, true), (true, false)]);
}

#[tokio::test]
async fn with_remember_me_off_the_choice_is_ignored_and_not_offered() {
    let app = app_with(|c| c.session.remember_me = false).await;
    let cookie = session_cookie(&app, &login(&app, "alice", Some(true)).await);
    assert!(!cookie.contains("Max-Age"), "{cookie}");
    let page = reqwest::get(format!("{}/login", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("name=\"remember\""));
    let app = spawn_app().await;
    let page = reqwest::get(format!("{}/login", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"remember\""), "offered by default");
}

#[tokio::test]
async fn a_form_sign_in_with_the_box_ticked_is_remembered() {
    let app = spawn_app().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    let csrf_cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("__Host-sessiond-login="))
        .unwrap();
    let token = crate::common::cookie_value(&csrf_cookie);
    let r = http
        .post(format!("{}/login", app.base))
        .header("cookie", format!("__Host-sessiond-login={token}"))
        .form(&[
            ("username", "alice"),
            ("password", PASSWORD),
            ("csrf_token", token.as_str()),
            ("remember", "true"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(session_cookie(&app, &r).contains("Max-Age="));
}

#[tokio::test]
async fn past_a_refusing_limit_a_sign_in_gets_409_and_nothing_is_created() {
    let app = app_with(|c| {
        c.session.max_sessions_per_user = 2;
        c.session.on_limit = OnLimitSetting::Refuse;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(login(&app, "alice", None).await.status(), StatusCode::OK);
    }
    assert_eq!(
        error_code(login(&app, "alice", None).await).await,
        (StatusCode::CONFLICT, "session_limit".into())
    );
    // Token families count as sessions.
    assert_eq!(
        error_code(token_request(&app.base, "alice", PASSWORD).await).await,
        (StatusCode::CONFLICT, "session_limit".into())
    );
    assert_eq!(
        app.store
            .list_by_user("alice", app.clock.now())
            .await
            .unwrap()
            .len(),
        2
    );
    // Another user is not held to alice's count.
    assert_eq!(login(&app, "bob", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn past_an_evicting_limit_the_oldest_device_is_signed_out_at_once() {
    let app = app_with(|c| c.session.max_sessions_per_user = 2).await;
    let first = session_cookie(&app, &login(&app, "alice", None).await);
    app.clock.advance(Duration::from_secs(60));
    let second = session_cookie(&app, &login(&app, "alice", None).await);
    app.clock.advance(Duration::from_secs(60));
    let r = token_request(&app.base, "alice", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK, "a token family evicts too");
    assert_eq!(profile_status(&app, &first).await, StatusCode::UNAUTHORIZED);
    assert_eq!(profile_status(&app, &second).await, StatusCode::OK);
}

#[tokio::test]
async fn twenty_concurrent_sign_ins_with_a_limit_of_three_leave_three_sessions() {
    let app = app_with(|c| {
        c.session.max_sessions_per_user = 3;
        // Sign-ins in flight hold places on the throttle's counters.
        c.login.failures_per_user = 50;
        c.login.failures_per_ip = 50;
    })
    .await;
    let logins: Vec<_> = (0..20)
        .map(|_| {
            let base = app.base.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(format!("{base}/login"))
                    .json(&json!({"username": "alice", "password": PASSWORD}))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for l in logins {
        assert_eq!(l.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(
        app.store
            .list_by_user("alice", app.clock.now())
            .await
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn sensitive_actions_need_a_recent_password_and_reauth_opens_the_window_again() {
    let app = spawn_app().await;
    let mut admin = app.login("root").await;
    let r = admin
        .unsafe_json(Method::POST, "/api/admin/keys/rotate", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "just signed in");
    app.clock.advance(Duration::from_secs(11 * 60));
    let r = admin
        .unsafe_json(Method::POST, "/api/admin/keys/rotate", None)
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "reauthentication_required".into())
    );
    let r = admin
        .unsafe_json(Method::POST, "/api/sessions/revoke-others", None)
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "reauthentication_required".into())
    );
    let r = admin
        .unsafe_json(
            Method::POST,
            "/api/reauth",
            Some(json!({"password": "not-the-password"})),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "wrong_password".into())
    );
    let before = admin.session.clone();
    let r = admin
        .unsafe_json(
            Method::POST,
            "/api/reauth",
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    admin.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_ne!(
        admin.session, before,
        "a re-authentication cycles the token"
    );
    let r = admin
        .unsafe_json(Method::POST, "/api/admin/keys/rotate", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "within the window again");
    // The old token died with the cycle.
    let old = format!("{}={}", app.config.session_cookie().name, before.unwrap());
    assert_eq!(profile_status(&app, &old).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_role_with_a_shorter_window_or_idle_timeout_gets_the_strictest() {
    let app = app_with(|c| {
        c.roles.insert(
            "admin".into(),
            RoleSection {
                idle_timeout: Some(Duration::from_secs(10 * 60)),
                reauth_window: Some(Duration::from_secs(60)),
                ..RoleSection::default()
            },
        );
    })
    .await;
    let mut admin = app.login("root").await;
    let mut user = app.login("alice").await;
    app.clock.advance(Duration::from_secs(2 * 60));
    let r = admin
        .unsafe_json(Method::POST, "/api/sessions/revoke-others", None)
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "reauthentication_required".into()),
        "the admin role's one-minute window"
    );
    let r = user
        .unsafe_json(Method::POST, "/api/sessions/revoke-others", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "the default ten minutes");
    // Eleven minutes idle: past the admin role's ten, within everyone's 30.
    app.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        admin.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(user.get("/api/profile").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn weak_passwords_are_refused_everywhere_with_the_reason() {
    let app = spawn_app().await;
    let mut alice = app.login("alice").await;
    for (new, reason) in [
        ("short-1", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("my-alice-secret-99", "must not contain the user name"),
    ] {
        let r = alice
            .unsafe_json(
                Method::POST,
                "/api/password",
                Some(json!({"current_password": PASSWORD, "new_password": new})),
            )
            .await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{new}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "weak_password");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{new}: {message}");
    }
    // The password is unchanged: the old one still signs in.
    assert_eq!(login(&app, "alice", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_access_rule_marked_reauth_lets_a_session_pass_only_with_a_recent_password() {
    let mut config = test_config();
    config.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    config.access.rules = serde_json::from_value(json!([
        {"path": "/settings/**", "allow": "authenticated", "reauth": true},
        {"path": "/**", "allow": "authenticated"},
    ]))
    .unwrap();
    let store = StoreHandle::from_backend(std::sync::Arc::new(MemoryStore::new()));
    let app = spawn_app_on(store, config).await;
    let mut alice = app.login("alice").await;
    let ask = |cookie: String, url: &'static str| {
        let base = app.base.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/auth/verify"))
                .header("x-original-url", url)
                .header("x-original-method", "GET")
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
        }
    };
    let cookie = |c: &crate::common::Client| {
        format!(
            "{}={}",
            app.config.session_cookie().name,
            c.session.clone().unwrap()
        )
    };
    let settings = "https://app.example/settings/security";
    assert_eq!(ask(cookie(&alice), settings).await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(11 * 60));
    let r = ask(cookie(&alice), settings).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/login?rd="),
        "nginx sends the browser to sign in again"
    );
    assert_eq!(error_code(r).await.1, "reauthentication_required");
    // Other paths do not ask for it.
    let r = ask(cookie(&alice), "https://app.example/home").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = alice
        .unsafe_json(
            Method::POST,
            "/api/reauth",
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(ask(cookie(&alice), settings).await.status(), StatusCode::OK);
}
