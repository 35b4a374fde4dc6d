//! The integration tests of sessiond-store-file, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
mod crash;
