//! User management shared by the `sessiond user …` commands and `serve --demo`.

use sessiond_core::{Backend, Clock, StoreError, SystemClock, UserRecord};

use crate::password::{HashError, hash_blocking};
use crate::routes::account::{MAX_PASSWORD, MIN_PASSWORD};

/// Errors of user management.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The name is not acceptable.
    #[error("invalid user name {0:?}: use 1-128 letters, digits, '.', '-', '_' or '@'")]
    BadName(String),
    /// The password is too short or too long.
    #[error("the password must be {MIN_PASSWORD} to {MAX_PASSWORD} bytes long")]
    BadPassword,
    /// The role is not acceptable.
    #[error("invalid role {0:?}: use lowercase letters, digits, '-' or '_'")]
    BadRole(String),
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

fn check_name(name: &str) -> Result<(), UserError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadName(name.to_owned()))
    }
}

fn check_password(password: &str) -> Result<(), UserError> {
    if (MIN_PASSWORD..=MAX_PASSWORD).contains(&password.len()) {
        Ok(())
    } else {
        Err(UserError::BadPassword)
    }
}

fn check_role(role: &str) -> Result<(), UserError> {
    let ok = !role.is_empty()
        && role.len() <= 64
        && role
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(UserError::BadRole(role.to_owned()))
    }
}

/// Adds a user with one role (argon2id hash computed on a blocking thread).
pub async fn add(
    store: &dyn Backend,
    name: &str,
    password: String,
    role: &str,
) -> Result<(), UserError> {
    check_name(name)?;
    check_password(&password)?;
    check_role(role)?;
    let hash = tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|_| HashError::Unavailable)??;
    let now = SystemClock.now();
    let user = UserRecord {
        name: name.to_owned(),
        password_hash: hash,
        roles: vec![role.to_owned()],
        created_at: now,
        updated_at: now,
    };
    match store.create_user(&user).await {
        Err(StoreError::Conflict) => Err(UserError::Exists(name.to_owned())),
        other => Ok(other?),
    }
}

/// Sets a user's password and ends all of their sessions.
pub async fn set_password(
    store: &dyn Backend,
    name: &str,
    password: String,
) -> Result<usize, UserError> {
    check_password(&password)?;
    let mut user = store
        .get_user(name)
        .await?
        .ok_or_else(|| UserError::Missing(name.to_owned()))?;
    user.password_hash = tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|_| HashError::Unavailable)??;
    user.updated_at = SystemClock.now();
    store.update_user(&user).await?;
    Ok(store.delete_by_user(name, None).await?)
}

/// Adds a user, or sets the password of an existing one (for `--demo`).
pub async fn ensure(
    store: &dyn Backend,
    name: &str,
    password: String,
    role: &str,
) -> Result<(), UserError> {
    match add(store, name, password.clone(), role).await {
        Err(UserError::Exists(_)) => set_password(store, name, password).await.map(drop),
        other => other,
    }
}

/// Imports `name,password,role` lines (a header line `name,password,role` is
/// skipped). Hashes on all cores. Returns how many were added; existing
/// users are reported and skipped.
pub async fn import(store: &dyn Backend, csv: &str) -> Result<(usize, Vec<String>), UserError> {
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
            return Err(UserError::BadName(format!(
                "line {}: expected name,password,role",
                i + 1
            )));
        };
        check_name(name)?;
        check_password(password)?;
        check_role(role)?;
        rows.push((name.to_owned(), password.to_owned(), role.to_owned()));
    }
    let mut added = 0;
    let mut skipped = Vec::new();
    let parallel = std::thread::available_parallelism().map_or(2, usize::from);
    for chunk in rows.chunks(parallel) {
        let tasks: Vec<_> = chunk
            .iter()
            .map(|(n, p, r)| {
                let (n, p, r) = (n.clone(), p.clone(), r.clone());
                tokio::task::spawn_blocking(move || hash_blocking(&p).map(|h| (n, h, r)))
            })
            .collect();
        for task in tasks {
            let (name, hash, role) = task.await.map_err(|_| HashError::Unavailable)??;
            let now = SystemClock.now();
            let user = UserRecord {
                name: name.clone(),
                password_hash: hash,
                roles: vec![role],
                created_at: now,
                updated_at: now,
            };
            match store.create_user(&user).await {
                Ok(()) => added += 1,
                Err(StoreError::Conflict) => skipped.push(name),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok((added, skipped))
}
