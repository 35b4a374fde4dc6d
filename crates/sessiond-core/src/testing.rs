//! The conformance suite every store must pass unchanged, and test helpers.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]
//!
//! A store's test file calls [`store_conformance_tests!`](crate::store_conformance_tests)
//! with an async function that makes a fresh, empty store:
//!
//! ```text
//! async fn make() -> (Arc<dyn Backend>, tempfile::TempDir) { ... }
//! sessiond_core::store_conformance_tests!(make);
//! ```
//!
//! Each case becomes its own named test. Time is a [`ManualClock`]; nothing sleeps.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use proptest::prelude::*;

use crate::attempts::{Attempt, Counter, Refund};
use crate::policy::ExpiryPolicy;
use crate::policy::{OnLimit, SessionLimit};
use crate::record::{AttributeBudget, AttributeChange, ClientMeta, SessionRecord, UserRecord};
use crate::store::{Backend, CycleChanges, Renewal, SessionStore, StoreError, UserStore};
use crate::time::{Clock, ManualClock, Millis, SystemClock};
use crate::token::{SessionKey, SessionToken};
use crate::{NewSession, SessionManager};

pub use proptest;
pub use tokio;

/// Counts calls to a store's methods and the writes renewal actually made.
pub struct CountingStore<S: ?Sized> {
    inner: Arc<S>,
    /// Calls to `load`.
    pub loads: AtomicUsize,
    /// Calls to `renew`.
    pub renew_calls: AtomicUsize,
    /// `renew` calls that wrote (returned `Extended`).
    pub renew_writes: AtomicUsize,
}

impl<S: SessionStore + ?Sized> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            loads: AtomicUsize::new(0),
            renew_calls: AtomicUsize::new(0),
            renew_writes: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for CountingStore<S> {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.inner.create(key, record).await
    }
    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        self.inner.create_limited(key, record, now, limit).await
    }
    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(key, now).await
    }
    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        self.renew_calls.fetch_add(1, Ordering::SeqCst);
        let r = self.inner.renew(key, now, policy).await?;
        if matches!(r, Renewal::Extended { .. }) {
            self.renew_writes.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }
    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        self.inner
            .update_attributes(key, now, changes, if_version, budget)
            .await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.inner.delete(key).await
    }
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        self.inner.cycle(old, new, now, changes).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        self.inner.list_by_user(user_id, now).await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        self.inner.delete_by_user(user_id, except).await
    }
    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        self.inner.sweep(now, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn shards_by_user(&self) -> bool {
        self.inner.shards_by_user()
    }
    fn expires_keys_itself(&self) -> bool {
        self.inner.expires_keys_itself()
    }
}

/// A record as a test would create it.
pub fn sample_record(user: &str, now: Millis, policy: &ExpiryPolicy) -> SessionRecord {
    SessionRecord {
        user_id: user.to_owned(),
        roles: vec!["user".to_owned()],
        created_at: now,
        last_seen: now,
        idle_expires_at: policy.initial_idle_expiry(now),
        absolute_expires_at: policy.absolute_expiry(now),
        csrf_secret: crate::token::random_secret(),
        client: ClientMeta {
            ip: Some("127.0.0.1".into()),
            user_agent: Some("conformance".into()),
        },
        attributes: BTreeMap::new(),
        version: 1,
    }
}

/// A fresh key for a session of `user`, in the user's shard when the store
/// shards by user (as [`SessionManager`] does for real sessions).
pub fn key_for(store: &dyn SessionStore, user: &str) -> SessionKey {
    if store.shards_by_user() {
        SessionToken::generate_in_shard(crate::token::user_shard(user)).key()
    } else {
        SessionToken::generate().key()
    }
}

fn new_session(user: &str) -> NewSession {
    NewSession {
        user_id: user.into(),
        roles: vec!["user".into()],
        ..Default::default()
    }
}

/// A unique user name, so stores shared between cases (one Redis) never mix users.
pub fn unique_user(prefix: &str) -> String {
    format!("{prefix}-{}", &SessionToken::generate().expose()[..12])
}

fn engine(store: Arc<dyn SessionStore>) -> (SessionManager, ManualClock) {
    let clock = ManualClock::starting_now();
    (
        SessionManager::new(store, ExpiryPolicy::default()).with_clock(Arc::new(clock.clone())),
        clock,
    )
}

const MINUTE: Duration = Duration::from_secs(60);

/// The cases, one function each; the macro turns each into a test.
#[allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]
pub mod cases {
    use super::*;

