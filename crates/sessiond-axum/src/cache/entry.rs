//! A cached response, the rules for storing one, and the answer built from
//! it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode};
use http_cache_semantics::{CacheOptions, CachePolicy};
use serde::{Deserialize, Serialize};

/// One stored response. Serialised (postcard) for the shared tier; in the
/// memory tier its headers and body live in [`Stored`] instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entry {
    /// The request target it answers ([`super::key::primary_key`]).
    pub key: String,
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Unix ms when it was received from the application.
    pub stored_at: u64,
    /// Unix ms after which it is stale.
    pub fresh_until: u64,
    /// The `Age` it already had when received, seconds.
    pub initial_age: u64,
    /// The request headers named by `Vary` and their values then.
    pub vary: Vec<(String, Option<Vec<u8>>)>,
    /// Its generation counters' values, read before the application was
    /// asked (so that a write racing the fill leaves it stale).
    pub generations: Vec<u64>,
    /// The response said `public` or `s-maxage`: it may answer requests
    /// that carry credentials.
    pub for_credentials: bool,
}

/// Why a response was not stored (the `detail` of `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    Status,
    SetCookie,
    Vary,
    Credentials,
    Uncacheable,
    NoFreshness,
    TooLarge,
}

impl NotStored {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            NotStored::Status => "status",
            NotStored::SetCookie => "set-cookie",
            NotStored::Vary => "vary-star",
            NotStored::Credentials => "credentials",
            NotStored::Uncacheable => "uncacheable",
            NotStored::NoFreshness => "no-freshness",
            NotStored::TooLarge => "too-large",
        }
    }
}

/// What the application's answer allows: for how long it may be stored.
pub(crate) struct Storable {
    pub ttl: Duration,
    pub initial_age: u64,
    pub for_credentials: bool,
}

/// RFC 9111 for a shared cache (through `http-cache-semantics`), and the
/// rules of a cache in front of authentication on top.
pub(crate) fn storable(
    request: &Parts,
    response: &http::response::Parts,
    credentials: bool,
    public_rule: bool,
    rule_ttl: Option<Duration>,
    max_ttl: Duration,
) -> Result<Storable, NotStored> {
    let status = response.status.as_u16();
    let directives = cache_control(&response.headers);
    let explicit = directives
        .iter()
        .any(|d| d.starts_with("max-age") || d.starts_with("s-maxage"))
        || response.headers.contains_key(header::EXPIRES);
    let ok_status = (200..300).contains(&status) && status != 206;
    if !(ok_status || (matches!(status, 301 | 404) && explicit)) {
        return Err(NotStored::Status);
    }
    if response.headers.contains_key(header::SET_COOKIE) {
        return Err(NotStored::SetCookie);
    }
    if response.headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .map_or(true, |v| v.split(',').any(|n| n.trim() == "*"))
    }) {
        return Err(NotStored::Vary);
    }
    let shared = directives
        .iter()
        .any(|d| d == "public" || d.starts_with("s-maxage"));
    if credentials && !(public_rule && shared) {
        return Err(NotStored::Credentials);
    }
    if directives
        .iter()
        .any(|d| d == "no-store" || d == "private" || d.starts_with("private=") || d == "no-cache")
    {
        return Err(NotStored::Uncacheable);
    }
    if !explicit && rule_ttl.is_none() && !directives.iter().any(|d| d == "public") {
        // Nothing says for how long: not stored, whatever else holds.
        return Err(NotStored::NoFreshness);
    }
    let policy = CachePolicy::new_options(
        request,
        response,
        SystemTime::now(),
        CacheOptions {
            shared: true,
            // No guessing from Last-Modified: freshness is what the
            // application or the operator said.
            cache_heuristic: 0.0,
            ..CacheOptions::default()
        },
    );
    // No revalidation here: what must be revalidated is not kept.
    if !policy.is_storable() || directives.iter().any(|d| d == "no-cache") {
        return Err(NotStored::Uncacheable);
    }
    let ttl = if explicit {
        policy.time_to_live(SystemTime::now())
    } else {
        rule_ttl.unwrap_or_default()
    };
    if ttl.is_zero() {
        return Err(NotStored::NoFreshness);
    }
    Ok(Storable {
        ttl: ttl.min(max_ttl),
        initial_age: policy.age(SystemTime::now()).as_secs(),
        for_credentials: shared,
    })
}

fn cache_control(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| d.trim().to_ascii_lowercase())
        .collect()
}

