//! The embedded durable session store: sessiond's zero-setup default.
//!
//! One [redb](https://docs.rs/redb) file (`sessions.redb` in the data
//! directory) holds sessions, the per-user index, an expiry index and user
//! accounts. Reads run on the caller's thread against redb's MVCC snapshots
//! and never wait for the writer. Every write goes to one writer thread
//! ([`writer`]) that drains whatever is queued into a single transaction and
//! commits it with `Durability::Immediate` (fsync): a create is acknowledged
//! only after it is on disk, and a burst of writes shares one fsync (group
//! commit). The writer thread also sweeps expired sessions in the background.
//!
//! Only one process may open a data directory at a time (redb locks the file).
//! Login attempt counters are kept in memory, not in the file: the store
//! serves one node, and a restart that forgets a count only ends a
//! throttling window early.

mod cache;
mod codec;
mod tables;
mod writer;

/// Entry points for the fuzz targets (`fuzz/`): the decoders that read what
/// is on disk, which must refuse corrupt bytes as `Corrupt`, never panic.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use sessiond_core::{SessionRecord, StoreError, UserRecord};

    /// Decodes a stored session.
    pub fn decode_session(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
        crate::codec::decode_session(bytes)
    }

    /// Decodes a stored user.
    pub fn decode_user(bytes: &[u8]) -> Result<UserRecord, StoreError> {
        crate::codec::decode_user(bytes)
    }
}

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable};
use sessiond_core::attempts::AttemptCounters;
use sessiond_core::{
    Attempt, AttributeBudget, AttributeChange, Counter, CycleChanges, ExpiryPolicy, Millis, Refund,
    Renewal, SessionKey, SessionLimit, SessionRecord, SessionStore, StoreError, UserRecord,
    UserStore,
};

use crate::tables::{SESSIONS, SETTINGS, USER_SESSIONS, USERS};
use crate::writer::{Op, Reply, Writer};

/// Errors opening a file store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// redb could not open the database (for example another process holds it).
    #[error("cannot open {path} (is another sessiond using this data directory?)")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: redb::DatabaseError,
    },
    /// The tables could not be created.
    #[error("cannot initialise the database")]
    Init(#[source] redb::Error),
}

/// Settings of a [`FileStore`].
#[derive(Debug, Clone)]
pub struct FileStoreConfig {
    /// How often the writer sweeps expired sessions.
    pub sweep_interval: Duration,
    /// At most this many sessions are removed per sweep transaction.
    pub sweep_batch: usize,
    /// At most this many queued writes share one transaction.
    pub max_batch: usize,
    /// redb's page cache, in bytes.
    pub cache_bytes: usize,
    /// Decoded sessions kept in the near-cache (0 turns it off).
    pub near_cache_sessions: usize,
}

impl Default for FileStoreConfig {
    fn default() -> Self {
        Self {
            sweep_interval: Duration::from_secs(30),
            sweep_batch: 1_000,
            max_batch: 512,
            cache_bytes: 256 * 1024 * 1024,
            near_cache_sessions: 100_000,
        }
    }
}

/// The redb-backed store. Cloning shares the database.
#[derive(Clone)]
pub struct FileStore {
    db: Arc<Database>,
    cache: Arc<cache::NearCache>,
    writer: Writer,
    path: PathBuf,
    attempts: Arc<AttemptCounters>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(e.into())
}

impl FileStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>, config: FileStoreConfig) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join("sessions.redb");
        let db = Database::builder()
            .set_cache_size(config.cache_bytes)
            .create(&path)
            .map_err(|source| OpenError::Database {
                path: path.clone(),
                source,
            })?;
        tables::create_all(&db).map_err(OpenError::Init)?;
        let db = Arc::new(db);
        let cache = Arc::new(cache::NearCache::new(config.near_cache_sessions));
        let writer = Writer::spawn(db.clone(), cache.clone(), config);
        Ok(Self {
            db,
            cache,
            writer,
            path,
            attempts: Arc::default(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the writer after the queued writes are committed and waits for
    /// its thread to end. Later calls answer `Unavailable`. Dropping the last
    /// clone does the same; the file's lock is released with the last clone.
    pub async fn close(&self) {
        self.writer.close().await;
    }

    fn read_session(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let epoch = match self.cache.get(key) {
            cache::Lookup::Hit(record) => {
                cache_counter(&CACHE_HITS, sessiond_core::metric::FILE_CACHE_HITS).increment(1);
                return Ok(record.is_live(now).then(|| (*record).clone()));
            }
            cache::Lookup::Miss(epoch) => {
                cache_counter(&CACHE_MISSES, sessiond_core::metric::FILE_CACHE_MISSES).increment(1);
                epoch
            }
        };
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SESSIONS).map_err(unavailable)?;
        let Some(bytes) = table.get(key.as_bytes().as_slice()).map_err(unavailable)? else {
            return Ok(None);
        };
        let record = codec::decode_session(bytes.value())?;
        let live = record.is_live(now).then(|| record.clone());
        if let Some(epoch) = epoch {
            self.cache.fill(*key, Arc::new(record), epoch);
        }
        Ok(live)
    }
}

static CACHE_HITS: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();
static CACHE_MISSES: std::sync::OnceLock<metrics::Counter> = std::sync::OnceLock::new();

/// A counter handle made on first use: a registry lookup on every read would
/// cost more than the cache hit it counts.
fn cache_counter(
    slot: &'static std::sync::OnceLock<metrics::Counter>,
    name: &'static str,
) -> &'static metrics::Counter {
    slot.get_or_init(|| metrics::counter!(name))
}

