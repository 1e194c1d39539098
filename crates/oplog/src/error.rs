//! Errors of the op log.

use crate::codec::CodecError;

/// Everything that can go wrong recording or reading ops.
#[derive(Debug, thiserror::Error)]
pub enum OplogError {
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// A migration failed.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// The migration.
        name: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database was written by a newer build.
    #[error("library database has schema version {found}, newer than this build's {supported}; upgrade bae")]
    NewerSchema {
        /// Version found.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
    },
    /// A table or column name that is not a plain identifier.
    #[error("{0:?} is not a table or column name")]
    BadIdentifier(String),
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
}
