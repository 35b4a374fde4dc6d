//! The session cookie: finding it in a request and writing `Set-Cookie`.

use http::{HeaderMap, HeaderValue, header};

/// `SameSite` for the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Never sent on cross-site requests (the default).
    #[default]
    Strict,
    /// Sent on top-level cross-site navigations.
    Lax,
}

/// How the session cookie is named and marked.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// The cookie's name; `__Host-sessiond` by default. The `__Host-` prefix
    /// makes browsers refuse it unless it is Secure, host-only and `Path=/`,
    /// so a sibling subdomain cannot plant or overwrite it.
    pub name: String,
    /// `Secure` (on by default; turning it off also drops the `__Host-` prefix).
    pub secure: bool,
    /// `SameSite`.
    pub same_site: SameSite,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "__Host-sessiond".into(),
            secure: true,
            same_site: SameSite::Strict,
        }
    }
}

impl CookieConfig {
    /// A cookie named `name` with these attributes. The `__Host-` rule is
    /// applied here, once: browsers refuse a `__Host-` cookie without
    /// `Secure`, so an insecure configuration (plain-HTTP development)
    /// drops the prefix.
    pub fn new(name: impl Into<String>, secure: bool, same_site: SameSite) -> Self {
        let name = name.into();
        let name = match name.strip_prefix("__Host-") {
            Some(rest) if !secure => rest.to_owned(),
            _ => name,
        };
        Self {
            name,
            secure,
            same_site,
        }
    }

    /// The value of the named cookie in the request, if any. With several
    /// cookies of that name, the first is used.
    pub fn find<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        find_cookie(headers, &self.name)
    }

    /// A `Set-Cookie` that stores `token` for `max_age_secs`.
    pub fn set(&self, token: &str, max_age_secs: u64) -> HeaderValue {
        self.header(token, max_age_secs)
    }

    /// A `Set-Cookie` that stores `token` until the browser closes (no
    /// `Max-Age`).
    pub fn set_for_browser_session(&self, token: &str) -> HeaderValue {
        self.header_with(token, None)
    }

    /// A `Set-Cookie` that removes the cookie.
    pub fn clear(&self) -> HeaderValue {
        self.header("", 0)
    }

    fn header(&self, value: &str, max_age: u64) -> HeaderValue {
        self.header_with(value, Some(max_age))
    }

    fn header_with(&self, value: &str, max_age: Option<u64>) -> HeaderValue {
        let same_site = match self.same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
        };
        let secure = if self.secure { "; Secure" } else { "" };
        let max_age = max_age
            .map(|s| format!("; Max-Age={s}"))
            .unwrap_or_default();
        let text = format!(
            "{}={value}; Path=/{secure}; HttpOnly; SameSite={same_site}{max_age}",
            self.name
        );
        // The name is validated at configuration and the value is base64url.
        HeaderValue::from_str(&text)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
    }
}

/// Finds a cookie by name across every `Cookie` header, without allocating.
pub fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (n, v) = pair.trim().split_once('=')?;
            (n == name).then(|| v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_others_and_across_headers() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-sessiond=tok; c=3"),
        );
        assert_eq!(find_cookie(&h, "__Host-sessiond"), Some("tok"));
        assert_eq!(find_cookie(&h, "b"), Some("2"));
        assert_eq!(find_cookie(&h, "missing"), None);
    }

    #[test]
    fn an_insecure_cookie_loses_the_host_prefix_browsers_would_refuse() {
        let insecure = CookieConfig::new("__Host-x", false, SameSite::Lax);
        assert_eq!(insecure.name, "x");
        assert_eq!(
            insecure.set("v", 60),
            "x=v; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        assert_eq!(
            CookieConfig::new("__Host-x", true, SameSite::Lax).name,
            "__Host-x"
        );
    }

    #[test]
    fn set_cookie_carries_the_secure_defaults() {
        let c = CookieConfig::default().set("abc", 1800);
        assert_eq!(
            c,
            "__Host-sessiond=abc; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=1800"
        );
    }
}
