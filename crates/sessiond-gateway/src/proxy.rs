//! The built-in reverse proxy: forwards a request the access rules allowed
//! to the application, and its answer back, without buffering either body.
//!
//! - One pooled HTTP/1.1 client per upstream (hyper-util's), keep-alive.
//! - Hop-by-hop headers (RFC 9110 §7.6.1: `Connection` and what it names,
//!   `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`,
//!   `Proxy-*`) are dropped both ways, except an `Upgrade` the client asked
//!   for: a WebSocket (or other upgrade) is handed over to the application
//!   as a raw byte stream once it answers `101`.
//! - `X-Forwarded-For` gets the peer appended, and is only kept from a
//!   trusted peer; `X-Forwarded-Proto` and `-Host` are set here, never
//!   copied from an untrusted client.
//! - A refused or broken connection is [`ProxyError::Unreachable`] (502); no
//!   answer head within the timeout is [`ProxyError::Timeout`] (504).
//!
//! What the application must not see (sessiond's cookies, forged identity
//! headers) is removed by the caller, which knows the names.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Why a request could not be proxied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The upstream URL is not `http://host[:port][/path]`.
    #[error("invalid upstream URL {0:?}: http://host[:port][/prefix] expected")]
    Upstream(String),
    /// The application could not be reached, or broke the connection.
    #[error("the application could not be reached")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The application sent no answer head in time.
    #[error("the application did not answer within {0:?}")]
    Timeout(Duration),
}

/// How the client reached the proxy.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The immediate peer's address.
    pub peer: std::net::IpAddr,
    /// Whether the peer is a trusted proxy (its `X-Forwarded-For` is kept).
    pub trusted_peer: bool,
    /// `http` or `https`, as the client used it.
    pub proto: &'static str,
}

/// One application behind the gateway.
#[derive(Clone)]
pub struct Upstream<B> {
    client: Client<HttpConnector, B>,
    scheme_authority: (http::uri::Scheme, http::uri::Authority),
    prefix: String,
    timeout: Duration,
}

impl<B> std::fmt::Debug for Upstream<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("authority", &self.scheme_authority.1)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drops the hop-by-hop headers, and `Upgrade` unless `keep_upgrade`.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .filter(|n| !(keep_upgrade && *n == header::UPGRADE))
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
}

fn wants_upgrade<T>(req: &Request<T>) -> bool {
    req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

impl<B> Upstream<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A pooled client for `url` (`http://127.0.0.1:3000`, optionally with
    /// a path prefix), giving up on an answer head after `timeout`.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, ProxyError> {
        let bad = || ProxyError::Upstream(url.to_owned());
        let uri: Uri = url.parse().map_err(|_| bad())?;
        let (Some(scheme), Some(authority)) = (uri.scheme().cloned(), uri.authority().cloned())
        else {
            return Err(bad());
        };
        if scheme != http::uri::Scheme::HTTP || uri.query().is_some() {
            return Err(bad());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self {
            client,
            scheme_authority: (scheme, authority),
            prefix: uri.path().trim_end_matches('/').to_owned(),
            timeout,
        })
    }

    /// Sends `req` to the application and returns its answer, streaming.
    pub async fn forward(
        &self,
        mut req: Request<B>,
        forwarded: &Forwarded,
    ) -> Result<Response<Incoming>, ProxyError> {
        let upgrade = wants_upgrade(&req);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let uri = Uri::builder()
            .scheme(self.scheme_authority.0.clone())
            .authority(self.scheme_authority.1.clone())
            .path_and_query(format!("{}{path}", self.prefix))
            .build()
            .map_err(|_| ProxyError::Upstream(path.to_owned()))?;
        let host = req.headers().get(header::HOST).cloned();
        *req.uri_mut() = uri;
        *req.version_mut() = http::Version::HTTP_11;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers, upgrade);
        if upgrade {
            headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
        set_forwarded(headers, forwarded, host);

        let mut response = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ProxyError::Timeout(self.timeout))?
            .map_err(ProxyError::Unreachable)?;
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let (mut client, mut upstream) =
                            (TokioIo::new(client), TokioIo::new(upstream));
                        if let Err(e) =
                            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                        {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            return Ok(response);
        }
        strip_hop_by_hop(response.headers_mut(), false);
        Ok(response)
    }
}

fn set_forwarded(headers: &mut HeaderMap, f: &Forwarded, host: Option<HeaderValue>) {
    let chain = f
        .trusted_peer
        .then(|| {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|c| !c.is_empty());
    let value = match chain {
        Some(chain) => format!("{chain}, {}", f.peer),
        None => f.peer.to_string(),
    };
    headers.remove("x-forwarded-for");
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(f.proto));
    headers.remove("x-forwarded-host");
    if let Some(host) = host {
        headers.insert("x-forwarded-host", host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("x-app", "kept"),
        ] {
            h.append(k, v.parse().unwrap());
        }
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "kept");
    }

    #[test]
    fn forwarded_for_is_kept_only_from_a_trusted_peer() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("x-forwarded-host", "evil".parse().unwrap());
        let peer = "10.0.0.1".parse().unwrap();
        let untrusted = Forwarded {
            peer,
            trusted_peer: false,
            proto: "http",
        };
        set_forwarded(&mut h, &untrusted, Some("app".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
        assert_eq!(h["x-forwarded-host"], "app");
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        let trusted = Forwarded {
            peer,
            trusted_peer: true,
            proto: "https",
        };
        set_forwarded(&mut h, &trusted, None);
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
    }
}
