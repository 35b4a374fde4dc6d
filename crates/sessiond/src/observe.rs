//! Metrics, request ids and the access log.
//!
//! - [`ObserveLayer`] (outermost): takes or makes the request id
//!   (`X-Request-Id`, echoed on the answer), reads W3C `traceparent`, opens
//!   the request span every log line of the request carries, and at the end
//!   counts the request (`sessiond_http_requests_total`,
//!   `sessiond_http_request_duration_seconds`) and writes one access-log line
//!   (target `sessiond::access`).
//! - [`metrics_handle`]: the Prometheus recorder, installed once per process.
//! - [`ROUTES`]: the route templates, the only values the `route` label takes
//!   (never a raw path, so the label stays bounded).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, Method, Request};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};

/// Every route template the server serves (the `route` label's values; any
/// other path is `unmatched`). `tests/observability.rs` checks that each is
/// routed.
pub const ROUTES: &[&str] = &[
    "/",
    "/login",
    "/logout",
    "/api/csrf",
    "/api/profile",
    "/api/session",
    "/api/session/attributes",
    "/api/sessions",
    "/api/sessions/revoke-others",
    "/api/sessions/{id}",
    "/api/password",
    "/api/token",
    "/api/token/refresh",
    "/api/token/revoke",
    "/.well-known/jwks.json",
    "/api/admin/users/{name}/sessions",
    "/api/admin/keys/rotate",
    "/api/public/ping",
    "/assets/app.css",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// Latency buckets (seconds) for every `_seconds` histogram: fine below 10 ms
/// where sessiond lives, coarse up to the 10 s request deadline.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The process's Prometheus recorder, installed on first call. `None` if
/// another recorder was installed first (an embedding application's).
pub fn metrics_handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .ok()?;
            let handle = builder.install_recorder().ok()?;
            describe();
            Some(handle)
        })
        .as_ref()
}

/// Help texts, and zero values for the series alerts and dashboards query,
/// so that "no failed logins yet" is a 0, not a missing series.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "sessiond_http_requests_total",
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        "sessiond_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    describe_gauge!(
        "sessiond_sessions_live",
        "Sessions in the store (including expired ones not yet swept); absent on Redis"
    );
    describe_counter!(
        "sessiond_sessions_created_total",
        "Sessions created (logins and token families)"
    );
    describe_counter!(
        "sessiond_sessions_revoked_total",
        "Sessions ended by logout, revocation, password change or theft detection"
    );
    describe_counter!(
        "sessiond_sessions_expired_total",
        "Expired sessions removed by the sweeper (stores that expire keys themselves do not count)"
    );
    describe_counter!(
        "sessiond_logins_total",
        "Password checks by outcome: success, bad_credentials, throttled"
    );
    describe_counter!(
        "sessiond_tokens_issued_total",
        "Token pairs issued for credentials or a cookie session"
    );
    describe_counter!(
        "sessiond_token_refreshes_total",
        "Refresh-token presentations by outcome: rotated, grace_replay, invalid, reuse_detected"
    );
    describe_counter!(
        "sessiond_bearer_rejections_total",
        "Bearer tokens refused, by reason"
    );
    describe_counter!(
        "sessiond_csrf_rejections_total",
        "Requests refused by the CSRF checks, by reason"
    );
    describe_counter!(
        "sessiond_store_operations_total",
        "Store calls by backend, operation and outcome"
    );
    describe_histogram!(
        "sessiond_store_operation_duration_seconds",
        metrics::Unit::Seconds,
        "Store call latency, retries included"
    );
    describe_counter!(
        "sessiond_store_retries_total",
        "Store call retries after a transient failure"
    );
    describe_gauge!(
        "sessiond_store_breaker_state",
        "Store circuit breaker: 0 closed, 1 half-open, 2 open"
    );
    describe_counter!(
        "sessiond_store_breaker_transitions_total",
        "Circuit breaker state changes, by new state"
    );
    describe_counter!(
        "sessiond_file_cache_hits_total",
        "File store near-cache hits"
    );
    describe_counter!(
        "sessiond_file_cache_misses_total",
        "File store near-cache misses"
    );
    describe_histogram!(
        "sessiond_password_hash_duration_seconds",
        metrics::Unit::Seconds,
        "argon2id hash or verify time, queueing included"
    );
    describe_gauge!("sessiond_build_info", "Always 1; the version is a label");

    metrics::gauge!("sessiond_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for outcome in ["success", "bad_credentials", "throttled"] {
        metrics::counter!("sessiond_logins_total", "outcome" => outcome).increment(0);
    }
    for outcome in ["rotated", "grace_replay", "invalid", "reuse_detected"] {
        metrics::counter!("sessiond_token_refreshes_total", "outcome" => outcome).increment(0);
    }
    for name in [
        "sessiond_sessions_created_total",
        "sessiond_sessions_revoked_total",
        "sessiond_sessions_expired_total",
        "sessiond_tokens_issued_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The request id of a request (in its extensions).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// See the module docs.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: bool,
    access_log: bool,
    routes: Arc<matchit::Router<&'static str>>,
}

