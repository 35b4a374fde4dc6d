//! Accounts: the one home of credential checks, password rules, password
//! changes and user creation. The HTTP routes and the `sessiond user`
//! commands both call [`Accounts`]; neither reaches the user store another way.
//!
//! - [`Accounts::verify_credentials`]: throttling (per user or device, and per client
//!   IP), lookup and the argon2id check, equally slow and equally worded
//!   for an unknown user and a wrong password.
//! - [`Accounts::change_password`] (the user, knowing the old password) and
//!   [`Accounts::set_password`] (an operator): a new hash, and the user's
//!   other sessions ended, so a stolen session does not outlive the change.
//! - [`Accounts::add`], [`Accounts::import`], [`Accounts::ensure`]: new users.
//!
//! Every new password goes through [`PasswordRules`] (`password_rules.rs`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use sessiond_core::metric;
use sessiond_core::{Backend, SessionKey, SessionManager, StoreError, UserRecord};

use crate::devices::DeviceId;
use crate::password::{HashError, Hasher};
use crate::password_rules::{MAX_LENGTH as MAX_PASSWORD, PasswordRules, Weakness};
use crate::throttle::{Key, Refusal, Throttle};

/// Longest accepted user name.
pub const MAX_NAME: usize = 128;

/// What an account operation can answer besides success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// Wrong user name or password (indistinguishable on purpose).
    #[error("wrong username or password")]
    InvalidCredentials,
    /// Too many recent failures for this user or client.
    #[error("too many failed attempts; try again in {retry_after} s")]
    Throttled {
        /// Seconds until the window ends.
        retry_after: u64,
    },
    /// The current password given for a change is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    /// The new password breaks a rule; the rule says which.
    #[error(transparent)]
    WeakPassword(#[from] Weakness),
    /// The name is not acceptable.
    #[error("invalid user name {0:?}: use 1-128 letters, digits, '.', '-', '_' or '@'")]
    BadName(String),
    /// The role is not acceptable.
    #[error("invalid role {0:?}: use lowercase letters, digits, '-' or '_'")]
    BadRole(String),
    /// A CSV line's password breaks a rule.
    #[error("line {0}: {1}")]
    BadPassword(usize, Weakness),
    /// A CSV line is not `name,password,role`.
    #[error("line {0}: expected name,password,role")]
    BadLine(usize),
    /// The user exists already.
    #[error("user {0:?} exists already")]
    Exists(String),
    /// No such user.
    #[error("no user {0:?}")]
    Missing(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error(transparent)]
    Hash(#[from] HashError),
}

fn check_name(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b));
    ok.then_some(())
        .ok_or_else(|| AccountError::BadName(name.to_owned()))
}

fn check_role(role: &str) -> Result<(), AccountError> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    ok.then_some(())
        .ok_or_else(|| AccountError::BadRole(role.to_owned()))
}

fn check_roles(roles: &[String]) -> Result<(), AccountError> {
    if roles.is_empty() || roles.len() > 32 {
        return Err(AccountError::BadRole(String::new()));
    }
    roles.iter().try_for_each(|r| check_role(r))
}

/// Throttle limits.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Failures per user name per window (attempts without a device cookie).
    pub per_user: u32,
    /// Failures per device cookie per window.
    pub per_device: u32,
    /// Failures per client IP per window.
    pub per_ip: u32,
    /// The window.
    pub window: Duration,
}

/// See the module docs.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Backend>,
    sessions: SessionManager,
    hasher: Hasher,
    throttle: Throttle,
    limits: ThrottleLimits,
    rules: PasswordRules,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts").finish_non_exhaustive()
    }
}

impl Accounts {
    /// Accounts in `store` (users) whose sessions `sessions` ends on a
    /// password change.
    pub fn new(
        store: Arc<dyn Backend>,
        sessions: SessionManager,
        hasher: Hasher,
        limits: ThrottleLimits,
    ) -> Self {
        Self {
            hasher,
            throttle: Throttle::new(store.clone(), sessions.clock(), limits.window),
            limits,
            store,
            sessions,
            rules: PasswordRules::default(),
        }
    }

    /// New passwords must follow `rules` (by default [`PasswordRules::default`]).
    #[must_use]
    pub fn with_password_rules(mut self, rules: PasswordRules) -> Self {
        self.rules = rules;
        self
    }

    /// The rules new passwords must follow.
    pub fn password_rules(&self) -> &PasswordRules {
        &self.rules
    }

