//! The one JSON error shape: `{"error":{"code":"...","message":"..."}}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The challenge every 401 carries (RFC 6750 §3).
const BEARER_CHALLENGE: &str = "Bearer realm=\"sessiond\"";

/// Every error code sessiond answers with, each with its one HTTP status.
/// The code is the API's contract: clients match on it, so a code keeps its
/// spelling and status once released. `ErrorCode::ALL` lists them (the
/// README's table is checked against it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `bad_request` (bad request): the request is malformed.
    BadRequest,
    /// `invalid_json` (bad request): the body is not valid JSON.
    InvalidJson,
    /// `invalid_body` (bad request): the request body does not have the expected fields.
    InvalidBody,
    /// `invalid_request` (bad request): the Authorization header has no usable bearer token.
    InvalidRequest,
    /// `invalid_host` (bad request): the Host header is missing, repeated, malformed or not served here.
    InvalidHost,
    /// `invalid_grant` (bad request): the refresh token is invalid, expired or revoked.
    InvalidGrant,
    /// `unsupported_grant_type` (bad request): grant_type must be refresh_token.
    UnsupportedGrantType,
    /// `weak_password` (bad request): the new password breaks the password rules (the message says which).
    WeakPassword,
    /// `unauthenticated` (unauthorized): a valid session is required.
    Unauthenticated,
    /// `invalid_token` (unauthorized): the access token is malformed, invalid or expired.
    InvalidToken,
    /// `invalid_credentials` (unauthorized): wrong username or password.
    InvalidCredentials,
    /// `invalid_service_key` (unauthorized): the service key is missing, unknown or revoked.
    InvalidServiceKey,
    /// `reauthentication_required` (unauthorized): this action needs a recent password proof: `POST /api/reauth`.
    ReauthenticationRequired,
    /// `forbidden` (forbidden): this session lacks the role this route requires.
    Forbidden,
    /// `insufficient_scope` (forbidden): the service key lacks the scope this operation needs.
    InsufficientScope,
    /// `csrf_failed` (forbidden): CSRF check failed.
    CsrfFailed,
    /// `wrong_password` (forbidden): the current password is wrong.
    WrongPassword,
    /// `not_found` (not found): no such resource.
    NotFound,
    /// `method_not_allowed` (method not allowed): method not allowed on this resource.
    MethodNotAllowed,
    /// `request_timeout` (request timeout): the request took too long.
    RequestTimeout,
    /// `conflict` (conflict): the session changed concurrently; retry.
    Conflict,
    /// `session_limit` (conflict): the user has as many live sessions as allowed; end one first.
    SessionLimit,
    /// `attributes_too_large` (payload too large): the change would take the session's attributes over their budget; nothing was written.
    AttributesTooLarge,
    /// `payload_too_large` (payload too large): the request body is too large.
    PayloadTooLarge,
    /// `unsupported_media_type` (unsupported media type): unsupported Content-Type.
    UnsupportedMediaType,
    /// `too_many_attempts` (too many requests): too many failed attempts; try again later.
    TooManyAttempts,
    /// `rate_limited` (too many requests): this client or route is over its rate limit; retry after `Retry-After`.
    RateLimited,
    /// `headers_too_large` (request header fields too large): the request headers are too large.
    HeadersTooLarge,
    /// `internal` (internal server error): internal error.
    Internal,
    /// `bad_gateway` (bad gateway): the application behind the gateway could not be reached or answered wrongly.
    BadGateway,
    /// `store_unavailable` (service unavailable): the session store is unavailable; retry shortly.
    StoreUnavailable,
    /// `deadline_exceeded` (service unavailable): the request took too long; retry.
    DeadlineExceeded,
    /// `busy` (service unavailable): too many sign-ins are being checked; retry shortly.
    Busy,
    /// `durability_unavailable` (service unavailable): the store cannot make writes durable right now; existing sessions still work; retry shortly.
    DurabilityUnavailable,
    /// `upstream_timeout` (gateway timeout): the application behind the gateway did not answer in time.
    UpstreamTimeout,
}

