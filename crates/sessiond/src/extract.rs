//! Request-body extractors whose rejections use the JSON error shape.

use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::{Form, Json};
use http::{StatusCode, header};
use serde::de::DeserializeOwned;
use sessiond_axum::ApiError;

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected Content-Type: application/json",
        ),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is not valid JSON",
        ),
        JsonRejection::JsonDataError(_) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "the JSON body does not have the expected fields",
        ),
        r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        ),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the request body could not be read",
        ),
    }
}

fn form_rejection(r: FormRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the request body is too large",
        );
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_body",
        "the form does not have the expected fields",
    )
}

/// A JSON body; malformed input is a 400/413/415 in the JSON error shape.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Json::<T>::from_request(req, state)
            .await
            .map(|Json(v)| ApiJson(v))
            .map_err(json_rejection)
    }
}

/// A body that may be JSON or an HTML form (the login and token endpoints
/// accept both); `is_form` says which, so the answer can match.
#[derive(Debug)]
pub struct JsonOrForm<T> {
    /// The parsed body.
    pub value: T,
    /// Whether it came from a form (answer with a redirect or HTML).
    pub is_form: bool,
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if ct.starts_with("application/x-www-form-urlencoded") {
            let Form(value) = Form::<T>::from_request(req, state)
                .await
                .map_err(form_rejection)?;
            Ok(Self {
                value,
                is_form: true,
            })
        } else {
            let ApiJson(value) = ApiJson::<T>::from_request(req, state).await?;
            Ok(Self {
                value,
                is_form: false,
            })
        }
    }
}
