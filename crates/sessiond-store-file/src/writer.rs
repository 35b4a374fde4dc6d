//! The single writer thread: group commit of queued writes, and the sweeper.
//!
//! redb allows one write transaction at a time and each `Immediate` commit
//! costs an fsync, so writes from all requests are funnelled here and every
//! batch that queued up while the previous commit was syncing shares one
//! transaction and one fsync. Replies are sent only after the commit, so an
//! acknowledged write is on disk. If any step of a batch hits a storage error
//! the whole transaction is aborted and every caller in it gets `Unavailable`:
//! nothing is ever half-written.

use std::sync::Arc;

use redb::{
    Database, MultimapTable, ReadableMultimapTable, ReadableTable, ReadableTableMetadata, Table,
};
use sessiond_core::{
    AttributeBudget, AttributeChange, Clock, CycleChanges, ExpiryPolicy, Millis, Renewal,
    SessionKey, SessionLimit, SessionRecord, StoreError, SystemClock, UserRecord, ops,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::FileStoreConfig;
use crate::cache::NearCache;
use crate::codec::{decode_session, decode_user, encode_session, encode_user, key_from_slice};
use crate::tables::{EVENTS, EXPIRY, SESSIONS, SETTINGS, USER_SESSIONS, USERS};

/// A write the writer thread performs.
pub(crate) enum Op {
    Create(SessionKey, Box<SessionRecord>),
    CreateLimited(SessionKey, Box<SessionRecord>, Millis, SessionLimit),
    Renew(SessionKey, Millis, ExpiryPolicy),
    Update(
        SessionKey,
        Millis,
        Vec<AttributeChange>,
        Option<u64>,
        AttributeBudget,
    ),
    Delete(SessionKey),
    Cycle(SessionKey, SessionKey, Millis, CycleChanges),
    DeleteUser(String, Option<SessionKey>),
    Sweep(Millis, usize),
    /// Insert a user; `true`: only if new, `false`: only if it exists.
    PutUser(Box<UserRecord>, bool),
    /// Remove a user.
    RemoveUser(String),
    /// Compare-and-set of a setting: name, expected value, new value.
    SwapSetting(String, Option<Vec<u8>>, Vec<u8>),
    /// Append security events, then keep the newest this many.
    AppendEvents(Vec<Vec<u8>>, usize),
    Close,
}

/// The writer's answer to one [`Op`].
pub(crate) enum Reply {
    Done,
    Renewal(Renewal),
    Version(u64),
    Existed(bool),
    Record(Box<SessionRecord>),
    Count(usize),
    Evicted(Vec<SessionKey>),
    Failed(StoreError),
}

impl Reply {
    /// The error for a reply of the wrong kind: a bug in this crate, not in the data.
    pub(crate) fn unexpected(self) -> StoreError {
        match self {
            Reply::Failed(e) => e,
            _ => StoreError::Corrupt(
                "the writer answered with the wrong kind of reply".into(),
                None,
            ),
        }
    }
}

type Job = (Op, Option<oneshot::Sender<Reply>>);

#[derive(Clone)]
pub(crate) struct Writer {
    tx: mpsc::Sender<Job>,
    /// Becomes `true` once the writer thread has ended and dropped its handle
    /// on the database, so `close` can promise the file lock is no longer ours.
    exited: watch::Receiver<bool>,
}

fn closed() -> StoreError {
    StoreError::unavailable("the file store is closed")
}

impl Writer {
    pub(crate) fn spawn(db: Arc<Database>, cache: Arc<NearCache>, config: FileStoreConfig) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(config.max_batch * 8);
        let (exited_tx, exited) = watch::channel(false);
        let interval = config.sweep_interval;
        let limit = config.sweep_batch;
        // Weak, so that dropping the last FileStore closes the channel and stops the writer.
        let sweep_tx = tx.downgrade();
        std::thread::Builder::new()
            .name("sessiond-file-writer".into())
            .spawn(move || {
                run(&db, &cache, rx, &config);
                drop(db);
                let _ = exited_tx.send(true);
            })
            .map(drop)
            .unwrap_or_else(
                |e| tracing::error!(error = %e, "cannot start the file store's writer thread"),
            );
        // The sweeper only enqueues; it ends once the store is gone.
        let _ = std::thread::Builder::new()
            .name("sessiond-file-sweeper".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(tx) = sweep_tx.upgrade() else { break };
                    if tx
                        .blocking_send((Op::Sweep(SystemClock.now(), limit), None))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        Self { tx, exited }
    }

    pub(crate) async fn call(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        self.tx
            .send((op, Some(reply_tx)))
            .await
            .map_err(|_| closed())?;
        match reply_rx.await.map_err(|_| closed())? {
            Reply::Failed(e) => Err(e),
            reply => Ok(reply),
        }
    }

    /// Commits what is queued, stops the writer and waits until its thread
    /// has let go of the database.
    pub(crate) async fn close(&self) {
        let _ = self.call(Op::Close).await;
        let mut exited = self.exited.clone();
        let _ = exited.wait_for(|done| *done).await;
    }

    pub(crate) fn alive(&self) -> Result<(), StoreError> {
        if !*self.exited.borrow() {
            Ok(())
        } else {
            Err(closed())
        }
    }
}

fn run(db: &Database, cache: &NearCache, mut rx: mpsc::Receiver<Job>, config: &FileStoreConfig) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < config.max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let closing = batch.iter().any(|(op, _)| matches!(op, Op::Close));
        let (ops, senders): (Vec<Op>, Vec<_>) = batch.into_iter().unzip();
        let replies = match commit_batch(db, ops) {
            Ok((replies, touched)) => {
                // Before anyone is answered: no caller sees its write and then a stale cache.
                cache.invalidate(&touched);
                replies
            }
            Err(e) => {
                tracing::error!(error = %e, "file store transaction failed; the batch was rolled back");
                let message = e.to_string();
                senders
                    .iter()
                    .map(|_| Reply::Failed(StoreError::unavailable(message.clone())))
                    .collect()
            }
        };
        let swept: usize = replies
            .iter()
            .zip(&senders)
            .filter(|(_, s)| s.is_none())
            .map(|(r, _)| if let Reply::Count(n) = r { *n } else { 0 })
            .sum();
        if swept > 0 {
            metrics::counter!(sessiond_core::metric::SESSIONS_EXPIRED).increment(swept as u64);
            tracing::debug!(swept, "expired sessions swept");
        }
        for (reply, sender) in replies.into_iter().zip(senders) {
            if let Some(sender) = sender {
                let _ = sender.send(reply);
            }
        }
        if closing {
            rx.close();
            break;
        }
    }
}