impl ErrorCode {
    /// Every code, in status order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadRequest,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidHost,
        ErrorCode::InvalidGrant,
        ErrorCode::UnsupportedGrantType,
        ErrorCode::WeakPassword,
        ErrorCode::Unauthenticated,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidServiceKey,
        ErrorCode::ReauthenticationRequired,
        ErrorCode::Forbidden,
        ErrorCode::InsufficientScope,
        ErrorCode::CsrfFailed,
        ErrorCode::WrongPassword,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::SessionLimit,
        ErrorCode::PayloadTooLarge,
        ErrorCode::AttributesTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::TooManyAttempts,
        ErrorCode::RateLimited,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Internal,
        ErrorCode::BadGateway,
        ErrorCode::StoreUnavailable,
        ErrorCode::DeadlineExceeded,
        ErrorCode::Busy,
        ErrorCode::DurabilityUnavailable,
        ErrorCode::UpstreamTimeout,
    ];

    /// The code as it appears in the JSON body.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidHost => "invalid_host",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidServiceKey => "invalid_service_key",
            ErrorCode::ReauthenticationRequired => "reauthentication_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::CsrfFailed => "csrf_failed",
            ErrorCode::WrongPassword => "wrong_password",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::SessionLimit => "session_limit",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::AttributesTooLarge => "attributes_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::BadGateway => "bad_gateway",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::DeadlineExceeded => "deadline_exceeded",
            ErrorCode::Busy => "busy",
            ErrorCode::DurabilityUnavailable => "durability_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The HTTP status that goes with the code.
    pub const fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidBody => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidHost => StatusCode::BAD_REQUEST,
            ErrorCode::InvalidGrant => StatusCode::BAD_REQUEST,
            ErrorCode::UnsupportedGrantType => StatusCode::BAD_REQUEST,
            ErrorCode::WeakPassword => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidServiceKey => StatusCode::UNAUTHORIZED,
            ErrorCode::ReauthenticationRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorCode::CsrfFailed => StatusCode::FORBIDDEN,
            ErrorCode::WrongPassword => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::SessionLimit => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::AttributesTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DurabilityUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The message used when the site of the error has nothing more specific to say.
    pub const fn default_message(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "the request is malformed",
            ErrorCode::InvalidJson => "the body is not valid JSON",
            ErrorCode::InvalidBody => "the request body does not have the expected fields",
            ErrorCode::InvalidRequest => "the Authorization header has no usable bearer token",
            ErrorCode::InvalidHost => {
                "the Host header is missing, repeated, malformed or not served here"
            }
            ErrorCode::InvalidGrant => "the refresh token is invalid, expired or revoked",
            ErrorCode::UnsupportedGrantType => "grant_type must be refresh_token",
            ErrorCode::WeakPassword => "the new password breaks the password rules",
            ErrorCode::Unauthenticated => "a valid session is required",
            ErrorCode::InvalidToken => "the access token is malformed, invalid or expired",
            ErrorCode::InvalidCredentials => "wrong username or password",
            ErrorCode::InvalidServiceKey => "the service key is missing, unknown or revoked",
            ErrorCode::ReauthenticationRequired => {
                "this action needs a recent password proof: POST /api/reauth"
            }
            ErrorCode::Forbidden => "this session lacks the role this route requires",
            ErrorCode::InsufficientScope => "the service key lacks the scope this operation needs",
            ErrorCode::CsrfFailed => "CSRF check failed",
            ErrorCode::WrongPassword => "the current password is wrong",
            ErrorCode::NotFound => "no such resource",
            ErrorCode::MethodNotAllowed => "method not allowed on this resource",
            ErrorCode::RequestTimeout => "the request took too long",
            ErrorCode::Conflict => "the session changed concurrently; retry",
            ErrorCode::SessionLimit => {
                "you have as many active sessions as allowed; sign out of one first"
            }
            ErrorCode::PayloadTooLarge => "the request body is too large",
            ErrorCode::AttributesTooLarge => {
                "the change would take the session's attributes over their budget; nothing was written"
            }
            ErrorCode::UnsupportedMediaType => "unsupported Content-Type",
            ErrorCode::TooManyAttempts => "too many failed attempts; try again later",
            ErrorCode::RateLimited => "too many requests; retry after the time Retry-After gives",
            ErrorCode::HeadersTooLarge => "the request headers are too large",
            ErrorCode::Internal => "internal error",
            ErrorCode::BadGateway => "the application could not be reached",
            ErrorCode::StoreUnavailable => "the session store is unavailable; retry shortly",
            ErrorCode::DeadlineExceeded => "the request took too long; retry",
            ErrorCode::Busy => "too many sign-ins are being checked; retry shortly",
            ErrorCode::DurabilityUnavailable => {
                "the store cannot make writes durable right now; existing sessions still work; retry shortly"
            }
            ErrorCode::UpstreamTimeout => "the application did not answer in time",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code, code.default_message())
    }
}

