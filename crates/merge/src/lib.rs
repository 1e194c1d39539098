//! Merge for bae sync (layer 2, phase 1).
//!
//! Owns: applying remote batches to a local library (per-field
//! last-writer-wins, HLC-compared tombstones, batch atomicity and FK retry)
//! and the merge state that needs: row and column stamps, tombstones,
//! parked values and how far local writes are folded
//! (`bae_sync_row_stamps`, `bae_sync_column_stamps`, `bae_sync_writers`,
//! `bae_sync_table_ids`, `bae_sync_parked`, `bae_sync_merge`; no other crate names these
//! tables), with the fold of local writes into it; and what a device on an
//! older sync schema keeps of newer writers' ops until its host upgrades
//! (`bae_sync_kept`, `bae_sync_newer_writers`; `docs/SCHEMA-EVOLUTION.md`).
//!
//! Architecture invariant: `merge` never touches the network or encryption;
//! it sees decoded batches and an `OpRecorder`'s connection. It writes
//! synced rows with plain SQL (never through the op recorder: remote ops
//! are not local ops and never enter the op log), and reads or writes only
//! the tables and columns of the recorder's [`bae_oplog::SyncSchema`];
//! local-only columns keep their defaults or values.
//!
//! # Entry points
//!
//! - [`apply_batch`]: one batch, one SQLite transaction, all or nothing.
//! - [`apply_pull`]: the batches of one pull, chronologically, retrying
//!   batches whose parent rows had not arrived; returns a [`PullReport`]
//!   with what applied and what is held (kept, with a reason).
//! - [`apply_kept`]: what this device kept of newer writers' ops and its
//!   schema now knows (run by [`migrate`] and after every pull);
//!   [`newer_writers`] says who writes a newer schema.
//!
//! # The merge rules
//!
//! Every write has a *stamp* `(hlc, device)`, totally ordered (ties between
//! equal HLCs broken by device id). Per row, merge keeps:
//!
//! - the **row stamp**: the stamp of the newest insert, and
//! - the **tombstone**: the stamp of the newest delete, both in the row's
//!   one entry of `bae_sync_row_stamps`;
//! - explicit **field stamps** (`bae_sync_column_stamps`) for fields written
//!   by updates (remote, or local ones, which every merge transaction folds
//!   in lazily first). A field's effective stamp is the newer of its
//!   explicit stamp and the row stamp: an insert writes every synced column
//!   (one that omits some writes their SQL defaults), so an insert, remote
//!   or local, costs one stamp entry, not one per field, and an explicit
//!   stamp is kept only while it is newer than the row stamp (a newer
//!   insert removes those it passes).
//!
//! Stamps only grow, each to the maximum of the writes seen, so they do not
//! depend on arrival order. From them:
//!
//! - **Field rule**: an incoming insert or update writes a field only if its
//!   stamp is newer than the field's effective stamp, or equal to it with
//!   a greater value under [`value_order`] (both as the column stores
//!   them; `ties.rs`: one device stamped both, after going back to a
//!   backup or on purpose); otherwise that field is skipped. Inserts of an
//!   existing row merge field by field.
//! - **Liveness rule**: a row *lives* iff its row stamp is newer than its
//!   tombstone (no tombstone: any insert lives); it is *present* in its
//!   table iff it lives and every parent its foreign keys name is present.
//!   So a delete at `T` removes the row and blocks older inserts and
//!   updates; an insert newer than `T` brings it back; a child whose parent
//!   is absent is absent too (the cascade bae's `ON DELETE CASCADE` implies,
//!   whether or not the deleting device knew the child).
//! - **Tombstone rule**: tombstones are compared, never permanent, and a
//!   revived row takes only field values written after its tombstone:
//!   values older than the delete do not resurrect.
//! - **Unique rule**: of the rows that live, have every parent present and
//!   share the values of one of their table's `UNIQUE` groups
//!   ([`bae_oplog::TableSchema::unique`]: two devices crediting the same
//!   artist, or analysing the same track, under different row ids), only
//!   the one with the newest row stamp (then the greatest id) is present;
//!   the others are absent like rows under an absent parent, and the next
//!   one comes back when the present one goes (`unique.rs`). Without it
//!   SQLite would refuse the second row and its device's stream would stall.
//! - **Absent rows keep their values**: a winning write to a known but
//!   absent row (deleted, or under an absent parent) records its stamp and
//!   keeps its value in `bae_sync_parked`, so a later
//!   revival restores the same values on every device whatever the arrival
//!   order. Present rows keep their values in their table.
//!
//! The final database is thus a function of the set of applied ops, not of
//! their order (convergence; see the property tests).
//!
//! # Batches and retries
//!
//! Ops apply in their recorded order, not HLC order. A batch that writes a
//! row whose parent this library has never heard of (no row, no stamp), or
//! updates a row never heard of, fails with a retryable error
//! ([`MergeError::MissingParent`], [`MergeError::MissingRow`]) and nothing of
//! it applies; [`apply_pull`] retries it after the rest of the pull, and
//! holds the later batches of its device with it
//! ([`MergeError::EarlierBatchWaits`]: a library holds of each stream
//! exactly the batches up to the cursor its caller keeps). A
//! parent that is *known* but absent is not missing: the child is absent by
//! the liveness rule, its stamps are recorded, and the batch applies (it is
//! never held forever). A batch whose newest HLC is beyond the clock's drift
//! bound is held ([`MergeError::Drift`]); applying a batch advances the
//! clock past it and persists the clock in the same transaction.
//!
//! # Local writes
//!
//! This device's writes go through `OpRecorder` straight to the tables.
//! Before reading stamps, every merge transaction folds the local op log
//! into the stamps, sets the row stamp of each local
//! insert, and then, once every op is folded (the tables already hold the
//! end of the op log, so children are judged by their final stamps),
//! revives absent children under rows re-created locally. A
//! local write to a table with unique groups settles its keys the same way,
//! so a local row outbid by a newer remote rival gives way here too.
#![forbid(unsafe_code)]

