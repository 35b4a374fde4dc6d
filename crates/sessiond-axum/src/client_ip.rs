//! The client's address: the socket's peer, unless that peer is a proxy
//! the operator trusts, in which case the hop that proxy reports.
//!
//! [`ClientIpLayer`] resolves it once per request and puts a [`ClientIp`] in
//! the extensions; everything that needs the address (login throttling,
//! session metadata, the access log) reads it with [`ClientIp::of`], so they
//! all agree. Forwarded headers are believed only from trusted peers, and
//! only the one header the proxy is configured to set: a client can write
//! any `X-Forwarded-For` it likes, so the address taken is the rightmost hop
//! that is not itself a trusted proxy (the one the last trusted proxy saw).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, FromRequestParts};
use http::request::Parts;
use http::{HeaderMap, Request};
use ipnet::IpNet;
use tower::{Layer, Service};

use crate::error::ApiError;

/// The resolved client address of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address from the extensions: the resolved one, or the
    /// socket's peer when no [`ClientIpLayer`] runs.
    pub fn of(extensions: &http::Extensions) -> Option<IpAddr> {
        extensions.get::<ClientIp>().map(|c| c.0).or_else(|| {
            extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        ClientIp::of(&parts.extensions)
            .map(ClientIp)
            .ok_or_else(|| {
                tracing::error!("no client address: serve with connect info");
                ApiError::internal()
            })
    }
}

/// Which header a trusted proxy reports the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, most load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// The rule: which peers are proxies, and which header they set.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Proxies in `nets` reporting clients in `header`.
    pub fn new(nets: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self { nets, header }
    }

    /// Whether `ip` is one of the trusted proxies (an IPv4-mapped IPv6
    /// address counts as the IPv4 address it is).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        // Walk the hops from the nearest: each trusted proxy vouches for the
        // hop before it; the first hop that is not a trusted proxy is the
        // client. A hop that is not an address (`unknown`, an obfuscated
        // name, garbage) ends the walk at the last address known.
        let mut client = peer;
        for hop in self.hops(headers).into_iter().rev() {
            match hop {
                Some(ip) if self.trusts(ip) => client = ip,
                Some(ip) => return ip,
                None => return client,
            }
        }
        client
    }

    /// The hops the configured header lists, client first; `None` for an
    /// entry that is not an address.
    fn hops(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let name = match self.header {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        };
        let mut hops = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for entry in text.split(',') {
                hops.push(match self.header {
                    ForwardedHeader::XForwardedFor => parse_hop(entry),
                    ForwardedHeader::Forwarded => forwarded_for(entry).and_then(parse_hop),
                });
            }
        }
        hops
    }
}

/// The `for=` value of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then_some(value.trim())
    })
}

/// An address from a hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally quoted.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim().trim_matches('"');
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = hop.strip_prefix('[')?.split(']').next()?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket
/// reports) compared as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Resolves the client address of every request; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct ClientIpLayer {
    proxies: Arc<TrustedProxies>,
}

impl ClientIpLayer {
    /// Trusts no proxy: the client is the socket's peer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Believes `header` from peers in `nets`.
    ///
    /// # Warning
    /// List only your own proxies, and make sure they set (not just pass
    /// on) the header: a trusted peer's header decides the address that
    /// login throttling counts.
    #[must_use]
    pub fn with_trusted_proxies(mut self, nets: Vec<IpNet>, header: ForwardedHeader) -> Self {
        self.proxies = Arc::new(TrustedProxies::new(nets, header));
        self
    }
}

impl<S> Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            proxies: self.proxies.clone(),
        }
    }
}

/// The service [`ClientIpLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    proxies: Arc<TrustedProxies>,
}

impl<S, B> Service<Request<B>> for ClientIpService<S>
where
    S: Service<Request<B>, Error = Infallible>,
{
    type Response = S::Response;
    type Error = Infallible;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(peer) = req.extensions().get::<ConnectInfo<SocketAddr>>() {
            let client = self.proxies.client_ip(peer.0.ip(), req.headers());
            req.extensions_mut().insert(ClientIp(client));
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(name: &'static str, values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_static(v));
        }
        h
    }

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            header,
        )
    }

    #[test]
    fn an_untrusted_peers_forwarded_headers_are_ignored() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        let spoofed = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(
            p.client_ip(ip("198.51.100.7"), &spoofed),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn the_rightmost_hop_that_is_not_a_trusted_proxy_is_the_client() {
        let p = proxies(ForwardedHeader::XForwardedFor);
        // The client wrote the first entry itself; nginx appended the real one.
        let h = headers("x-forwarded-for", &["1.1.1.1, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.7"));
        assert_eq!(
            p.client_ip(
                ip("10.0.0.1"),
                &headers("x-forwarded-for", &["[2001:db8::1]:4711"])
            ),
            ip("2001:db8::1")
        );
        // Only proxies listed: the leftmost one vouched for is the last address known.
        let h = headers("x-forwarded-for", &["unknown, 10.0.0.3"]);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.3"));
        assert_eq!(
            p.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        assert_eq!(
            p.client_ip(
                ip("::ffff:10.0.0.1"),
                &headers("x-forwarded-for", &["192.0.2.4"])
            ),
            ip("192.0.2.4"),
            "a v4-mapped peer is the v4 proxy it is"
        );
    }

    #[test]
    fn forwarded_is_read_only_when_it_is_the_configured_header() {
        let h = headers(
            "forwarded",
            &["for=192.0.2.60;proto=http, for=\"[2001:db8:cafe::17]:4711\""],
        );
        let p = proxies(ForwardedHeader::Forwarded);
        assert_eq!(p.client_ip(ip("10.0.0.1"), &h), ip("2001:db8:cafe::17"));
        let xff = proxies(ForwardedHeader::XForwardedFor);
        assert_eq!(xff.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }
}
