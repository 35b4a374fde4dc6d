//! Password hashing (argon2id) on a pool of its own, so that a login storm
//! cannot stall session checks.
//!
//! argon2id costs ~20-30 ms of one core and 19 MiB per hash, by design. Run
//! on the async runtime's blocking pool at normal priority, a few logins per
//! second take cores the request workers need: measured on 2 cores, 8
//! connections logging in pushed the p99 of cookie checks from 3 to 6-7 ms
//! and cut their throughput by a fifth to a third (`bench/login-storm.sh`,
//! docs/benchmarks.md). So hashes run on [`HashPool`]: a fixed number of
//! threads (by default one fewer than the cores), at a lower OS scheduling
//! priority (Linux: a positive nice value for those threads only), fed by a
//! bounded queue. When the queue is full a login is refused at once with
//! [`HashError::Busy`] (503 `busy`, `Retry-After`) instead of waiting
//! without limit.
//!
//! Written here rather than with rayon or `tokio::task::spawn_blocking`:
//! neither bounds its queue or sets a thread's priority, and the pool is
//! ~60 lines.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use unicode_normalization::UnicodeNormalization;

/// Why hashing could not be done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The hasher was shut down.
    #[error("password hasher unavailable")]
    Unavailable,
    /// The queue of hashes waiting for a thread is full.
    #[error("too many password checks are waiting")]
    Busy,
    /// argon2 failed (it does not for valid parameters).
    #[error("password hashing failed: {0}")]
    Argon2(String),
}

/// argon2id's cost: OWASP's recommendation by default (19 MiB, 2 passes,
/// 1 lane). Raising them in the configuration upgrades each stored hash
/// at its user's next sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Argon2Params {
    /// argon2id with these parameters, or why argon2 refuses them.
    pub fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| HashError::Argon2(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Whether `hash` was made with weaker parameters than these, or not
    /// with argon2id at all: then it is worth recomputing.
    fn stronger_than(&self, hash: &PasswordHash) -> bool {
        if hash.algorithm.as_str() != "argon2id" {
            return true;
        }
        Params::try_from(hash).map_or(true, |p| {
            p.m_cost() < self.memory_kib
                || p.t_cost() < self.iterations
                || p.p_cost() < self.parallelism
        })
    }
}

/// The form a password is hashed in: Unicode NFKC, so that the same
/// password typed on two keyboards (a composed or a decomposed `é`,
/// full-width letters) is the same password.
pub fn normalise(password: &str) -> String {
    password.nfkc().collect()
}

/// Hashes a password's normal form (blocking: call from a blocking thread).
pub fn hash_blocking(password: &str, params: &Argon2Params) -> Result<String, HashError> {
    params
        .argon2()?
        .hash_password(normalise(password).as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError::Argon2(e.to_string()))
}

/// What checking a password against a stored hash found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verification {
    /// The password is the one the hash was made from.
    pub matches: bool,
    /// It matches, and the hash should be made again: with weaker
    /// parameters than the configured ones, or from the password as typed
    /// (a hash from before normalisation).
    pub rehash: bool,
}

/// Checks a password against a PHC hash (blocking), in its normal form
/// and, when typing it differently makes a difference, as typed: hashes
/// made before passwords were normalised keep working, and are upgraded.
/// Both forms are always checked when they differ, so the cost depends on
/// the password, not on which form matches. A malformed hash never matches.
pub fn verify_blocking(password: &str, hash: &str, params: &Argon2Params) -> Verification {
    let no = Verification {
        matches: false,
        rehash: false,
    };
    let (Ok(parsed), Ok(argon2)) = (PasswordHash::new(hash), params.argon2()) else {
        return no;
    };
    let normal = normalise(password);
    // `verify_password` takes the cost parameters from the hash itself.
    let as_normal = argon2.verify_password(normal.as_bytes(), &parsed).is_ok();
    let as_typed =
        normal != password && argon2.verify_password(password.as_bytes(), &parsed).is_ok();
    if !(as_normal || as_typed) {
        return no;
    }
    Verification {
        matches: true,
        rehash: !as_normal || params.stronger_than(&parsed),
    }
}

/// How the hashing pool is sized and scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Threads computing hashes (hashes at once).
    pub threads: usize,
    /// Hashes that may wait for a thread; more are refused as [`HashError::Busy`].
    pub queue: usize,
    /// The threads' nice value (0 = normal, 19 = lowest; Linux only).
    pub nice: i32,
}

impl PoolConfig {
    /// For the command line (`user import`): every core, normal priority,
    /// and a queue that never refuses (nothing else competes).
    pub fn batch() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, usize::from),
            queue: usize::MAX,
            nice: 0,
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that run hashing jobs, behind a bounded queue.
/// Dropping it closes the channel, which ends the threads once the queue
/// is drained.
struct HashPool {
    jobs: mpsc::Sender<Job>,
    /// Jobs sent and not yet started.
    waiting: Arc<AtomicUsize>,
    queue: usize,
}

