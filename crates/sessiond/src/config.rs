//! `ServerConfig`: defaults, then a TOML file, then `SESSIOND_*` environment
//! variables, then command-line flags (each overriding the one before).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use sessiond_axum::{CookieConfig, SameSite};
use sessiond_core::ExpiryPolicy;

/// Everything `sessiond serve` can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The embedded store's folder (used when `store` is not set).
    pub data_dir: PathBuf,
    /// A Redis store URL (`redis://…`, `redis+sentinel://h:p,h:p/name`,
    /// `redis+cluster://h:p,h:p`); unset means the embedded file store.
    pub store: Option<String>,
    /// Key prefix in Redis, so several applications can share one Redis.
    pub redis_prefix: String,
    /// Replica acknowledgements a create, cycle or revoke waits for (Redis `WAIT`).
    pub redis_wait_replicas: u32,
    /// Multiplexed connections to a standalone Redis.
    pub redis_pool_size: usize,
    /// How often the live-session gauge's figure is recounted on Redis
    /// (a background `SCAN` of the session keys), seconds.
    pub redis_count_interval_secs: u64,
    /// For `rediss://` with a private CA: the CA certificate (PEM).
    pub redis_tls_ca_file: Option<PathBuf>,
    /// Idle timeout, seconds.
    pub idle_timeout_secs: u64,
    /// Absolute session lifetime, seconds.
    pub absolute_lifetime_secs: u64,
    /// Renew only when less than this many seconds of the idle timeout remain.
    pub renewal_threshold_secs: u64,
    /// Session cookie name.
    pub cookie_name: String,
    /// Send the cookie with `Secure` (turn off only for plain-HTTP development
    /// on a host other than localhost).
    pub cookie_secure: bool,
    /// `SameSite` of the session cookie: `strict` or `lax`.
    pub cookie_same_site: SameSite,
    /// Extra origins accepted by the CSRF origin check (`https://app.example.com`).
    pub allowed_origins: Vec<String>,
    /// Whole-request deadline, seconds.
    pub request_timeout_secs: u64,
    /// Deadline of one store call, retries included, milliseconds.
    pub store_timeout_ms: u64,
    /// Retries of a store call that is safe to repeat, after a transient failure.
    pub store_retries: u32,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// Largest accepted total size of request headers, bytes.
    pub header_limit_bytes: usize,
    /// Password hashes computed at once (each takes ~19 MiB and a core for ~30 ms).
    pub max_concurrent_hashes: usize,
    /// Failed logins per username before it is throttled, per window.
    pub login_failures_per_user: u32,
    /// Failed logins per client IP before it is throttled, per window.
    pub login_failures_per_ip: u32,
    /// The throttling window, seconds.
    pub login_throttle_window_secs: u64,
    /// Log format: `auto` (JSON unless stderr is a terminal), `json` or `text`.
    pub log_format: String,
    /// Signature algorithm of access tokens: `EdDSA` (default), `ES256`,
    /// `RS256`, or `HS256` (a shared secret: only if you ask for it).
    pub jwt_algorithm: String,
    /// `iss` of access tokens (use the server's public URL).
    pub jwt_issuer: String,
    /// `aud` of access tokens.
    pub jwt_audience: String,
    /// Access-token lifetime, seconds.
    pub access_token_ttl_secs: u64,
    /// Clock skew tolerated when verifying access tokens, seconds (at most 300).
    pub jwt_leeway_secs: u64,
    /// How long a just-spent refresh token still returns the same successor
    /// (concurrent refreshes from one client), seconds.
    pub refresh_grace_secs: u64,
    /// Rotate the signing key after this many days; 0: only with `sessiond keys rotate`.
    pub key_rotation_days: u64,
    /// A file holding a 256-bit key (base64, as `sessiond keys new-encryption-key`
    /// prints) that encrypts the signing key ring in the store. Set it on
    /// every node whenever others can read the store (a shared Redis, its
    /// replicas and backups): a readable private key mints tokens for anyone.
    pub key_encryption_key_file: Option<PathBuf>,
    /// While replacing the key-encryption key: the file of the old one. A
    /// ring sealed with it still opens and is sealed again with the new one.
    pub previous_key_encryption_key_file: Option<PathBuf>,
    /// The key read from `key_encryption_key_file` by [`ServerConfig::load`].
    #[serde(skip)]
    pub key_encryption_key: Option<sessiond_jwt::KeyEncryptionKey>,
    /// The key read from `previous_key_encryption_key_file`.
    #[serde(skip)]
    pub previous_key_encryption_key: Option<sessiond_jwt::KeyEncryptionKey>,
    /// Bearer requests on routes that check the session, while the store is
    /// down: `trust_signature` (default: the token's lifetime bounds the
    /// staleness) or `fail_closed` (503). Cookie sessions always fail closed:
    /// without the store there is nothing to check them against.
    pub bearer_when_store_down: sessiond_axum::StoreDownPolicy,
    /// Serve Prometheus metrics at `/metrics` and record them.
    pub metrics_enabled: bool,
    /// Serve `/metrics` on this address instead of the main listener (so it
    /// need not be public).
    pub metrics_listen: Option<SocketAddr>,
    /// One log line per request (target `sessiond::access`).
    pub access_log: bool,
    /// OpenTelemetry OTLP/gRPC endpoint for traces (`http://collector:4317`);
    /// needs a build with the `otel` feature.
    pub otlp_endpoint: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let policy = ExpiryPolicy::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            store: None,
            redis_prefix: "sessiond:".into(),
            redis_wait_replicas: 0,
            redis_pool_size: 1,
            redis_count_interval_secs: 300,
            redis_tls_ca_file: None,
            idle_timeout_secs: policy.idle_timeout.as_secs(),
            absolute_lifetime_secs: policy.absolute_lifetime.as_secs(),
            renewal_threshold_secs: policy.renewal_threshold.as_secs(),
            cookie_name: CookieConfig::default().name,
            cookie_secure: true,
            cookie_same_site: SameSite::Strict,
            allowed_origins: Vec::new(),
            request_timeout_secs: 10,
            store_timeout_ms: 800,
            store_retries: 2,
            body_limit_bytes: 64 * 1024,
            header_limit_bytes: 16 * 1024,
            max_concurrent_hashes: 2,
            login_failures_per_user: 5,
            login_failures_per_ip: 50,
            login_throttle_window_secs: 15 * 60,
            log_format: "auto".into(),
            jwt_algorithm: "EdDSA".into(),
            jwt_issuer: "sessiond".into(),
            jwt_audience: "sessiond".into(),
            access_token_ttl_secs: 300,
            jwt_leeway_secs: 30,
            refresh_grace_secs: 5,
            key_rotation_days: 30,
            key_encryption_key_file: None,
            previous_key_encryption_key_file: None,
            key_encryption_key: None,
            previous_key_encryption_key: None,
            bearer_when_store_down: sessiond_axum::StoreDownPolicy::TrustSignature,
            metrics_enabled: true,
            metrics_listen: None,
            access_log: true,
            otlp_endpoint: None,
        }
    }
}

