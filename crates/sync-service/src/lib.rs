//! The sync service for bae (layer 3, phases 1-3): the library bae-core
//! embeds.
//!
//! Owns: push, pull, status, images, release files, checkpoints, GC, the head object, the
//! key store, the library marker, the library-level commands (`init`,
//! `join`, `open`, `leave`) and its
//! tables (`bae_sync_library`, `bae_sync_cursors`, `bae_sync_problems`,
//! `bae_sync_batch_hashes`, `bae_sync_image_queue`,
//! `bae_sync_wanted_images`, `bae_sync_membership`,
//! `bae_sync_device_authors`), the signed envelopes of batches, heads and
//! checkpoint signatures and their validation against the membership chain
//! (`members`), the key epochs a member holds and adopts (`epochs`), and
//! inviting and revoking members with key rotation (`sharing`), share
//! grants of one release to someone outside the library (`grants`), built from
//! the crates below: `oplog` records, `crypto` seals, `storage-s3` stores,
//! `merge` applies, `membership` validates.
//!
//! # Embedding
//!
//! The host keeps its own connection(s) and writes through its own
//! `OpRecorder`; a [`SyncService`] runs on a recorder of its own on the
//! same file (WAL, busy timeout). SQLite work runs on blocking threads and
//! no transaction is held across an await. The service's connection is
//! shared by its operations through a mutex held only for short steps;
//! checkpoint snapshots and the record loading of a restore run on
//! connections of their own.
//!
//! # Cancellation
//!
//! Every operation is safe to drop at an await (the future cancelled):
//! - `push`: batches uploaded without their head are invisible and are
//!   uploaded again, byte for byte, by the next push; nothing is marked
//!   pushed before its head is written.
//! - `pull`: each slice is merged and its cursors saved in transactions;
//!   a dropped pull keeps the slices it finished and the next pull
//!   resumes (re-applying a batch changes nothing).
//! - `checkpoint`: temp files are dropped; nothing is deleted.
//! - `bootstrap_from_checkpoint`, `gc`: a restore commits in one
//!   transaction or not at all; GC deletes only what the checkpoint
//!   covers, one object at a time.
//!
//! A blocking step already started runs to its end even when its future is
//! dropped. To stop long operations sooner, give the service a
//! [`CancellationToken`] ([`SyncService::with_cancellation`]): pull stops
//! after the current slice, push before the head, checkpoint before the
//! upload, a restore within a few thousand records (rolling back), GC
//! between deletes, each with [`SyncError::Cancelled`].
//!
//! Write order on the bucket (what is referenced before what references it):
//! batch objects, then the head naming them, then the local "pushed" mark.
//! Every object read is untrusted: it must decrypt under the library key at
//! the place it was read from, decode, and extend its device's hash chain.
//!
//! Architecture invariant: the only crate that combines storage, crypto and
//! the database; nothing below it depends on it.
#![forbid(unsafe_code)]

pub use tokio_util::sync::CancellationToken;

mod bootstrap;
mod checkpoint;
mod daemon;
mod epochs;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod gc;
pub mod grants;
#[cfg(all(doc, not(doctest)))]
pub mod guide;
mod head;
mod images;
pub mod keystore;
pub mod library;
mod lock;
mod marker;
mod members;
mod progress;
mod pull;
mod push;
mod read_ahead;
mod releases;
mod rollback;
mod service;
mod sharing;
mod status;
#[cfg(test)]
mod test_support;

pub use bootstrap::{server_bootstrap, BootstrapReport, ServerBootstrapReport};
pub use checkpoint::{
    CheckpointCursor, CheckpointError, CheckpointHeader, CheckpointReport,
    CHECKPOINT_FORMAT_VERSION, MAX_CHECKPOINT_OBJECT_BYTES,
};
pub use daemon::{LoopState, SyncHandle, SyncLoop};
pub use error::{ChainBreak, InvalidObject, SyncError};
pub use gc::{GcReport, IgnoredEntry, NotARemoval, GC_GRACE};
pub use head::{Head, HeadError, MAX_HEAD_OBJECT_BYTES};
pub use images::{images_dir_for, MAX_IMAGE_BYTES, MAX_IMAGE_OBJECT_BYTES};
pub use keystore::KeyStore;
pub use marker::{LibraryMarker, MarkerError, MARKER_VERSION, MAX_MARKER_OBJECT_BYTES};
pub use members::{write_genesis, Member, MemberInfo, Refusal};
pub use progress::{Progress, Stage};
pub use pull::{Problem, ProblemKind, PullReport};
pub use push::{PushReport, RepairReport};
pub use releases::{
    files_dir_for, FileError, ReleaseFile, UploadReport, UploadState, SCHEME_CHUNKED_V1,
};
pub use service::{PullWindow, SyncService, MAX_BATCH_OBJECT_BYTES, SERVICE_MIGRATIONS};
pub use sharing::{EntryReport, RevokeReport};
pub use status::{read_status, DeviceStatus, NewerSchemaStatus, ProblemStatus, Status};
