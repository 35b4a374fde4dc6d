//! Access rules: who may reach which paths of the application behind the
//! gateway. One decision function, used by forward-auth and by the proxy.
//!
//! Rules are tried in order and the first that matches decides; a request
//! that no rule matches is denied, unless the operator gives a default.
//! Paths are matched after normalisation ([`NormalPath`]), segment by
//! segment: the prefix `/api/public` covers `/api/public` and
//! `/api/public/x`, never `/api/publicity`.

use http::Method;
use serde::{Deserialize, Serialize};

use crate::path::NormalPath;

/// Who a rule lets through. Written `"public"`, `"authenticated"` or a
/// list of roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "AllowSpec", into = "AllowSpec")]
pub enum Allow {
    /// Anyone, with or without a session.
    Public,
    /// Any valid session or access token.
    Authenticated,
    /// A caller with at least one of these roles.
    Roles(Vec<String>),
}

/// The unsafe-method check a rule asks of cookie-authenticated requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CsrfCheck {
    /// `Sec-Fetch-Site` / `Origin` must name the original request's own
    /// site: sessiond cannot know the application's CSRF tokens.
    #[default]
    Origin,
    /// Left to the application.
    Off,
}

/// A path pattern: a segment prefix, or a glob (`*` within one segment,
/// `**` for any number of whole segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<String>,
    glob: bool,
}

impl PathPattern {
    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Parses a pattern such as `/api/public` or `/api/admin/**`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let bad = |why: &str| RuleError::Path(text.to_owned(), why.to_owned());
        if !text.starts_with('/') {
            return Err(bad("must start with '/'"));
        }
        if text.contains(['?', '#', '\\', '%']) || text.chars().any(char::is_control) {
            return Err(bad("holds '?', '#', '\\', '%' or a control character"));
        }
        let segments: Vec<String> = text
            .split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if segments.iter().any(|s| s == "." || s == "..") {
            return Err(bad("holds '.' or '..' segments"));
        }
        if segments.iter().any(|s| s.contains("**") && s != "**") {
            return Err(bad("'**' must be a whole segment"));
        }
        Ok(Self {
            glob: text.contains('*'),
            text: text.to_owned(),
            segments,
        })
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &NormalPath) -> bool {
        let path = path.segments();
        if self.glob {
            glob(&self.segments, path)
        } else {
            path.len() >= self.segments.len() && self.segments.iter().zip(path).all(|(p, s)| p == s)
        }
    }
}

fn glob(pattern: &[String], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => (0..=path.len()).any(|skip| glob(rest, &path[skip..])),
        Some((p, rest)) => path
            .split_first()
            .is_some_and(|(s, tail)| wildcard(p, s) && glob(rest, tail)),
    }
}

/// `*` matches any run of characters within one segment.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| wildcard(tail, &rest[i..]))
        }
    }
}

/// A host pattern: an exact name, or `.example.com` for the domain and
/// every name under it. Ports are ignored; matching ignores case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Parses `app.example.com` or `.example.com`.
    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let lower = text.to_ascii_lowercase();
        let name = lower.strip_prefix('.').unwrap_or(&lower);
        let valid = !name.is_empty()
            && name.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '[' | ']')
            });
        if valid {
            Ok(Self(lower))
        } else {
            Err(RuleError::Host(text.to_owned()))
        }
    }

    /// Whether `host` (a `Host` value, port allowed) matches.
    pub fn matches(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        match self.0.strip_prefix('.') {
            Some(domain) => {
                name == domain
                    || name
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.'))
            }
            None => name == self.0,
        }
    }
}

/// The name part of a `host[:port]` value (IPv6 literals keep their brackets).
pub fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name)
}