/// Whether the request asks not to be answered from a cache (`no-cache`,
/// `max-age=0`, `Pragma: no-cache`), and whether it forbids storing.
pub(crate) fn request_directives(headers: &HeaderMap) -> (bool, bool) {
    let cc = cache_control(headers);
    let no_store = cc.iter().any(|d| d == "no-store");
    let reload = cc.iter().any(|d| d == "no-cache" || d == "max-age=0")
        || (cc.is_empty()
            && headers
                .get(header::PRAGMA)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("no-cache")));
    (reload, no_store)
}

/// Headers never stored: per-connection ones, and those the cache sets.
fn kept(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "age"
            | "x-cache"
    )
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Entry {
    /// The entry for `response` (to `request`), ready for the memory tier.
    pub(crate) fn stored(
        key: String,
        request: &Parts,
        response: &http::response::Parts,
        body: Bytes,
        storable: &Storable,
        generations: Vec<u64>,
    ) -> Stored {
        let vary = response
            .headers
            .get_all(header::VARY)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .map(|n| {
                let value = vary_value(&request.headers, &n);
                (n, value)
            })
            .collect();
        let stored_at = now_ms();
        let mut headers = HeaderMap::with_capacity(response.headers.len() + 3);
        for (n, v) in &response.headers {
            // Copied, not shared: a parsed value points into the buffer its
            // whole answer was read into, which it would keep alive.
            if kept(n)
                && let Ok(v) = HeaderValue::from_bytes(v.as_bytes())
            {
                headers.append(n.clone(), v);
            }
        }
        let entry = Self {
            key,
            status: response.status.as_u16(),
            headers: Vec::new(),
            body: Vec::new(),
            stored_at,
            fresh_until: stored_at
                .saturating_add(u64::try_from(storable.ttl.as_millis()).unwrap_or(u64::MAX)),
            initial_age: storable.initial_age,
            vary,
            generations,
            for_credentials: storable.for_credentials,
        };
        Stored {
            status: response.status,
            entry,
            headers,
            body,
        }
    }

    /// Whether it answers this request: same target, the `Vary` headers
    /// as they were, and still fresh.
    pub(crate) fn answers(&self, key: &str, request: &Parts, now: u64) -> bool {
        self.key == key
            && now < self.fresh_until
            && self
                .vary
                .iter()
                .all(|(name, value)| vary_value(&request.headers, name) == *value)
    }

    pub(crate) fn remaining_ttl(&self, now: u64) -> u64 {
        self.fresh_until.saturating_sub(now) / 1000
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// An entry as the memory tier keeps it: its answer ready to send (the
/// header map built once, the body shared, not copied, by every hit).
pub(crate) struct Stored {
    pub entry: Entry,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Stored {
    pub(crate) fn new(mut entry: Entry) -> Self {
        let body = Bytes::from(std::mem::take(&mut entry.body));
        let wire_headers = std::mem::take(&mut entry.headers);
        let mut headers = HeaderMap::with_capacity(wire_headers.len() + 3);
        for (name, value) in &wire_headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                headers.append(n, v);
            }
        }
        Self {
            status: StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK),
            entry,
            headers,
            body,
        }
    }

    /// About how much memory it holds, allocator and map overheads
    /// included (measured: the process's resident size grows by about
    /// `max_bytes` when the memory tier is full of small answers).
    pub(crate) fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 160)
            .sum();
        let vary: usize = self
            .entry
            .vary
            .iter()
            .map(|(n, v)| n.len() + v.as_ref().map_or(0, Vec::len) + 64)
            .sum();
        (self.body.len() + headers + vary + 2 * self.entry.key.len() + 1024) as u64
    }

    /// The shared tier's form.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let mut wire = self.entry.clone();
        wire.headers = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        wire.body = self.body.to_vec();
        postcard::to_stdvec(&wire).ok()
    }

    pub(crate) fn response(&self, head_only: bool, now: u64) -> Response<Body> {
        let body = if head_only {
            Body::empty()
        } else {
            Body::from(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers.clone();
        let e = &self.entry;
        let age = e.initial_age + now.saturating_sub(e.stored_at) / 1000;
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age));
        response
    }
}

/// A request header's value(s) as `Vary` compares them.
fn vary_value(headers: &HeaderMap, name: &str) -> Option<Vec<u8>> {
    let mut values = headers.get_all(name).iter();
    let first = values.next()?;
    let mut joined = first.as_bytes().to_vec();
    for v in values {
        joined.extend_from_slice(b", ");
        joined.extend_from_slice(v.as_bytes());
    }
    Some(joined)
}
