//! Users and service keys through the service API.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use sessiond_axum::{ApiError, ApiJson, ErrorCode};
use utoipa::ToSchema;

use super::views::{
    NewServiceKeyView, ServiceKeyView, ServiceKeys, UserChanged, UserView, UsersPage,
};
use super::{ServiceCaller, limit_of, query};
use crate::accounts::AccountError;
use crate::routes::errors::ErrorBody;
use crate::service_keys::ServiceScope;
use crate::state::SharedState;

/// `?limit&cursor&q` of the user listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    /// 1 to 100 (default 50).
    #[serde(default)]
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    cursor: Option<String>,
    /// Names starting with this.
    #[serde(default)]
    q: Option<String>,
}

/// Users by name, a page at a time (the cursor is opaque: pass back the
/// `next_cursor` of the previous page), `q` a name prefix.
#[utoipa::path(get, path = "/api/v1/users", tag = "service",
    params(UserPage),
    security(("service_key" = ["users:read"])),
    responses(
        (status = 200, body = UsersPage),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn list_users(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    page: Result<Query<UserPage>, QueryRejection>,
) -> Result<Json<UsersPage>, ApiError> {
    caller.require(ServiceScope::UsersRead)?;
    let page = query(page)?;
    let limit = limit_of(page.limit)?;
    let (users, next_cursor) = app
        .accounts
        .page_of_users(
            page.q.as_deref().unwrap_or_default(),
            page.cursor.as_deref(),
            limit,
        )
        .await?;
    Ok(Json(UsersPage {
        users: users.iter().map(UserView::of).collect(),
        next_cursor,
    }))
}

/// The body of `POST /api/v1/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9.@_-]{1,128}$", min_length = 1, max_length = 128)]
    name: String,
    /// Must follow the password rules: at least `passwords.min_length` characters (12 unless configured; never fewer than 8), at most 1024, not easy to guess, not containing the user name; 400 `weak_password` says which rule.
    #[schema(min_length = 8, max_length = 1024)]
    password: String,
    /// Default `["user"]`; the first is the primary role.
    #[serde(default = "default_roles")]
    #[schema(min_items = 1, max_items = 32, inline)]
    roles: Vec<Role>,
}

/// A role: lowercase letters, digits, `-` and `_`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(pattern = "^[a-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
pub struct Role(String);

fn default_roles() -> Vec<Role> {
    vec![Role("user".into())]
}

fn roles(roles: Vec<Role>) -> Vec<String> {
    roles.into_iter().map(|Role(r)| r).collect()
}

/// Adds a user; 409 if the name is taken.
#[utoipa::path(post, path = "/api/v1/users", tag = "service",
    request_body = NewUser,
    security(("service_key" = ["users:write"])),
    responses(
        (status = 201, body = UserView, links(
            ("get" = (operation_id = "get_user", parameters(("id" = "$response.body#/id")))),
            ("update" = (operation_id = "update_user", parameters(("id" = "$response.body#/id")))),
            ("delete" = (operation_id = "delete_user", parameters(("id" = "$response.body#/id")))),
        )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    let user = app
        .accounts
        .add_with_roles(&body.name, body.password, &roles(body.roles))
        .await?;
    tracing::info!(target: "sessiond::security", event = "user_created_by_service", user = %user.name, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_created_user", Some(&user.name))
            .by(&format!("service key {}", caller.0.name)),
    );
    Ok((StatusCode::CREATED, Json(UserView::of(&user))))
}

fn no_such_user() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such user")
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "service",
    params(("id" = String, Path, description = "the user")),
    security(("service_key" = ["users:read"])),
    responses(
        (status = 200, body = UserView),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn get_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(name): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(ServiceScope::UsersRead)?;
    let user = app
        .store
        .backend
        .get_user(&name)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(Json(UserView::of(&user)))
}

/// The body of `PATCH /api/v1/users/{id}`: any of the three (none: the
/// user as it is).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default, deserialize_with = "present")]
    #[schema(min_items = 1, max_items = 32, nullable = false)]
    roles: Option<Vec<Role>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    disabled: Option<bool>,
    /// A password set by an administrator; it must follow the password rules: at least `passwords.min_length` characters (12 unless configured; never fewer than 8), at most 1024, not easy to guess, not containing the user name; 400 `weak_password` says which rule.
    #[serde(default, deserialize_with = "present")]
    #[schema(min_length = 8, max_length = 1024, nullable = false)]
    password: Option<String>,
}

