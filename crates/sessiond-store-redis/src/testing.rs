//! Real Redis deployments for tests: standalone, Sentinel (1 master, 2
//! replicas, 3 sentinels) and Cluster (3 masters, 3 replicas), started from
//! `redis-server` on free loopback ports.
//!
//! Every server runs under a small `sh` watchdog that kills it once the test
//! process is gone, so shared deployments (kept in statics, which Rust never
//! drops) do not outlive the test binary.
//!
//! Without `redis-server` on the PATH the tests print one line saying they
//! were skipped; with `SESSIOND_REQUIRE_REDIS=1` (set by `.ci/run`) that is
//! a failure instead.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether Redis tests can run here; prints the skip line or panics under
/// `SESSIOND_REQUIRE_REDIS=1` when `redis-server` is missing.
pub fn redis_available(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("SESSIOND_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
        panic!(
            "{test}: redis-server is not installed, and SESSIOND_REQUIRE_REDIS=1 makes that a failure"
        );
    }
    eprintln!(
        "SKIPPED {test}: redis-server is not installed (apt-get install redis-server; SESSIOND_REQUIRE_REDIS=1 makes this a failure)"
    );
    false
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `redis-server` (or sentinel) process.
pub struct RedisProcess {
    pub port: u16,
    watchdog: Child,
    pid_file: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessiond-redis-{}-{tag}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl RedisProcess {
    /// Starts `redis-server` with `args` (the port and directory are added)
    /// and waits until it answers PING.
    pub fn start(port: u16, args: &[String]) -> Self {
        let dir = temp_dir(&port.to_string());
        let mut p = Self {
            port,
            watchdog: Self::spawn(port, &dir, args),
            pid_file: dir.join("pid"),
            dir,
            args: args.to_vec(),
        };
        p.wait_ready();
        p
    }

    /// Starts a TLS-only server (`--port 0 --tls-port PORT` plus `args`)
    /// and waits until it accepts connections.
    pub fn start_tls(port: u16, args: &[String]) -> Self {
        let dir = temp_dir(&format!("tls{port}"));
        let mut all = vec!["--tls-port".to_owned(), port.to_string()];
        all.extend_from_slice(args);
        let p = Self {
            port,
            watchdog: Self::spawn(0, &dir, &all),
            pid_file: dir.join("pid"),
            dir,
            args: all,
        };
        wait_until("the TLS port to accept", Duration::from_secs(15), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        p
    }

    fn spawn(port: u16, dir: &std::path::Path, args: &[String]) -> Child {
        let owner = std::process::id();
        let script = format!(
            "redis-server \"$@\" >{log} 2>&1 & r=$!; echo $r > {pid}; \
             while kill -0 {owner} 2>/dev/null && kill -0 $r 2>/dev/null; do sleep 0.3; done; kill -9 $r 2>/dev/null; kill -0 {owner} 2>/dev/null || rm -rf {dir}",
            log = dir.join("log").display(),
            pid = dir.join("pid").display(),
            dir = dir.display(),
        );
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script).arg("sh");
        let is_sentinel = args.iter().any(|a| a == "--sentinel");
        if !is_sentinel {
            cmd.args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ]);
            cmd.arg("--dir").arg(dir);
        }
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// SIGKILL: a crash, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
        let _ = self.watchdog.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }

    /// Starts the same server again on the same port.
    pub fn restart(&mut self) {
        self.watchdog = Self::spawn(self.port, &self.dir, &self.args);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            // NOAUTH: up, and refusing the default user (an ACL test).
            if command(self.port, &["PING"])
                .is_some_and(|r| r.contains("PONG") || r.contains("NOAUTH"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        panic!("redis on port {} did not start:\n{log}", self.port);
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one command in RESP and returns the raw reply text (tests and setup only).
pub fn command(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    // Read until the reply looks complete (a short pause ends it).
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) if !out.is_empty() || started.elapsed() > Duration::from_secs(2) => break,
            Err(_) => {}
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A standalone server.
pub fn standalone() -> RedisProcess {
    RedisProcess::start(free_port(), &[])
}

/// 1 master, 2 replicas, 3 sentinels that declare the master down after 1 s.
pub struct SentinelDeployment {
    pub master: RedisProcess,
    pub replicas: Vec<RedisProcess>,
    pub sentinels: Vec<RedisProcess>,
}

pub const MASTER_NAME: &str = "sessiond";

impl SentinelDeployment {
    pub fn start() -> Self {
        // No 5 s wait for more replicas before a diskless full sync.
        let master = RedisProcess::start(
            free_port(),
            &["--repl-diskless-sync-delay".into(), "0".into()],
        );
        let replicas: Vec<RedisProcess> = (0..2)
            .map(|_| {
                RedisProcess::start(
                    free_port(),
                    &[
                        "--replicaof".into(),
                        "127.0.0.1".into(),
                        master.port.to_string(),
                    ],
                )
            })
            .collect();
        wait_until("replicas to sync", Duration::from_secs(15), || {
            command(master.port, &["INFO", "replication"])
                .is_some_and(|r| r.matches("state=online").count() == 2)
        });
        let sentinels: Vec<RedisProcess> = (0..3)
            .map(|_| {
                let port = free_port();
                let dir = temp_dir(&format!("sentinel{port}"));
                let conf = dir.join("sentinel.conf");
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 3000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n",
                        dir = dir.display(),
                        m = master.port
                    ),
                )
                .unwrap();
                RedisProcess::start(port, &[conf.display().to_string(), "--sentinel".into()])
            })
            .collect();
        for s in &sentinels {
            wait_until(
                "sentinels to see the replicas",
                Duration::from_secs(20),
                || {
                    command(s.port, &["SENTINEL", "replicas", MASTER_NAME])
                        .is_some_and(|r| r.matches("slave").count() >= 2)
                },
            );
        }
        Self {
            master,
            replicas,
            sentinels,
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(RedisProcess::addr).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }

    /// The port the sentinels now name as master.
    pub fn master_port(&self) -> Option<u16> {
        let r = command(
            self.sentinels[0].port,
            &["SENTINEL", "get-master-addr-by-name", MASTER_NAME],
        )?;
        r.lines()
            .filter_map(|l| l.trim().parse::<u16>().ok())
            .next_back()
    }
}

/// 3 masters with 1 replica each.
pub struct ClusterDeployment {
    pub nodes: Vec<RedisProcess>,
}

impl ClusterDeployment {
    pub fn start() -> Self {
        let nodes: Vec<RedisProcess> = (0..6)
            .map(|_| {
                let port = free_port();
                RedisProcess::start(
                    port,
                    &[
                        "--cluster-enabled".into(),
                        "yes".into(),
                        "--cluster-config-file".into(),
                        format!("nodes-{port}.conf"),
                        "--cluster-node-timeout".into(),
                        "2000".into(),
                        "--repl-diskless-sync-delay".into(),
                        "0".into(),
                    ],
                )
            })
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(n.addr());
        }
        let out = cmd
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        for n in &nodes {
            wait_until("the cluster to be ok", Duration::from_secs(30), || {
                command(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|r| r.contains("cluster_state:ok"))
            });
        }
        Self { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().take(3).map(RedisProcess::addr).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}

/// What [`FaultProxy`] does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward bytes as they come.
    Pass,
    /// Forward every chunk after this delay (each direction).
    Latency(Duration),
    /// Accept and read, never forward or answer.
    Blackhole,
    /// Close every new connection at once.
    Refuse,
}

/// A TCP proxy on a free loopback port in front of `upstream`, whose
/// behaviour tests change while traffic flows: real faults on real sockets.
pub struct FaultProxy {
    pub port: u16,
    fault: std::sync::Arc<std::sync::Mutex<Fault>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: u16) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = std::sync::Arc::new(std::sync::Mutex::new(Fault::Pass));
        let conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>> =
            Default::default();
        let (f, c) = (fault.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *f.lock().unwrap() == Fault::Refuse {
                    drop(client);
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let pipe = |fault: std::sync::Arc<std::sync::Mutex<Fault>>| {
                    move |mut r: tokio::net::tcp::OwnedReadHalf,
                          mut w: tokio::net::tcp::OwnedWriteHalf| async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            let n = match r.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let mode = *fault.lock().unwrap();
                            match mode {
                                Fault::Blackhole => continue,
                                Fault::Latency(d) => tokio::time::sleep(d).await,
                                Fault::Pass | Fault::Refuse => {}
                            }
                            if w.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                };
                let up = tokio::spawn((pipe(f.clone()))(cr, sw));
                let down = tokio::spawn((pipe(f.clone()))(sr, cw));
                let mut guard = c.lock().unwrap();
                guard.push(up.abort_handle());
                guard.push(down.abort_handle());
            }
        });
        Self {
            port,
            fault,
            conns,
            accept,
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Drops every open connection (both sides see it close).
    pub fn cut_all(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}
