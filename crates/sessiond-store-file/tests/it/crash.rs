//! Durability: a child process creates sessions while this test SIGKILLs it
//! at random moments; every session whose creation was acknowledged must load
//! after the restart, and the database must open cleanly each time.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sessiond_core::{
    Clock, ExpiryPolicy, SessionKey, SessionStore, SystemClock, testing::sample_record,
};
use sessiond_store_file::{FileStore, FileStoreConfig};

const CHILD_ENV: &str = "SESSIOND_CRASH_CHILD_DIR";
// The path inside the integration-test binary, for `--exact`.
const TEST_NAME: &str = "crash::acknowledged_sessions_survive_sigkill_at_random_moments";

/// The child: create sessions from 16 tasks as fast as possible, printing each
/// key once its create has returned (been acknowledged).
fn child(dir: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(FileStore::open(dir, FileStoreConfig::default()).unwrap());
        let mut tasks = Vec::new();
        for t in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let key = sessiond_core::SessionToken::generate().key();
                    let record = sample_record(
                        &format!("crash-{t}-{i}"),
                        SystemClock.now(),
                        &ExpiryPolicy::default(),
                    );
                    store.create(&key, &record).await.unwrap();
                    // println! locks stdout per line, so lines never interleave.
                    println!("ACK {}", key.handle());
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    u64::from_le_bytes(b) % n
}

#[test]
fn acknowledged_sessions_survive_sigkill_at_random_moments() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<SessionKey> = Vec::new();
    for round in 0..5 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| {
                    l.strip_prefix("ACK ")
                        .and_then(|h| SessionKey::from_handle(h).ok())
                })
                .collect::<Vec<_>>()
        });
        // Let it start writing, then kill it at a random moment.
        std::thread::sleep(Duration::from_millis(300 + random_below(700)));
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let keys = reader.join().unwrap();
        assert!(
            !keys.is_empty(),
            "round {round}: the child acknowledged nothing before it was killed"
        );
        acked.extend(keys);

        // Restart: the database opens cleanly and every acknowledged session loads.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let store = FileStore::open(dir.path(), FileStoreConfig::default())
                .expect("the database reopens cleanly");
            let now = SystemClock.now();
            let mut missing = 0;
            for key in &acked {
                if store.load(key, now).await.unwrap().is_none() {
                    missing += 1;
                }
            }
            assert_eq!(
                missing,
                0,
                "round {round}: {missing} of {} acknowledged sessions were lost",
                acked.len()
            );
            store.close().await;
            eprintln!(
                "round {round}: {} acknowledged sessions all present (reopen+check {:?})",
                acked.len(),
                started.elapsed()
            );
        });
    }
}
