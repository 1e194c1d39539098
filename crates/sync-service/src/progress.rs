//! Progress of long operations, reported to whoever drives the service (the
//! CLI draws bars; bae can drive its own UI).

use std::sync::Arc;

/// A long step that reports progress, and the unit it counts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Push: batches uploaded, of this device's unpushed ones.
    Push,
    /// Pull: batches fetched and merged, of those the heads announced.
    Pull,
    /// Checkpoint: records written to the snapshot, of the library's records.
    Snapshot,
    /// Checkpoint: bytes uploaded (reported at the start and the end).
    Upload,
    /// Bootstrap: bytes of the checkpoint downloaded (start and end).
    Download,
    /// Bootstrap: records restored, of the checkpoint's records.
    Restore,
    /// Images fetched, of those wanted (after a restore, or retried).
    Images,
}

impl Stage {
    /// What the counts of this stage count.
    pub fn unit(self) -> &'static str {
        match self {
            Stage::Push | Stage::Pull => "batches",
            Stage::Snapshot | Stage::Restore => "records",
            Stage::Upload | Stage::Download => "bytes",
            Stage::Images => "images",
        }
    }

    /// A short verb for display ("pulling").
    pub fn verb(self) -> &'static str {
        match self {
            Stage::Push => "pushing",
            Stage::Pull => "pulling",
            Stage::Snapshot => "snapshotting",
            Stage::Upload => "uploading checkpoint",
            Stage::Download => "downloading checkpoint",
            Stage::Restore => "restoring",
            Stage::Images => "fetching images",
        }
    }
}

/// Receives `(stage, done, total)`. Called from async tasks and blocking
/// threads alike, so it must be cheap and must not block.
pub type Progress = Arc<dyn Fn(Stage, u64, u64) + Send + Sync>;

/// How often (in records) row-by-row steps report.
pub(crate) const PROGRESS_EVERY: u64 = 2048;
