//! The service API (`/api/v1`) with service keys: who may call it, `whoami`
//! for another backend's cookie, introspection of every kind of token, and
//! the `service-key` commands of the binary.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::service_keys::{ServiceKeys, ServiceScope};

use crate::common::{
    PASSWORD, TestApp, cookie_value, error_code, session_set_cookie, spawn_app, token_request,
};

async fn key(app: &TestApp, name: &str, scopes: &[ServiceScope]) -> String {
    let keys = ServiceKeys::new(app.store.clone(), Arc::new(app.clock.clone()));
    let scopes: BTreeSet<ServiceScope> = scopes.iter().copied().collect();
    keys.add(name, scopes).await.unwrap().1
}

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Signs `user` in through the login form; the session cookie's value.
async fn cookie_of(app: &TestApp, user: &str) -> String {
    cookie_with(app, user, PASSWORD).await
}

async fn cookie_with(app: &TestApp, user: &str, password: &str) -> String {
    let r = http()
        .post(format!("{}/login", app.base))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let name = app.config.session_cookie().name;
    cookie_value(&session_set_cookie(r.headers(), &name).unwrap())
}

async fn whoami(app: &TestApp, auth: Option<&str>, body: Value) -> reqwest::Response {
    let mut rb = http()
        .post(format!("{}/api/v1/sessions/whoami", app.base))
        .json(&body);
    if let Some(key) = auth {
        rb = rb.bearer_auth(key);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn a_backend_with_a_key_learns_whose_cookie_it_was_given() {
    let app = spawn_app().await;
    let secret = key(&app, "billing", &[ServiceScope::SessionsRead]).await;
    let cookie = cookie_of(&app, "alice").await;
    let r = whoami(&app, Some(&secret), json!({"token": cookie})).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["id"], "alice");
    assert_eq!(body["user"]["roles"], json!(["user"]));
    assert!(body["session"]["id"].as_str().unwrap().len() >= 40);
    assert!(body["session"]["idle_expires_at"].as_u64().unwrap() > 0);
    assert!(
        !body.to_string().contains(&cookie),
        "the token is never echoed"
    );
    // A cookie that is no session: 401, in the error shape.
    let r = whoami(&app, Some(&secret), json!({"token": "not-a-session"})).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "unauthenticated".into())
    );
}

#[tokio::test]
async fn no_key_a_wrong_key_or_a_revoked_key_is_401_and_a_missing_scope_403() {
    let app = spawn_app().await;
    let cookie = cookie_of(&app, "alice").await;
    let body = json!({"token": cookie});
    let r = whoami(&app, None, body.clone()).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_service_key".into())
    );
    let r = whoami(&app, Some("sdk_guessed"), body.clone()).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_service_key".into())
    );
    let users_only = key(&app, "directory", &[ServiceScope::UsersRead]).await;
    let r = whoami(&app, Some(&users_only), body.clone()).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );
    let admin = key(&app, "ops", &[ServiceScope::Admin]).await;
    assert_eq!(
        whoami(&app, Some(&admin), body.clone()).await.status(),
        StatusCode::OK
    );
    let keys = ServiceKeys::new(app.store.clone(), Arc::new(app.clock.clone()));
    assert!(keys.revoke("ops").await.unwrap());
    let r = whoami(&app, Some(&admin), body).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked at once");
}

