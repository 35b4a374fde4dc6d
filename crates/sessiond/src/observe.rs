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
        "Sessions in the store (including expired ones not yet swept); on Redis an estimate refreshed by a background SCAN"
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

/// The statuses whose counters are cached; others go through the registry.
const STATUSES: [u16; 16] = [
    200, 201, 204, 303, 400, 401, 403, 404, 405, 409, 413, 415, 429, 431, 500, 503,
];
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
];

/// HTTP metric handles, made on first use: building the labelled key and
/// looking it up in the registry on every request cost about 5% of a
/// `GET /api/profile`; a cached handle is one atomic add.
struct HttpMetrics {
    /// By (route, method, status).
    requests: Vec<OnceLock<metrics::Counter>>,
    /// By (route, method).
    durations: Vec<OnceLock<metrics::Histogram>>,
}

impl HttpMetrics {
    fn new() -> Self {
        let routes = ROUTES.len() + 1;
        Self {
            requests: (0..routes * METHODS.len() * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            durations: (0..routes * METHODS.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    fn route_name(route: usize) -> &'static str {
        ROUTES.get(route).copied().unwrap_or("unmatched")
    }

    fn record(&self, route: usize, method: usize, status: u16, elapsed: Duration) {
        let (route_name, method_name) = (Self::route_name(route), METHODS[method]);
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.requests[(route * METHODS.len() + method) * STATUSES.len() + i]
                .get_or_init(|| {
                    metrics::counter!(
                        "sessiond_http_requests_total",
                        "route" => route_name,
                        "method" => method_name,
                        "status" => status.to_string()
                    )
                })
                .increment(1),
            None => metrics::counter!(
                "sessiond_http_requests_total",
                "route" => route_name,
                "method" => method_name,
                "status" => status.to_string()
            )
            .increment(1),
        }
        self.durations[route * METHODS.len() + method]
            .get_or_init(|| {
                metrics::histogram!(
                    "sessiond_http_request_duration_seconds",
                    "route" => route_name,
                    "method" => method_name
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

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
    /// Route template → index in [`ROUTES`].
    routes: matchit::Router<usize>,
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
    /// request span when `spans` (trace export is on).
    pub fn new(metrics: bool, access_log: Option<AccessLog>, spans: bool) -> Self {
        let mut routes = matchit::Router::new();
        for (i, route) in ROUTES.iter().enumerate() {
            // The templates are constants; a clash would be a bug caught by the tests.
            let _ = routes.insert(*route, i);
        }
        Self {
            state: Arc::new(ObserveState {
                metrics: metrics.then(HttpMetrics::new),
                access_log,
                spans,
                routes,
            }),
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
        let route = state
            .routes
            .at(req.uri().path())
            .map_or(ROUTES.len(), |m| *m.value);
        let method = method_index(req.method());
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
                route = HttpMetrics::route_name(route),
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
                    route: HttpMetrics::route_name(route),
                    status,
                    latency: elapsed,
                    trace,
                });
            }
            response.headers_mut().insert(X_REQUEST_ID.clone(), id);
            Ok(response)
        })
    }
}

/// The wall-clock time of `at`, from one reading of both clocks at start
/// (one `clock_gettime` per request saved).
fn wall_clock(at: Instant) -> std::time::SystemTime {
    static ANCHOR: OnceLock<(Instant, std::time::SystemTime)> = OnceLock::new();
    let (instant, system) = *ANCHOR.get_or_init(|| (Instant::now(), std::time::SystemTime::now()));
    match at.checked_duration_since(instant) {
        Some(since) => system + since,
        None => system - instant.duration_since(at),
    }
}

/// A W3C trace id, 32 hex digits.
type TraceId = [u8; 32];

/// One request, as the access log needs it.
#[derive(Debug)]
pub struct AccessRecord {
    at: std::time::SystemTime,
    id: HeaderValue,
    method: &'static str,
    route: &'static str,
    status: u16,
    latency: Duration,
    trace: Option<TraceId>,
}

/// The access log: one line per request (target `sessiond::access`, in the
/// same text or JSON shape as the other log lines), written by a thread of
/// its own.
///
/// Why not a `tracing` event: formatting and writing a line costs 3-4 µs,
/// about 30% of a `GET /api/profile`, on the request's thread. Here the
/// request hands a small record to a bounded channel (tens of ns) and the
/// writer formats batches and writes each batch with one system call. When
/// the writer falls behind, lines are dropped and counted
/// (`sessiond_access_log_dropped_total`), never waited for.
pub struct AccessLog {
    queue: Arc<LogQueue>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Records waiting for the writer. A plain mutex over a vector: an
/// uncontended lock and a push cost less than a channel send, and the
/// writer takes the whole batch with one swap.
struct LogQueue {
    records: std::sync::Mutex<Vec<AccessRecord>>,
    closed: std::sync::atomic::AtomicBool,
}

/// More queued lines than this and new ones are dropped (and counted).
const MAX_QUEUED: usize = 64 * 1024;

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines to stderr, if `sessiond::access` is enabled at INFO by the
    /// log filter (`SESSIOND_LOG`); `json` picks the JSON shape.
    pub fn stderr(json: bool) -> Option<Self> {
        tracing::enabled!(target: "sessiond::access", tracing::Level::INFO)
            .then(|| Self::to_writer(json, Box::new(std::io::stderr())))
    }

    /// Lines to `out`.
    pub fn to_writer(json: bool, mut out: Box<dyn std::io::Write + Send>) -> Self {
        let queue = Arc::new(LogQueue {
            records: std::sync::Mutex::new(Vec::with_capacity(4096)),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let shared = queue.clone();
        let writer = std::thread::Builder::new()
            .name("sessiond-access-log".into())
            .spawn(move || {
                let mut buf = Vec::with_capacity(64 * 1024);
                let mut batch = Vec::with_capacity(4096);
                // Poll rather than wait on a condition: waking the writer
                // for every line would cost a futex call per request.
                loop {
                    let closed = shared.closed.load(Ordering::Acquire);
                    if let Ok(mut records) = shared.records.lock() {
                        std::mem::swap(&mut *records, &mut batch);
                    }
                    for record in batch.drain(..) {
                        format_line(&mut buf, &record, json);
                        if buf.len() >= 60 * 1024 {
                            let _ = out.write_all(&buf);
                            buf.clear();
                        }
                    }
                    let _ = out.write_all(&buf);
                    let _ = out.flush();
                    buf.clear();
                    if closed {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
            .ok();
        Self { queue, writer }
    }

    fn log(&self, record: AccessRecord) {
        let queued = match self.queue.records.lock() {
            Ok(mut records) if records.len() < MAX_QUEUED => {
                records.push(record);
                true
            }
            _ => false,
        };
        if !queued {
            static DROPPED: OnceLock<metrics::Counter> = OnceLock::new();
            DROPPED
                .get_or_init(|| metrics::counter!("sessiond_access_log_dropped_total"))
                .increment(1);
        }
    }
}

impl Drop for AccessLog {
    /// Writes what is queued before returning.
    fn drop(&mut self) {
        self.queue.closed.store(true, Ordering::Release);
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Appends one line in the shape `tracing-subscriber` uses for its text or
/// JSON output. Every value is plain by construction (validated or generated
/// request id, route templates, hex), so nothing needs escaping. Digits are
/// written by hand: `write!` with a float made formatting the writer's
/// largest cost, on a core the requests share.
fn format_line(buf: &mut Vec<u8>, r: &AccessRecord, json: bool) {
    let id = r.id.as_bytes();
    let micros = u64::try_from(r.latency.as_micros()).unwrap_or(u64::MAX);
    let trace = r.trace.as_ref();
    if json {
        buf.extend_from_slice(br#"{"timestamp":""#);
        push_timestamp(buf, r.at);
        buf.extend_from_slice(br#"","level":"INFO","fields":{"message":"request","status":"#);
        push_digits(buf, u64::from(r.status), 1);
        buf.extend_from_slice(br#","latency_ms":"#);
        push_millis(buf, micros);
        buf.extend_from_slice(br#"},"target":"sessiond::access","span":{"request_id":""#);
        buf.extend_from_slice(id);
        buf.extend_from_slice(br#"","method":""#);
        buf.extend_from_slice(r.method.as_bytes());
        buf.extend_from_slice(br#"","route":""#);
        buf.extend_from_slice(r.route.as_bytes());
        if let Some(t) = trace {
            buf.extend_from_slice(br#"","trace_id":""#);
            buf.extend_from_slice(t);
        }
        buf.extend_from_slice(br#"","name":"request"}}"#);
    } else {
        push_timestamp(buf, r.at);
        buf.extend_from_slice(b"  INFO request{request_id=");
        buf.extend_from_slice(id);
        buf.extend_from_slice(b" method=");
        buf.extend_from_slice(r.method.as_bytes());
        buf.extend_from_slice(b" route=");
        buf.extend_from_slice(r.route.as_bytes());
        if let Some(t) = trace {
            buf.extend_from_slice(b" trace_id=");
            buf.extend_from_slice(t);
        }
        buf.extend_from_slice(b"}: sessiond::access: request status=");
        push_digits(buf, u64::from(r.status), 1);
        buf.extend_from_slice(b" latency_ms=");
        push_millis(buf, micros);
    }
    buf.push(b'\n');
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn push_digits(buf: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n > 0 || digits.len() - i < width {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    buf.extend_from_slice(&digits[i..]);
}

/// Microseconds as milliseconds with three decimals.
fn push_millis(buf: &mut Vec<u8>, micros: u64) {
    push_digits(buf, micros / 1000, 1);
    buf.push(b'.');
    push_digits(buf, micros % 1000, 3);
}

/// `2026-11-24T06:29:06.883813Z`.
fn push_timestamp(buf: &mut Vec<u8>, at: std::time::SystemTime) {
    let since = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    push_digits(buf, year, 4);
    buf.push(b'-');
    push_digits(buf, month, 2);
    buf.push(b'-');
    push_digits(buf, day, 2);
    buf.push(b'T');
    push_digits(buf, rem / 3600, 2);
    buf.push(b':');
    push_digits(buf, rem % 3600 / 60, 2);
    buf.push(b':');
    push_digits(buf, rem % 60, 2);
    buf.push(b'.');
    push_digits(buf, u64::from(since.subsec_micros()), 6);
    buf.push(b'Z');
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

    #[derive(Clone, Default)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn record(n: u64, trace: Option<TraceId>) -> AccessRecord {
        AccessRecord {
            at: std::time::UNIX_EPOCH + Duration::from_micros(1_795_500_000_123_456 + n),
            id: HeaderValue::from_str(&format!("req-{n}")).unwrap(),
            method: "GET",
            route: "/api/sessions/{id}",
            status: 200,
            latency: Duration::from_micros(1234),
            trace,
        }
    }

    #[test]
    fn the_access_log_writes_one_json_line_per_request_in_order() {
        let out = Shared::default();
        let log = AccessLog::to_writer(true, Box::new(out.clone()));
        let trace: TraceId = *b"4bf92f3577b34da6a3ce929d0e0e4736";
        for n in 0..100 {
            log.log(record(n, (n == 7).then_some(trace)));
        }
        drop(log); // flushes
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[0]["timestamp"], "2026-11-24T06:00:00.123456Z");
        assert_eq!(lines[0]["target"], "sessiond::access");
        assert_eq!(lines[0]["fields"]["status"], 200);
        assert_eq!(lines[0]["fields"]["latency_ms"], 1.234);
        assert_eq!(lines[0]["span"]["request_id"], "req-0");
        assert_eq!(lines[0]["span"]["route"], "/api/sessions/{id}");
        assert_eq!(
            lines[7]["span"]["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(lines[99]["span"]["request_id"], "req-99");
    }

    #[test]
    fn the_text_access_log_reads_like_the_other_log_lines() {
        let out = Shared::default();
        let log = AccessLog::to_writer(false, Box::new(out.clone()));
        log.log(record(0, None));
        drop(log);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "2026-11-24T06:00:00.123456Z  INFO request{request_id=req-0 method=GET route=/api/sessions/{id}}: sessiond::access: request status=200 latency_ms=1.234\n"
        );
    }

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
        let layer = ObserveLayer::new(true, None, false);
        for (i, route) in ROUTES.iter().enumerate() {
            let concrete = route.replace("{id}", "x").replace("{name}", "y");
            assert_eq!(layer.state.routes.at(&concrete).map(|m| *m.value), Ok(i));
        }
        assert!(layer.state.routes.at("/no/such/path").is_err());
    }
}
