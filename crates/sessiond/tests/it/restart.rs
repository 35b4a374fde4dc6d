//! Sessions and users on the embedded file store survive a server restart.

use crate::common::*;
use reqwest::StatusCode;
use sessiond::StoreHandle;

#[tokio::test]
async fn sessions_survive_a_server_restart_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = file_config(dir.path());
    let app = spawn_app_on(StoreHandle::open_file(&config).unwrap(), config.clone()).await;
    let mut c = app.login("alice").await;
    let token = c.session.clone().unwrap();
    assert_eq!(c.get("/api/profile").await.status(), StatusCode::OK);
    app.stop().await; // graceful: in-flight requests finish, the store closes

    let app = spawn_app_on(StoreHandle::open_file(&config).unwrap(), config).await;
    let mut c = app.client();
    c.session = Some(token);
    assert_eq!(
        c.get("/api/profile").await.status(),
        StatusCode::OK,
        "the session survived the restart"
    );
    assert_eq!(
        app.client().login("bob", PASSWORD).await,
        StatusCode::OK,
        "users survived too"
    );
    app.stop().await;
}

#[tokio::test]
async fn sigterm_and_sigint_stop_the_server_cleanly_and_keep_the_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let config = seed_file_store(dir.path()).await;
    let http = reqwest::Client::new();
    let mut token = None;
    for signal in ["-TERM", "-INT"] {
        let mut node = process::Node::start_file(dir.path()).await;
        let base = node.base.clone();
        if token.is_none() {
            let r = http
                .post(format!("{base}/login"))
                .json(&serde_json::json!({"username": "alice", "password": PASSWORD}))
                .send()
                .await
                .unwrap();
            token = Some(cookie_value(
                &session_set_cookie(r.headers(), "__Host-sessiond").unwrap(),
            ));
        }
        let r = http
            .get(format!("{base}/api/profile"))
            .header(
                "cookie",
                format!("__Host-sessiond={}", token.as_ref().unwrap()),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "the session survived the previous stop"
        );
        let status = node.stop_with(signal).await;
        assert!(status.success(), "{signal}: exit status {status}");
    }
    // The store was closed cleanly: it opens at once, with the session in it.
    let store = StoreHandle::open_file(&config).expect("the database reopens after the signals");
    let key = sessiond_core::SessionToken::parse(token.as_ref().unwrap())
        .unwrap()
        .key();
    let now = sessiond_core::Clock::now(&sessiond_core::SystemClock);
    assert!(store.backend.load(&key, now).await.unwrap().is_some());
}