    fn check_new(&self, name: &str, password: &str) -> Result<(), AccountError> {
        Ok(self.rules.check(password, name)?)
    }

    /// Takes a place for one attempt on `counters`: the answer to give when
    /// they are full, logged and counted here once.
    async fn reserve(
        &self,
        counters: &[(Key<'_>, u32)],
        client_ip: Option<IpAddr>,
    ) -> Result<crate::throttle::Slot, AccountError> {
        self.throttle.reserve(counters).await.map_err(|refusal| match refusal {
            Refusal::Throttled(retry_after) => {
                metrics::counter!(metric::LOGINS, "outcome" => "throttled").increment(1);
                match client_ip {
                    Some(ip) => tracing::warn!(target: "sessiond::security", event = "login_throttled", client_ip = %ip),
                    None => tracing::warn!(target: "sessiond::security", event = "reauth_throttled"),
                }
                AccountError::Throttled { retry_after }
            }
            Refusal::Store(e) => e.into(),
        })
    }

    /// The user `username` if `password` is theirs. Throttled per client
    /// IP, and per user name, or per device when the attempt comes from a
    /// browser where the user signed in before (`device`, see
    /// [`crate::devices`]). An unknown user costs the same hash as a known one.
    pub async fn verify_credentials(
        &self,
        username: &str,
        password: String,
        client_ip: IpAddr,
        device: Option<&DeviceId>,
    ) -> Result<UserRecord, AccountError> {
        if username.is_empty() || username.len() > MAX_NAME || password.len() > 4 * MAX_PASSWORD {
            return Err(AccountError::InvalidCredentials);
        }
        let (who, limit) = match device {
            Some(d) => (Key::Device(d.as_str()), self.limits.per_device),
            None => (Key::User(username), self.limits.per_user),
        };
        // The places are taken before the hash is computed, so concurrent
        // guesses count against the limits while they are being checked.
        let slot = self
            .reserve(
                &[(who, limit), (Key::Ip(&client_ip), self.limits.per_ip)],
                Some(client_ip),
            )
            .await?;
        let user = self.store.get_user(username).await?;
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let verified = self
            .hasher
            .verify(password.clone(), hash)
            .await
            .inspect_err(|e| {
                if matches!(e, HashError::Busy) {
                    metrics::counter!(metric::LOGINS, "outcome" => "busy").increment(1);
                }
            })?;
        match (verified.matches, user) {
            // A disabled account fails like a wrong password: whether an
            // account exists, or is disabled, is not told to a guesser.
            (true, Some(user)) if !user.disabled => {
                if verified.rehash {
                    self.upgrade_hash(&user, password);
                }
                metrics::counter!(metric::LOGINS, "outcome" => "success").increment(1);
                // A device's owner got in: its earlier failures are forgotten.
                // Anonymous failures for the name stay: they may be a
                // stranger's, still guessing.
                slot.succeeded(device.map(|_| who)).await;
                Ok(user)
            }
            _ => {
                slot.failed();
                metrics::counter!(metric::LOGINS, "outcome" => "bad_credentials").increment(1);
                tracing::warn!(target: "sessiond::security", event = "login_failed", client_ip = %client_ip);
                Err(AccountError::InvalidCredentials)
            }
        }
    }

    /// Recomputes `user`'s hash with the configured parameters from the
    /// password they just proved, in the background (the sign-in does not
    /// wait for a second hash). The new hash is written only if the stored
    /// one is still the one that was checked, so a password changed
    /// meanwhile is not overwritten.
    fn upgrade_hash(&self, user: &UserRecord, password: String) {
        let (this, checked) = (self.clone(), user.password_hash.clone());
        let name = user.name.clone();
        tokio::spawn(async move {
            let result = async {
                let hash = this.hasher.hash(password).await?;
                let Some(mut current) = this.store.get_user(&name).await? else {
                    return Ok::<_, AccountError>(false);
                };
                if current.password_hash != checked {
                    return Ok(false);
                }
                current.password_hash = hash;
                this.store.update_user(&current).await?;
                Ok(true)
            }
            .await;
            match result {
                Ok(true) => {
                    tracing::info!(target: "sessiond::security", event = "password_hash_upgraded", user = %name)
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(user = %name, error = %e, "a password hash could not be upgraded; the next sign-in tries again")
                }
            }
        });
    }

    /// The user changes their own password: `current` must be right
    /// (failures count against a per-user throttle of their own, which only
    /// a holder of the user's session can spend). Ends every other
    /// session of the user but `keep`; returns how many ended.
    pub async fn change_password(
        &self,
        name: &str,
        current: String,
        new: String,
        keep: Option<&SessionKey>,
    ) -> Result<usize, AccountError> {
        self.check_new(name, &new)?;
        let account = self.prove_password(name, current).await?;
        self.replace_password(account, new, keep).await
    }

    /// The signed-in user proves their password again (re-authentication
    /// before a sensitive action): [`AccountError::WrongPassword`] if it
    /// is not theirs. Failures count against a per-user throttle of its
    /// own, which only a holder of the user's session can spend, as for
    /// a password change.
    pub async fn prove_password(
        &self,
        name: &str,
        password: String,
    ) -> Result<UserRecord, AccountError> {
        let slot = self
            .reserve(&[(Key::Reauth(name), self.limits.per_user)], None)
            .await?;
        let account = self.existing(name).await?;
        let verified = self
            .hasher
            .verify(password, Some(account.password_hash.clone()))
            .await?;
        if !verified.matches || account.disabled {
            slot.failed();
            return Err(AccountError::WrongPassword);
        }
        slot.succeeded(Some(Key::Reauth(name))).await;
        Ok(account)
    }

    /// An operator sets a user's password; every session of the user ends.
    pub async fn set_password(&self, name: &str, new: String) -> Result<usize, AccountError> {
        self.check_new(name, &new)?;
        let account = self.existing(name).await?;
        self.replace_password(account, new, None).await
    }

    async fn existing(&self, name: &str) -> Result<UserRecord, AccountError> {
        self.store
            .get_user(name)
            .await?
            .ok_or_else(|| AccountError::Missing(name.to_owned()))
    }

    async fn replace_password(
        &self,
        mut account: UserRecord,
        new: String,
        keep: Option<&SessionKey>,
    ) -> Result<usize, AccountError> {
        account.password_hash = self.hasher.hash(new).await?;
        account.updated_at = self.sessions.now();
        self.store.update_user(&account).await?;
        let ended = self.sessions.revoke_user(&account.name, keep).await?;
        tracing::info!(target: "sessiond::security", event = "password_changed", user = %account.name, revoked = ended);
        Ok(ended)
    }

    /// Adds a user with one role.
    pub async fn add(&self, name: &str, password: String, role: &str) -> Result<(), AccountError> {
        self.add_with_roles(name, password, &[role.to_owned()])
            .await
            .map(drop)
    }

    /// Adds a user with `roles` (at least one; the first is the primary).
    pub async fn add_with_roles(
        &self,
        name: &str,
        password: String,
        roles: &[String],
    ) -> Result<UserRecord, AccountError> {
        check_name(name)?;
        self.check_new(name, &password)?;
        check_roles(roles)?;
        let hash = self.hasher.hash(password).await?;
        self.create(name, hash, roles).await
    }

    /// Changes a user's roles or disabled flag. Either change ends every
    /// session and token family of the user at once: a session carries the
    /// roles it was signed in with (and its access tokens carry them
    /// signed), so a removed role must not outlive the change; signing in
    /// again picks up the new roles. Returns the user and how many
    /// sessions ended.
    pub async fn update(
        &self,
        name: &str,
        roles: Option<Vec<String>>,
        disabled: Option<bool>,
    ) -> Result<(UserRecord, usize), AccountError> {
        if let Some(roles) = &roles {
            check_roles(roles)?;
        }
        let mut account = self.existing(name).await?;
        let roles_change = roles.as_ref().is_some_and(|r| *r != account.roles);
        let disabling = disabled == Some(true) && !account.disabled;
        if let Some(roles) = roles {
            account.roles = roles;
        }
        if let Some(disabled) = disabled {
            account.disabled = disabled;
        }
        account.updated_at = self.sessions.now();
        self.store.update_user(&account).await?;
        let ended = if roles_change || disabling {
            self.sessions.revoke_user(name, None).await?
        } else {
            0
        };
        tracing::info!(target: "sessiond::security", event = "user_changed", user = %name, roles_change, disabling, revoked = ended);
        Ok((account, ended))
    }

    /// Users whose names start with `prefix`, by name, after `after` (the
    /// last name of the previous page), at most `limit`; and the cursor of
    /// the next page, if there is one.
    pub async fn page_of_users(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<UserRecord>, Option<String>), AccountError> {
        let mut users: Vec<UserRecord> = self
            .store
            .list_users()
            .await?
            .into_iter()
            .filter(|u| u.name.starts_with(prefix))
            .filter(|u| after.is_none_or(|a| u.name.as_str() > a))
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        let more = users.len() > limit;
        users.truncate(limit);
        let next = more.then(|| users.last().map(|u| u.name.clone())).flatten();
        Ok((users, next))
    }

    /// Deletes a user and ends all of their sessions and token families.
    /// `None` if there was no such user.
    pub async fn delete(&self, name: &str) -> Result<Option<usize>, AccountError> {
        // The account goes first, so that no new login starts meanwhile.
        if !self.store.delete_user(name).await? {
            return Ok(None);
        }
        let ended = self.sessions.revoke_user(name, None).await?;
        tracing::info!(target: "sessiond::security", event = "user_deleted", user = %name, revoked = ended);
        Ok(Some(ended))
    }

    async fn create(
        &self,
        name: &str,
        hash: String,
        roles: &[String],
    ) -> Result<UserRecord, AccountError> {
        let now = self.sessions.now();
        let user = UserRecord {
            name: name.to_owned(),
            password_hash: hash,
            roles: roles.to_vec(),
            created_at: now,
            updated_at: now,
            disabled: false,
        };
        match self.store.create_user(&user).await {
            Err(StoreError::Conflict) => Err(AccountError::Exists(name.to_owned())),
            other => other.map(|()| user).map_err(Into::into),
        }
    }

    /// Adds a user, or sets the password of an existing one (for `--demo`).
    pub async fn ensure(
        &self,
        name: &str,
        password: String,
        role: &str,
    ) -> Result<(), AccountError> {
        match self.add(name, password.clone(), role).await {
            Err(AccountError::Exists(_)) => self.set_password(name, password).await.map(drop),
            other => other,
        }
    }

    /// Imports `name,password,role` lines (a header line `name,password,role`
    /// is skipped). Every line is checked before anything is written; hashes
    /// run as many at once as the hasher allows. Returns how many were added
    /// and the names that existed already (skipped). With `allow_weak`,
    /// passwords need only be 1 to 1024 characters (test and benchmark
    /// data: the caller warns about it).
    pub async fn import(
        &self,
        csv: &str,
        allow_weak: bool,
    ) -> Result<(usize, Vec<String>), AccountError> {
        let relaxed = PasswordRules::relaxed();
        let rules = if allow_weak { &relaxed } else { &self.rules };
        let mut rows = Vec::new();
        for (i, line) in csv.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || (i == 0 && line.eq_ignore_ascii_case("name,password,role")) {
                continue;
            }
            let mut fields = line.splitn(3, ',');
            let (Some(name), Some(password), Some(role)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(AccountError::BadLine(i + 1));
            };
            check_name(name)?;
            rules
                .check(password, name)
                .map_err(|why| AccountError::BadPassword(i + 1, why))?;
            check_role(role)?;
            rows.push((name, password.to_owned(), role));
        }
        let hashes = spawn_all(rows.iter().map(|(_, password, _)| {
            let (hasher, password) = (self.hasher.clone(), password.clone());
            async move { hasher.hash(password).await }
        }));
        let mut added = 0;
        let mut skipped = Vec::new();
        for ((name, _, role), hash) in rows.iter().zip(hashes.await) {
            match self.create(name, hash?, &[(*role).to_owned()]).await {
                Ok(_) => added += 1,
                Err(AccountError::Exists(name)) => skipped.push(name),
                Err(e) => return Err(e),
            }
        }
        Ok((added, skipped))
    }
}

/// Runs the futures concurrently, answers in order (the hasher's semaphore
/// bounds how many hashes actually run at once).
async fn spawn_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::{Argon2Params, PoolConfig};
    use sessiond_core::{ExpiryPolicy, MemoryStore, NewSession};

