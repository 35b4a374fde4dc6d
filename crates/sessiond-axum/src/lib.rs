//! tower/axum integration for sessiond: cookie sessions, role checks and CSRF
//! for any axum app over any [`sessiond_core::SessionStore`].
//!
//! - [`SessionLayer`] (`layer.rs`): cookie → [`Session`] in the request
//!   extensions → handler → `Set-Cookie`. 503 when the store is down.
//! - [`CurrentUser`], [`Principal`], [`RequireRoleLayer`] (`auth.rs`): who is
//!   calling, and role tiers as a layer (401 / 403).
//! - [`CsrfLayer`] (`csrf.rs`): origin and token checks on unsafe methods of
//!   cookie-authenticated requests.
//! - [`BearerLayer`], [`RequireLiveSessionLayer`] (`bearer.rs`): JWT access
//!   tokens (`Authorization: Bearer`, RFC 6750 errors), verified by any
//!   [`sessiond_jwt::TokenVerifier`]; optionally a live-session check per route.
//! - [`ApiError`] (`error.rs`): the JSON error shape with stable codes.
//!
//! Layer order, outermost first: `BearerLayer` (it drops the cookie of a
//! bearer request), `SessionLayer`, `CsrfLayer`, then `RequireRoleLayer` and
//! `RequireLiveSessionLayer` on the routes that need them. See `examples/` in the
//! `sessiond` crate for a whole app.

pub mod auth;
pub mod bearer;
pub mod cookie;
pub mod csrf;
pub mod device;
pub mod error;
pub mod layer;

pub use auth::{AuthMethod, CurrentUser, Principal, RequireRoleLayer};
pub use bearer::{BearerLayer, Degraded, RequireLiveSessionLayer, StoreDownPolicy};
pub use cookie::{CookieConfig, SameSite};
pub use csrf::CsrfLayer;
pub use error::ApiError;
pub use layer::{Session, SessionLayer};
