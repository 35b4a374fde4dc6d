//! Signing, rotation, JWKS and the RFC 8725 rules, against real keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sessiond_jwt::testing::{attack_tokens, claims};
use sessiond_jwt::{Algorithm, KeyRing, RemoteJwks, Rules, TokenVerifier, VerifyError};

const ISS: &str = "https://sessiond.test";
const AUD: &str = "api";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn rules() -> Rules {
    Rules::new(ISS, AUD)
}

#[test]
fn every_algorithm_signs_tokens_its_own_key_set_verifies() {
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::HS256,
    ] {
        let ring = KeyRing::generate(alg, now()).unwrap();
        let c = claims(ISS, AUD, "alice", now());
        let token = ring.active().sign(&c).unwrap();
        assert_eq!(ring.key_set().verify(&token, &rules()), Ok(c), "{alg}");
        // The ring survives its stored form.
        let reread = KeyRing::from_bytes(&ring.to_bytes()).unwrap();
        assert_eq!(reread.active().kid(), ring.active().kid());
        assert!(
            reread.key_set().verify(&token, &rules()).is_ok(),
            "{alg} after reload"
        );
    }
}

#[test]
fn every_attack_token_is_refused_for_every_asymmetric_algorithm() {
    for alg in [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256] {
        let ring = KeyRing::generate(alg, now()).unwrap();
        let good = claims(ISS, AUD, "alice", now());
        let keys = ring.key_set();
        for (name, token) in attack_tokens(&ring, &good) {
            let result = keys.verify(&token, &rules());
            assert!(result.is_err(), "{alg}: {name} was accepted");
        }
    }
}

#[test]
fn attacks_are_refused_for_the_reason_they_deserve() {
    let ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let good = claims(ISS, AUD, "alice", now());
    let keys = ring.key_set();
    let reason = |wanted: &str| {
        let (_, token) = attack_tokens(&ring, &good)
            .into_iter()
            .find(|(name, _)| *name == wanted)
            .unwrap();
        keys.verify(&token, &rules()).unwrap_err()
    };
    assert_eq!(reason("alg none"), VerifyError::Malformed);
    assert_eq!(
        reason("HS256 signed with the public key"),
        VerifyError::DisallowedAlgorithm
    );
    assert_eq!(reason("expired"), VerifyError::Expired);
    assert_eq!(reason("not yet valid"), VerifyError::NotYetValid);
    assert_eq!(reason("wrong audience"), VerifyError::WrongAudience);
    assert_eq!(reason("wrong issuer"), VerifyError::WrongIssuer);
    assert_eq!(reason("tampered payload"), VerifyError::BadSignature);
    assert_eq!(reason("unknown kid"), VerifyError::UnknownKey);
    assert_eq!(reason("typ JWT instead of at+jwt"), VerifyError::WrongType);
    assert_eq!(reason("100 KB token"), VerifyError::TooLarge);
    assert_eq!(reason("not base64"), VerifyError::Malformed);
    assert_eq!(
        reason("signed by another key with the same kid"),
        VerifyError::BadSignature
    );
}

#[test]
fn leeway_is_bounded_and_tolerates_small_clock_skew() {
    let ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let mut c = claims(ISS, AUD, "alice", now());
    c.exp = now() - 10; // expired 10 s ago: inside the default 30 s leeway
    let token = ring.active().sign(&c).unwrap();
    assert!(ring.key_set().verify(&token, &rules()).is_ok());
    assert_eq!(
        ring.key_set().verify(&token, &rules().with_leeway(0)),
        Err(VerifyError::Expired)
    );
    assert_eq!(rules().with_leeway(86_400).leeway_secs, 300);
}

#[test]
fn rotation_keeps_old_tokens_valid_until_the_old_key_is_pruned() {
    let t0 = now();
    let mut ring = KeyRing::generate(Algorithm::EdDSA, t0).unwrap();
    let old_kid = ring.active().kid().to_owned();
    let old_token = ring.active().sign(&claims(ISS, AUD, "alice", t0)).unwrap();

    ring.rotate(Algorithm::EdDSA, t0 + 10).unwrap();
    assert_ne!(ring.active().kid(), old_kid, "a new key signs");
    let new_token = ring.active().sign(&claims(ISS, AUD, "alice", t0)).unwrap();
    let keys = ring.key_set();
    assert!(
        keys.verify(&old_token, &rules()).is_ok(),
        "old tokens still verify"
    );
    assert!(keys.verify(&new_token, &rules()).is_ok());
    let kids: Vec<_> = ring
        .jwks()
        .keys
        .iter()
        .map(|k| k.kid.clone().unwrap())
        .collect();
    assert_eq!(
        kids.len(),
        2,
        "JWKS publishes both while old tokens can live"
    );

    assert_eq!(
        ring.prune(t0 + 10 + 299, 300),
        0,
        "kept for the token lifetime"
    );
    assert_eq!(ring.prune(t0 + 10 + 300, 300), 1);
    assert_eq!(ring.jwks().keys.len(), 1);
    assert_eq!(
        ring.key_set().verify(&old_token, &rules()),
        Err(VerifyError::UnknownKey)
    );
}

