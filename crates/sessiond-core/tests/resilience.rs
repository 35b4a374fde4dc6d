//! The resilience decorator on tokio's paused clock: no sleeping in tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sessiond_core::testing::sample_record;
use sessiond_core::{
    AttributeChange, BreakerState, CycleChanges, ExpiryPolicy, MemoryStore, Millis, Renewal,
    ResilienceConfig, ResilientStore, SessionKey, SessionRecord, SessionStore, SessionToken,
    StoreError, UserRecord, UserStore,
};
use tokio::time::Instant;

/// A memory store that can be told to fail its next calls or to hang.
#[derive(Default)]
struct Flaky {
    inner: MemoryStore,
    fail_next: AtomicU32,
    hang: AtomicBool,
    calls: AtomicUsize,
}

impl Flaky {
    async fn gate(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        let failing = self.fail_next.load(Ordering::SeqCst);
        if failing > 0 {
            self.fail_next.store(failing - 1, Ordering::SeqCst);
            return Err(StoreError::unavailable("connection reset"));
        }
        Ok(())
    }
}

#[async_trait]
impl SessionStore for Flaky {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.create(key, record).await
    }
    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.gate().await?;
        self.inner.load(key, now).await
    }
    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        p: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        self.gate().await?;
        self.inner.renew(key, now, p).await
    }
    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        c: &[AttributeChange],
        v: Option<u64>,
    ) -> Result<u64, StoreError> {
        self.gate().await?;
        self.inner.update_attributes(key, now, c, v).await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.gate().await?;
        self.inner.delete(key).await
    }
    async fn cycle(
        &self,
        o: &SessionKey,
        n: &SessionKey,
        now: Millis,
        c: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        self.gate().await?;
        self.inner.cycle(o, n, now, c).await
    }
    async fn list_by_user(
        &self,
        u: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        self.gate().await?;
        self.inner.list_by_user(u, now).await
    }
    async fn delete_by_user(&self, u: &str, e: Option<&SessionKey>) -> Result<usize, StoreError> {
        self.gate().await?;
        self.inner.delete_by_user(u, e).await
    }
    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        self.inner.sweep(now, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate().await
    }
    fn backend_name(&self) -> &'static str {
        "flaky"
    }
}

#[async_trait]
impl UserStore for Flaky {
    async fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.inner.create_user(u).await
    }
    async fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.inner.update_user(u).await
    }
    async fn get_user(&self, n: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.get_user(n).await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }
    async fn get_setting(&self, n: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_setting(n).await
    }
    async fn swap_setting(&self, n: &str, e: Option<&[u8]>, v: &[u8]) -> Result<bool, StoreError> {
        self.inner.swap_setting(n, e, v).await
    }
}

fn setup() -> (Arc<Flaky>, ResilientStore) {
    let flaky = Arc::new(Flaky::default());
    let store = ResilientStore::new(flaky.clone(), ResilienceConfig::default());
    (flaky, store)
}

fn key() -> SessionKey {
    SessionToken::generate().key()
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_call_ends_at_its_deadline_with_unavailable() {
    let (flaky, store) = setup();
    flaky.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let r = store.load(&key(), 0).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert_eq!(started.elapsed(), ResilienceConfig::default().call_timeout);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_of_a_load_is_retried_but_a_create_is_not_repeated() {
    let (flaky, store) = setup();
    let k = key();
    store
        .create(&k, &sample_record("u", 0, &ExpiryPolicy::default()))
        .await
        .unwrap();
    flaky.calls.store(0, Ordering::SeqCst);
    flaky.fail_next.store(1, Ordering::SeqCst);
    assert!(
        store.load(&k, 1).await.unwrap().is_some(),
        "the retry succeeded"
    );
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);

    // A create whose answer was lost may have happened: not repeated.
    flaky.calls.store(0, Ordering::SeqCst);
    flaky.fail_next.store(1, Ordering::SeqCst);
    assert!(
        store
            .create(&key(), &sample_record("u", 0, &ExpiryPolicy::default()))
            .await
            .is_err()
    );
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_then_probes_and_closes_when_the_store_is_back() {
    let (flaky, store) = setup();
    flaky.fail_next.store(u32::MAX, Ordering::SeqCst);
    while store.breaker_state() == BreakerState::Closed {
        assert!(store.load(&key(), 0).await.is_err());
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);

    // While open: an immediate Unavailable, and the store is not called.
    let calls = flaky.calls.load(Ordering::SeqCst);
    let started = Instant::now();
    assert!(matches!(
        store.load(&key(), 0).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(started.elapsed(), Duration::ZERO, "fails fast");
    assert_eq!(
        flaky.calls.load(Ordering::SeqCst),
        calls,
        "the store was not touched"
    );

    // The store recovers; after open_for the breaker lets probes through and closes.
    flaky.fail_next.store(0, Ordering::SeqCst);
    tokio::time::advance(ResilienceConfig::default().breaker.open_for).await;
    for _ in 0..ResilienceConfig::default().breaker.half_open_probes {
        store.load(&key(), 0).await.unwrap();
    }
    assert_eq!(store.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let (flaky, store) = setup();
    flaky.fail_next.store(u32::MAX, Ordering::SeqCst);
    while store.breaker_state() == BreakerState::Closed {
        let _ = store.load(&key(), 0).await;
    }
    tokio::time::advance(ResilienceConfig::default().breaker.open_for).await;
    assert!(store.load(&key(), 0).await.is_err());
    assert_eq!(store.breaker_state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn not_found_and_conflict_are_answers_and_never_open_the_breaker() {
    let (_flaky, store) = setup();
    let k = key();
    let record = sample_record("u", 0, &ExpiryPolicy::default());
    store.create(&k, &record).await.unwrap();
    for _ in 0..50 {
        assert!(matches!(
            store.create(&k, &record).await,
            Err(StoreError::Conflict)
        ));
        assert!(store.load(&key(), 0).await.unwrap().is_none());
    }
    assert_eq!(store.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_outage_after_many_successes_still_opens_the_breaker_quickly() {
    // Regression: a time-only window held the successes from before the
    // outage, so the failure ratio stayed under the threshold for minutes.
    let (flaky, store) = setup();
    for _ in 0..5_000 {
        store.load(&key(), 0).await.unwrap();
    }
    flaky.fail_next.store(u32::MAX, Ordering::SeqCst);
    let mut failed_calls = 0;
    while store.breaker_state() == BreakerState::Closed {
        let _ = store.load(&key(), 0).await;
        failed_calls += 1;
        assert!(
            failed_calls <= 20,
            "the breaker did not open after {failed_calls} failing calls"
        );
    }
}
