//! [`SessionLayer`]: loads the session named by the cookie before the handler
//! runs, and writes the cookie changes the handler asked for afterwards.

use std::convert::Infallible;
use std::future::Future;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, Request, header};
use sessiond_core::{
    AttributeChange, ClientMeta, NewSession, SessionManager, SessionRecord, StoreError, Verified,
};
use tower::{Layer, Service};

use crate::cookie::CookieConfig;
use crate::csrf;
use crate::error::ApiError;

/// Adds cookie sessions to a router.
///
/// For every request it reads the session cookie, verifies it (one store
/// round trip; a renewal write only under the threshold) and puts a
/// [`Session`] into the request extensions. If the store cannot be reached it
/// answers 503 `store_unavailable` at once: the request is never passed on as
/// anonymous (which would make clients drop a valid session) nor as
/// authenticated (unchecked).
///
/// ```no_run
/// # use std::sync::Arc;
/// # use axum::{Router, routing::get};
/// # use sessiond_core::{ExpiryPolicy, MemoryStore, SessionManager};
/// use sessiond_axum::{CurrentUser, SessionLayer};
/// let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default());
/// let app: Router = Router::new()
///     .route("/me", get(|user: CurrentUser| async move { user.user_id().to_owned() }))
///     .layer(SessionLayer::new(sessions));
/// ```
#[derive(Clone)]
pub struct SessionLayer {
    shared: Arc<Shared>,
}

struct Shared {
    manager: SessionManager,
    cookie: CookieConfig,
    /// Every session's cookie carries `Max-Age`, not only a remembered one's.
    persistent: bool,
}

impl SessionLayer {
    /// A layer over this engine with the default (secure) cookie.
    pub fn new(manager: SessionManager) -> Self {
        Self {
            shared: Arc::new(Shared {
                manager,
                cookie: CookieConfig::default(),
                persistent: false,
            }),
        }
    }

    /// Sets the cookie configuration.
    ///
    /// # Warning
    /// Turning `secure` off sends the session token in clear text over plain
    /// HTTP; it is for local development only. It also drops the `__Host-`
    /// prefix, which browsers refuse without `Secure`.
    #[must_use]
    pub fn with_cookie(mut self, cookie: CookieConfig) -> Self {
        let cookie = CookieConfig::new(cookie.name, cookie.secure, cookie.same_site);
        let (manager, persistent) = (self.shared.manager.clone(), self.shared.persistent);
        self.shared = Arc::new(Shared {
            manager,
            cookie,
            persistent,
        });
        self
    }

    /// Gives every session's cookie a `Max-Age` (its remaining lifetime),
    /// as before remembered sessions existed: for clients that expect one.
    /// Off (the default): only a remembered session's cookie outlives the
    /// browser.
    #[must_use]
    pub fn with_persistent_cookies(mut self, persistent: bool) -> Self {
        self.shared = Arc::new(Shared {
            manager: self.shared.manager.clone(),
            cookie: self.shared.cookie.clone(),
            persistent,
        });
        self
    }

