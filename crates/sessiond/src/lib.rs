//! The sessiond server: login with cookie sessions, role tiers, CSRF, the
//! account and admin APIs, health checks and the `user` commands.
//!
//! - `config.rs`: [`ServerConfig`] (file + `SESSIOND_*` + flags).
//! - `startup.rs`: [`Application::build`] assembles the router and layers;
//!   `main.rs` and the tests both call it.
//! - `routes/`: `auth` (login, logout), `account` (profile, sessions,
//!   password), `admin`, `pages` (HTML), `health`.
//! - `middleware.rs`: JSON errors for every failure, header limits, security headers.
//! - `observe.rs`: request ids, the access log, Prometheus metrics (`/metrics`);
//!   `telemetry.rs`: OpenTelemetry export (feature `otel`).
//! - `password.rs`: argon2id on the blocking pool, bounded. `throttle.rs`: login throttling.
//! - `tokens.rs`: the shared JWT key ring, access tokens, refresh families
//!   (rotation, grace window, theft detection); `routes/token.rs` serves them.
//! - `users.rs`: user management for the CLI.

pub mod config;
pub mod extract;
pub mod middleware;
pub mod observe;
pub mod password;
pub mod routes;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod tokens;
pub mod users;

pub use config::ServerConfig;
pub use startup::Application;
pub use state::StoreHandle;
