//! The server's HTTP behaviour, against the real server on port 0.

use std::time::Duration;

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

#[tokio::test]
async fn login_issues_a_new_token_and_kills_any_presented_one() {
    let app = spawn_app().await;
    let mut c = app.login("alice").await;
    let first = c.session.clone().unwrap();
    // Logging in again while presenting the old cookie (with its CSRF token).
    let rb = c
        .request(Method::POST, "/login")
        .header("x-csrf-token", c.csrf.clone().unwrap())
        .json(&json!({"username": "alice", "password": PASSWORD}));
    assert_eq!(c.send(rb).await.status(), StatusCode::OK);
    let second = c.session.clone().unwrap();
    assert_ne!(first, second, "login must issue a fresh token");
    let mut old = app.client();
    old.session = Some(first);
    assert_eq!(
        old.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED,
        "the pre-login token is dead"
    );
    assert_eq!(c.get("/api/profile").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_session_cookie_has_the_secure_attributes() {
    let app = spawn_app().await;
    let r = app
        .client()
        .http
        .post(format!("{}/login", app.base))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let sc = session_set_cookie(r.headers(), "__Host-sessiond").expect("a __Host- session cookie");
    for attr in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(
            sc.split("; ").any(|a| a == attr),
            "{attr} missing from {sc}"
        );
    }
    // Not remembered: a browser-session cookie (the server still ends the
    // session at its timeouts).
    assert!(!sc.contains("Max-Age"), "{sc}");
    assert!(!sc.contains("Domain="), "__Host- cookies are host-only");
    let token = cookie_value(&sc);
    assert_eq!(token.len(), 43, "256 bits, base64url");
    let body: Value = r.json().await.unwrap();
    assert!(
        !body.to_string().contains(&token),
        "the token appears only in the cookie"
    );
}

#[tokio::test]
async fn the_profile_names_the_user_and_roles_and_needs_a_session() {
    let app = spawn_app().await;
    let mut anon = app.client();
    assert_eq!(
        error_code(anon.get("/api/profile").await).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
    let mut c = app.login("alice").await;
    let r = c.get("/api/profile").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["role"], "user");
    assert_eq!(v["roles"], json!(["user"]));
    assert!(
        v["session"]["expires_at"].as_u64().unwrap() > v["session"]["created_at"].as_u64().unwrap()
    );
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server() {
    let app = spawn_app().await;
    let mut c = app.login("alice").await;
    let token = c.session.clone().unwrap();
    let r = c.unsafe_json(Method::POST, "/logout", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(c.session.is_none(), "the cookie was cleared");
    let mut replay = app.client();
    replay.session = Some(token);
    assert_eq!(
        replay.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED,
        "the old cookie is dead server-side"
    );
}

#[tokio::test]
async fn a_session_expires_when_idle_and_at_its_absolute_lifetime() {
    let app = spawn_app().await;
    let mut c = app.login("alice").await;
    app.clock.advance(Duration::from_secs(29 * 60));
    assert_eq!(c.get("/api/profile").await.status(), StatusCode::OK);
    app.clock.advance(Duration::from_secs(31 * 60));
    assert_eq!(
        c.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED,
        "idle timeout"
    );

    // In use every 4 minutes, a session lives exactly until its absolute lifetime (12 h).
    let mut busy = app.login("bob").await;
    let mut minutes = 0;
    while busy.get("/api/profile").await.status() == StatusCode::OK {
        app.clock.advance(Duration::from_secs(4 * 60));
        minutes += 4;
        assert!(minutes <= 12 * 60 + 4, "outlived its absolute lifetime");
    }
    assert!(
        minutes >= 12 * 60,
        "ended after {minutes} minutes, before its absolute lifetime"
    );
}

#[tokio::test]
async fn renewal_writes_only_under_the_threshold_and_sends_no_cookie_for_a_browser_session() {
    let app = spawn_app().await;
    let mut c = app.login("alice").await;
    for _ in 0..20 {
        app.clock.advance(Duration::from_secs(60));
        let r = c.get("/api/profile").await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            session_set_cookie(r.headers(), "__Host-sessiond").is_none(),
            "no cookie churn before the threshold"
        );
    }
    assert_eq!(app.counting.renew_writes.load(Ordering::SeqCst), 0);
    app.clock.advance(Duration::from_secs(6 * 60)); // 4 minutes left: under the 5-minute threshold
    let r = c.get("/api/profile").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        session_set_cookie(r.headers(), "__Host-sessiond").is_none(),
        "a browser-session cookie has no lifetime to refresh"
    );
    assert_eq!(app.counting.renew_writes.load(Ordering::SeqCst), 1);
    for _ in 0..10 {
        assert_eq!(c.get("/api/profile").await.status(), StatusCode::OK);
    }
    assert_eq!(
        app.counting.renew_writes.load(Ordering::SeqCst),
        1,
        "one write per threshold window"
    );
}

#[tokio::test]
async fn unsafe_requests_without_a_valid_csrf_token_or_from_another_origin_are_refused() {
    let app = spawn_app().await;
    let mut c = app.login("alice").await;
    let path = "/api/session/attributes";
    let body = json!({"theme": "dark"});
    // Missing token.
    let r = c.send(c.request(Method::PATCH, path).json(&body)).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    // Wrong token (a valid token of another session).
    let other = app.login("bob").await;
    let r = c
        .send(
            c.request(Method::PATCH, path)
                .header("x-csrf-token", other.csrf.unwrap())
                .json(&body),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    // Right token, cross-site.
    let token = c.csrf.clone().unwrap();
    let r = c
        .send(
            c.request(Method::PATCH, path)
                .header("x-csrf-token", &token)
                .header("sec-fetch-site", "cross-site")
                .json(&body),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    let r = c
        .send(
            c.request(Method::PATCH, path)
                .header("x-csrf-token", &token)
                .header("origin", "https://evil.example")
                .json(&body),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    // Right token, same origin.
    let origin = app.base.clone();
    let r = c
        .send(
            c.request(Method::PATCH, path)
                .header("x-csrf-token", &token)
                .header("origin", origin)
                .json(&body),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    // A freshly fetched token works too (tokens are masked per fetch).
    c.refresh_csrf().await;
    assert_ne!(c.csrf.as_deref(), Some(token.as_str()));
    assert_eq!(
        c.unsafe_json(Method::PATCH, path, Some(body))
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn role_tiers_answer_401_to_guests_and_403_to_the_wrong_role() {
    let app = spawn_app().await;
    let mut guest = app.client();
    assert_eq!(guest.get("/api/public/ping").await.status(), StatusCode::OK);
    assert_eq!(
        error_code(guest.get("/api/sessions").await).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        error_code(guest.get("/api/admin/users/alice/sessions").await)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let mut user = app.login("alice").await;
    assert_eq!(user.get("/api/sessions").await.status(), StatusCode::OK);
    assert_eq!(
        error_code(user.get("/api/admin/users/alice/sessions").await).await,
        (StatusCode::FORBIDDEN, "forbidden".into())
    );
    let mut admin = app.login("root").await;
    let r = admin.get("/api/admin/users/alice/sessions").await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(
        error_code(admin.get("/api/admin/users/nobody/sessions").await)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let r = admin
        .unsafe_json(Method::DELETE, "/api/admin/users/alice/sessions", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        user.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED,
        "the admin logged alice out"
    );
}

#[tokio::test]
async fn the_device_list_marks_the_current_session_and_revocation_applies_at_the_next_request() {
    let app = spawn_app().await;
    let mut laptop = app.login("alice").await;
    let mut phone = app.login("alice").await;
    let r = laptop.get("/api/sessions").await;
    let v: Value = r.json().await.unwrap();
    let sessions = v["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    let phone_id = sessions.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        !v.to_string().contains(laptop.session.as_deref().unwrap()),
        "ids are handles, not tokens"
    );
    // bob cannot revoke alice's session.
    let mut bob = app.login("bob").await;
    let r = bob
        .unsafe_json(Method::DELETE, &format!("/api/sessions/{phone_id}"), None)
        .await;
    assert_eq!(error_code(r).await.0, StatusCode::NOT_FOUND);
    assert_eq!(phone.get("/api/profile").await.status(), StatusCode::OK);
    let r = laptop
        .unsafe_json(Method::DELETE, &format!("/api/sessions/{phone_id}"), None)
        .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        phone.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Log out everywhere else.
    let mut tablet = app.login("alice").await;
    let r = laptop
        .unsafe_json(Method::POST, "/api/sessions/revoke-others", None)
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["revoked"], 1);
    assert_eq!(
        tablet.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(laptop.get("/api/profile").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_password_change_ends_the_users_other_sessions_and_rotates_the_current_one() {
    let app = spawn_app().await;
    let mut a = app.login("alice").await;
    let mut b = app.login("alice").await;
    let before = a.session.clone();
    let r = a
        .unsafe_json(Method::POST, "/api/password", Some(json!({"current_password": "wrong-password", "new_password": "another-long-password"})))
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "wrong_password".into())
    );
    let r = a
        .unsafe_json(
            Method::POST,
            "/api/password",
            Some(json!({"current_password": PASSWORD, "new_password": "another-long-password"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(
        a.session, before,
        "the current session moved to a fresh token"
    );
    assert_eq!(a.get("/api/profile").await.status(), StatusCode::OK);
    assert_eq!(
        b.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let mut again = app.client();
    assert_eq!(
        again.login("alice", PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        again.login("alice", "another-long-password").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn concurrent_requests_on_one_session_lose_no_update() {
    let app = spawn_app().await;
    let c = app.login("alice").await;
    let (cookie, csrf) = (c.session.clone().unwrap(), c.csrf.clone().unwrap());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let http = c.http.clone();
        let url = format!("{}/api/session/attributes", app.base);
        let (cookie, csrf) = (cookie.clone(), csrf.clone());
        tasks.push(tokio::spawn(async move {
            http.patch(url)
                .header("cookie", format!("__Host-sessiond={cookie}"))
                .header("x-csrf-token", csrf)
                .json(&json!({ format!("k{i}"): i }))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let mut c = c;
    let v: Value = c.get("/api/session").await.json().await.unwrap();
    let attrs = v["attributes"].as_object().unwrap();
    assert_eq!(attrs.len(), 50, "every concurrent update landed");
    for i in 0..50 {
        assert_eq!(attrs[&format!("k{i}")], json!(i));
    }
}

#[tokio::test]
async fn repeated_login_failures_are_throttled_without_revealing_whether_the_user_exists() {
    let app = spawn_app().await;
    let mut c = app.client();
    for name in ["alice", "no-such-user"] {
        for _ in 0..5 {
            let r = c
                .send(
                    c.request(Method::POST, "/login")
                        .json(&json!({"username": name, "password": "wrong-password"})),
                )
                .await;
            assert_eq!(
                error_code(r).await,
                (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
            );
        }
        let r = c
            .send(
                c.request(Method::POST, "/login")
                    .json(&json!({"username": name, "password": PASSWORD})),
            )
            .await;
        assert_eq!(
            r.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{name}: blocked even with the right password"
        );
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry > 0 && retry <= 15 * 60);
        assert_eq!(error_code(r).await.1, "too_many_attempts");
    }
    // Another user is not affected by alice's lock.
    assert_eq!(c.login("bob", PASSWORD).await, StatusCode::OK);
}

#[tokio::test]
async fn the_html_login_form_signs_in_with_its_csrf_token() {
    let app = spawn_app().await;
    let c = app.client();
    let r = c
        .http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"));
    let login_cookie =
        session_set_cookie(r.headers(), "__Host-sessiond-login").expect("double-submit cookie");
    let html = r.text().await.unwrap();
    let token = crate::common::form_csrf_token(&html);
    let form = [
        ("username", "alice"),
        ("password", PASSWORD),
        ("csrf_token", token.as_str()),
    ];
    // Without the cookie (a cross-site form post) it is refused.
    let r = c
        .http
        .post(format!("{}/login", app.base))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let cookie_pair = login_cookie.split(';').next().unwrap().to_owned();
    let r = c
        .http
        .post(format!("{}/login", app.base))
        .header("cookie", &cookie_pair)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let session = cookie_value(&session_set_cookie(r.headers(), "__Host-sessiond").unwrap());
    let page = c
        .http
        .get(format!("{}/", app.base))
        .header("cookie", format!("__Host-sessiond={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("id=\"user\">alice</strong>")
    );
    // A wrong password re-renders the form (HTML, 401).
    let bad = [
        ("username", "alice"),
        ("password", "nope-nope-nope"),
        ("csrf_token", token.as_str()),
    ];
    let r = c
        .http
        .post(format!("{}/login", app.base))
        .header("cookie", &cookie_pair)
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let mut c = app.client();
    assert_eq!(c.get("/healthz").await.status(), StatusCode::OK);
    let v: Value = c.get("/readyz").await.json().await.unwrap();
    assert_eq!(v["status"], "ready");
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_a_json_503_not_a_hang() {
    // A 0 s deadline: any request that has to wait (a login hashes for ~30 ms) runs out.
    let mut config = test_config();
    config.server.request_timeout = std::time::Duration::ZERO;
    let app = spawn_app_on(
        sessiond::StoreHandle::from_backend(std::sync::Arc::new(sessiond_core::MemoryStore::new())),
        config,
    )
    .await;
    let mut c = app.client();
    let r = c
        .send(
            c.request(Method::POST, "/login")
                .json(&json!({"username": "alice", "password": PASSWORD})),
        )
        .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::SERVICE_UNAVAILABLE, "deadline_exceeded".into())
    );
}