/// Whether a `SESSIOND_*` variable (prefix stripped) is not a configuration
/// field: logging, the config file path, and the test switches
/// (`SESSIOND_REQUIRE_*`), which strict parsing must not refuse.
fn not_config(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "log" || key == "config" || key.starts_with("require_")
}

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file or an environment variable could not be read or parsed.
    #[error("invalid configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl ServerConfig {
    /// Loads defaults ← `file` ← `SESSIOND_*` environment variables.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        let mut config: ServerConfig = figment
            .merge(Env::prefixed("SESSIOND_").filter(|k| !not_config(k.as_str())))
            .extract()
            .map_err(Box::new)?;
        config.validate()?;
        config.key_encryption_key = read_key_file(
            config.key_encryption_key_file.as_deref(),
            "key_encryption_key_file",
        )?;
        config.previous_key_encryption_key = read_key_file(
            config.previous_key_encryption_key_file.as_deref(),
            "previous_key_encryption_key_file",
        )?;
        if config.previous_key_encryption_key.is_some() && config.key_encryption_key.is_none() {
            return Err(ConfigError::Invalid(
                "previous_key_encryption_key_file needs key_encryption_key_file (the new key)"
                    .into(),
            ));
        }
        Ok(config)
    }

    /// Checks the values that have to make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.idle_timeout_secs == 0 || self.absolute_lifetime_secs == 0 {
            return bad("timeouts must be positive");
        }
        if self.renewal_threshold_secs > self.idle_timeout_secs {
            return bad("renewal_threshold_secs cannot exceed idle_timeout_secs");
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return bad("cookie_name must be letters, digits, '-' or '_'");
        }
        if !["auto", "json", "text"].contains(&self.log_format.as_str()) {
            return bad("log_format must be auto, json or text");
        }
        if self.max_concurrent_hashes == 0 {
            return bad("max_concurrent_hashes must be at least 1");
        }
        if let Err(e) = self.jwt_algorithm.parse::<sessiond_jwt::Algorithm>() {
            return Err(ConfigError::Invalid(e.to_string()));
        }
        if !(30..=3600).contains(&self.access_token_ttl_secs) {
            return bad("access_token_ttl_secs must be 30-3600: access tokens are not revocable");
        }
        if self.jwt_leeway_secs > 300 {
            return bad("jwt_leeway_secs must be at most 300");
        }
        if self.refresh_grace_secs > 60 {
            return bad("refresh_grace_secs must be at most 60");
        }
        if self.jwt_issuer.is_empty() || self.jwt_audience.is_empty() {
            return bad("jwt_issuer and jwt_audience must not be empty");
        }
        Ok(())
    }

    /// The expiry policy.
    pub fn policy(&self) -> ExpiryPolicy {
        ExpiryPolicy {
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            absolute_lifetime: Duration::from_secs(self.absolute_lifetime_secs),
            renewal_threshold: Duration::from_secs(self.renewal_threshold_secs),
        }
    }

    /// Whether logs are JSON: `json`, or `auto` (the default) when stderr is
    /// not a terminal (a service manager or a container runtime collects it).
    pub fn json_logs(&self) -> bool {
        use std::io::IsTerminal as _;
        match self.log_format.as_str() {
            "json" => true,
            "text" => false,
            _ => !std::io::stderr().is_terminal(),
        }
    }

    /// The access-token settings.
    pub fn tokens(&self) -> crate::tokens::TokenSettings {
        crate::tokens::TokenSettings {
            algorithm: self
                .jwt_algorithm
                .parse()
                .unwrap_or(sessiond_jwt::Algorithm::EdDSA),
            rules: sessiond_jwt::Rules::new(&self.jwt_issuer, &self.jwt_audience)
                .with_leeway(self.jwt_leeway_secs),
            access_ttl: Duration::from_secs(self.access_token_ttl_secs),
            refresh_grace: Duration::from_secs(self.refresh_grace_secs),
            rotate_after: (self.key_rotation_days > 0)
                .then(|| Duration::from_secs(self.key_rotation_days * 86_400)),
            encryption: self.key_encryption_key.clone(),
            previous_encryption: self.previous_key_encryption_key.clone(),
        }
    }

    /// The cookie settings.
    pub fn cookie(&self) -> CookieConfig {
        CookieConfig {
            name: self.cookie_name.clone(),
            secure: self.cookie_secure,
            same_site: self.cookie_same_site,
        }
    }
}

