//! No secret ever reaches a log line: run the login/logout/password flows
//! with every crate logging at TRACE into a buffer, then search the buffer
//! for every token, CSRF token and password the flows used.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::*;
use reqwest::{Method, StatusCode};
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_token_cookie_csrf_token_or_password_appears_in_any_log_line() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // A global subscriber sees every worker thread. TRACE for every crate,
    // hyper and the store included, but only while this test runs: the
    // other tests of the binary share the process and would otherwise all
    // be traced (and slowed) for the rest of the run.
    use tracing_subscriber::prelude::*;
    static CAPTURING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|_| {
            CAPTURING.load(std::sync::atomic::Ordering::Relaxed)
        }));
    tracing_subscriber::registry().with(layer).init();
    struct StopCapturing;
    impl Drop for StopCapturing {
        fn drop(&mut self) {
            CAPTURING.store(false, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let _stop = StopCapturing;

    let app = spawn_app().await;
    let mut secrets: Vec<String> = vec![
        PASSWORD.into(),
        "a-brand-new-password".into(),
        "wrong-password-123".into(),
    ];

    let mut c = app.client();
    assert_eq!(
        c.login("alice", "wrong-password-123").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.login("alice", PASSWORD).await, StatusCode::OK);
    secrets.extend(c.session.clone());
    secrets.extend(c.csrf.clone());
    assert_eq!(c.get("/api/profile").await.status(), StatusCode::OK);
    c.refresh_csrf().await;
    secrets.extend(c.csrf.clone());
    let r = c
        .unsafe_json(
            Method::POST,
            "/api/password",
            Some(json!({"current_password": PASSWORD, "new_password": "a-brand-new-password"})),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    secrets.extend(c.session.clone()); // the rotated token
    secrets.extend(body["csrf_token"].as_str().map(str::to_owned));
    c.csrf = body["csrf_token"].as_str().map(str::to_owned);
    assert_eq!(
        c.unsafe_json(Method::POST, "/logout", None).await.status(),
        StatusCode::OK
    );

    // The HTML form path too (its double-submit token is a secret as well).
    let r = c
        .http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    let login_cookie = session_set_cookie(r.headers(), "__Host-sessiond-login").unwrap();
    let token = cookie_value(&login_cookie);
    let form = [
        ("username", "bob"),
        ("password", PASSWORD),
        ("csrf_token", token.as_str()),
    ];
    let r = c
        .http
        .post(format!("{}/login", app.base))
        .header("cookie", format!("__Host-sessiond-login={token}"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    secrets.push(token);
    secrets.push(cookie_value(
        &session_set_cookie(r.headers(), "__Host-sessiond").unwrap(),
    ));

    // Tokens: issue, use, refresh, replay a spent refresh token (theft), revoke.
    let http = reqwest::Client::new();
    let pair: serde_json::Value = token_request(&app.base, "bob", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    let r = http
        .get(format!("{}/api/sessions", app.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let next: serde_json::Value = refresh_request(&app.base, &refresh)
        .await
        .json()
        .await
        .unwrap();
    let next_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    app.clock.advance(std::time::Duration::from_secs(10)); // past the grace window
    let r = refresh_request(&app.base, &refresh).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "reuse is refused");
    let r = http
        .post(format!("{}/api/token/revoke", app.base))
        .json(&json!({"token": next_refresh}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for t in [&access, &refresh, &next_refresh] {
        secrets.push(t.clone());
        // The secret parts alone: a JWT's signature, a refresh token's secret.
        secrets.push(t.rsplit('.').next().unwrap().to_owned());
    }
    secrets.push(next["access_token"].as_str().unwrap().to_owned());
    app.stop().await;

    let logs = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    assert!(
        logs.lines().count() > 20,
        "the test must actually capture logs ({} lines)",
        logs.lines().count()
    );
    assert!(
        logs.contains("login_succeeded") && logs.contains("login_failed"),
        "security events are logged"
    );
    assert!(
        logs.contains("refresh_token_reused") && logs.contains("token_issued"),
        "token security events are logged"
    );
    // (The access log has its own writer: tests/it/observability.rs reads it.)
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret.as_str()),
            "a secret appeared in the logs: {}…",
            &secret[..6]
        );
    }
}
