//! Redis memory per session: creates N sessions through the real store and
//! engine and divides the growth of `INFO memory` used_memory by N.
//!
//! ```sh
//! redis-server --port 6391 --save "" --appendonly no &
//! cargo bench -p sessiond-store-redis --bench memory -- redis://127.0.0.1:6391 100000
//! ```
//! Sessions carry what the server stores for a browser: an IPv4 address and
//! the device label of a 109-character Edge User-Agent ("Edge 156 on Linux");
//! each user has 2 sessions (the per-user index is counted too).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sessiond_core::{ClientMeta, ExpiryPolicy, NewSession, SessionManager};
use sessiond_store_redis::{RedisConfig, RedisStore};

/// `sessiond_axum::device::device_label` of "Mozilla/5.0 (X11; Linux x86_64)
/// AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36 Edg/156".
const DEVICE: &str = "Edge 156 on Linux";

async fn used_memory(url: &str) -> i64 {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let url = args
        .first()
        .cloned()
        .unwrap_or_else(|| "redis://127.0.0.1:6391".into());
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut config = RedisConfig::new(url.clone());
        config.prefix = "mem:".into();
        let store = Arc::new(RedisStore::connect(&config).await.unwrap());
        let sessions = Arc::new(SessionManager::new(store, ExpiryPolicy::default()));
        let before = used_memory(&url).await;
        let mut tasks = Vec::new();
        for t in 0..64 {
            let sessions = sessions.clone();
            tasks.push(tokio::spawn(async move {
                for i in (t..n).step_by(64) {
                    let new = NewSession {
                        user_id: format!("user{:06}", i / 2),
                        roles: vec!["user".into()],
                        client: ClientMeta { ip: Some("203.0.113.57".into()), user_agent: Some(DEVICE.into()) },
                        ..Default::default()
                    };
                    sessions.create(new).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let after = used_memory(&url).await;
        println!(
            "RESULT sessions={n} used_memory_before={before} used_memory_after={after} bytes_per_session={:.0} (device {DEVICE:?})",
            (after - before) as f64 / n as f64
        );
    });
}
