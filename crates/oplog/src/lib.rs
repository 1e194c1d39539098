//! Operation log for bae sync (layer 1, phase 0).
//!
//! Owns: the op model, the sync schema (which tables and columns sync), the
//! `OpRecorder` through which every library write goes, the `op_log`,
//! `field_timestamps` and tombstone tables, and the batch wire codec.
//!
//! Architecture invariant: `oplog` knows nothing of encryption or buckets.
#![forbid(unsafe_code)]
