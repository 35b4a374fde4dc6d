//! The server's outermost layer, [`GuardLayer`]: refuses oversized headers
//! (431), gives every failure answer the JSON error shape, and adds the
//! security headers to every answer.
//!
//! One hand-written service rather than `from_fn` plus four
//! `SetResponseHeader` layers: the same work in one pass, without cloning the
//! inner service or boxing twice per request (this layer runs on every
//! request, including the hot `GET /api/profile`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Request, StatusCode, header};
use sessiond_axum::{ApiError, ErrorCode};
use tower::{Layer, Service};

/// The Content-Security-Policy of every answer: no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every answer (kept when a handler set its own).
const SECURITY_HEADERS: [(HeaderName, &str); 4] = [
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// See the module docs.
#[derive(Debug, Clone, Copy)]
pub struct GuardLayer {
    header_limit: usize,
}

impl GuardLayer {
    /// Refuses requests whose headers add up to more than `header_limit` bytes.
    pub fn new(header_limit: usize) -> Self {
        Self { header_limit }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            header_limit: self.header_limit,
        }
    }
}

/// The service [`GuardLayer`] makes.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    header_limit: usize,
}

impl<S> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let size: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if size > self.header_limit {
            let refused = ApiError::from(ErrorCode::HeadersTooLarge);
            return Box::pin(std::future::ready(Ok(finish(refused.into_response()))));
        }
        let response = self.inner.call(req);
        Box::pin(async move { Ok(finish(response.await?)) })
    }
}

/// JSON errors and security headers for one answer.
fn finish(response: Response) -> Response {
    let mut response = json_error(response);
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// Rewrites a 4xx/5xx answer that is not already JSON or HTML (axum's own
/// 404/405, the body limit's 413, the deadline's 503, extractor rejections)
/// into the JSON error shape with a stable code.
fn json_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let typed = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json") || ct.starts_with("text/html"));
    if typed {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        // Only the request deadline (TimeoutLayer) answers a bare 503.
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::DeadlineExceeded,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        // 422 is folded into 400: both mean "fix your request body".
        StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidBody,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let mut error = ApiError::from(code);
    if code == ErrorCode::BadRequest {
        // Any other 4xx keeps its status (411, 417, …) under the generic code.
        error.status = status;
    }
    let mut out = error.into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}
