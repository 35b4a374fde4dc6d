//! `SessionLayer`, `CsrfLayer` and `RequireRoleLayer` on a minimal router
//! over the memory store, driven with `oneshot` (no socket), the way
//! tower-http tests its layers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use sessiond_axum::{
    ApiError, CsrfLayer, CurrentUser, ExpiryPolicy, MemoryStore, RequireRoleLayer, Session,
    SessionLayer, SessionManager,
};
use sessiond_core::testing::FaultyStore;
use tower::ServiceExt;

struct App {
    router: Router,
    store: Arc<FaultyStore<MemoryStore>>,
}

/// `POST /login/{role}` signs in as `alice` with that role and answers the
/// CSRF token; `/me` needs a session; `/admin` needs the admin role;
/// `POST /note` is an unsafe cookie-authenticated route behind CSRF.
fn app() -> App {
    let store = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let sessions = SessionManager::new(store.clone(), ExpiryPolicy::default());
    async fn login(
        session: Session,
        axum::extract::Path(role): axum::extract::Path<String>,
    ) -> Result<String, ApiError> {
        session.login("alice", vec![role]).await?;
        Ok(session.csrf_token().unwrap_or_default())
    }
    async fn logout(session: Session) -> Result<&'static str, ApiError> {
        session.logout().await?;
        Ok("bye")
    }
    let admin = Router::new()
        .route("/admin", get(|| async { "admin area" }))
        .route_layer(RequireRoleLayer::role("admin"));
    let signed_in = Router::new()
        .route(
            "/me",
            get(|u: CurrentUser| async move { u.user_id().to_owned() }),
        )
        .route("/note", post(|| async { "noted" }))
        .route_layer(RequireRoleLayer::authenticated());
    let router = Router::new()
        .route("/login/{role}", post(login))
        .route("/logout", post(logout))
        .merge(admin)
        .merge(signed_in)
        .layer(CsrfLayer::new())
        .layer(SessionLayer::new(sessions));
    App { router, store }
}

fn request(method: &str, uri: &str, cookie: Option<&str>) -> http::request::Builder {
    let builder = Request::builder().method(method).uri(uri);
    match cookie {
        Some(c) => builder.header(header::COOKIE, format!("__Host-sessiond={c}")),
        None => builder,
    }
}

async fn send(app: &App, req: Request<Body>) -> Response<Body> {
    app.router.clone().oneshot(req).await.unwrap()
}

/// `GET path`, with the session cookie `token` if any.
async fn get_page(app: &App, path: &str, token: Option<&str>) -> Response<Body> {
    send(
        app,
        request("GET", path, token).body(Body::empty()).unwrap(),
    )
    .await
}

async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn set_cookie(response: &Response<Body>) -> String {
    response
        .headers()
        .get(header::SET_COOKIE)
        .expect("a Set-Cookie")
        .to_str()
        .unwrap()
        .to_owned()
}

