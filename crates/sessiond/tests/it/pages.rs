//! The HTML pages over HTTP: the account security page and its forms, the
//! password prompt before a sensitive action, and error pages for
//! browsers. (`browser.rs` drives the same pages in Chromium.)

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::common::{Client, PASSWORD, TestApp, spawn_app};

/// Posts a page's form with the session's CSRF token, as a browser would.
async fn form(c: &mut Client, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    let csrf = c.csrf.clone().unwrap_or_default();
    let mut all: Vec<(&str, &str)> = vec![("csrf_token", csrf.as_str())];
    all.extend_from_slice(fields);
    let rb = c
        .request(Method::POST, path)
        .header("accept", "text/html")
        .form(&all);
    c.send(rb).await
}

async fn page(c: &mut Client, path: &str) -> (StatusCode, String) {
    let rb = c.request(Method::GET, path).header("accept", "text/html");
    let r = c.send(rb).await;
    (r.status(), r.text().await.unwrap())
}

/// A second device of `user`, signed in with its own User-Agent.
async fn other_device(app: &TestApp, user: &str, agent: &str) -> Client {
    let mut c = app.client();
    c.http = reqwest::Client::builder()
        .user_agent(agent)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(c.login(user, PASSWORD).await, StatusCode::OK);
    c
}

