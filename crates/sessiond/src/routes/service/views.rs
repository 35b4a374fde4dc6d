//! The bodies the service API answers with. Handlers build these and the
//! OpenAPI document describes these: one definition for both.

use serde::Serialize;
use serde_json::{Map, Value};
use sessiond_core::{StoredSession, UserRecord};
use utoipa::ToSchema;

use crate::service_keys::ServiceKey;

/// Who a session belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct Identity {
    /// The user's id (login name).
    pub id: String,
    /// The roles the session was signed in with.
    pub roles: Vec<String>,
}

/// A session: its public id (never the token), times (Unix seconds) and
/// the application's attributes.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    /// The public id (SHA-256 of the token, base64url).
    pub id: String,
    pub created_at: u64,
    /// Accurate to the renewal threshold.
    pub last_seen: u64,
    /// When it ends unless used again.
    pub idle_expires_at: u64,
    /// When it ends whatever happens.
    pub absolute_expires_at: u64,
    /// The application's attributes (JSON values).
    #[schema(value_type = Object)]
    pub attributes: Map<String, Value>,
}

impl SessionInfo {
    pub fn of(s: &StoredSession) -> Self {
        let r = &s.record;
        Self {
            id: s.key.handle(),
            created_at: r.created_at / 1000,
            last_seen: r.last_seen / 1000,
            idle_expires_at: r.idle_expires_at / 1000,
            absolute_expires_at: r.absolute_expires_at / 1000,
            attributes: r
                .attributes
                .iter()
                // The server's own bookkeeping (refresh families) is not
                // the application's business.
                .filter(|(k, _)| !k.starts_with(crate::tokens::RESERVED_PREFIX))
                .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or(Value::Null)))
                .collect(),
        }
    }
}

/// The identity and session a cookie value stands for.
#[derive(Debug, Serialize, ToSchema)]
pub struct Whoami {
    pub user: Identity,
    pub session: SessionInfo,
}

impl Whoami {
    pub fn of(s: &StoredSession) -> Self {
        Self {
            user: Identity {
                id: s.record.user_id.clone(),
                roles: s.record.roles.clone(),
            },
            session: SessionInfo::of(s),
        }
    }
}

/// An introspection answer (RFC 7662 §2.2): `{"active": false}`, or what
/// the live token stands for.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    pub active: bool,
    /// `session`, `access_token` or `refresh_token`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// The user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Unix seconds (access tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The access token's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The session's public id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The session (session and refresh tokens).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionInfo>,
}

/// How the cookie holding a new session's token should be set.
#[derive(Debug, Serialize, ToSchema)]
pub struct CookieAttributes {
    pub name: String,
    pub path: String,
    pub secure: bool,
    pub http_only: bool,
    /// `Strict` or `Lax`.
    pub same_site: String,
    /// Seconds, for a remembered session (the idle timeout; renewed by
    /// use); `null`: a browser-session cookie (no `Max-Age`).
    pub max_age: Option<u64>,
}

/// A session started for a user: the token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewSessionView {
    pub token: String,
    pub user: Identity,
    pub session: SessionInfo,
    pub cookie: CookieAttributes,
}

/// A page of a user's sessions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsPage {
    pub user: String,
    pub sessions: Vec<SessionInfo>,
    /// For the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// How many sessions ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub user: String,
    pub revoked: usize,
}

/// A session's attributes' version after a change.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttributesVersion {
    pub version: u64,
}

/// A user (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub updated_at: u64,
}

impl UserView {
    pub fn of(u: &UserRecord) -> Self {
        Self {
            id: u.name.clone(),
            roles: u.roles.clone(),
            disabled: u.disabled,
            created_at: u.created_at / 1000,
            updated_at: u.updated_at / 1000,
        }
    }
}

/// A user after a change, and how many of their sessions it ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserChanged {
    #[serde(flatten)]
    pub user: UserView,
    pub sessions_ended: usize,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsersPage {
    pub users: Vec<UserView>,
    /// For the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A service key (never the key or its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceKeyView {
    pub name: String,
    pub scopes: Vec<String>,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, to the minute.
    pub last_used: Option<u64>,
    /// Its own rate limit, if any.
    pub rate: Option<String>,
}

impl ServiceKeyView {
    pub fn of(k: &ServiceKey) -> Self {
        Self {
            name: k.name.clone(),
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            created_at: k.created_at,
            last_used: k.last_used,
            rate: k.rate.clone(),
        }
    }
}

/// A new service key: the key itself, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct NewServiceKeyView {
    #[serde(flatten)]
    pub view: ServiceKeyView,
    pub key: String,
}

/// Every service key.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceKeys {
    pub service_keys: Vec<ServiceKeyView>,
}

/// Attributes as a request sends them: names of 1 to 128 characters, none
/// starting with `sessiond.` (the server's own: said in the description,
/// not as a pattern, since JSON Schema would need a lookahead), at most 64
/// at once, values any JSON.
fn attributes_schema(
    min: Option<usize>,
    description: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .min_properties(min)
        .max_properties(Some(64))
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128)),
        ))
        .into()
}

/// A new session's attributes.
pub(crate) struct NewAttributes;

impl utoipa::PartialSchema for NewAttributes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        attributes_schema(
            None,
            "Attribute names (1 to 128 characters, not starting with `sessiond.`) to JSON values",
        )
    }
}

impl ToSchema for NewAttributes {}

/// A change of a session's attributes (`null` removes one).
pub(crate) struct AttributeChanges;

impl utoipa::PartialSchema for AttributeChanges {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        attributes_schema(
            Some(1),
            "Attribute names (1 to 128 characters, not starting with `sessiond.`) to JSON values; null removes the attribute",
        )
    }
}

impl ToSchema for AttributeChanges {}