#[tokio::test]
async fn a_service_request_is_not_a_cookie_request_no_csrf_and_the_cookie_is_ignored() {
    let app = spawn_app().await;
    let secret = key(&app, "sso", &[ServiceScope::SessionsRead]).await;
    let alice = cookie_of(&app, "alice").await;
    let bob = cookie_of(&app, "bob").await;
    let name = app.config.session_cookie().name;
    // A POST with a session cookie and no CSRF token passes (the cookie is
    // dropped), and the answer is about the token in the body, not the cookie.
    let r = http()
        .post(format!("{}/api/v1/sessions/whoami", app.base))
        .bearer_auth(&secret)
        .header("cookie", format!("{name}={bob}"))
        .json(&json!({"token": alice}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["user"]["id"], "alice");
}

#[tokio::test]
async fn hostile_bodies_get_a_clear_400_and_change_nothing() {
    let app = spawn_app().await;
    let secret = key(&app, "edge", &[ServiceScope::SessionsRead]).await;
    for body in [
        json!({}),
        json!({"token": 7}),
        json!({"token": "x", "extra": true}),
        json!("token"),
        json!(null),
    ] {
        let r = whoami(&app, Some(&secret), body.clone()).await;
        let (status, _) = error_code(r).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let r = http()
        .post(format!("{}/api/v1/sessions/whoami", app.base))
        .bearer_auth(&secret)
        .header("content-type", "text/plain")
        .body("token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn introspect(app: &TestApp, key: &str, token: &str) -> Value {
    let r = http()
        .post(format!("{}/api/v1/introspect", app.base))
        .bearer_auth(key)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

#[tokio::test]
async fn introspection_says_active_for_live_tokens_of_every_kind_and_inactive_for_the_rest() {
    let app = spawn_app().await;
    let secret = key(&app, "gateway", &[ServiceScope::SessionsRead]).await;
    let cookie = cookie_of(&app, "alice").await;
    let session = introspect(&app, &secret, &cookie).await;
    assert_eq!(session["active"], true);
    assert_eq!(session["token_type"], "session");
    assert_eq!(session["sub"], "alice");

    let tokens: Value = token_request(&app.base, "bob", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let a = introspect(&app, &secret, access).await;
    assert_eq!(
        (
            a["active"].clone(),
            a["token_type"].clone(),
            a["sub"].clone()
        ),
        (json!(true), json!("access_token"), json!("bob"))
    );
    assert!(a["exp"].as_u64().unwrap() > a["iat"].as_u64().unwrap());
    let r = introspect(&app, &secret, refresh).await;
    assert_eq!(
        (r["active"].clone(), r["token_type"].clone()),
        (json!(true), json!("refresh_token"))
    );
    assert!(
        r["session"]["attributes"].as_object().unwrap().is_empty(),
        "the family's bookkeeping is not shown: {r}"
    );

    for dead in [
        "",
        "garbage",
        "a.b.c",
        &format!("{access}x"),
        &format!("{refresh}x"),
    ] {
        assert_eq!(
            introspect(&app, &secret, dead).await,
            json!({"active": false}),
            "{dead:?}"
        );
    }
    // A spent refresh token is inactive.
    let rotated = crate::common::refresh_request(&app.base, refresh).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let _ = rotated.text().await;
    app.clock.advance(std::time::Duration::from_secs(120));
    assert_eq!(introspect(&app, &secret, refresh).await["active"], false);
}

#[test]
fn the_binary_adds_lists_and_revokes_service_keys_and_never_prints_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env_remove("SESSIOND_CONFIG")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (ok, key, _) = run(&[
        "service-key",
        "add",
        "billing",
        "--scope",
        "sessions:read,users:read",
    ]);
    assert!(ok);
    assert!(
        key.trim().starts_with("sdk_") && key.trim().len() == 47,
        "{key}"
    );
    let (ok, _, err) = run(&["service-key", "add", "bad", "--scope", "sessions:delete"]);
    assert!(!ok && err.contains("unknown scope"), "{err}");
    let (ok, list, _) = run(&["service-key", "list"]);
    assert!(ok);
    assert!(
        list.starts_with("billing\tsessions:read,users:read\tcreated "),
        "{list}"
    );
    assert!(list.contains("never used"));
    assert!(!list.contains(&key.trim()[4..]));
    let (ok, out, _) = run(&["service-key", "revoke", "billing"]);
    assert!(ok && out.contains("revoked billing"));
    let (ok, _, err) = run(&["service-key", "revoke", "billing"]);
    assert!(!ok && err.contains("no service key named"), "{err}");
}

fn with_key(rb: reqwest::RequestBuilder, key: &str) -> reqwest::RequestBuilder {
    rb.bearer_auth(key)
}

#[tokio::test]
async fn a_backend_starts_lists_changes_and_ends_a_users_sessions() {
    let app = spawn_app().await;
    let writer = key(
        &app,
        "sso",
        &[ServiceScope::SessionsRead, ServiceScope::SessionsWrite],
    )
    .await;
    let reader = key(&app, "audit", &[ServiceScope::SessionsRead]).await;
    let base = &app.base;

    // Start: the token once, with the cookie it belongs in; it works as a cookie.
    let r = with_key(http().post(format!("{base}/api/v1/sessions")), &writer)
        .json(&json!({"user": "alice", "attributes": {"sso": "okta"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let token = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["cookie"]["name"], app.config.session_cookie().name);
    assert_eq!(made["cookie"]["http_only"], true);
    assert!(
        made["cookie"]["max_age"].is_null(),
        "a browser-session cookie"
    );
    assert_eq!(made["session"]["attributes"]["sso"], "okta");
    let remembered: Value = with_key(http().post(format!("{base}/api/v1/sessions")), &writer)
        .json(&json!({"user": "bob", "remember": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(remembered["cookie"]["max_age"], 14 * 24 * 3600);
    let id = made["session"]["id"].as_str().unwrap().to_owned();
    let me = http()
        .get(format!("{base}/api/session"))
        .header(
            "cookie",
            format!("{}={token}", app.config.session_cookie().name),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    // Only with sessions:write, and only for a user that exists.
    let r = with_key(http().post(format!("{base}/api/v1/sessions")), &reader)
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await.1, "insufficient_scope");
    let r = with_key(http().post(format!("{base}/api/v1/sessions")), &writer)
        .json(&json!({"user": "nobody"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );

    // List, a page at a time.
    cookie_of(&app, "alice").await;
    cookie_of(&app, "alice").await;
    let page = |cursor: Option<String>| {
        let mut url = format!("{base}/api/v1/users/alice/sessions?limit=2");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let reader = reader.clone();
        async move {
            let r = with_key(http().get(url), &reader).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<Value>().await.unwrap()
        }
    };
    let first = page(None).await;
    assert_eq!(first["sessions"].as_array().unwrap().len(), 2);
    let second = page(first["next_cursor"].as_str().map(str::to_owned)).await;
    assert_eq!(second["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(second["next_cursor"], Value::Null);
    let r = with_key(
        http().get(format!("{base}/api/v1/users/alice/sessions?limit=500")),
        &reader,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Change one attribute, field by field.
    let r = with_key(
        http().patch(format!("{base}/api/v1/sessions/{id}/attributes")),
        &writer,
    )
    .json(&json!({"sso": null, "tenant": 7}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let who = whoami(&app, Some(&reader), json!({"token": token}))
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(who["session"]["attributes"], json!({"tenant": 7}));

    // End all but that one, then that one.
    let r = with_key(
        http().delete(format!("{base}/api/v1/users/alice/sessions?except={id}")),
        &writer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["revoked"], 2);
    let r = with_key(
        http().delete(format!("{base}/api/v1/sessions/{id}")),
        &writer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = with_key(
        http().delete(format!("{base}/api/v1/sessions/{id}")),
        &writer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "not_found".into())
    );
    let r = whoami(&app, Some(&reader), json!({"token": token})).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "ended at once");
    let r = with_key(
        http().delete(format!("{base}/api/v1/sessions/not-an-id")),
        &writer,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn login_status(app: &TestApp, user: &str, password: &str) -> StatusCode {
    http()
        .post(format!("{}/login", app.base))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn users_are_created_listed_changed_disabled_and_deleted_and_their_sessions_follow() {
    let app = spawn_app().await;
    let admin = key(
        &app,
        "hr",
        &[
            ServiceScope::UsersRead,
            ServiceScope::UsersWrite,
            ServiceScope::SessionsRead,
        ],
    )
    .await;
    let reader = key(&app, "report", &[ServiceScope::UsersRead]).await;
    let base = &app.base;
    let call = |rb: reqwest::RequestBuilder, k: &str| rb.bearer_auth(k).send();

    // Create: 201, the hash never shown; a taken name 409; unknown fields 400.
    let r = call(
        http()
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "carol", "password": PASSWORD, "roles": ["user", "billing"]})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let carol: Value = r.json().await.unwrap();
    assert_eq!(carol["roles"], json!(["user", "billing"]));
    assert!(!carol.to_string().contains("argon2"));
    let r = call(
        http()
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "carol", "password": PASSWORD})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::CONFLICT, "conflict".into())
    );
    let r = call(
        http()
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "dave", "password": PASSWORD, "admin": true})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(
        http()
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"name": "erin", "password": PASSWORD})),
        &reader,
    )
    .await
    .unwrap();
    assert_eq!(error_code(r).await.1, "insufficient_scope");

    // List: pages by name, a prefix search.
    let r = call(http().get(format!("{base}/api/v1/users?limit=2")), &reader)
        .await
        .unwrap();
    let first: Value = r.json().await.unwrap();
    let names: Vec<&str> = first["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let r = call(
        http().get(format!("{base}/api/v1/users?limit=2&cursor={cursor}")),
        &reader,
    )
    .await
    .unwrap();
    let second: Value = r.json().await.unwrap();
    let names: Vec<&str> = second["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["carol", "root"]);
    assert_eq!(second["next_cursor"], Value::Null);
    let r = call(http().get(format!("{base}/api/v1/users?q=ca")), &reader)
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["users"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let r = call(http().get(format!("{base}/api/v1/users?limit=0")), &reader)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A role change ends carol's sessions at once; her next sign-in has the new roles.
    let cookie = cookie_of(&app, "carol").await;
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!({"roles": ["user"]})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["sessions_ended"], 1);
    assert_eq!(
        whoami(&app, Some(&admin), json!({"token": cookie}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let cookie = cookie_of(&app, "carol").await;
    let who: Value = whoami(&app, Some(&admin), json!({"token": cookie}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["user"]["roles"], json!(["user"]));

    // Disabled: sessions end, sign-in is refused like a wrong password; enabled again: back.
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!({"disabled": true})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["disabled"], true);
    assert_eq!(
        whoami(&app, Some(&admin), json!({"token": cookie}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, "carol", PASSWORD).await,
        StatusCode::UNAUTHORIZED
    );
    call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!({"disabled": false})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(login_status(&app, "carol", PASSWORD).await, StatusCode::OK);

    // A password set by an administrator; nothing to change is a 400.
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!({"password": "another-long-password"})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        login_status(&app, "carol", "another-long-password").await,
        StatusCode::OK
    );
    // Nothing to change: the user as it is, no session ended; an array of
    // the fields is not an object.
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!({})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["sessions_ended"], 0);
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/carol"))
            .json(&json!([null, null, null])),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = call(
        http()
            .patch(format!("{base}/api/v1/users/nobody"))
            .json(&json!({"disabled": true})),
        &admin,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Deleted: gone, sessions ended, no sign-in; a second delete is 404.
    let cookie = cookie_with(&app, "carol", "another-long-password").await;
    let r = call(http().delete(format!("{base}/api/v1/users/carol")), &admin)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        whoami(&app, Some(&admin), json!({"token": cookie}))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login_status(&app, "carol", "another-long-password").await,
        StatusCode::UNAUTHORIZED
    );
    let r = call(http().get(format!("{base}/api/v1/users/carol")), &reader)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = call(http().delete(format!("{base}/api/v1/users/carol")), &admin)
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// The example client in another language (`examples/clients/whoami.py`,
/// Python's standard library only) runs against a live server.
#[tokio::test]
async fn the_python_example_client_checks_a_cookie_and_signs_the_user_out() {
    if !crate::common::available("python3", &[], "SESSIOND_REQUIRE_PYTHON") {
        return;
    }
    let app = spawn_app().await;
    let secret = key(
        &app,
        "example",
        &[
            ServiceScope::UsersWrite,
            ServiceScope::SessionsRead,
            ServiceScope::SessionsWrite,
        ],
    )
    .await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/clients/whoami.py"
    );
    let (base, cookie) = (app.base.clone(), app.config.session_cookie().name);
    // The server runs on this test's runtime: the script waits elsewhere.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .env("SESSIOND_URL", base)
            .env("SESSIOND_KEY", secret)
            .env("SESSIOND_COOKIE", cookie)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("signed out everywhere") && stdout.ends_with("ok\n"),
        "{stdout}"
    );
}

#[tokio::test]
async fn an_admin_key_manages_service_keys_and_others_may_not() {
    let app = spawn_app().await;
    let admin = key(&app, "root-key", &[ServiceScope::Admin]).await;
    let plain = key(
        &app,
        "plain",
        &[ServiceScope::SessionsRead, ServiceScope::UsersWrite],
    )
    .await;
    let base = &app.base;
    let r = http()
        .post(format!("{base}/api/v1/service-keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "ci", "scopes": ["users:read"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let ci = made["key"].as_str().unwrap().to_owned();
    assert!(ci.starts_with("sdk_"));
    let r = http()
        .get(format!("{base}/api/v1/users/alice"))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the new key works at once");
    let listed: Value = http()
        .get(format!("{base}/api/v1/service-keys"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = listed["service_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ci", "plain", "root-key"]);
    assert!(!listed.to_string().contains(&ci[4..]), "never the key");
    for (rb, what) in [
        (http().get(format!("{base}/api/v1/service-keys")), "list"),
        (
            http()
                .post(format!("{base}/api/v1/service-keys"))
                .json(&json!({"name": "x", "scopes": ["admin"]})),
            "create",
        ),
        (
            http().delete(format!("{base}/api/v1/service-keys/ci")),
            "revoke",
        ),
    ] {
        let r = rb.bearer_auth(&plain).send().await.unwrap();
        assert_eq!(error_code(r).await.1, "insufficient_scope", "{what}");
    }
    let r = http()
        .post(format!("{base}/api/v1/service-keys"))
        .bearer_auth(&admin)
        .json(&json!({"name": "bad", "scopes": ["root"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http()
        .delete(format!("{base}/api/v1/service-keys/ci"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = http()
        .get(format!("{base}/api/v1/users/alice"))
        .bearer_auth(&ci)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revoked at once");
    let r = http()
        .delete(format!("{base}/api/v1/service-keys/ci"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_key_with_its_own_rate_limit_gets_429_with_retry_after_past_it() {
    let app = spawn_app().await;
    let keys = ServiceKeys::new(app.store.clone(), Arc::new(app.clock.clone()));
    let scopes: BTreeSet<ServiceScope> = [ServiceScope::SessionsRead].into_iter().collect();
    let (_, limited) = keys
        .add_limited("batch", scopes.clone(), Some("2/m"))
        .await
        .unwrap();
    let (_, free) = keys.add("interactive", scopes).await.unwrap();
    let body = json!({"token": "none"});
    for _ in 0..2 {
        let r = whoami(&app, Some(&limited), body.clone()).await;
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "within its rate: answered"
        );
    }
    let r = whoami(&app, Some(&limited), body.clone()).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "30");
    assert_eq!(error_code(r).await.1, "rate_limited");
    let r = whoami(&app, Some(&free), body).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "another key is not limited"
    );
    assert!(matches!(
        keys.add_limited(
            "bad",
            [ServiceScope::Admin].into_iter().collect(),
            Some("lots")
        )
        .await,
        Err(sessiond::service_keys::ServiceKeyError::BadRate(_))
    ));
}
