//! The integration tests of sessiond-core, in one binary (it links once).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod memory_conformance;
mod resilience;
