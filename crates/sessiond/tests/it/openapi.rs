//! The OpenAPI document against the live server: every operation it
//! describes is served, wants the credentials it says, and schemathesis
//! finds nothing wrong with any of them; the reference page shows them all.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sessiond::service_keys::{ServiceKeys, ServiceScope};

use crate::common::{PASSWORD, error_code, spawn_app, token_request};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// Whether an operation can be called with no credentials at all (its
/// `security` is absent or has the empty alternative).
fn open_to_anyone(op: &Value) -> bool {
    op["security"].as_array().is_none_or(|alts| {
        alts.iter()
            .any(|a| a.as_object().is_some_and(|o| o.is_empty()))
    })
}

/// The public id of the session `client` is signed in with.
async fn current_session_id(client: &mut crate::common::Client) -> String {
    let r = client.get("/api/session").await;
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The document is served, and every operation it describes is served:
/// asked without credentials, one that needs them answers 401 with the
/// code of the credential it wants (a method the server does not route
/// would be 405, a path 404), and one open to anyone is neither.
#[tokio::test]
async fn every_operation_of_the_served_openapi_document_exists_and_wants_its_credentials() {
    let app = spawn_app().await;
    let r = http()
        .get(format!("{}/api/v1/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let (mut service, mut signed_in, mut open) = (0, 0, 0);
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let concrete = path.replace("{id}", "alice").replace("{name}", "alice");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http()
                .request(method.clone(), format!("{}{concrete}", app.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = r.status();
            if open_to_anyone(op) {
                assert!(
                    status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path}: {status}"
                );
                open += 1;
                continue;
            }
            let wanted = if path.starts_with("/api/v1/") {
                service += 1;
                "invalid_service_key"
            } else {
                signed_in += 1;
                "unauthenticated"
            };
            assert_eq!(
                error_code(r).await,
                (StatusCode::UNAUTHORIZED, wanted.into()),
                "{method} {path}"
            );
        }
    }
    assert_eq!((service, signed_in, open), (16, 12, 9));
}

/// Schemathesis (PyPI) against the live server, with every kind of
/// credential the document names: a service key with the admin scope, an
/// administrator's cookie session and its CSRF token, and an access token.
/// Every operation of the committed document, every check (documented
/// statuses, content types and headers, response schemas, no 5xx,
/// schema-valid requests accepted and schema-violating ones refused,
/// credentials enforced), a bounded number of examples each and a fixed
/// seed, so CI stays fast and repeatable. `schemathesis.toml` (the
/// repository's) says where each credential goes and where a check cannot
/// apply as is, and why. `SCHEMATHESIS_BIN` names the `st` program
/// (`.ci/run` installs it in a venv); without it the test says it skipped,
/// or fails under `SESSIOND_REQUIRE_SCHEMATHESIS=1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_live_api() {
    let st = std::env::var("SCHEMATHESIS_BIN").unwrap_or_else(|_| "st".into());
    if !crate::common::available(&st, &[], "SESSIOND_REQUIRE_SCHEMATHESIS") {
        return;
    }
    let app = spawn_app().await;
    let keys = ServiceKeys::new(app.store.clone(), Arc::new(app.clock.clone()));
    let scopes: BTreeSet<ServiceScope> = [ServiceScope::Admin].into_iter().collect();
    let service_key = keys.add("schemathesis", scopes).await.unwrap().1;
    let admin = app.login("root").await;
    let leaving = app.login("root").await;
    let mut other = app.login("root").await;
    let own_other_session_id = current_session_id(&mut other).await;
    let r = token_request(&app.base, "root", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let access_token = r.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let config = format!("{root}/schemathesis.toml");
    let doc = format!("{root}/docs/openapi.json");
    let base = app.base.clone();
    // Schemathesis keeps a cache in its working directory: not the repository's.
    let scratch = tempfile::tempdir().unwrap();
    let cwd = scratch.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(st)
            .current_dir(cwd)
            .args(["--config-file", &config, "--no-color", "run", &doc])
            .args(["--url", &base, "--checks", "all", "--max-examples", "30"])
            .args([
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--seed",
                "20261130",
            ])
            // One worker: with two, Hypothesis's `ast.parse` from two
            // threads at once sometimes fails inside CPython 3.11
            // ("AST constructor recursion depth mismatch").
            .args(["--request-timeout", "10", "--workers", "1"])
            .env("ST_SERVICE_KEY", service_key)
            .env("ST_SESSION_COOKIE", admin.session.unwrap())
            .env("ST_CSRF_TOKEN", admin.csrf.unwrap())
            .env("ST_ACCESS_TOKEN", access_token)
            .env("ST_LOGOUT_COOKIE", leaving.session.unwrap())
            .env("ST_LOGOUT_CSRF_TOKEN", leaving.csrf.unwrap())
            .env("ST_OWN_OTHER_SESSION_ID", own_other_session_id)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(12).collect();
    eprintln!("{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Warnings say where the run could not reach: the one expected is
    // `DELETE /api/sessions/{id}`, whose one real id (schemathesis.toml)
    // is spent by the first request, so the rest find nothing (404).
    let warned: BTreeSet<&str> = stdout
        .split("WARNINGS")
        .nth(1)
        .and_then(|w| w.split("SUMMARY").next())
        .unwrap_or("")
        .lines()
        .filter_map(|l| l.strip_prefix("  - "))
        .collect();
    assert!(
        warned.iter().all(|op| *op == "DELETE /api/sessions/{id}"),
        "operations schemathesis could not reach: {warned:?}\n{stdout}"
    );
    assert!(
        stdout.contains("Tested: 37"),
        "every operation ran: {stdout}"
    );
}

#[tokio::test]
async fn the_reference_page_lists_every_operation_and_fetches_nothing_from_elsewhere() {
    let app = spawn_app().await;
    let r = http()
        .get(format!("{}/api/v1/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let html = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(sessiond::routes::openapi::openapi_json()).unwrap();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let heading = format!("<code>{} {path}</code>", method.to_uppercase());
            assert!(html.contains(&heading), "{heading}");
        }
    }
    assert!(html.contains("<code>sessions:read</code>"));
    assert!(
        html.contains("<code>csrf_token + session_cookie</code> or <code>access_token</code>"),
        "each way to authenticate"
    );
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    // What the document says is escaped, never markup.
    assert!(
        html.contains("`{&quot;error&quot;: {&quot;code&quot;, &quot;message&quot;}}`")
            || html.contains("&#34;error&#34;"),
        "escaped JSON in the description"
    );
}
