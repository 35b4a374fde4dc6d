//! Bad input gets a 4xx with the JSON error shape: never a 500, never a
//! panic, and it loses nothing (the user's session is intact afterwards).

use crate::common::*;
use reqwest::header::{COOKIE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::json;

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    /// Send alice's session cookie and CSRF token.
    authed: bool,
    headers: Vec<(&'static str, HeaderValue)>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    want: StatusCode,
}

fn case(name: &'static str, method: Method, path: &str, want: StatusCode) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        authed: false,
        headers: vec![],
        content_type: None,
        body: vec![],
        want,
    }
}

impl Case {
    fn authed(mut self) -> Self {
        self.authed = true;
        self
    }
    fn header(mut self, k: &'static str, v: HeaderValue) -> Self {
        self.headers.push((k, v));
        self
    }
    fn json(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some("application/json");
        self.body = body.into();
        self
    }
    fn typed(mut self, ct: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(ct);
        self.body = body.into();
        self
    }
}

fn cookie(v: &[u8]) -> HeaderValue {
    let mut bytes = b"__Host-sessiond=".to_vec();
    bytes.extend_from_slice(v);
    HeaderValue::from_bytes(&bytes).unwrap()
}

#[tokio::test]
async fn malformed_cookies_bodies_and_headers_each_get_a_4xx_json_error() {
    let app = spawn_app().await;
    let mut alice = app.login("alice").await;
    let big = vec![b'a'; 70 * 1024];
    let cases = vec![
        case(
            "garbage cookie",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("cookie", cookie(b"garbage")),
        case(
            "43 chars, not base64url",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("cookie", cookie(&[b'+'; 43])),
        case(
            "4 KiB cookie",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("cookie", cookie(&[b'A'; 4096])),
        case(
            "non-UTF-8 cookie",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("cookie", cookie(&[0xff, 0xfe, 0x80])),
        case(
            "empty cookie",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("cookie", cookie(b"")),
        case(
            "well-formed unknown token",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header(
            "cookie",
            cookie(sessiond_core::SessionToken::generate().expose().as_bytes()),
        ),
        case(
            "garbage Authorization",
            Method::GET,
            "/api/profile",
            StatusCode::UNAUTHORIZED,
        )
        .header("authorization", HeaderValue::from_static("Bearer !!!")),
        case(
            "invalid JSON login",
            Method::POST,
            "/login",
            StatusCode::BAD_REQUEST,
        )
        .json("{bad"),
        case(
            "login without fields",
            Method::POST,
            "/login",
            StatusCode::BAD_REQUEST,
        )
        .json("{}"),
        case(
            "login with wrong types",
            Method::POST,
            "/login",
            StatusCode::BAD_REQUEST,
        )
        .json(r#"{"username":1,"password":[]}"#),
        case(
            "login as text/plain",
            Method::POST,
            "/login",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        )
        .typed("text/plain", "hi"),
        case(
            "login body over the limit",
            Method::POST,
            "/login",
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .json(big.clone()),
        case(
            "non-UTF-8 JSON",
            Method::POST,
            "/login",
            StatusCode::BAD_REQUEST,
        )
        .json(vec![b'{', 0xff, 0xfe, b'}']),
        case(
            "form without fields",
            Method::POST,
            "/login",
            StatusCode::BAD_REQUEST,
        )
        .typed("application/x-www-form-urlencoded", "x=1"),
        case(
            "10 000-character username",
            Method::POST,
            "/login",
            StatusCode::UNAUTHORIZED,
        )
        .json(json!({"username": "u".repeat(10_000), "password": "p"}).to_string()),
        case(
            "unknown route",
            Method::GET,
            "/api/nope",
            StatusCode::NOT_FOUND,
        ),
        case(
            "wrong method",
            Method::DELETE,
            "/api/profile",
            StatusCode::METHOD_NOT_ALLOWED,
        )
        .authed(),
        case(
            "malformed session handle",
            Method::DELETE,
            "/api/sessions/not-a-handle",
            StatusCode::NOT_FOUND,
        )
        .authed(),
        case(
            "non-UTF-8 handle in the path",
            Method::DELETE,
            "/api/sessions/%FF%FE",
            StatusCode::BAD_REQUEST,
        )
        .authed(),
        case(
            "attributes as an array",
            Method::PATCH,
            "/api/session/attributes",
            StatusCode::BAD_REQUEST,
        )
        .authed()
        .json("[1,2]"),
        case(
            "no attributes",
            Method::PATCH,
            "/api/session/attributes",
            StatusCode::BAD_REQUEST,
        )
        .authed()
        .json("{}"),
        case(
            "attributes over the limit",
            Method::PATCH,
            "/api/session/attributes",
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .authed()
        .json(json!({"blob": "x".repeat(70 * 1024)}).to_string()),
        case(
            "too-short new password",
            Method::POST,
            "/api/password",
            StatusCode::BAD_REQUEST,
        )
        .authed()
        .json(json!({"current_password": PASSWORD, "new_password": "short"}).to_string()),
        case(
            "non-ASCII CSRF token",
            Method::PATCH,
            "/api/session/attributes",
            StatusCode::FORBIDDEN,
        )
        .header("cookie", HeaderValue::from_static("placeholder"))
        .json(r#"{"a":1}"#),
        case(
            "16 KiB of headers",
            Method::GET,
            "/api/public/ping",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        )
        .header(
            "x-padding",
            HeaderValue::from_str(&"p".repeat(17 * 1024)).unwrap(),
        ),
        case(
            "garbage query string",
            Method::GET,
            "/api/profile?%%%&&==",
            StatusCode::UNAUTHORIZED,
        ),
    ];
    assert!(cases.len() >= 20);
    let session = alice.session.clone().unwrap();
    let csrf = alice.csrf.clone().unwrap();
    for c in cases {
        let mut rb = alice
            .http
            .request(c.method.clone(), format!("{}{}", app.base, c.path));
        if c.authed {
            rb = rb
                .header(COOKIE, format!("__Host-sessiond={session}"))
                .header("x-csrf-token", &csrf);
        }
        for (k, v) in c.headers {
            if c.name == "non-ASCII CSRF token" {
                rb = rb
                    .header(COOKIE, format!("__Host-sessiond={session}"))
                    .header(
                        "x-csrf-token",
                        HeaderValue::from_bytes(&[0xe9, 0xe9]).unwrap(),
                    );
                continue;
            }
            rb = rb.header(k, v);
        }
        if let Some(ct) = c.content_type {
            rb = rb.header("content-type", ct).body(c.body);
        }
        let r = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        let (status, code) = error_code(r).await;
        assert_eq!(status, c.want, "{}: got {status} ({code})", c.name);
        assert!(status.is_client_error(), "{}", c.name);
    }
    // Nothing was lost: alice's session works and has no stray attributes.
    let v: serde_json::Value = alice.get("/api/session").await.json().await.unwrap();
    assert_eq!(v["user_id"], "alice");
    assert_eq!(v["attributes"], json!({}));
}
