//! Request bodies: what the `Content-Type` says a body is, and the
//! extractors every route uses, whose rejections are [`ApiError`]s with a
//! stable code (400 `invalid_json` / `invalid_body`, 413, 415) instead of
//! axum's plain-text ones. The one home of content-type checks: the CSRF
//! layer, the login form and the token routes all ask [`body_kind`].

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// The body formats sessiond reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` (or `application/*+json`).
    Json,
    /// `application/x-www-form-urlencoded` (HTML forms, OAuth token requests).
    Form,
}

/// What the request's `Content-Type` declares, ignoring case, parameters
/// (`; charset=utf-8`) and surrounding white space; `None` for anything else.
pub fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    if essence == "application/x-www-form-urlencoded" {
        Some(BodyKind::Form)
    } else if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Some(BodyKind::Json)
    } else {
        None
    }
}

fn unsupported(expected: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("expected Content-Type: {expected}"),
    )
}

async fn read_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorCode::PayloadTooLarge.into()
        } else {
            ApiError::new(ErrorCode::BadRequest, "the request body could not be read")
        }
    })
}

/// Parses a JSON body: a syntax error is `invalid_json`, valid JSON of the
/// wrong shape is `invalid_body`. A body is an object: serde would read a
/// struct from an array of its fields in order (`[null, null]`), a shape no
/// client means and no API document describes, so an array is refused.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.trim_ascii_start().first() == Some(&b'[') {
        return Err(ApiError::new(
            ErrorCode::InvalidBody,
            "the body must be a JSON object",
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ErrorCode::InvalidBody.into()
        } else {
            ErrorCode::InvalidJson.into()
        }
    })
}

/// Parses a urlencoded form body; anything it cannot map is `invalid_body`.
pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(bytes).map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidBody,
            "the form does not have the expected fields",
        )
    })
}

/// A JSON body. Another `Content-Type` is 415.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if body_kind(req.headers()) != Some(BodyKind::Json) {
            return Err(unsupported("application/json"));
        }
        parse_json(&read_bytes(req, state).await?).map(ApiJson)
    }
}

/// A JSON body, or none at all (`POST /api/token` with a cookie session
/// instead of credentials). A non-empty body must be JSON.
#[derive(Debug)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = body_kind(req.headers()) == Some(BodyKind::Json);
        let bytes = read_bytes(req, state).await?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        if !is_json {
            return Err(unsupported("application/json"));
        }
        parse_json(&bytes).map(|v| Self(Some(v)))
    }
}

/// A body that may be JSON or an HTML form (login, token refresh); `kind`
/// says which, so the answer can match (a redirect or a page for a form).
#[derive(Debug)]
pub struct JsonOrForm<T> {
    /// The parsed body.
    pub value: T,
    /// How it came.
    pub kind: BodyKind,
}

impl<T> JsonOrForm<T> {
    /// Whether the body was a form.
    pub fn is_form(&self) -> bool {
        self.kind == BodyKind::Form
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Some(kind) = body_kind(req.headers()) else {
            return Err(unsupported(
                "application/json or application/x-www-form-urlencoded",
            ));
        };
        let bytes = read_bytes(req, state).await?;
        let value = match kind {
            BodyKind::Json => parse_json(&bytes)?,
            BodyKind::Form => parse_form(&bytes)?,
        };
        Ok(Self { value, kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with_type(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[test]
    fn content_types_are_read_by_their_essence_whatever_the_case_and_parameters() {
        assert_eq!(
            body_kind(&with_type("Application/JSON; charset=utf-8")),
            Some(BodyKind::Json)
        );
        assert_eq!(
            body_kind(&with_type("application/merge-patch+json")),
            Some(BodyKind::Json)
        );
        assert_eq!(
            body_kind(&with_type(
                " application/x-www-form-urlencoded ;charset=utf-8"
            )),
            Some(BodyKind::Form)
        );
        assert_eq!(
            body_kind(&with_type("application/x-www-form-urlencodedx")),
            None
        );
        assert_eq!(body_kind(&with_type("text/plain")), None);
        assert_eq!(body_kind(&HeaderMap::new()), None);
    }

    #[test]
    fn malformed_json_and_json_of_the_wrong_shape_get_different_codes() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Login {
            username: String,
        }
        let syntax = parse_json::<Login>(b"{\"username\":").expect_err("truncated");
        assert_eq!(syntax.code, ErrorCode::InvalidJson);
        let shape = parse_json::<Login>(b"{\"user\":1}").expect_err("wrong field");
        assert_eq!(shape.code, ErrorCode::InvalidBody);
        let array = parse_json::<Login>(b" [\"alice\"]").expect_err("an array of the fields");
        assert_eq!(array.code, ErrorCode::InvalidBody);
        let form = parse_form::<Login>(b"nothing=here").expect_err("missing field");
        assert_eq!(form.code, ErrorCode::InvalidBody);
    }
}
