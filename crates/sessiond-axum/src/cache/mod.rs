//! [`ResponseCacheLayer`]: a shared HTTP cache (RFC 9111) in front of a
//! service, safe in front of authentication, on any store.
//!
//! The rules that keep one user's answer from reaching another:
//! - Only GET and HEAD are answered from the cache, and only on paths the
//!   classifier calls cacheable ([`CacheRule`]; the gateway: rules that let
//!   anyone in, since the cache answers before the session check).
//! - Never stored: a `Set-Cookie`, `Cache-Control: private` or `no-store`,
//!   `Vary: *`, a status other than a final 2xx (301 and 404 only with
//!   explicit freshness), or an answer to a request carrying credentials
//!   (the session cookie or `Authorization`) unless the rule is public and
//!   the answer says `public` or `s-maxage`. Only such answers are served
//!   to requests with credentials.
//! - The key is the exact target; `Vary`'s request headers are compared on
//!   every hit ([`key`]).
//!
//! Tiers: this node's memory (bounded in bytes), and the store when it is
//! shared between nodes ([`sessiond_core::UserStore::shares_response_cache`]:
//! Redis), so one node's miss fills every node. Freshness comes from the
//! answer (`s-maxage`, `max-age`, `Expires`) or the rule's TTL; `Age` is
//! added.
//!
//! Invalidation: a successful unsafe request bumps generation counters
//! ([`key`]) in the store before its answer leaves, and every lookup reads
//! the counters its entry depends on in the same round trip as the entry:
//! no node serves an entry older than a write that has been answered. A
//! bump the store could not take is kept and retried before this node's
//! next lookup, which bypasses the cache until it lands.
//!
//! Misses for one key go to the application one at a time (request
//! coalescing): the others wait, at most [`ResponseCacheLayer::with_coalesce_wait`],
//! then read the cache again. A store that cannot answer makes the cache
//! step aside (`BYPASS`), never an error.
//!
//! Every GET and HEAD answer says what happened: `X-Cache: HIT | MISS |
//! BYPASS` and `Cache-Status` (RFC 9211) with the reason.

mod body;
mod entry;
mod key;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, header};
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use sessiond_core::{Backend, StoreError};
use tokio::sync::watch;
use tower::{Layer, Service};

use self::body::{Collected, collect_limited};
use self::entry::{Entry, NotStored, Storable, Stored, now_ms, request_directives, storable};
use self::key::{KeyHash, bumped, hash, hex, primary_key, watched};

/// How the cache treats the requests of one path.
#[derive(Debug, Clone)]
pub struct CacheRule {
    /// The rule's name (metrics).
    pub name: Arc<str>,
    /// GET and HEAD may be answered from (and stored in) the cache. Only
    /// for paths anyone may read: the cache answers before authentication.
    pub cacheable: bool,
    /// Anyone may read this path: an answer to a request with credentials
    /// may be stored if it says `public` or `s-maxage`.
    pub public: bool,
    /// Freshness for answers that name none.
    pub ttl: Option<Duration>,
    /// The path as the application understands it (normalised), for
    /// invalidation; `None`: the request's own path.
    pub path: Option<String>,
    /// Subtrees a successful unsafe request here invalidates besides the
    /// path itself and its collection's listing.
    pub invalidate: Arc<[String]>,
}

impl CacheRule {
    /// A cacheable, non-public rule with no TTL of its own.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            cacheable: true,
            public: false,
            ttl: None,
            path: None,
            invalidate: Arc::from([]),
        }
    }
}

type Classify = dyn Fn(&Parts) -> Option<CacheRule> + Send + Sync;

/// (rule, result, reason) of `sessiond_cache_requests_total`.
type CounterKey = (Arc<str>, &'static str, &'static str);

type HitMark = Arc<dyn Fn(&mut http::Extensions) + Send + Sync>;

#[derive(Default)]
struct Marks {
    counters: HashMap<CounterKey, metrics::Counter>,
    statuses: HashMap<(&'static str, bool, Option<&'static str>), HeaderValue>,
}

