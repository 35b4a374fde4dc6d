//! `sessiond` as a real child process, for multi-node and failover tests.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Node {
    pub child: Child,
    pub base: String,
    /// Everything the process writes to stderr, once it has ended.
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Node {
    /// Starts `sessiond --store URL serve` on a free port and waits for /healthz.
    pub async fn start(store_url: &str, envs: &[(&str, &str)]) -> Node {
        Node::launch(&["--store".as_ref(), store_url.as_ref()], envs).await
    }

    /// Starts `sessiond --data-dir DIR serve` (the embedded file store).
    pub async fn start_file(dir: &Path) -> Node {
        Node::start_file_with(dir, &[]).await
    }

    /// [`Node::start_file`] with extra environment variables.
    pub async fn start_file_with(dir: &Path, envs: &[(&str, &str)]) -> Node {
        Node::launch(&["--data-dir".as_ref(), dir.as_os_str()], envs).await
    }

    /// Stops the process with `signal` and returns all it wrote to stderr.
    pub async fn stop_and_read_stderr(&mut self, signal: &str) -> String {
        self.stop_with(signal).await;
        self.stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Starts `sessiond GLOBAL_ARGS serve` on a free port and waits for
    /// /healthz. If the process ends first, the panic carries its stderr.
    async fn launch(global_args: &[&OsStr], envs: &[(&str, &str)]) -> Node {
        let port = sessiond_store_redis::testing::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_sessiond"))
            .args(global_args)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("SESSIOND_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sessiond");
        // Forward stderr on a thread: a pipe nobody reads would block the child.
        let stderr = child.stderr.take().expect("stderr");
        let captured = std::thread::spawn(move || {
            let mut all = String::new();
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                eprintln!("sessiond:{port}: {line}");
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("poll sessiond") {
                let stderr = captured.join().unwrap_or_default();
                panic!("sessiond on {port} exited before serving ({status}):\n{stderr}");
            }
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
                "sessiond on {port} did not answer /healthz within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Node {
            child,
            base,
            stderr: Some(captured),
        }
    }

    /// Sends `signal` (e.g. "-TERM") and waits up to 10 s for the process to end.
    pub async fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll sessiond") {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{signal} did not stop the server"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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
