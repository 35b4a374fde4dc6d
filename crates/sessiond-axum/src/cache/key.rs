//! What a cached response is filed under, and which generation counters
//! decide whether it is still current.
//!
//! - The **key** is the request's exact target (scheme, host, raw path,
//!   query with its pairs sorted): two spellings of one path get two
//!   entries, never one entry for what the application might answer
//!   differently. The request headers named by the response's `Vary` are
//!   part of the entry and compared on every hit.
//! - The **generations** follow the path's segments (normalised by the
//!   caller where it can, so every spelling of a path is invalidated
//!   together): `t:/a`, `t:/a/b` (the subtrees the path is in), `t:/` and
//!   `e:/a/b` (the path exactly). A write to `/a/b` bumps `t:/a/b` (the
//!   path and everything under it) and `e:/a` (its collection's listing);
//!   an operator's invalidation prefix `/a` bumps `t:/a`. An entry read
//!   with an older value of any of its counters is stale.

use http::request::Parts;
use sha2::{Digest, Sha256};

/// The hash an entry is filed under (local tier and shared tier).
pub(crate) type KeyHash = [u8; 32];

/// The request target a GET or HEAD is answered for, as text (also kept in
/// the entry, so a hash collision could never serve the wrong one).
pub(crate) fn primary_key(parts: &Parts) -> String {
    let scheme = parts.uri.scheme_str().unwrap_or("http");
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(http::uri::Authority::as_str))
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut key = format!("GET {scheme}://{host}{}", parts.uri.path());
    if let Some(query) = normal_query(parts.uri.query()) {
        key.push('?');
        key.push_str(&query);
    }
    key
}

/// The query with its pairs in a stable order (`b=2&a=1` and `a=1&b=2` are
/// one resource to nearly every application) and empty pairs dropped.
/// Pairs keep their raw bytes: decoding could merge what the application
/// tells apart.
fn normal_query(query: Option<&str>) -> Option<String> {
    let mut pairs: Vec<&str> = query?.split('&').filter(|p| !p.is_empty()).collect();
    if pairs.is_empty() {
        return None;
    }
    // Stable: repeated names keep their order (`a=1&a=2` is a list).
    pairs.sort_by(|x, y| name(x).cmp(name(y)));
    Some(pairs.join("&"))
}

fn name(pair: &str) -> &str {
    pair.split_once('=').map_or(pair, |(n, _)| n)
}

pub(crate) fn hash(key: &str) -> KeyHash {
    Sha256::digest(key.as_bytes()).into()
}

/// The shared tier's name for an entry.
pub(crate) fn hex(hash: &KeyHash) -> String {
    use std::fmt::Write as _;
    hash.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The segments of `path`, ignoring empty ones (`//a/` is `/a`).
fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The counters an entry for `path` depends on.
pub(crate) fn watched(path: &str) -> Vec<String> {
    let mut names = vec!["t:/".to_owned()];
    let mut prefix = String::new();
    for segment in segments(path) {
        prefix.push('/');
        prefix.push_str(segment);
        names.push(format!("t:{prefix}"));
    }
    names.push(format!(
        "e:{}",
        if prefix.is_empty() { "/" } else { &prefix }
    ));
    names
}

/// The counters a successful write to `path` bumps, with the operator's
/// extra invalidation prefixes.
pub(crate) fn bumped(path: &str, extra: &[String]) -> Vec<String> {
    let all: Vec<&str> = segments(path).collect();
    let join = |s: &[&str]| format!("/{}", s.join("/"));
    let mut names = vec![format!("t:{}", join(&all))];
    if let Some((_, parent)) = all.split_last() {
        names.push(format!("e:{}", join(parent)));
    }
    for prefix in extra {
        let segs: Vec<&str> = segments(prefix).collect();
        names.push(format!("t:{}", join(&segs)));
    }
    names.sort();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, host: &str) -> Parts {
        let (parts, ()) = http::Request::get(uri)
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn a_key_names_host_path_and_sorted_query_and_keeps_spellings_apart() {
        assert_eq!(
            primary_key(&parts("/a?b=2&&a=1&a=0", "Example.COM")),
            "GET http://example.com/a?a=1&a=0&b=2"
        );
        assert_ne!(
            primary_key(&parts("/a/%62", "h")),
            primary_key(&parts("/a/b", "h"))
        );
        assert_ne!(
            primary_key(&parts("/a", "h1")),
            primary_key(&parts("/a", "h2"))
        );
        assert_eq!(primary_key(&parts("/a?", "h")), "GET http://h/a");
    }

    #[test]
    fn a_write_invalidates_its_subtree_and_its_collection_listing_only() {
        let write = bumped("/items/5", &[]);
        assert_eq!(write, ["e:/items", "t:/items/5"]);
        let hits = |path: &str| watched(path).iter().any(|g| write.contains(g));
        assert!(hits("/items/5"));
        assert!(hits("/items/5/comments"));
        assert!(hits("/items"));
        assert!(!hits("/items/6"));
        assert!(!hits("/"));
        assert!(!hits("/other"));
    }

    #[test]
    fn an_operator_prefix_invalidates_everything_under_it() {
        let write = bumped("/api/orders", &["/api/".into()]);
        let hits = |path: &str| watched(path).iter().any(|g| write.contains(g));
        assert!(hits("/api/products/1"));
        assert!(!hits("/static/app.js"));
        assert!(bumped("/", &[]).contains(&"t:/".to_owned()));
        assert!(watched("/").contains(&"e:/".to_owned()));
    }
}