    pub async fn create_then_load_returns_the_same_record(store: Arc<dyn Backend>) {
        let clock = ManualClock::starting_now();
        let policy = ExpiryPolicy::default();
        let user = unique_user("u");
        let key = key_for(store.as_ref(), &user);
        let mut record = sample_record(&user, clock.now(), &policy);
        record
            .attributes
            .insert("cart".into(), r#"{"items":[1,2]}"#.into());
        store.create(&key, &record).await.unwrap();
        assert_eq!(store.load(&key, clock.now()).await.unwrap(), Some(record));
        assert_eq!(
            store
                .load(&SessionToken::generate().key(), clock.now())
                .await
                .unwrap(),
            None
        );
    }

    pub async fn create_refuses_to_overwrite_an_existing_key(store: Arc<dyn Backend>) {
        let now = ManualClock::starting_now().now();
        let policy = ExpiryPolicy::default();
        let user = unique_user("first");
        let key = key_for(store.as_ref(), &user);
        let first = sample_record(&user, now, &policy);
        store.create(&key, &first).await.unwrap();
        let mut second = sample_record(&user, now, &policy);
        second.roles = vec!["other".into()];
        assert!(matches!(
            store.create(&key, &second).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.load(&key, now).await.unwrap(), Some(first));
    }

    pub async fn delete_ends_the_session(store: Arc<dyn Backend>) {
        let (sessions, _clock) = engine(store.clone());
        let (token, session) = sessions
            .create(new_session(&unique_user("d")))
            .await
            .unwrap();
        assert!(sessions.delete(&session.key).await.unwrap());
        assert_eq!(sessions.verify(&token.expose()).await.unwrap(), None);
        assert!(
            !sessions.delete(&session.key).await.unwrap(),
            "a second delete finds nothing"
        );
    }

    pub async fn a_session_expires_after_the_idle_timeout(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let (token, _) = sessions
            .create(new_session(&unique_user("idle")))
            .await
            .unwrap();
        clock.advance(29 * MINUTE);
        assert!(
            sessions
                .store()
                .load(&token.key(), clock.now())
                .await
                .unwrap()
                .is_some()
        );
        clock.advance(MINUTE);
        assert_eq!(sessions.verify(&token.expose()).await.unwrap(), None);
        assert_eq!(store.load(&token.key(), clock.now()).await.unwrap(), None);
    }

    pub async fn a_busy_session_still_ends_at_its_absolute_lifetime(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let (token, session) = sessions
            .create(new_session(&unique_user("abs")))
            .await
            .unwrap();
        let absolute = session.record.absolute_expires_at;
        // A request every 4 minutes keeps it from idling out...
        while clock.now() + 4 * 60_000 < absolute {
            clock.advance(4 * MINUTE);
            let v = sessions
                .verify(&token.expose())
                .await
                .unwrap()
                .expect("still live");
            assert!(v.session.record.idle_expires_at <= absolute);
        }
        // ...but not past its absolute expiry.
        clock.advance(4 * MINUTE);
        assert_eq!(sessions.verify(&token.expose()).await.unwrap(), None);
    }

    pub async fn renewal_writes_only_under_the_threshold(store: Arc<dyn Backend>) {
        let counting = Arc::new(CountingStore::new(store.clone()));
        let (sessions, clock) = engine(counting.clone());
        let (token, created) = sessions
            .create(new_session(&unique_user("renew")))
            .await
            .unwrap();
        // 24 minutes of requests every 30 seconds: 6+ minutes remain, no write.
        for _ in 0..48 {
            clock.advance(Duration::from_secs(30));
            assert!(
                !sessions
                    .verify(&token.expose())
                    .await
                    .unwrap()
                    .unwrap()
                    .renewed
            );
        }
        assert_eq!(counting.renew_writes.load(Ordering::SeqCst), 0);
        assert_eq!(
            counting.loads.load(Ordering::SeqCst),
            48,
            "one load per verification"
        );
        let stored = store
            .load(&token.key(), clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.version, created.record.version, "no write happened");
        // Into the threshold: exactly one write, then quiet again for a window.
        clock.advance(2 * MINUTE);
        let v = sessions.verify(&token.expose()).await.unwrap().unwrap();
        assert!(v.renewed);
        assert_eq!(v.session.record.idle_expires_at, clock.now() + 30 * 60_000);
        for _ in 0..20 {
            clock.advance(Duration::from_secs(30));
            assert!(
                !sessions
                    .verify(&token.expose())
                    .await
                    .unwrap()
                    .unwrap()
                    .renewed
            );
        }
        assert_eq!(counting.renew_writes.load(Ordering::SeqCst), 1);
        // The store itself refuses a renewal that is not due.
        assert_eq!(
            store
                .renew(&token.key(), clock.now(), sessions.policy())
                .await
                .unwrap(),
            Renewal::NotNeeded
        );
        let stored = store
            .load(&token.key(), clock.now())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.idle_expires_at, v.session.record.idle_expires_at);
        assert_eq!(stored.last_seen, v.session.record.last_seen);
    }

    pub async fn renewing_a_deleted_or_expired_session_changes_nothing(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let (token, session) = sessions
            .create(new_session(&unique_user("gone")))
            .await
            .unwrap();
        sessions.delete(&session.key).await.unwrap();
        clock.advance(27 * MINUTE);
        assert_eq!(
            store
                .renew(&token.key(), clock.now(), sessions.policy())
                .await
                .unwrap(),
            Renewal::Gone
        );
        assert_eq!(store.load(&token.key(), clock.now()).await.unwrap(), None);
        let (token, _) = sessions
            .create(new_session(&unique_user("gone")))
            .await
            .unwrap();
        clock.advance(31 * MINUTE);
        assert_eq!(
            store
                .renew(&token.key(), clock.now(), sessions.policy())
                .await
                .unwrap(),
            Renewal::Gone
        );
    }

    pub async fn cycle_moves_the_session_and_kills_the_old_token(store: Arc<dyn Backend>) {
        let (sessions, _clock) = engine(store.clone());
        let user = unique_user("cycle");
        let (old, session) = sessions.create(new_session(&user)).await.unwrap();
        sessions
            .update_attributes(&session.key, &[AttributeChange::set("cart", "3")], None)
            .await
            .unwrap();
        let (new, moved) = sessions
            .cycle(&session.key, Some(vec!["admin".into()]))
            .await
            .unwrap();
        assert_ne!(new, old);
        assert_eq!(
            sessions.verify(&old.expose()).await.unwrap(),
            None,
            "the old token is dead"
        );
        let v = sessions
            .verify(&new.expose())
            .await
            .unwrap()
            .expect("the new token is live");
        assert_eq!(v.session.record.roles, vec!["admin".to_owned()]);
        assert_eq!(
            v.session.record.attributes.get("cart").map(String::as_str),
            Some("3")
        );
        assert_eq!(v.session.record.created_at, session.record.created_at);
        assert_ne!(
            moved.record.csrf_secret, session.record.csrf_secret,
            "a new CSRF secret"
        );
        let listed: Vec<SessionKey> = sessions
            .list_for_user(&user)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect();
        assert_eq!(listed, vec![new.key()], "the user index follows the move");
    }

    pub async fn cycle_refuses_a_dead_source_or_a_taken_target(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let (_, a) = sessions
            .create(new_session(&unique_user("ca")))
            .await
            .unwrap();
        let (_, b) = sessions
            .create(new_session(&a.record.user_id))
            .await
            .unwrap();
        let changes = CycleChanges::default();
        assert!(matches!(
            store.cycle(&a.key, &b.key, clock.now(), &changes).await,
            Err(StoreError::Conflict)
        ));
        assert!(
            store.load(&a.key, clock.now()).await.unwrap().is_some(),
            "a failed cycle keeps the source"
        );
        let fresh = key_for(store.as_ref(), &a.record.user_id);
        let missing = key_for(store.as_ref(), &a.record.user_id);
        assert!(matches!(
            store.cycle(&missing, &fresh, clock.now(), &changes).await,
            Err(StoreError::NotFound)
        ));
        clock.advance(31 * MINUTE);
        assert!(matches!(
            store.cycle(&a.key, &fresh, clock.now(), &changes).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(
            store.load(&fresh, clock.now()).await.unwrap(),
            None,
            "an expired session is not revived"
        );
    }

    pub async fn listing_by_user_shows_only_that_users_live_sessions(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let alice = unique_user("alice");
        let bob = unique_user("bob");
        let (_, a1) = sessions.create(new_session(&alice)).await.unwrap();
        clock.advance(20 * MINUTE);
        let (_, a2) = sessions.create(new_session(&alice)).await.unwrap();
        let (_, _b) = sessions.create(new_session(&bob)).await.unwrap();
        let keys = |v: Vec<crate::StoredSession>| v.into_iter().map(|s| s.key).collect::<Vec<_>>();
        assert_eq!(
            keys(sessions.list_for_user(&alice).await.unwrap()),
            vec![a2.key, a1.key]
        );
        clock.advance(11 * MINUTE); // a1 idles out
        assert_eq!(
            keys(sessions.list_for_user(&alice).await.unwrap()),
            vec![a2.key]
        );
        assert!(
            sessions
                .list_for_user(&unique_user("nobody"))
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn revoking_a_user_ends_all_sessions_or_all_but_one(store: Arc<dyn Backend>) {
        let (sessions, _clock) = engine(store.clone());
        let user = unique_user("rev");
        let other = unique_user("other");
        let mut tokens = Vec::new();
        for _ in 0..5 {
            tokens.push(sessions.create(new_session(&user)).await.unwrap().0);
        }
        let (other_token, _) = sessions.create(new_session(&other)).await.unwrap();
        let keep = tokens[2].key();
        assert_eq!(sessions.revoke_user(&user, Some(&keep)).await.unwrap(), 4);
        for (i, t) in tokens.iter().enumerate() {
            assert_eq!(
                sessions.verify(&t.expose()).await.unwrap().is_some(),
                i == 2
            );
        }
        assert_eq!(sessions.revoke_user(&user, None).await.unwrap(), 1);
        assert!(
            sessions
                .verify(&tokens[2].expose())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            sessions
                .verify(&other_token.expose())
                .await
                .unwrap()
                .is_some(),
            "other users untouched"
        );
        // Revoking one session by handle works only for its owner.
        let (t, s) = sessions.create(new_session(&user)).await.unwrap();
        assert!(matches!(
            sessions.revoke_one(&other, &s.key).await,
            Err(StoreError::NotFound)
        ));
        assert!(sessions.verify(&t.expose()).await.unwrap().is_some());
        sessions.revoke_one(&user, &s.key).await.unwrap();
        assert!(sessions.verify(&t.expose()).await.unwrap().is_none());
    }

    /// The record of the live session `token` names.
    async fn live_record(sessions: &SessionManager, token: &SessionToken) -> SessionRecord {
        let verified = sessions.verify(&token.expose()).await.unwrap();
        verified.expect("the session is live").session.record
    }

    /// `n` concurrent updates of `key`, the i-th setting `{prefix}{i}` to `i`.
    async fn concurrent_updates(
        sessions: &SessionManager,
        key: SessionKey,
        n: usize,
        prefix: &str,
    ) -> Vec<Result<u64, StoreError>> {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let sessions = sessions.clone();
                let change = [AttributeChange::set(format!("{prefix}{i}"), i.to_string())];
                tokio::spawn(async move { sessions.update_attributes(&key, &change, None).await })
            })
            .collect();
        let mut results = Vec::with_capacity(n);
        for t in tasks {
            results.push(t.await.unwrap());
        }
        results
    }

    fn limited(store: Arc<dyn Backend>, on_limit: OnLimit) -> (SessionManager, ManualClock) {
        let (sessions, clock) = engine(store);
        let mut rules = crate::SessionRules::new(ExpiryPolicy::default());
        rules.max_sessions = 3;
        rules.on_limit = on_limit;
        (sessions.with_rules(rules), clock)
    }

    async fn concurrent_creates(
        sessions: &SessionManager,
        user: &str,
        n: usize,
    ) -> Vec<Result<(SessionToken, crate::StoredSession), StoreError>> {
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (sessions, new) = (sessions.clone(), new_session(user));
                tokio::spawn(async move { sessions.create(new).await })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    pub async fn twenty_concurrent_sign_ins_past_a_limit_of_three_leave_three_sessions(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, _clock) = limited(store, OnLimit::EvictOldest);
        let user = unique_user("evict");
        let results = concurrent_creates(&sessions, &user, 20).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(sessions.list_for_user(&user).await.unwrap().len(), 3);
    }

    pub async fn twenty_concurrent_sign_ins_against_a_refusing_limit_of_three_get_three_sessions(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, _clock) = limited(store, OnLimit::Refuse);
        let user = unique_user("refuse");
        let results = concurrent_creates(&sessions, &user, 20).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(StoreError::SessionLimit { max: 3 })))
            .count();
        assert_eq!((ok, refused), (3, 17), "{results:?}");
        assert_eq!(sessions.list_for_user(&user).await.unwrap().len(), 3);
    }

