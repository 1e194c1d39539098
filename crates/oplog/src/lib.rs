//! Operation log for bae sync (layer 1, phase 0).
//!
//! Owns: the op model ([`Op`], [`Batch`]), the sync schema ([`SyncSchema`]:
//! which of the host's tables and columns sync, given by the host and
//! checked against its database; [`BAE_SCHEMA`] is bae's), the
//! [`OpRecorder`] through which every library write goes (recording its ops
//! in the same SQLite transaction), the engine's migration runner and
//! version table, the op log and device tables (`bae_sync_op_log`,
//! `bae_sync_op_batches`, `bae_sync_op_tables`, `bae_sync_device`: no
//! other crate names them), the batch wire codec and
//! a canonical dump of the synced tables. Test and demo fixtures (bae's
//! reference DDL, a LibraryManager-like write API, demo albums) are behind
//! the `fixture` feature, not for hosts.
//!
//! Architecture invariant: `oplog` knows nothing of encryption, buckets or
//! merge state; it never creates or alters the host's tables.
#![forbid(unsafe_code)]

mod codec;
mod compact;
mod dump;
mod error;
#[cfg(any(test, feature = "fixture"))]
pub mod fixture;
mod log;
mod migrate;
mod op;
mod recorder;
mod schema;

pub use codec::{
    decode_batch, encode_batch, validate, CodecError, BATCH_FORMAT_VERSION, MAX_BATCH_BYTES,
    MAX_KEPT_VALUE_BYTES, MAX_NAME_BYTES,
};
pub use compact::{row_id_from_sql, row_id_to_sql};
pub use dump::canonical_dump;
pub use error::{OplogError, SchemaError};
pub use log::{
    batch_ops, batches_after, catch_up_clock, first_batch_after_op, for_each_op_after, has_ops,
    last_batch, last_op_seq, mark_pushed, persist_clock, persist_timestamp, persisted_clock,
    prune_pushed, renumber_unpushed, rows_inserted_after, start_new_stream, unpushed_batches,
    unpushed_batches_after,
};
pub use migrate::{configure, migrate, version, Migration, Migrations, OPLOG_MIGRATIONS};
pub use op::{Batch, BatchHash, BatchSeq, Op, OpKind, Value};
pub use recorder::{insert_sql, update_sql, OpRecorder, ReadOnlyDb, Recording};
pub use schema::{SyncSchema, TableSchema, BAE_SCHEMA};
