//! The resilience decorator on tokio's paused clock: no sleeping in tests.

use std::sync::Arc;
use std::time::Duration;

use sessiond_core::testing::{FaultyStore, sample_record};
use sessiond_core::{
    BreakerState, ExpiryPolicy, MemoryStore, ResilienceConfig, ResilientStore, SessionKey,
    SessionStore, SessionToken, StoreError,
};
use tokio::time::Instant;

fn setup() -> (Arc<FaultyStore<MemoryStore>>, ResilientStore) {
    let flaky = Arc::new(FaultyStore::new(Arc::new(MemoryStore::new())));
    let store = ResilientStore::new(flaky.clone(), ResilienceConfig::default());
    (flaky, store)
}

fn key() -> SessionKey {
    SessionToken::generate().key()
}

#[tokio::test(start_paused = true)]
async fn a_hung_store_call_ends_at_its_deadline_with_unavailable() {
    let (flaky, store) = setup();
    flaky.set_hanging(true);
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
    flaky.reset_calls();
    flaky.fail_next(1);
    assert!(
        store.load(&k, 1).await.unwrap().is_some(),
        "the retry succeeded"
    );
    assert_eq!(flaky.calls(), 2);

    // A create whose answer was lost may have happened: not repeated.
    flaky.reset_calls();
    flaky.fail_next(1);
    assert!(
        store
            .create(&key(), &sample_record("u", 0, &ExpiryPolicy::default()))
            .await
            .is_err()
    );
    assert_eq!(flaky.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_then_probes_and_closes_when_the_store_is_back() {
    let (flaky, store) = setup();
    flaky.fail_next(u32::MAX);
    while store.breaker_state() == BreakerState::Closed {
        assert!(store.load(&key(), 0).await.is_err());
    }
    assert_eq!(store.breaker_state(), BreakerState::Open);

    // While open: an immediate Unavailable, and the store is not called.
    let calls = flaky.calls();
    let started = Instant::now();
    assert!(matches!(
        store.load(&key(), 0).await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(started.elapsed(), Duration::ZERO, "fails fast");
    assert_eq!(flaky.calls(), calls, "the store was not touched");

    // The store recovers; after open_for the breaker lets probes through and closes.
    flaky.fail_next(0);
    tokio::time::advance(ResilienceConfig::default().breaker.open_for).await;
    for _ in 0..ResilienceConfig::default().breaker.half_open_probes {
        store.load(&key(), 0).await.unwrap();
    }
    assert_eq!(store.breaker_state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_failed_probe_opens_the_breaker_again() {
    let (flaky, store) = setup();
    flaky.fail_next(u32::MAX);
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
async fn a_durability_shortfall_neither_opens_the_breaker_nor_stops_reads() {
    let (flaky, store) = setup();
    let record = sample_record("u", 0, &ExpiryPolicy::default());
    let live = key();
    store.create(&live, &record).await.unwrap();
    assert!(!store.durability_degraded());
    flaky.set_unreplicated(true);
    for _ in 0..50 {
        let r = store.create(&key(), &record).await;
        assert!(matches!(r, Err(StoreError::NotReplicated { .. })), "{r:?}");
        assert!(store.load(&live, 0).await.unwrap().is_some());
    }
    assert_eq!(store.breaker_state(), BreakerState::Closed);
    assert!(store.durability_degraded());
    // One durable write that succeeds ends the degraded state.
    flaky.set_unreplicated(false);
    store.create(&key(), &record).await.unwrap();
    assert!(!store.durability_degraded());
    // So does time without a new shortfall.
    flaky.set_unreplicated(true);
    let _ = store.create(&key(), &record).await;
    assert!(store.durability_degraded());
    tokio::time::advance(Duration::from_secs(31)).await;
    assert!(!store.durability_degraded());
}

#[tokio::test(start_paused = true)]
async fn an_outage_after_many_successes_still_opens_the_breaker_quickly() {
    // Regression: a time-only window held the successes from before the
    // outage, so the failure ratio stayed under the threshold for minutes.
    let (flaky, store) = setup();
    for _ in 0..5_000 {
        store.load(&key(), 0).await.unwrap();
    }
    flaky.fail_next(u32::MAX);
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

/// A key in shard `shard`.
fn key_in(shard: u8) -> SessionKey {
    let mut k = key();
    k.0[0] = shard;
    k
}

#[tokio::test(start_paused = true)]
async fn a_dead_part_of_the_store_opens_its_own_breaker_and_the_other_parts_keep_serving() {
    let (flaky, store) = setup();
    flaky.split_in_two();
    let record = sample_record("u", 0, &ExpiryPolicy::default());
    let (lower, upper) = (key_in(3), key_in(200));
    for k in [&lower, &upper] {
        store.create(k, &record).await.unwrap();
    }
    flaky.set_upper_half_down(true);
    let mut upper_failures = 0;
    for _ in 0..2_000 {
        assert!(store.load(&lower, 0).await.unwrap().is_some());
        if store.load(&upper, 0).await.is_err() {
            upper_failures += 1;
        }
    }
    assert_eq!(upper_failures, 2_000);
    assert_eq!(store.impaired_parts(), ["upper"]);
    assert_eq!(
        store.breaker_state(),
        BreakerState::Closed,
        "the whole store is fine"
    );
    // While open, the dead part's calls fail without reaching the store.
    let calls = flaky.calls();
    let started = Instant::now();
    assert!(store.load(&upper, 0).await.is_err());
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(flaky.calls(), calls);

    // The part comes back: its breaker probes and closes.
    flaky.set_upper_half_down(false);
    tokio::time::advance(ResilienceConfig::default().breaker.open_for).await;
    for _ in 0..ResilienceConfig::default().breaker.half_open_probes {
        assert!(store.load(&upper, 0).await.unwrap().is_some());
    }
    assert!(store.impaired_parts().is_empty());
    let states = store.breaker_states();
    assert!(
        states.iter().all(|(_, s)| *s == BreakerState::Closed),
        "{states:?}"
    );
}
