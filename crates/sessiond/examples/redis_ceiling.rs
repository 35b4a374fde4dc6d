//! The fastest a server doing one Redis command per request can go on this
//! machine: the yardstick the Redis benchmark in `docs/benchmarks.md` reads
//! sessiond's figures against.
//!
//! `GET /api/profile` takes the cookie's value, sends one Redis command for
//! it over one multiplexed `redis` connection (sessiond's client) and answers
//! fixed JSON: no session semantics, no security headers, no CSRF, no
//! metrics. The keys are filled at start, 1000 of them like the benchmark's
//! 1000 sessions.
//!
//! ```sh
//! cargo run --release -p sessiond --example redis_ceiling -- redis://127.0.0.1:6390 127.0.0.1:8105 get
//! SKIP_LOGIN=1 ../shared/peers/bench.sh http://127.0.0.1:8105 15 64
//! ```
//!
//! The third argument is the command: `get` (a 100-byte string, like the
//! peers' blobs), `hgetall` (a 6-field hash shaped like sessiond's first
//! layout) or `hgetall2` (the same bytes in 2 fields, the current layout).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use redis::aio::MultiplexedConnection;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Ceiling {
    conn: MultiplexedConnection,
    /// Keys are hashes (`HGETALL`), else strings (`GET`).
    hash: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6390".into());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:8105".into());
    let hash = match args.next().as_deref() {
        None | Some("get") => None,
        Some("hgetall") => Some(vec![
            ("m", "x".repeat(57)),
            ("x", "y".repeat(32)),
            ("e", "1795000000000".into()),
            ("i", "1795000000000".into()),
            ("l", "1795000000000".into()),
            ("v", "1".into()),
        ]),
        Some("hgetall2") => Some(vec![
            ("m", "x".repeat(90)),
            ("t", "1795000000000:1795000000000:1795000000000:1".into()),
        ]),
        Some(other) => anyhow::bail!("unknown command {other}: get, hgetall or hgetall2"),
    };
    let kind = if hash.is_some() { "hash" } else { "get" };
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for i in 0..1000 {
        let key = format!("ceiling:{kind}:dummy-cookie-{i:04}");
        if let Some(fields) = &hash {
            let _: () = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(fields)
                .query_async(&mut conn)
                .await?;
        } else {
            let _: () = redis::cmd("SET")
                .arg(&key)
                .arg("v".repeat(100))
                .query_async(&mut conn)
                .await?;
        }
    }
    let app = Router::new()
        .route("/api/profile", get(profile))
        .with_state(Arc::new(Ceiling {
            conn,
            hash: hash.is_some(),
        }));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("redis ceiling ({kind}) on {listen}");
    axum::serve(listener, app).await?;
    Ok(())
}

async fn profile(State(c): State<Arc<Ceiling>>, headers: HeaderMap) -> impl IntoResponse {
    let id = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('='))
        .map_or("", |(_, id)| id);
    let key = format!("ceiling:{}:{id}", if c.hash { "hash" } else { "get" });
    let mut conn = c.conn.clone();
    let found = if c.hash {
        redis::cmd("HGETALL")
            .arg(&key)
            .query_async::<Vec<(Vec<u8>, Vec<u8>)>>(&mut conn)
            .await
            .is_ok_and(|fields| !fields.is_empty())
    } else {
        redis::cmd("GET")
            .arg(&key)
            .query_async::<Option<Vec<u8>>>(&mut conn)
            .await
            .is_ok_and(|v| v.is_some())
    };
    if found {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"user_id":"ceiling","role":"user"}"#,
        )
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"error":"unauthorized"}"#,
        )
    }
}
