//! Errors of the sync service.

use bae_hlc::DeviceId;

/// Everything push, pull, checkpoints and the library commands can fail
/// with. Each names what was wrong and, for bucket objects, which object.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The bucket failed.
    #[error("bucket: {0}")]
    Store(#[from] bae_storage_s3::StoreError),
    /// The bucket URL does not parse.
    #[error("bucket URL: {0}")]
    BucketUrl(String),
    /// The library database failed.
    #[error("library: {0}")]
    Oplog(#[from] bae_oplog::OplogError),
    /// SQLite failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// Merge failed before any batch was tried.
    #[error("merge: {0}")]
    Merge(#[from] bae_merge::MergeError),
    /// An object does not decrypt or verify (wrong key, tampered, moved, truncated).
    #[error("object {key} rejected: {source}")]
    Object {
        /// The bucket key.
        key: String,
        /// Why.
        source: bae_crypto::ObjectError,
    },
    /// An object decrypts but its contents are not valid.
    #[error("object {key} rejected: {reason}")]
    Invalid {
        /// The bucket key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A device's stream is broken: a gap, swap or rollback.
    #[error("stream of device {device} broken at batch {seq}: {reason}")]
    Chain {
        /// The device.
        device: DeviceId,
        /// The batch.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// The library has not been set up for sync (`bae-sync init` or `join`).
    #[error("library is not set up for sync: run `bae-sync init` or `bae-sync join` first")]
    NotInitialized,
    /// The library is already set up for sync.
    #[error("library is already set up for sync with {0}")]
    AlreadyInitialized(String),
    /// The key store failed or holds no key for the library.
    #[error("key store: {0}")]
    KeyStore(String),
    /// A key file or key text does not parse.
    #[error("library key: {0}")]
    Key(#[from] bae_crypto::KeyParseError),
    /// Local file I/O failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The bucket holds no checkpoint that opens and verifies.
    #[error("no usable checkpoint in {0}")]
    NoCheckpoint(String),
    /// A blocking task died.
    #[error("internal: {0}")]
    Task(String),
}

impl SyncError {
    /// An I/O error on a named file.
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        SyncError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