    pub async fn past_the_limit_the_oldest_session_ends_and_expired_ones_do_not_count(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, clock) = limited(store, OnLimit::EvictOldest);
        let user = unique_user("oldest");
        // Another user's session, older than all of this user's: not
        // this user's to end.
        let (theirs, _) = sessions
            .create(new_session(&unique_user("other")))
            .await
            .unwrap();
        let mut tokens = Vec::new();
        for _ in 0..3 {
            clock.advance(MINUTE);
            tokens.push(sessions.create(new_session(&user)).await.unwrap().0);
        }
        let (fourth, _) = sessions.create(new_session(&user)).await.unwrap();
        assert!(
            sessions
                .verify(&tokens[0].expose())
                .await
                .unwrap()
                .is_none(),
            "the oldest ended"
        );
        for t in [&tokens[1], &tokens[2], &fourth, &theirs] {
            assert!(sessions.verify(&t.expose()).await.unwrap().is_some());
        }
        // Past the idle timeout every session of `user` is dead: none of
        // them counts, and nothing live is evicted for the next one.
        clock.advance(ExpiryPolicy::default().idle_timeout + MINUTE);
        let (fresh, _) = sessions.create(new_session(&user)).await.unwrap();
        sessions.create(new_session(&user)).await.unwrap();
        sessions.create(new_session(&user)).await.unwrap();
        assert!(sessions.verify(&fresh.expose()).await.unwrap().is_some());
        assert_eq!(sessions.list_for_user(&user).await.unwrap().len(), 3);
    }

    pub async fn concurrent_updates_of_distinct_attributes_are_all_kept(store: Arc<dyn Backend>) {
        let (sessions, _clock) = engine(store.clone());
        let sessions = sessions.with_attribute_budget(AttributeBudget {
            max_count: 1000,
            max_bytes: 1 << 20,
        });
        let (token, session) = sessions
            .create(new_session(&unique_user("conc")))
            .await
            .unwrap();
        for result in concurrent_updates(&sessions, session.key, 100, "attr").await {
            result.unwrap();
        }
        let record = live_record(&sessions, &token).await;
        assert_eq!(record.attributes.len(), 100, "no update was lost");
        for i in 0..100 {
            assert_eq!(
                record.attributes.get(&format!("attr{i}")),
                Some(&i.to_string())
            );
        }
        assert_eq!(record.version, session.record.version + 100);
    }

    pub async fn an_update_over_the_attribute_budget_is_refused_and_writes_nothing(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, _clock) = engine(store.clone());
        let sessions = sessions.with_attribute_budget(AttributeBudget {
            max_count: 3,
            max_bytes: 24,
        });
        let (token, session) = sessions
            .create(new_session(&unique_user("budget")))
            .await
            .unwrap();
        let key = session.key;
        sessions
            .update_attributes(&key, &[AttributeChange::set("a", "1")], None)
            .await
            .unwrap();
        let before = live_record(&sessions, &token).await;
        let too_many = [
            AttributeChange::set("b", "2"),
            AttributeChange::set("c", "3"),
            AttributeChange::set("d", "4"),
        ];
        let r = sessions.update_attributes(&key, &too_many, None).await;
        assert!(matches!(r, Err(StoreError::TooLarge)), "{r:?}");
        let too_big = [AttributeChange::set("b", "x".repeat(24))];
        let r = sessions.update_attributes(&key, &too_big, None).await;
        assert!(matches!(r, Err(StoreError::TooLarge)), "{r:?}");
        let after = live_record(&sessions, &token).await;
        assert_eq!(after.attributes, before.attributes, "nothing written");
        assert_eq!(after.version, before.version);
        // Replacing and removing count what remains: this fits.
        let fits = [
            AttributeChange::remove("a"),
            AttributeChange::set("b", "x".repeat(10)),
            AttributeChange::set("c", "y".repeat(10)),
        ];
        sessions.update_attributes(&key, &fits, None).await.unwrap();
    }

    pub async fn a_burst_of_updates_cannot_take_the_attributes_over_their_budget(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, _clock) = engine(store.clone());
        let sessions = sessions.with_attribute_budget(AttributeBudget {
            max_count: 10,
            max_bytes: 1 << 20,
        });
        let (token, session) = sessions
            .create(new_session(&unique_user("budget-burst")))
            .await
            .unwrap();
        let (mut ok, mut refused) = (0, 0);
        for result in concurrent_updates(&sessions, session.key, 40, "b").await {
            match result {
                Ok(_) => ok += 1,
                Err(StoreError::TooLarge) => refused += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!((ok, refused), (10, 30));
        let record = live_record(&sessions, &token).await;
        assert_eq!(record.attributes.len(), 10);
    }

    pub async fn an_update_after_delete_does_not_resurrect_the_session(store: Arc<dyn Backend>) {
        let (sessions, clock) = engine(store.clone());
        let (token, session) = sessions
            .create(new_session(&unique_user("res")))
            .await
            .unwrap();
        sessions.delete(&session.key).await.unwrap();
        let r = sessions
            .update_attributes(&session.key, &[AttributeChange::set("x", "1")], None)
            .await;
        assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
        assert_eq!(store.load(&token.key(), clock.now()).await.unwrap(), None);
        // Racing: updates and a delete at once; afterwards the session is gone for good.
        let (token, session) = sessions
            .create(new_session(&unique_user("race")))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = sessions.clone();
            let key = session.key;
            tasks.push(tokio::spawn(async move {
                let _ = s
                    .update_attributes(&key, &[AttributeChange::set(format!("a{i}"), "v")], None)
                    .await;
            }));
        }
        sessions.delete(&session.key).await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(
            sessions.verify(&token.expose()).await.unwrap(),
            None,
            "logout wins"
        );
        assert!(
            sessions
                .list_for_user(&session.record.user_id)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn an_update_with_a_stale_version_is_a_conflict(store: Arc<dyn Backend>) {
        let (sessions, _clock) = engine(store.clone());
        let (_, session) = sessions
            .create(new_session(&unique_user("ver")))
            .await
            .unwrap();
        let v1 = session.record.version;
        let v2 = sessions
            .update_attributes(&session.key, &[AttributeChange::set("a", "1")], Some(v1))
            .await
            .unwrap();
        assert_eq!(v2, v1 + 1);
        let stale = sessions
            .update_attributes(&session.key, &[AttributeChange::set("a", "2")], Some(v1))
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict)));
        sessions
            .update_attributes(&session.key, &[AttributeChange::remove("a")], Some(v2))
            .await
            .unwrap();
        let record = store
            .load(&session.key, sessions.now())
            .await
            .unwrap()
            .unwrap();
        assert!(record.attributes.is_empty());
    }

    pub async fn expired_sessions_are_never_returned_and_the_sweeper_removes_them(
        store: Arc<dyn Backend>,
    ) {
        let (sessions, clock) = engine(store.clone());
        let user = unique_user("sweep");
        let (token, _) = sessions.create(new_session(&user)).await.unwrap();
        clock.advance(31 * MINUTE);
        assert_eq!(store.load(&token.key(), clock.now()).await.unwrap(), None);
        assert!(
            store
                .list_by_user(&user, clock.now())
                .await
                .unwrap()
                .is_empty()
        );
        let r = store
            .update_attributes(
                &token.key(),
                clock.now(),
                &[AttributeChange::set("a", "b")],
                None,
                AttributeBudget::default(),
            )
            .await;
        assert!(matches!(r, Err(StoreError::NotFound)));
        // After a sweep the expired session is gone for good (even when asked
        // at an earlier time), whether the sweep or an earlier lazy removal
        // took it; a backend that expires keys by itself is left to do so.
        store.sweep(clock.now(), 10_000).await.unwrap();
        if !store.expires_keys_itself() {
            let earlier = clock.now() - 31 * 60_000;
            assert_eq!(
                store.load(&token.key(), earlier).await.unwrap(),
                None,
                "swept sessions are removed"
            );
        }
    }

    pub async fn users_are_created_once_updated_and_listed(store: Arc<dyn Backend>) {
        let name = unique_user("acct");
        let user = UserRecord {
            name: name.clone(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            roles: vec!["user".into()],
            created_at: 1,
            updated_at: 1,
            disabled: false,
        };
        store.create_user(&user).await.unwrap();
        assert!(matches!(
            store.create_user(&user).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(store.get_user(&name).await.unwrap(), Some(user.clone()));
        let changed = UserRecord {
            roles: vec!["admin".into()],
            updated_at: 2,
            disabled: true,
            ..user.clone()
        };
        store.update_user(&changed).await.unwrap();
        assert_eq!(store.get_user(&name).await.unwrap(), Some(changed.clone()));
        let ghost = UserRecord {
            name: unique_user("ghost"),
            ..changed
        };
        assert!(matches!(
            store.update_user(&ghost).await,
            Err(StoreError::NotFound)
        ));
        assert!(
            store
                .list_users()
                .await
                .unwrap()
                .iter()
                .any(|u| u.name == name)
        );
        assert_eq!(store.get_user(&ghost.name).await.unwrap(), None);
        assert!(store.delete_user(&name).await.unwrap());
        assert!(!store.delete_user(&name).await.unwrap(), "deleted once");
        assert_eq!(store.get_user(&name).await.unwrap(), None);
        assert!(
            !store
                .list_users()
                .await
                .unwrap()
                .iter()
                .any(|u| u.name == name)
        );
        store.create_user(&user).await.unwrap();
        assert_eq!(
            store.get_user(&name).await.unwrap(),
            Some(user),
            "a deleted name can be taken again"
        );
        store.ping().await.unwrap();
    }

    // Attempt windows run on the wall clock: Redis expires counters by its
    // own clock, so these cases pass the real time as `now`.

    pub async fn attempts_are_taken_up_to_the_limit_and_a_refused_take_changes_nothing(
        store: Arc<dyn Backend>,
    ) {
        let user = Counter::new(unique_user("user:"), 2);
        let ip = Counter::new(unique_user("ip:"), 4);
        let both = [user.clone(), ip.clone()];
        for _ in 0..2 {
            let taken = store.take_attempt(&both, 60_000, SystemClock.now()).await;
            assert_eq!(taken.unwrap(), Attempt::Taken);
        }
        match store.take_attempt(&both, 60_000, SystemClock.now()).await {
            Ok(Attempt::Refused { retry_after_ms }) => {
                assert!((1..=60_000).contains(&retry_after_ms), "{retry_after_ms}");
            }
            other => panic!("the user's counter is full: {other:?}"),
        }
        // The refused take did not count on the IP: two more attempts pass.
        for _ in 0..2 {
            let other_user = Counter::new(unique_user("user:"), 2);
            let taken = store
                .take_attempt(&[other_user, ip.clone()], 60_000, SystemClock.now())
                .await;
            assert_eq!(taken.unwrap(), Attempt::Taken);
        }
        let taken = store.take_attempt(&[ip], 60_000, SystemClock.now()).await;
        assert!(matches!(taken.unwrap(), Attempt::Refused { .. }));
    }

    pub async fn a_burst_of_attempts_takes_no_more_than_the_limit(store: Arc<dyn Backend>) {
        let counter = Counter::new(unique_user("user:"), 5);
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (store, counter) = (store.clone(), counter.clone());
            burst.spawn(async move {
                store
                    .take_attempt(&[counter], 60_000, SystemClock.now())
                    .await
                    .unwrap()
            });
        }
        let taken = burst
            .join_all()
            .await
            .into_iter()
            .filter(|a| *a == Attempt::Taken)
            .count();
        assert_eq!(taken, 5);
    }

    pub async fn refunds_give_attempts_back_and_a_window_ends(store: Arc<dyn Backend>) {
        let counter = Counter::new(unique_user("user:"), 1);
        let take = |window_ms| {
            let store = store.clone();
            let counter = counter.clone();
            async move {
                store
                    .take_attempt(&[counter], window_ms, SystemClock.now())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(take(60_000).await, Attempt::Taken);
        assert!(matches!(take(60_000).await, Attempt::Refused { .. }));
        let refund = |how| vec![(counter.key.clone(), how)];
        store
            .refund_attempts(&refund(Refund::One), SystemClock.now())
            .await
            .unwrap();
        assert_eq!(take(60_000).await, Attempt::Taken, "one given back");
        store
            .refund_attempts(&refund(Refund::All), SystemClock.now())
            .await
            .unwrap();
        // Refunding an empty counter leaves it at zero, not below.
        store
            .refund_attempts(&refund(Refund::One), SystemClock.now())
            .await
            .unwrap();
        assert_eq!(take(300).await, Attempt::Taken, "the window was forgotten");
        assert!(matches!(take(300).await, Attempt::Refused { .. }));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(take(300).await, Attempt::Taken, "the window ended");
    }

    pub async fn a_shared_response_cache_keeps_entries_and_counts_generations(
        store: Arc<dyn Backend>,
    ) {
        if !store.shares_response_cache() {
            assert!(
                store.cache_read(None, &[]).await.is_err(),
                "a store without a shared tier says so"
            );
            return;
        }
        let key = unique_user("entry");
        let gens = [unique_user("t:/a"), unique_user("e:/a")];
        let minute = Duration::from_secs(60);
        let read = store.cache_read(Some(&key), &gens).await.unwrap();
        assert_eq!((read.entry, read.generations), (None, vec![0, 0]));
        store.cache_write(&key, b"blob", minute).await.unwrap();
        store.cache_invalidate(&gens[..1], minute).await.unwrap();
        store.cache_invalidate(&gens[..1], minute).await.unwrap();
        let read = store.cache_read(Some(&key), &gens).await.unwrap();
        assert_eq!(read.entry.as_deref(), Some(&b"blob"[..]));
        assert_eq!(read.generations, [2, 0]);
        let read = store.cache_read(None, &gens[1..]).await.unwrap();
        assert_eq!((read.entry, read.generations), (None, vec![0]));
        let short = unique_user("short");
        store
            .cache_write(&short, b"x", Duration::from_millis(20))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        let read = store.cache_read(Some(&short), &[]).await.unwrap();
        assert_eq!(read.entry, None, "an entry ends with its TTL");
    }

    pub async fn the_event_log_keeps_the_newest_and_answers_newest_first(store: Arc<dyn Backend>) {
        // One log per store: a unique tag tells this case's events apart
        // from another case's on a shared store (one Redis).
        let tag = unique_user("ev");
        let event = |i: usize| format!("{tag}-{i}").into_bytes();
        store
            .append_events(&[event(1), event(2), event(3)], 1000)
            .await
            .unwrap();
        store
            .append_events(&[event(4), event(5)], 1000)
            .await
            .unwrap();
        let mine = |all: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
            all.into_iter()
                .filter(|e| e.starts_with(tag.as_bytes()))
                .collect()
        };
        assert_eq!(
            mine(store.recent_events(1000).await.unwrap()),
            [event(5), event(4), event(3), event(2), event(1)]
        );
        assert_eq!(store.recent_events(2).await.unwrap(), [event(5), event(4)]);
        // Bounded: past `keep`, the oldest go.
        store.append_events(&[event(6)], 3).await.unwrap();
        assert_eq!(
            store.recent_events(10).await.unwrap(),
            [event(6), event(5), event(4)]
        );
    }

    pub async fn settings_change_only_when_the_expected_value_matches(store: Arc<dyn Backend>) {
        let name = unique_user("setting");
        assert_eq!(store.get_setting(&name).await.unwrap(), None);
        assert!(
            !store.swap_setting(&name, Some(b"x"), b"one").await.unwrap(),
            "a missing setting does not match a value"
        );
        assert!(store.swap_setting(&name, None, b"one").await.unwrap());
        assert!(
            !store.swap_setting(&name, None, b"two").await.unwrap(),
            "a second create loses"
        );
        assert!(
            !store
                .swap_setting(&name, Some(b"stale"), b"two")
                .await
                .unwrap(),
            "a stale expectation loses"
        );
        assert_eq!(
            store.get_setting(&name).await.unwrap().as_deref(),
            Some(&b"one"[..])
        );
        let big = vec![0xA5u8; 16 * 1024];
        assert!(store.swap_setting(&name, Some(b"one"), &big).await.unwrap());
        assert_eq!(store.get_setting(&name).await.unwrap(), Some(big.clone()));
        // Concurrent writers with the same expectation: exactly one wins.
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..8u8 {
            let store = store.clone();
            let (name, big) = (name.clone(), big.clone());
            racers.spawn(async move { store.swap_setting(&name, Some(&big), &[i]).await.unwrap() });
        }
        let wins = racers.join_all().await;
        assert_eq!(wins.iter().filter(|w| **w).count(), 1);
    }
}

/// What a store factory returns: a store and a guard to keep alive, or
/// `None` when the store cannot run here (the factory has printed why).
pub trait IntoFixture {
    /// The guard type.
    type Guard;
    /// The store and guard, if the case should run.
    fn into_fixture(self) -> Option<(Arc<dyn Backend>, Self::Guard)>;
}

impl<G> IntoFixture for (Arc<dyn Backend>, G) {
    type Guard = G;
    fn into_fixture(self) -> Option<(Arc<dyn Backend>, G)> {
        Some(self)
    }
}

impl<G> IntoFixture for Option<(Arc<dyn Backend>, G)> {
    type Guard = G;
    fn into_fixture(self) -> Option<(Arc<dyn Backend>, G)> {
        self
    }
}

/// One step of the random operation sequences.
#[derive(Debug, Clone)]
pub enum Op {
    /// Create a session for user `u`.
    Create(u8),
    /// Load session slot `i`.
    Load(u8),
    /// Delete session slot `i`.
    Delete(u8),
    /// Set attribute `a` of slot `i` to a value, or remove it (`None`).
    Set(u8, u8, Option<u8>),
    /// Renew slot `i`.
    Renew(u8),
    /// Cycle slot `i` to a new key.
    Cycle(u8),
    /// Revoke all sessions of user `u`, except slot `i` if given.
    RevokeUser(u8, Option<u8>),
    /// Move the clock by this many minutes.
    Advance(u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..3).prop_map(Op::Create),
        3 => any::<u8>().prop_map(Op::Load),
        1 => any::<u8>().prop_map(Op::Delete),
        4 => (any::<u8>(), 0u8..4, proptest::option::weighted(0.75, any::<u8>())).prop_map(|(i, a, v)| Op::Set(i, a, v)),
        2 => any::<u8>().prop_map(Op::Renew),
        1 => any::<u8>().prop_map(Op::Cycle),
        1 => (0u8..3, proptest::option::of(any::<u8>())).prop_map(|(u, i)| Op::RevokeUser(u, i)),
        2 => (0u8..20).prop_map(Op::Advance),
    ]
}

/// Runs random operation sequences against fresh stores from `make`, checking
/// every answer against a model (a map of records updated by the [`crate::ops`] rules).
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub fn check_against_model<F, Fut>(make: F, cases: u32)
where
    F: Fn() -> Fut,
    Fut: Future,
    Fut::Output: IntoFixture,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    let result = runner.run(&proptest::collection::vec(op_strategy(), 1..60), |ops| {
        rt.block_on(async {
            let Some((store, _guard)) = make().await.into_fixture() else {
                return Ok(());
            };
            run_model(store, ops).await
        })
    });
    if let Err(e) = result {
        panic!("store disagrees with the model: {e}");
    }
}