/// An invalid rule, named in the message that stops start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RuleError {
    /// A bad path pattern.
    #[error("access rule path {0:?}: {1}")]
    Path(String, String),
    /// A bad host pattern.
    #[error("access rule host {0:?} is not a host name or .domain")]
    Host(String),
    /// A bad method name.
    #[error("access rule method {0:?} is not an HTTP method")]
    Method(String),
    /// A bad `upstream` value.
    #[error("access rule upstream {0:?} is not http://host[:port][/prefix]")]
    Upstream(String),
    /// A bad `rate`.
    #[error("access rule for {0:?}: {1}")]
    Rate(String, String),
    /// A cache setting that cannot hold.
    #[error("access rule for {0:?}: {1}")]
    Cache(String, String),
    /// A bad `allow` value.
    #[error(
        "access rule for {path:?}: allow must be \"public\", \"authenticated\" or a non-empty list of roles, not {value:?}"
    )]
    Allow {
        /// The rule's path.
        path: String,
        /// The value given.
        value: String,
    },
}

/// One rule as written in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// A path prefix (`/api/public`) or glob (`/api/admin/**`).
    pub path: String,
    /// Only requests for this host (`app.example.com`, `.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Only these methods (`HEAD` counts as `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// `"public"`, `"authenticated"` or a list of roles.
    pub allow: AllowSpec,
    /// The unsafe-method check for cookie sessions.
    #[serde(default)]
    pub csrf: CsrfCheck,
    /// For the built-in proxy: the application these paths go to, instead
    /// of `gateway.upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// For the built-in proxy: a rate limit, `"100/s"`, `"20/m"`, `"1000/h"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
    /// Requests allowed at once (default: the rate's count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Whose budget the rate is: `"ip"` (the default), `"user"` (the
    /// session's or token's user; the address without one) or `"route"`
    /// (one budget for everyone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<RateKey>,
    /// For the built-in proxy's response cache: `false` keeps this rule's
    /// answers out of it (only rules that let anyone in are cached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    /// How long an answer that names no freshness of its own stays fresh
    /// (`"30s"`, `"5m"`); without it, such answers are not cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl: Option<String>,
    /// Path prefixes whose cached answers a successful write under this
    /// rule invalidates, besides the written path and its collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalidate: Option<Vec<String>>,
    /// A sensitive area: a session needs a recent password proof (within
    /// its re-authentication window) to pass, else 401
    /// `reauthentication_required`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reauth: bool,
}

/// How the built-in proxy's response cache treats a rule's paths.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleCache {
    /// Answers may be cached (the rule lets anyone in, and the operator did
    /// not turn it off).
    pub enabled: bool,
    /// Freshness for answers that name none.
    pub ttl: Option<std::time::Duration>,
    /// Extra invalidation prefixes.
    pub invalidate: std::sync::Arc<[String]>,
    /// The rule's name in the cache's metrics (its path pattern).
    pub name: std::sync::Arc<str>,
}

/// Whose budget a rule's rate limit is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateKey {
    /// The client's address (through the trusted-proxy rule).
    #[default]
    Ip,
    /// The caller's user, or the address without a session or token.
    User,
    /// One budget for every request the rule matches.
    Route,
}

/// A rule's rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRate {
    /// The policy's name in headers and metrics: the rule's path.
    pub policy: std::sync::Arc<str>,
    /// The rate.
    pub rate: sessiond_core::Rate,
    /// Whose budget.
    pub key: RateKey,
}

/// `allow` as written: a word or a list of roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AllowSpec {
    /// `"public"` or `"authenticated"`.
    Word(String),
    /// Roles.
    Roles(Vec<String>),
}

impl TryFrom<AllowSpec> for Allow {
    type Error = RuleError;

    fn try_from(spec: AllowSpec) -> Result<Self, RuleError> {
        spec.parse("(default)")
    }
}

impl From<Allow> for AllowSpec {
    fn from(allow: Allow) -> Self {
        Self::of(&allow)
    }
}

impl AllowSpec {
    fn parse(&self, path: &str) -> Result<Allow, RuleError> {
        let bad = || RuleError::Allow {
            path: path.to_owned(),
            value: format!("{self:?}"),
        };
        match self {
            Self::Word(w) if w == "public" => Ok(Allow::Public),
            Self::Word(w) if w == "authenticated" => Ok(Allow::Authenticated),
            Self::Roles(roles)
                if !roles.is_empty() && roles.iter().all(|r| !r.trim().is_empty()) =>
            {
                Ok(Allow::Roles(roles.clone()))
            }
            _ => Err(bad()),
        }
    }

