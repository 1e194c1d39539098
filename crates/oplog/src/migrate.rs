//! The engine's migrations: each owner crate's own tables (`bae_sync_*`,
//! `migrations/{owner}/` at the workspace top), applied in order and
//! versioned per owner in `bae_sync_versions`, never in `PRAGMA
//! user_version` (the host's). The host's tables are never touched.

use crate::error::OplogError;
use rusqlite::{Connection, OptionalExtension};

/// One migration: a name (its file) and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The migration's file name without extension, for errors and logs.
    pub name: &'static str,
    /// The statements it runs.
    pub sql: &'static str,
}

/// The migrations of one owner crate: migration `i` brings the owner's
/// tables to version `i + 1`.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// The owner, as recorded in `bae_sync_versions.component`.
    pub component: &'static str,
    /// Its migrations, in order. Released ones are never edited.
    pub steps: &'static [Migration],
}

impl Migrations {
    /// The version these migrations bring the owner's tables to.
    pub fn version(&self) -> u32 {
        u32::try_from(self.steps.len()).unwrap_or(u32::MAX)
    }
}

/// The op log's own tables (`bae_sync_op_log`, `bae_sync_op_batches`,
/// `bae_sync_device`, `bae_sync_schema_columns`).
pub const OPLOG_MIGRATIONS: Migrations = Migrations {
    component: "oplog",
    steps: &[
        Migration {
            name: "0001_op_log",
            sql: include_str!("../../../migrations/oplog/0001_op_log.sql"),
        },
        Migration {
            name: "0002_schema_columns",
            sql: include_str!("../../../migrations/oplog/0002_schema_columns.sql"),
        },
        Migration {
            name: "0003_compact_op_log",
            sql: include_str!("../../../migrations/oplog/0003_compact_op_log.sql"),
        },
        Migration {
            name: "0004_op_chunks",
            sql: include_str!("../../../migrations/oplog/0004_op_chunks.sql"),
        },
    ],
};

/// A migration's step that SQL cannot do, run after its SQL in the same
/// transaction: (component, migration name, step).
type Conversion = (
    &'static str,
    &'static str,
    fn(&Connection) -> Result<(), OplogError>,
);

/// The migrations with a Rust step. Keyed by name rather than a field of
/// [`Migration`], so the other owners' migration lists stay plain SQL.
const CONVERSIONS: &[Conversion] = &[("oplog", "0004_op_chunks", crate::log::convert_v3_ops)];

/// Sets the connection settings the engine relies on: foreign keys on
/// (merge's cascade relies on them), WAL so the host's readers are not
/// blocked while sync writes, and a busy timeout so the host's connection
/// and the sync service's wait for each other instead of failing.
pub fn configure(conn: &Connection) -> Result<(), OplogError> {
    // First: switching to WAL needs a lock another connection may hold.
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    conn.pragma_update(None, "foreign_keys", true)?;
    set_wal(conn)?;
    // NORMAL is durable across application crashes, which is what the op
    // log needs; a power loss can lose the newest transactions.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Switches to WAL. The first switch of a file needs the only lock on it,
/// and SQLite reports another connection's lock at once rather than
/// through the busy handler: retry for the busy timeout.
fn set_wal(conn: &Connection) -> Result<(), OplogError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return Ok(other?),
        }
    }
}

/// Applies the migrations of `owner` the database lacks, each in its own
/// transaction with its version bump. A database whose `owner` tables come
/// from a newer engine is refused.
pub fn migrate(conn: &mut Connection, owner: &Migrations) -> Result<(), OplogError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS bae_sync_versions (
             component TEXT PRIMARY KEY NOT NULL,
             version INTEGER NOT NULL
         )",
    )?;
    loop {
        // Each step reads the version inside its own write transaction, so
        // two connections opening a new library at once never both run it.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: u32 = tx
            .query_row(
                "SELECT version FROM bae_sync_versions WHERE component = ?1",
                [owner.component],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        if current > owner.version() {
            return Err(OplogError::NewerSchema {
                component: owner.component,
                found: current,
                supported: owner.version(),
            });
        }
        let Some(step) = owner.steps.get(current as usize) else {
            return Ok(());
        };
        tx.execute_batch(step.sql)
            .map_err(|e| OplogError::Migration {
                name: step.name,
                source: e,
            })?;
        for (_, _, convert) in CONVERSIONS
            .iter()
            .filter(|(c, n, _)| *c == owner.component && *n == step.name)
        {
            convert(&tx)?;
        }
        tx.execute(
            "INSERT INTO bae_sync_versions (component, version) VALUES (?1, ?2)
             ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            rusqlite::params![owner.component, current + 1],
        )?;
        tx.commit()?;
        tracing::info!(
            component = owner.component,
            migration = step.name,
            "applied migration"
        );
    }
}

/// The version of `owner`'s tables in this database (0: none yet).
pub fn version(conn: &Connection, owner: &Migrations) -> Result<u32, OplogError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bae_sync_versions')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            "SELECT version FROM bae_sync_versions WHERE component = ?1",
            [owner.component],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TWO: Migrations = Migrations {
        component: "test",
        steps: &[
            Migration {
                name: "0001_a",
                sql: "CREATE TABLE bae_sync_test_a (x INTEGER);",
            },
            Migration {
                name: "0002_b",
                sql: "CREATE TABLE bae_sync_test_b (y INTEGER);",
            },
        ],
    };

    #[test]
    fn migrations_apply_once_and_are_idempotent() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &TWO).unwrap();
        migrate(&mut conn, &TWO).unwrap();
        assert_eq!(version(&conn, &TWO).unwrap(), 2);
        assert_eq!(version(&conn, &OPLOG_MIGRATIONS).unwrap(), 0);
    }

    #[test]
    fn the_host_user_version_is_left_alone() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", 41).unwrap();
        migrate(&mut conn, &OPLOG_MIGRATIONS).unwrap();
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 41);
    }

    #[test]
    fn tables_from_a_newer_engine_are_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &TWO).unwrap();
        conn.execute(
            "UPDATE bae_sync_versions SET version = 3 WHERE component = 'test'",
            [],
        )
        .unwrap();
        let err = migrate(&mut conn, &TWO).unwrap_err();
        assert!(matches!(
            err,
            OplogError::NewerSchema {
                component: "test",
                found: 3,
                supported: 2
            }
        ));
        assert!(err.to_string().contains("newer"));
    }

    #[test]
    fn a_failed_migration_leaves_the_version_unchanged() {
        const BAD: Migrations = Migrations {
            component: "bad",
            steps: &[Migration {
                name: "0001_bad",
                sql: "CREATE TABLE bae_sync_ok (x); CREATE TABLE (",
            }],
        };
        let mut conn = Connection::open_in_memory().unwrap();
        let err = migrate(&mut conn, &BAD).unwrap_err();
        assert!(matches!(
            err,
            OplogError::Migration {
                name: "0001_bad",
                ..
            }
        ));
        assert_eq!(version(&conn, &BAD).unwrap(), 0);
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'bae_sync_ok')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(
            !exists,
            "the failed migration's first statement rolled back"
        );
    }
}
