//! HTTP routes, by area.

pub mod account;
pub mod admin;
pub mod auth;
pub mod health;
pub mod pages;
pub mod token;

use serde::Serialize;
use sessiond_core::Session;

/// A session as the account and admin APIs show it: a public handle, never the token.
#[derive(Debug, Serialize)]
pub struct SessionView {
    /// Public handle (SHA-256 of the token, base64url).
    pub id: String,
    /// Whether this is the session making the request.
    pub current: bool,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds, accurate to the renewal threshold.
    pub last_seen: u64,
    /// Unix seconds: when it ends if not renewed.
    pub expires_at: u64,
    /// Client IP at creation.
    pub ip: Option<String>,
    /// User agent at creation.
    pub user_agent: Option<String>,
}

impl SessionView {
    /// The view of `s`; `current` is the caller's own session handle.
    pub fn new(s: Session, current: Option<&str>) -> Self {
        let id = s.key.handle();
        Self {
            current: current == Some(id.as_str()),
            id,
            created_at: s.record.created_at / 1000,
            last_seen: s.record.last_seen / 1000,
            expires_at: s.record.expires_at() / 1000,
            ip: s.record.client.ip,
            user_agent: s.record.client.user_agent,
        }
    }
}
