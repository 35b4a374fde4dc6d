//! sessiond in front of an application: forward-auth for proxies that ask
//! (nginx `auth_request` at `GET /auth/verify`, Traefik and Caddy at
//! `GET /auth/forward`), and the built-in reverse proxy (every request that
//! is not one of sessiond's own routes, when `gateway.upstream` is set).
//!
//! Both judge a request the same way ([`judge`]): the caller is the session
//! cookie or bearer token the client sent, the decision is
//! [`sessiond_gateway::AccessRules::decide`], and an unsafe method on a
//! cookie session must come from the request's own site (sessiond cannot
//! know the application's CSRF tokens). A store that is down answers 503
//! from the session layer, before any of this.
//!
//! Forward-auth believes the proxy's description of the original request
//! only from a peer in `server.trusted_proxies`.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use sessiond_axum::csrf::{is_safe_method, same_origin};
use sessiond_axum::{ApiError, AuthMethod, CacheRule, ClientIp, ErrorCode, Limit, Principal};
use sessiond_gateway::proxy::{Forwarded, ProxyError};
use sessiond_gateway::redirect::login_location;
use sessiond_gateway::{
    AccessRule, Allow, CsrfCheck, Decision, NormalPath, OriginalRequest, RateKey, Target,
};

use crate::middleware::FromApplication;
use crate::routes::pages;
use crate::state::SharedState;

/// How a proxy passes a refusal on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// nginx: redirects itself (`error_page 401 =302`), so always 401.
    Nginx,
    /// Traefik, Caddy and the built-in proxy: the answer goes to the client
    /// as is, so a browser gets the redirect to the login page itself.
    PassThrough,
}

/// What the rules say about a request.
enum Judgement<'r> {
    /// Let it through (the rule that allowed it).
    Pass(&'r AccessRule),
    /// A session is needed and there is none.
    SignIn,
    /// The rule needs a recent password proof and the session's is older:
    /// signing in again gives one.
    Reauthenticate,
    /// Refused (403: denied, a path with no single reading, or a failed origin check).
    Refuse(ApiError),
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, why)
}

/// When the caller of `req` last proved their password: a cookie
/// session's `auth_time`. `None` for a bearer caller, whose token family
/// is not loaded here: a rule that needs a recent proof refuses it.
fn auth_time(req: &Request) -> Option<sessiond_core::Millis> {
    req.extensions()
        .get::<sessiond_axum::Session>()
        .and_then(|s| s.with_current(|s| s.record.auth_time()))
}

/// The one decision for forward-auth and the proxy.
fn judge<'a>(
    app: &'a SharedState,
    original: &OriginalRequest,
    headers: &HeaderMap,
    principal: Option<&Principal>,
    auth_time: Option<sessiond_core::Millis>,
) -> Judgement<'a> {
    let path = match NormalPath::parse(&original.uri) {
        Ok(path) => path,
        Err(e) => return Judgement::Refuse(refused(e.to_string())),
    };
    let target = Target {
        method: &original.method,
        host: original.host.as_deref(),
        path: &path,
    };
    match app
        .access
        .decide(&target, principal.map(|p| p.roles.as_slice()))
    {
        Decision::Allow(rule) => {
            let cookie = principal.is_some_and(|p| p.method == AuthMethod::Cookie);
            if cookie && rule.csrf == CsrfCheck::Origin && !is_safe_method(&original.method) {
                let origin: Vec<String> = original.origin().into_iter().collect();
                if let Err(why) = same_origin(headers, &origin) {
                    return Judgement::Refuse(ApiError::csrf_failed(why));
                }
            }
            if rule.reauth
                && let Some(p) = principal
            {
                let window = app.config.reauth_window(&p.roles).as_millis();
                let recent = auth_time
                    .is_some_and(|t| u128::from(app.sessions.now().saturating_sub(t)) <= window);
                if !recent {
                    tracing::info!(target: "sessiond::security", event = "reauthentication_required", user = %p.user_id, path = %original.uri);
                    return Judgement::Reauthenticate;
                }
            }
            Judgement::Pass(rule)
        }
        Decision::NeedSession(_) => Judgement::SignIn,
        Decision::Deny(_) => Judgement::Refuse(ApiError::forbidden()),
    }
}

fn peer(req: &Request) -> Option<std::net::SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
}

fn trusted(app: &SharedState, peer: Option<std::net::SocketAddr>) -> bool {
    peer.is_some_and(|peer| app.trusted_proxies.trusts(peer.ip()))
}

