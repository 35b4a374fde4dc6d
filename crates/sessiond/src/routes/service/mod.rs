//! The service API (`/api/v1`) for other backends, authenticated by
//! service keys ([`crate::service_keys`]), and its OpenAPI document.
//!
//! - `sessions.rs`: `whoami`, introspection (RFC 7662), sessions by user.
//! - `users.rs`: users and service keys.
//! - `views.rs`: every body the API answers with, as types: the handlers
//!   and the OpenAPI document share them, so the document cannot describe
//!   a shape the server does not send.
//!
//! The OpenAPI document that describes these routes and the public ones is
//! `routes::openapi`.
//!
//! These are not cookie requests: the bearer layer drops the cookie of a
//! request that carries a service key, so neither CSRF nor the caller's
//! own session is involved.

mod events;
mod sessions;
mod users;
pub(crate) mod views;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use serde::Deserialize;
use sessiond_axum::{ApiError, ErrorCode};

pub use events::*;
pub use sessions::*;
pub use users::*;

use crate::service_keys::{PREFIX, ServiceKey, ServiceKeyError, ServiceScope};
use crate::state::SharedState;

impl From<ServiceKeyError> for ApiError {
    fn from(e: ServiceKeyError) -> Self {
        match e {
            ServiceKeyError::Store(e) => e.into(),
            ServiceKeyError::Exists(_) => ApiError::new(ErrorCode::Conflict, e.to_string()),
            ServiceKeyError::BadName(_)
            | ServiceKeyError::UnknownScope(_)
            | ServiceKeyError::NoScope
            | ServiceKeyError::BadRate(_) => ApiError::new(ErrorCode::InvalidBody, e.to_string()),
            ServiceKeyError::Contended => ApiError::from(ErrorCode::Busy).with_retry_after(1),
            ServiceKeyError::Corrupt(_) => {
                tracing::error!(error = %e, "the stored service keys cannot be read");
                ApiError::internal()
            }
        }
    }
}

/// The caller of a service-API route: a live service key. Missing or
/// unknown: 401 `invalid_service_key`.
#[derive(Debug, Clone)]
pub struct ServiceCaller(pub ServiceKey);

impl ServiceCaller {
    /// 403 `insufficient_scope` unless the key has `scope`.
    pub fn require(&self, scope: ServiceScope) -> Result<(), ApiError> {
        if self.0.allows(scope) {
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::InsufficientScope,
                format!("this operation needs the scope {scope}"),
            ))
        }
    }
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && key.starts_with(PREFIX)).then_some(key)
}

impl FromRequestParts<SharedState> for ServiceCaller {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &SharedState,
    ) -> Result<Self, Self::Rejection> {
        use axum::response::IntoResponse as _;
        let refused = || ApiError::from(ErrorCode::InvalidServiceKey).into_response();
        let secret = presented(&parts.headers).ok_or_else(refused)?;
        let key = app
            .service_keys
            .authenticate(secret)
            .await
            .map_err(|e| ApiError::from(e).into_response())?
            .ok_or_else(refused)?;
        // A key's own rate: shared by every node on Redis, in process on
        // the embedded store; fails open, as every rate limit does.
        if let Some(rate) = key.rate() {
            app.service_limits
                .enforce(&sessiond_axum::Limit {
                    policy: "service-key".into(),
                    key: key.name.clone(),
                    rate,
                })
                .await?;
        }
        Ok(Self(key))
    }
}

/// Largest page of a listing.
const MAX_PAGE: usize = 100;

/// `?limit` of a listing: 1 to [`MAX_PAGE`], 50 when left out.
fn limit_of(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("limit is 1 to {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// A query string, or 400 in the error shape.
fn query<T>(
    q: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(t)| t)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.body_text()))
}

/// `?limit&cursor` of a listing of sessions.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// 1 to 100 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    #[param(pattern = "^[0-9]{1,20}\\.[A-Za-z0-9_-]{1,64}$")]
    cursor: Option<String>,
}
