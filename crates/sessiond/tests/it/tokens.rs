//! Access tokens, refresh families and the bearer middleware, end to end
//! against the real server.

use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sessiond::StoreHandle;
use sessiond_core::MemoryStore;
use sessiond_jwt::{RemoteJwks, Rules, TokenVerifier};

/// The token pair of a successful token response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pair {
    access: String,
    refresh: String,
}

async fn pair(r: reqwest::Response) -> Pair {
    assert_eq!(r.status(), StatusCode::OK, "token response");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    Pair {
        access: v["access_token"].as_str().unwrap().to_owned(),
        refresh: v["refresh_token"].as_str().unwrap().to_owned(),
    }
}

async fn issue(app: &TestApp, user: &str) -> Pair {
    let r = token_request(&app.base, user, PASSWORD).await;
    pair(r).await
}

async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    refresh_request(&app.base, token).await
}

async fn bearer(app: &TestApp, method: Method, path: &str, token: &str) -> reqwest::Response {
    app.client()
        .http
        .request(method, format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

async fn profile_status(app: &TestApp, token: &str) -> StatusCode {
    bearer(app, Method::GET, "/api/profile", token)
        .await
        .status()
}

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn credentials_give_an_eddsa_at_jwt_that_opens_the_profile_without_a_store_read() {
    let app = spawn_app().await;
    let p = issue(&app, "alice").await;
    let header = segment(&p.access, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["typ"], "at+jwt");
    let claims = segment(&p.access, 1);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "sessiond");
    assert_eq!(claims["aud"], "sessiond");
    assert_eq!(claims["roles"], json!(["user"]));
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert_eq!(claims["sid"].as_str().unwrap().len(), 43);

    let reads = app.counting.loads.load(std::sync::atomic::Ordering::SeqCst);
    let r = bearer(&app, Method::GET, "/api/profile", &p.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "alice");
    assert_eq!(
        app.counting.loads.load(std::sync::atomic::Ordering::SeqCst),
        reads,
        "the profile trusts the token alone"
    );
}

#[tokio::test]
async fn a_wrong_password_gets_no_token_and_counts_toward_throttling() {
    let app = spawn_app().await;
    let r = token_request(&app.base, "alice", "wrong").await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::UNAUTHORIZED, "invalid_credentials".into())
    );
    let r = app
        .client()
        .http
        .post(format!("{}/api/token", app.base))
        .header("content-type", "application/json")
        .body("{\"username\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_json".into())
    );
    // The same per-user throttle as cookie logins: after the allowed
    // failures, even the right password waits.
    for _ in 1..app.config.login.failures_per_user {
        let r = token_request(&app.base, "alice", "wrong").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = token_request(&app.base, "alice", PASSWORD).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(
        error_code(r).await,
        (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts".into())
    );
    // And a cookie login for the same user is throttled too: one counter.
    assert_eq!(
        app.client().login("alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_cookie_session_with_its_csrf_token_can_mint_a_token_pair() {
    let app = spawn_app().await;
    let mut c = app.login("bob").await;
    let without_csrf = c.request(Method::POST, "/api/token");
    let r = c.send(without_csrf).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "csrf_failed".into())
    );
    let r = c.unsafe_json(Method::POST, "/api/token", None).await;
    let p = pair(r).await;
    assert_eq!(segment(&p.access, 1)["sub"], "bob");
    let anonymous = app
        .client()
        .http
        .post(format!("{}/api/token", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(anonymous).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_token_family_records_the_same_device_label_as_a_cookie_session() {
    let app = spawn_app().await;
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let r = reqwest::Client::new()
        .post(format!("{}/api/token", app.base))
        .header("user-agent", format!("{firefox} {}", "x".repeat(200)))
        .json(&json!({"username": "alice", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let p = pair(r).await;
    let listed: Value = bearer(&app, Method::GET, "/api/sessions", &p.access)
        .await
        .json()
        .await
        .unwrap();
    let family = &listed["sessions"][0];
    assert_eq!(family["user_agent"], "Firefox 133 on Linux", "{listed}");
    assert_eq!(family["ip"], "127.0.0.1");
}

#[tokio::test]
async fn each_refresh_spends_the_token_and_returns_a_new_pair() {
    let app = spawn_app().await;
    let first = issue(&app, "alice").await;
    let second = pair(refresh(&app, &first.refresh).await).await;
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(
        segment(&second.access, 1)["sid"],
        segment(&first.access, 1)["sid"],
        "one family, one session"
    );
    let third = pair(refresh(&app, &second.refresh).await).await;
    assert_eq!(
        bearer(&app, Method::GET, "/api/sessions", &third.access)
            .await
            .status(),
        StatusCode::OK
    );
    // The OAuth form encoding works too; another grant type does not.
    let r = app
        .client()
        .http
        .post(format!("{}/api/token/refresh", app.base))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &third.refresh),
        ])
        .send()
        .await
        .unwrap();
    let fourth = pair(r).await;
    let r = app
        .client()
        .http
        .post(format!("{}/api/token/refresh", app.base))
        .form(&[
            ("grant_type", "password"),
            ("refresh_token", &fourth.refresh),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "unsupported_grant_type".into())
    );
}

#[tokio::test]
async fn concurrent_refreshes_within_the_grace_window_all_get_the_same_successor() {
    let app = Arc::new(spawn_app().await);
    let first = issue(&app, "alice").await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (app, token) = (app.clone(), first.refresh.clone());
        racers.spawn(async move { pair(refresh(&app, &token).await).await.refresh });
    }
    let successors = racers.join_all().await;
    assert!(
        successors.iter().all(|s| *s == successors[0]),
        "two tabs refreshing at once must not look like theft: {successors:?}"
    );
    // The successor is a normal, working refresh token.
    pair(refresh(&app, &successors[0]).await).await;
}

#[tokio::test]
async fn a_spent_refresh_token_after_the_grace_window_revokes_the_whole_family() {
    let app = spawn_app().await;
    let stolen = issue(&app, "alice").await;
    let legit = pair(refresh(&app, &stolen.refresh).await).await;
    app.clock.advance(Duration::from_secs(6)); // grace is 5 s
    let r = refresh(&app, &stolen.refresh).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    // The family is gone: the legitimate holder's newer token is dead too,
    // and so is every route that checks the session.
    let r = refresh(&app, &legit.refresh).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "invalid_grant".into())
    );
    let r = bearer(&app, Method::GET, "/api/sessions", &legit.access).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    // A made-up secret for a live family is just invalid, never "theft":
    // knowing a session's public handle must not let anyone end it.
    let other = issue(&app, "bob").await;
    let sid = other.refresh.split('.').next().unwrap();
    let forged = format!("{sid}.{}", "A".repeat(43));
    let r = refresh(&app, &forged).await;
    assert_eq!(error_code(r).await.1, "invalid_grant");
    pair(refresh(&app, &other.refresh).await).await;
}

#[tokio::test]
async fn revoking_a_refresh_or_access_token_ends_its_family() {
    let app = spawn_app().await;
    let revoke = |token: String| {
        let (http, base) = (app.client().http, app.base.clone());
        async move {
            http.post(format!("{base}/api/token/revoke"))
                .json(&json!({"token": token, "token_type_hint": "refresh_token"}))
                .send()
                .await
                .unwrap()
        }
    };
    let p = issue(&app, "alice").await;
    assert_eq!(revoke(p.refresh.clone()).await.status(), StatusCode::OK);
    assert_eq!(
        error_code(refresh(&app, &p.refresh).await).await.1,
        "invalid_grant"
    );
    assert_eq!(
        bearer(&app, Method::GET, "/api/sessions", &p.access)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let q = issue(&app, "alice").await;
    assert_eq!(revoke(q.access.clone()).await.status(), StatusCode::OK);
    assert_eq!(
        error_code(refresh(&app, &q.refresh).await).await.1,
        "invalid_grant"
    );
    // Garbage is answered the same way (RFC 7009: no oracle).
    assert_eq!(revoke("nonsense".into()).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn logging_out_everywhere_and_changing_the_password_end_token_families() {
    let app = spawn_app().await;
    let p = issue(&app, "alice").await;
    let mut browser = app.login("alice").await;
    let r = browser
        .unsafe_json(Method::POST, "/api/sessions/revoke-others", None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        error_code(refresh(&app, &p.refresh).await).await.1,
        "invalid_grant"
    );

    let q = issue(&app, "alice").await;
    let r = browser
        .unsafe_json(
            Method::POST,
            "/api/password",
            Some(json!({"current_password": PASSWORD, "new_password": "another-long-password"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        error_code(refresh(&app, &q.refresh).await).await.1,
        "invalid_grant"
    );
}

#[tokio::test]
async fn bearer_requests_skip_csrf_and_never_carry_a_cookie_session() {
    let app = spawn_app().await;
    let p = issue(&app, "alice").await;
    // An unsafe request with a bearer token and no CSRF token.
    let r = bearer(&app, Method::POST, "/api/sessions/revoke-others", &p.access).await;
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
    // A bob cookie riding along with alice's token is ignored, not merged.
    let bob = app.login("bob").await;
    let r = bob
        .request(Method::GET, "/api/profile")
        .bearer_auth(&p.access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["user_id"], "alice");
}

#[tokio::test]
async fn bearer_errors_follow_rfc_6750() {
    let app = spawn_app().await;
    let r = app.client().get("/api/sessions").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"sessiond\"");

    let r = app
        .client()
        .request(Method::GET, "/api/profile")
        .header("authorization", "Bearer ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_request")
    );

    let p = issue(&app, "alice").await;
    let r = bearer(
        &app,
        Method::GET,
        "/api/admin/users/bob/sessions",
        &p.access,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let root = issue(&app, "root").await;
    let r = bearer(
        &app,
        Method::GET,
        "/api/admin/users/bob/sessions",
        &root.access,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_attack_token_gets_401_invalid_token() {
    let app = spawn_app().await;
    // The server's own ring, as stored, to forge tokens with the real kid.
    let stored = stored_ring(&app).await;
    let ring = sessiond_jwt::KeyRing::from_bytes(&stored).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let p = issue(&app, "alice").await;
    let mut good = sessiond_jwt::testing::claims("sessiond", "sessiond", "alice", now);
    good.sid = segment(&p.access, 1)["sid"].as_str().unwrap().to_owned();
    // The helper's valid token is accepted, so every refusal below is for the attack.
    let valid = ring.active().sign(&good).unwrap();
    assert_eq!(profile_status(&app, &valid).await, StatusCode::OK);
    for (name, token) in sessiond_jwt::testing::attack_tokens(&ring, &good) {
        if token.is_empty() {
            continue; // "Bearer " with nothing: a malformed request, 400 (see above)
        }
        if token.len() > app.config.server.header_limit_bytes {
            // Stopped before any token code runs, by the header-size guard.
            let r = bearer(&app, Method::GET, "/api/profile", &token).await;
            assert_eq!(
                error_code(r).await,
                (
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large".into()
                ),
                "{name}"
            );
            continue;
        }
        let r = bearer(&app, Method::GET, "/api/profile", &token).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert_eq!(error_code(r).await.1, "invalid_token", "{name}");
    }
}

#[tokio::test]
async fn rotating_the_signing_key_logs_nobody_out_and_the_jwks_shows_both_keys() {
    let app = spawn_app().await;
    let before = issue(&app, "alice").await;
    let root = issue(&app, "root").await;
    let r = bearer(&app, Method::POST, "/api/admin/keys/rotate", &root.access).await;
    assert_eq!(r.status(), StatusCode::OK);
    let new_kid = r.json::<Value>().await.unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();

    let after = issue(&app, "alice").await;
    assert_eq!(segment(&after.access, 0)["kid"], new_kid.as_str());
    assert_ne!(segment(&before.access, 0)["kid"], new_kid.as_str());
    for token in [&before.access, &after.access] {
        assert_eq!(
            bearer(&app, Method::GET, "/api/profile", token)
                .await
                .status(),
            StatusCode::OK
        );
    }
    let r = app.client().get("/.well-known/jwks.json").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let jwks: Value = r.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for k in keys {
        assert_eq!(
            (k["kty"].as_str(), k["alg"].as_str()),
            (Some("OKP"), Some("EdDSA"))
        );
        assert!(k.get("d").is_none(), "never a private key");
    }
}

#[tokio::test]
async fn nodes_sharing_a_store_share_the_key_ring_and_follow_a_rotation() {
    let store = Arc::new(MemoryStore::new());
    let a = spawn_app_on(StoreHandle::from_backend(store.clone()), test_config()).await;
    let b = spawn_app_on(StoreHandle::from_backend(store.clone()), test_config()).await;
    let from_a = issue(&a, "alice").await;
    assert_eq!(profile_status(&b, &from_a.access).await, StatusCode::OK);
    // A refresh on node B of a family made on node A.
    let from_b = pair(refresh(&b, &from_a.refresh).await).await;
    // Rotate on A; B has never seen the new kid and must not refuse it.
    let root = issue(&a, "root").await;
    assert_eq!(
        bearer(&a, Method::POST, "/api/admin/keys/rotate", &root.access)
            .await
            .status(),
        StatusCode::OK
    );
    let rotated = pair(refresh(&a, &from_b.refresh).await).await;
    assert_eq!(profile_status(&b, &rotated.access).await, StatusCode::OK);
}

#[tokio::test]
async fn another_service_verifies_tokens_with_only_the_jwks_url() {
    let app = spawn_app().await;
    let p = issue(&app, "alice").await;
    let verifier = RemoteJwks::new(
        format!("{}/.well-known/jwks.json", app.base),
        Rules::new("sessiond", "sessiond"),
    );
    let claims = verifier.verify(&p.access).await.unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.roles.as_slice()),
        ("alice", &["user".to_owned()][..])
    );
    let other_audience = RemoteJwks::new(
        format!("{}/.well-known/jwks.json", app.base),
        Rules::new("sessiond", "billing"),
    );
    assert!(other_audience.verify(&p.access).await.is_err());
}

/// The key ring's bytes as the store holds them.
async fn stored_ring(app: &TestApp) -> Vec<u8> {
    app.store
        .get_setting(sessiond::tokens::KEY_RING)
        .await
        .unwrap()
        .expect("a key ring")
}

fn kek(text: &str) -> sessiond_jwt::KeyEncryptionKey {
    sessiond_jwt::KeyEncryptionKey::from_text(text).unwrap()
}

fn sealed_config(key: &str) -> sessiond::ServerConfig {
    let mut config = test_config();
    config.tokens.key_encryption_key = Some(kek(key));
    config
}

#[tokio::test]
async fn with_a_key_encryption_key_the_store_holds_no_readable_private_key() {
    let key = sessiond_jwt::KeyEncryptionKey::generate_text().unwrap();
    let store = Arc::new(MemoryStore::new());
    let app = spawn_app_on(
        StoreHandle::from_backend(store.clone()),
        sealed_config(&key),
    )
    .await;
    let p = issue(&app, "alice").await;
    assert_eq!(profile_status(&app, &p.access).await, StatusCode::OK);
    let stored = stored_ring(&app).await;
    assert!(sessiond_jwt::is_sealed(&stored), "the ring is sealed");
    let text = String::from_utf8_lossy(&stored);
    for word in ["secret", "kid", "EdDSA", "keys"] {
        assert!(!text.contains(word), "{word} is readable in the store");
    }
    // A second node with the same key reads the ring and accepts the token.
    let b = spawn_app_on(StoreHandle::from_backend(store), sealed_config(&key)).await;
    assert_eq!(profile_status(&b, &p.access).await, StatusCode::OK);
}

#[tokio::test]
async fn configuring_a_key_encryption_key_seals_an_existing_ring_and_logs_nobody_out() {
    let store = Arc::new(MemoryStore::new());
    let clear = spawn_app_on(StoreHandle::from_backend(store.clone()), test_config()).await;
    let before = issue(&clear, "alice").await;
    let stored = stored_ring(&clear).await;
    assert!(!sessiond_jwt::is_sealed(&stored), "no key: in the clear");
    clear.stop().await;

    let key = sessiond_jwt::KeyEncryptionKey::generate_text().unwrap();
    let sealed = spawn_app_on(StoreHandle::from_backend(store), sealed_config(&key)).await;
    let stored = stored_ring(&sealed).await;
    assert!(sessiond_jwt::is_sealed(&stored), "sealed at start");
    assert_eq!(
        profile_status(&sealed, &before.access).await,
        StatusCode::OK,
        "a token signed before the sealing still verifies (same keys)"
    );
    assert_eq!(
        refresh(&sealed, &before.refresh).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_node_without_the_right_key_encryption_key_refuses_to_start() {
    let store = Arc::new(MemoryStore::new());
    let key = sessiond_jwt::KeyEncryptionKey::generate_text().unwrap();
    let _first = spawn_app_on(
        StoreHandle::from_backend(store.clone()),
        sealed_config(&key),
    )
    .await;
    let other = sessiond_jwt::KeyEncryptionKey::generate_text().unwrap();
    for (config, why) in [
        (test_config(), "no key"),
        (sealed_config(&other), "another key"),
    ] {
        let backend: Arc<dyn sessiond_core::Backend> = store.clone();
        let sessions = sessiond_core::SessionManager::new(backend, config.policy());
        let built = sessiond::Application::build_with(
            config,
            StoreHandle::from_backend(store.clone()),
            sessions,
        )
        .await;
        let Err(e) = built else {
            panic!("{why}: the node started")
        };
        assert!(
            matches!(e, sessiond::startup::BuildError::KeyRing(_)),
            "{why}: {e}"
        );
    }
}

#[tokio::test]
async fn replacing_the_key_encryption_key_reseals_the_ring_and_logs_nobody_out() {
    let store = Arc::new(MemoryStore::new());
    let (old, new) = (
        sessiond_jwt::KeyEncryptionKey::generate_text().unwrap(),
        sessiond_jwt::KeyEncryptionKey::generate_text().unwrap(),
    );
    let first = spawn_app_on(
        StoreHandle::from_backend(store.clone()),
        sealed_config(&old),
    )
    .await;
    let before = issue(&first, "alice").await;
    first.stop().await;

    let mut config = sealed_config(&new);
    config.tokens.previous_key_encryption_key = Some(kek(&old));
    let moved = spawn_app_on(StoreHandle::from_backend(store.clone()), config).await;
    let stored = stored_ring(&moved).await;
    let context = sessiond::tokens::KEY_RING.as_bytes();
    assert!(
        kek(&new).open(&stored, context).is_ok(),
        "sealed with the new key"
    );
    assert!(
        kek(&old).open(&stored, context).is_err(),
        "no longer with the old"
    );
    assert_eq!(profile_status(&moved, &before.access).await, StatusCode::OK);
    assert_eq!(
        refresh(&moved, &before.refresh).await.status(),
        StatusCode::OK
    );
    // Once every node has the new key, the old one can go.
    let only_new = spawn_app_on(StoreHandle::from_backend(store), sealed_config(&new)).await;
    assert_eq!(
        profile_status(&only_new, &before.access).await,
        StatusCode::OK
    );
}
