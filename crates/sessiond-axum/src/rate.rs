//! [`RateLimitLayer`]: per-key rate limits (GCRA, `sessiond_core::rate`) in
//! front of a service, on any store.
//!
//! The layer asks a classifier which limit a request falls under (a policy
//! name, a key such as the client's address or user, and a rate), then the
//! store: a store that shares limits between nodes (Redis: one script call)
//! answers; one that does not (memory, file: one node) leaves it to an
//! in-process limiter with the same arithmetic.
//!
//! - Over the limit: 429 `rate_limited` with `Retry-After`.
//! - Every limited response carries `RateLimit-Policy` and `RateLimit`
//!   (IETF HTTPAPI draft: `"policy";q=limit;w=period` and
//!   `"policy";r=remaining;t=seconds-to-reset`).
//! - Store down: the request passes (fail open, the default: a rate limit
//!   is not worth an outage), counted and logged at most once a minute; or
//!   503 `store_unavailable` with [`RateLimitLayer::with_fail_closed`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request};
use sessiond_core::{Backend, LocalRates, Rate, RateOutcome};
use tower::{Layer, Service};

use crate::error::{ApiError, ErrorCode};

/// The limit one request falls under.
#[derive(Debug, Clone)]
pub struct Limit {
    /// The policy's name (metrics, headers); keys are counted per policy.
    pub policy: Arc<str>,
    /// Whose budget: a client address, a user, or one for the whole policy.
    pub key: String,
    /// The rate.
    pub rate: Rate,
}

type Classify = dyn Fn(&Request<Body>) -> Option<Limit> + Send + Sync;

/// Rate limits in front of a service. See the [module docs](self).
/// Clones share their limits.
#[derive(Clone)]
pub struct RateLimitLayer {
    store: Arc<dyn Backend>,
    local: Arc<LocalRates>,
    classify: Arc<Classify>,
    fail_closed: bool,
    last_warning: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("fail_closed", &self.fail_closed)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    /// Limits on `store`; `classify` says which limit a request falls
    /// under (`None`: not limited).
    pub fn new(
        store: Arc<dyn Backend>,
        classify: impl Fn(&Request<Body>) -> Option<Limit> + Send + Sync + 'static,
    ) -> Self {
        Self {
            store,
            local: Arc::new(LocalRates::new()),
            classify: Arc::new(classify),
            fail_closed: false,
            last_warning: Arc::default(),
        }
    }

    /// With the store down, answer 503 instead of letting requests pass.
    #[must_use]
    pub fn with_fail_closed(mut self, fail_closed: bool) -> Self {
        self.fail_closed = fail_closed;
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            shared: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] makes.
#[derive(Clone)]
pub struct RateLimited<S> {
    inner: S,
    shared: RateLimitLayer,
}

impl RateLimitLayer {
    /// One request against `limit`, for limits a handler or extractor
    /// decides itself (a service key's own rate): `Ok` to go on, with the
    /// outcome for the `RateLimit` headers (`None`: the store could not
    /// say and the request passes); `Err` with the answer that refuses it
    /// (429 `rate_limited` with `Retry-After`, or 503 when failing closed).
    pub async fn enforce(&self, limit: &Limit) -> Result<Option<RateOutcome>, Response> {
        match self.check(limit).await? {
            Some(o) if !o.allowed => {
                metrics::counter!(sessiond_core::metric::RATE_LIMITED, "policy" => limit.policy.to_string())
                    .increment(1);
                let secs = o.retry_after.as_secs_f64().ceil().max(1.0) as u64;
                let mut response = ApiError::from(ErrorCode::RateLimited)
                    .with_retry_after(secs)
                    .into_response();
                headers(&mut response, limit, &o);
                Err(response)
            }
            outcome => Ok(outcome),
        }
    }

    /// The outcome for `limit`, or `None` when the store could not say and
    /// the request is let through.
    async fn check(&self, limit: &Limit) -> Result<Option<RateOutcome>, Response> {
        let key = format!("{}:{}", limit.policy, limit.key);
        match self.store.rate_step(&key, &limit.rate).await {
            Ok(Some(outcome)) => Ok(Some(outcome)),
            Ok(None) => Ok(Some(self.local.step(&key, &limit.rate))),
            Err(e) => {
                let outcome = if self.fail_closed {
                    "fail_closed"
                } else {
                    "fail_open"
                };
                metrics::counter!(sessiond_core::metric::RATE_LIMIT_STORE_FAILURES,
                    "policy" => limit.policy.to_string(), "outcome" => outcome)
                .increment(1);
                let mut last = self
                    .last_warning
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    *last = Some(Instant::now());
                    tracing::warn!(error = %e, policy = %limit.policy, outcome, "rate limits cannot be checked: the store is unavailable");
                }
                if self.fail_closed {
                    Err(ApiError::store_unavailable().into_response())
                } else {
                    Ok(None)
                }
            }
        }
    }
}

fn headers(response: &mut Response, limit: &Limit, o: &RateOutcome) {
    let policy = format!(
        "\"{}\";q={};w={}",
        limit.policy,
        limit.rate.limit,
        limit.rate.period.as_secs().max(1)
    );
    let state = format!(
        "\"{}\";r={};t={}",
        limit.policy,
        o.remaining,
        o.reset.as_secs_f64().ceil() as u64
    );
    let h = response.headers_mut();
    for (name, value) in [("ratelimit-policy", policy), ("ratelimit", state)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
}

impl<S> Service<Request<Body>> for RateLimited<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let Some(limit) = (self.shared.classify)(&req) else {
            return Box::pin(self.inner.call(req));
        };
        // The ready service goes into the future; a fresh clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            match shared.enforce(&limit).await {
                Err(refusal) => Ok(refusal),
                Ok(Some(o)) => {
                    let mut response = inner.call(req).await?;
                    headers(&mut response, &limit, &o);
                    Ok(response)
                }
                Ok(None) => inner.call(req).await,
            }
        })
    }
}
