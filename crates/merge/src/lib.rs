//! Merge for bae sync (layer 2, phase 1).
//!
//! Owns: applying remote batches to a local library: per-field
//! last-writer-wins, HLC-compared tombstones, batch atomicity and FK retry.
//!
//! Architecture invariant: `merge` never touches the network or encryption;
//! it sees decoded batches and a SQLite connection.
#![forbid(unsafe_code)]
