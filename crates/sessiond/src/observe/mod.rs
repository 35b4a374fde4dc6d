//! Metrics, request ids and the access log.
//!
//! - [`ObserveLayer`] (outermost): takes or makes the request id
//!   (`X-Request-Id`, echoed on the answer), reads W3C `traceparent`, opens
//!   the request span every log line of the request carries, and at the end
//!   counts the request (`sessiond_http_requests_total`,
//!   `sessiond_http_request_duration_seconds`) and writes one access-log line
//!   (target `sessiond::access`).
//!   The `route` label takes only the router's own templates (never a raw
//!   path, so the label stays bounded); the router hands them over.
//! - `http_metrics.rs`: the Prometheus recorder ([`metrics_handle`]), help
//!   texts from the core's metric catalogue, cached HTTP metric handles,
//!   gauges.
//! - `access_log.rs`: [`AccessLog`], the access-log writer thread.

mod access_log;
mod http_metrics;

pub use access_log::{AccessLog, AccessRecord};
pub use http_metrics::{metrics_handle, spawn_gauges};

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, Request};
use tower::{Layer, Service};

use access_log::{TraceId, wall_clock};
use http_metrics::{HttpMetrics, METHODS, route_label};

/// See the module docs.
#[derive(Clone)]
pub struct ObserveLayer {
    /// One `Arc`: the outermost service is cloned for every request.
    state: Arc<ObserveState>,
}

struct ObserveState {
    metrics: Option<HttpMetrics>,
    access_log: Option<AccessLog>,
    /// A `request` span per request, for exported traces.
    spans: bool,
    /// Route template → index in `templates`.
    routes: matchit::Router<usize>,
    /// The router's templates.
    templates: Vec<&'static str>,
}

impl std::fmt::Debug for ObserveLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserveLayer")
            .field("metrics", &self.state.metrics.is_some())
            .field("access_log", &self.state.access_log.is_some())
            .field("spans", &self.state.spans)
            .finish()
    }
}

impl ObserveLayer {
    /// Counts requests when `metrics`, writes `access_log` lines, opens a
    /// request span when `spans` (trace export is on). `templates` are the
    /// router's route templates, the values of the `route` label.
    pub fn new(
        templates: Vec<&'static str>,
        metrics: bool,
        access_log: Option<AccessLog>,
        spans: bool,
    ) -> Self {
        let mut routes = matchit::Router::new();
        for (i, route) in templates.iter().enumerate() {
            // The router accepted the same templates, so they do not clash.
            let _ = routes.insert(*route, i);
        }
        Self {
            state: Arc::new(ObserveState {
                metrics: metrics.then(|| HttpMetrics::new(templates.clone())),
                access_log,
                spans,
                routes,
                templates,
            }),
        }
    }
}

impl ObserveLayer {
    /// The `route` label a request for `path` gets.
    pub fn route_label(&self, path: &str) -> &'static str {
        route_label(&self.state.templates, self.state.route_index(path))
    }
}

impl ObserveState {
    /// The index of `path`'s template, or `templates.len()` (unmatched).
    fn route_index(&self, path: &str) -> usize {
        self.routes
            .at(path)
            .map_or(self.templates.len(), |m| *m.value)
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`ObserveLayer`] makes.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// A client's request id is kept if it is short and plain (it goes into
/// logs: no spaces, quotes or control characters).
fn usable_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let plain = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    plain.then_some(s)
}

/// A process-unique id: a random prefix and a counter (no syscall per request).
fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        u64::from_le_bytes(b)
    });
    format!(
        "{prefix:016x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::PATCH => 3,
        Method::DELETE => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl<S> Service<Request<Body>> for Observe<S>
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
        let started = Instant::now();
        // A HeaderValue: cloning it for the log and the answer shares one
        // buffer.
        let id: HeaderValue = match req.headers().get(&X_REQUEST_ID) {
            Some(v) if usable_request_id(v).is_some() => v.clone(),
            _ => HeaderValue::from_maybe_shared(bytes::Bytes::from(new_request_id()))
                .unwrap_or(HeaderValue::from_static("-")),
        };
        let state = self.layer.state.clone();
        let route = state.route_index(req.uri().path());
        let method = method_index(req.method());
        // Only the access log needs the client address.
        let client = state
            .access_log
            .as_ref()
            .and_then(|_| sessiond_axum::ClientIp::of(req.extensions()));
        let trace: Option<TraceId> = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(trace_id)
            .and_then(|t| t.as_bytes().try_into().ok());
        let span = if state.spans {
            let span = tracing::info_span!(
                "request",
                request_id = id.to_str().unwrap_or_default(),
                method = METHODS[method],
                route = route_label(&state.templates, route),
                trace_id = tracing::field::Empty,
            );
            if let Some(t) = &trace {
                span.record("trace_id", std::str::from_utf8(t).unwrap_or_default());
            }
            crate::telemetry::link_remote_parent(&span, req.headers());
            span
        } else {
            tracing::Span::none()
        };
        let response = span.in_scope(|| self.inner.call(req));
        Box::pin(async move {
            let mut response = if state.spans {
                tracing::Instrument::instrument(response, span).await?
            } else {
                response.await?
            };
            let elapsed = started.elapsed();
            let status = response.status().as_u16();
            if let Some(m) = &state.metrics {
                m.record(route, method, status, elapsed);
            }
            if let Some(log) = &state.access_log {
                log.log(AccessRecord {
                    at: wall_clock(started),
                    id: id.clone(),
                    method: METHODS[method],
                    route: route_label(&state.templates, route),
                    status,
                    latency: elapsed,
                    trace,
                    client,
                });
            }
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_give_a_trace_id() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id(good), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("00-4bf92f3577b34da6-00f067aa0ba902b7-01"), None);
        assert_eq!(
            trace_id("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id("garbage"), None);
    }

    #[test]
    fn client_request_ids_with_odd_characters_are_replaced() {
        assert!(usable_request_id(&HeaderValue::from_static("abc-123_x.y:z")).is_some());
        assert!(usable_request_id(&HeaderValue::from_static("has space")).is_none());
        assert!(usable_request_id(&HeaderValue::from_static("quote\"")).is_none());
        let long = "a".repeat(129);
        assert!(usable_request_id(&HeaderValue::from_str(&long).unwrap()).is_none());
        assert_ne!(new_request_id(), new_request_id());
    }

    #[test]
    fn a_path_is_labelled_with_its_template_and_anything_else_is_unmatched() {
        let layer = ObserveLayer::new(vec!["/a", "/b/{id}"], true, None, false);
        assert_eq!(layer.route_label("/a"), "/a");
        assert_eq!(layer.route_label("/b/secret-looking-id"), "/b/{id}");
        assert_eq!(layer.route_label("/no/such/path"), "unmatched");
    }
}
