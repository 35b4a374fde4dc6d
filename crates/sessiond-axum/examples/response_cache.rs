//! A shared response cache in front of an axum app, on any sessiond store
//! (one node's miss fills every node on Redis; here the memory store).
//! Run: `cargo run -p sessiond-axum --example response_cache`, then
//! `curl -si localhost:3000/products | grep -i cache` twice (MISS, then HIT),
//! `curl -si -X POST localhost:3000/products/1` (invalidates the listing),
//! and `curl -si localhost:3000/products | grep -i x-cache` (MISS again).
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use sessiond_axum::{CacheRule, MemoryStore, ResponseCacheLayer};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let version = Arc::new(AtomicU64::new(0));
    let (read, write) = (version.clone(), version);
    let cache = ResponseCacheLayer::new(Arc::new(MemoryStore::new()), |parts| {
        // Everything under /products is public and fresh for 30 s unless
        // the answer says otherwise; writes below it clear it all.
        parts.uri.path().starts_with("/products").then(|| {
            let mut rule = CacheRule::new("products");
            rule.public = true;
            rule.ttl = Some(Duration::from_secs(30));
            rule.invalidate = Arc::from(["/products".to_owned()]);
            rule
        })
    });
    let app = Router::new()
        .route(
            "/products",
            get(move || async move { format!("products v{}\n", read.load(Ordering::SeqCst)) }),
        )
        .route(
            "/products/{id}",
            post(move || async move {
                write.fetch_add(1, Ordering::SeqCst);
                "updated\n"
            }),
        )
        .layer(cache);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
