//! The integration tests of sessiond-jwt, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod verify;
