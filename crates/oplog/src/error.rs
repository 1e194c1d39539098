//! Errors of the op log.

use crate::codec::CodecError;

/// Everything that can go wrong recording or reading ops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OplogError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The device's stream cannot be restarted while batches are unpushed:
    /// they would be lost.
    #[error("{0} local batch(es) are not pushed yet: run `bae-sync push` first, or they are lost")]
    UnpushedBatches(usize),
    /// A migration failed.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// The migration.
        name: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The engine's tables were migrated by a newer build.
    #[error("the library's {component} sync tables have version {found}, newer than this build's {supported}; upgrade bae")]
    NewerSchema {
        /// Which owner's tables.
        component: &'static str,
        /// Version found.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// The sync schema does not match the database it was given with.
    #[error("sync schema: {0}")]
    Schema(#[from] SchemaError),
    /// A table or column name that is not a plain identifier.
    #[error("{0:?} is not a table or column name")]
    BadIdentifier(String),
    /// An insert or update naming one column twice: every device must read
    /// one value for it (readers refuse such an op, `CodecError::BadOp`).
    #[error("{table}.{column} is written twice in one write")]
    ColumnTwice {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A write to a row that does not exist.
    #[error("no row {row_id:?} in {table}")]
    NoSuchRow {
        /// The table.
        table: String,
        /// The row id.
        row_id: String,
    },
    /// The clock refused to make a timestamp.
    #[error("clock: {0}")]
    Clock(#[from] bae_hlc::ClockError),
    /// The sync state's device id is corrupt.
    #[error("sync state: {0}")]
    DeviceId(#[from] bae_hlc::DeviceIdError),
    /// A stored op or batch does not decode.
    #[error("stored op: {0}")]
    Codec(#[from] CodecError),
    /// A stored op's payload does not decode.
    #[error("op_log row {seq} has a corrupt payload: {reason}")]
    CorruptOp {
        /// The op_log seq.
        seq: i64,
        /// Why.
        reason: String,
    },
    /// A batch number beyond what the op log stores (`i64`).
    #[error("batch number {0} is out of range")]
    BatchSeqOutOfRange(u64),
}

/// How a [`crate::SyncSchema`] disagrees with the database it is opened on
/// (checked once, when the engine opens the database), or with itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A synced table the database does not have.
    #[error("table {table} syncs but the database has no such table")]
    MissingTable {
        /// The table.
        table: String,
    },
    /// A synced table without a `TEXT` primary key `id`.
    #[error("table {table} syncs but has no TEXT PRIMARY KEY column id")]
    NoIdKey {
        /// The table.
        table: String,
    },
    /// A synced column the table does not have.
    #[error("column {table}.{column} syncs but the table has no such column")]
    MissingColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A `UNIQUE` constraint or index on a synced table that the schema
    /// does not declare (merge must know every unique group to keep two
    /// devices' rival rows from stalling a stream).
    #[error("table {table} has a UNIQUE constraint on ({columns}) that the sync schema does not declare")]
    UndeclaredUnique {
        /// The table.
        table: String,
        /// Its columns, comma-separated.
        columns: String,
    },
    /// A declared unique group with no matching `UNIQUE` constraint.
    #[error("the sync schema declares ({columns}) of {table} unique but the database does not enforce it")]
    UniqueNotInDatabase {
        /// The table.
        table: String,
        /// Its columns, comma-separated.
        columns: String,
    },
    /// A foreign key from a synced table to a table that does not sync:
    /// another device would hold rows pointing at rows it never gets.
    #[error("{table}.{column} references {parent}, which does not sync")]
    ForeignKeyToLocalTable {
        /// The synced table.
        table: String,
        /// Its column.
        column: String,
        /// The local-only table referenced.
        parent: String,
    },
    /// A foreign key between synced tables that the schema does not declare
    /// as a parent (merge's cascade and revival follow declared parents).
    #[error("{table}.{column} references {parent} but the sync schema does not declare it")]
    UndeclaredForeignKey {
        /// The synced table.
        table: String,
        /// Its column.
        column: String,
        /// The synced parent table.
        parent: String,
    },
    /// A local-only column referencing a synced table other than with
    /// `ON DELETE SET NULL`: a remote delete of the referenced row would
    /// fail (held forever) or cascade into this synced row on this device
    /// only.
    #[error("{table}.{column} (local-only) references {parent} with ON DELETE {on_delete}; only SET NULL lets merge delete {parent} rows")]
    LocalColumnBlocksMerge {
        /// The synced table.
        table: String,
        /// Its local-only column.
        column: String,
        /// The synced table referenced.
        parent: String,
        /// The declared action.
        on_delete: String,
    },
    /// A declared parent whose foreign key is not a single column
    /// referencing `parent.id` with `ON DELETE CASCADE` (merge's cascade
    /// and revival assume it).
    #[error("{table}.{column} must reference {parent}(id) with ON DELETE CASCADE")]
    ParentNotCascadingId {
        /// The table.
        table: String,
        /// Its column.
        column: String,
        /// The parent.
        parent: String,
    },
    /// A synced column whose default is not a constant: merge fills an
    /// omitted column with its default on the receiving device, so each
    /// device would get another value.
    #[error("{table}.{column} syncs but its default ({default}) is not a constant")]
    NonConstantDefault {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The default expression.
        default: String,
    },
    /// A local-only table referencing a synced table other than with
    /// `ON DELETE CASCADE` or `SET NULL`: a remote delete of the referenced
    /// row would fail, and its batch would be held forever.
    #[error("{table}.{column} (a local-only table) references {parent} with ON DELETE {on_delete}; use CASCADE or SET NULL")]
    LocalTableBlocksMerge {
        /// The local-only table.
        table: String,
        /// Its column.
        column: String,
        /// The synced table referenced.
        parent: String,
        /// The declared action.
        on_delete: String,
    },
    /// A declared parent with no matching foreign key in the database.
    #[error("the sync schema declares {table}.{column} -> {parent} but the database has no such foreign key")]
    ParentNotInDatabase {
        /// The table.
        table: String,
        /// Its column.
        column: String,
        /// The declared parent.
        parent: String,
    },
    /// The library last ran with a newer sync schema than the one it is
    /// opened with: an older build of the host on a newer library.
    #[error("this library last ran with sync schema version {library}, newer than this build's {schema}; update bae")]
    Downgraded {
        /// The version the library last ran with.
        library: u32,
        /// The version it is opened with.
        schema: u32,
    },
    /// A table that synced when the library last ran is not in the schema.
    #[error("table {table} synced when this library last ran and is no longer in the sync schema; a table that stops syncing stays listed (docs/SCHEMA-EVOLUTION.md)")]
    TableRemoved {
        /// The table.
        table: String,
    },
    /// A synced column renamed, removed or moved: batches and op-log
    /// payloads name columns by position and name, so old ones would read
    /// as another column.
    #[error("{table}: synced column {position} was {was}, is now {now}; synced columns are never renamed, removed or reordered, only appended (docs/SCHEMA-EVOLUTION.md)")]
    ColumnChanged {
        /// The table.
        table: String,
        /// The column's position in the table's `columns`.
        position: usize,
        /// Its name when the library last ran.
        was: String,
        /// Its name now (`(none)` when removed).
        now: String,
    },
    /// A synced column whose declared type changed: values written under
    /// the old type would merge with the new ones.
    #[error("{table}.{column} was declared {was:?} when this library last ran and is now {now:?}; a synced column never changes type (add a new column)")]
    ColumnTypeChanged {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The declared type then.
        was: String,
        /// The declared type now.
        now: String,
    },
    /// The schema gained synced tables or columns but kept its version, so
    /// older devices would refuse its batches instead of keeping them.
    #[error("the sync schema gained {table}{column} but kept version {version}; bump its version (SyncSchema::with_version)")]
    VersionNotBumped {
        /// The table that is new or gained a column.
        table: String,
        /// `.column` when a column was appended, empty for a new table.
        column: String,
        /// The version it kept.
        version: u32,
    },
    /// A table that synced gained, lost or changed a foreign key or a
    /// `UNIQUE` group: devices on either side of the change would show
    /// different rows (merge's liveness and unique rules follow them), and
    /// rows already merged are not judged again.
    #[error("{table}'s foreign keys and unique groups were [{was}] when this library last ran and are now [{now}]; a synced table's constraints never change (add a new table)")]
    ConstraintsChanged {
        /// The table.
        table: String,
        /// Its constraints then.
        was: String,
        /// Its constraints now.
        now: String,
    },
    /// A schema that contradicts itself: a name that is not a plain
    /// identifier, a table listed twice, a parent listed after its child,
    /// or a unique group or parent column that does not sync.
    #[error("the sync schema is inconsistent at {table}: {problem}")]
    Inconsistent {
        /// The table where the contradiction is.
        table: String,
        /// What it is.
        problem: &'static str,
    },
}
