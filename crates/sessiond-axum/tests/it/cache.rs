//! `ResponseCacheLayer` with `oneshot`: hits and misses, the rules that keep
//! one identity's answer from another (a property test over random request
//! sequences), invalidation by writes across two caches on one store,
//! coalescing, and a store that is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use http_body_util::BodyExt as _;
use proptest::prelude::*;
use sessiond_axum::{CacheRule, ResponseCacheLayer};
use sessiond_core::MemoryStore;
use sessiond_core::testing::FaultyStore;
use tower::ServiceExt;

/// The application behind the cache: each path answers with its own
/// caching headers; bodies say whom they were made for and which version
/// of the data they show. A write to a path changes it and its
/// collection's listing.
#[derive(Default)]
struct Upstream {
    versions: Mutex<HashMap<String, u64>>,
    calls: AtomicUsize,
    delay: Mutex<Option<Duration>>,
}

fn identity(headers: &HeaderMap) -> String {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        return auth
            .to_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned();
    }
    headers
        .get(header::COOKIE)
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').find_map(|p| p.trim().strip_prefix("id=")))
        .map_or_else(|| "anon".to_owned(), str::to_owned)
}

fn parent(path: &str) -> String {
    match path.rsplit_once('/') {
        Some(("", _)) | None => "/".into(),
        Some((p, _)) => p.into(),
    }
}

async fn serve(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    up.calls.fetch_add(1, Ordering::SeqCst);
    let delay = *up.delay.lock().unwrap();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let path = request.uri().path().to_owned();
    let who = identity(request.headers());
    if request.method() == Method::POST {
        if request.headers().contains_key("x-fail") {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let mut v = up.versions.lock().unwrap();
        *v.entry(path.clone()).or_default() += 1;
        *v.entry(parent(&path)).or_default() += 1;
        return StatusCode::NO_CONTENT.into_response();
    }
    let version = up.versions.lock().unwrap().get(&path).copied().unwrap_or(0);
    let name = path.rsplit('/').next().unwrap_or_default();
    let (made_for, headers): (&str, &[(&str, &str)]) = match name {
        "vary" => (
            &who,
            &[("cache-control", "max-age=600"), ("vary", "Cookie")],
        ),
        "private" => (&who, &[("cache-control", "private, max-age=600")]),
        "setcookie" => (
            &who,
            &[("cache-control", "max-age=600"), ("set-cookie", "seen=1")],
        ),
        // Personal but marked cacheable: only anonymous answers may be
        // stored (the credential rule).
        "personal" => (&who, &[("cache-control", "max-age=600")]),
        "shared" => ("any", &[("cache-control", "public, s-maxage=600")]),
        "nostore" => (&who, &[("cache-control", "no-store")]),
        "star" => (&who, &[("cache-control", "max-age=600"), ("vary", "*")]),
        "ttl" => ("any", &[]),
        _ => ("any", &[("cache-control", "max-age=600")]),
    };
    let mut response = format!("for={made_for};v={version}").into_response();
    for (n, v) in headers {
        response.headers_mut().append(*n, v.parse().unwrap());
    }
    response
}

fn rules(parts: &http::request::Parts) -> Option<CacheRule> {
    let path = parts.uri.path();
    if path.starts_with("/closed") {
        return None;
    }
    let mut rule = CacheRule::new("pages");
    rule.public = true;
    if path.ends_with("/ttl") {
        rule.ttl = Some(Duration::from_secs(600));
    }
    Some(rule)
}

fn node(store: Arc<dyn sessiond_core::Backend>, up: &Arc<Upstream>) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(up.clone())
        .layer(ResponseCacheLayer::new(store, rules).with_credential_cookies(["id".to_owned()]))
}

struct Answer {
    status: StatusCode,
    x_cache: String,
    cache_status: String,
    body: String,
    age: Option<String>,
}

async fn send(app: &Router, method: Method, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "app.test");
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (x_cache, cache_status, age) = {
        let header = |n: &str| {
            response
                .headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        (
            header("x-cache").unwrap_or_default(),
            header("cache-status").unwrap_or_default(),
            header("age"),
        )
    };
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        x_cache,
        cache_status,
        body: String::from_utf8(body.to_vec()).unwrap(),
        age,
    }
}