struct Tables<'t> {
    sessions: Table<'t, &'static [u8], &'static [u8]>,
    index: MultimapTable<'t, &'static str, &'static [u8]>,
    expiry: Table<'t, (u64, &'static [u8]), ()>,
    users: Table<'t, &'static str, &'static [u8]>,
    settings: Table<'t, &'static str, &'static [u8]>,
    events: Table<'t, u64, &'static [u8]>,
    /// Sessions this transaction changed or removed (for the near-cache).
    touched: Vec<SessionKey>,
}

fn commit_batch(db: &Database, ops: Vec<Op>) -> Result<(Vec<Reply>, Vec<SessionKey>), redb::Error> {
    let txn = db.begin_write()?;
    let (replies, touched) = {
        let mut t = Tables {
            sessions: txn.open_table(SESSIONS)?,
            index: txn.open_multimap_table(USER_SESSIONS)?,
            expiry: txn.open_table(EXPIRY)?,
            users: txn.open_table(USERS)?,
            settings: txn.open_table(SETTINGS)?,
            events: txn.open_table(EVENTS)?,
            touched: Vec::new(),
        };
        let replies = ops
            .into_iter()
            .map(|op| apply(&mut t, op))
            .collect::<Result<Vec<_>, _>>()?;
        (replies, t.touched)
    };
    txn.commit()?;
    Ok((replies, touched))
}

impl Tables<'_> {
    fn get(
        &self,
        key: &SessionKey,
    ) -> Result<Option<Result<SessionRecord, StoreError>>, redb::Error> {
        Ok(self
            .sessions
            .get(key.as_bytes().as_slice())?
            .map(|v| decode_session(v.value())))
    }

    fn put(
        &mut self,
        key: &SessionKey,
        record: &SessionRecord,
        old_expiry: Option<Millis>,
    ) -> Result<(), redb::Error> {
        self.touched.push(*key);
        let k = key.as_bytes().as_slice();
        if let Some(old) = old_expiry.filter(|&e| e != record.expires_at()) {
            self.expiry.remove((old, k))?;
        }
        if old_expiry.is_none() {
            self.index.insert(record.user_id.as_str(), k)?;
        }
        self.expiry.insert((record.expires_at(), k), ())?;
        self.sessions.insert(k, encode_session(record).as_slice())?;
        Ok(())
    }

    /// Removes a session with its index and expiry entries.
    fn remove(&mut self, key: &SessionKey) -> Result<bool, redb::Error> {
        self.touched.push(*key);
        let k = key.as_bytes().as_slice();
        let Some(bytes) = self.sessions.remove(k)? else {
            return Ok(false);
        };
        // A corrupt record cannot name its user; its index entry stays behind
        // and is harmless (listings skip keys with no session).
        if let Ok(record) = decode_session(bytes.value()) {
            drop(bytes);
            self.index.remove(record.user_id.as_str(), k)?;
            self.expiry.remove((record.expires_at(), k))?;
        }
        Ok(true)
    }
}

