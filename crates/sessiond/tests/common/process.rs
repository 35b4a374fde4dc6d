//! `sessiond` as a real child process, for multi-node and failover tests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub child: Child,
    pub base: String,
}

impl Node {
    /// Starts `sessiond --store URL serve` on a free port and waits for /healthz.
    pub async fn start(store_url: &str, envs: &[(&str, &str)]) -> Node {
        let port = sessiond_store_redis::testing::free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args([
                "--store",
                store_url,
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("SESSIOND_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sessiond");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if http
                .get(format!("{base}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sessiond on {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Node { child, base }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sessiond --store URL user add NAME --role ROLE --password-stdin`.
pub fn add_user(store_url: &str, name: &str, role: &str, password: &str) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
        .args([
            "--store",
            store_url,
            "user",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run sessiond user add");
    writeln!(child.stdin.take().expect("stdin"), "{password}").expect("write password");
    assert!(
        child.wait().expect("wait").success(),
        "user add {name} failed"
    );
}