async fn get(app: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
    send(app, Method::GET, path, headers).await
}

#[tokio::test]
async fn a_second_get_is_a_hit_with_age_and_cache_status() {
    let up = Arc::new(Upstream::default());
    let app = node(Arc::new(MemoryStore::new()), &up);
    let first = get(&app, "/docs/a", &[]).await;
    assert_eq!(first.x_cache, "MISS");
    assert_eq!(first.cache_status, "sessiond; fwd=uri-miss; stored");
    let second = get(&app, "/docs/a", &[]).await;
    assert_eq!(second.x_cache, "HIT");
    assert!(
        second.cache_status.starts_with("sessiond; hit; ttl="),
        "{}",
        second.cache_status
    );
    assert_eq!(second.age.as_deref(), Some("0"));
    assert_eq!(second.body, first.body);
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    // HEAD is answered from the GET's entry, without a body.
    let head = send(&app, Method::HEAD, "/docs/a", &[]).await;
    assert_eq!((head.x_cache.as_str(), head.body.as_str()), ("HIT", ""));
}

#[tokio::test]
async fn query_order_does_not_matter_but_every_other_part_of_the_target_does() {
    let up = Arc::new(Upstream::default());
    let app = node(Arc::new(MemoryStore::new()), &up);
    get(&app, "/q?a=1&b=2", &[]).await;
    assert_eq!(get(&app, "/q?b=2&a=1", &[]).await.x_cache, "HIT");
    assert_eq!(get(&app, "/q?a=1&b=3", &[]).await.x_cache, "MISS");
    assert_eq!(get(&app, "/Q?a=1&b=2", &[]).await.x_cache, "MISS");
}

#[tokio::test]
async fn answers_that_must_not_be_shared_are_never_stored_and_say_why() {
    let up = Arc::new(Upstream::default());
    let app = node(Arc::new(MemoryStore::new()), &up);
    for (path, detail) in [
        ("/x/private", "uncacheable"),
        ("/x/nostore", "uncacheable"),
        ("/x/setcookie", "set-cookie"),
        ("/x/star", "vary-star"),
    ] {
        for _ in 0..2 {
            let a = get(&app, path, &[]).await;
            assert_eq!(a.x_cache, "MISS", "{path}");
            assert!(
                a.cache_status.ends_with(&format!("detail={detail}")),
                "{path}: {}",
                a.cache_status
            );
        }
    }
    // A path the classifier leaves out is never cached.
    let closed = get(&app, "/closed/a", &[]).await;
    assert_eq!(closed.x_cache, "BYPASS");
    assert_eq!(
        closed.cache_status,
        "sessiond; fwd=bypass; detail=not-cacheable"
    );
}

#[tokio::test]
async fn a_request_with_credentials_is_stored_and_served_only_where_the_answer_says_public() {
    let up = Arc::new(Upstream::default());
    let app = node(Arc::new(MemoryStore::new()), &up);
    // max-age alone: the cookie's answer is not stored...
    let alice = get(&app, "/p/personal", &[("cookie", "id=alice")]).await;
    assert!(
        alice.cache_status.ends_with("detail=credentials"),
        "{}",
        alice.cache_status
    );
    assert_eq!(get(&app, "/p/personal", &[]).await.body, "for=anon;v=0");
    // ...and an anonymous answer is not served to a request with credentials.
    let bob = get(&app, "/p/personal", &[("authorization", "Bearer bob")]).await;
    assert_eq!(
        (bob.x_cache.as_str(), bob.body.as_str()),
        ("MISS", "for=bob;v=0")
    );
    // `public, s-maxage`: shared, also with credentials.
    get(&app, "/p/shared", &[("cookie", "id=alice")]).await;
    assert_eq!(
        get(&app, "/p/shared", &[("cookie", "id=bob")])
            .await
            .x_cache,
        "HIT"
    );
    // Another cookie is not a credential.
    assert_eq!(
        get(&app, "/p/personal", &[("cookie", "theme=dark")])
            .await
            .x_cache,
        "HIT"
    );
}