fn apply(t: &mut Tables<'_>, op: Op) -> Result<Reply, redb::Error> {
    Ok(match op {
        Op::Create(key, record) => {
            if t.get(&key)?.is_some() {
                Reply::Failed(StoreError::Conflict)
            } else {
                t.put(&key, &record, None)?;
                Reply::Done
            }
        }
        Op::CreateLimited(key, record, now, limit) => {
            if t.get(&key)?.is_some() {
                return Ok(Reply::Failed(StoreError::Conflict));
            }
            let mut live = Vec::new();
            for k in t.index.get(record.user_id.as_str())? {
                let Ok(other) = key_from_slice(k?.value()) else {
                    continue;
                };
                if let Some(Ok(r)) = t.get(&other)?
                    && r.is_live(now)
                {
                    live.push((r.created_at, other));
                }
            }
            match ops::make_room(live, limit) {
                Ok(evicted) => {
                    for k in &evicted {
                        t.remove(k)?;
                    }
                    t.put(&key, &record, None)?;
                    Reply::Evicted(evicted)
                }
                Err(e) => Reply::Failed(e),
            }
        }
        Op::Renew(key, now, policy) => match t.get(&key)? {
            Some(Ok(mut record)) => {
                let old = record.expires_at();
                let outcome = ops::renew(&mut record, now, &policy);
                if matches!(outcome, Renewal::Extended { .. }) {
                    t.put(&key, &record, Some(old))?;
                }
                Reply::Renewal(outcome)
            }
            Some(Err(e)) => Reply::Failed(e),
            None => Reply::Renewal(Renewal::Gone),
        },
        Op::Update(key, now, changes, if_version, budget) => match t.get(&key)? {
            Some(Ok(mut record)) => {
                match ops::update_attributes(&mut record, now, &changes, if_version, budget) {
                    Ok(version) => {
                        let old = record.expires_at();
                        t.put(&key, &record, Some(old))?;
                        Reply::Version(version)
                    }
                    Err(e) => Reply::Failed(e),
                }
            }
            Some(Err(e)) => Reply::Failed(e),
            None => Reply::Failed(StoreError::NotFound),
        },
        Op::Delete(key) => Reply::Existed(t.remove(&key)?),
        Op::Cycle(old, new, now, changes) => match t.get(&old)? {
            Some(Ok(mut record)) if record.is_live(now) => {
                if t.get(&new)?.is_some() {
                    Reply::Failed(StoreError::Conflict)
                } else if let Err(e) = ops::cycle(&mut record, now, &changes) {
                    Reply::Failed(e)
                } else {
                    t.remove(&old)?;
                    t.put(&new, &record, None)?;
                    Reply::Record(Box::new(record))
                }
            }
            Some(Err(e)) => Reply::Failed(e),
            _ => Reply::Failed(StoreError::NotFound),
        },
        Op::DeleteUser(user, except) => {
            let mut keys = Vec::new();
            for k in t.index.get(user.as_str())? {
                match key_from_slice(k?.value()) {
                    Ok(key) if Some(key) != except => keys.push(key),
                    _ => {}
                }
            }
            let mut removed = 0;
            for key in &keys {
                if t.remove(key)? {
                    removed += 1;
                } else {
                    t.index.remove(user.as_str(), key.as_bytes().as_slice())?;
                }
            }
            Reply::Count(removed)
        }
        Op::Sweep(now, limit) => {
            let mut expired = Vec::new();
            let upper = [0xffu8; 32];
            for entry in t.expiry.range(..=(now, upper.as_slice()))?.take(limit) {
                let (k, _) = entry?;
                let (at, key) = k.value();
                expired.push((at, key_from_slice(key).ok(), key.to_vec()));
            }
            for (at, key, raw) in &expired {
                if let Some(key) = key {
                    t.remove(key)?;
                }
                t.expiry.remove((*at, raw.as_slice()))?;
            }
            Reply::Count(expired.len())
        }
        Op::PutUser(user, create_only) => {
            let exists = t
                .users
                .get(user.name.as_str())?
                .map(|v| decode_user(v.value()).is_ok())
                .is_some();
            if create_only && exists {
                Reply::Failed(StoreError::Conflict)
            } else if !create_only && !exists {
                Reply::Failed(StoreError::NotFound)
            } else {
                t.users
                    .insert(user.name.as_str(), encode_user(&user).as_slice())?;
                Reply::Done
            }
        }
        Op::RemoveUser(name) => Reply::Existed(t.users.remove(name.as_str())?.is_some()),
        Op::SwapSetting(name, expected, value) => {
            let current = t.settings.get(name.as_str())?.map(|v| v.value().to_vec());
            if current == expected {
                t.settings.insert(name.as_str(), value.as_slice())?;
                Reply::Existed(true)
            } else {
                Reply::Existed(false)
            }
        }
        Op::AppendEvents(events, keep) => {
            let first = t.events.last()?.map_or(0, |(k, _)| k.value() + 1);
            for (seq, e) in (first..).zip(&events) {
                t.events.insert(seq, e.as_slice())?;
            }
            while usize::try_from(t.events.len()?).unwrap_or(usize::MAX) > keep {
                if t.events.pop_first()?.is_none() {
                    break;
                }
            }
            Reply::Done
        }
        Op::Close => Reply::Done,
    })
}
