//! Sessions and users on the embedded file store survive a server restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::StatusCode;
use sessiond::StoreHandle;

#[tokio::test]
async fn sessions_survive_a_server_restart_on_the_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = sessiond::ServerConfig {
        data_dir: dir.path().to_owned(),
        ..test_config()
    };
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