#[test]
fn the_jwks_holds_public_parts_only_and_never_an_hmac_secret() {
    let ed = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let jwk = serde_json::to_value(&ed.jwks().keys[0]).unwrap();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert_eq!(jwk["kid"], ed.active().kid());
    assert_eq!(jwk["x"].as_str().unwrap().len(), 43, "32 bytes, base64url");
    assert!(jwk.get("d").is_none(), "no private part");

    let ec = KeyRing::generate(Algorithm::ES256, now()).unwrap();
    let jwk = serde_json::to_value(&ec.jwks().keys[0]).unwrap();
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert!(jwk["y"].is_string() && jwk.get("d").is_none());

    let rsa = KeyRing::generate(Algorithm::RS256, now()).unwrap();
    let jwk = serde_json::to_value(&rsa.jwks().keys[0]).unwrap();
    assert_eq!(jwk["kty"], "RSA");
    assert_eq!(jwk["e"], "AQAB");
    assert!(jwk.get("d").is_none() && jwk.get("p").is_none());

    let hs = KeyRing::generate(Algorithm::HS256, now()).unwrap();
    assert!(hs.jwks().keys.is_empty());
}

/// A JWKS endpoint on loopback that counts its hits and serves whatever
/// ring it is given.
async fn jwks_server(
    jwks: Arc<std::sync::Mutex<sessiond_jwt::Jwks>>,
) -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::to_string(&*jwks.lock().unwrap()).unwrap();
            async move { ([("cache-control", "max-age=300")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, hits, server)
}

#[tokio::test]
async fn a_remote_verifier_fetches_once_and_refetches_when_the_issuer_rotates() {
    let mut ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let published = Arc::new(std::sync::Mutex::new(ring.jwks()));
    let (url, hits, server) = jwks_server(published.clone()).await;
    let verifier = RemoteJwks::new(url, rules()).with_min_refetch_interval(Duration::ZERO);

    for _ in 0..5 {
        let token = ring
            .active()
            .sign(&claims(ISS, AUD, "alice", now()))
            .unwrap();
        assert_eq!(verifier.verify(&token).await.unwrap().sub, "alice");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "keys are cached");

    ring.rotate(Algorithm::EdDSA, now()).unwrap();
    *published.lock().unwrap() = ring.jwks();
    let token = ring.active().sign(&claims(ISS, AUD, "bob", now())).unwrap();
    assert_eq!(verifier.verify(&token).await.unwrap().sub, "bob");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "an unknown kid caused one refetch"
    );
    assert_eq!(verifier.cached_keys().await, 2);
    server.abort();
}

#[tokio::test]
async fn unknown_kids_cannot_make_a_remote_verifier_hammer_the_issuer() {
    let ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let (url, hits, server) = jwks_server(Arc::new(std::sync::Mutex::new(ring.jwks()))).await;
    let verifier = RemoteJwks::new(url, rules()); // default: one refetch per 10 s
    let good = claims(ISS, AUD, "alice", now());
    let attacks = attack_tokens(&ring, &good);
    for _ in 0..20 {
        for (name, token) in &attacks {
            assert!(verifier.verify(token).await.is_err(), "{name} was accepted");
        }
    }
    assert!(
        hits.load(Ordering::SeqCst) <= 2,
        "{} fetches for 20 rounds of attack tokens",
        hits.load(Ordering::SeqCst)
    );
    server.abort();
}

#[tokio::test]
async fn a_remote_verifier_without_reachable_keys_refuses_rather_than_accepts() {
    let ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let verifier = RemoteJwks::new(format!("http://127.0.0.1:{port}/jwks.json"), rules());
    let token = ring
        .active()
        .sign(&claims(ISS, AUD, "alice", now()))
        .unwrap();
    assert!(matches!(
        verifier.verify(&token).await,
        Err(VerifyError::Unavailable(_))
    ));
}

#[test]
fn a_cached_token_is_rechecked_for_expiry_and_for_its_key_on_every_hit() {
    let mut ring = KeyRing::generate(Algorithm::EdDSA, now()).unwrap();
    let cache = sessiond_jwt::VerifiedCache::default();
    let mut c = claims(ISS, AUD, "alice", now());
    c.exp = now() - 10; // inside the default 30 s leeway
    let token = ring.active().sign(&c).unwrap();
    let keys = ring.key_set();
    assert_eq!(keys.verify_cached(&token, &rules(), &cache), Ok(c.clone()));
    assert_eq!(cache.len(), 1, "remembered");
    assert_eq!(keys.verify_cached(&token, &rules(), &cache), Ok(c));
    // The same cached token under stricter rules: expiry is checked again.
    assert_eq!(
        keys.verify_cached(&token, &rules().with_leeway(0), &cache),
        Err(VerifyError::Expired)
    );

    let fresh = ring.active().sign(&claims(ISS, AUD, "bob", now())).unwrap();
    assert!(keys.verify_cached(&fresh, &rules(), &cache).is_ok());
    ring.rotate(Algorithm::EdDSA, now()).unwrap();
    ring.prune(now() + 1_000, 1);
    assert_eq!(
        ring.key_set().verify_cached(&fresh, &rules(), &cache),
        Err(VerifyError::UnknownKey),
        "a pruned key's tokens are not served from the cache"
    );
    // Anything but the exact bytes misses the cache and fails verification.
    let mut tampered = fresh.clone();
    tampered.pop();
    assert!(keys.verify_cached(&tampered, &rules(), &cache).is_err());
}
