//! The metric catalogue: every metric name sessiond records, with its kind
//! and help text, in one place. Crates record through the `metrics` facade
//! with these constants; the server describes them all from [`CATALOGUE`]
//! when it installs the Prometheus recorder, so a name cannot be recorded
//! in one spelling and documented in another.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Latency buckets, in seconds.
    Histogram,
}

macro_rules! catalogue {
    ($( $(#[$doc:meta])* $name:ident = $value:literal, $kind:ident, $help:literal; )*) => {
        $( $(#[$doc])* pub const $name: &str = $value; )*
        /// Every metric: (name, kind, help).
        pub const CATALOGUE: &[(&str, Kind, &str)] = &[ $( ($value, Kind::$kind, $help) ),* ];
    };
}

catalogue! {
    /// By `route` template, `method`, `status`.
    HTTP_REQUESTS = "sessiond_http_requests_total", Counter,
        "HTTP requests by route template, method and status";
    /// By `route` template and `method`.
    HTTP_REQUEST_DURATION = "sessiond_http_request_duration_seconds", Histogram,
        "HTTP request latency by route template and method";
    /// Set from `SessionStore::count`.
    SESSIONS_LIVE = "sessiond_sessions_live", Gauge,
        "Sessions in the store (including expired ones not yet swept); on Redis an estimate refreshed by a background SCAN";
    /// Recorded by the engine.
    SESSIONS_CREATED = "sessiond_sessions_created_total", Counter,
        "Sessions created (logins and token families)";
    /// Recorded by the engine.
    SESSIONS_REVOKED = "sessiond_sessions_revoked_total", Counter,
        "Sessions ended by logout, revocation, password change or theft detection";
    /// Recorded by sweepers.
    SESSIONS_EXPIRED = "sessiond_sessions_expired_total", Counter,
        "Expired sessions removed by the sweeper (stores that expire keys themselves do not count)";
    /// Recorded by the server's security-event recorder.
    SECURITY_EVENTS_DROPPED = "sessiond_security_events_dropped_total", Counter,
        "Security events not kept in the store's log (the recorder's queue was full or the store refused a batch); the security log target still has them";
    /// By `outcome` ([`LOGIN_OUTCOMES`]).
    LOGINS = "sessiond_logins_total", Counter,
        "Password checks by outcome: success, bad_credentials, throttled, busy";
    /// Token pairs issued.
    TOKENS_ISSUED = "sessiond_tokens_issued_total", Counter,
        "Token pairs issued for credentials or a cookie session";
    /// By `outcome` ([`REFRESH_OUTCOMES`]).
    TOKEN_REFRESHES = "sessiond_token_refreshes_total", Counter,
        "Refresh-token presentations by outcome: rotated, grace_replay, invalid, reuse_detected";
    /// By `reason`.
    BEARER_REJECTIONS = "sessiond_bearer_rejections_total", Counter,
        "Bearer tokens refused, by reason";
    /// By `reason`.
    CSRF_REJECTIONS = "sessiond_csrf_rejections_total", Counter,
        "Requests refused by the CSRF checks, by reason";
    /// By `backend`, `op`, `outcome`.
    STORE_OPERATIONS = "sessiond_store_operations_total", Counter,
        "Store calls by backend, operation and outcome";
    /// By `backend`, `op`.
    STORE_OPERATION_DURATION = "sessiond_store_operation_duration_seconds", Histogram,
        "Store call latency, retries included";
    /// By `backend`, `op` (the retried operations).
    STORE_RETRIES = "sessiond_store_retries_total", Counter,
        "Store call retries after a transient failure";
    /// By `backend`: 0 closed, 1 half-open, 2 open.
    STORE_BREAKER_STATE = "sessiond_store_breaker_state", Gauge,
        "Store circuit breaker: 0 closed, 1 half-open, 2 open";
    /// By `backend`, `to`.
    STORE_BREAKER_TRANSITIONS = "sessiond_store_breaker_transitions_total", Counter,
        "Circuit breaker state changes, by new state";
    /// File store near-cache.
    FILE_CACHE_HITS = "sessiond_file_cache_hits_total", Counter,
        "File store near-cache hits";
    /// File store near-cache.
    FILE_CACHE_MISSES = "sessiond_file_cache_misses_total", Counter,
        "File store near-cache misses";
    /// Redis near-cache, from its running totals.
    REDIS_NEAR_CACHE_HITS = "sessiond_redis_near_cache_hits_total", Counter,
        "Session loads answered from the Redis near-cache";
    /// Redis near-cache.
    REDIS_NEAR_CACHE_MISSES = "sessiond_redis_near_cache_misses_total", Counter,
        "Session loads that went to Redis";
    /// Redis near-cache.
    REDIS_NEAR_CACHE_INVALIDATIONS = "sessiond_redis_near_cache_invalidations_total", Counter,
        "Cached sessions dropped because Redis or this node changed them";
    /// Redis near-cache.
    REDIS_NEAR_CACHE_FLUSHES = "sessiond_redis_near_cache_flushes_total", Counter,
        "Times the near-cache was emptied after a gap in Redis's invalidations";
    /// Redis near-cache.
    REDIS_NEAR_CACHE_ENTRIES = "sessiond_redis_near_cache_entries", Gauge,
        "Sessions held in the Redis near-cache";
    /// Redis near-cache: 1 serving, 0 not (no invalidation stream).
    REDIS_NEAR_CACHE_ARMED = "sessiond_redis_near_cache_armed", Gauge,
        "1 while the near-cache serves (invalidations flowing from every master), else 0";
    /// By `policy` (the rate limit's name).
    RATE_LIMITED = "sessiond_rate_limited_total", Counter,
        "Requests refused with 429 by a rate limit, by policy";
    /// By `policy` and `outcome` (`fail_open`, `fail_closed`).
    RATE_LIMIT_STORE_FAILURES = "sessiond_rate_limit_store_failures_total", Counter,
        "Rate-limit checks the store could not answer, by policy and what was done (fail_open: passed; fail_closed: 503)";
    /// By `rule`, `result` (`hit`, `miss`, `bypass`) and `reason`.
    CACHE_REQUESTS = "sessiond_cache_requests_total", Counter,
        "GET and HEAD requests seen by the response cache, by rule, result (hit, miss, bypass) and reason";
    /// The response cache's node-local tier.
    CACHE_BYTES = "sessiond_cache_bytes", Gauge,
        "Approximate bytes held by this node's response-cache tier";
    /// By `outcome` (`ok`, `failed`).
    CACHE_INVALIDATIONS = "sessiond_cache_invalidations_total", Counter,
        "Invalidations after successful unsafe requests, by outcome (failed: the store could not take them; retried before the next lookup)";
    /// By `op` (`hash`, `verify`).
    PASSWORD_HASH_DURATION = "sessiond_password_hash_duration_seconds", Histogram,
        "argon2id hash or verify time, queueing included";
    /// Lines the access-log writer could not keep up with.
    ACCESS_LOG_DROPPED = "sessiond_access_log_dropped_total", Counter,
        "Access-log lines dropped because the writer fell behind";
    /// Always 1, with a `version` label.
    BUILD_INFO = "sessiond_build_info", Gauge,
        "Always 1; the version is a label";
}

/// The `outcome` values of [`LOGINS`].
pub const LOGIN_OUTCOMES: [&str; 4] = ["success", "bad_credentials", "throttled", "busy"];
/// The `outcome` values of [`TOKEN_REFRESHES`].
pub const REFRESH_OUTCOMES: [&str; 4] = ["rotated", "grace_replay", "invalid", "reuse_detected"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_named_once_with_the_sessiond_prefix_and_its_kinds_suffix() {
        let mut names: Vec<&str> = CATALOGUE.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CATALOGUE.len());
        for (name, kind, help) in CATALOGUE {
            assert!(name.starts_with("sessiond_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            match kind {
                Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
    }
}
