//! The integration tests of sessiond-store-redis, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod durability;
mod migration;
mod near;
mod rate;
mod tls;