/// A shared response cache in front of a service. See the
/// [module docs](self). Clones share their cache.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Backend>,
    classify: Box<Classify>,
    local: Cache<KeyHash, Arc<Stored>, ByWeight>,
    /// The generation counters, when the store keeps none (one node).
    generations: Mutex<LocalGenerations>,
    /// Bumps the store has not taken yet.
    pending: Mutex<Vec<String>>,
    flights: Mutex<HashMap<KeyHash, watch::Receiver<()>>>,
    credential_cookies: Vec<String>,
    max_entry_bytes: usize,
    max_ttl: Duration,
    coalesce_wait: Duration,
    last_warning: Mutex<Option<Instant>>,
    /// Counter handles by (rule, result, reason), and the fixed
    /// `Cache-Status` values: registering a labelled counter or formatting
    /// a header on every request costs more than a hit.
    marks: Mutex<Marks>,
    /// Marks the extensions of a hit (see [`ResponseCacheLayer::with_hit_extension`]).
    hit_mark: Option<HitMark>,
    unruled: Arc<str>,
    bytes: metrics::Gauge,
}

#[derive(Clone)]
struct ByWeight;

impl Weighter<KeyHash, Arc<Stored>> for ByWeight {
    fn weight(&self, _: &KeyHash, entry: &Arc<Stored>) -> u64 {
        entry.weight()
    }
}

/// A memory tier of about `max_bytes` (each entry weighs its memory).
fn local_tier(max_bytes: u64) -> Cache<KeyHash, Arc<Stored>, ByWeight> {
    Cache::with_weighter(
        usize::try_from((max_bytes / 1024).max(16)).unwrap_or(1 << 16),
        max_bytes,
        ByWeight,
    )
}

/// Generation counters in this process. Bounded: when full, every counter
/// is forgotten and the epoch (the last value of every read) moves on,
/// which makes every older entry stale at once.
#[derive(Default)]
struct LocalGenerations {
    values: HashMap<String, u64>,
    epoch: u64,
}

const MAX_LOCAL_GENERATIONS: usize = 100_000;

impl LocalGenerations {
    fn read(&self, names: &[String]) -> Vec<u64> {
        let mut out: Vec<u64> = names
            .iter()
            .map(|n| self.values.get(n).copied().unwrap_or(0))
            .collect();
        out.push(self.epoch);
        out
    }

    fn bump(&mut self, names: &[String]) {
        if self.values.len() + names.len() > MAX_LOCAL_GENERATIONS {
            self.values.clear();
            self.epoch += 1;
        }
        for name in names {
            *self.values.entry(name.clone()).or_default() += 1;
        }
    }
}

