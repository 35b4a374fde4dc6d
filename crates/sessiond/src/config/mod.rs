//! [`ServerConfig`]: defaults, then a TOML file, then `SESSIOND_*`
//! environment variables, then command-line flags (each overriding the one
//! before). The file has one table per concern (`[server]`, `[store]`,
//! `[redis]`, `[session]`, `[cookie]`, `[csrf]`, `[login]`, `[tokens]`,
//! `[observability]`); environment variables follow the nesting with a
//! double underscore: `SESSIOND_SESSION__IDLE_TIMEOUT=15m` sets
//! `[session] idle_timeout`. Unknown keys and bad values stop the load with
//! a message naming the key; keys of the flat layout before 0.2 name their
//! new place (CHANGELOG.md has the whole table).

mod sections;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sessiond_axum::CookieConfig;
use sessiond_core::{AttributeBudget, ExpiryPolicy};

pub use sections::{
    AccessSection, CacheSection, CookieSection, CsrfSection, GatewaySection, HeaderNames,
    LogFormat, LoginSection, ObservabilitySection, OnLimitSetting, PasswordsSection,
    RateLimitSection, RedisSection, RoleSection, ServerSection, SessionSection, StoreSection,
    TokensSection,
};

/// Everything `sessiond serve` can be told, by section.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// `[server]`: listener and request limits.
    pub server: ServerSection,
    /// `[store]`: which store, and store-call deadlines and retries.
    pub store: StoreSection,
    /// `[redis]`: the Redis store's settings.
    pub redis: RedisSection,
    /// `[session]`: timeouts.
    pub session: SessionSection,
    /// `[cookie]`: the session cookie.
    pub cookie: CookieSection,
    /// `[csrf]`: allowed origins.
    pub csrf: CsrfSection,
    /// `[login]`: hashing and throttling.
    pub login: LoginSection,
    /// `[passwords]`: password rules and hashing cost.
    pub passwords: PasswordsSection,
    /// `[tokens]`: access and refresh tokens.
    pub tokens: TokensSection,
    /// `[observability]`: logs, metrics, traces.
    pub observability: ObservabilitySection,
    /// `[access]`: access rules for the application behind the gateway.
    pub access: AccessSection,
    /// `[gateway]`: forward-auth answers and the login redirect.
    pub gateway: GatewaySection,
    /// `[rate_limit]`: limits on sessiond's own public routes.
    pub rate_limit: RateLimitSection,
    /// `[cache]`: the built-in proxy's response cache.
    pub cache: CacheSection,
    /// `[roles.<name>]`: per-role timeouts, session limits and
    /// re-authentication windows.
    pub roles: std::collections::BTreeMap<String, RoleSection>,
}

/// Keys of the flat configuration before sections (0.1), and where each
/// went. Only used to name the new key when an old one is found; the
/// CHANGELOG's migration table is checked against this list.
pub const RENAMED_KEYS: &[(&str, &str)] = &[
    ("listen", "server.listen"),
    ("store", "store.url"),
    ("request_timeout_secs", "server.request_timeout"),
    ("body_limit_bytes", "server.body_limit_bytes"),
    ("header_limit_bytes", "server.header_limit_bytes"),
    ("data_dir", "store.data_dir"),
    ("store_timeout_ms", "store.timeout"),
    ("store_retries", "store.retries"),
    ("redis_prefix", "redis.prefix"),
    ("redis_wait_replicas", "redis.wait_replicas"),
    ("redis_pool_size", "redis.pool_size"),
    ("redis_count_interval_secs", "redis.count_interval"),
    ("redis_tls_ca_file", "redis.tls_ca_file"),
    ("idle_timeout_secs", "session.idle_timeout"),
    ("absolute_lifetime_secs", "session.absolute_lifetime"),
    ("renewal_threshold_secs", "session.renewal_threshold"),
    ("cookie_name", "cookie.name"),
    ("cookie_secure", "cookie.secure"),
    ("cookie_same_site", "cookie.same_site"),
    ("allowed_origins", "csrf.allowed_origins"),
    ("max_concurrent_hashes", "login.max_concurrent_hashes"),
    ("login_failures_per_user", "login.failures_per_user"),
    ("login_failures_per_ip", "login.failures_per_ip"),
    ("login_throttle_window_secs", "login.throttle_window"),
    ("jwt_algorithm", "tokens.algorithm"),
    ("jwt_issuer", "tokens.issuer"),
    ("jwt_audience", "tokens.audience"),
    ("access_token_ttl_secs", "tokens.access_token_ttl"),
    ("jwt_leeway_secs", "tokens.leeway"),
    ("refresh_grace_secs", "tokens.refresh_grace"),
    ("key_rotation_days", "tokens.key_rotation"),
    ("key_encryption_key_file", "tokens.key_encryption_key_file"),
    (
        "previous_key_encryption_key_file",
        "tokens.previous_key_encryption_key_file",
    ),
    ("bearer_when_store_down", "tokens.bearer_when_store_down"),
    ("log_format", "observability.log_format"),
    ("metrics_enabled", "observability.metrics"),
    ("metrics_listen", "observability.metrics_listen"),
    ("access_log", "observability.access_log"),
    ("otlp_endpoint", "observability.otlp_endpoint"),
];

