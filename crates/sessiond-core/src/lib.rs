//! The session engine of sessiond, with no I/O of its own.
//!
//! - [`token`]: 256-bit session tokens and the SHA-256 keys stores index by.
//! - [`record`]: what a store keeps for a session (and for a user).
//! - [`policy`]: idle timeout, absolute lifetime and sliding renewal.
//! - [`store`]: the [`SessionStore`] / [`UserStore`] contract and [`StoreError`].
//! - [`manager`]: [`SessionManager`], the rules of create, verify, renew,
//!   cycle and revoke on top of any store.
//! - [`memory`]: [`MemoryStore`], for tests and development.
//! - [`resilience`]: [`ResilientStore`], deadlines, retries and a circuit
//!   breaker around any store.
//! - [`metric`]: the catalogue of every metric name sessiond records.
//! - `testing` (feature `testing`): the conformance suite every store runs,
//!   and test helpers.
//!
//! ```
//! # tokio_test();
//! # fn tokio_test() {
//! # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! # rt.block_on(async {
//! use std::sync::Arc;
//! use sessiond_core::{ExpiryPolicy, MemoryStore, NewSession, SessionManager};
//!
//! let sessions = SessionManager::new(Arc::new(MemoryStore::new()), ExpiryPolicy::default());
//! let (token, _) = sessions
//!     .create(NewSession { user_id: "alice".into(), roles: vec!["user".into()], ..Default::default() })
//!     .await?;
//! let verified = sessions.verify(&token.expose()).await?.expect("live");
//! assert_eq!(verified.session.record.user_id, "alice");
//! # Ok::<(), sessiond_core::StoreError>(())
//! # }).unwrap();
//! # }
//! ```

pub mod attempts;
pub mod manager;
pub mod memory;
pub mod metric;
pub mod ops;
pub mod policy;
pub mod rate;
pub mod record;
pub mod resilience;
pub mod store;
pub mod time;
pub mod token;

#[cfg(feature = "testing")]
pub mod testing;

pub use attempts::{Attempt, Counter, Refund};
pub use manager::{NewSession, SessionManager, StoredSession, Verified};
pub use memory::MemoryStore;
pub use policy::{ExpiryPolicy, OnLimit, RoleRules, SessionLimit, SessionRules};
pub use rate::{LocalRates, Rate, RateOutcome};
pub use record::{AttributeBudget, AttributeChange, ClientMeta, SessionRecord, UserRecord};
pub use resilience::{
    BreakerConfig, BreakerState, ResilienceConfig, ResilientStore, retried_operations,
};
pub use store::{
    Backend, BoxError, CacheRead, CycleChanges, FailureDomain, Renewal, Scope, SessionStore,
    StoreError, UserStore,
};
pub use time::{Clock, ManualClock, Millis, SystemClock};
pub use token::{SessionKey, SessionToken, TokenError};