#[tokio::test]
async fn vary_keeps_variants_apart_and_the_rule_ttl_covers_answers_without_freshness() {
    let up = Arc::new(Upstream::default());
    let app = node(Arc::new(MemoryStore::new()), &up);
    get(&app, "/v/vary", &[("cookie", "theme=dark")]).await;
    assert_eq!(
        get(&app, "/v/vary", &[("cookie", "theme=dark")])
            .await
            .x_cache,
        "HIT"
    );
    assert_eq!(
        get(&app, "/v/vary", &[("cookie", "theme=light")])
            .await
            .x_cache,
        "MISS"
    );
    assert_eq!(get(&app, "/v/ttl", &[]).await.x_cache, "MISS");
    assert_eq!(get(&app, "/v/ttl", &[]).await.x_cache, "HIT");
    // A request asking to reload goes to the application; the answer is stored.
    let none = get(&app, "/v/other-ttl-less", &[("cache-control", "no-cache")]).await;
    assert_eq!(none.cache_status, "sessiond; fwd=request; stored");
    let reload = get(&app, "/v/other-ttl-less", &[("cache-control", "no-cache")]).await;
    assert_eq!(
        reload.x_cache, "MISS",
        "a request asking to reload is not answered from the cache"
    );
}

#[tokio::test]
async fn a_write_through_one_node_invalidates_the_other_before_its_answer_returns() {
    let store: Arc<dyn sessiond_core::Backend> = Arc::new(MemoryStore::sharing_response_cache());
    let up = Arc::new(Upstream::default());
    let (a, b) = (node(store.clone(), &up), node(store, &up));
    assert_eq!(get(&a, "/items", &[]).await.x_cache, "MISS");
    let from_b = get(&b, "/items", &[]).await;
    assert_eq!(
        (from_b.x_cache.as_str(), from_b.body.as_str()),
        ("HIT", "for=any;v=0")
    );
    get(&a, "/items/7", &[]).await;
    get(&a, "/items/8", &[]).await;
    let write = send(&b, Method::POST, "/items/7", &[]).await;
    assert_eq!(write.status, StatusCode::NO_CONTENT);
    let listing = get(&a, "/items", &[]).await;
    assert_eq!(
        (listing.x_cache.as_str(), listing.body.as_str()),
        ("MISS", "for=any;v=1")
    );
    assert_eq!(get(&a, "/items/7", &[]).await.body, "for=any;v=1");
    assert_eq!(
        get(&a, "/items/8", &[]).await.x_cache,
        "HIT",
        "a sibling is left alone"
    );
    // A failed write changes nothing and invalidates nothing.
    send(&b, Method::POST, "/items/8", &[("x-fail", "1")]).await;
    assert_eq!(get(&a, "/items/8", &[]).await.x_cache, "HIT");
}

#[tokio::test]
async fn concurrent_misses_for_one_key_reach_the_application_once() {
    let up = Arc::new(Upstream::default());
    *up.delay.lock().unwrap() = Some(Duration::from_millis(100));
    let app = node(Arc::new(MemoryStore::new()), &up);
    let answers = futures_join(20, || {
        let app = app.clone();
        async move { get(&app, "/slow", &[]).await }
    })
    .await;
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
    let hits = answers.iter().filter(|a| a.x_cache == "HIT").count();
    assert_eq!(hits, 19);
    assert!(answers.iter().all(|a| a.body == "for=any;v=0"));
    assert!(
        answers
            .iter()
            .any(|a| a.cache_status.ends_with("collapsed"))
    );
}

async fn futures_join<F, Fut>(n: usize, make: F) -> Vec<Answer>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|_| tokio::spawn(make())).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn with_the_store_down_the_cache_steps_aside_and_a_missed_invalidation_is_applied_first() {
    let faulty = Arc::new(FaultyStore::new(Arc::new(
        MemoryStore::sharing_response_cache(),
    )));
    let up = Arc::new(Upstream::default());
    let (a, b) = (node(faulty.clone(), &up), node(faulty.clone(), &up));
    get(&a, "/items", &[]).await;
    assert_eq!(get(&b, "/items", &[]).await.x_cache, "HIT");
    faulty.set_down(true);
    let bypassed = get(&a, "/items", &[]).await;
    assert_eq!(bypassed.status, StatusCode::OK);
    assert_eq!(
        bypassed.cache_status,
        "sessiond; fwd=bypass; detail=store-unavailable"
    );
    // The write succeeds at the application; its invalidation waits.
    assert_eq!(
        send(&a, Method::POST, "/items/1", &[]).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&a, "/items", &[]).await.x_cache, "BYPASS");
    faulty.set_down(false);
    // Node A pushes its pending invalidation before it reads again, so
    // neither node serves the old listing.
    assert_eq!(get(&a, "/items", &[]).await.body, "for=any;v=1");
    assert_eq!(get(&b, "/items", &[]).await.body, "for=any;v=1");
}

