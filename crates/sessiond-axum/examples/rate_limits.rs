//! Rate limits per client address in an axum app, on any sessiond store
//! (shared by every node on Redis; in process on the memory and file stores).
//! Run: `cargo run -p sessiond-axum --example rate_limits`, then
//! `for i in 1 2 3 4; do curl -si localhost:3000/search | head -1; done`:
//! three pass (the burst), the fourth gets 429 with `Retry-After`.
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use sessiond_axum::{ClientIp, Limit, MemoryStore, RateLimitLayer};
use sessiond_core::Rate;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // 10 a minute per address, in bursts of 3.
    let rate = Rate::parse("10/m", Some(3)).map_err(std::io::Error::other)?;
    let limits = RateLimitLayer::new(Arc::new(MemoryStore::new()), move |req| {
        let ip = ClientIp::of(req.extensions())?;
        Some(Limit {
            policy: "search".into(),
            key: ip.to_string(),
            rate,
        })
    });
    let app = Router::new()
        .route("/search", get(|| async { "results\n" }))
        .layer(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
