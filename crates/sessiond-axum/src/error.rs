//! The one JSON error shape: `{"error":{"code":"...","message":"..."}}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The challenge every 401 carries (RFC 6750 §3).
const BEARER_CHALLENGE: &str = "Bearer realm=\"sessiond\"";

/// An error answer with a stable machine-readable `code`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code clients can match on (`unauthenticated`, `csrf_failed`, …).
    pub code: &'static str,
    /// A human-readable message (never contains secrets).
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge to send with a 401.
    pub www_authenticate: Option<std::borrow::Cow<'static, str>>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    /// 401: no valid session.
    pub fn unauthenticated() -> Self {
        Self {
            // RFC 6750 §3: a request without credentials gets the bare challenge.
            www_authenticate: Some(BEARER_CHALLENGE.into()),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "a valid session is required",
            )
        }
    }

    /// 401 for a bearer token that is malformed, invalid or expired (RFC 6750 `invalid_token`).
    pub fn invalid_token(description: &str) -> Self {
        Self {
            www_authenticate: Some(
                format!(
                    "{BEARER_CHALLENGE}, error=\"invalid_token\", error_description=\"{description}\""
                )
                .into(),
            ),
            ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
        }
    }

    /// 400 for an `Authorization: Bearer` header without a usable token (RFC 6750 `invalid_request`).
    pub fn invalid_bearer_request(description: &str) -> Self {
        Self {
            www_authenticate: Some(
                format!(
                    "{BEARER_CHALLENGE}, error=\"invalid_request\", error_description=\"{description}\""
                )
                .into(),
            ),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
        }
    }

    /// 403 for a bearer caller without the role (RFC 6750 `insufficient_scope`).
    pub fn insufficient_scope() -> Self {
        Self {
            www_authenticate: Some(
                format!("{BEARER_CHALLENGE}, error=\"insufficient_scope\"").into(),
            ),
            ..Self::forbidden()
        }
    }

    /// 403: authenticated but lacking a role.
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this session lacks the role this route requires",
        )
    }

    /// 403: CSRF check failed.
    pub fn csrf_failed(why: &'static str) -> Self {
        // Counted here so that every CSRF refusal, by the layer or by a login
        // form, shows in `sessiond_csrf_rejections_total`.
        metrics::counter!("sessiond_csrf_rejections_total", "reason" => why).increment(1);
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            format!("CSRF check failed: {why}"),
        )
    }

    /// 503: the session store cannot be reached; the client should retry, not
    /// throw its session away.
    pub fn store_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the session store is unavailable; retry shortly",
            )
        }
    }

    /// 500 for a failure that is not the client's; the cause is logged, not sent.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// Adds a `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<sessiond_core::StoreError> for ApiError {
    fn from(e: sessiond_core::StoreError) -> Self {
        use sessiond_core::StoreError as E;
        match e {
            E::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            E::Conflict => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the session changed concurrently; retry",
            ),
            E::Unavailable(_) => Self::store_unavailable(),
            e => {
                tracing::error!(error = %e, "session store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.www_authenticate
            && let Ok(value) = HeaderValue::try_from(challenge.as_ref())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
