//! The sections of [`crate::ServerConfig`], one struct per `[table]`, each
//! with its defaults. Values are typed at load: durations are
//! [`Duration`]s (`"30m"`, `"800ms"`, or a number of seconds), enums are
//! enums, so a typo stops start-up naming the key instead of surfacing later.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sessiond_axum::{SameSite, StoreDownPolicy};
use sessiond_core::{AttributeBudget, ExpiryPolicy};
use sessiond_jwt::Algorithm;

/// `[server]`: the listener and per-request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Whole-request deadline. A request still sending its body when it
    /// passes is answered 408 (the client's fault), anything else 503.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// How long a client may take to send a request head; also how long a
    /// kept-alive connection may sit idle before its next request.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    pub max_connections: usize,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// Largest accepted total size of request headers, bytes.
    pub header_limit_bytes: usize,
    /// Proxies (CIDRs, `["10.0.0.0/8"]`) whose `forwarded_header` is
    /// believed for the client's address; empty (the default): the client
    /// is the socket's peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header trusted proxies report the client in: `x-forwarded-for`
    /// (default) or `forwarded` (RFC 7239). Only this one is read.
    pub forwarded_header: sessiond_axum::ForwardedHeader,
    /// The host names this server answers for (`Host`, any port), for
    /// example its public names; empty: any well-formed host.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
            body_limit_bytes: 64 * 1024,
            header_limit_bytes: 16 * 1024,
            trusted_proxies: Vec::new(),
            forwarded_header: sessiond_axum::ForwardedHeader::XForwardedFor,
            allowed_hosts: Vec::new(),
        }
    }
}

/// `[store]`: where sessions and users live, and how store calls behave.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// A Redis store URL (`redis://…`, `redis+sentinel://h:p,h:p/name`,
    /// `redis+cluster://h:p,h:p`; `rediss…` for TLS); unset
    /// means the embedded file store in `data_dir`.
    pub url: Option<String>,
    /// The embedded store's folder.
    pub data_dir: PathBuf,
    /// Deadline of one store call, retries included.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Retries of a store call that is safe to repeat, after a transient failure.
    pub retries: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            url: None,
            data_dir: PathBuf::from("data"),
            timeout: Duration::from_millis(800),
            retries: 2,
        }
    }
}

/// `[redis]`: settings of the Redis store (used when `store.url` is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// Key prefix, so several applications can share one Redis.
    pub prefix: String,
    /// Replica acknowledgements a create, cycle or revoke waits for (`WAIT`).
    pub wait_replicas: u32,
    /// Multiplexed connections to a standalone Redis.
    pub pool_size: usize,
    /// How often the live-session gauge is recounted (a background `SCAN`).
    #[serde(with = "duration")]
    pub count_interval: Duration,
    /// For `rediss…` URLs with a private CA: the CA certificate (PEM).
    pub tls_ca_file: Option<PathBuf>,
    /// A file holding the password of the URL's user (an ACL user such as
    /// `redis://sessiond@host:6379`), so it is neither in the URL, the
    /// process list nor the environment. One line; a final newline is ignored.
    pub password_file: Option<PathBuf>,
    /// Sentinel only: the ACL user the sentinels are asked as, when they
    /// require one (the URL's user is the master's).
    pub sentinel_username: Option<String>,
    /// Sentinel only: a file holding the sentinels' password (sentinels
    /// with `requirepass` or ACL users).
    pub sentinel_password_file: Option<PathBuf>,
    /// Keep recently verified sessions in memory, dropped the moment Redis
    /// reports a change to them (client-side caching): verification at
    /// memory speed, revocation seen by every node within milliseconds.
    /// `false` asks Redis on every request.
    pub near_cache: bool,
    /// The near-cache holds at most this many sessions...
    pub near_cache_max_entries: u64,
    /// ...and about this many bytes of them.
    pub near_cache_max_bytes: u64,
    /// A cached session older than this is read again anyway (a safety net
    /// behind the invalidations, not the mechanism).
    #[serde(with = "duration")]
    pub near_cache_max_age: Duration,
}