impl ObserveLayer {
    /// Counts requests when `metrics`, logs them when `access_log`.
    pub fn new(metrics: bool, access_log: bool) -> Self {
        let mut routes = matchit::Router::new();
        for route in ROUTES {
            // The templates are constants; a clash would be a bug caught by the tests.
            let _ = routes.insert(*route, *route);
        }
        Self {
            metrics,
            access_log,
            routes: Arc::new(routes),
        }
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

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn status_label(status: u16) -> metrics::SharedString {
    let label: &'static str = match status {
        200 => "200",
        201 => "201",
        204 => "204",
        303 => "303",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        429 => "429",
        431 => "431",
        500 => "500",
        503 => "503",
        other => return metrics::SharedString::from(other.to_string()),
    };
    metrics::SharedString::const_str(label)
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

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let started = Instant::now();
        let id: Arc<str> = match req.headers().get(&X_REQUEST_ID).and_then(usable_request_id) {
            Some(id) => id.into(),
            None => new_request_id().into(),
        };
        let route = self
            .layer
            .routes
            .at(req.uri().path())
            .map_or("unmatched", |m| *m.value);
        let method = method_label(req.method());
        let span = if self.layer.access_log {
            let trace = req
                .headers()
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(trace_id);
            let span = tracing::info_span!(
                "request",
                request_id = %id,
                method,
                route,
                trace_id = tracing::field::Empty,
            );
            if let Some(trace) = trace {
                span.record("trace_id", trace);
            }
            crate::telemetry::link_remote_parent(&span, req.headers());
            span
        } else {
            tracing::Span::none()
        };
        req.extensions_mut().insert(RequestId(id.clone()));
        let response = span.in_scope(|| self.inner.call(req));
        let (metrics, access_log) = (self.layer.metrics, self.layer.access_log);
        Box::pin(async move {
            let mut response = tracing::Instrument::instrument(response, span.clone()).await?;
            let elapsed = started.elapsed();
            let status = response.status().as_u16();
            if metrics {
                metrics::counter!(
                    "sessiond_http_requests_total",
                    "route" => route,
                    "method" => method,
                    "status" => status_label(status)
                )
                .increment(1);
                metrics::histogram!(
                    "sessiond_http_request_duration_seconds",
                    "route" => route,
                    "method" => method
                )
                .record(elapsed.as_secs_f64());
            }
            if access_log {
                span.in_scope(|| {
                    tracing::info!(
                        target: "sessiond::access",
                        status,
                        latency_ms = elapsed.as_secs_f64() * 1000.0,
                        "request"
                    );
                });
            }
            if let Ok(v) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(X_REQUEST_ID.clone(), v);
            }
            Ok(response)
        })
    }
}

/// Refreshes gauges that are read rather than counted (live sessions) every
/// `every`, until the returned task is aborted.
pub fn spawn_gauges(store: crate::StoreHandle, every: Duration) -> tokio::task::JoinHandle<()> {
    let backend = store.backend.backend_name();
    // Zero series for the store's retry counter, so the dashboard and alerts
    // see 0 rather than nothing until the first retry.
    for op in [
        "load",
        "renew",
        "delete",
        "list_by_user",
        "delete_by_user",
        "get_user",
    ] {
        metrics::counter!("sessiond_store_retries_total", "backend" => backend, "op" => op)
            .increment(0);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Ok(Some(n)) = store.backend.count().await {
                metrics::gauge!("sessiond_sessions_live").set(n as f64);
            }
            // Also set on every transition; this covers a recorder installed
            // after the store was opened.
            if let Some(state) = store.breaker_state() {
                metrics::gauge!("sessiond_store_breaker_state", "backend" => backend)
                    .set(state.as_gauge());
            }
            if let Some(handle) = metrics_handle() {
                // Drains histogram samples into buckets; without it they pile up between scrapes.
                handle.run_upkeep();
            }
        }
    })
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
    fn every_route_template_is_distinct_and_matchable() {
        let layer = ObserveLayer::new(true, true);
        for route in ROUTES {
            let concrete = route.replace("{id}", "x").replace("{name}", "y");
            assert_eq!(layer.routes.at(&concrete).map(|m| *m.value), Ok(*route));
        }
        assert!(layer.routes.at("/no/such/path").is_err());
    }
}
