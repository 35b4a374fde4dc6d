//! The redb tables.

use redb::{Database, MultimapTableDefinition, TableDefinition};

/// Session key (32 bytes) → encoded [`sessiond_core::SessionRecord`].
pub(crate) const SESSIONS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("sessions_v1");
/// User id → keys of that user's sessions.
pub(crate) const USER_SESSIONS: MultimapTableDefinition<'_, &str, &[u8]> =
    MultimapTableDefinition::new("user_sessions_v1");
/// (expires at, session key) → (): the sweeper walks it in time order.
pub(crate) const EXPIRY: TableDefinition<'_, (u64, &[u8]), ()> = TableDefinition::new("expiry_v1");
/// User name → encoded [`sessiond_core::UserRecord`].
pub(crate) const USERS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("users_v1");

/// Setting name → opaque value (e.g. the JWT key ring).
pub(crate) const SETTINGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("settings_v1");

/// Sequence number → one security event (opaque), oldest first; bounded.
pub(crate) const EVENTS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("events_v1");

/// Creates every table, so readers never meet a missing one.
pub(crate) fn create_all(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(SESSIONS)?;
    txn.open_multimap_table(USER_SESSIONS)?;
    txn.open_table(EXPIRY)?;
    txn.open_table(USERS)?;
    txn.open_table(SETTINGS)?;
    txn.open_table(EVENTS)?;
    txn.commit()?;
    Ok(())
}
