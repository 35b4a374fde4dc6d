//! `RateLimitLayer` with `oneshot`: the burst, the 429 and its headers, keys
//! apart, and a store that is down (fail open or closed).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use sessiond_axum::{Limit, RateLimitLayer};
use sessiond_core::testing::FaultyStore;
use sessiond_core::{MemoryStore, Rate};
use tower::ServiceExt;

fn by_client(req: &Request<Body>) -> Option<Limit> {
    let client = req.headers().get("x-client")?.to_str().ok()?.to_owned();
    Some(Limit {
        policy: "api".into(),
        key: client,
        rate: Rate::parse("1/m", Some(2)).unwrap(),
    })
}

fn app(layer: RateLimitLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer)
}

async fn send(app: &Router, client: &str) -> http::Response<Body> {
    app.clone()
        .oneshot(
            Request::get("/")
                .header("x-client", client)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_burst_passes_with_rate_headers_then_429_says_when_to_retry() {
    let app = app(RateLimitLayer::new(Arc::new(MemoryStore::new()), by_client));
    let first = send(&app, "a").await;
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["ratelimit-policy"], "\"api\";q=1;w=60");
    assert!(
        first.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api\";r=1;t=")
    );
    let second = send(&app, "a").await;
    assert_eq!(second.status(), StatusCode::OK);
    assert!(
        second.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"api\";r=0;")
    );

    let refused = send(&app, "a").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert!(refused.headers().contains_key("ratelimit"));
    let body = axum::body::to_bytes(refused.into_body(), 1024)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");

    // Another client has its own budget; an unclassified request is not limited.
    assert_eq!(send(&app, "b").await.status(), StatusCode::OK);
    let unlimited = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(unlimited.status(), StatusCode::OK);
    assert!(!unlimited.headers().contains_key("ratelimit"));
}

#[tokio::test]
async fn with_the_store_down_requests_pass_unless_the_limit_fails_closed() {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    store.set_down(true);
    let open = app(RateLimitLayer::new(store.clone(), by_client));
    for _ in 0..5 {
        assert_eq!(send(&open, "a").await.status(), StatusCode::OK);
    }
    let closed = app(RateLimitLayer::new(store.clone(), by_client).with_fail_closed(true));
    assert_eq!(
        send(&closed, "a").await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    store.set_down(false);
    assert_eq!(send(&closed, "a").await.status(), StatusCode::OK);
}