impl HashPool {
    fn start(config: PoolConfig) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let waiting = Arc::new(AtomicUsize::new(0));
        for i in 0..config.threads.max(1) {
            let (rx, waiting) = (rx.clone(), waiting.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sessiond-hash-{i}"))
                .spawn(move || {
                    lower_priority(config.nice);
                    loop {
                        // The lock is held only while taking a job.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        let Ok(job) = job else { return };
                        waiting.fetch_sub(1, Ordering::AcqRel);
                        job();
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self {
            jobs: tx,
            waiting,
            queue: config.queue,
        }
    }

    /// Runs `f` on a pool thread, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let claimed = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue).then_some(n + 1)
            });
        if claimed.is_err() {
            return Err(HashError::Busy);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        if self.jobs.send(job).is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(HashError::Unavailable);
        }
        rx.await.map_err(|_| HashError::Unavailable)
    }
}

/// Lowers the calling thread's scheduling priority. On Linux, nice values
/// are per thread: `setpriority` on the thread's own id affects it alone.
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), nice) {
        tracing::warn!(nice, error = %e, "could not lower the priority of a password hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

/// argon2id on its own pool (see the module docs).
#[derive(Clone)]
pub struct Hasher {
    pool: Arc<HashPool>,
    params: Argon2Params,
    /// Verified against when the user does not exist, so that an unknown
    /// user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("waiting", &self.pool.waiting.load(Ordering::Relaxed))
            .finish()
    }
}

impl Hasher {
    /// A hasher with `params` on a pool shaped by `config`.
    pub fn new(config: PoolConfig, params: Argon2Params) -> Result<Self, HashError> {
        let dummy = hash_blocking(&sessiond_core::token::random_secret(), &params)?;
        Ok(Self {
            pool: Arc::new(HashPool::start(config)),
            params,
            dummy_hash: dummy.into(),
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let params = self.params;
        let started = std::time::Instant::now();
        let result = tracing::Instrument::instrument(
            self.pool.run(move || hash_blocking(&password, &params)),
            tracing::debug_span!("password_hash", op = "hash"),
        )
        .await;
        metrics::histogram!(sessiond_core::metric::PASSWORD_HASH_DURATION, "op" => "hash")
            .record(started.elapsed().as_secs_f64());
        result?
    }

    /// Verifies `password` against `hash`, or against a dummy hash when the
    /// user is unknown (`None`): same cost, no match.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<Verification, HashError> {
        let started = std::time::Instant::now();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let params = self.params;
        let result = tracing::Instrument::instrument(
            self.pool
                .run(move || verify_blocking(&password, &hash, &params)),
            tracing::debug_span!("password_hash", op = "verify"),
        )
        .await;
        metrics::histogram!(sessiond_core::metric::PASSWORD_HASH_DURATION, "op" => "verify")
            .record(started.elapsed().as_secs_f64());
        let found = result?;
        Ok(Verification {
            matches: found.matches && known,
            rehash: found.rehash && known,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(password: &str, hash: &str) -> bool {
        verify_blocking(password, hash, &Argon2Params::default()).matches
    }

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_blocking("correct horse", &Argon2Params::default()).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(matches("correct horse", &h));
        assert!(!matches("battery staple", &h));
        assert!(!matches("correct horse", "not a hash"));
    }

    #[test]
    fn the_same_password_typed_composed_or_decomposed_matches_one_hash() {
        let composed = "caf\u{e9}-plum-orbit";
        let decomposed = "cafe\u{301}-plum-orbit";
        assert_ne!(composed, decomposed);
        let h = hash_blocking(decomposed, &Argon2Params::default()).unwrap();
        assert!(matches(composed, &h));
        assert!(matches(decomposed, &h));
    }

    #[test]
    fn a_hash_of_the_password_as_typed_still_matches_and_asks_to_be_made_again() {
        let typed = "ｆｕｌｌ-width-plum";
        let params = Argon2Params::default();
        // A hash from before normalisation: of the bytes as typed.
        let legacy = params
            .argon2()
            .unwrap()
            .hash_password(typed.as_bytes())
            .unwrap()
            .to_string();
        let v = verify_blocking(typed, &legacy, &params);
        assert_eq!((v.matches, v.rehash), (true, true));
        let fresh = hash_blocking(typed, &params).unwrap();
        let v = verify_blocking(typed, &fresh, &params);
        assert_eq!((v.matches, v.rehash), (true, false));
    }

    #[test]
    fn a_hash_made_with_weaker_parameters_asks_to_be_made_again() {
        let weak = Argon2Params {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let h = hash_blocking("plum-orbit-cactus", &weak).unwrap();
        let v = verify_blocking("plum-orbit-cactus", &h, &Argon2Params::default());
        assert_eq!((v.matches, v.rehash), (true, true));
        let v = verify_blocking("wrong-orbit-cactus", &h, &Argon2Params::default());
        assert_eq!((v.matches, v.rehash), (false, false));
    }

    #[tokio::test]
    async fn past_the_queue_a_check_is_refused_at_once_and_the_queue_drains() {
        let hasher = Hasher::new(
            PoolConfig {
                threads: 1,
                queue: 2,
                nice: 5,
            },
            Argon2Params::default(),
        )
        .unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        // Hold the one thread with a job that waits for us.
        let (started_tx, started) = std::sync::mpsc::channel::<()>();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let pool = hasher.pool.clone();
        let blocker = tokio::spawn(async move {
            pool.run(move || {
                let _ = started_tx.send(());
                gate.recv()
            })
            .await
        });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        let check = || {
            let (hasher, hash) = (hasher.clone(), hash.clone());
            tokio::spawn(async move { hasher.verify("correct horse".into(), Some(hash)).await })
        };
        let queued = [check(), check()];
        while hasher.pool.waiting.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(check().await.unwrap(), Err(HashError::Busy)));
        release.send(()).unwrap();
        blocker.await.unwrap().unwrap().unwrap();
        for q in queued {
            assert!(q.await.unwrap().unwrap().matches, "the queued checks ran");
        }
        assert!(check().await.unwrap().unwrap().matches);
    }
}
