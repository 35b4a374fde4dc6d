//! Store benchmark: ops/s and latency of load, renew and create on the memory
//! and file stores, at a given number of stored sessions, and bytes on disk
//! per session for the file store.
//!
//! ```sh
//! cargo bench -p sessiond-store-file --bench store -- [SESSIONS...]   # default: 10000 1000000
//! ```
//! Each phase runs 64 concurrent tasks for 3 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sessiond_core::testing::sample_record;
use sessiond_core::{
    Clock, ExpiryPolicy, MemoryStore, SessionKey, SessionStore, SessionToken, SystemClock,
};
use sessiond_store_file::{FileStore, FileStoreConfig};

const TASKS: usize = 64;
const PHASE: Duration = Duration::from_secs(3);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn preload(store: &Arc<dyn SessionStore>, n: usize) -> Vec<SessionKey> {
    let policy = ExpiryPolicy::default();
    let keys: Vec<SessionKey> = (0..n).map(|_| SessionToken::generate().key()).collect();
    let keys = Arc::new(keys);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..256 {
        let (store, keys, next) = (store.clone(), keys.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= keys.len() {
                    break;
                }
                let record =
                    sample_record(&format!("user{}", i % 10_000), SystemClock.now(), &policy);
                store
                    .create(&keys[i], &record)
                    .await
                    .expect("preload create");
            }
        }));
    }
    for t in tasks {
        t.await.expect("preload task");
    }
    Arc::try_unwrap(keys).unwrap_or_else(|k| (*k).clone())
}

#[derive(Clone, Copy)]
enum Phase {
    Load,
    Renew,
    Create,
}

async fn run_phase(
    store: Arc<dyn SessionStore>,
    keys: Arc<Vec<SessionKey>>,
    phase: Phase,
) -> (f64, Duration, Duration) {
    // Renew with a threshold as long as the idle timeout: every call is due
    // and writes (the worst case; in service a session renews once per window).
    let renew_policy = ExpiryPolicy {
        renewal_threshold: ExpiryPolicy::default().idle_timeout,
        ..Default::default()
    };
    let clock = Arc::new(AtomicU64::new(SystemClock.now()));
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let (store, keys, clock) = (store.clone(), keys.clone(), clock.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut i = t * 7919;
            while Instant::now() < deadline {
                i = (i + 104_729) % keys.len();
                let t0 = Instant::now();
                match phase {
                    Phase::Load => {
                        let r = store.load(&keys[i], SystemClock.now()).await.expect("load");
                        assert!(r.is_some());
                    }
                    Phase::Renew => {
                        let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
                        store
                            .renew(&keys[i], now, &renew_policy)
                            .await
                            .expect("renew");
                    }
                    Phase::Create => {
                        let record = sample_record(
                            "bench-create",
                            SystemClock.now(),
                            &ExpiryPolicy::default(),
                        );
                        store
                            .create(&SessionToken::generate().key(), &record)
                            .await
                            .expect("create");
                    }
                }
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    (
        all.len() as f64 / secs,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
    )
}

async fn bench(name: &str, store: Arc<dyn SessionStore>, n: usize, disk: Option<&std::path::Path>) {
    let t0 = Instant::now();
    let keys = Arc::new(preload(&store, n).await);
    let load_secs = t0.elapsed().as_secs_f64();
    println!(
        "{name:6} sessions={n:>8} preload={:.1}s ({:.0} creates/s with 256 writers)",
        load_secs,
        n as f64 / load_secs
    );
    if let Some(path) = disk {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{name:6} sessions={n:>8} file_bytes={bytes} bytes_per_session={:.0}",
            bytes as f64 / n as f64
        );
    }
    for (label, phase) in [
        ("load", Phase::Load),
        ("renew", Phase::Renew),
        ("create", Phase::Create),
    ] {
        let (ops, p50, p99) = run_phase(store.clone(), keys.clone(), phase).await;
        println!(
            "RESULT store={name} sessions={n} op={label} ops_per_s={ops:.0} p50_us={:.1} p99_us={:.1} tasks={TASKS}",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6
        );
    }
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 1_000_000]
    } else {
        sizes
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for &n in &sizes {
            bench("memory", Arc::new(MemoryStore::new()), n, None).await;
            let dir = tempfile::tempdir().expect("temp dir");
            let store = FileStore::open(dir.path(), FileStoreConfig::default()).expect("open");
            let path = store.path().to_owned();
            bench("file", Arc::new(store), n, Some(&path)).await;
        }
    });
}
