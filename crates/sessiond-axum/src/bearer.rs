//! Bearer access tokens: [`BearerLayer`] authenticates `Authorization:
//! Bearer` requests, [`RequireLiveSessionLayer`] makes a route also check
//! that the token's session has not been revoked.
//!
//! A request that presents a valid token is a bearer request through and
//! through: its `Cookie` header is dropped before the session layer sees it,
//! so no cookie session rides along with it. That is what makes exempting
//! bearer requests from CSRF checks safe (there is no ambient credential),
//! and it means a route never has to decide between two identities.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{Request, header};
use sessiond_core::{SessionKey, SessionManager};
use sessiond_jwt::{AccessClaims, TokenVerifier, VerifyError};
use tower::{Layer, Service};

use crate::auth::{AuthMethod, Principal};
use crate::error::ApiError;

/// Authenticates `Authorization: Bearer <access token>` requests.
///
/// - no `Authorization` header, or another scheme: passed on untouched
///   (the route's own requirements decide);
/// - a valid token: a [`Principal`] with [`AuthMethod::Bearer`] and the
///   [`AccessClaims`] go into the request extensions, the cookie is dropped;
/// - `Bearer` without a token: 400 `invalid_request`;
/// - anything else (malformed, bad signature, expired, wrong audience…):
///   401 `invalid_token`, with the RFC 6750 `WWW-Authenticate` challenge;
/// - keys unavailable (a remote verifier that cannot reach its issuer): 503.
#[derive(Clone)]
pub struct BearerLayer {
    verifier: Arc<dyn TokenVerifier>,
    others: Option<&'static str>,
}

impl std::fmt::Debug for BearerLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerLayer").finish_non_exhaustive()
    }
}

impl BearerLayer {
    /// Verifies tokens with `verifier` (the server's key ring, or
    /// [`sessiond_jwt::RemoteJwks`] in another service).
    pub fn new(verifier: Arc<dyn TokenVerifier>) -> Self {
        Self {
            verifier,
            others: None,
        }
    }

    /// Bearer credentials starting with `prefix` are not access tokens
    /// (service keys, `sdk_`): they are left to the route to check, but
    /// the request is a bearer request all the same: its cookie is dropped.
    #[must_use]
    pub fn with_other_credentials(mut self, prefix: &'static str) -> Self {
        self.others = Some(prefix);
        self
    }
}

impl<S> Layer<S> for BearerLayer {
    type Service = Bearer<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Bearer {
            inner,
            verifier: self.verifier.clone(),
            others: self.others,
        }
    }
}

/// The service [`BearerLayer`] makes.
#[derive(Clone)]
pub struct Bearer<S> {
    inner: S,
    verifier: Arc<dyn TokenVerifier>,
    others: Option<&'static str>,
}

/// What the `Authorization` header holds, as far as this layer cares.
enum Credential<'a> {
    None,
    Token(&'a str),
    Invalid(&'static str),
}

fn credential(req: &Request<Body>) -> Credential<'_> {
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Credential::None;
    };
    let Ok(value) = value.to_str() else {
        return Credential::Invalid("the Authorization header is not ASCII");
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Credential::None;
    }
    if values.next().is_some() {
        return Credential::Invalid("more than one Authorization header");
    }
    match rest.trim() {
        "" => Credential::Invalid("the Bearer scheme needs a token"),
        token => Credential::Token(token),
    }
}

/// The principal a token stands for; `None` if its `sid` is not a session handle.
fn principal(claims: &AccessClaims) -> Option<Principal> {
    Some(Principal {
        user_id: claims.sub.clone(),
        roles: claims.roles.clone(),
        session: SessionKey::from_handle(&claims.sid).ok()?,
        method: AuthMethod::Bearer,
    })
}