/// `GET /auth/verify`: for nginx `auth_request` (HAProxy, Envoy alike).
pub async fn verify(State(app): State<SharedState>, req: Request) -> Response {
    forward_auth(&app, Asker::Nginx, &req).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /auth/forward`: for Traefik ForwardAuth and Caddy `forward_auth`.
pub async fn forward(State(app): State<SharedState>, req: Request) -> Response {
    forward_auth(&app, Asker::PassThrough, &req).unwrap_or_else(IntoResponse::into_response)
}

fn forward_auth(app: &SharedState, asker: Asker, req: &Request) -> Result<Response, ApiError> {
    if !trusted(app, peer(req)) {
        tracing::warn!(target: "sessiond::security", event = "forward_auth_untrusted_peer", "forward-auth asked by a peer outside server.trusted_proxies");
        return Err(refused(
            "forward-auth answers only proxies listed in server.trusted_proxies",
        ));
    }
    let headers = req.headers();
    let original = OriginalRequest::from_headers(headers).map_err(|e| refused(e.to_string()))?;
    let principal = Principal::of(req.extensions());
    match judge(app, &original, headers, principal.as_ref(), auth_time(req)) {
        Judgement::Pass(_) => {
            let mut response = StatusCode::OK.into_response();
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, app.auth_cache_control.clone());
            // Anonymous on a public path: the identity headers are present
            // and empty, so that a proxy copying them (Caddy's
            // `copy_headers`) copies nothing rather than a placeholder.
            for (name, value) in identity(app, principal.as_ref())? {
                h.insert(name, value);
            }
            Ok(response)
        }
        Judgement::SignIn => Ok(sign_in(
            app,
            asker,
            headers,
            &original,
            ApiError::unauthenticated(),
        )),
        Judgement::Reauthenticate => Ok(sign_in(
            app,
            asker,
            headers,
            &original,
            ErrorCode::ReauthenticationRequired.into(),
        )),
        Judgement::Refuse(e) => Err(e),
    }
}

/// The identity headers for `principal` (empty values without one).
fn identity(
    app: &SharedState,
    principal: Option<&Principal>,
) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
    let g = &app.config.gateway;
    let values = match principal {
        Some(p) => [p.user_id.clone(), p.roles.join(","), p.session.handle()],
        None => Default::default(),
    };
    let mut out = Vec::new();
    for (names, value) in [&g.user_headers, &g.groups_headers, &g.session_headers]
        .into_iter()
        .zip(values)
    {
        // Names and roles are checked when accounts are made; a value that
        // still holds a control character is refused, not passed on.
        let value = (!value.chars().any(char::is_control))
            .then(|| HeaderValue::from_str(&value).ok())
            .flatten()
            .ok_or_else(|| refused("the identity cannot be put in a header"))?;
        for name in &names.0 {
            out.push((name.clone(), value.clone()));
        }
    }
    Ok(out)
}

/// No session where one is needed: 401 carrying the login URL, or for a
/// browser behind a pass-through proxy, the redirect itself.
fn sign_in(
    app: &SharedState,
    asker: Asker,
    headers: &HeaderMap,
    original: &OriginalRequest,
    why: ApiError,
) -> Response {
    // A login path is on the application's host: made absolute, because
    // nginx treats an `error_page` target that is a bare path as an
    // internal redirect and sends no `Location` at all.
    let login = &app.config.gateway.login_url;
    let login = match original.origin() {
        Some(origin) if login.starts_with('/') => format!("{origin}{login}"),
        _ => login.clone(),
    };
    let location = login_location(&login, &original.url());
    let location =
        HeaderValue::from_str(&location).unwrap_or_else(|_| HeaderValue::from_static("/login"));
    let mut response = if asker == Asker::PassThrough && pages::wants_html(headers) {
        let status = if matches!(original.method, Method::GET | Method::HEAD) {
            StatusCode::FOUND
        } else {
            StatusCode::SEE_OTHER
        };
        status.into_response()
    } else {
        why.into_response()
    };
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The built-in proxy: every request that is not one of sessiond's own
/// routes, judged by the access rules and passed to `gateway.upstream`.
pub async fn proxy(State(app): State<SharedState>, mut req: Request) -> Response {
    let peer = peer(&req);
    let trusted_peer = trusted(&app, peer);
    // The scheme the client used: a trusted proxy in front may say https.
    let proto = match req
        .headers()
        .get("x-forwarded-proto")
        .map(HeaderValue::as_bytes)
    {
        Some(b"https") if trusted_peer => "https",
        _ => "http",
    };
    let original = OriginalRequest {
        method: req.method().clone(),
        scheme: proto.into(),
        host: req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase),
        uri: req
            .uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string),
    };
    let principal = Principal::of(req.extensions());
    // Refusals of the application's pages are pages for a browser.
    let browser = pages::wants_html(req.headers());
    let refuse = |e: ApiError| {
        if browser {
            pages::error(&e)
        } else {
            e.into_response()
        }
    };
    let rule = match judge(
        &app,
        &original,
        req.headers(),
        principal.as_ref(),
        auth_time(&req),
    ) {
        Judgement::Pass(rule) => rule,
        Judgement::SignIn => {
            return sign_in(
                &app,
                Asker::PassThrough,
                req.headers(),
                &original,
                ApiError::unauthenticated(),
            );
        }
        Judgement::Reauthenticate => {
            return sign_in(
                &app,
                Asker::PassThrough,
                req.headers(),
                &original,
                ErrorCode::ReauthenticationRequired.into(),
            );
        }
        Judgement::Refuse(e) => return refuse(e),
    };
    // The rule's application, else the default one.
    let upstream = match &rule.upstream {
        Some(url) => app.rule_upstreams.get(url),
        None => app.upstream.as_ref(),
    };
    let Some(upstream) = upstream else {
        return refuse(ErrorCode::NotFound.into());
    };
    let identity = match identity(&app, principal.as_ref()) {
        Ok(identity) => identity,
        Err(e) => return refuse(e),
    };
    let headers = req.headers_mut();
    // Client-sent copies never reach the application, public paths included.
    for (name, _) in &identity {
        headers.remove(name);
    }
    if principal.is_some() {
        for (name, value) in identity {
            headers.append(name, value);
        }
    }
    strip_cookies(headers, &app.own_cookies);
    let forwarded = Forwarded {
        peer: peer.map_or(std::net::IpAddr::from([127, 0, 0, 1]), |p| p.ip()),
        trusted_peer,
        proto,
    };
    match upstream.forward(req, &forwarded).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            // The application's answer goes out as it is: no JSON error
            // shape over its errors, none of sessiond's security headers
            // over its pages.
            response.extensions_mut().insert(FromApplication);
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "the application behind the gateway failed");
            refuse(match e {
                ProxyError::Timeout(_) => ErrorCode::UpstreamTimeout.into(),
                _ => ErrorCode::BadGateway.into(),
            })
        }
    }
}

/// Which rate limit a request to the application falls under: its access
/// rule's `rate`, keyed by the client's address, its user, or the rule.
pub fn rate_limit_of(
    app: SharedState,
) -> impl Fn(&Request) -> Option<Limit> + Send + Sync + 'static {
    move |req| {
        let path = NormalPath::parse(req.uri().path()).ok()?;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        let target = Target {
            method: req.method(),
            host: host.as_deref(),
            path: &path,
        };
        let rate = app.access.rule_for(&target)?.rate.as_ref()?;
        let ip = || {
            ClientIp::of(req.extensions()).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
        };
        let key = match rate.key {
            RateKey::Ip => ip(),
            RateKey::User => {
                Principal::of(req.extensions()).map_or_else(ip, |p| format!("user:{}", p.user_id))
            }
            RateKey::Route => "all".to_owned(),
        };
        Some(Limit {
            policy: rate.policy.clone(),
            key,
            rate: rate.rate,
        })
    }
}

/// How the response cache treats a request to the application: its access
/// rule's `cache`, `cache_ttl` and `invalidate`, with the path as the rules
/// read it (so every spelling of a path is invalidated together). A path
/// with no single reading is left to the proxy, which refuses it.
pub fn cache_rule_of(
    app: SharedState,
) -> impl Fn(&http::request::Parts) -> Option<CacheRule> + Send + Sync + 'static {
    move |parts| {
        let path = NormalPath::parse(parts.uri.path()).ok()?;
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        let target = Target {
            method: &parts.method,
            host: host.as_deref(),
            path: &path,
        };
        let rule = app.access.rule_for(&target)?;
        let mut cache = CacheRule::new(rule.cache.name.clone());
        cache.cacheable = rule.cache.enabled;
        cache.public = rule.allow == Allow::Public;
        cache.ttl = rule.cache.ttl;
        cache.path = Some(path.to_string());
        cache.invalidate = rule.cache.invalidate.clone();
        Some(cache)
    }
}

/// Removes sessiond's own cookies from `Cookie`, keeping the application's.
fn strip_cookies<S: AsRef<str>>(headers: &mut HeaderMap, names: &[S]) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split_once('=').map_or(*c, |(n, _)| n).trim();
            !c.is_empty() && !names.iter().any(|n| n.as_ref() == name)
        })
        .map(str::to_owned)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sessiond_cookies_are_taken_from_what_the_application_gets() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "__Host-sessiond=secret; app=1".parse().unwrap(),
        );
        h.append(header::COOKIE, "theme=dark".parse().unwrap());
        strip_cookies(&mut h, &["__Host-sessiond"]);
        assert_eq!(h[header::COOKIE], "app=1; theme=dark");
        let mut only = HeaderMap::new();
        only.insert(header::COOKIE, "__Host-sessiond=secret".parse().unwrap());
        strip_cookies(&mut only, &["__Host-sessiond"]);
        assert!(only.get(header::COOKIE).is_none());
    }
}