impl std::fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("max_entry_bytes", &self.shared.max_entry_bytes)
            .field("max_ttl", &self.shared.max_ttl)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer {
    /// A cache on `store` whose rules come from `classify` (`None`: the
    /// path is not cached; unsafe requests still invalidate it). Defaults:
    /// 64 MiB in memory, entries up to 1 MiB, at most an hour fresh, a
    /// coalesced miss waits at most 5 s, the credential cookie is the
    /// session cookie's default name ([`crate::CookieConfig`]).
    pub fn new(
        store: Arc<dyn Backend>,
        classify: impl Fn(&Parts) -> Option<CacheRule> + Send + Sync + 'static,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                classify: Box::new(classify),
                local: local_tier(64 << 20),
                generations: Mutex::default(),
                pending: Mutex::default(),
                flights: Mutex::default(),
                credential_cookies: vec![crate::CookieConfig::default().name],
                max_entry_bytes: 1 << 20,
                max_ttl: Duration::from_secs(3600),
                coalesce_wait: Duration::from_secs(5),
                last_warning: Mutex::default(),
                marks: Mutex::default(),
                hit_mark: None,
                unruled: Arc::from("none"),
                bytes: metrics::gauge!(sessiond_core::metric::CACHE_BYTES),
            }),
        }
    }

    fn edit(mut self, f: impl FnOnce(&mut Shared)) -> Self {
        let shared = Arc::get_mut(&mut self.shared)
            .expect("configure a ResponseCacheLayer before cloning it");
        f(shared);
        self
    }

    /// Bounds this node's memory tier (approximate bytes).
    #[must_use]
    pub fn with_max_bytes(self, bytes: u64) -> Self {
        self.edit(|s| s.local = local_tier(bytes))
    }

    /// Bodies larger than this are not cached.
    #[must_use]
    pub fn with_max_entry_bytes(self, bytes: usize) -> Self {
        self.edit(|s| s.max_entry_bytes = bytes)
    }

    /// No entry stays fresh longer than this, whatever the answer says.
    #[must_use]
    pub fn with_max_ttl(self, ttl: Duration) -> Self {
        self.edit(|s| s.max_ttl = ttl)
    }

    /// How long a miss waits for another request's fetch of the same key.
    #[must_use]
    pub fn with_coalesce_wait(self, wait: Duration) -> Self {
        self.edit(|s| s.coalesce_wait = wait)
    }

    /// The cookies that make a request one with credentials (besides
    /// `Authorization`): the session cookie's names.
    #[must_use]
    pub fn with_credential_cookies(self, names: impl IntoIterator<Item = String>) -> Self {
        self.edit(|s| s.credential_cookies = names.into_iter().collect())
    }

    /// Puts `value` in the extensions of every hit, as the service behind
    /// would have put it in its answer (extensions are not stored).
    #[must_use]
    pub fn with_hit_extension<T: Clone + Send + Sync + 'static>(self, value: T) -> Self {
        self.edit(|s| {
            s.hit_mark = Some(Arc::new(move |ext: &mut http::Extensions| {
                ext.insert(value.clone());
            }));
        })
    }

    /// Entries and bytes in this node's memory tier (tests, metrics).
    pub fn local_usage(&self) -> (usize, u64) {
        (self.shared.local.len(), self.shared.local.weight())
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`ResponseCacheLayer`] makes.
#[derive(Clone)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request<Body>> for ResponseCache<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move { Ok(shared.handle(inner, request).await) })
    }
}

/// What the cache did, for the answer's headers and the metrics.
enum Outcome {
    Hit {
        ttl: u64,
        collapsed: bool,
    },
    Miss {
        fwd: &'static str,
        stored: bool,
        detail: Option<&'static str>,
    },
    Bypass(&'static str),
}

impl Outcome {
    fn mark(&self, shared: &Shared, rule: &Arc<str>, response: &mut Response<Body>) {
        let (x_cache, result, reason) = match self {
            Outcome::Hit { .. } => ("HIT", "hit", "fresh"),
            Outcome::Miss { fwd, detail, .. } => ("MISS", "miss", detail.unwrap_or(fwd)),
            Outcome::Bypass(why) => ("BYPASS", "bypass", *why),
        };
        let status = shared.count(rule, result, reason, self);
        let headers = response.headers_mut();
        headers.insert("x-cache", HeaderValue::from_static(x_cache));
        headers.append("cache-status", status);
        if let Outcome::Hit { .. } = self
            && let Some(mark) = &shared.hit_mark
        {
            mark(response.extensions_mut());
        }
    }

    /// The `Cache-Status` member (RFC 9211) saying what happened.
    fn cache_status(&self) -> String {
        match self {
            Outcome::Hit { ttl, collapsed } => format!(
                "sessiond; hit; ttl={ttl}{}",
                if *collapsed { "; collapsed" } else { "" }
            ),
            Outcome::Miss {
                fwd,
                stored,
                detail,
            } => {
                let mut s = format!("sessiond; fwd={fwd}");
                if *stored {
                    s.push_str("; stored");
                }
                if let Some(d) = detail {
                    s.push_str("; detail=");
                    s.push_str(d);
                }
                s
            }
            Outcome::Bypass(why) => format!("sessiond; fwd=bypass; detail={why}"),
        }
    }

