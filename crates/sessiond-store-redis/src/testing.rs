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
        // A configuration file (a sentinel's) must stay the first argument.
        let file = args.first().filter(|a| !a.starts_with("--")).into_iter();
        let mut all: Vec<String> = file.cloned().collect();
        all.extend(["--tls-port".to_owned(), port.to_string()]);
        all.extend(args.iter().skip(all.len() - 2).cloned());
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
    tls: bool,
}

pub const MASTER_NAME: &str = "sessiond";

impl SentinelDeployment {
    pub fn start() -> Self {
        Self::start_with(&Security::default())
    }

    /// With `security`: TLS everywhere (replication and the sentinels'
    /// own connections included) and ACL users on the data nodes and the
    /// sentinels, which then refuse the default user.
    pub fn start_with(security: &Security) -> Self {
        // No 5 s wait for more replicas before a diskless full sync.
        let mut args = security.node_args();
        args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
        let master = security.start(free_port(), &args);
        let replicas: Vec<RedisProcess> = (0..2)
            .map(|_| {
                let mut args = args.clone();
                args.extend([
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    master.port.to_string(),
                ]);
                security.start(free_port(), &args)
            })
            .collect();
        wait_until("replicas to sync", Duration::from_secs(15), || {
            security
                .ask(master.port, &["INFO", "replication"])
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
                        "bind 127.0.0.1\ndir {dir}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
                         sentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 3000\n\
                         sentinel parallel-syncs {MASTER_NAME} 1\n{secured}",
                        dir = dir.display(),
                        m = master.port,
                        secured = security.sentinel_conf(port),
                    ),
                )
                .unwrap();
                security.start_sentinel(port, &conf)
            })
            .collect();
        for s in &sentinels {
            wait_until(
                "sentinels to see the replicas",
                Duration::from_secs(20),
                || {
                    security
                        .ask_sentinel(s.port, &["SENTINEL", "replicas", MASTER_NAME])
                        .is_some_and(|r| r.matches("slave").count() >= 2)
                },
            );
        }
        Self {
            master,
            replicas,
            sentinels,
            tls: security.tls.is_some(),
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(RedisProcess::addr).collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/{MASTER_NAME}", hosts.join(","))
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

/// 3 masters with 1 replica each (or none).
pub struct ClusterDeployment {
    pub nodes: Vec<RedisProcess>,
    tls: bool,
}

impl ClusterDeployment {
    pub fn start() -> Self {
        Self::start_with(true, &Security::default())
    }

    /// 3 masters, with a replica each or none, secured by `security` (TLS
    /// on the cluster bus and to clients; an ACL user). Without replicas a
    /// master's death leaves its slots unserved, and the others keep
    /// serving theirs (`cluster-require-full-coverage no`).
    pub fn start_with(replicas: bool, security: &Security) -> Self {
        let count = if replicas { 6 } else { 3 };
        let nodes: Vec<RedisProcess> = (0..count)
            .map(|_| {
                let port = free_port();
                let mut args = security.node_args();
                args.extend([
                    "--cluster-enabled".into(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    format!("nodes-{port}.conf"),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                    "--repl-diskless-sync-delay".into(),
                    "0".into(),
                ]);
                if !replicas {
                    // Nothing takes over a dead master's data: it must
                    // still have it when it restarts.
                    args.extend(
                        [
                            "--cluster-require-full-coverage",
                            "no",
                            "--appendonly",
                            "yes",
                            "--appendfsync",
                            "always",
                        ]
                        .map(String::from),
                    );
                }
                if security.tls.is_some() {
                    args.extend(["--tls-cluster".into(), "yes".into()]);
                }
                security.start(port, &args)
            })
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.args(security.cli_args()).arg("--cluster").arg("create");
        for n in &nodes {
            cmd.arg(n.addr());
        }
        let out = cmd
            .args(["--cluster-replicas", if replicas { "1" } else { "0" }])
            .arg("--cluster-yes")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for n in &nodes {
            wait_until("the cluster to be ok", Duration::from_secs(30), || {
                security
                    .ask(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|r| r.contains("cluster_state:ok"))
            });
        }
        Self {
            nodes,
            tls: security.tls.is_some(),
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().take(3).map(RedisProcess::addr).collect();
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", hosts.join(","))
    }

    /// The slot ranges node `i` serves as a master (plain-text deployments).
    pub fn slots_of(&self, i: usize) -> Vec<(u16, u16)> {
        let nodes = command(self.nodes[i].port, &["CLUSTER", "NODES"]).unwrap();
        let mine = nodes
            .lines()
            .find(|l| l.contains("myself"))
            .expect("CLUSTER NODES names the node itself");
        mine.split_whitespace()
            .skip(8)
            .filter_map(|r| match r.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => r.parse().ok().map(|s| (s, s)),
            })
            .collect()
    }
}

/// The Cluster slot of session shard `shard` (the hash tag `{xx}` that a
/// user's sessions and index share).
pub fn shard_slot(shard: u8) -> u16 {
    crate::shards::shard_slot(shard)
}

/// A private CA and a certificate for 127.0.0.1 that it signed, made with
/// `openssl` in a folder of their own.
pub struct TestCa {
    dir: PathBuf,
    /// The CA certificate (PEM): what clients trust.
    pub ca: String,
    pub cert: String,
    pub key: String,
}

impl TestCa {
    pub fn make() -> Self {
        let dir = temp_dir("ca");
        let path = |name: &str| dir.join(name).display().to_string();
        let (ca, ca_key, cert, key, csr, ext) = (
            path("ca.pem"),
            path("ca.key"),
            path("cert.pem"),
            path("key.pem"),
            path("req.csr"),
            path("ext.cnf"),
        );
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=sessiond test CA",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
        ];
        for args in steps {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl is needed to make test certificates");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Self { dir, ca, cert, key }
    }

    /// What a TLS-only server needs (clients need no certificate).
    pub fn server_args(&self) -> Vec<String> {
        [
            "--tls-cert-file",
            &self.cert,
            "--tls-key-file",
            &self.key,
            "--tls-ca-cert-file",
            &self.ca,
            "--tls-auth-clients",
            "no",
        ]
        .map(String::from)
        .into()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The user every secured data node accepts (the default user is off).
pub const ACL_USER: &str = "sessiond";
pub const ACL_PASSWORD: &str = "acl-pw-3c9e1f";
/// The user secured sentinels accept, with a password of its own.
pub const SENTINEL_USER: &str = "watcher";
pub const SENTINEL_PASSWORD: &str = "sentinel-pw-81d2";

/// How a test deployment is secured: TLS only (no plain-text port) and/or
/// ACL users that replace the default user.
#[derive(Clone, Default)]
pub struct Security {
    pub tls: Option<std::sync::Arc<TestCa>>,
    pub acl: bool,
}

impl Security {
    fn node_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = &self.tls {
            args.extend(ca.server_args());
            args.extend(["--tls-replication".into(), "yes".into()]);
        }
        if self.acl {
            args.extend(
                [
                    "--user",
                    "default",
                    "off",
                    "--user",
                    ACL_USER,
                    "on",
                    &format!(">{ACL_PASSWORD}"),
                    "~*",
                    "&*",
                    "+@all",
                    "--masteruser",
                    ACL_USER,
                    "--masterauth",
                    ACL_PASSWORD,
                ]
                .map(String::from),
            );
        }
        args
    }

    fn start(&self, port: u16, args: &[String]) -> RedisProcess {
        if self.tls.is_some() {
            RedisProcess::start_tls(port, args)
        } else {
            RedisProcess::start(port, args)
        }
    }

    fn sentinel_conf(&self, port: u16) -> String {
        // With TLS, `start_tls` gives the port.
        let mut conf = String::new();
        match &self.tls {
            Some(ca) => conf.push_str(&format!(
                "port 0\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                ca.cert, ca.key, ca.ca
            )),
            None => conf.push_str(&format!("port {port}\n")),
        }
        if self.acl {
            conf.push_str(&format!(
                "sentinel auth-user {MASTER_NAME} {ACL_USER}\nsentinel auth-pass {MASTER_NAME} {ACL_PASSWORD}\n\
                 user default off\nuser {SENTINEL_USER} on >{SENTINEL_PASSWORD} allchannels +@all\n\
                 sentinel sentinel-user {SENTINEL_USER}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            ));
        }
        conf
    }

    fn start_sentinel(&self, port: u16, conf: &std::path::Path) -> RedisProcess {
        let args = [conf.display().to_string(), "--sentinel".into()];
        self.start(port, &args)
    }

    /// `redis-cli` options that reach a data node of this deployment.
    pub fn cli_args(&self) -> Vec<String> {
        self.cli_args_as(ACL_USER, ACL_PASSWORD)
    }

    fn cli_args_as(&self, user: &str, password: &str) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = &self.tls {
            args.extend(["--tls".into(), "--cacert".into(), ca.ca.clone()]);
        }
        if self.acl {
            args.extend(
                ["--user", user, "--pass", password, "--no-auth-warning"].map(String::from),
            );
        }
        args
    }

    /// One command to a data node, as this deployment requires.
    pub fn ask(&self, port: u16, args: &[&str]) -> Option<String> {
        self.ask_as(port, ACL_USER, ACL_PASSWORD, args)
    }

    fn ask_sentinel(&self, port: u16, args: &[&str]) -> Option<String> {
        self.ask_as(port, SENTINEL_USER, SENTINEL_PASSWORD, args)
    }

    fn ask_as(&self, port: u16, user: &str, password: &str, args: &[&str]) -> Option<String> {
        if self.tls.is_none() && !self.acl {
            return command(port, args);
        }
        self.cli(port, self.cli_args_as(user, password), args)
    }

    fn cli(&self, port: u16, opts: Vec<String>, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(opts)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
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
