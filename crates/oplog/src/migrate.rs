//! Schema migrations (`migrations/` at the workspace top), applied in order,
//! versioned by `PRAGMA user_version`, idempotent.

use crate::error::OplogError;
use rusqlite::Connection;

/// The migrations, in order; migration `i` brings the database to version `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_library",
        include_str!("../../../migrations/0001_library.sql"),
    ),
    (
        "0002_sync",
        include_str!("../../../migrations/0002_sync.sql"),
    ),
    (
        "0003_wanted_images",
        include_str!("../../../migrations/0003_wanted_images.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Sets the connection pragmas the library relies on (foreign keys on, WAL)
/// and applies every migration the database lacks. A database from a newer
/// build is refused.
pub fn migrate(conn: &mut Connection) -> Result<(), OplogError> {
    conn.pragma_update(None, "foreign_keys", true)?;
    // WAL keeps readers (bae's UI) unblocked while sync writes; NORMAL is
    // durable across application crashes, which is what the op log needs.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(OplogError::NewerSchema {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| OplogError::Migration { name, source: e })?;
        tx.pragma_update(None, "user_version", i as u32 + 1)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        migrate(&mut conn).unwrap();
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let fk: bool = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert!(fk);
    }

    #[test]
    fn a_database_from_a_newer_build_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(
            matches!(err, OplogError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1)
        );
        assert!(err.to_string().contains("newer"));
    }

    #[test]
    fn foreign_keys_are_enforced() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        let orphan = conn.execute(
            "INSERT INTO releases (id, album_id, created_at, updated_at) VALUES ('r', 'missing', '', '')",
            [],
        );
        assert!(orphan.is_err());
    }
}