async fn session_ids(c: &mut Client) -> Vec<(String, bool)> {
    let body: Value = c.get("/api/sessions").await.json().await.unwrap();
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["current"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_account_page_lists_devices_with_times_people_read_and_escapes_what_they_sent() {
    let app = spawn_app().await;
    let mut me = app.login("alice").await;
    other_device(&app, "alice", "<script>alert(1)</script>").await;
    app.clock.advance(Duration::from_secs(3 * 60 + 10));
    let (status, html) = page(&mut me, "/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("This device"), "{html}");
    assert!(html.contains("3 minutes ago"), "{html}");
    assert!(
        html.contains("title=\"20"),
        "the exact time on hover: {html}"
    );
    assert!(html.contains("Sign out of all other devices"));
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;") || html.contains("&#60;script&#62;"));
    assert!(
        html.contains("At least 12 characters"),
        "the rules, before they are broken"
    );
}

#[tokio::test]
async fn signing_another_device_out_from_the_page_refuses_it_at_once() {
    let app = spawn_app().await;
    let mut me = app.login("alice").await;
    let mut phone = other_device(&app, "alice", "Phone").await;
    let (other, _) = session_ids(&mut me)
        .await
        .into_iter()
        .find(|(_, current)| !current)
        .unwrap();
    let r = form(&mut me, &format!("/account/sessions/{other}/end"), &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/?done=signed-out");
    assert_eq!(
        phone.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, html) = page(&mut me, "/?done=signed-out").await;
    assert!(html.contains("That device is signed out."));
    // Again: it is gone, and the page says so.
    let r = form(&mut me, &format!("/account/sessions/{other}/end"), &[]).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("already ended"));
}

#[tokio::test]
async fn a_form_without_the_csrf_token_changes_nothing() {
    let app = spawn_app().await;
    let mut me = app.login("alice").await;
    let mut phone = other_device(&app, "alice", "Phone").await;
    me.csrf = Some("not-the-token".into());
    let r = form(&mut me, "/account/sessions/end-others", &[]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "a page for a browser"
    );
    assert_eq!(phone.get("/api/profile").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_out_everywhere_else_asks_for_the_password_once_it_is_old() {
    let app = spawn_app().await;
    let mut me = app.login("alice").await;
    let mut phone = other_device(&app, "alice", "Phone").await;
    app.clock.advance(Duration::from_secs(11 * 60));
    let r = form(&mut me, "/account/sessions/end-others", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(html.contains("Confirm your password"), "{html}");
    assert_eq!(phone.get("/api/profile").await.status(), StatusCode::OK);
    let r = form(&mut me, "/account/reauth", &[("password", "not-it-at-all")]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("the current password is wrong")
    );
    let r = form(&mut me, "/account/reauth", &[("password", PASSWORD)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The token was cycled: the page gives the new CSRF token.
    let (_, html) = page(&mut me, "/?done=confirmed").await;
    assert!(html.contains("Password confirmed"));
    me.csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_owned);
    let r = form(&mut me, "/account/sessions/end-others", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        phone.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_password_form_explains_a_refusal_beside_it_and_a_change_signs_others_out() {
    let app = spawn_app().await;
    let mut me = app.login("alice").await;
    let mut phone = other_device(&app, "alice", "Phone").await;
    let r = form(
        &mut me,
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "password1234"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"password-error\""), "{html}");
    assert!(html.contains("too easy to guess"), "{html}");
    let r = form(
        &mut me,
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "saffron-glacier-rowboat"),
        ],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/?done=password-changed");
    assert_eq!(
        phone.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        me.get("/api/profile").await.status(),
        StatusCode::OK,
        "this device stays"
    );
}

#[tokio::test]
async fn a_browser_gets_an_error_page_and_an_api_client_keeps_the_json() {
    let app = spawn_app().await;
    let mut anonymous = app.client();
    let (status, html) = page(&mut anonymous, "/api/profile").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(
        html.contains("unauthenticated"),
        "the code, to quote: {html}"
    );
    let r = anonymous.get("/api/profile").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let (status, html) = page(&mut anonymous, "/no/such/page").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("Not Found"), "{html}");
}

#[tokio::test]
async fn an_administrator_finds_a_user_ends_their_sessions_and_changes_their_access() {
    let app = spawn_app().await;
    let mut root = app.login("root").await;
    let mut alice = app.login("alice").await;
    let (status, html) = page(&mut root, "/admin").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Sessions in the store"), "{html}");
    let (_, html) = page(&mut root, "/admin/users?q=al").await;
    assert!(html.contains("href=\"/admin/users/alice\""), "{html}");
    assert!(
        !html.contains("href=\"/admin/users/bob\""),
        "a prefix search: {html}"
    );
    // Not for everyone.
    let (status, html) = page(&mut alice, "/admin/users").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(html.starts_with("<!doctype html>"));

    let r = form(&mut root, "/admin/users/alice/sessions/end-all", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        alice.get("/api/profile").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let r = form(
        &mut root,
        "/admin/users/alice/roles",
        &[("roles", "user, Not A Role")],
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "refused beside the form"
    );
    assert!(r.text().await.unwrap().contains("invalid role"));
    let r = form(
        &mut root,
        "/admin/users/alice/roles",
        &[("roles", "user, auditor")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&mut root, "/admin/users/alice?done=roles").await;
    assert!(
        html.contains("Roles saved") && html.contains("user, auditor"),
        "{html}"
    );

    let r = form(
        &mut root,
        "/admin/users/alice/disabled",
        &[("disabled", "true")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.client().login("alice", PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    let r = form(
        &mut root,
        "/admin/users/alice/disabled",
        &[("disabled", "false")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.client().login("alice", PASSWORD).await, StatusCode::OK);
}

#[tokio::test]
async fn admin_actions_ask_for_the_password_once_it_is_old_and_return_to_the_page() {
    let app = spawn_app().await;
    let mut root = app.login("root").await;
    app.clock.advance(Duration::from_secs(11 * 60));
    let r = form(&mut root, "/admin/keys/rotate", &[]).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("name=\"next\" value=\"/admin/keys\""),
        "{html}"
    );
    let r = form(
        &mut root,
        "/account/reauth",
        &[("password", PASSWORD), ("next", "/admin/keys")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/admin/keys?done=confirmed");
    // An open redirect through `next` is not one.
    let (_, html) = page(&mut root, "/admin/keys").await;
    root.csrf = csrf_of(&html);
    app.clock.advance(Duration::from_secs(11 * 60));
    let r = form(
        &mut root,
        "/account/reauth",
        &[("password", PASSWORD), ("next", "//evil.example/")],
    )
    .await;
    assert_eq!(r.headers()["location"], "/?done=confirmed");
    let (_, html) = page(&mut root, "/admin/keys").await;
    root.csrf = csrf_of(&html);
    let r = form(&mut root, "/admin/keys/rotate", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    // A service key, shown once; then revoked.
    let r = form(
        &mut root,
        "/admin/service-keys",
        &[("name", "billing"), ("scopes", "sessions:read, users:read")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let secret = html
        .split("<code>sdk_")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .map(|s| format!("sdk_{s}"))
        .expect("the key, once");
    let (_, again) = page(&mut root, "/admin/keys").await;
    assert!(!again.contains(&secret), "shown once only");
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/users", app.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the key works");
    let r = form(&mut root, "/admin/service-keys/billing/revoke", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/users", app.base))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

fn csrf_of(html: &str) -> Option<String> {
    html.split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .map(str::to_owned)
}

/// The admin events page once it shows `text` (events reach the store in
/// batches, within about half a second).
async fn events_page_showing(root: &mut Client, path: &str, text: &str) -> String {
    for _ in 0..50 {
        let (status, html) = page(root, path).await;
        assert_eq!(status, StatusCode::OK);
        if html.contains(text) {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never showed {text}");
}

#[tokio::test]
async fn the_security_events_of_sign_ins_and_admin_actions_are_kept_and_filtered() {
    let app = spawn_app().await;
    let mut root = app.login("root").await;
    assert_eq!(
        app.client().login("alice", "not-her-password").await,
        StatusCode::UNAUTHORIZED
    );
    app.login("alice").await;
    let r = form(&mut root, "/admin/users/alice/sessions/end-all", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);

    let html = events_page_showing(
        &mut root,
        "/admin/events?user=alice",
        "admin_revoked_sessions",
    )
    .await;
    assert!(
        html.contains("login_failed") && html.contains("login_succeeded"),
        "{html}"
    );
    assert!(html.contains(">root<"), "who did it: {html}");
    let newest = html.find("admin_revoked_sessions").unwrap();
    assert!(newest < html.find("login_failed").unwrap(), "newest first");
    let html = events_page_showing(
        &mut root,
        "/admin/events?kind=admin_*",
        "admin_revoked_sessions",
    )
    .await;
    assert!(!html.contains("login_failed"), "{html}");
    let (_, overview) = page(&mut root, "/admin").await;
    assert!(
        overview.contains("Failed or throttled sign-ins in the last hour</th><td>1<"),
        "{overview}"
    );

    // The same log through the service API.
    let keys = sessiond::service_keys::ServiceKeys::new(
        app.store.clone(),
        std::sync::Arc::new(app.clock.clone()),
    );
    let scopes = [sessiond::service_keys::ServiceScope::Admin]
        .into_iter()
        .collect();
    let (_, secret) = keys.add("audit", scopes).await.unwrap();
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/events?user=alice&kind=login_*",
            app.base
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["login_succeeded", "login_failed"]);
}
