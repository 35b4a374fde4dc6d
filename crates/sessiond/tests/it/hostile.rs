//! Hostile clients (issue 12): bursts of guesses, malformed hosts, stalled
//! connections. Each test fails on the code before the fix it pins.

use reqwest::StatusCode;
use serde_json::json;

use crate::common::*;

/// Sends `n` concurrent JSON logins; returns how many got each status.
async fn burst(app: &TestApp, logins: Vec<(String, String)>) -> (usize, usize, usize) {
    let client = reqwest::Client::new();
    let answers = futures::future::join_all(logins.into_iter().map(|(user, password)| {
        let client = client.clone();
        let url = format!("{}/login", app.base);
        async move {
            client
                .post(url)
                .json(&json!({"username": user, "password": password}))
                .send()
                .await
                .unwrap()
                .status()
        }
    }))
    .await;
    let count = |s: StatusCode| answers.iter().filter(|a| **a == s).count();
    let (ok, unauthorized, throttled) = (
        count(StatusCode::OK),
        count(StatusCode::UNAUTHORIZED),
        count(StatusCode::TOO_MANY_REQUESTS),
    );
    assert_eq!(
        ok + unauthorized + throttled,
        answers.len(),
        "only 200, 401 or 429: {answers:?}"
    );
    (ok, unauthorized, throttled)
}

#[tokio::test]
async fn a_burst_of_concurrent_guesses_for_one_user_gets_at_most_the_limit_evaluated() {
    let app = spawn_app().await;
    let limit = app.config.login.failures_per_user as usize;
    let guesses = (0..50)
        .map(|i| ("alice".to_owned(), format!("wrong-guess-{i}")))
        .collect();
    let (ok, unauthorized, throttled) = burst(&app, guesses).await;
    assert_eq!(ok, 0);
    assert!(
        unauthorized <= limit,
        "{unauthorized} guesses were evaluated, the limit is {limit}"
    );
    assert_eq!(unauthorized + throttled, 50);
    // The right password is refused too now: the window is used up.
    let mut c = app.client();
    assert_eq!(
        c.login("alice", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_burst_of_concurrent_failures_from_one_ip_gets_at_most_the_ip_limit_evaluated() {
    let app = spawn_app().await;
    let limit = app.config.login.failures_per_ip as usize;
    // Distinct user names, so only the per-IP limit applies.
    let guesses = (0..limit + 10)
        .map(|i| (format!("nobody{i}"), "wrong-password".to_owned()))
        .collect();
    let (ok, unauthorized, throttled) = burst(&app, guesses).await;
    assert_eq!(ok, 0);
    assert!(
        unauthorized <= limit,
        "{unauthorized} failures were evaluated, the IP limit is {limit}"
    );
    assert_eq!(unauthorized + throttled, limit + 10);
    assert!(throttled >= 10);
}
