//! The file store passes the shared conformance suite.

use std::sync::Arc;

use sessiond_core::Backend;
use sessiond_store_file::{FileStore, FileStoreConfig};

async fn make() -> (Arc<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FileStore::open(dir.path(), FileStoreConfig::default()).expect("open");
    (Arc::new(store), dir)
}

sessiond_core::store_conformance_tests!(make);

#[tokio::test]
async fn dropping_the_store_releases_the_database_for_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = sessiond_core::SessionToken::generate().key();
    let now = sessiond_core::Clock::now(&sessiond_core::SystemClock);
    {
        let store = FileStore::open(dir.path(), FileStoreConfig::default()).unwrap();
        let record = sessiond_core::testing::sample_record("reopen", now, &Default::default());
        sessiond_core::SessionStore::create(&store, &key, &record)
            .await
            .unwrap();
    }
    // The writer thread notices the drop asynchronously; give it a moment.
    let mut reopened = None;
    for _ in 0..100 {
        if let Ok(s) = FileStore::open(dir.path(), FileStoreConfig::default()) {
            reopened = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let store = reopened.expect("the database is released after the store is dropped");
    assert!(
        sessiond_core::SessionStore::load(&store, &key, now)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_closed_and_dropped_store_can_be_reopened_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = sessiond_core::SessionToken::generate().key();
    let now = sessiond_core::Clock::now(&sessiond_core::SystemClock);
    for round in 0..20 {
        let store = FileStore::open(dir.path(), FileStoreConfig::default()).unwrap_or_else(|e| {
            panic!("round {round}: the previous close left the file locked: {e}")
        });
        if round == 0 {
            let record = sessiond_core::testing::sample_record("reopen", now, &Default::default());
            sessiond_core::SessionStore::create(&store, &key, &record)
                .await
                .unwrap();
        }
        assert!(
            sessiond_core::SessionStore::load(&store, &key, now)
                .await
                .unwrap()
                .is_some()
        );
        store.close().await;
    }
}

#[tokio::test]
async fn the_background_sweeper_removes_expired_sessions_by_itself() {
    use sessiond_core::{Clock, SessionStore, SystemClock};
    let dir = tempfile::tempdir().unwrap();
    let config = FileStoreConfig {
        sweep_interval: std::time::Duration::from_millis(20),
        ..Default::default()
    };
    let store = FileStore::open(dir.path(), config).unwrap();
    let key = sessiond_core::SessionToken::generate().key();
    let mut record =
        sessiond_core::testing::sample_record("sweeper", SystemClock.now(), &Default::default());
    record.idle_expires_at = SystemClock.now() + 1; // expires at once
    store.create(&key, &record).await.unwrap();
    // Asked for at an earlier time, the session shows as long as it is stored.
    let earlier = record.created_at;
    for _ in 0..200 {
        if store.load(&key, earlier).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the sweeper did not remove the expired session within 2 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_never_serves_a_record_older_than_an_acknowledged_write() {
    use sessiond_core::{AttributeChange, Clock, SessionStore, SystemClock};
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileStore::open(dir.path(), FileStoreConfig::default()).unwrap());
    let key = sessiond_core::SessionToken::generate().key();
    let now = SystemClock.now();
    let record = sessiond_core::testing::sample_record("cache", now, &Default::default());
    store.create(&key, &record).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Readers keep refilling the cache while the writer changes the record.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = store.load(&key, now).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for i in 0..300 {
        let v = store
            .update_attributes(
                &key,
                now,
                &[AttributeChange::set("n", i.to_string())],
                None,
                sessiond_core::AttributeBudget::default(),
            )
            .await
            .unwrap();
        let seen = store.load(&key, now).await.unwrap().unwrap();
        assert!(
            seen.version >= v,
            "read version {} after acknowledged version {v}",
            seen.version
        );
        assert_eq!(seen.attributes["n"], i.to_string());
    }
    store.delete(&key).await.unwrap();
    for _ in 0..100 {
        assert!(
            store.load(&key, now).await.unwrap().is_none(),
            "a deleted session came back from the cache"
        );
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
}
