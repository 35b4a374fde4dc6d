//! The sessiond server: login with cookie sessions, role tiers, CSRF, the
//! account, admin and token APIs, health checks, metrics, and the `user`
//! and `keys` commands.
//!
//! - `config/`: [`ServerConfig`], one section per concern (file +
//!   `SESSIOND_*` + flags), typed at load.
//! - `startup.rs`: [`Application::build`] assembles the server; `main.rs`
//!   and the tests both call it. `state.rs`: the store handle and the
//!   shared state handlers receive.
//! - `routes/`: the route table and the handlers, by area: `auth` (login,
//!   logout), `account` (profile, devices, password, attributes), `admin`,
//!   `token`, `pages` (HTML), `health`. Domain errors become API error
//!   codes in `routes/mod.rs`.
//! - `accounts.rs`: credentials, password changes, users (the HTTP routes
//!   and the CLI both go through it); `password_rules.rs`: which new
//!   passwords are accepted (length, guessability).
//! - `events.rs`: the security-event log in the store, written in batches
//!   off the request path.
//! - `tokens/`: the shared JWT key ring (`ring.rs`) and refresh families
//!   (`refresh.rs`), on the session engine's clock.
//! - `password.rs`: NFKC, then argon2id on a pool of its own, bounded;
//!   hashes made with weaker parameters (or before normalisation) are
//!   upgraded at the next sign-in.
//!   `throttle.rs`: login throttling on attempt counters in the store
//!   (shared by every node); `devices.rs`: the signed device cookies that
//!   give a user's own browsers their own counter.
//! - `serve.rs`: the accept loop (header-read timeout, connection cap,
//!   graceful stop). `middleware.rs`: JSON errors for every failure, header
//!   limits, `Host`, security headers, 408 for a body still arriving.
//! - `observe/`: request ids, metrics (`http_metrics.rs`), the access log
//!   (`access_log.rs`); `telemetry.rs`: OpenTelemetry export (feature `otel`).

pub mod accounts;
pub mod config;
pub mod devices;
pub mod events;
pub mod middleware;
pub mod observe;
pub mod password;
pub mod password_rules;
pub mod routes;
pub mod serve;
pub mod service_keys;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod tokens;

pub use config::ServerConfig;
pub use startup::Application;
pub use state::StoreHandle;