impl Default for RedisSection {
    fn default() -> Self {
        // The store's own defaults, so the two cannot drift apart.
        let near = sessiond_store_redis::NearCacheConfig::default();
        Self {
            prefix: "sessiond:".into(),
            wait_replicas: 0,
            pool_size: 1,
            count_interval: Duration::from_secs(300),
            tls_ca_file: None,
            password_file: None,
            sentinel_username: None,
            sentinel_password_file: None,
            near_cache: true,
            near_cache_max_entries: near.max_entries,
            near_cache_max_bytes: near.max_bytes,
            near_cache_max_age: near.max_age,
        }
    }
}

/// `[session]`: timeouts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionSection {
    /// A session unused this long ends.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A session ends this long after login, however active.
    #[serde(with = "duration")]
    pub absolute_lifetime: Duration,
    /// Renew only when less than this much of the idle timeout remains.
    #[serde(with = "duration")]
    pub renewal_threshold: Duration,
    /// Attributes one session may hold.
    pub max_attributes: usize,
    /// Bytes of attribute names and values one session may hold.
    pub max_attribute_bytes: usize,
    /// Live sessions one user may hold (token families count); 0: unlimited.
    pub max_sessions_per_user: usize,
    /// What a sign-in past `max_sessions_per_user` does: `evict_oldest`
    /// (the user's oldest session ends) or `refuse` (409 `session_limit`).
    pub on_limit: OnLimitSetting,
    /// Offer "keep me signed in"; off: every session is a browser-session
    /// cookie with the timeouts above.
    pub remember_me: bool,
    /// A remembered session unused this long ends.
    #[serde(with = "duration")]
    pub remember_idle_timeout: Duration,
    /// A remembered session ends this long after sign-in.
    #[serde(with = "duration")]
    pub remember_absolute_lifetime: Duration,
    /// How recent a password proof sensitive actions need (ASVS 3.7.1).
    #[serde(with = "duration")]
    pub reauth_window: Duration,
}

/// See [`SessionSection::on_limit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimitSetting {
    /// The user's oldest session ends and the new sign-in succeeds.
    #[default]
    EvictOldest,
    /// The new sign-in is refused (409 `session_limit`); nothing is created.
    Refuse,
}

/// `[roles.<name>]`: what a role changes in the session rules; a user with
/// several roles gets the strictest value of each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleSection {
    /// A shorter idle timeout for this role's sessions.
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// A shorter absolute lifetime.
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    pub absolute_lifetime: Option<Duration>,
    /// Fewer live sessions per user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions_per_user: Option<usize>,
    /// A shorter re-authentication window.
    #[serde(with = "duration_opt", skip_serializing_if = "Option::is_none")]
    pub reauth_window: Option<Duration>,
}

impl Default for SessionSection {
    fn default() -> Self {
        let policy = ExpiryPolicy::default();
        Self {
            idle_timeout: policy.idle_timeout,
            absolute_lifetime: policy.absolute_lifetime,
            renewal_threshold: policy.renewal_threshold,
            max_attributes: AttributeBudget::default().max_count,
            max_attribute_bytes: AttributeBudget::default().max_bytes,
            max_sessions_per_user: 0,
            on_limit: OnLimitSetting::EvictOldest,
            remember_me: true,
            remember_idle_timeout: Duration::from_secs(14 * 24 * 3600),
            remember_absolute_lifetime: Duration::from_secs(30 * 24 * 3600),
            reauth_window: Duration::from_secs(10 * 60),
        }
    }
}

/// `[cookie]`: the session cookie.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CookieSection {
    /// Session cookie name.
    pub name: String,
    /// Send the cookie with `Secure` (turn off only for plain-HTTP
    /// development on a host other than localhost; drops `__Host-`).
    pub secure: bool,
    /// `strict` or `lax`.
    pub same_site: SameSite,
    /// Give every session's cookie a `Max-Age` (its remaining lifetime), as
    /// before "keep me signed in" existed; off (the default): only a
    /// remembered session's cookie outlives the browser. The load harness
    /// in `../shared/peers` expects a 30-minute `Max-Age`.
    pub persistent: bool,
}

impl Default for CookieSection {
    fn default() -> Self {
        let cookie = sessiond_axum::CookieConfig::default();
        Self {
            name: cookie.name,
            secure: cookie.secure,
            same_site: cookie.same_site,
            persistent: false,
        }
    }
}

/// `[csrf]`: cross-site request forgery checks.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsrfSection {
    /// Extra origins accepted by the origin check (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
}

