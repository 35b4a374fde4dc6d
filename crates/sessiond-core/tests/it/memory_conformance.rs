//! The memory store passes the shared conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sessiond_core::{Backend, MemoryStore};

async fn make() -> (Arc<dyn Backend>, ()) {
    (Arc::new(MemoryStore::new()), ())
}

sessiond_core::store_conformance_tests!(make);
