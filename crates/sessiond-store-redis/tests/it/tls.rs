//! `rediss://`: the store talks to a real TLS-only Redis, verifying its
//! certificate against a given CA, and refuses one it cannot verify.

use std::process::Command;

use sessiond_core::testing::{key_for, sample_record};
use sessiond_core::{Clock, SessionStore, SystemClock};
use sessiond_store_redis::testing::{self, RedisProcess, free_port};
use sessiond_store_redis::{RedisConfig, RedisStore};

#[tokio::test]
async fn a_tls_redis_serves_sessions_and_an_unverifiable_certificate_is_refused() {
    if !testing::redis_available("redis TLS") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (ca, ca_key, cert, key, csr, ext) = (
        path("ca.pem"),
        path("ca.key"),
        path("cert.pem"),
        path("key.pem"),
        path("req.csr"),
        path("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A CA, and a server certificate for 127.0.0.1 that it signs.
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=sessiond test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ] {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is needed to make test certificates");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tls_port = free_port();
    let server = RedisProcess::start_tls(
        tls_port,
        &[
            "--tls-cert-file".into(),
            cert.clone(),
            "--tls-key-file".into(),
            key.clone(),
            "--tls-ca-cert-file".into(),
            ca.clone(),
            "--tls-auth-clients".into(),
            "no".into(),
        ],
    );
    let mut config = RedisConfig::new(format!("rediss://127.0.0.1:{}", server.port));
    config.tls_ca_file = Some(ca.clone().into());
    let store = RedisStore::connect(&config).await.unwrap();
    let key = key_for(&store, "tls");
    let record = sample_record("tls", SystemClock.now(), &Default::default());
    store.create(&key, &record).await.unwrap();
    assert_eq!(
        store.load(&key, SystemClock.now()).await.unwrap(),
        Some(record)
    );

    // Without the CA the certificate cannot be verified: no connection.
    config.tls_ca_file = None;
    assert!(RedisStore::connect(&config).await.is_err());
    // Plain text to a TLS port does not work either.
    assert!(
        RedisStore::connect(&RedisConfig::new(format!(
            "redis://127.0.0.1:{}",
            server.port
        )))
        .await
        .is_err()
    );
}
