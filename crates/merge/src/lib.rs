//! Merge for bae sync (layer 2, phase 1).
//!
//! Owns: applying remote batches to a local library: per-field
//! last-writer-wins, HLC-compared tombstones, batch atomicity and FK retry.
//!
//! Architecture invariant: `merge` never touches the network or encryption;
//! it sees decoded batches and a SQLite connection. It writes synced rows
//! with plain SQL (never through the op recorder: remote ops are not local
//! ops and never enter `op_log`), and reads or writes only the columns of
//! [`bae_oplog::SCHEMA`]; local-only columns keep their defaults or values.
//!
//! # Entry points
//!
//! - [`apply_batch`]: one batch, one SQLite transaction, all or nothing.
//! - [`apply_pull`]: the batches of one pull, chronologically, retrying
//!   batches whose parent rows had not arrived; returns a [`PullReport`]
//!   with what applied and what is held (kept, with a reason).
//!
//! # The merge rules
//!
//! Every write has a *stamp* `(hlc, device)`, totally ordered (ties between
//! equal HLCs broken by device id). Per row, merge keeps:
//!
//! - the **row stamp**: the stamp of the newest insert, stored in
//!   `field_timestamps` under the pseudo-column `"#row"`;
//! - the **tombstone**: the stamp of the newest delete (`tombstones`);
//! - explicit **field stamps** for fields written by updates (and by local
//!   writes, which `bae_oplog::stamps::fold_local_stamps` folds lazily).
//!   A field's effective stamp is the newer of its explicit stamp and the
//!   row stamp: an insert writes every synced column (one that omits some
//!   writes their SQL defaults), so a remote insert costs one stamp row,
//!   not one per field.
//!
//! Stamps only grow, each to the maximum of the writes seen, so they do not
//! depend on arrival order. From them:
//!
//! - **Field rule**: an incoming insert or update writes a field only if its
//!   stamp is newer than the field's effective stamp; otherwise that field
//!   is skipped. Inserts of an existing row merge field by field.
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
//!   keeps its value in the merge-owned `merge_parked` table, so a later
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
//! it applies; [`apply_pull`] retries it after the rest of the pull. A
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
//! into the stamps (`fold_local_stamps`), sets the row stamp of each local
//! insert, and revives absent children under rows re-created locally. A
//! local write to a table with unique groups settles its keys the same way,
//! so a local row outbid by a newer remote rival gives way here too.
#![forbid(unsafe_code)]

mod apply;
mod error;
mod pull;
mod state;
mod unique;

pub use apply::ApplyStats;
pub use error::MergeError;
pub use pull::{apply_batch, apply_pull, fold_local, HeldBatch, PullReport};
pub use state::ROW_COLUMN;