    /// The cookie configuration in force.
    pub fn cookie(&self) -> &CookieConfig {
        &self.shared.cookie
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service [`SessionLayer`] makes.
#[derive(Clone)]
pub struct SessionService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What the handler asked to happen to the cookie.
#[derive(Debug)]
enum CookieChange {
    /// `max_age`: `None` for a browser-session cookie (a session not
    /// remembered: it goes when the browser closes).
    Set {
        token: String,
        max_age: Option<u64>,
    },
    Clear,
}

struct SessionState {
    shared: Arc<Shared>,
    current: Mutex<Option<Verified>>,
    change: Mutex<Option<CookieChange>>,
    /// Peer address and `User-Agent`, kept raw: turned into [`ClientMeta`]
    /// only when a session is created, not on every request.
    peer: Option<std::net::IpAddr>,
    user_agent: Option<HeaderValue>,
}

/// The request's session: the verified record (if any) and the operations
/// that change it. Extract it in a handler; [`SessionLayer`] must be installed.
#[derive(Clone)]
pub struct Session(Arc<SessionState>);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("user", &self.record().map(|r| r.user_id))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Session {
    /// The live session's record, or `None` for an anonymous request.
    pub fn record(&self) -> Option<SessionRecord> {
        lock(&self.0.current)
            .as_ref()
            .map(|v| v.session.record.clone())
    }

    /// The live session (key and record), or `None`.
    pub fn verified(&self) -> Option<sessiond_core::StoredSession> {
        self.with_current(Clone::clone)
    }

    /// Runs `f` on the live session without cloning it; `None` when anonymous.
    pub fn with_current<R>(&self, f: impl FnOnce(&sessiond_core::StoredSession) -> R) -> Option<R> {
        lock(&self.0.current).as_ref().map(|v| f(&v.session))
    }

    /// The engine behind this layer.
    pub fn manager(&self) -> &SessionManager {
        &self.0.shared.manager
    }

    /// Client metadata of this request: IP, and a short device label made
    /// from the `User-Agent` ([`crate::device::device_label`]).
    pub fn client(&self) -> ClientMeta {
        ClientMeta {
            ip: self.0.peer.map(|p| p.to_string()),
            user_agent: self
                .0
                .user_agent
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(crate::device::device_label),
        }
    }

    /// A CSRF token for this session, masked afresh on every call.
    pub fn csrf_token(&self) -> Option<String> {
        self.with_current(|s| csrf::mask(&s.record.csrf_secret))
    }

    /// Logs a user in: ends the request's current session, if any (no session
    /// fixation: the new session never reuses a token the client presented),
    /// creates a new one and sets its cookie.
    pub async fn login(
        &self,
        user_id: &str,
        roles: Vec<String>,
    ) -> Result<SessionRecord, StoreError> {
        self.login_remembered(user_id, roles, false).await
    }

    /// [`Session::login`], remembered if `remember` ("keep me signed in")
    /// and the engine's rules have a remembered policy: the longer
    /// timeouts, and a cookie with `Max-Age` that outlives the browser.
    pub async fn login_remembered(
        &self,
        user_id: &str,
        roles: Vec<String>,
        remember: bool,
    ) -> Result<SessionRecord, StoreError> {
        if let Some(old) = self.verified() {
            self.manager().delete(&old.key).await?;
        }
        let new = NewSession {
            user_id: user_id.to_owned(),
            roles,
            client: self.client(),
            remember,
            ..Default::default()
        };
        let (token, session) = self.manager().create(new).await?;
        let record = session.record.clone();
        self.replace(token.expose(), session);
        Ok(record)
    }

    /// Moves the session to a fresh token (privilege change, password change);
    /// the old token is dead at once. Returns `NotFound` without a session.
    pub async fn cycle(&self, roles: Option<Vec<String>>) -> Result<(), StoreError> {
        let current = self.verified().ok_or(StoreError::NotFound)?;
        let (token, session) = self.manager().cycle(&current.key, roles).await?;
        self.replace(token.expose(), session);
        Ok(())
    }

    /// Ends the session and clears the cookie.
    pub async fn logout(&self) -> Result<(), StoreError> {
        if let Some(current) = self.verified() {
            self.manager().delete(&current.key).await?;
        }
        *lock(&self.0.current) = None;
        *lock(&self.0.change) = Some(CookieChange::Clear);
        Ok(())
    }

    /// Field-level attribute changes; concurrent requests changing other
    /// attributes are never overwritten. Returns the new version.
    pub async fn update(&self, changes: &[AttributeChange]) -> Result<u64, StoreError> {
        let current = self.verified().ok_or(StoreError::NotFound)?;
        let version = self
            .manager()
            .update_attributes(&current.key, changes, None)
            .await?;
        if let Some(v) = lock(&self.0.current).as_mut() {
            v.session.record.apply_attribute_changes(changes);
            // The store's count wins: other requests may have written since
            // this one loaded the record.
            v.session.record.version = version;
        }
        Ok(version)
    }

    fn replace(&self, token: String, session: sessiond_core::StoredSession) {
        let max_age = cookie_lifetime(
            &session.record,
            self.manager().now(),
            self.0.shared.persistent,
        );
        *lock(&self.0.current) = Some(Verified {
            session,
            renewed: false,
        });
        *lock(&self.0.change) = Some(CookieChange::Set { token, max_age });
    }
}

/// The cookie's `Max-Age`: the seconds until a remembered session (or any
/// session, with persistent cookies) ends if not renewed; `None` (a
/// browser-session cookie) for any other session, which still ends on the
/// server at its idle and absolute timeouts.
fn cookie_lifetime(record: &SessionRecord, now: u64, persistent: bool) -> Option<u64> {
    (persistent || record.remembered())
        .then(|| record.expires_at().saturating_sub(now).div_ceil(1000))
}

impl<S> FromRequestParts<S> for Session
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or_else(|| {
            tracing::error!("Session extractor used without SessionLayer");
            ApiError::internal()
        })
    }
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        Box::pin(async move {
            let presented = shared.cookie.find(req.headers()).map(str::to_owned);
            let verified = match &presented {
                Some(token) => match shared.manager.verify(token).await {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::warn!(error = %e, "session store unavailable while verifying a session");
                        return Ok(ApiError::from(e).into_response());
                    }
                },
                None => None,
            };
            let renewed = verified.as_ref().is_some_and(|v| v.renewed);
            let stale_cookie = presented.is_some() && verified.is_none();
            let state = Arc::new(SessionState {
                peer: crate::client_ip::ClientIp::of(req.extensions()),
                user_agent: req.headers().get(header::USER_AGENT).cloned(),
                shared: shared.clone(),
                current: Mutex::new(verified),
                change: Mutex::new(None),
            });
            req.extensions_mut().insert(Session(state.clone()));
            let mut response = inner.call(req).await?;

            let change = lock(&state.change).take();
            let set_cookie = match change {
                Some(CookieChange::Set { token, max_age }) => Some(match max_age {
                    Some(secs) => shared.cookie.set(&token, secs),
                    None => shared.cookie.set_for_browser_session(&token),
                }),
                Some(CookieChange::Clear) => Some(shared.cookie.clear()),
                // The renewal moved a remembered session's expiry: its
                // cookie's lifetime follows (a browser-session cookie has none).
                None if renewed => match (&presented, lock(&state.current).as_ref()) {
                    (Some(token), Some(v)) => {
                        cookie_lifetime(&v.session.record, shared.manager.now(), shared.persistent)
                            .map(|secs| shared.cookie.set(token, secs))
                    }
                    _ => None,
                },
                // A cookie for a session that is gone: tell the browser to drop it.
                None if stale_cookie => Some(shared.cookie.clear()),
                None => None,
            };
            if let Some(value) = set_cookie {
                let headers = response.headers_mut();
                // The session cookie goes first, before any the handler set
                // (a device cookie): clients that keep only the first
                // `Set-Cookie` still keep the session.
                let others: Vec<HeaderValue> = match headers.entry(header::SET_COOKIE) {
                    http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
                    http::header::Entry::Vacant(_) => Vec::new(),
                };
                headers.append(header::SET_COOKIE, value);
                for other in others {
                    headers.append(header::SET_COOKIE, other);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            }
            Ok(response)
        })
    }
}
