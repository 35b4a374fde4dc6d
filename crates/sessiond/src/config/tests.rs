//! The configuration as an operator meets it: sections from files and
//! nested variables, typed values, errors that name the key.

#![allow(clippy::result_large_err)] // figment::Jail's closures return figment::Error

use super::*;
use sessiond_axum::SameSite;

/// The error and its causes, as the CLI prints them.
fn chain(e: &ConfigError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[test]
fn the_key_encryption_key_is_read_from_its_file_and_a_bad_one_stops_the_load() {
    figment::Jail::expect_with(|jail| {
        let key = sessiond_jwt::KeyEncryptionKey::generate_text().expect("a key");
        jail.create_file("kek", &format!("{key}\n"))?;
        jail.create_file("short", "c2hvcnQ")?;
        jail.set_env("SESSIOND_TOKENS__KEY_ENCRYPTION_KEY_FILE", "kek");
        let c = ServerConfig::load(None).expect("loads");
        let read = c.token_settings().encryption.expect("the key is read");
        let sealed = read.seal(b"x", b"c").expect("seals");
        let same = sessiond_jwt::KeyEncryptionKey::from_text(&key).expect("parses");
        assert_eq!(same.open(&sealed, b"c").expect("opens"), b"x");
        for bad in ["short", "missing"] {
            jail.set_env("SESSIOND_TOKENS__KEY_ENCRYPTION_KEY_FILE", bad);
            let e = ServerConfig::load(None).expect_err("a bad key file is an error");
            assert!(e.to_string().contains("key_encryption_key_file"), "{e}");
            assert!(
                std::error::Error::source(&e).is_some(),
                "the cause is kept: {e:?}"
            );
        }
        Ok(())
    });
}

#[test]
fn nested_environment_variables_set_section_keys_and_unrelated_ones_are_ignored() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSIOND_SESSION__IDLE_TIMEOUT", "900");
        jail.set_env("SESSIOND_COOKIE__SAME_SITE", "lax");
        jail.set_env("SESSIOND_STORE__TIMEOUT", "250ms");
        jail.set_env("SESSIOND_REDIS__WAIT_REPLICAS", "1");
        jail.set_env("SESSIOND_LOGIN__MAX_CONCURRENT_HASHES", "3");
        jail.set_env("SESSIOND_LOG", "debug");
        jail.set_env("SESSIOND_REQUIRE_REDIS", "1");
        jail.set_env("SESSIOND_REQUIRE_BROWSER", "1");
        let c = ServerConfig::load(None).expect("loads");
        assert_eq!(c.session.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.cookie.same_site, SameSite::Lax);
        assert_eq!(c.store.timeout, Duration::from_millis(250));
        assert_eq!(c.redis.wait_replicas, 1);
        assert_eq!(c.login.hash_threads(), 3);
        Ok(())
    });
}

#[test]
fn a_file_sets_values_by_section_and_nonsense_is_refused_naming_the_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "s.toml",
            "[server]\nlisten = \"127.0.0.1:9999\"\n[session]\nrenewal_threshold = \"1m\"\n\
             [tokens]\nalgorithm = \"ES256\"\n[observability]\nlog_format = \"text\"\n",
        )?;
        let c = ServerConfig::load(Some(Path::new("s.toml"))).expect("loads");
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.session.renewal_threshold, Duration::from_secs(60));
        assert_eq!(c.tokens.algorithm, sessiond_jwt::Algorithm::ES256);
        assert!(!c.json_logs());
        jail.create_file("bad.toml", "[session]\nrenewal_threshold = \"99h\"\n")?;
        let e = ServerConfig::load(Some(Path::new("bad.toml"))).expect_err("refused");
        assert!(e.to_string().contains("session.renewal_threshold"), "{e}");
        Ok(())
    });
}

#[test]
fn a_typo_in_an_enum_value_names_the_key_and_the_accepted_values() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSIOND_TOKENS__ALGORITHM", "ED25519X");
        // Keys from the environment are named as the variable spells them.
        let e = chain(&ServerConfig::load(None).expect_err("unknown algorithm"));
        assert!(e.to_lowercase().contains("tokens.algorithm"), "{e}");
        assert!(e.contains("EdDSA, ES256, RS256 or HS256"), "{e}");
        jail.set_env("SESSIOND_TOKENS__ALGORITHM", "EdDSA");
        jail.set_env("SESSIOND_OBSERVABILITY__LOG_FORMAT", "yaml");
        let e = chain(&ServerConfig::load(None).expect_err("unknown format"));
        assert!(e.to_lowercase().contains("observability.log_format"), "{e}");
        assert!(
            e.contains("auto") && e.contains("json") && e.contains("text"),
            "{e}"
        );
        Ok(())
    });
}

#[test]
fn an_unknown_key_stops_the_load_naming_it() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSIOND_SESSION__IDLE_TIMEOUTT", "900");
        let e = chain(&ServerConfig::load(None).expect_err("typo"));
        assert!(e.contains("idle_timeoutt"), "{e}");
        jail.set_env("SESSIOND_SESSION__IDLE_TIMEOUTT", "");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.create_file("t.toml", "[sesion]\nidle_timeout = \"1m\"\n")?;
        let e = chain(&ServerConfig::load(Some(Path::new("t.toml"))).expect_err("unknown section"));
        assert!(e.contains("sesion"), "{e}");
        Ok(())
    });
}