    /// Outcomes whose `Cache-Status` never changes, as a key to keep it by.
    fn fixed(&self) -> Option<(&'static str, bool, Option<&'static str>)> {
        match self {
            Outcome::Hit { .. } => None,
            Outcome::Miss {
                fwd,
                stored,
                detail,
            } => Some((fwd, *stored, *detail)),
            Outcome::Bypass(why) => Some(("bypass", false, Some(why))),
        }
    }
}

/// What a lookup found.
struct Found {
    entry: Option<Arc<Stored>>,
    generations: Vec<u64>,
}

impl Shared {
    async fn handle<S>(self: Arc<Self>, mut inner: S, request: Request<Body>) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    {
        let (parts, body) = request.into_parts();
        let rule = (self.classify)(&parts);
        let head = parts.method == Method::HEAD;
        if parts.method != Method::GET && !head {
            let unsafe_method = !matches!(parts.method, Method::OPTIONS | Method::TRACE);
            let path = rule
                .as_ref()
                .and_then(|r| r.path.clone())
                .unwrap_or_else(|| parts.uri.path().to_owned());
            let extra = rule.map_or_else(|| Arc::from([]), |r| r.invalidate);
            let response = call(&mut inner, Request::from_parts(parts, body)).await;
            let status = response.status();
            if unsafe_method && (status.is_success() || status.is_redirection()) {
                self.invalidate(bumped(&path, &extra)).await;
            }
            return response;
        }
        let Some(rule) = rule.filter(|r| r.cacheable) else {
            let mut response = call(&mut inner, Request::from_parts(parts, body)).await;
            Outcome::Bypass("not-cacheable").mark(&self, &self.unruled, &mut response);
            return response;
        };
        let (reload, no_store) = request_directives(&parts.headers);
        if no_store {
            let mut response = call(&mut inner, Request::from_parts(parts, body)).await;
            Outcome::Bypass("request-no-store").mark(&self, &rule.name, &mut response);
            return response;
        }
        let credentials = self.has_credentials(&parts);
        let key = primary_key(&parts);
        let hash = hash(&key);
        let watched = watched(rule.path.as_deref().unwrap_or(parts.uri.path()));

        let found = match self.lookup(&hash, &watched, !reload).await {
            Ok(found) => found,
            Err(e) => {
                self.warn(
                    &e,
                    "the response cache is bypassed: the store is unavailable",
                );
                let mut response = call(&mut inner, Request::from_parts(parts, body)).await;
                Outcome::Bypass("store-unavailable").mark(&self, &rule.name, &mut response);
                return response;
            }
        };
        if !reload && let Some(hit) = self.hit(&found, &key, &parts, credentials, head, false) {
            return hit.finish(&self, &rule.name);
        }
        // Coalescing: one fetch per key at a time. Requests with
        // credentials or asking to reload fetch on their own.
        let mut generations = found.generations;
        let mut fwd = if reload { "request" } else { "uri-miss" };
        let flight = if reload || credentials {
            None
        } else {
            match self.join_flight(hash) {
                Flight::Leader(guard) => Some(guard),
                Flight::Follower(mut rx) => {
                    let _ = tokio::time::timeout(self.coalesce_wait, rx.changed()).await;
                    match self.lookup(&hash, &watched, true).await {
                        Ok(again) => {
                            if let Some(hit) =
                                self.hit(&again, &key, &parts, credentials, head, true)
                            {
                                return hit.finish(&self, &rule.name);
                            }
                            generations = again.generations;
                            fwd = "miss";
                        }
                        Err(_) => {
                            let mut response =
                                call(&mut inner, Request::from_parts(parts, body)).await;
                            Outcome::Bypass("store-unavailable").mark(
                                &self,
                                &rule.name,
                                &mut response,
                            );
                            return response;
                        }
                    }
                    None
                }
            }
        };
        // What storing needs of the request (not its extensions, which the
        // layers before have filled and which would cost a deep copy).
        let (mut stored_parts, ()) = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone())
            .body(())
            .unwrap_or_default()
            .into_parts();
        stored_parts.headers = parts.headers.clone();
        let response = call(&mut inner, Request::from_parts(parts, body)).await;
        let (mut response, outcome) = self
            .fill(
                key,
                hash,
                &stored_parts,
                response,
                &rule,
                credentials,
                head,
                generations,
                fwd,
            )
            .await;
        drop(flight);
        outcome.mark(&self, &rule.name, &mut response);
        response
    }