/// `[login]`: password checks and throttling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginSection {
    /// Password hashes computed at once: the threads of the hashing pool
    /// (each hash takes ~19 MiB and a core for ~20-30 ms). Unset (the
    /// default): one fewer than the cores, at least 1, so a login storm
    /// leaves a core to session checks ([`LoginSection::hash_threads`]).
    pub max_concurrent_hashes: Option<usize>,
    /// Password checks that may wait for a hashing thread; past this a login
    /// is answered 503 `busy` with `Retry-After` at once.
    pub hash_queue: usize,
    /// The nice value of the hashing threads (0 normal, 19 lowest; Linux),
    /// so session checks win the cores when both want them.
    pub hash_nice: i32,
    /// Failed logins per username before it is throttled, per window, for
    /// attempts without a device cookie for that user (anyone's).
    pub failures_per_user: u32,
    /// Failed logins per device cookie, per window: a browser where the
    /// user signed in before is counted on its own, so strangers' failures
    /// for the same name do not lock it out.
    pub failures_per_device: u32,
    /// Failed logins per client IP before it is throttled, per window.
    pub failures_per_ip: u32,
    /// The throttling window.
    #[serde(with = "duration")]
    pub throttle_window: Duration,
    /// How long a device cookie (set at each successful sign-in) is valid.
    #[serde(with = "duration")]
    pub device_cookie_lifetime: Duration,
}

impl LoginSection {
    /// The hashing pool's threads: `max_concurrent_hashes`, or one fewer
    /// than the cores (asked once, when the server starts, not whenever a
    /// default configuration is built).
    pub fn hash_threads(&self) -> usize {
        self.max_concurrent_hashes.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
        })
    }
}

impl Default for LoginSection {
    fn default() -> Self {
        Self {
            max_concurrent_hashes: None,
            hash_queue: 32,
            hash_nice: 10,
            failures_per_user: 5,
            failures_per_device: 10,
            failures_per_ip: 50,
            throttle_window: Duration::from_secs(15 * 60),
            device_cookie_lifetime: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// `[passwords]`: which new passwords are accepted, and how they are hashed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasswordsSection {
    /// Characters at least (8 or more; NIST SP 800-63B).
    pub min_length: usize,
    /// zxcvbn's score (0 to 4) a new password needs; 0 turns the
    /// guessability check off (the user-name check goes with it).
    pub min_strength: u8,
    /// argon2id memory per hash, KiB. Raising it (or the two below)
    /// upgrades each stored hash at its user's next sign-in.
    pub argon2_memory_kib: u32,
    /// argon2id passes.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
}

impl Default for PasswordsSection {
    fn default() -> Self {
        let (rules, params) = (
            crate::password_rules::PasswordRules::default(),
            crate::password::Argon2Params::default(),
        );
        Self {
            min_length: rules.min_length,
            min_strength: rules.min_strength,
            argon2_memory_kib: params.memory_kib,
            argon2_iterations: params.iterations,
            argon2_parallelism: params.parallelism,
        }
    }
}

/// `[tokens]`: JWT access tokens and refresh tokens.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensSection {
    /// `EdDSA` (default), `ES256`, `RS256`, or `HS256` (a shared secret:
    /// only if you ask for it).
    #[serde(with = "display_from_str")]
    pub algorithm: Algorithm,
    /// `iss` of access tokens (use the server's public URL).
    pub issuer: String,
    /// `aud` of access tokens.
    pub audience: String,
    /// Access-token lifetime (30 s to 1 h: access tokens are not revocable).
    #[serde(with = "duration")]
    pub access_token_ttl: Duration,
    /// Clock skew tolerated when verifying access tokens (at most 5 min).
    #[serde(with = "duration")]
    pub leeway: Duration,
    /// How long a just-spent refresh token still returns the same successor
    /// (concurrent refreshes from one client; at most 1 min).
    #[serde(with = "duration")]
    pub refresh_grace: Duration,
    /// Rotate the signing key when it is this old; `0s`: only by command.
    #[serde(with = "duration")]
    pub key_rotation: Duration,
    /// A file holding a 256-bit key (as `sessiond keys new-encryption-key`
    /// prints) that encrypts the signing key ring in the store. Set it on
    /// every node whenever others can read the store.
    pub key_encryption_key_file: Option<PathBuf>,
    /// While replacing the key-encryption key: the file of the old one.
    pub previous_key_encryption_key_file: Option<PathBuf>,
    /// Bearer requests on routes that check the session, while the store is
    /// down: `trust_signature` (default) or `fail_closed` (503).
    pub bearer_when_store_down: StoreDownPolicy,
    /// The key read from `key_encryption_key_file` at load.
    #[serde(skip)]
    pub key_encryption_key: Option<sessiond_jwt::KeyEncryptionKey>,
    /// The key read from `previous_key_encryption_key_file` at load.
    #[serde(skip)]
    pub previous_key_encryption_key: Option<sessiond_jwt::KeyEncryptionKey>,
}

impl Default for TokensSection {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::EdDSA,
            issuer: "sessiond".into(),
            audience: "sessiond".into(),
            access_token_ttl: Duration::from_secs(300),
            leeway: Duration::from_secs(30),
            refresh_grace: Duration::from_secs(5),
            key_rotation: Duration::from_secs(30 * 86_400),
            key_encryption_key_file: None,
            previous_key_encryption_key_file: None,
            bearer_when_store_down: StoreDownPolicy::TrustSignature,
            key_encryption_key: None,
            previous_key_encryption_key: None,
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON unless stderr is a terminal.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Readable text.
    Text,
}

/// `[observability]`: logs, metrics, traces.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ObservabilitySection {
    /// `auto`, `json` or `text`.
    pub log_format: LogFormat,
    /// Record Prometheus metrics and serve them at `/metrics`.
    pub metrics: bool,
    /// Serve `/metrics` on this address instead of the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// One log line per request (target `sessiond::access`).
    pub access_log: bool,
    /// OpenTelemetry OTLP/gRPC endpoint for traces (`http://collector:4317`);
    /// needs a build with the `otel` feature.
    pub otlp_endpoint: Option<String>,
    /// Security events the store's log keeps (the newest), for the admin
    /// console and the service API.
    pub security_events_kept: usize,
}

