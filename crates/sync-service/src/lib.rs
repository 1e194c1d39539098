//! The sync service for bae (layer 3, phases 1-3) and the `bae-sync` CLI.
//!
//! Owns: push, pull, status, the head object, the key store, and the
//! library-level commands the CLI runs (`init`, `join`, ...), built from the
//! crates below: `oplog` records, `crypto` seals, `storage-s3` stores,
//! `merge` applies.
//!
//! Write order on the bucket (what is referenced before what references it):
//! batch objects, then the head naming them, then the local "pushed" mark.
//! Every object read is untrusted: it must decrypt under the library key at
//! the place it was read from, decode, and extend its device's hash chain.
//!
//! Architecture invariant: the only crate that combines storage, crypto and
//! the database; nothing below it depends on it.
#![forbid(unsafe_code)]

mod bootstrap;
mod checkpoint;
mod daemon;
mod error;
mod gc;
mod head;
mod images;
pub mod keystore;
pub mod library;
mod progress;
mod pull;
mod push;
mod service;
mod status;

pub use bootstrap::{server_bootstrap, BootstrapReport, ServerBootstrapReport};
pub use checkpoint::{
    CheckpointCursor, CheckpointError, CheckpointHeader, CheckpointReport,
    CHECKPOINT_FORMAT_VERSION,
};
pub use daemon::{LoopState, SyncHandle, SyncLoop};
pub use error::{InvalidObject, SyncError};
pub use gc::{GcReport, GC_GRACE};
pub use head::{Head, HeadError};
pub use images::images_dir_for;
pub use keystore::KeyStore;
pub use progress::{Progress, Stage};
pub use pull::{Problem, ProblemKind, PullReport};
pub use push::{PushReport, RepairReport};
pub use service::{PullWindow, SyncService, SERVICE_MIGRATIONS};
pub use status::{read_status, DeviceStatus, ProblemStatus, Status};