async fn run_model(store: Arc<dyn Backend>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let clock = ManualClock::starting_now();
    let policy = ExpiryPolicy::default();
    let users: Vec<String> = (0..3).map(|i| unique_user(&format!("m{i}"))).collect();
    let mut slots: Vec<SessionKey> = Vec::new();
    let mut model: HashMap<SessionKey, SessionRecord> = HashMap::new();
    let pick = |slots: &Vec<SessionKey>, i: u8| {
        (!slots.is_empty()).then(|| slots[i as usize % slots.len()])
    };
    for op in ops {
        let now = clock.now();
        model.retain(|_, r| r.is_live(now));
        match op {
            Op::Create(u) => {
                let key = key_for(store.as_ref(), &users[u as usize]);
                let record = sample_record(&users[u as usize], now, &policy);
                store.create(&key, &record).await.unwrap();
                model.insert(key, record);
                slots.push(key);
            }
            Op::Load(i) => {
                if let Some(key) = pick(&slots, i) {
                    prop_assert_eq!(
                        store.load(&key, now).await.unwrap(),
                        model.get(&key).cloned()
                    );
                }
            }
            Op::Delete(i) => {
                if let Some(key) = pick(&slots, i) {
                    let existed = store.delete(&key).await.unwrap();
                    // An expired session the store has not swept yet may still count as existing.
                    if model.remove(&key).is_some() {
                        prop_assert!(existed);
                    }
                }
            }
            Op::Set(i, a, v) => {
                if let Some(key) = pick(&slots, i) {
                    let change = [AttributeChange {
                        name: format!("a{a}"),
                        value: v.map(|v| v.to_string()),
                    }];
                    let got = store
                        .update_attributes(&key, now, &change, None, AttributeBudget::default())
                        .await;
                    match model.get_mut(&key) {
                        Some(r) => prop_assert_eq!(
                            got.unwrap(),
                            crate::ops::update_attributes(
                                r,
                                now,
                                &change,
                                None,
                                AttributeBudget::default()
                            )
                            .unwrap()
                        ),
                        None => prop_assert!(matches!(got, Err(StoreError::NotFound))),
                    }
                }
            }
            Op::Renew(i) => {
                if let Some(key) = pick(&slots, i) {
                    let got = store.renew(&key, now, &policy).await.unwrap();
                    let want = model
                        .get_mut(&key)
                        .map_or(Renewal::Gone, |r| crate::ops::renew(r, now, &policy));
                    prop_assert_eq!(got, want);
                }
            }
            Op::Cycle(i) => {
                if let Some(key) = pick(&slots, i) {
                    // As the engine does: the new key stays in the old key's shard.
                    let new = if store.shards_by_user() {
                        SessionToken::generate_in_shard(key.0[0]).key()
                    } else {
                        SessionToken::generate().key()
                    };
                    let changes = CycleChanges {
                        roles: Some(vec!["cycled".into()]),
                        csrf_secret: None,
                    };
                    let got = store.cycle(&key, &new, now, &changes).await;
                    match model.remove(&key) {
                        Some(mut r) => {
                            crate::ops::cycle(&mut r, now, &changes).unwrap();
                            prop_assert_eq!(got.unwrap(), r.clone());
                            model.insert(new, r);
                            slots.push(new);
                        }
                        None => prop_assert!(matches!(got, Err(StoreError::NotFound))),
                    }
                }
            }
            Op::RevokeUser(u, except) => {
                let user = &users[u as usize];
                let except = except.and_then(|i| pick(&slots, i));
                let removed = store.delete_by_user(user, except.as_ref()).await.unwrap();
                let before = model.len();
                model.retain(|k, r| &r.user_id != user || Some(*k) == except);
                // Expired-but-unswept sessions may be counted by some stores; never fewer.
                prop_assert!(removed >= before - model.len());
            }
            Op::Advance(m) => clock.advance(Duration::from_secs(u64::from(m) * 60)),
        }
        // After every step, every user's listing matches the model.
        let now = clock.now();
        for user in &users {
            let mut got: Vec<SessionKey> = store
                .list_by_user(user, now)
                .await
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let mut want: Vec<SessionKey> = model
                .iter()
                .filter(|(_, r)| &r.user_id == user && r.is_live(now))
                .map(|(k, _)| *k)
                .collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
    Ok(())
}

/// Generates one test per conformance case for a store.
///
/// `$make` is an async function returning `(Arc<dyn Backend>, guard)`: a
/// fresh store and whatever must live as long as it (a temporary directory);
/// or an `Option` of that, `None` meaning "cannot run here" (the factory
/// prints the reason; `.ci/run` makes that a failure for Redis).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:path) => {
        $crate::store_conformance_tests!(@cases $make;
            create_then_load_returns_the_same_record,
            create_refuses_to_overwrite_an_existing_key,
            delete_ends_the_session,
            a_session_expires_after_the_idle_timeout,
            a_busy_session_still_ends_at_its_absolute_lifetime,
            renewal_writes_only_under_the_threshold,
            renewing_a_deleted_or_expired_session_changes_nothing,
            cycle_moves_the_session_and_kills_the_old_token,
            cycle_refuses_a_dead_source_or_a_taken_target,
            listing_by_user_shows_only_that_users_live_sessions,
            revoking_a_user_ends_all_sessions_or_all_but_one,
            concurrent_updates_of_distinct_attributes_are_all_kept,
            twenty_concurrent_sign_ins_past_a_limit_of_three_leave_three_sessions,
            twenty_concurrent_sign_ins_against_a_refusing_limit_of_three_get_three_sessions,
            past_the_limit_the_oldest_session_ends_and_expired_ones_do_not_count,
            an_update_over_the_attribute_budget_is_refused_and_writes_nothing,
            a_burst_of_updates_cannot_take_the_attributes_over_their_budget,
            an_update_after_delete_does_not_resurrect_the_session,
            an_update_with_a_stale_version_is_a_conflict,
            expired_sessions_are_never_returned_and_the_sweeper_removes_them,
            users_are_created_once_updated_and_listed,
            settings_change_only_when_the_expected_value_matches,
            the_event_log_keeps_the_newest_and_answers_newest_first,
            a_shared_response_cache_keeps_entries_and_counts_generations,
            attempts_are_taken_up_to_the_limit_and_a_refused_take_changes_nothing,
            a_burst_of_attempts_takes_no_more_than_the_limit,
            refunds_give_attempts_back_and_a_window_ends
        );

        #[test]
        fn random_operation_sequences_match_a_model() {
            $crate::testing::check_against_model(|| async { $make().await }, 48);
        }
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[$crate::testing::tokio::test(flavor = "multi_thread", worker_threads = 2, crate = "sessiond_core::testing::tokio")]
            async fn $case() {
                use $crate::testing::IntoFixture as _;
                let Some((store, _guard)) = $make().await.into_fixture() else { return };
                $crate::testing::cases::$case(store).await;
            }
        )*
    };
}