    fn of(allow: &Allow) -> Self {
        match allow {
            Allow::Public => Self::Word("public".into()),
            Allow::Authenticated => Self::Word("authenticated".into()),
            Allow::Roles(r) => Self::Roles(r.clone()),
        }
    }
}

/// One access rule, checked when the configuration loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RuleSpec", into = "RuleSpec")]
pub struct AccessRule {
    /// Which paths.
    pub path: PathPattern,
    /// Which host, if only one.
    pub host: Option<HostPattern>,
    /// Which methods, if not all.
    pub methods: Option<Vec<Method>>,
    /// Who may pass.
    pub allow: Allow,
    /// The unsafe-method check for cookie sessions.
    pub csrf: CsrfCheck,
    /// The application these paths go to through the built-in proxy
    /// (`http://host[:port][/prefix]`), if not the default one.
    pub upstream: Option<String>,
    /// The rule's rate limit (built-in proxy).
    pub rate: Option<RuleRate>,
    /// The rule's response caching (built-in proxy).
    pub cache: RuleCache,
    /// A recent password proof is needed to pass.
    pub reauth: bool,
}

impl TryFrom<RuleSpec> for AccessRule {
    type Error = RuleError;

    fn try_from(spec: RuleSpec) -> Result<Self, RuleError> {
        let methods = spec
            .methods
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| RuleError::Method(m.clone()))
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let allow = spec.allow.parse(&spec.path)?;
        let cache_error = |why: String| RuleError::Cache(spec.path.clone(), why);
        if spec.cache == Some(true) && allow != Allow::Public {
            return Err(cache_error(
                "only rules with allow = \"public\" can be cached: the cache answers before the session check".into(),
            ));
        }
        let cache = RuleCache {
            name: spec.path.as_str().into(),
            enabled: allow == Allow::Public && spec.cache != Some(false),
            ttl: spec
                .cache_ttl
                .as_deref()
                .map(|t| {
                    humantime::parse_duration(t)
                        .map_err(|e| cache_error(format!("cache_ttl {t:?}: {e}")))
                })
                .transpose()?,
            invalidate: spec
                .invalidate
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|p| {
                    if p.starts_with('/') {
                        Ok(p)
                    } else {
                        Err(cache_error(format!("invalidate {p:?} is not a path")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        };
        Ok(Self {
            cache,
            allow,
            reauth: spec.reauth,
            path: PathPattern::parse(&spec.path)?,
            host: spec.host.as_deref().map(HostPattern::parse).transpose()?,
            methods,
            csrf: spec.csrf,
            upstream: spec
                .upstream
                .map(|u| {
                    let uri: http::Uri = u.parse().map_err(|_| RuleError::Upstream(u.clone()))?;
                    match (uri.scheme_str(), uri.authority()) {
                        (Some("http"), Some(_)) if uri.query().is_none() => Ok(u),
                        _ => Err(RuleError::Upstream(u)),
                    }
                })
                .transpose()?,
            rate: match (spec.rate, spec.burst, spec.rate_key) {
                (None, None, None) => None,
                (Some(text), burst, key) => {
                    let rate = sessiond_core::Rate::parse(&text, burst)
                        .map_err(|e| RuleError::Rate(spec.path.clone(), e.to_string()))?;
                    Some(RuleRate {
                        policy: spec.path.as_str().into(),
                        rate,
                        key: key.unwrap_or_default(),
                    })
                }
                (None, ..) => {
                    return Err(RuleError::Rate(
                        spec.path.clone(),
                        "burst and rate_key need a rate".into(),
                    ));
                }
            },
        })
    }
}

impl From<AccessRule> for RuleSpec {
    fn from(rule: AccessRule) -> Self {
        Self {
            path: rule.path.text,
            host: rule.host.map(|h| h.0),
            methods: rule
                .methods
                .map(|ms| ms.iter().map(ToString::to_string).collect()),
            allow: AllowSpec::of(&rule.allow),
            csrf: rule.csrf,
            upstream: rule.upstream,
            rate: rule.rate.as_ref().map(|r| {
                let unit = match r.rate.period.as_secs() {
                    1 => "s",
                    60 => "m",
                    _ => "h",
                };
                format!("{}/{unit}", r.rate.limit)
            }),
            burst: rule.rate.as_ref().map(|r| r.rate.burst),
            rate_key: rule.rate.as_ref().map(|r| r.key),
            cache: (!rule.cache.enabled && rule.allow == Allow::Public).then_some(false),
            cache_ttl: rule
                .cache
                .ttl
                .map(|t| humantime::format_duration(t).to_string()),
            invalidate: (!rule.cache.invalidate.is_empty()).then(|| rule.cache.invalidate.to_vec()),
            reauth: rule.reauth,
        }
    }
}

impl AccessRule {
    /// A rule for every path.
    pub fn everything(allow: Allow) -> Self {
        Self {
            path: PathPattern {
                text: "/".into(),
                segments: Vec::new(),
                glob: false,
            },
            host: None,
            methods: None,
            cache: RuleCache {
                enabled: allow == Allow::Public,
                name: "/".into(),
                ..RuleCache::default()
            },
            allow,
            csrf: CsrfCheck::default(),
            upstream: None,
            rate: None,
            reauth: false,
        }
    }

    /// Whether the rule applies to this request.
    pub fn matches(&self, target: &Target<'_>) -> bool {
        let method_ok = self.methods.as_ref().is_none_or(|ms| {
            ms.iter().any(|m| {
                *m == target.method || (target.method == Method::HEAD && *m == Method::GET)
            })
        });
        let host_ok = self
            .host
            .as_ref()
            .is_none_or(|h| target.host.is_some_and(|host| h.matches(host)));
        method_ok && host_ok && self.path.matches(target.path)
    }
}

/// The request being judged.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Its method.
    pub method: &'a Method,
    /// Its host (`Host` or the forwarded host), if known.
    pub host: Option<&'a str>,
    /// Its normalised path.
    pub path: &'a NormalPath,
}

/// What the rules say about a request and its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision<'r> {
    /// Let it through.
    Allow(&'r AccessRule),
    /// A session (or token) is needed and the caller has none: 401.
    NeedSession(&'r AccessRule),
    /// The caller may not pass: 403. `None`: no rule matched.
    Deny(Option<&'r AccessRule>),
}

impl Decision<'_> {
    /// Whether the request may pass.
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// The rules, in order, and the default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    rules: Vec<AccessRule>,
    default: Option<AccessRule>,
}

impl AccessRules {
    /// `rules` in order; `default` decides requests no rule matches
    /// (`None`: they are denied).
    pub fn new(rules: Vec<AccessRule>, default: Option<Allow>) -> Self {
        Self {
            rules,
            default: default.map(AccessRule::everything),
        }
    }

    /// Whether any rule carries a rate limit.
    pub fn has_rates(&self) -> bool {
        self.rules.iter().any(|r| r.rate.is_some())
    }

    /// The rule that decides `target`, if any.
    pub fn rule_for(&self, target: &Target<'_>) -> Option<&AccessRule> {
        self.rules
            .iter()
            .find(|r| r.matches(target))
            .or(self.default.as_ref())
    }

    /// The decision for `target` and a caller with `roles` (`None`: no
    /// valid session or token).
    pub fn decide(&self, target: &Target<'_>, roles: Option<&[String]>) -> Decision<'_> {
        let Some(rule) = self.rule_for(target) else {
            return Decision::Deny(None);
        };
        match (&rule.allow, roles) {
            (Allow::Public, _) => Decision::Allow(rule),
            (_, None) => Decision::NeedSession(rule),
            (Allow::Authenticated, Some(_)) => Decision::Allow(rule),
            (Allow::Roles(needed), Some(has)) if needed.iter().any(|n| has.contains(n)) => {
                Decision::Allow(rule)
            }
            (Allow::Roles(_), Some(_)) => Decision::Deny(Some(rule)),
        }
    }
}