    /// Counts the outcome; its `Cache-Status` value.
    fn count(
        &self,
        rule: &Arc<str>,
        result: &'static str,
        reason: &'static str,
        outcome: &Outcome,
    ) -> HeaderValue {
        let mut marks = self.marks.lock().unwrap_or_else(PoisonError::into_inner);
        marks
            .counters
            .entry((rule.clone(), result, reason))
            .or_insert_with(|| {
                metrics::counter!(sessiond_core::metric::CACHE_REQUESTS,
                    "rule" => rule.to_string(), "result" => result, "reason" => reason)
            })
            .increment(1);
        let make = || {
            HeaderValue::from_str(&outcome.cache_status())
                .unwrap_or_else(|_| HeaderValue::from_static("sessiond"))
        };
        match outcome.fixed() {
            Some(key) => marks.statuses.entry(key).or_insert_with(make).clone(),
            None => make(),
        }
    }

    fn has_credentials(&self, parts: &Parts) -> bool {
        parts.headers.contains_key(header::AUTHORIZATION)
            || parts
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.split_once('=').map(|(n, _)| n.trim()))
                .any(|n| self.credential_cookies.iter().any(|c| c == n))
    }

    /// The entry (when `with_entry`) and the current generations, read
    /// together.
    async fn lookup(
        &self,
        hash: &KeyHash,
        watched: &[String],
        with_entry: bool,
    ) -> Result<Found, StoreError> {
        let local = with_entry.then(|| self.local.get(hash)).flatten();
        if !self.store.shares_response_cache() {
            let generations = self
                .generations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .read(watched);
            return Ok(Found {
                entry: local,
                generations,
            });
        }
        self.flush_pending().await?;
        let name = hex(hash);
        let ask = (with_entry && local.is_none()).then_some(name.as_str());
        let mut read = self.store.cache_read(ask, watched).await?;
        // This node's copy is outdated: another node may have stored a
        // newer one (a second round trip, only after a write or expiry).
        let local = local
            .filter(|e| e.entry.generations == read.generations && e.entry.fresh_until > now_ms());
        if with_entry && local.is_none() && ask.is_none() {
            read = self.store.cache_read(Some(&name), watched).await?;
        }
        let entry = match (local, read.entry) {
            (Some(e), _) => Some(e),
            (None, Some(bytes)) => Entry::decode(&bytes).map(|e| {
                let e = Arc::new(Stored::new(e));
                self.local.insert(*hash, e.clone());
                e
            }),
            (None, None) => None,
        };
        Ok(Found {
            entry,
            generations: read.generations,
        })
    }

    fn hit(
        &self,
        found: &Found,
        key: &str,
        parts: &Parts,
        credentials: bool,
        head: bool,
        collapsed: bool,
    ) -> Option<Hit> {
        let stored = found.entry.as_ref()?;
        let entry = &stored.entry;
        let now = now_ms();
        let current = entry.answers(key, parts, now)
            && entry.generations == found.generations
            && (!credentials || entry.for_credentials);
        current.then(|| Hit {
            response: stored.response(head, now),
            outcome: Outcome::Hit {
                ttl: entry.remaining_ttl(now),
                collapsed,
            },
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn fill(
        &self,
        key: String,
        hash: KeyHash,
        parts: &Parts,
        response: Response<Body>,
        rule: &CacheRule,
        credentials: bool,
        head: bool,
        generations: Vec<u64>,
        fwd: &'static str,
    ) -> (Response<Body>, Outcome) {
        let miss = |detail: Option<NotStored>| Outcome::Miss {
            fwd,
            stored: false,
            detail: detail.map(NotStored::detail),
        };
        if head {
            return (response, miss(None));
        }
        let (rparts, body) = response.into_parts();
        let decision = storable(
            parts,
            &rparts,
            credentials,
            rule.public,
            rule.ttl,
            self.max_ttl,
        );
        let storable: Storable = match decision {
            Ok(s) => s,
            Err(why) => return (Response::from_parts(rparts, body), miss(Some(why))),
        };
        let declared = rparts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_entry_bytes as u64) {
            return (
                Response::from_parts(rparts, body),
                miss(Some(NotStored::TooLarge)),
            );
        }
        let bytes = match collect_limited(body, self.max_entry_bytes).await {
            Collected::Whole(bytes) => bytes,
            Collected::Partial(rest) => {
                return (
                    Response::from_parts(rparts, rest),
                    miss(Some(NotStored::TooLarge)),
                );
            }
        };
        let entry = Entry::stored(key, parts, &rparts, bytes.clone(), &storable, generations);
        let stored = self.store_entry(hash, entry, storable.ttl).await;
        let mut response = Response::from_parts(rparts, Body::from(bytes));
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(storable.initial_age));
        (
            response,
            Outcome::Miss {
                fwd,
                stored,
                detail: None,
            },
        )
    }

    async fn store_entry(&self, hash: KeyHash, entry: Stored, ttl: Duration) -> bool {
        let encoded = self
            .store
            .shares_response_cache()
            .then(|| entry.encode())
            .flatten();
        self.local.insert(hash, Arc::new(entry));
        self.bytes.set(self.local.weight() as f64);
        let Some(bytes) = encoded else {
            return true;
        };
        match self.store.cache_write(&hex(&hash), &bytes, ttl).await {
            Ok(()) => true,
            Err(e) => {
                self.warn(
                    &e,
                    "a cached response could not be shared: the store is unavailable",
                );
                false
            }
        }
    }

    /// Bumps `names` before the write's answer leaves.
    async fn invalidate(&self, names: Vec<String>) {
        if !self.store.shares_response_cache() {
            self.generations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .bump(&names);
            metrics::counter!(sessiond_core::metric::CACHE_INVALIDATIONS, "outcome" => "ok")
                .increment(1);
            return;
        }
        // Kept until a retry lands; meanwhile this node's lookups bypass.
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(names);
        let outcome = match self.flush_pending().await {
            Ok(()) => "ok",
            Err(e) => {
                self.warn(&e, "an invalidation is pending: the store is unavailable");
                "failed"
            }
        };
        metrics::counter!(sessiond_core::metric::CACHE_INVALIDATIONS, "outcome" => outcome)
            .increment(1);
    }

    async fn flush_pending(&self) -> Result<(), StoreError> {
        let names: Vec<String> = {
            let pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            if pending.is_empty() {
                return Ok(());
            }
            pending.clone()
        };
        // Kept longer than any entry lives (see `UserStore::cache_invalidate`).
        self.store
            .cache_invalidate(&names, self.max_ttl * 2)
            .await?;
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.retain(|n| !names.contains(n));
        Ok(())
    }

    fn join_flight(self: &Arc<Self>, hash: KeyHash) -> Flight {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = flights.get(&hash) {
            return Flight::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(hash, rx);
        Flight::Leader(FlightGuard {
            shared: self.clone(),
            hash,
            _tx: tx,
        })
    }

    fn warn(&self, error: &StoreError, message: &'static str) {
        let mut last = self
            .last_warning
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(error = %error, "{message}");
        }
    }
}

struct Hit {
    response: Response<Body>,
    outcome: Outcome,
}

impl Hit {
    fn finish(mut self, shared: &Shared, rule: &Arc<str>) -> Response<Body> {
        self.outcome.mark(shared, rule, &mut self.response);
        self.response
    }
}

enum Flight {
    Leader(FlightGuard),
    Follower(watch::Receiver<()>),
}

/// The one fetch of a key in flight; dropping it (done, failed or
/// cancelled) wakes the requests waiting for it.
struct FlightGuard {
    shared: Arc<Shared>,
    hash: KeyHash,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.hash);
    }
}

async fn call<S>(inner: &mut S, request: Request<Body>) -> Response<Body>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
{
    match inner.call(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
