//! The integration tests of sessiond-axum, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bearer;
mod cache;
mod layers;
mod rate;