impl Default for ObservabilitySection {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Auto,
            metrics: true,
            metrics_listen: None,
            access_log: true,
            otlp_endpoint: None,
            security_events_kept: 10_000,
        }
    }
}

/// `[access]`: who may reach which paths of the application behind the
/// gateway (forward-auth and the built-in proxy). Rules are tried in order;
/// the first that matches decides.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessSection {
    /// `[[access.rules]]`: `path` (a prefix such as `/api/public`, or a glob
    /// such as `/api/admin/**`), optional `host` and `methods`, `allow`
    /// (`"public"`, `"authenticated"` or a list of roles) and `csrf`
    /// (`"origin"`, the default, or `"off"`).
    pub rules: Vec<sessiond_gateway::AccessRule>,
    /// Who may pass where no rule matches; unset: nobody (403).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<sessiond_gateway::Allow>,
}

impl AccessSection {
    /// The rules as the decision function takes them.
    pub fn rules(&self) -> sessiond_gateway::AccessRules {
        sessiond_gateway::AccessRules::new(self.rules.clone(), self.default.clone())
    }
}

/// `[rate_limit]`: limits on sessiond's own public routes (the
/// application's paths take theirs from their access rules).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSection {
    /// Per client address on sessiond's public routes (sign-in page, token
    /// endpoints, JWKS, CSRF), e.g. `"20/s"`; unset: none. Health checks
    /// and metrics are never limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<String>,
    /// Requests allowed at once (default: the rate's count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_burst: Option<u32>,
}

impl RateLimitSection {
    /// The public routes' rate, if set (checked at load).
    pub fn public_rate(&self) -> Option<sessiond_core::Rate> {
        self.public
            .as_deref()
            .and_then(|r| sessiond_core::Rate::parse(r, self.public_burst).ok())
    }
}

/// `[cache]`: the built-in proxy's response cache. It answers GET and
/// HEAD on rules that let anyone in, with what the application marked
/// shareable (`max-age`, `s-maxage`, `Expires`, `public`) or a rule's
/// `cache_ttl`; writes through the proxy invalidate it on every node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSection {
    /// Off: every request goes to the application.
    pub enabled: bool,
    /// This node's memory tier, bytes.
    pub max_bytes: u64,
    /// Larger bodies are not cached, bytes.
    pub max_entry_bytes: usize,
    /// No answer stays fresh longer, whatever it says.
    #[serde(with = "duration")]
    pub max_ttl: Duration,
    /// How long a miss waits for another request's fetch of the same page.
    #[serde(with = "duration")]
    pub coalesce_wait: Duration,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self {
            enabled: true,
            max_bytes: 64 << 20,
            max_entry_bytes: 1 << 20,
            max_ttl: Duration::from_secs(3600),
            coalesce_wait: Duration::from_secs(5),
        }
    }
}

