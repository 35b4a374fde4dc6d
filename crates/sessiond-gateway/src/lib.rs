//! sessiond in front of any application, in any language: the pieces the
//! forward-auth endpoints (nginx `auth_request`, Caddy `forward_auth`,
//! Traefik ForwardAuth) and the built-in proxy share.
//!
//! - [`rules`]: access rules by path, host and method, and the one decision
//!   function ([`AccessRules::decide`]).
//! - [`path`]: request paths normalised as the application will read them,
//!   so that no spelling of a path slips past its rule.
//! - [`redirect`]: which `rd` targets the login page may send a browser to.
//! - [`forwarded`]: the original request a proxy describes in its headers.
//!
//! A crate of its own, not a module of the server: the rules and the
//! redirect check are plain functions that a Rust application can use in
//! its own layers, and none of this needs the server's state.

pub mod forwarded;
pub mod path;
pub mod proxy;
pub mod redirect;
pub mod rules;

pub use forwarded::{ForwardedError, OriginalRequest};
pub use path::{NormalPath, PathError};
pub use redirect::RedirectPolicy;
pub use rules::{
    AccessRule, AccessRules, Allow, CsrfCheck, Decision, RateKey, RuleCache, RuleError, RuleRate,
    Target,
};
