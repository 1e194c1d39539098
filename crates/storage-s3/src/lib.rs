//! Object stores for bae sync (layer 1, phase 1).
//!
//! Owns: the async object-store trait, the local-directory store (the
//! embedded default), the S3 store over rust-s3, and the bucket layout.
//!
//! Architecture invariant: `storage-s3` sees only opaque bytes; it knows
//! nothing of ops, keys or SQLite.
#![forbid(unsafe_code)]