#[test]
fn an_old_flat_key_names_its_new_place() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("SESSIOND_IDLE_TIMEOUT_SECS", "900");
        let e = chain(&ServerConfig::load(None).expect_err("old name"));
        assert!(e.contains("`idle_timeout` in the [session] table"), "{e}");
        assert!(e.contains("SESSIOND_SESSION__IDLE_TIMEOUT"), "{e}");
        Ok(())
    });
    figment::Jail::expect_with(|jail| {
        jail.create_file("old.toml", "store = \"redis://127.0.0.1:6379\"\n")?;
        let e = chain(&ServerConfig::load(Some(Path::new("old.toml"))).expect_err("old store key"));
        assert!(e.contains("`url` in the [store] table"), "{e}");
        Ok(())
    });
}

#[test]
fn every_readme_example_configuration_loads() {
    let readme = include_str!("../../../../README.md");
    let examples: Vec<&str> = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(examples.len() >= 2, "README.md has the TOML examples");
    let mut issuers = Vec::new();
    let mut rules = 0;
    for example in examples {
        figment::Jail::expect_with(|jail| {
            jail.create_file("example.toml", example)?;
            let c = ServerConfig::load(Some(Path::new("example.toml"))).expect("loads");
            issuers.push(c.tokens.issuer.clone());
            rules += c.access.rules.len();
            Ok(())
        });
    }
    assert!(
        issuers.iter().any(|i| i == "https://auth.example.com"),
        "{issuers:?}"
    );
    assert_eq!(rules, 5, "the gateway examples' access rules");
}

#[test]
fn the_changelog_migration_table_lists_every_renamed_key() {
    let changelog = include_str!("../../../../CHANGELOG.md");
    for (old, new) in RENAMED_KEYS {
        let row = format!("| `{old}` | `{new}` |");
        assert!(changelog.contains(&row), "CHANGELOG.md lacks {row}");
    }
}

#[test]
fn the_hashing_threads_default_to_one_fewer_than_the_cores_and_zero_is_refused() {
    let c = ServerConfig::from_toml("").expect("defaults load");
    assert_eq!(c.login.max_concurrent_hashes, None);
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    assert_eq!(c.login.hash_threads(), cores.saturating_sub(1).max(1));
    let e = ServerConfig::from_toml("[login]\nmax_concurrent_hashes = 0").unwrap_err();
    assert!(
        chain(&e).contains("login.max_concurrent_hashes"),
        "{}",
        chain(&e)
    );
}

#[test]
fn gateway_settings_are_checked_when_the_configuration_loads() {
    let bad_header = ServerConfig::from_toml("[gateway]\nuser_headers = [\"X User\"]\n")
        .expect_err("a header name with a space");
    assert!(
        chain(&bad_header).contains("\"X User\" is not a header name"),
        "{}",
        chain(&bad_header)
    );
    let bad_rule =
        ServerConfig::from_toml("[[access.rules]]\npath = \"/a\"\nallow = \"everyone\"\n")
            .expect_err("an unknown allow word");
    assert!(
        chain(&bad_rule).contains("allow must be"),
        "{}",
        chain(&bad_rule)
    );
    let bad_rd = ServerConfig::from_toml("[gateway]\nallowed_redirect_hosts = [\"a/b\"]\n")
        .expect_err("a host with a slash");
    assert!(chain(&bad_rd).contains("a/b"), "{}", chain(&bad_rd));
    let bad_login = ServerConfig::from_toml("[gateway]\nlogin_url = \"//evil.example/login\"\n")
        .expect_err("a protocol-relative login URL");
    assert!(
        chain(&bad_login).contains("gateway.login_url"),
        "{}",
        chain(&bad_login)
    );
    let ok = ServerConfig::from_toml(
        "[gateway]\nupstream = \"http://127.0.0.1:3000\"\nuser_headers = [\"X-User\"]\n[access]\ndefault = [\"staff\"]\n",
    )
    .expect("loads");
    assert_eq!(ok.gateway.user_headers.0[0], "x-user");
}

#[test]
fn a_public_rate_limit_that_cannot_be_read_stops_the_start() {
    let e = ServerConfig::from_toml("[rate_limit]\npublic = \"many\"\n").expect_err("not a rate");
    assert!(chain(&e).contains("rate_limit.public"), "{}", chain(&e));
    let ok = ServerConfig::from_toml("[rate_limit]\npublic = \"20/s\"\npublic_burst = 40\n")
        .expect("loads");
    assert_eq!(ok.rate_limit.public_rate().map(|r| r.burst), Some(40));
}

#[test]
fn the_upstream_timeout_must_be_below_the_request_deadline() {
    let e = ServerConfig::from_toml("[gateway]\nupstream_timeout = \"30s\"\n")
        .expect_err("above the 10 s deadline");
    assert!(
        chain(&e).contains("gateway.upstream_timeout"),
        "{}",
        chain(&e)
    );
    ServerConfig::from_toml(
        "[server]\nrequest_timeout = \"60s\"\n[gateway]\nupstream_timeout = \"30s\"\n",
    )
    .expect("both raised");
}