    fn accounts() -> Accounts {
        let store = Arc::new(MemoryStore::new());
        let sessions = SessionManager::new(store.clone(), ExpiryPolicy::default());
        let limits = ThrottleLimits {
            per_user: 2,
            per_device: 2,
            per_ip: 100,
            window: Duration::from_secs(60),
        };
        Accounts::new(
            store,
            sessions,
            Hasher::new(PoolConfig::batch(), Argon2Params::default()).expect("hasher"),
            limits,
        )
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn the_right_password_verifies_and_wrong_ones_throttle_the_user() {
        let a = accounts();
        a.add("alice", "plum-orbit-cactus".into(), "user")
            .await
            .expect("added");
        let user = a
            .verify_credentials("alice", "plum-orbit-cactus".into(), IP, None)
            .await
            .expect("verifies");
        assert_eq!(user.roles, ["user"]);
        for _ in 0..2 {
            assert!(matches!(
                a.verify_credentials("alice", "wrong".into(), IP, None)
                    .await,
                Err(AccountError::InvalidCredentials)
            ));
        }
        assert!(matches!(
            a.verify_credentials("alice", "plum-orbit-cactus".into(), IP, None)
                .await,
            Err(AccountError::Throttled { .. })
        ));
        // An unknown user is answered like a wrong password.
        assert!(matches!(
            a.verify_credentials("nobody", "whatever".into(), IP, None)
                .await,
            Err(AccountError::InvalidCredentials)
        ));
    }

    #[tokio::test]
    async fn a_password_change_needs_the_current_password_and_ends_other_sessions() {
        let a = accounts();
        a.add("bob", "velvet-lantern-93".into(), "user")
            .await
            .expect("added");
        let new = || NewSession {
            user_id: "bob".into(),
            roles: vec!["user".into()],
            ..Default::default()
        };
        let (_, kept) = a.sessions.create(new()).await.expect("session");
        a.sessions.create(new()).await.expect("another");
        assert!(matches!(
            a.change_password("bob", "not it".into(), "quartz-meadow-walrus".into(), None)
                .await,
            Err(AccountError::WrongPassword)
        ));
        assert!(matches!(
            a.change_password("bob", "velvet-lantern-93".into(), "short".into(), None)
                .await,
            Err(AccountError::WeakPassword(Weakness::TooShort(12)))
        ));
        assert!(matches!(
            a.change_password(
                "bob",
                "velvet-lantern-93".into(),
                "bob-velvet-lantern".into(),
                None
            )
            .await,
            Err(AccountError::WeakPassword(Weakness::ContainsName))
        ));
        let ended = a
            .change_password(
                "bob",
                "velvet-lantern-93".into(),
                "quartz-meadow-walrus".into(),
                Some(&kept.key),
            )
            .await
            .expect("changed");
        assert_eq!(ended, 1);
        assert!(
            a.verify_credentials("bob", "quartz-meadow-walrus".into(), IP, None)
                .await
                .is_ok()
        );
        assert_eq!(
            a.sessions.list_for_user("bob").await.expect("list").len(),
            1
        );
    }

    #[tokio::test]
    async fn an_import_checks_every_line_before_writing_and_skips_existing_users() {
        let a = accounts();
        a.add("carol", "saffron-glacier-71".into(), "user")
            .await
            .expect("added");
        let bad = "name,password,role\ndave,tundra-pepper-mosaic,user\neve,password1234,user\n";
        assert!(matches!(
            a.import(bad, false).await,
            Err(AccountError::BadPassword(3, Weakness::Guessable(_)))
        ));
        assert!(a.store.get_user("dave").await.expect("read").is_none());
        let good =
            "name,password,role\ndave,tundra-pepper-mosaic,user\ncarol,ember-violin-harbor,admin\n";
        let (added, skipped) = a.import(good, false).await.expect("imported");
        assert_eq!((added, skipped), (1, vec!["carol".to_owned()]));
    }

    #[tokio::test]
    async fn an_import_allowed_weak_passwords_takes_the_benchmark_users() {
        let a = accounts();
        let csv = "name,password,role\nuser0000,pw-user0000,user\nuser0001,pw-user0001,user\n";
        assert!(a.import(csv, false).await.is_err());
        assert_eq!(a.import(csv, true).await.expect("imported").0, 2);
        assert!(
            a.verify_credentials("user0001", "pw-user0001".into(), IP, None)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_sign_in_upgrades_a_hash_made_with_weaker_parameters() {
        let a = accounts();
        let weak = Argon2Params {
            memory_kib: 8 * 1024,
            iterations: 1,
            parallelism: 1,
        };
        let old = crate::password::hash_blocking("plum-orbit-cactus", &weak).expect("hash");
        a.create("frank", old.clone(), &["user".into()])
            .await
            .expect("created");
        a.verify_credentials("frank", "plum-orbit-cactus".into(), IP, None)
            .await
            .expect("verifies with the old hash");
        // The upgrade runs after the sign-in answered.
        let mut upgraded = old.clone();
        for _ in 0..200 {
            upgraded = a
                .store
                .get_user("frank")
                .await
                .expect("read")
                .expect("user")
                .password_hash;
            if upgraded != old {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{upgraded}"
        );
        a.verify_credentials("frank", "plum-orbit-cactus".into(), IP, None)
            .await
            .expect("verifies with the new hash");
    }
}
