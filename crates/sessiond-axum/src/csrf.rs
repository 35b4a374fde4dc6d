//! CSRF protection for requests authenticated by the session cookie.
//!
//! Two independent checks, both required for unsafe methods:
//! 1. Fetch metadata / origin: `Sec-Fetch-Site` must be `same-origin` (or
//!    `none`, a user-typed navigation); without it, an `Origin` header must
//!    name this site. Clients that send neither (curl, other backends) pass
//!    this step and rely on the token.
//! 2. A token bound to the session: header `X-CSRF-Token` or form field
//!    `csrf_token`. Tokens are masked with a fresh random pad each time they
//!    are handed out (so a compressed page never repeats the same secret
//!    bytes: BREACH) and compared in constant time.
//!
//! Requests with no cookie session (anonymous, or bearer-authenticated) are
//! passed through: there is no ambient credential to abuse.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, Method, Request, header};
use tower::{Layer, Service};

use crate::body::{BodyKind, body_kind};
use crate::error::{ApiError, ErrorCode};
use crate::layer::Session;

/// The header that carries the token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The form field that carries the token.
pub const CSRF_FIELD: &str = "csrf_token";
/// Form bodies larger than this are refused (413) before looking for the token.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Masks a session's CSRF secret with a fresh pad: `base64url(pad || pad ^ secret)`.
pub fn mask(secret: &str) -> String {
    let mut secret_bytes = [0u8; 32];
    if URL_SAFE_NO_PAD.decode_slice(secret, &mut secret_bytes) != Ok(32) {
        return String::new();
    }
    let mut out = [0u8; 64];
    // No randomness means no safe token; an empty token simply fails the check.
    if getrandom::fill(&mut out[..32]).is_err() {
        return String::new();
    }
    for i in 0..32 {
        out[32 + i] = out[i] ^ secret_bytes[i];
    }
    URL_SAFE_NO_PAD.encode(out)
}

/// Whether a presented (masked) token matches the session's secret.
pub fn verify(secret: &str, presented: &str) -> bool {
    let mut secret_bytes = [0u8; 32];
    let mut token = [0u8; 64];
    if URL_SAFE_NO_PAD.decode_slice(secret, &mut secret_bytes) != Ok(32)
        || presented.len() != 86
        || URL_SAFE_NO_PAD.decode_slice(presented, &mut token) != Ok(64)
    {
        return false;
    }
    let mut unmasked = [0u8; 32];
    for i in 0..32 {
        unmasked[i] = token[i] ^ token[32 + i];
    }
    sessiond_core::token::secrets_equal(&unmasked, &secret_bytes)
}

