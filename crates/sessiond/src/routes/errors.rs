//! The error body as the OpenAPI document describes it: the handlers'
//! annotations name it, so it lives in a module of its own that imports
//! nothing of the routes (the document imports every handler).

use serde::Serialize;
use utoipa::ToSchema;

/// Every error: a stable code and a message for people.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `invalid_body`, `unauthenticated`, `insufficient_scope`…
    /// (README lists them all).
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
}
