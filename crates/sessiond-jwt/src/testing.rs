//! Attack tokens, shared by the test suites of the crates that verify tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

use crate::claims::{ACCESS_TOKEN_TYPE, AccessClaims};
use crate::keys::{Algorithm, KeyRing};

/// Claims for `sub` valid from `now` (Unix seconds) for five minutes.
pub fn claims(issuer: &str, audience: &str, sub: &str, now: u64) -> AccessClaims {
    AccessClaims {
        iss: issuer.into(),
        aud: audience.into(),
        sub: sub.into(),
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "test-jti".into(),
        sid: "test-sid".into(),
        roles: vec!["user".into()],
    }
}

fn header(alg: jsonwebtoken::Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.typ = Some(ACCESS_TOKEN_TYPE.into());
    h.kid = Some(kid.into());
    h
}

fn part(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Tokens that must all be refused, by name. `good` are valid claims for
/// the verifier under test; `ring` is the issuer's ring.
pub fn attack_tokens(ring: &KeyRing, good: &AccessClaims) -> Vec<(&'static str, String)> {
    let key = ring.active();
    let kid = key.kid();
    let good_json = serde_json::to_value(good).unwrap_or_default();
    let sign = |h: &Header, c: &Value| key.sign_raw(h, c).unwrap_or_default();
    let with = |field: &str, v: Value| {
        let mut c = good_json.clone();
        c[field] = v;
        sign(&header(key.alg().jwt(), kid), &c)
    };
    let valid = sign(&header(key.alg().jwt(), kid), &good_json);
    let mut parts = valid.split('.');
    let (h, _c, sig) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );

    // HS256 "signed" with the issuer's public key, as published: the classic
    // key-confusion attack against verifiers that let the header pick the algorithm.
    let public = ring
        .jwks()
        .keys
        .first()
        .map(|j| serde_json::to_vec(j).unwrap_or_default())
        .unwrap_or_default();
    let confused = jsonwebtoken::encode(
        &header(jsonwebtoken::Algorithm::HS256, kid),
        &good_json,
        &EncodingKey::from_secret(&public),
    )
    .unwrap_or_default();

    let none = format!(
        "{}.{}.",
        part(&json!({"alg": "none", "typ": ACCESS_TOKEN_TYPE, "kid": kid})),
        part(&good_json)
    );
    let mut admin = good_json.clone();
    admin["roles"] = json!(["admin"]);
    let tampered = format!("{h}.{}.{sig}", part(&admin));
    let mut plain_jwt = header(key.alg().jwt(), kid);
    plain_jwt.typ = Some("JWT".into());
    let mut no_kid = header(key.alg().jwt(), kid);
    no_kid.kid = None;
    let other_issuer_key = crate::keys::SigningKey::generate(Algorithm::EdDSA, good.iat)
        .map(|k| {
            k.sign_raw(&header(jsonwebtoken::Algorithm::EdDSA, kid), &good_json)
                .unwrap_or_default()
        })
        .unwrap_or_default();

    vec![
        ("alg none", none),
        ("HS256 signed with the public key", confused),
        ("expired", with("exp", json!(good.iat.saturating_sub(3600)))),
        ("not yet valid", with("nbf", json!(good.iat + 3600))),
        ("wrong audience", with("aud", json!("someone-else"))),
        ("wrong issuer", with("iss", json!("https://evil.example"))),
        ("missing exp", {
            let mut c = good_json.clone();
            c.as_object_mut().map(|o| o.remove("exp"));
            sign(&header(key.alg().jwt(), kid), &c)
        }),
        ("tampered payload", tampered),
        ("truncated", valid[..valid.len() - 8].to_owned()),
        (
            "signature removed",
            format!("{h}.{_c}.", _c = part(&good_json)),
        ),
        ("unknown kid", {
            let mut hd = header(key.alg().jwt(), kid);
            hd.kid = Some("no-such-key".into());
            sign(&hd, &good_json)
        }),
        ("missing kid", sign(&no_kid, &good_json)),
        ("typ JWT instead of at+jwt", sign(&plain_jwt, &good_json)),
        ("signed by another key with the same kid", other_issuer_key),
        ("9 KB token", format!("{h}.{}.{sig}", "A".repeat(9 * 1024))),
        (
            "100 KB token",
            format!("{h}.{}.{sig}", "A".repeat(100 * 1024)),
        ),
        ("not base64", "!!!.@@@.###".into()),
        ("empty", String::new()),
        ("two parts", format!("{h}.{sig}")),
    ]
}
