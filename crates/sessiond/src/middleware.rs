//! The server's outermost layer, [`GuardLayer`]: refuses oversized headers
//! (431) and a missing, repeated or malformed `Host` (400, RFC 9112 §3.2;
//! with `allowed_hosts`, any other name too), gives every failure answer
//! the JSON error shape (a page instead, for a browser that asks for
//! `text/html`), and adds the security headers to every answer.
//! Everything behind it (the CSRF origin check) reads a `Host` that passed
//! here.
//!
//! One hand-written service rather than `from_fn` plus four
//! `SetResponseHeader` layers: the same work in one pass, without cloning the
//! inner service or boxing twice per request (this layer runs on every
//! request, including the hot `GET /api/profile`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Version, header};
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
#[derive(Debug, Clone)]
pub struct GuardLayer {
    header_limit: usize,
    /// Lowercase host names (no port); empty: any well-formed host.
    allowed_hosts: Arc<[String]>,
}

impl GuardLayer {
    /// Refuses requests whose headers add up to more than `header_limit` bytes.
    pub fn new(header_limit: usize) -> Self {
        Self {
            header_limit,
            allowed_hosts: Arc::new([]),
        }
    }

    /// Accepts only these host names in `Host` (any port); an empty list
    /// accepts any well-formed host.
    #[must_use]
    pub fn with_allowed_hosts(mut self, hosts: &[String]) -> Self {
        self.allowed_hosts = hosts.iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`GuardLayer`] makes.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    inner: S,
    layer: GuardLayer,
}

/// The host part of a `Host` value (`uri-host [ ":" port ]`, RFC 9110
/// §7.2), or `None` when it is not one: user information, a path, spaces or
/// a malformed port or IPv6 literal. Checked byte by byte rather than with
/// `http::uri::Authority`, which copies the value: this runs on every request.
fn host_name(value: &[u8]) -> Option<&[u8]> {
    let (name, port) = if value.first() == Some(&b'[') {
        let end = value.iter().position(|b| *b == b']')?;
        let literal = &value[1..end];
        let ok = !literal.is_empty()
            && literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || b":.".contains(b));
        if !ok {
            return None;
        }
        (&value[..=end], &value[end + 1..])
    } else {
        let end = value.iter().position(|b| *b == b':').unwrap_or(value.len());
        let name = &value[..end];
        // reg-name: unreserved, percent-encoded and sub-delims characters.
        let ok = !name.is_empty()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b));
        if !ok {
            return None;
        }
        (name, &value[end..])
    };
    match port {
        [] => Some(name),
        [b':', digits @ ..] if digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit) => {
            Some(name)
        }
        _ => None,
    }
}

/// Why a request's `Host` is refused, if it is.
pub fn check_host(
    version: Version,
    headers: &HeaderMap,
    allowed: &[String],
) -> Result<(), &'static str> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let Some(host) = hosts.next() else {
        // HTTP/1.0 predates Host; HTTP/1.1 requires it.
        return if version == Version::HTTP_10 || version == Version::HTTP_09 {
            Ok(())
        } else {
            Err("the Host header is missing")
        };
    };
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let name = host_name(host.as_bytes()).ok_or("the Host header is not a host name or address")?;
    if allowed.is_empty()
        || allowed
            .iter()
            .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
    {
        Ok(())
    } else {
        Err("this server does not answer for that host")
    }
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
        if size > self.layer.header_limit {
            let refused = ApiError::from(ErrorCode::HeadersTooLarge);
            return Box::pin(std::future::ready(Ok(finish(refused.into_response()))));
        }
        if let Err(why) = check_host(req.version(), req.headers(), &self.layer.allowed_hosts) {
            let refused = ApiError::new(ErrorCode::InvalidHost, why);
            return Box::pin(std::future::ready(Ok(finish(refused.into_response()))));
        }
        // Only a request that declares a body pays for watching it (the hot
        // path is bodiless GETs).
        let (req, waiting) = if declares_body(req.headers()) {
            let waiting = Arc::new(AtomicBool::new(false));
            let req = req.map(|body| {
                Body::new(WatchedBody {
                    inner: body,
                    waiting: waiting.clone(),
                })
            });
            (req, Some(waiting))
        } else {
            (req, None)
        };
        let browser = crate::routes::pages::wants_html(req.headers());
        let response = self.inner.call(req);
        Box::pin(async move {
            let response = response.await?;
            let waiting_for_client = waiting.is_some_and(|w| w.load(Ordering::Acquire));
            let response = finish(client_timeout(response, waiting_for_client));
            Ok(if browser { as_page(response) } else { response })
        })
    }
}