/// A field that may be left out but not sent as `null` (the document says
/// so; a `null` would read as "leave it" where the client may mean "clear").
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Changes roles, disables or enables, or sets a password. A role change,
/// disabling or a new password ends every session and token family of the
/// user at once (sessions and access tokens carry the roles they were
/// signed in with).
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "service",
    params(("id" = String, Path, description = "the user")),
    request_body = UserChange,
    security(("service_key" = ["users:write"])),
    responses(
        (status = 200, body = UserChanged),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn update_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(name): Path<String>,
    ApiJson(change): ApiJson<UserChange>,
) -> Result<Json<UserChanged>, ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    let missing = |e: AccountError| match e {
        AccountError::Missing(_) => no_such_user(),
        e => e.into(),
    };
    let mut ended = 0;
    if let Some(password) = change.password {
        ended += app
            .accounts
            .set_password(&name, password)
            .await
            .map_err(missing)?;
    }
    let (user, more) = app
        .accounts
        .update(&name, change.roles.map(roles), change.disabled)
        .await
        .map_err(missing)?;
    tracing::info!(target: "sessiond::security", event = "user_changed_by_service", user = %name, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_changed_user", Some(&name))
            .by(&format!("service key {}", caller.0.name)),
    );
    Ok(Json(UserChanged {
        user: UserView::of(&user),
        sessions_ended: ended + more,
    }))
}

/// Deletes the user and ends every session and token family of theirs.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "service",
    params(("id" = String, Path, description = "the user")),
    security(("service_key" = ["users:write"])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn delete_user(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(ServiceScope::UsersWrite)?;
    app.accounts.delete(&name).await?.ok_or_else(no_such_user)?;
    tracing::info!(target: "sessiond::security", event = "user_deleted_by_service", user = %name, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_deleted_user", Some(&name))
            .by(&format!("service key {}", caller.0.name)),
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Every service key, by name.
#[utoipa::path(get, path = "/api/v1/service-keys", tag = "service",
    security(("service_key" = ["admin"])),
    responses(
        (status = 200, body = ServiceKeys),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn list_service_keys(
    State(app): State<SharedState>,
    caller: ServiceCaller,
) -> Result<Json<ServiceKeys>, ApiError> {
    caller.require(ServiceScope::Admin)?;
    let keys = app.service_keys.list().await?;
    Ok(Json(ServiceKeys {
        service_keys: keys.iter().map(ServiceKeyView::of).collect(),
    }))
}

/// The body of `POST /api/v1/service-keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewServiceKey {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$", min_length = 1, max_length = 64)]
    name: String,
    #[schema(min_items = 1)]
    scopes: Vec<ServiceScope>,
    /// Its own rate limit: `"100/s"`, `"20/m"`, `"1000/h"`.
    #[serde(default, deserialize_with = "present")]
    #[schema(pattern = "^[1-9][0-9]{0,8}/[smh]$", nullable = false)]
    rate: Option<String>,
}

/// A new service key, in the answer this once.
#[utoipa::path(post, path = "/api/v1/service-keys", tag = "service",
    request_body = NewServiceKey,
    security(("service_key" = ["admin"])),
    responses(
        (status = 201, body = NewServiceKeyView, links(
            ("revoke" = (operation_id = "revoke_service_key", parameters(("name" = "$response.body#/name")))),
        )),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 415, body = ErrorBody),
        (status = 503, body = ErrorBody),
    ))]
pub async fn create_service_key(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    ApiJson(body): ApiJson<NewServiceKey>,
) -> Result<(StatusCode, Json<NewServiceKeyView>), ApiError> {
    caller.require(ServiceScope::Admin)?;
    let scopes = body.scopes.into_iter().collect();
    let (record, key) = app
        .service_keys
        .add_limited(&body.name, scopes, body.rate.as_deref())
        .await?;
    tracing::info!(target: "sessiond::security", event = "service_key_created_by_service", name = %record.name, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_created_service_key", None)
            .by(&format!("service key {}", caller.0.name))
            .with_detail(record.name.clone()),
    );
    Ok((
        StatusCode::CREATED,
        Json(NewServiceKeyView {
            view: ServiceKeyView::of(&record),
            key,
        }),
    ))
}

/// Revokes a key on every node at once; 404 if there is none.
#[utoipa::path(delete, path = "/api/v1/service-keys/{name}", tag = "service",
    params(("name" = String, Path, description = "the key's name")),
    security(("service_key" = ["admin"])),
    responses(
        (status = 204, description = "revoked"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody),
    ))]
pub async fn revoke_service_key(
    State(app): State<SharedState>,
    caller: ServiceCaller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(ServiceScope::Admin)?;
    if !app.service_keys.revoke(&name).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "no such service key"));
    }
    tracing::info!(target: "sessiond::security", event = "service_key_revoked_by_service", name = %name, by = %caller.0.name);
    app.events.record(
        crate::events::SecurityEvent::new("service_revoked_service_key", None)
            .by(&format!("service key {}", caller.0.name))
            .with_detail(name.clone()),
    );
    Ok(StatusCode::NO_CONTENT)
}