impl<S> Service<Request<Body>> for Bearer<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let token = match credential(&req) {
            Credential::None => return Box::pin(self.inner.call(req)),
            Credential::Invalid(why) => {
                let response = ApiError::invalid_bearer_request(why).into_response();
                return Box::pin(std::future::ready(Ok(response)));
            }
            Credential::Token(token) if self.others.is_some_and(|p| token.starts_with(p)) => {
                req.headers_mut().remove(header::COOKIE);
                return Box::pin(self.inner.call(req));
            }
            Credential::Token(token) => token.to_owned(),
        };
        // The ready service goes into the future; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        Box::pin(async move {
            let claims = match verifier.verify(&token).await {
                Ok(claims) => claims,
                Err(VerifyError::Unavailable(reason)) => {
                    tracing::warn!(%reason, "bearer token not checked: keys unavailable");
                    return Ok(ApiError::store_unavailable().into_response());
                }
                Err(e) => {
                    metrics::counter!(sessiond_core::metric::BEARER_REJECTIONS, "reason" => e.label())
                        .increment(1);
                    tracing::debug!(reason = e.label(), "bearer token refused");
                    return Ok(ApiError::invalid_token(&e.to_string()).into_response());
                }
            };
            let Some(principal) = principal(&claims) else {
                return Ok(ApiError::invalid_token("the token names no session").into_response());
            };
            req.headers_mut().remove(header::COOKIE);
            req.extensions_mut().insert(principal);
            req.extensions_mut().insert(claims);
            inner.call(req).await
        })
    }
}

/// For routes that must not trust an access token alone: a bearer caller's
/// session (the token's `sid`) must still be live, so that logout, revoke-all
/// and password changes take effect at once rather than when the token
/// expires. One store round trip (plus a renewal write when due). Cookie
/// callers pass unchanged: their session was already checked.
///
/// When the store is unavailable the answer depends on [`StoreDownPolicy`]:
/// by default the token's signature is trusted (its short lifetime bounds the
/// staleness) and the request goes on, marked with [`Degraded`] in its
/// extensions; with [`StoreDownPolicy::FailClosed`] it is a 503.
#[derive(Debug, Clone)]
pub struct RequireLiveSessionLayer {
    sessions: SessionManager,
    when_store_down: StoreDownPolicy,
}

/// What [`RequireLiveSessionLayer`] does with a bearer request when the store
/// cannot say whether the session is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreDownPolicy {
    /// Accept the token on its signature alone (the default): a revocation
    /// made during the outage takes effect when the token expires.
    #[default]
    TrustSignature,
    /// Answer 503 `store_unavailable`.
    FailClosed,
}

/// Marks a bearer request let through on its signature alone because the
/// store was down (see [`StoreDownPolicy::TrustSignature`]).
#[derive(Debug, Clone, Copy)]
pub struct Degraded;

impl RequireLiveSessionLayer {
    /// Checks sessions with `sessions`.
    pub fn new(sessions: SessionManager) -> Self {
        Self {
            sessions,
            when_store_down: StoreDownPolicy::default(),
        }
    }

    /// Sets what happens when the store is down.
    #[must_use]
    pub fn with_store_down_policy(mut self, policy: StoreDownPolicy) -> Self {
        self.when_store_down = policy;
        self
    }
}

impl<S> Layer<S> for RequireLiveSessionLayer {
    type Service = RequireLiveSession<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RequireLiveSession {
            inner,
            sessions: self.sessions.clone(),
            when_store_down: self.when_store_down,
        }
    }
}

/// The service [`RequireLiveSessionLayer`] makes.
#[derive(Debug, Clone)]
pub struct RequireLiveSession<S> {
    inner: S,
    sessions: SessionManager,
    when_store_down: StoreDownPolicy,
}

impl<S> Service<Request<Body>> for RequireLiveSession<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let key = match req.extensions().get::<Principal>() {
            Some(p) if p.method == AuthMethod::Bearer => p.session,
            _ => return Box::pin(self.inner.call(req)),
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let sessions = self.sessions.clone();
        let policy = self.when_store_down;
        Box::pin(async move {
            match sessions.verify_key(key).await {
                Ok(Some(_)) => inner.call(req).await,
                Ok(None) => Ok(ApiError::invalid_token("the session has ended").into_response()),
                Err(sessiond_core::StoreError::Unavailable(_))
                    if policy == StoreDownPolicy::TrustSignature =>
                {
                    tracing::warn!(
                        target: "sessiond::security",
                        event = "bearer_accepted_degraded",
                        "store unavailable: bearer token accepted on its signature alone"
                    );
                    req.extensions_mut().insert(Degraded);
                    inner.call(req).await
                }
                Err(e) => Ok(ApiError::from(e).into_response()),
            }
        })
    }
}