/// Signs in with `role`: (token, csrf token).
async fn sign_in(app: &App, role: &str) -> (String, String) {
    let response = send(
        app,
        request("POST", &format!("/login/{role}"), None)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = set_cookie(&response);
    let token = cookie
        .strip_prefix("__Host-sessiond=")
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    (token, text(response).await)
}

async fn error_code(response: Response<Body>) -> String {
    let body: serde_json::Value = serde_json::from_str(&text(response).await).unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_session_layer_sets_a_secure_host_cookie_at_login_and_recognises_it_after() {
    let app = app();
    let response = send(
        &app,
        request("POST", "/login/user", None)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let cookie = set_cookie(&response);
    assert!(cookie.starts_with("__Host-sessiond="), "{cookie}");
    for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    // Not remembered: a browser-session cookie.
    assert!(!cookie.contains("Max-Age="), "{cookie}");
    let (token, _) = sign_in(&app, "user").await;
    let me = get_page(&app, "/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(text(me).await, "alice");
}

#[tokio::test]
async fn a_remembered_login_gets_a_cookie_that_outlives_the_browser() {
    let mut rules = sessiond_core::SessionRules::new(ExpiryPolicy::default());
    rules.remember = Some(ExpiryPolicy {
        idle_timeout: std::time::Duration::from_secs(7 * 24 * 3600),
        absolute_lifetime: std::time::Duration::from_secs(30 * 24 * 3600),
        ..ExpiryPolicy::default()
    });
    let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default())
        .with_rules(rules);
    let router: Router = Router::new()
        .route(
            "/login",
            post(|session: Session| async move {
                session
                    .login_remembered("alice", vec!["user".into()], true)
                    .await?;
                Ok::<_, ApiError>("in")
            }),
        )
        .layer(SessionLayer::new(sessions));
    let response = router
        .oneshot(Request::post("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = set_cookie(&response);
    assert!(cookie.contains("Max-Age=604800"), "{cookie}");
}

#[tokio::test]
async fn with_persistent_cookies_every_login_gets_a_max_age() {
    let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default());
    let router: Router = Router::new()
        .route(
            "/login",
            post(|session: Session| async move {
                session.login("alice", vec!["user".into()]).await?;
                Ok::<_, ApiError>("in")
            }),
        )
        .layer(SessionLayer::new(sessions).with_persistent_cookies(true));
    let response = router
        .oneshot(Request::post("/login").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let cookie = set_cookie(&response);
    assert!(cookie.contains("Max-Age=1800"), "{cookie}");
}

#[tokio::test]
async fn logout_clears_the_cookie_and_the_token_no_longer_works() {
    let app = app();
    let (token, csrf) = sign_in(&app, "user").await;
    let out = send(
        &app,
        request("POST", "/logout", Some(&token))
            .header("x-csrf-token", csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(out.status(), StatusCode::OK);
    assert!(set_cookie(&out).contains("Max-Age=0"));
    let me = get_page(&app, "/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
    // The browser is told to drop the dead cookie.
    assert!(set_cookie(&me).contains("Max-Age=0"));
}

#[tokio::test]
async fn a_store_outage_is_a_503_with_retry_after_and_never_reaches_the_handler() {
    let app = app();
    let (token, _) = sign_in(&app, "user").await;
    app.store.set_down(true);
    let me = get_page(&app, "/me", Some(&token)).await;
    assert_eq!(me.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(me.headers()[header::RETRY_AFTER], "1");
    assert_eq!(error_code(me).await, "store_unavailable");
    app.store.set_down(false);
    let me = get_page(&app, "/me", Some(&token)).await;
    assert_eq!(
        me.status(),
        StatusCode::OK,
        "the session survived the outage"
    );
}

#[tokio::test]
async fn the_csrf_layer_refuses_an_unsafe_cookie_request_without_the_sessions_token() {
    let app = app();
    let (token, csrf) = sign_in(&app, "user").await;
    let missing = send(
        &app,
        request("POST", "/note", Some(&token))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(missing).await, "csrf_failed");
    let wrong = send(
        &app,
        request("POST", "/note", Some(&token))
            .header("x-csrf-token", "A".repeat(86))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let ok = send(
        &app,
        request("POST", "/note", Some(&token))
            .header("x-csrf-token", &csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(text(ok).await, "noted");
}

#[tokio::test]
async fn the_csrf_layer_takes_the_token_from_a_form_field_and_refuses_cross_site_posts() {
    let app = app();
    let (token, csrf) = sign_in(&app, "user").await;
    let form = send(
        &app,
        request("POST", "/note", Some(&token))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("csrf_token={csrf}&text=hi")))
            .unwrap(),
    )
    .await;
    assert_eq!(form.status(), StatusCode::OK);
    let cross_site = send(
        &app,
        request("POST", "/note", Some(&token))
            .header("sec-fetch-site", "cross-site")
            .header("x-csrf-token", &csrf)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);
    // Safe methods are not checked.
    let get = get_page(&app, "/me", Some(&token)).await;
    assert_eq!(get.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_role_layer_answers_401_without_a_session_and_403_without_the_role() {
    let app = app();
    let anonymous = get_page(&app, "/admin", None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(anonymous).await, "unauthenticated");
    let (user, _) = sign_in(&app, "user").await;
    let denied = get_page(&app, "/admin", Some(&user)).await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert_eq!(error_code(denied).await, "forbidden");
    let (admin, _) = sign_in(&app, "admin").await;
    let allowed = get_page(&app, "/admin", Some(&admin)).await;
    assert_eq!(allowed.status(), StatusCode::OK);
    assert_eq!(text(allowed).await, "admin area");
}

#[tokio::test]
async fn the_client_ip_layer_believes_forwarded_for_only_from_a_trusted_proxy() {
    use axum::extract::ConnectInfo;
    use sessiond_axum::{ClientIp, ClientIpLayer, ForwardedHeader};
    let router = Router::new()
        .route(
            "/ip",
            get(|ClientIp(ip): ClientIp| async move { ip.to_string() }),
        )
        .layer(ClientIpLayer::new().with_trusted_proxies(
            vec!["10.0.0.0/8".parse().unwrap()],
            ForwardedHeader::XForwardedFor,
        ));
    let ask = |peer: &str| {
        let mut req = Request::get("/ip")
            .header("x-forwarded-for", "6.6.6.6, 198.51.100.7")
            .body(Body::empty())
            .unwrap();
        let peer: std::net::SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(req)
    };
    assert_eq!(
        text(ask("10.1.2.3:5000").await.unwrap()).await,
        "198.51.100.7"
    );
    assert_eq!(
        text(ask("192.0.2.1:5000").await.unwrap()).await,
        "192.0.2.1"
    );
}