/// An error answer with a stable machine-readable `code`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status (the code's, unless a handler has a reason to differ).
    pub status: StatusCode,
    /// A stable code clients can match on.
    pub code: ErrorCode,
    /// A human-readable message (never contains secrets).
    pub message: String,
    /// Seconds for a `Retry-After` header (429, 503).
    pub retry_after: Option<u64>,
    /// A `WWW-Authenticate` challenge to send with a 401.
    pub www_authenticate: Option<std::borrow::Cow<'static, str>>,
}

impl ApiError {
    /// An error with this code (and its status) and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status: code.status(),
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
            ..ErrorCode::Unauthenticated.into()
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
            ..Self::new(ErrorCode::InvalidToken, description)
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
            ..Self::new(ErrorCode::InvalidRequest, description)
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
        ErrorCode::Forbidden.into()
    }

    /// 403: CSRF check failed.
    pub fn csrf_failed(why: &'static str) -> Self {
        // Counted here so that every CSRF refusal, by the layer or by a login
        // form, shows in `sessiond_csrf_rejections_total`.
        metrics::counter!(sessiond_core::metric::CSRF_REJECTIONS, "reason" => why).increment(1);
        Self::new(ErrorCode::CsrfFailed, format!("CSRF check failed: {why}"))
    }

    /// 503: the session store cannot be reached; the client should retry, not
    /// throw its session away.
    pub fn store_unavailable() -> Self {
        Self {
            retry_after: Some(1),
            ..ErrorCode::StoreUnavailable.into()
        }
    }

    /// 500 for a failure that is not the client's; the cause is logged, not sent.
    pub fn internal() -> Self {
        ErrorCode::Internal.into()
    }

    /// 429 after too many failed attempts, with how long to wait.
    pub fn too_many_attempts(retry_after_secs: u64) -> Self {
        ApiError::from(ErrorCode::TooManyAttempts).with_retry_after(retry_after_secs)
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
            self.code.as_str(),
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl From<sessiond_core::StoreError> for ApiError {
    fn from(e: sessiond_core::StoreError) -> Self {
        use sessiond_core::StoreError as E;
        match e {
            E::NotFound => ErrorCode::NotFound.into(),
            E::Conflict => ErrorCode::Conflict.into(),
            E::TooLarge => ErrorCode::AttributesTooLarge.into(),
            E::SessionLimit { .. } => ErrorCode::SessionLimit.into(),
            E::Unavailable(_) => Self::store_unavailable(),
            // Retry after a few seconds: a replica coming back takes that long.
            E::NotReplicated { .. } => {
                ApiError::from(ErrorCode::DurabilityUnavailable).with_retry_after(5)
            }
            e => {
                tracing::error!(error = %e, "session store error");
                Self::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            serde_json::json!({ "error": { "code": self.code.as_str(), "message": self.message } });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = &self.www_authenticate
            && let Ok(value) = HeaderValue::try_from(challenge.as_ref())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The error itself rides along, so that an outer layer can answer a
        // browser with a page instead of the JSON.
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_spelled_once_and_its_status_is_an_error() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert!(
                code.status().is_client_error() || code.status().is_server_error(),
                "{code}"
            );
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
    }

    #[test]
    fn the_readme_lists_every_error_code_with_its_status_and_no_other() {
        let readme = include_str!("../../../README.md");
        let listed: Vec<(String, u16)> = readme
            .lines()
            .filter_map(|line| {
                let mut cells = line.split('|').map(str::trim);
                let (_, code, status) = (cells.next()?, cells.next()?, cells.next()?);
                let code = code.strip_prefix('`')?.strip_suffix('`')?;
                Some((code.to_owned(), status.parse().ok()?))
            })
            .collect();
        let defined: Vec<(String, u16)> = ErrorCode::ALL
            .iter()
            .map(|c| (c.as_str().to_owned(), c.status().as_u16()))
            .collect();
        assert_eq!(
            listed, defined,
            "README.md's error table and ErrorCode differ"
        );
    }
}
