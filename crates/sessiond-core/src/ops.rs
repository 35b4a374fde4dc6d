//! The record-level steps of renew, update and cycle, shared by stores that
//! hold a whole record inside a lock or a transaction (memory, file), so that
//! the rules live in one place. Redis applies the same rules in Lua.

use crate::policy::ExpiryPolicy;
use crate::policy::{OnLimit, SessionLimit};
use crate::record::{AttributeBudget, AttributeChange, SessionRecord};
use crate::store::{CycleChanges, Renewal, StoreError};
use crate::time::Millis;
use crate::token::SessionKey;

/// Renews `record` in place if the policy says so.
pub fn renew(record: &mut SessionRecord, now: Millis, policy: &ExpiryPolicy) -> Renewal {
    if !record.is_live(now) {
        return Renewal::Gone;
    }
    if !policy.needs_renewal(record, now) {
        return Renewal::NotNeeded;
    }
    record.apply_renewal(
        policy.renewed_idle_expiry(now, record.absolute_expires_at),
        now,
    );
    Renewal::Extended {
        idle_expires_at: record.idle_expires_at,
    }
}

/// Applies attribute changes in place, within `budget`; returns the new version.
pub fn update_attributes(
    record: &mut SessionRecord,
    now: Millis,
    changes: &[AttributeChange],
    if_version: Option<u64>,
    budget: AttributeBudget,
) -> Result<u64, StoreError> {
    if !record.is_live(now) {
        return Err(StoreError::NotFound);
    }
    if if_version.is_some_and(|v| v != record.version) {
        return Err(StoreError::Conflict);
    }
    if !budget.admits(&record.attributes, changes) {
        return Err(StoreError::TooLarge);
    }
    Ok(record.apply_attribute_changes(changes))
}

/// Applies a cycle's changes to the record that moves to the new key.
pub fn cycle(
    record: &mut SessionRecord,
    now: Millis,
    changes: &CycleChanges,
) -> Result<(), StoreError> {
    if !record.is_live(now) {
        return Err(StoreError::NotFound);
    }
    if let Some(roles) = &changes.roles {
        record.roles.clone_from(roles);
    }
    if let Some(secret) = &changes.csrf_secret {
        record.csrf_secret.clone_from(secret);
    }
    record.version += 1;
    Ok(())
}

/// Which of a user's live sessions (`(created_at, key)`) end so that one
/// more fits under `limit`: the oldest, by creation time (then key, so
/// every store picks the same). [`StoreError::SessionLimit`] when the
/// limit refuses instead.
pub fn make_room(
    mut live: Vec<(Millis, SessionKey)>,
    limit: SessionLimit,
) -> Result<Vec<SessionKey>, StoreError> {
    let max = limit.max.max(1);
    if live.len() < max {
        return Ok(Vec::new());
    }
    if limit.on_limit == OnLimit::Refuse {
        return Err(StoreError::SessionLimit { max });
    }
    live.sort_unstable();
    let excess = live.len() + 1 - max;
    Ok(live.into_iter().take(excess).map(|(_, key)| key).collect())
}