/// A store that fails on demand, for fault tests: switched off (every
/// session call fails with [`StoreError::Unavailable`], what a dead Redis
/// looks like to the engine), failing its next `n` calls, or hanging (every
/// call waits an hour, what a blackholed connection looks like), or short
/// of replicas (creates and cycles fail with [`StoreError::NotReplicated`],
/// what Redis with `wait_replicas` and no replica looks like). Counts the
/// session calls that reached it. User, settings and attempt calls pass through.
pub struct FaultyStore<S: ?Sized> {
    inner: Arc<S>,
    down: std::sync::atomic::AtomicBool,
    hang: std::sync::atomic::AtomicBool,
    fail_next: std::sync::atomic::AtomicU32,
    calls: std::sync::atomic::AtomicUsize,
    unreplicated: std::sync::atomic::AtomicBool,
    /// Two failure domains (shards 0-127 and 128-255), as a Cluster's masters.
    split: std::sync::atomic::AtomicBool,
    upper_down: std::sync::atomic::AtomicBool,
}

impl<S: ?Sized> FaultyStore<S> {
    /// Wraps `inner`, up.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            down: std::sync::atomic::AtomicBool::new(false),
            hang: std::sync::atomic::AtomicBool::new(false),
            fail_next: std::sync::atomic::AtomicU32::new(0),
            calls: std::sync::atomic::AtomicUsize::new(0),
            unreplicated: std::sync::atomic::AtomicBool::new(false),
            split: std::sync::atomic::AtomicBool::new(false),
            upper_down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes the store two parts that fail apart, as two Cluster masters:
    /// shards 0-127 (failure domain 1) and 128-255 (domain 2).
    pub fn split_in_two(&self) {
        self.split.store(true, Ordering::SeqCst);
    }

