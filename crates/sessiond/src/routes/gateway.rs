//! Forward-auth: nginx `auth_request` (`GET /auth/verify`) and Traefik /
//! Caddy (`GET /auth/forward`) ask here whether a request for the
//! application behind them may pass.
//!
//! The original request comes from the proxy's headers, believed only from
//! a peer in `server.trusted_proxies`; the caller is the session cookie or
//! bearer token the client sent (the proxy passes the client's headers
//! on). The decision is [`sessiond_gateway::AccessRules::decide`]. Answers:
//! 200 with identity headers, 401 (or, on `/auth/forward`, a redirect for a
//! browser) with the login URL, 403; 503 when the store is down (from the
//! session layer, before this handler).

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use sessiond_axum::csrf::same_origin;
use sessiond_axum::{ApiError, AuthMethod, ErrorCode, Principal};
use sessiond_gateway::redirect::login_location;
use sessiond_gateway::{CsrfCheck, Decision, NormalPath, OriginalRequest, Target};

use crate::state::SharedState;

/// Which kind of proxy asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asker {
    /// nginx: redirects itself (`error_page 401 =302`), so always 401.
    Nginx,
    /// Traefik, Caddy: pass the answer on as is, so browsers get the redirect.
    PassThrough,
}

/// `GET /auth/verify`: for nginx `auth_request` (HAProxy, Envoy alike).
pub async fn verify(State(app): State<SharedState>, req: Request) -> Response {
    answer(&app, Asker::Nginx, &req).unwrap_or_else(IntoResponse::into_response)
}

/// `GET /auth/forward`: for Traefik ForwardAuth and Caddy `forward_auth`.
pub async fn forward(State(app): State<SharedState>, req: Request) -> Response {
    answer(&app, Asker::PassThrough, &req).unwrap_or_else(IntoResponse::into_response)
}

fn refused(why: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Forbidden, why)
}

fn answer(app: &SharedState, asker: Asker, req: &Request) -> Result<Response, ApiError> {
    let trusted = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| {
            app.config
                .server
                .trusted_proxies
                .iter()
                .any(|net| net.contains(&peer.ip()))
        });
    if !trusted {
        tracing::warn!(target: "sessiond::security", event = "forward_auth_untrusted_peer", "forward-auth asked by a peer outside server.trusted_proxies");
        return Err(refused(
            "forward-auth answers only proxies listed in server.trusted_proxies",
        ));
    }
    let headers = req.headers();
    let original = OriginalRequest::from_headers(headers).map_err(|e| refused(e.to_string()))?;
    let path = NormalPath::parse(&original.uri).map_err(|e| refused(e.to_string()))?;
    let principal = Principal::of(req.extensions());
    let rules = &app.access;
    let target = Target {
        method: &original.method,
        host: original.host.as_deref(),
        path: &path,
    };
    match rules.decide(&target, principal.as_ref().map(|p| p.roles.as_slice())) {
        Decision::Allow(rule) => {
            if let Some(p) = &principal
                && p.method == AuthMethod::Cookie
                && rule.csrf == CsrfCheck::Origin
                && !is_safe(&original.method)
            {
                let origin = original.origin().into_iter().collect::<Vec<_>>();
                same_origin(headers, &origin).map_err(ApiError::csrf_failed)?;
            }
            allowed(app, principal.as_ref())
        }
        Decision::NeedSession(_) => Ok(sign_in(app, asker, headers, &original)),
        Decision::Deny(_) => Err(ApiError::forbidden()),
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// 200, with who the caller is.
fn allowed(app: &SharedState, principal: Option<&Principal>) -> Result<Response, ApiError> {
    let g = &app.config.gateway;
    let mut response = StatusCode::OK.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!(
            "private, max-age={}",
            g.auth_cache_max_age.as_secs()
        ))
        .map_err(|_| ApiError::internal())?,
    );
    let Some(p) = principal else {
        // Anonymous on a public path: the identity headers are present and
        // empty, so that a proxy copying them (Caddy's `copy_headers`)
        // copies nothing rather than a placeholder of its own.
        for name in g
            .user_headers
            .iter()
            .chain(&g.groups_headers)
            .chain(&g.session_headers)
        {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| ApiError::internal())?;
            h.insert(name, HeaderValue::from_static(""));
        }
        return Ok(response);
    };
    for (names, value) in [
        (&g.user_headers, p.user_id.clone()),
        (&g.groups_headers, p.roles.join(",")),
        (&g.session_headers, p.session.handle()),
    ] {
        // Names and roles are checked when accounts are made; a value that
        // still holds a control character is refused, not passed on.
        let value = (!value.chars().any(char::is_control))
            .then(|| HeaderValue::from_str(&value).ok())
            .flatten()
            .ok_or_else(|| refused("the identity cannot be put in a header"))?;
        for name in names {
            let name = HeaderName::try_from(name.as_str()).map_err(|_| ApiError::internal())?;
            h.insert(name, value.clone());
        }
    }
    Ok(response)
}

/// No session where one is needed: 401 carrying the login URL, or for a
/// browser behind a pass-through proxy, the redirect itself.
fn sign_in(
    app: &SharedState,
    asker: Asker,
    headers: &HeaderMap,
    original: &OriginalRequest,
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
    let browser = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let mut response = if asker == Asker::PassThrough && browser {
        let status = if matches!(original.method, Method::GET | Method::HEAD) {
            StatusCode::FOUND
        } else {
            StatusCode::SEE_OTHER
        };
        status.into_response()
    } else {
        ApiError::unauthenticated().into_response()
    };
    let h = response.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