/// A list of header names, checked when the configuration loads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct HeaderNames(pub Vec<http::HeaderName>);

impl HeaderNames {
    /// Names known to be valid (lowercase ASCII).
    fn of(names: &[&'static str]) -> Self {
        Self(
            names
                .iter()
                .map(|n| http::HeaderName::from_static(n))
                .collect(),
        )
    }
}

impl TryFrom<Vec<String>> for HeaderNames {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        names
            .iter()
            .map(|n| {
                http::HeaderName::try_from(n.as_str())
                    .map_err(|_| format!("{n:?} is not a header name"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl From<HeaderNames> for Vec<String> {
    fn from(names: HeaderNames) -> Self {
        names.0.iter().map(ToString::to_string).collect()
    }
}

/// `[gateway]`: forward-auth answers and where browsers sign in.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySection {
    /// Where a browser without a session is sent, with `rd` (the page it
    /// asked for): a path on the public host, or an absolute URL such as
    /// `https://auth.example.com/login`.
    pub login_url: String,
    /// Hosts the login page may send a browser back to (`rd`): exact
    /// (`app.example.com`, `app.example.com:8443`) or a domain and all
    /// names under it (`.example.com`). Paths on this site are always allowed.
    pub allowed_redirect_hosts: sessiond_gateway::RedirectPolicy,
    /// `Cache-Control: private, max-age=N` on allowed forward-auth answers;
    /// 0 (the default): proxies must ask every time.
    #[serde(with = "duration")]
    pub auth_cache_max_age: Duration,
    /// Headers that carry the user on an allowed answer.
    pub user_headers: HeaderNames,
    /// Headers that carry the user's roles, comma-separated.
    pub groups_headers: HeaderNames,
    /// Headers that carry the session's public id (never the token).
    pub session_headers: HeaderNames,
    /// The application behind the built-in proxy (`http://127.0.0.1:3000`,
    /// optionally with a path prefix): every request that is not one of
    /// sessiond's own routes goes through the access rules and on to it.
    /// Unset: no proxy (such requests are 404).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// How long the application may take to connect.
    #[serde(with = "duration")]
    pub upstream_connect_timeout: Duration,
    /// How long the application may take to send its answer's head (the
    /// body then streams for as long as it takes). Must be below
    /// `server.request_timeout`, which bounds the whole exchange up to the
    /// answer's head (the request body included): raise both for slow
    /// applications or long uploads.
    #[serde(with = "duration")]
    pub upstream_timeout: Duration,
    /// With the store down, refuse rate-limited requests (503) instead of
    /// letting them pass (the default: a rate limit is not worth an outage).
    pub rate_limit_fail_closed: bool,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            login_url: "/login".into(),
            allowed_redirect_hosts: sessiond_gateway::RedirectPolicy::default(),
            auth_cache_max_age: Duration::ZERO,
            user_headers: HeaderNames::of(&["x-auth-request-user", "remote-user"]),
            groups_headers: HeaderNames::of(&["x-auth-request-groups", "remote-groups"]),
            session_headers: HeaderNames::of(&["x-auth-request-session"]),
            upstream: None,
            upstream_connect_timeout: Duration::from_secs(2),
            upstream_timeout: Duration::from_secs(9),
            rate_limit_fail_closed: false,
        }
    }
}

/// Durations as `"30m"`, `"1h 30m"`, `"800ms"` (humantime), or a plain
/// number of seconds (what an environment variable like `900` gives).
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(Visitor)
    }

    struct Visitor;

    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration such as \"30s\", \"15m\" or \"800ms\", or a number of seconds")
        }

        fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            humantime::parse_duration(text.trim()).map_err(|e| {
                E::custom(format!(
                    "{text:?} is not a duration ({e}); write it like \"30s\", \"15m\" or \"800ms\""
                ))
            })
        }
    }
}

/// An optional [`duration`]: absent is `None`.
pub(crate) mod duration_opt {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::duration::deserialize(d).map(Some)
    }
}

/// Values with `FromStr` and `Display` (the signature algorithm), parsed at
/// load so a typo names the key and the accepted values.
pub(crate) mod display_from_str {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}