    /// Takes the part with shards 128-255 down (or up): its session calls fail.
    pub fn set_upper_half_down(&self, down: bool) {
        self.upper_down.store(down, Ordering::SeqCst);
    }

    async fn gate_key(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.gate().await?;
        if key.0[0] >= 128 && self.upper_down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("this part of the store is down"));
        }
        Ok(())
    }

    /// Makes creates and cycles fail with [`StoreError::NotReplicated`]
    /// (without writing), or stops it.
    pub fn set_unreplicated(&self, on: bool) {
        self.unreplicated.store(on, Ordering::SeqCst);
    }

    fn replicated(&self) -> Result<(), StoreError> {
        if self.unreplicated.load(Ordering::SeqCst) {
            return Err(StoreError::NotReplicated {
                acknowledged: 0,
                required: 1,
            });
        }
        Ok(())
    }

    /// Turns the outage on or off.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Makes every call hang (or stop hanging).
    pub fn set_hanging(&self, hang: bool) {
        self.hang.store(hang, Ordering::SeqCst);
    }

    /// Fails the next `n` calls with a transient error (`u32::MAX`: until told otherwise).
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    /// Session calls that reached this store (failed ones included).
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Sets the call count back to zero.
    pub fn reset_calls(&self) {
        self.calls.store(0, Ordering::SeqCst);
    }

    async fn gate(&self) -> Result<(), StoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.hang.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::unavailable("switched off by the test"));
        }
        let failing = self.fail_next.load(Ordering::SeqCst);
        if failing > 0 {
            if failing != u32::MAX {
                self.fail_next.store(failing - 1, Ordering::SeqCst);
            }
            return Err(StoreError::unavailable("connection reset"));
        }
        Ok(())
    }
}

