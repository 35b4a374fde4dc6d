//! Prometheus: the recorder, the help texts of the metric catalogue, the
//! cached HTTP metric handles the observe layer records into, and the
//! gauges that are read rather than counted.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sessiond_core::metric::{self, Kind};

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

/// Help texts from the catalogue, and zero values for the series alerts and
/// dashboards query, so that "no failed logins yet" is a 0, not a missing
/// series.
fn describe() {
    for (name, kind, help) in metric::CATALOGUE {
        match kind {
            Kind::Counter => metrics::describe_counter!(*name, *help),
            Kind::Gauge => metrics::describe_gauge!(*name, *help),
            Kind::Histogram => {
                metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
            }
        }
    }
    metrics::gauge!(metric::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    for outcome in metric::LOGIN_OUTCOMES {
        metrics::counter!(metric::LOGINS, "outcome" => outcome).increment(0);
    }
    for outcome in metric::REFRESH_OUTCOMES {
        metrics::counter!(metric::TOKEN_REFRESHES, "outcome" => outcome).increment(0);
    }
    for name in [
        metric::SESSIONS_CREATED,
        metric::SESSIONS_REVOKED,
        metric::SESSIONS_EXPIRED,
        metric::TOKENS_ISSUED,
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The statuses whose counters are cached; others go through the registry.
const STATUSES: [u16; 16] = [
    200, 201, 204, 303, 400, 401, 403, 404, 405, 409, 413, 415, 429, 431, 500, 503,
];
pub(super) const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "OTHER",
];

/// HTTP metric handles, made on first use: building the labelled key and
/// looking it up in the registry on every request cost about 5% of a
/// `GET /api/profile`; a cached handle is one atomic add.
pub(super) struct HttpMetrics {
    /// The route templates (the `route` label's values; index
    /// `routes.len()` is `unmatched`).
    routes: Vec<&'static str>,
    /// By (route, method, status).
    requests: Vec<OnceLock<metrics::Counter>>,
    /// By (route, method).
    durations: Vec<OnceLock<metrics::Histogram>>,
}

impl HttpMetrics {
    pub(super) fn new(routes: Vec<&'static str>) -> Self {
        let slots = routes.len() + 1;
        Self {
            routes,
            requests: (0..slots * METHODS.len() * STATUSES.len())
                .map(|_| OnceLock::new())
                .collect(),
            durations: (0..slots * METHODS.len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }

    pub(super) fn record(&self, route: usize, method: usize, status: u16, elapsed: Duration) {
        let (route_name, method_name) = (route_label(&self.routes, route), METHODS[method]);
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.requests[(route * METHODS.len() + method) * STATUSES.len() + i]
                .get_or_init(|| {
                    metrics::counter!(
                        metric::HTTP_REQUESTS,
                        "route" => route_name,
                        "method" => method_name,
                        "status" => status.to_string()
                    )
                })
                .increment(1),
            None => metrics::counter!(
                metric::HTTP_REQUESTS,
                "route" => route_name,
                "method" => method_name,
                "status" => status.to_string()
            )
            .increment(1),
        }
        self.durations[route * METHODS.len() + method]
            .get_or_init(|| {
                metrics::histogram!(
                    metric::HTTP_REQUEST_DURATION,
                    "route" => route_name,
                    "method" => method_name
                )
            })
            .record(elapsed.as_secs_f64());
    }
}

/// The `route` label of route index `route`: a template, or `unmatched`.
pub(super) fn route_label(routes: &[&'static str], route: usize) -> &'static str {
    routes.get(route).copied().unwrap_or("unmatched")
}

/// Refreshes gauges that are read rather than counted (live sessions) every
/// `every`, until the returned task is aborted.
pub fn spawn_gauges(store: crate::StoreHandle, every: Duration) -> tokio::task::JoinHandle<()> {
    let backend = store.backend.backend_name();
    // Zero series for the store's retry counter, so the dashboard and alerts
    // see 0 rather than nothing until the first retry.
    for op in sessiond_core::retried_operations() {
        metrics::counter!(metric::STORE_RETRIES, "backend" => backend, "op" => op).increment(0);
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Ok(Some(n)) = store.backend.count().await {
                metrics::gauge!(metric::SESSIONS_LIVE).set(n as f64);
            }
            // Also set on every transition; this covers a recorder installed
            // after the store was opened.
            for (scope, state) in store.breaker_states() {
                metrics::gauge!(metric::STORE_BREAKER_STATE, "backend" => backend, "scope" => scope)
                    .set(state.as_gauge());
            }
            if let Some(near) = store.near_cache_stats() {
                metrics::counter!(metric::REDIS_NEAR_CACHE_HITS).absolute(near.hits);
                metrics::counter!(metric::REDIS_NEAR_CACHE_MISSES).absolute(near.misses);
                metrics::counter!(metric::REDIS_NEAR_CACHE_INVALIDATIONS)
                    .absolute(near.invalidations);
                metrics::counter!(metric::REDIS_NEAR_CACHE_FLUSHES).absolute(near.flushes);
                metrics::gauge!(metric::REDIS_NEAR_CACHE_ENTRIES).set(near.entries as f64);
                metrics::gauge!(metric::REDIS_NEAR_CACHE_ARMED)
                    .set(f64::from(u8::from(near.armed)));
            }
            if let Some(handle) = metrics_handle() {
                // Drains histogram samples into buckets; without it they pile up between scrapes.
                handle.run_upkeep();
            }
        }
    })
}
