//! The memory store passes the shared conformance suite (with the shared
//! response-cache tier it holds for multi-node tests, so that its contract
//! is checked too).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sessiond_core::{Backend, MemoryStore};

async fn make() -> (Arc<dyn Backend>, ()) {
    (Arc::new(MemoryStore::sharing_response_cache()), ())
}

sessiond_core::store_conformance_tests!(make);