#[async_trait]
impl<S: SessionStore + ?Sized> SessionStore for FaultyStore<S> {
    async fn create(&self, key: &SessionKey, record: &SessionRecord) -> Result<(), StoreError> {
        self.gate_key(key).await?;
        self.replicated()?;
        self.inner.create(key, record).await
    }
    async fn create_limited(
        &self,
        key: &SessionKey,
        record: &SessionRecord,
        now: Millis,
        limit: SessionLimit,
    ) -> Result<Vec<SessionKey>, StoreError> {
        self.gate_key(key).await?;
        self.replicated()?;
        self.inner.create_limited(key, record, now, limit).await
    }
    async fn load(
        &self,
        key: &SessionKey,
        now: Millis,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.gate_key(key).await?;
        self.inner.load(key, now).await
    }
    async fn renew(
        &self,
        key: &SessionKey,
        now: Millis,
        policy: &ExpiryPolicy,
    ) -> Result<Renewal, StoreError> {
        self.gate_key(key).await?;
        self.inner.renew(key, now, policy).await
    }
    async fn update_attributes(
        &self,
        key: &SessionKey,
        now: Millis,
        changes: &[AttributeChange],
        if_version: Option<u64>,
        budget: AttributeBudget,
    ) -> Result<u64, StoreError> {
        self.gate().await?;
        self.inner
            .update_attributes(key, now, changes, if_version, budget)
            .await
    }
    async fn delete(&self, key: &SessionKey) -> Result<bool, StoreError> {
        self.gate().await?;
        self.inner.delete(key).await
    }
    async fn cycle(
        &self,
        old: &SessionKey,
        new: &SessionKey,
        now: Millis,
        changes: &CycleChanges,
    ) -> Result<SessionRecord, StoreError> {
        self.gate().await?;
        self.inner.cycle(old, new, now, changes).await
    }
    async fn list_by_user(
        &self,
        user_id: &str,
        now: Millis,
    ) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        self.gate().await?;
        self.inner.list_by_user(user_id, now).await
    }
    async fn delete_by_user(
        &self,
        user_id: &str,
        except: Option<&SessionKey>,
    ) -> Result<usize, StoreError> {
        self.gate().await?;
        self.inner.delete_by_user(user_id, except).await
    }
    async fn sweep(&self, now: Millis, limit: usize) -> Result<usize, StoreError> {
        self.gate().await?;
        self.inner.sweep(now, limit).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.ping().await
    }
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }
    fn failure_domain(&self, scope: crate::Scope<'_>) -> crate::FailureDomain {
        match scope {
            crate::Scope::Shard(s) if self.split.load(Ordering::SeqCst) => {
                crate::FailureDomain(1 + u32::from(s >= 128))
            }
            _ => crate::FailureDomain::WHOLE,
        }
    }
    fn failure_domain_name(&self, domain: crate::FailureDomain) -> String {
        match domain.0 {
            0 => "store".into(),
            1 => "lower".into(),
            _ => "upper".into(),
        }
    }
}