mod apply;
mod convert;
mod error;
mod kept;
mod keys;
mod newer_snapshot;
mod pull;
pub mod snapshot;
mod stamps;
mod state;
mod ties;
mod unique;

// The merge scenarios again, inside the crate, where the fold of local
// writes reads three ops a page (`apply::FOLD_PAGE`): every local history
// they fold spans several pages, revivals included.
#[cfg(test)]
extern crate self as bae_merge;
#[cfg(test)]
#[path = "../tests/scenarios.rs"]
mod scenarios_in_pages;

pub use apply::ApplyStats;
pub use error::MergeError;
pub use kept::{apply_kept, newer_writers, KeptReport, NewerWriter};
pub use pull::{apply_batch, apply_pull, fold_local, HeldBatch, PullReport};
pub use state::ROW_COLUMN;
pub use ties::value_order;

use bae_oplog::{Migration, Migrations, OpRecorder};

/// The merge state's tables (`bae_sync_row_stamps`,
/// `bae_sync_column_stamps`, `bae_sync_writers`, `bae_sync_table_ids`, `bae_sync_parked`,
/// `bae_sync_merge`, `bae_sync_kept`, `bae_sync_newer_writers`; version 1's `bae_sync_stamps` and
/// `bae_sync_tombstones` are converted by `0002_compact_stamps`); no other
/// crate names them.
pub const MERGE_MIGRATIONS: Migrations = Migrations {
    component: "merge",
    steps: &[
        Migration {
            name: "0001_merge_state",
            sql: include_str!("../../../migrations/merge/0001_merge_state.sql"),
        },
        Migration {
            name: "0002_compact_stamps",
            sql: include_str!("../../../migrations/merge/0002_compact_stamps.sql"),
        },
        Migration {
            name: "0003_kept",
            sql: include_str!("../../../migrations/merge/0003_kept.sql"),
        },
        Migration {
            name: "0004_table_numbers",
            sql: include_str!("../../../migrations/merge/0004_table_numbers.sql"),
        },
        Migration {
            name: "0005_clustered_row_keys",
            sql: include_str!("../../../migrations/merge/0005_clustered_row_keys.sql"),
        },
    ],
};

/// Creates or migrates the merge state's tables in the recorder's library.
/// Run once when the sync layer opens a library, before any other call.
/// A library whose merge state is still at version 1 is converted here
/// (`0002_compact_stamps`); if that fails, nothing of it is kept and the
/// error says why.
/// Then, if the library is opened with a newer sync schema than before,
/// what this device kept of newer writers' batches applies ([`apply_kept`]).
pub fn migrate(rec: &mut OpRecorder) -> Result<(), MergeError> {
    migrate_conn(rec.sync_parts().0)?;
    // A host that opens with a newer schema gets what this device kept of
    // newer writers' batches now, not at its next pull.
    kept::apply_kept(rec)?;
    Ok(())
}

/// [`migrate`] on a bare connection (a staging database too).
pub(crate) fn migrate_conn(conn: &mut rusqlite::Connection) -> Result<(), MergeError> {
    bae_oplog::migrate(conn, &MERGE_MIGRATIONS)?;
    convert::convert_version_1(conn)
}
