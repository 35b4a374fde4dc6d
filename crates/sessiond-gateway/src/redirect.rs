//! Where the login page may send a browser afterwards (`rd`).
//!
//! Open redirects after login are a recurring vulnerability in products of
//! this kind, mostly through the many spellings browsers accept for "another
//! host": `//evil`, `/\evil`, `https:evil`, tabs and newlines that browsers
//! strip, user information (`https://app@evil`). The rule here is an
//! allow-list of two shapes, everything else refused:
//! - a path on this site: starts with one `/`, then neither `/` nor `\`
//!   (nor their encodings);
//! - an absolute `http`/`https` URL, written with `://`, without user
//!   information, whose host is listed in `allowed_redirect_hosts` (an
//!   exact `host` or `host:port`, or `.example.com` for the domain and
//!   every name under it).
//!
//! Backslashes, whitespace and control characters anywhere refuse the whole
//! value: browsers read them in ways servers do not.

use url::Url;

use crate::rules::{HostPattern, RuleError};

/// The longest `rd` considered.
const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    host: HostPattern,
    port: Option<u16>,
}

/// The hosts `rd` may name. Written as the list of hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct RedirectPolicy {
    hosts: Vec<AllowedHost>,
    written: Vec<String>,
}

impl TryFrom<Vec<String>> for RedirectPolicy {
    type Error = RuleError;

    fn try_from(hosts: Vec<String>) -> Result<Self, RuleError> {
        Self::new(&hosts)
    }
}

impl From<RedirectPolicy> for Vec<String> {
    fn from(policy: RedirectPolicy) -> Self {
        policy.written
    }
}

impl RedirectPolicy {
    /// A policy for `hosts` (`app.example.com`, `app.example.com:8443`,
    /// `.example.com`). Empty: only paths on this site.
    pub fn new<S: AsRef<str>>(hosts: &[S]) -> Result<Self, RuleError> {
        let written = hosts.iter().map(|h| h.as_ref().to_owned()).collect();
        let hosts = hosts
            .iter()
            .map(|h| {
                let h = h.as_ref();
                let (name, port) = match h.rsplit_once(':') {
                    Some((name, port)) if !name.ends_with(':') && !h.starts_with('[') => (
                        name,
                        Some(port.parse().map_err(|_| RuleError::Host(h.to_owned()))?),
                    ),
                    _ => (h, None),
                };
                Ok(AllowedHost {
                    host: HostPattern::parse(name)?,
                    port,
                })
            })
            .collect::<Result<_, RuleError>>()?;
        Ok(Self { hosts, written })
    }

    /// `rd` if the browser may be sent there (an absolute URL normalised);
    /// `None` otherwise.
    pub fn check(&self, rd: &str) -> Option<String> {
        if rd.is_empty()
            || rd.len() > MAX_LEN
            || rd
                .chars()
                .any(|c| c == '\\' || c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return None;
        }
        if let Some(rest) = rd.strip_prefix('/') {
            let lower = rest.to_ascii_lowercase();
            let escapes =
                rest.starts_with('/') || lower.starts_with("%2f") || lower.starts_with("%5c");
            return (!escapes).then(|| rd.to_owned());
        }
        let lower = rd.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return None;
        }
        let url = Url::parse(rd).ok()?;
        if !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let host = url.host_str()?;
        let port = url.port_or_known_default();
        self.hosts
            .iter()
            .any(|a| a.host.matches(host) && a.port.is_none_or(|p| Some(p) == port))
            .then(|| url.to_string())
    }
}

/// `login_url` with `rd` (the page the browser asked for) added to its query.
pub fn login_location(login_url: &str, rd: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(rd.as_bytes()).collect();
    let separator = if login_url.contains('?') { '&' } else { '?' };
    format!("{login_url}{separator}rd={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RedirectPolicy {
        RedirectPolicy::new(&["app.example.com", ".corp.example", "127.0.0.1:8080"]).unwrap()
    }

    #[test]
    fn paths_on_this_site_and_listed_hosts_are_kept() {
        let p = policy();
        for (rd, kept) in [
            ("/", "/"),
            ("/dashboard?tab=2#x", "/dashboard?tab=2#x"),
            ("/a/b/../c", "/a/b/../c"),
            ("https://app.example.com/x", "https://app.example.com/x"),
            ("HTTPS://APP.EXAMPLE.COM/x", "https://app.example.com/x"),
            ("https://app.example.com:443/x", "https://app.example.com/x"),
            (
                "https://wiki.corp.example/page",
                "https://wiki.corp.example/page",
            ),
            ("https://corp.example/", "https://corp.example/"),
            ("http://127.0.0.1:8080/p", "http://127.0.0.1:8080/p"),
        ] {
            assert_eq!(p.check(rd).as_deref(), Some(kept), "{rd}");
        }
    }

    #[test]
    fn every_hostile_redirect_target_is_refused() {
        let p = policy();
        for rd in [
            "",
            "//evil.com",
            "///evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "/%2F%2Fevil.com",
            "/%2fevil.com",
            "/%5Cevil.com",
            "%2F%2Fevil.com",
            "https://evil.com",
            "http://evil.com/app.example.com",
            "https://app.example.com.evil.com/",
            "https://evilcorp.example/",
            "https://app.example.com@evil.com/",
            "https://user:pw@app.example.com/",
            "https:evil.com",
            "https:/evil.com",
            "https:\\\\evil.com",
            "javascript:alert(1)",
            "JaVaScRiPt:alert(document.cookie)",
            "data:text/html,<script>alert(1)</script>",
            "/\t/evil.com",
            "/\n/evil.com",
            " //evil.com",
            "//app.example.com",
            "ftp://app.example.com/",
            "http://127.0.0.1:9090/other-port",
            "https://app.example.com\\@evil.com",
            "https://%61pp.example.com.evil.com/",
            "https://[::1]/",
            "https://xn--80ak6aa92e.com/",
        ] {
            assert_eq!(p.check(rd), None, "{rd:?} must be refused");
        }
        let long = format!("/{}", "a".repeat(MAX_LEN));
        assert_eq!(p.check(&long), None);
    }

    #[test]
    fn the_login_location_carries_the_page_asked_for() {
        assert_eq!(
            login_location("/login", "https://app.example.com/a?b=1&c=2"),
            "/login?rd=https%3A%2F%2Fapp.example.com%2Fa%3Fb%3D1%26c%3D2"
        );
        assert_eq!(
            login_location("https://auth.example.com/login?theme=x", "/a"),
            "https://auth.example.com/login?theme=x&rd=%2Fa"
        );
    }

    #[test]
    fn without_listed_hosts_only_paths_are_kept() {
        let p = RedirectPolicy::default();
        assert_eq!(p.check("/x").as_deref(), Some("/x"));
        assert_eq!(p.check("https://app.example.com/"), None);
    }
}
