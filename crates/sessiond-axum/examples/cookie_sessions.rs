//! Cookie sessions with role checks in an axum app, on any sessiond store.
//! Run: `cargo run -p sessiond-axum --example cookie_sessions`, then
//! `curl -i -X POST localhost:3000/login/alice` and replay the cookie.
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::routing::{get, post};
use sessiond_axum::{
    ApiError, CookieConfig, CsrfLayer, CurrentUser, ExpiryPolicy, MemoryStore, RequireRoleLayer,
    SameSite, Session, SessionLayer, SessionManager,
};

// A real app checks a password here; the example trusts the name.
async fn login(session: Session, Path(name): Path<String>) -> Result<String, ApiError> {
    let role = if name == "admin" { "admin" } else { "user" };
    session.login(&name, vec![role.into()]).await?;
    Ok(format!(
        "welcome {name}; csrf token: {}\n",
        session.csrf_token().unwrap_or_default()
    ))
}

async fn me(user: CurrentUser) -> String {
    format!("you are {} with roles {:?}\n", user.0.user_id, user.0.roles)
}

async fn logout(session: Session) -> Result<&'static str, ApiError> {
    session.logout().await?;
    Ok("bye\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default());
    let admin = Router::new()
        .route("/admin", get(|| async { "admins only\n" }))
        .route_layer(RequireRoleLayer::role("admin"));
    let app = Router::new()
        .route("/login/{name}", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .merge(admin)
        .layer(CsrfLayer::new())
        // Plain HTTP on localhost for the demo; keep the secure default in production.
        .layer(SessionLayer::new(sessions).with_cookie(CookieConfig::new(
            "__Host-sessiond",
            false,
            SameSite::Strict,
        )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    axum::serve(listener, app).await
}