/// A failure answer of sessiond's own (it carries its [`ApiError`]) as a
/// page, for a browser: the same status, with the answer's other headers
/// (a cookie cleared, `Retry-After`, `WWW-Authenticate`). An application's
/// answers through the proxy carry none and pass as they are.
fn as_page(response: Response) -> Response {
    if response.status().as_u16() < 400 {
        return response;
    }
    let Some(e) = response.extensions().get::<ApiError>() else {
        return response;
    };
    let mut page = crate::routes::pages::error(e);
    let own: Vec<HeaderName> = page.headers().keys().cloned().collect();
    for (name, value) in response.headers() {
        if *name != header::CONTENT_LENGTH && !own.contains(name) {
            page.headers_mut().append(name.clone(), value.clone());
        }
    }
    page
}

/// Whether the request says a body follows.
fn declares_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

/// The request deadline's bare 503 is the client's fault when the server
/// was waiting for the rest of the client's body: 408 `request_timeout`,
/// counted as a 4xx, and the connection closed (the rest of the body would
/// be read as a new request). A deadline passed while the server itself
/// worked (a store call, a hash) stays 503.
fn client_timeout(response: Response, waiting_for_client: bool) -> Response {
    let bare_deadline = response.status() == StatusCode::SERVICE_UNAVAILABLE
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !(bare_deadline && waiting_for_client) {
        return response;
    }
    let mut timeout = ApiError::new(
        ErrorCode::RequestTimeout,
        "the request body did not arrive in time",
    )
    .into_response();
    timeout
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    timeout
}

/// A request body that records whether the server is waiting for the
/// client's next bytes (its last read found none).
struct WatchedBody {
    inner: Body,
    waiting: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        self.waiting.store(polled.is_pending(), Ordering::Release);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// JSON errors and security headers for one answer.
/// Marks an answer that the built-in proxy passes on from the application:
/// it leaves as it came (no JSON error shape, no security headers of ours).
#[derive(Debug, Clone, Copy)]
pub struct FromApplication;

fn finish(response: Response) -> Response {
    if response.extensions().get::<FromApplication>().is_some() {
        return response;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hosts(hosts: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for host in hosts {
            h.append(header::HOST, HeaderValue::from_static(host));
        }
        h
    }

    #[test]
    fn a_request_needs_exactly_one_well_formed_host() {
        let v11 = Version::HTTP_11;
        assert!(check_host(v11, &with_hosts(&["auth.example.com"]), &[]).is_ok());
        assert!(check_host(v11, &with_hosts(&["127.0.0.1:8080"]), &[]).is_ok());
        assert!(check_host(v11, &with_hosts(&["[::1]:8080"]), &[]).is_ok());
        assert!(check_host(v11, &with_hosts(&[]), &[]).is_err());
        assert!(check_host(Version::HTTP_10, &with_hosts(&[]), &[]).is_ok());
        assert!(check_host(v11, &with_hosts(&["a.example", "b.example"]), &[]).is_err());
        for bad in [
            "",
            "a b",
            "user@evil.example",
            "evil.example/path",
            "[::1",
            "a:b:c",
        ] {
            assert!(
                check_host(v11, &with_hosts(&[bad]), &[]).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn allowed_hosts_pin_the_names_whatever_the_port_and_case() {
        let allowed = ["auth.example.com".to_owned()];
        let v11 = Version::HTTP_11;
        assert!(check_host(v11, &with_hosts(&["AUTH.example.com:8443"]), &allowed).is_ok());
        assert!(check_host(v11, &with_hosts(&["evil.example"]), &allowed).is_err());
        assert!(
            check_host(
                v11,
                &with_hosts(&["auth.example.com.evil.example"]),
                &allowed
            )
            .is_err()
        );
    }
}