/// Whether `method` is safe (RFC 9110 §9.2.1): it changes nothing, so no
/// CSRF check applies.
pub fn is_safe_method(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Checks `Sec-Fetch-Site` and `Origin` against this site.
pub fn same_origin(headers: &HeaderMap, allowed_origins: &[String]) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err("cross-site request"),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().map_err(|_| "unreadable Origin")?;
    if allowed_origins.iter().any(|o| o == origin) {
        return Ok(());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or("Origin without Host")?;
    match origin.split_once("://") {
        Some(("https" | "http", rest)) if rest == host => Ok(()),
        _ => Err("Origin does not match this site"),
    }
}

/// Enforces the CSRF checks on unsafe methods of cookie-authenticated requests.
/// Install it inside (after) [`crate::SessionLayer`].
#[derive(Debug, Clone, Default)]
pub struct CsrfLayer {
    allowed_origins: Arc<[String]>,
    exempt_paths: Arc<[String]>,
}

impl CsrfLayer {
    /// A layer that accepts this site's own origin (from `Host`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Also accepts these origins (`https://app.example.com`), for sites
    /// served behind a proxy that rewrites `Host`.
    #[must_use]
    pub fn with_allowed_origins(mut self, origins: impl IntoIterator<Item = String>) -> Self {
        self.allowed_origins = origins.into_iter().collect();
        self
    }

    /// Paths whose handlers never act on the cookie session (the refresh
    /// and revoke endpoints, whose credential is in the body): a cookie that
    /// happens to ride along does not make them need a CSRF token.
    #[must_use]
    pub fn with_exempt_paths<I: IntoIterator<Item = S>, S: Into<String>>(
        mut self,
        paths: I,
    ) -> Self {
        self.exempt_paths = paths.into_iter().map(Into::into).collect();
        self
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = Csrf<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Csrf {
            inner,
            allowed_origins: self.allowed_origins.clone(),
            exempt_paths: self.exempt_paths.clone(),
        }
    }
}

/// The service [`CsrfLayer`] makes.
#[derive(Debug, Clone)]
pub struct Csrf<S> {
    inner: S,
    allowed_origins: Arc<[String]>,
    exempt_paths: Arc<[String]>,
}

impl<S> Service<Request<Body>> for Csrf<S>
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

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let safe = is_safe_method(req.method());
        let exempt = || self.exempt_paths.iter().any(|p| p == req.uri().path());
        let secret = if safe || exempt() {
            None
        } else {
            req.extensions()
                .get::<Session>()
                .and_then(Session::verified)
                .map(|s| s.record.csrf_secret)
        };
        let Some(secret) = secret else {
            return Box::pin(inner.call(req));
        };
        let allowed = self.allowed_origins.clone();
        Box::pin(async move {
            if let Err(why) = same_origin(req.headers(), &allowed) {
                tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = why);
                return Ok(ApiError::csrf_failed(why).into_response());
            }
            let header_token = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let (token, req) = match header_token {
                Some(t) => (Some(t), req),
                None if body_kind(req.headers()) == Some(BodyKind::Form) => {
                    let (parts, body) = req.into_parts();
                    let bytes = match axum::body::to_bytes(body, MAX_FORM_BYTES).await {
                        Ok(b) => b,
                        Err(_) => {
                            return Ok(ApiError::from(ErrorCode::PayloadTooLarge).into_response());
                        }
                    };
                    let token = form_urlencoded_field(&bytes, CSRF_FIELD);
                    (token, Request::from_parts(parts, Body::from(bytes)))
                }
                None => (None, req),
            };
            match token {
                Some(t) if verify(&secret, &t) => inner.call(req).await,
                Some(_) => {
                    tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = "wrong token");
                    Ok(ApiError::csrf_failed("wrong token").into_response())
                }
                None => {
                    tracing::warn!(target: "sessiond::security", event = "csrf_rejected", reason = "missing token");
                    Ok(ApiError::csrf_failed("missing token").into_response())
                }
            }
        })
    }
}

/// The first value of `name` in a urlencoded form. Tokens are base64url, so
/// no percent-decoding is needed for a valid one; an encoded one fails.
fn form_urlencoded_field(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| v.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_token_verifies_and_differs_each_time() {
        let secret = sessiond_core::token::random_secret();
        let a = mask(&secret);
        let b = mask(&secret);
        assert_ne!(a, b);
        assert!(verify(&secret, &a) && verify(&secret, &b));
        assert!(!verify(&sessiond_core::token::random_secret(), &a));
        assert!(!verify(&secret, &secret), "the bare secret is not a token");
        assert!(!verify(&secret, ""));
        assert!(!verify(&secret, &"A".repeat(86)));
    }

    #[test]
    fn cross_site_fetch_metadata_and_foreign_origins_are_refused() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "app.test".parse().unwrap());
        assert!(same_origin(&h, &[]).is_ok());
        h.insert(header::ORIGIN, "https://app.test".parse().unwrap());
        assert!(same_origin(&h, &[]).is_ok());
        h.insert(header::ORIGIN, "https://evil.test".parse().unwrap());
        assert!(same_origin(&h, &[]).is_err());
        assert!(same_origin(&h, &["https://evil.test".into()]).is_ok());
        h.insert("sec-fetch-site", "cross-site".parse().unwrap());
        assert!(same_origin(&h, &["https://evil.test".into()]).is_err());
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(same_origin(&h, &[]).is_ok());
    }
}
