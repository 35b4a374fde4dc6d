//! In-process signing and verification throughput per algorithm.
//!
//! `cargo bench -p sessiond-jwt --bench verify [-- SECONDS_PER_CASE]`
//! prints ops/s and the mean cost of one call, on one core.

use std::time::{Duration, Instant};

use sessiond_jwt::testing::claims;
use sessiond_jwt::{Algorithm, KeyRing, Rules};

fn main() {
    let secs: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2.0);
    let budget = Duration::from_secs_f64(secs);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let rules = Rules::new("https://sessiond.bench", "api");
    println!(
        "{:<7} {:>14} {:>12} {:>14} {:>12} {:>14} {:>12} {:>7}",
        "alg",
        "verify ops/s",
        "verify µs",
        "cached ops/s",
        "cached µs",
        "sign ops/s",
        "sign µs",
        "bytes"
    );
    for alg in [
        Algorithm::EdDSA,
        Algorithm::ES256,
        Algorithm::RS256,
        Algorithm::HS256,
    ] {
        let Ok(ring) = KeyRing::generate(alg, now) else {
            eprintln!("{alg}: cannot generate a key");
            continue;
        };
        let c = claims(&rules.issuer, &rules.audience, "user000123", now);
        let key = ring.active();
        let token = key.sign(&c).unwrap_or_default();
        let keys = ring.key_set();
        assert!(
            keys.verify(&token, &rules).is_ok(),
            "{alg}: the bench token must verify"
        );
        let (v_ops, v_us) = measure(budget, || {
            std::hint::black_box(keys.verify(std::hint::black_box(&token), &rules).is_ok());
        });
        let cache = sessiond_jwt::VerifiedCache::default();
        let (c_ops, c_us) = measure(budget, || {
            std::hint::black_box(
                keys.verify_cached(std::hint::black_box(&token), &rules, &cache)
                    .is_ok(),
            );
        });
        let (s_ops, s_us) = measure(budget, || {
            std::hint::black_box(key.sign(std::hint::black_box(&c)).is_ok());
        });
        println!(
            "{:<7} {v_ops:>14.0} {v_us:>12.2} {c_ops:>14.0} {c_us:>12.2} {s_ops:>14.0} {s_us:>12.2} {:>7}",
            alg.name(),
            token.len()
        );
    }
}

/// Runs `f` for `budget`; returns (calls per second, µs per call).
fn measure(budget: Duration, mut f: impl FnMut()) -> (f64, f64) {
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    let secs = start.elapsed().as_secs_f64();
    (n as f64 / secs, secs * 1e6 / n as f64)
}