/// Whether a `SESSIOND_*` variable (prefix stripped) is not a configuration
/// key: logging, the config file path, and the test switches
/// (`SESSIOND_REQUIRE_*`), which strict parsing must not refuse.
fn not_config(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "log" || key == "config" || key.starts_with("require_")
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed
    /// (figment's message names the key and where it came from).
    #[error("invalid configuration")]
    Load(#[source] Box<figment::Error>),
    /// A key of the flat layout before sections.
    #[error(
        "invalid configuration: `{old}` has moved: write `{key}` in the [{section}] table, \
         or set SESSIOND_{env} (see CHANGELOG.md)",
        section = new.split_once('.').map_or("", |(s, _)| s),
        key = new.split_once('.').map_or(*new, |(_, k)| k),
        env = new.to_ascii_uppercase().replace('.', "__")
    )]
    Renamed {
        /// The old key.
        old: &'static str,
        /// Where it went (`section.key`).
        new: &'static str,
    },
    /// A value out of range, or values that do not fit together.
    #[error("invalid configuration: {key}: {reason}")]
    Invalid {
        /// The key (`section.key`).
        key: &'static str,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A key file could not be read.
    #[error("cannot read {key} {}", path.display())]
    KeyFile {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold a key-encryption key.
    #[error("{key} {} does not hold a key made by `sessiond keys new-encryption-key`", path.display())]
    BadKey {
        /// The setting naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: sessiond_jwt::KeyError,
    },
}

impl ConfigError {
    /// The old flat key behind a figment error, when that is what it is.
    fn from_figment(error: figment::Error) -> Self {
        use figment::error::Kind;
        let renamed = error.clone().into_iter().find_map(|e| {
            let old = match &e.kind {
                // At the top level (the path names the field itself).
                Kind::UnknownField(field, _) if e.path.len() <= 1 => field.as_str(),
                // `store = "redis://…"`: `store` is a table now.
                Kind::InvalidType(..)
                    if e.path.len() == 1 && e.path[0].eq_ignore_ascii_case("store") =>
                {
                    "store"
                }
                _ => return None,
            };
            RENAMED_KEYS
                .iter()
                .find(|(o, _)| *o == old)
                .map(|(old, new)| ConfigError::Renamed { old, new })
        });
        renamed.unwrap_or_else(|| ConfigError::Load(Box::new(error)))
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl ServerConfig {
    /// Loads defaults ← `file` ← `SESSIOND_*` environment variables, checks
    /// the values and reads the key files.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = Env::prefixed("SESSIOND_")
            .filter(|k| !not_config(k.as_str()))
            .split("__");
        let mut config: ServerConfig = figment
            .merge(env)
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate()?;
        let tokens = &mut config.tokens;
        tokens.key_encryption_key = read_key_file(
            tokens.key_encryption_key_file.as_deref(),
            "tokens.key_encryption_key_file",
        )?;
        tokens.previous_key_encryption_key = read_key_file(
            tokens.previous_key_encryption_key_file.as_deref(),
            "tokens.previous_key_encryption_key_file",
        )?;
        if tokens.previous_key_encryption_key.is_some() && tokens.key_encryption_key.is_none() {
            return Err(invalid(
                "tokens.previous_key_encryption_key_file",
                "needs tokens.key_encryption_key_file (the new key)",
            ));
        }
        Ok(config)
    }

    /// Defaults ← `toml` (no environment, no key files): what a file alone
    /// says, checked the same way.
    pub fn from_toml(toml: &str) -> Result<Self, ConfigError> {
        let config: ServerConfig = Figment::from(Serialized::defaults(ServerConfig::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(ConfigError::from_figment)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values that have to make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let g = &self.gateway;
        if g.upstream_timeout >= self.server.request_timeout {
            return Err(invalid(
                "gateway.upstream_timeout",
                "must be below server.request_timeout (which would answer first, with a 503)",
            ));
        }
        if let Some(rate) = &self.rate_limit.public {
            sessiond_core::Rate::parse(rate, self.rate_limit.public_burst)
                .map_err(|e| invalid("rate_limit.public", e.to_string()))?;
        }
        let login = g.login_url.to_ascii_lowercase();
        let path = login.starts_with('/') && !login.starts_with("//");
        let url = login.starts_with("https://") || login.starts_with("http://");
        if !path && !url {
            return Err(invalid(
                "gateway.login_url",
                "must be a path (/login) or an http(s) URL",
            ));
        }
        if self.server.header_read_timeout.is_zero() {
            return Err(invalid("server.header_read_timeout", "must be positive"));
        }
        if self.server.max_connections == 0 {
            return Err(invalid("server.max_connections", "must be at least 1"));
        }
        let s = &self.session;
        if s.idle_timeout.is_zero() {
            return Err(invalid("session.idle_timeout", "must be positive"));
        }
        if s.absolute_lifetime.is_zero() {
            return Err(invalid("session.absolute_lifetime", "must be positive"));
        }
        if s.renewal_threshold > s.idle_timeout {
            return Err(invalid(
                "session.renewal_threshold",
                "cannot exceed session.idle_timeout",
            ));
        }
        if s.remember_idle_timeout.is_zero() || s.remember_absolute_lifetime.is_zero() {
            return Err(invalid(
                "session.remember_idle_timeout",
                "remembered sessions need positive timeouts (turn remember_me off instead)",
            ));
        }
        for (name, role) in &self.roles {
            let zero = [
                role.idle_timeout,
                role.absolute_lifetime,
                role.reauth_window,
            ]
            .into_iter()
            .flatten()
            .any(|d| d.is_zero());
            if zero {
                return Err(invalid(
                    "roles",
                    format!(
                        "[roles.{name}]: timeouts must be positive (leave one out to keep the default)"
                    ),
                ));
            }
        }
        let name = &self.cookie.name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(invalid("cookie.name", "use letters, digits, '-' or '_'"));
        }
        if self.login.max_concurrent_hashes == Some(0) {
            return Err(invalid("login.max_concurrent_hashes", "must be at least 1"));
        }
        if !(0..=19).contains(&self.login.hash_nice) {
            return Err(invalid(
                "login.hash_nice",
                "must be 0 (normal) to 19 (lowest)",
            ));
        }
        let p = &self.passwords;
        if !(crate::password_rules::LOWEST_MIN_LENGTH..=128).contains(&p.min_length) {
            return Err(invalid("passwords.min_length", "must be 8 to 128"));
        }
        if p.min_strength > 4 {
            return Err(invalid("passwords.min_strength", "must be 0 to 4"));
        }
        self.argon2_params()
            .argon2()
            .map_err(|e| invalid("passwords.argon2_memory_kib", e.to_string()))?;
        let t = &self.tokens;
        if !(Duration::from_secs(30)..=Duration::from_secs(3600)).contains(&t.access_token_ttl) {
            return Err(invalid(
                "tokens.access_token_ttl",
                "must be 30s to 1h: access tokens are not revocable",
            ));
        }
        if t.leeway > Duration::from_secs(300) {
            return Err(invalid("tokens.leeway", "must be at most 5m"));
        }
        if t.refresh_grace > Duration::from_secs(60) {
            return Err(invalid("tokens.refresh_grace", "must be at most 1m"));
        }
        if t.issuer.is_empty() {
            return Err(invalid("tokens.issuer", "must not be empty"));
        }
        if t.audience.is_empty() {
            return Err(invalid("tokens.audience", "must not be empty"));
        }
        Ok(())
    }

    /// The session rules: the expiry policy, remembered sessions, per-role
    /// timeouts and the limit on a user's live sessions.
    pub fn session_rules(&self) -> sessiond_core::SessionRules {
        let s = &self.session;
        let mut rules = sessiond_core::SessionRules::new(self.policy());
        rules.remember = s.remember_me.then_some(ExpiryPolicy {
            idle_timeout: s.remember_idle_timeout,
            absolute_lifetime: s.remember_absolute_lifetime,
            // Derived from the share of the normal policy's.
            renewal_threshold: Duration::ZERO,
        });
        rules.max_sessions = s.max_sessions_per_user;
        rules.on_limit = match s.on_limit {
            OnLimitSetting::EvictOldest => sessiond_core::OnLimit::EvictOldest,
            OnLimitSetting::Refuse => sessiond_core::OnLimit::Refuse,
        };
        rules.roles = self
            .roles
            .iter()
            .map(|(name, r)| {
                (
                    name.clone(),
                    sessiond_core::RoleRules {
                        idle_timeout: r.idle_timeout,
                        absolute_lifetime: r.absolute_lifetime,
                        max_sessions: r.max_sessions_per_user,
                    },
                )
            })
            .collect();
        rules
    }

    /// How recent a password proof a user with `roles` needs for a
    /// sensitive action: the shortest of `[session] reauth_window` and
    /// their roles' windows.
    pub fn reauth_window(&self, roles: &[String]) -> Duration {
        roles
            .iter()
            .filter_map(|r| self.roles.get(r)?.reauth_window)
            .fold(self.session.reauth_window, Duration::min)
    }

    /// The expiry policy.
    pub fn policy(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            idle_timeout: self.session.idle_timeout,
            absolute_lifetime: self.session.absolute_lifetime,
            renewal_threshold: self.session.renewal_threshold,
        }
    }

    /// The rules new passwords must follow.
    pub fn password_rules(&self) -> crate::password_rules::PasswordRules {
        crate::password_rules::PasswordRules {
            min_length: self.passwords.min_length,
            min_strength: self.passwords.min_strength,
            ..Default::default()
        }
    }

    /// argon2id's parameters for new hashes.
    pub fn argon2_params(&self) -> crate::password::Argon2Params {
        crate::password::Argon2Params {
            memory_kib: self.passwords.argon2_memory_kib,
            iterations: self.passwords.argon2_iterations,
            parallelism: self.passwords.argon2_parallelism,
        }
    }

    /// The attribute budget of every session.
    pub fn attribute_budget(&self) -> AttributeBudget {
        AttributeBudget {
            max_count: self.session.max_attributes,
            max_bytes: self.session.max_attribute_bytes,
        }
    }

    /// Whether logs are JSON: `json`, or `auto` (the default) when stderr is
    /// not a terminal (a service manager or a container runtime collects it).
    pub fn json_logs(&self) -> bool {
        use std::io::IsTerminal as _;
        match self.observability.log_format {
            LogFormat::Json => true,
            LogFormat::Text => false,
            LogFormat::Auto => !std::io::stderr().is_terminal(),
        }
    }

    /// The access-token settings.
    pub fn token_settings(&self) -> crate::tokens::TokenSettings {
        let t = &self.tokens;
        crate::tokens::TokenSettings {
            algorithm: t.algorithm,
            rules: sessiond_jwt::Rules::new(&t.issuer, &t.audience).with_leeway(t.leeway.as_secs()),
            access_ttl: t.access_token_ttl,
            refresh_grace: t.refresh_grace,
            rotate_after: (!t.key_rotation.is_zero()).then_some(t.key_rotation),
            encryption: t.key_encryption_key.clone(),
            previous_encryption: t.previous_key_encryption_key.clone(),
        }
    }

    /// The session cookie.
    pub fn session_cookie(&self) -> CookieConfig {
        CookieConfig::new(
            self.cookie.name.clone(),
            self.cookie.secure,
            self.cookie.same_site,
        )
    }
}

/// Reads a key-encryption key from `path`, if one is configured.
fn read_key_file(
    path: Option<&Path>,
    key: &'static str,
) -> Result<Option<sessiond_jwt::KeyEncryptionKey>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::KeyFile {
        key,
        path: path.to_owned(),
        source,
    })?;
    sessiond_jwt::KeyEncryptionKey::from_text(&text)
        .map(Some)
        .map_err(|source| ConfigError::BadKey {
            key,
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests;
