//! The security-event log through the service API.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use sessiond_axum::ApiError;
use utoipa::ToSchema;

use super::{ServiceCaller, limit_of, query};
use crate::events::{EventFilter, SecurityEvent};
use crate::routes::errors::ErrorBody;
use crate::service_keys::ServiceScope;
use crate::state::SharedState;

/// `?limit&user&kind` of the event listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// 1 to 100 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// Only events about this user, or done by them.
    #[serde(default)]
    user: Option<String>,
    /// Only this kind (`login_failed`), or a prefix with `*` (`admin_*`).
    #[serde(default)]
    kind: Option<String>,
}

/// The newest security events.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsPage {
    /// Newest first.
    pub events: Vec<SecurityEvent>,
}

/// The newest security events (sign-ins and failures, throttling,
/// refresh-token reuse, revocations, administrators' actions), newest
/// first, from the store's bounded log.
#[utoipa::path(get, path = "/api/v1/events", tag = "service",
    params(EventQuery),
    security(("service_key" = ["admin"])),
    responses(
        (status = 200, body = EventsPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list_events(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    q: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    caller.require(ServiceScope::Admin)?;
    let q = query(q)?;
    let limit = limit_of(q.limit)?;
    let filter = EventFilter {
        user: q.user,
        kind: q.kind,
    };
    Ok(Json(EventsPage {
        events: app.events.recent(&filter, limit).await?,
    }))
}
