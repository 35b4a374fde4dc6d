//! Who is calling: [`Principal`] / [`CurrentUser`], and the role layer.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::Request;
use http::request::Parts;
use tower::{Layer, Service};

use crate::error::ApiError;
use crate::layer::Session;

/// How a request was authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A session cookie (subject to CSRF checks).
    Cookie,
    /// A bearer token (exempt from CSRF checks).
    Bearer,
}

/// The authenticated caller, whatever the method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: String,
    /// The user's roles.
    pub roles: Vec<String>,
    /// The session behind the credential (its public handle is `session.handle()`).
    pub session: sessiond_core::SessionKey,
    /// How the caller authenticated.
    pub method: AuthMethod,
}

impl Principal {
    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The principal of a request: a bearer principal put in the extensions
    /// by a token layer, else the cookie session's user.
    pub fn of(parts_ext: &http::Extensions) -> Option<Principal> {
        if let Some(p) = parts_ext.get::<Principal>() {
            return Some(p.clone());
        }
        parts_ext.get::<Session>()?.with_current(|s| Principal {
            user_id: s.record.user_id.clone(),
            roles: s.record.roles.clone(),
            session: s.key,
            method: AuthMethod::Cookie,
        })
    }
}

/// Extractor for a route that needs a logged-in caller: 401 otherwise.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Principal);

impl CurrentUser {
    /// The user id.
    pub fn user_id(&self) -> &str {
        &self.0.user_id
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Take the principal a role layer already built rather than clone it
        // (this runs on every authenticated request); without one, build it.
        if let Some(p) = parts.extensions.remove::<Principal>() {
            return Ok(CurrentUser(p));
        }
        Principal::of(&parts.extensions)
            .map(CurrentUser)
            .ok_or_else(ApiError::unauthenticated)
    }
}

/// Which callers a route admits.
#[derive(Debug, Clone)]
enum Requirement {
    Authenticated,
    AnyRole(Arc<[String]>),
}

/// Guards every route under it: 401 without a caller, 403 without the role.
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// use sessiond_axum::RequireRoleLayer;
/// let admin: Router = Router::new()
///     .route("/api/admin/stats", get(|| async { "ok" }))
///     .layer(RequireRoleLayer::role("admin"));
/// ```
#[derive(Debug, Clone)]
pub struct RequireRoleLayer {
    requirement: Requirement,
}

impl RequireRoleLayer {
    /// Any authenticated caller.
    pub fn authenticated() -> Self {
        Self {
            requirement: Requirement::Authenticated,
        }
    }

    /// A caller with `role`.
    pub fn role(role: &str) -> Self {
        Self::any_of([role])
    }

    /// A caller with at least one of `roles`.
    pub fn any_of<'a>(roles: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            requirement: Requirement::AnyRole(roles.into_iter().map(str::to_owned).collect()),
        }
    }

    fn check(&self, ext: &http::Extensions) -> Result<Principal, ApiError> {
        let principal = Principal::of(ext).ok_or_else(ApiError::unauthenticated)?;
        match &self.requirement {
            Requirement::Authenticated => Ok(principal),
            Requirement::AnyRole(roles) if roles.iter().any(|r| principal.has_role(r)) => {
                Ok(principal)
            }
            Requirement::AnyRole(_) if principal.method == AuthMethod::Bearer => {
                Err(ApiError::insufficient_scope())
            }
            Requirement::AnyRole(_) => Err(ApiError::forbidden()),
        }
    }
}

impl<S> Layer<S> for RequireRoleLayer {
    type Service = RequireRole<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireRole {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RequireRoleLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequireRole<S> {
    inner: S,
    layer: RequireRoleLayer,
}

impl<S> Service<Request<Body>> for RequireRole<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Send,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        match self.layer.check(req.extensions()) {
            Ok(principal) => {
                // Handlers' `CurrentUser` finds it here instead of rebuilding it.
                req.extensions_mut().insert(principal);
                Box::pin(self.inner.call(req))
            }
            Err(e) => Box::pin(std::future::ready(Ok(e.into_response()))),
        }
    }
}
