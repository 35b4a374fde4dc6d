//! The original request, as the reverse proxy in front describes it to a
//! forward-auth endpoint.
//!
//! nginx (`auth_request`) sends `X-Original-URL` and `X-Original-Method`
//! (the shipped snippet sets both); Traefik and Caddy send
//! `X-Forwarded-Method`, `-Proto`, `-Host` and `-Uri`. These headers are
//! believed only from a trusted proxy: the caller checks the peer first. A
//! header given twice, or a description without a method, is refused rather
//! than guessed (assuming `GET` would let a `POST` through a `GET`-only
//! rule).

use http::{HeaderMap, Method};

/// Why the original request cannot be known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardedError {
    /// Neither header set is present.
    #[error(
        "the proxy did not describe the original request (X-Original-URL and X-Original-Method, or X-Forwarded-Method, -Proto, -Host and -Uri)"
    )]
    Missing,
    /// A header is present twice or unreadable.
    #[error("the forwarded header {0} is repeated or unreadable")]
    Ambiguous(&'static str),
    /// A value that is not a method, scheme, host or URL.
    #[error("the forwarded header {0} holds an invalid value")]
    Invalid(&'static str),
}

/// What the client asked the proxy for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRequest {
    /// The method.
    pub method: Method,
    /// `http` or `https`.
    pub scheme: String,
    /// The host (with a port if one was given), if known.
    pub host: Option<String>,
    /// The path and query, as the client sent them.
    pub uri: String,
}

fn one<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, ForwardedError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ForwardedError::Ambiguous(name));
    }
    first
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(|_| ForwardedError::Ambiguous(name))
}

fn method(value: &str, name: &'static str) -> Result<Method, ForwardedError> {
    Method::from_bytes(value.to_ascii_uppercase().as_bytes())
        .map_err(|_| ForwardedError::Invalid(name))
}

fn scheme(value: &str, name: &'static str) -> Result<String, ForwardedError> {
    match value.to_ascii_lowercase().as_str() {
        s @ ("http" | "https") => Ok(s.to_owned()),
        _ => Err(ForwardedError::Invalid(name)),
    }
}

fn host(value: &str, name: &'static str) -> Result<String, ForwardedError> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']'));
    if ok {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ForwardedError::Invalid(name))
    }
}

impl OriginalRequest {
    /// Reads the original request from a trusted proxy's headers.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, ForwardedError> {
        if let Some(url) = one(headers, "x-original-url")? {
            let method = one(headers, "x-original-method")?
                .or(one(headers, "x-forwarded-method")?)
                .ok_or(ForwardedError::Missing)?;
            let method = method_of(method)?;
            return Self::from_url(url, method);
        }
        let (Some(m), Some(proto), Some(h), Some(uri)) = (
            one(headers, "x-forwarded-method")?,
            one(headers, "x-forwarded-proto")?,
            one(headers, "x-forwarded-host")?,
            one(headers, "x-forwarded-uri")?,
        ) else {
            return Err(ForwardedError::Missing);
        };
        if !uri.starts_with('/') {
            return Err(ForwardedError::Invalid("x-forwarded-uri"));
        }
        Ok(Self {
            method: method(m, "x-forwarded-method")?,
            scheme: scheme(proto, "x-forwarded-proto")?,
            host: Some(host(h, "x-forwarded-host")?),
            uri: uri.to_owned(),
        })
    }

    fn from_url(url: &str, method: Method) -> Result<Self, ForwardedError> {
        const NAME: &str = "x-original-url";
        if url.starts_with('/') {
            return Ok(Self {
                method,
                scheme: "https".into(),
                host: None,
                uri: url.to_owned(),
            });
        }
        // `scheme://host[:port]/path?query`, read by hand: the checks below
        // are all a proxy's own description needs, and a full URL parser
        // (IDNA included) cost a tenth of a verification.
        let (scheme_part, rest) = url.split_once("://").ok_or(ForwardedError::Invalid(NAME))?;
        let scheme = scheme(scheme_part, NAME)?;
        let (authority, uri) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], &rest[i..]),
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(ForwardedError::Invalid(NAME));
        }
        let uri = if uri.starts_with('?') {
            format!("/{uri}")
        } else {
            uri.to_owned()
        };
        Ok(Self {
            method,
            scheme,
            host: Some(host(authority, NAME)?),
            uri,
        })
    }

    /// `scheme://host` (for the CSRF origin check), if the host is known.
    pub fn origin(&self) -> Option<String> {
        self.host.as_ref().map(|h| format!("{}://{h}", self.scheme))
    }

    /// The whole URL (for `rd`), or the path alone without a host.
    pub fn url(&self) -> String {
        match self.origin() {
            Some(origin) => format!("{origin}{}", self.uri),
            None => self.uri.clone(),
        }
    }
}

fn method_of(value: &str) -> Result<Method, ForwardedError> {
    method(value, "x-original-method")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn nginx_and_traefik_style_descriptions_are_read() {
        let nginx = OriginalRequest::from_headers(&headers(&[
            ("x-original-url", "https://App.example.com:8443/api/x?y=1"),
            ("x-original-method", "post"),
        ]))
        .unwrap();
        assert_eq!(nginx.method, Method::POST);
        assert_eq!(nginx.host.as_deref(), Some("app.example.com:8443"));
        assert_eq!(nginx.uri, "/api/x?y=1");
        assert_eq!(nginx.url(), "https://app.example.com:8443/api/x?y=1");
        let traefik = OriginalRequest::from_headers(&headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "app.example.com"),
            ("x-forwarded-uri", "/a/../b"),
        ]))
        .unwrap();
        assert_eq!(traefik.origin().as_deref(), Some("http://app.example.com"));
        assert_eq!(traefik.uri, "/a/../b");
    }

    #[test]
    fn incomplete_repeated_or_invalid_descriptions_are_refused() {
        for (pairs, error) in [
            (vec![], ForwardedError::Missing),
            (vec![("x-original-url", "/x")], ForwardedError::Missing),
            (
                vec![
                    ("x-original-url", "/x"),
                    ("x-original-method", "GET"),
                    ("x-original-url", "/y"),
                ],
                ForwardedError::Ambiguous("x-original-url"),
            ),
            (
                vec![
                    ("x-original-url", "javascript:alert(1)"),
                    ("x-original-method", "GET"),
                ],
                ForwardedError::Invalid("x-original-url"),
            ),
            (
                vec![
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "gopher"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-uri", "/"),
                ],
                ForwardedError::Invalid("x-forwarded-proto"),
            ),
            (
                vec![
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-proto", "https"),
                    ("x-forwarded-host", "a/b"),
                    ("x-forwarded-uri", "/"),
                ],
                ForwardedError::Invalid("x-forwarded-host"),
            ),
        ] {
            assert_eq!(
                OriginalRequest::from_headers(&headers(&pairs)),
                Err(error),
                "{pairs:?}"
            );
        }
    }
}
