//! Errors of the command-line tool: the engine's, and the few only a
//! command line has.

use std::path::Path;

/// Why a `bae-sync` command failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The sync engine failed.
    #[error(transparent)]
    Sync(#[from] bae_sync_service::SyncError),
    /// Opening or writing the library failed.
    #[error("library: {0}")]
    Library(#[from] bae_oplog::OplogError),
    /// `set` was given something other than `COLUMN=VALUE`.
    #[error("bad argument: expected COLUMN=VALUE, got {found:?}")]
    BadAssignment {
        /// The argument as given.
        found: String,
    },
    /// `BAE_SYNC_LOCK_WAIT` is not a number of seconds.
    #[error("BAE_SYNC_LOCK_WAIT must be a number of seconds, got {found:?}")]
    BadLockWait {
        /// The value as set.
        found: String,
    },
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The demo's two devices ended with different libraries.
    #[error("devices did not converge: laptop has {laptop} synced rows, desktop {desktop}")]
    Diverged {
        /// Rows on the first device.
        laptop: usize,
        /// Rows on the second.
        desktop: usize,
    },
}

impl CliError {
    /// An I/O error on a named file.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CliError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
