//! Errors of the merge.

use bae_hlc::ClockError;
use bae_oplog::{CodecError, OplogError};

/// Why a batch was not applied. Nothing of a batch that fails is applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The batch breaks the sync schema (unknown table or column, malformed
    /// op); it will never apply.
    #[error("invalid batch: {0}")]
    Invalid(#[from] CodecError),
    /// The batch's newest timestamp is too far ahead of our wall clock: it is
    /// held back (not applied, not dropped) until wall time catches up.
    #[error("held back: {0}")]
    Drift(ClockError),
    /// The clock failed for another reason (counter exhausted).
    #[error("clock: {0}")]
    Clock(ClockError),
    /// A row references a parent row this library has never heard of: the
    /// parent's insert is in a batch not applied yet. Retry later.
    #[error(
        "{table} row {row_id:?} references {parent_table} row {parent_id:?}, which has not arrived"
    )]
    MissingParent {
        /// The child's table.
        table: String,
        /// The child row.
        row_id: String,
        /// The parent's table.
        parent_table: &'static str,
        /// The parent row the child references.
        parent_id: String,
    },
    /// An update of a row this library has never heard of: its insert is in
    /// a batch not applied yet. Retry later.
    #[error("update of {table} row {row_id:?}, whose insert has not arrived")]
    MissingRow {
        /// The table.
        table: String,
        /// The row.
        row_id: String,
    },
    /// An earlier batch of the same device, in the same pull, has not
    /// applied: a device's batches apply in seq order, so what a library
    /// holds of a stream is exactly its batches up to the cursor (a
    /// revoke's cutoffs are those cursors). Retry later.
    #[error("batch {seq} of this device has not applied yet")]
    EarlierBatchWaits {
        /// The earliest batch of the device not applied.
        seq: u64,
    },
    /// A stored stamp is not a valid (HLC, device) pair.
    #[error("corrupt stamp for {table} row {row_id:?}")]
    CorruptStamp {
        /// The table.
        table: String,
        /// The row.
        row_id: String,
    },
    /// A snapshot meant to replace this library's state lacks rows the
    /// library holds without explaining why (no tombstone, no parked value,
    /// no absent parent): it is not a later state of this library (a forged
    /// or damaged snapshot), and replacing by it would delete those rows.
    #[error("the snapshot lacks {rows} rows of {table} that this library holds, with no tombstone or other reason")]
    SnapshotLacksRows {
        /// The table.
        table: &'static str,
        /// How many rows.
        rows: u64,
    },
    /// An op kept from a newer writer does not decode (a damaged database).
    #[error("kept op of device {device} at HLC {hlc} is corrupt: {reason}")]
    CorruptKept {
        /// Its writer.
        device: bae_hlc::DeviceId,
        /// Its HLC.
        hlc: u64,
        /// Why.
        reason: String,
    },
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Reading or folding the local op log failed.
    #[error("op log: {0}")]
    Oplog(#[from] OplogError),
}

impl MergeError {
    /// Whether the batch may apply later in the same or a later pull, once
    /// the batches it depends on have arrived (a missing parent or row).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            MergeError::MissingParent { .. }
                | MergeError::MissingRow { .. }
                | MergeError::EarlierBatchWaits { .. }
        )
    }

    /// Whether the failure is this library's, not the batch's: the
    /// database is locked by another process, its disk is full or failing,
    /// it is read-only or damaged. Every other batch would fail the same
    /// way, so a pull stops with it instead of holding each batch.
    pub fn is_local_failure(&self) -> bool {
        let db = match self {
            MergeError::Db(e) | MergeError::Oplog(OplogError::Db(e)) => e,
            _ => return false,
        };
        matches!(
            db.sqlite_error_code(),
            Some(
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::ReadOnly
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::OutOfMemory
                    | rusqlite::ErrorCode::DatabaseCorrupt
                    | rusqlite::ErrorCode::NotADatabase
            )
        )
    }

    pub(crate) fn from_clock(e: ClockError) -> Self {
        match e {
            ClockError::DriftTooLarge { .. } => MergeError::Drift(e),
            other => MergeError::Clock(other),
        }
    }
}