/// Reads a key-encryption key from `path`, if one is configured.
fn read_key_file(
    path: Option<&std::path::Path>,
    setting: &str,
) -> Result<Option<sessiond_jwt::KeyEncryptionKey>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!("cannot read {setting} {}: {e}", path.display()))
    })?;
    sessiond_jwt::KeyEncryptionKey::from_text(&text)
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("{setting} {}: {e}", path.display())))
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error
mod tests {
    use super::*;

    #[test]
    fn the_key_encryption_key_is_read_from_its_file_and_a_bad_one_stops_the_load() {
        figment::Jail::expect_with(|jail| {
            let key = sessiond_jwt::KeyEncryptionKey::generate_text().expect("a key");
            jail.create_file("kek", &format!("{key}\n"))?;
            jail.create_file("short", "c2hvcnQ")?;
            jail.set_env("SESSIOND_KEY_ENCRYPTION_KEY_FILE", "kek");
            let c = ServerConfig::load(None).expect("loads");
            let read = c.tokens().encryption.expect("the key is read");
            let sealed = read.seal(b"x", b"c").expect("seals");
            let same = sessiond_jwt::KeyEncryptionKey::from_text(&key).expect("parses");
            assert_eq!(same.open(&sealed, b"c").expect("opens"), b"x");
            for bad in ["short", "missing"] {
                jail.set_env("SESSIOND_KEY_ENCRYPTION_KEY_FILE", bad);
                let e = ServerConfig::load(None).expect_err("a bad key file is an error");
                assert!(e.to_string().contains("key_encryption_key_file"), "{e}");
            }
            Ok(())
        });
    }

    #[test]
    fn environment_variables_override_defaults_and_unrelated_ones_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESSIOND_IDLE_TIMEOUT_SECS", "900");
            jail.set_env("SESSIOND_COOKIE_SAME_SITE", "lax");
            jail.set_env("SESSIOND_LOG", "debug");
            jail.set_env("SESSIOND_REQUIRE_REDIS", "1");
            jail.set_env("SESSIOND_REQUIRE_BROWSER", "1");
            let c = ServerConfig::load(None).expect("loads");
            assert_eq!(c.idle_timeout_secs, 900);
            assert_eq!(c.cookie_same_site, SameSite::Lax);
            Ok(())
        });
    }

    #[test]
    fn logs_are_json_or_text_as_asked_and_other_formats_are_refused() {
        let json = ServerConfig {
            log_format: "json".into(),
            ..ServerConfig::default()
        };
        assert!(json.json_logs());
        let text = ServerConfig {
            log_format: "text".into(),
            ..ServerConfig::default()
        };
        assert!(!text.json_logs());
        let odd = ServerConfig {
            log_format: "yaml".into(),
            ..ServerConfig::default()
        };
        assert!(odd.validate().is_err());
        assert!(ServerConfig::default().validate().is_ok());
    }

    #[test]
    fn a_typo_in_a_variable_is_an_error_not_a_silent_default() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SESSIOND_IDLE_TIMEOUT_SEC", "900");
            assert!(ServerConfig::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn a_file_sets_values_and_nonsense_is_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "s.toml",
                "listen = \"127.0.0.1:9999\"\nrenewal_threshold_secs = 60\n",
            )?;
            let c = ServerConfig::load(Some(std::path::Path::new("s.toml"))).expect("loads");
            assert_eq!(c.listen.port(), 9999);
            jail.create_file("bad.toml", "renewal_threshold_secs = 99999\n")?;
            assert!(ServerConfig::load(Some(std::path::Path::new("bad.toml"))).is_err());
            Ok(())
        });
    }
}
