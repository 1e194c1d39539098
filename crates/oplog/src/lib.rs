//! Operation log for bae sync (layer 1, phase 0).
//!
//! Owns: the op model ([`Op`], [`Batch`]), the sync schema ([`SCHEMA`]: which
//! tables and columns sync), the [`OpRecorder`] through which every library
//! write goes (recording its ops in the same SQLite transaction), the
//! `op_log`, `field_timestamps` and tombstone tables with the migrations that
//! make them, the batch wire codec, a canonical dump of the synced tables and
//! a bae-shaped write API ([`Library`]).
//!
//! Architecture invariant: `oplog` knows nothing of encryption or buckets.
#![forbid(unsafe_code)]

mod codec;
mod dump;
mod error;
mod library;
mod log;
mod migrate;
mod op;
mod recorder;
mod schema;
pub mod stamps;

pub use codec::{
    decode_batch, encode_batch, validate, CodecError, BATCH_FORMAT_VERSION, MAX_BATCH_BYTES,
};
pub use dump::canonical_dump;
pub use error::OplogError;
pub use library::{demo_album, demo_id, AlbumImport, Library, NewRow};
pub use log::{batch_ops, last_batch, mark_pushed, unpushed_batches};
pub use migrate::{migrate, SCHEMA_VERSION};
pub use op::{Batch, BatchHash, BatchSeq, Op, OpKind, Value};
pub use recorder::{insert_sql, update_sql, OpRecorder, ReadOnlyDb, Recording};
pub use schema::{SyncSchema, TableSchema, SCHEMA};
