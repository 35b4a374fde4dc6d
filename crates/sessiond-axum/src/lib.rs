//! tower/axum integration for sessiond: cookie sessions, role checks and CSRF
//! for any axum app over any [`sessiond_core::SessionStore`].
//!
//! - [`SessionLayer`] (`layer.rs`): cookie → [`Session`] in the request
//!   extensions → handler → `Set-Cookie`. 503 when the store is down.
//! - [`CurrentUser`], [`Principal`], [`RequireRoleLayer`] (`auth.rs`): who is
//!   calling, and role tiers as a layer (401 / 403).
//! - [`CsrfLayer`] (`csrf.rs`): origin and token checks on unsafe methods of
//!   cookie-authenticated requests.
//! - [`BearerLayer`], [`RequireLiveSessionLayer`] (`bearer.rs`, feature
//!   `bearer`): JWT access
//!   tokens (`Authorization: Bearer`, RFC 6750 errors), verified by any
//!   [`sessiond_jwt::TokenVerifier`]; optionally a live-session check per route.
//! - [`ApiError`], [`ErrorCode`] (`error.rs`): the JSON error shape, and
//!   every stable code with its status.
//! - [`ResponseCacheLayer`] (`cache/`): a shared HTTP cache (RFC 9111)
//!   safe in front of authentication, its tiers in memory and in the store.
//! - [`RateLimitLayer`] (`rate.rs`): per-key GCRA limits, shared through
//!   the store.
//! - [`ClientIpLayer`], [`ClientIp`] (`client_ip.rs`): the client's address,
//!   through trusted proxies only, for everything that needs it.
//! - [`body`]: `Content-Type` detection and the JSON / form extractors
//!   ([`ApiJson`], [`JsonOrForm`], [`OptionalJson`]) whose rejections are
//!   [`ApiError`]s.
//!
//! Bearer tokens (feature `bearer`, on by default) pull in the JWT crate and
//! its RSA, P-256 and Ed25519 code; an app that only wants cookie sessions
//! turns default features off. The core types an app needs
//! ([`SessionManager`], [`SessionStore`], [`MemoryStore`], [`ExpiryPolicy`],
//! …) are re-exported, so one dependency is enough.
//!
//! Layer order, outermost first: `BearerLayer` (it drops the cookie of a
//! bearer request), `SessionLayer`, `CsrfLayer`, then `RequireRoleLayer` and
//! `RequireLiveSessionLayer` on the routes that need them. See this crate's
//! `examples/` for whole apps.

pub mod auth;
#[cfg(feature = "bearer")]
pub mod bearer;
pub mod body;
pub mod cache;
pub mod client_ip;
pub mod cookie;
pub mod csrf;
pub mod device;
pub mod error;
pub mod layer;
pub mod rate;

pub use auth::{AuthMethod, CurrentUser, Principal, RequireRoleLayer};
#[cfg(feature = "bearer")]
pub use bearer::{BearerLayer, Degraded, RequireLiveSessionLayer, StoreDownPolicy};
pub use body::{ApiJson, BodyKind, JsonOrForm, OptionalJson, body_kind};
pub use cache::{CacheRule, ResponseCacheLayer};
pub use client_ip::{ClientIp, ClientIpLayer, ForwardedHeader, TrustedProxies};
pub use cookie::{CookieConfig, SameSite};
pub use csrf::CsrfLayer;
pub use error::{ApiError, ErrorCode};
pub use layer::{Session, SessionLayer};
pub use rate::{Limit, RateLimitLayer};

pub use sessiond_core::{
    AttributeChange, Backend, ClientMeta, ExpiryPolicy, MemoryStore, SessionManager, SessionStore,
    StoreError, StoredSession, UserStore,
};
