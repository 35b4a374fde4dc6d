//! Another service that accepts sessiond's access tokens, knowing nothing
//! but the JWKS URL: the keys are fetched, cached and refetched when
//! sessiond rotates.
//!
//! Run sessiond (`cargo run --release -- serve --demo`), then
//! `cargo run -p sessiond-axum --example resource_server`, get a token with
//! `curl -s localhost:8080/api/token -H 'content-type: application/json'
//! -d '{"username":"demo","password":"…"}'` and call
//! `curl -H "authorization: Bearer $ACCESS" localhost:3001/orders`.
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use sessiond_axum::{BearerLayer, CurrentUser, RequireRoleLayer};
use sessiond_jwt::{RemoteJwks, Rules};

async fn orders(user: CurrentUser) -> String {
    format!("orders of {}\n", user.user_id())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let sessiond = std::env::var("SESSIOND_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    // The issuer and audience must match sessiond's jwt_issuer / jwt_audience.
    let verifier = RemoteJwks::new(
        format!("{sessiond}/.well-known/jwks.json"),
        Rules::new("sessiond", "sessiond"),
    );
    let app = Router::new()
        .route("/orders", get(orders))
        .route_layer(RequireRoleLayer::authenticated())
        // 401 with an RFC 6750 challenge for a missing, bad or expired token.
        .layer(BearerLayer::new(Arc::new(verifier)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("resource server on http://127.0.0.1:3001/orders (keys from {sessiond})");
    axum::serve(listener, app).await
}