#[tokio::test]
async fn a_body_over_the_entry_limit_streams_through_uncached() {
    let up = Arc::new(Upstream::default());
    let app = Router::new().fallback(serve).with_state(up.clone()).layer(
        ResponseCacheLayer::new(Arc::new(MemoryStore::new()), rules).with_max_entry_bytes(4),
    );
    let a = get(&app, "/big", &[]).await;
    assert_eq!(
        (a.body.as_str(), a.x_cache.as_str()),
        ("for=any;v=0", "MISS")
    );
    assert!(a.cache_status.ends_with("detail=too-large"));
    assert_eq!(get(&app, "/big", &[]).await.x_cache, "MISS");
}

/// One step of the property test.
#[derive(Debug, Clone)]
enum Step {
    Get {
        who: usize,
        via_header: bool,
        path: usize,
        node: usize,
    },
    Post {
        path: usize,
        fails: bool,
        node: usize,
    },
}

const PATHS: [&str; 9] = [
    "/p/items",
    "/p/items/1",
    "/p/items/2",
    "/p/vary",
    "/p/private",
    "/p/setcookie",
    "/p/personal",
    "/p/shared",
    "/p/items/1/ttl",
];
const WHO: [&str; 4] = ["anon", "alice", "bob", "carol"];

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..WHO.len(), any::<bool>(), 0..PATHS.len(), 0..2usize)
            .prop_map(|(who, via_header, path, node)| Step::Get { who, via_header, path, node }),
        1 => (0..PATHS.len(), any::<bool>(), 0..2usize)
            .prop_map(|(path, fails, node)| Step::Post { path, fails, node }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// For random sequences of requests by several identities, through two
    /// nodes on one store: no answer made for one identity reaches
    /// another, and no answer older than a completed write is served.
    #[test]
    fn no_answer_reaches_another_identity_and_none_is_stale_after_a_write(
        steps in proptest::collection::vec(step(), 1..60)
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store: Arc<dyn sessiond_core::Backend> =
                Arc::new(MemoryStore::sharing_response_cache());
            let up = Arc::new(Upstream::default());
            let nodes = [node(store.clone(), &up), node(store, &up)];
            for step in steps {
                match step {
                    Step::Get { who, via_header, path, node } => {
                        let who = WHO[who];
                        let cookie = format!("id={who}; theme=x");
                        let bearer = format!("Bearer {who}");
                        let headers: Vec<(&str, &str)> = match (who, via_header) {
                            ("anon", _) => vec![],
                            (_, true) => vec![("authorization", bearer.as_str())],
                            (_, false) => vec![("cookie", cookie.as_str())],
                        };
                        let answer = get(&nodes[node], PATHS[path], &headers).await;
                        let (made_for, version) = answer.body.split_once(';').unwrap();
                        let made_for = made_for.trim_start_matches("for=");
                        prop_assert!(made_for == "any" || made_for == who,
                            "{who} got an answer made for {made_for} on {} ({})", PATHS[path], answer.x_cache);
                        let now = up.versions.lock().unwrap().get(PATHS[path]).copied().unwrap_or(0);
                        prop_assert_eq!(version, format!("v={now}"), "stale answer on {} ({})", PATHS[path], answer.x_cache);
                    }
                    Step::Post { path, fails, node } => {
                        let headers: &[(&str, &str)] = if fails { &[("x-fail", "1")] } else { &[] };
                        send(&nodes[node], Method::POST, PATHS[path], headers).await;
                    }
                }
            }
            Ok(())
        })?;
    }
}