#[async_trait]
impl<S: UserStore + ?Sized> UserStore for FaultyStore<S> {
    async fn append_events(&self, events: &[Vec<u8>], keep: usize) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.append_events(events, keep).await
    }
    async fn recent_events(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.gate().await?;
        self.inner.recent_events(limit).await
    }

    async fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.inner.create_user(user).await
    }
    async fn update_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.inner.update_user(user).await
    }
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.inner.get_user(name).await
    }
    async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.inner.list_users().await
    }
    async fn delete_user(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_user(name).await
    }
    async fn get_setting(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_setting(name).await
    }
    async fn swap_setting(
        &self,
        name: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        self.inner.swap_setting(name, expected, value).await
    }
    async fn take_attempt(
        &self,
        counters: &[Counter],
        window_ms: u64,
        now: Millis,
    ) -> Result<Attempt, StoreError> {
        self.inner.take_attempt(counters, window_ms, now).await
    }
    async fn refund_attempts(
        &self,
        refunds: &[(String, Refund)],
        now: Millis,
    ) -> Result<(), StoreError> {
        self.inner.refund_attempts(refunds, now).await
    }
    async fn rate_step(
        &self,
        key: &str,
        rate: &crate::Rate,
    ) -> Result<Option<crate::RateOutcome>, StoreError> {
        self.gate().await?;
        self.inner.rate_step(key, rate).await
    }
    fn shares_response_cache(&self) -> bool {
        self.inner.shares_response_cache()
    }
    async fn cache_read(
        &self,
        key: Option<&str>,
        generations: &[String],
    ) -> Result<crate::CacheRead, StoreError> {
        self.gate().await?;
        self.inner.cache_read(key, generations).await
    }
    async fn cache_write(
        &self,
        key: &str,
        value: &[u8],
        ttl: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.cache_write(key, value, ttl).await
    }
    async fn cache_invalidate(
        &self,
        generations: &[String],
        keep: std::time::Duration,
    ) -> Result<(), StoreError> {
        self.gate().await?;
        self.inner.cache_invalidate(generations, keep).await
    }
}