#[async_trait]
impl SessionStore for FileStore {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        match self
            .writer
            .call(Op::Create(*key, Box::new(record.clone())))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        // One op of the writer thread, so the count, the evictions and the
        // insert are one step between any two other writes.
        match self
            .writer
            .call(Op::CreateLimited(
                *key,
                Box::new(record.clone()),
                now,
                limit,
            ))
            .await?
        {
            Reply::Evicted(evicted) => Ok(evicted),
            other => Err(other.unexpected()),
        }
    }

    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.read_session(key, now)
    }

    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        match self.writer.call(Op::Renew(*key, now, *policy)).await? {
            Reply::Renewal(r) => Ok(r),
            other => Err(other.unexpected()),
        }
    }

    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        match self
            .writer
            .call(Op::Update(*key, now, changes.to_vec(), if_version, budget))
            .await?
        {
            Reply::Version(v) => Ok(v),
            other => Err(other.unexpected()),
        }
    }

    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        match self.writer.call(Op::Delete(*key)).await? {
            Reply::Existed(b) => Ok(b),
            other => Err(other.unexpected()),
        }
    }

    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        match self
            .writer
            .call(Op::Cycle(*old, *new, now, changes.clone()))
            .await?
        {
            Reply::Record(r) => Ok(*r),
            other => Err(other.unexpected()),
        }
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let index = txn
            .open_multimap_table(USER_SESSIONS)
            .map_err(unavailable)?;
        let sessions = txn.open_table(SESSIONS).map_err(unavailable)?;
        let mut out = Vec::new();
        for key in index.get(user_id).map_err(unavailable)? {
            let key = codec::key_from_slice(key.map_err(unavailable)?.value())?;
            if let Some(bytes) = sessions
                .get(key.as_bytes().as_slice())
                .map_err(unavailable)?
            {
                let record = codec::decode_session(bytes.value())?;
                if record.is_live(now) {
                    out.push((key, record));
                }
            }
        }
        Ok(out)
    }

    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        match self
            .writer
            .call(Op::DeleteUser(user_id.to_owned(), except.copied()))
            .await?
        {
            Reply::Count(n) => Ok(n),
            other => Err(other.unexpected()),
        }
    }

    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        match self.writer.call(Op::Sweep(now, limit)).await? {
            Reply::Count(n) => Ok(n),
            other => Err(other.unexpected()),
        }
    }

    async fn count(&self) -> Result<Option<u64>, StoreError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SESSIONS).map_err(unavailable)?;
        Ok(Some(table.len().map_err(unavailable)?))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.begin_read().map_err(unavailable)?;
        self.writer.alive()
    }

    fn backend_name(&self) -> &'static str {
        "file"
    }
}

#[async_trait]
impl UserStore for FileStore {
    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        match self
            .writer
            .call(Op::PutUser(Box::new(user.clone()), true))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        match self
            .writer
            .call(Op::PutUser(Box::new(user.clone()), false))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        match self.writer.call(Op::RemoveUser(name.to_owned())).await? {
            Reply::Existed(existed) => Ok(existed),
            other => Err(other.unexpected()),
        }
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(USERS).map_err(unavailable)?;
        table
            .get(name)
            .map_err(unavailable)?
            .map(|b| codec::decode_user(b.value()))
            .transpose()
    }

    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(USERS).map_err(unavailable)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(unavailable)? {
            let (_, value) = entry.map_err(unavailable)?;
            out.push(codec::decode_user(value.value())?);
        }
        Ok(out)
    }

    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError> {
        match self
            .writer
            .call(Op::AppendEvents(events.to_vec(), keep))
            .await?
        {
            Reply::Done => Ok(()),
            other => Err(other.unexpected()),
        }
    }

    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(crate::tables::EVENTS).map_err(unavailable)?;
        let mut out = Vec::with_capacity(limit.min(1024));
        for entry in table.iter().map_err(unavailable)?.rev().take(limit) {
            let (_, v) = entry.map_err(unavailable)?;
            out.push(v.value().to_vec());
        }
        Ok(out)
    }

    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let table = txn.open_table(SETTINGS).map_err(unavailable)?;
        Ok(table
            .get(name)
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let op = Op::SwapSetting(
            name.to_owned(),
            expected.map(<[u8]>::to_vec),
            value.to_vec(),
        );
        match self.writer.call(op).await? {
            Reply::Existed(swapped) => Ok(swapped),
            other => Err(other.unexpected()),
        }
    }

    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError> {
        Ok(self.attempts.take(counters, window_ms, now))
    }

    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.attempts.refund(refunds, now);
        Ok(())
    }
}
