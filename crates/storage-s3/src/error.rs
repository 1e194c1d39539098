//! What can go wrong talking to a store, in variants a caller can act on.

use thiserror::Error;

/// An object-store failure.
///
/// Only [`StoreError::Transient`] is worth retrying ([`StoreError::is_retryable`]);
/// everything else fails the same way the next time.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// No object under this key.
    #[error("object not found: {key}")]
    NotFound {
        /// The key, relative to the store.
        key: String,
    },
    /// The store refused the request (wrong credentials, missing permission).
    #[error("permission denied: {detail}")]
    PermissionDenied {
        /// What the store said.
        detail: String,
    },
    /// A failure that may pass: server error (5xx), throttling (429), timeout,
    /// dropped or refused connection.
    #[error("transient store failure: {detail}")]
    Transient {
        /// What happened.
        detail: String,
    },
    /// The store answered with something that cannot be right (a malformed
    /// listing, an object whose on-disk form is unreadable).
    #[error("corrupt store data at {key}: {detail}")]
    Corrupt {
        /// The key or prefix involved.
        key: String,
        /// What was wrong.
        detail: String,
    },
    /// The key (or list prefix) is not allowed; see [`crate::key`].
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Which rule it broke.
        reason: &'static str,
    },
    /// The object is larger than the reader accepts: the store stopped
    /// reading past `limit` bytes (a `get_to_file` may leave up to
    /// `limit + 1` bytes in its file). Permanent: the same object is as large
    /// the next time.
    #[error("object {key} is larger than the {limit}-byte limit{}", object_size(.size))]
    TooLarge {
        /// The key, relative to the store.
        key: String,
        /// The most the reader accepted, in bytes.
        limit: u64,
        /// The object's size, when the store learned it without reading it
        /// all (a stat, a `Content-Range`).
        size: Option<u64>,
    },
    /// A byte range whose start is after its end.
    #[error("invalid byte range {start}..{end}")]
    InvalidRange {
        /// First byte asked for.
        start: u64,
        /// One past the last byte asked for.
        end: u64,
    },
    /// A permanent failure the store reported that fits no other variant
    /// (HTTP 400, 501, a local I/O error such as a full disk).
    #[error("store failure: {detail}")]
    Backend {
        /// What happened.
        detail: String,
    },
    /// The local file a `put_file` reads or a `get_to_file` writes failed.
    #[error("local file {path}: {detail}")]
    LocalFile {
        /// The file.
        path: String,
        /// What happened.
        detail: String,
    },
    /// The store could not be set up from its configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A local-directory bucket whose directory does not exist (moved,
    /// unmounted or deleted). Only creating a new library makes one.
    #[error("bucket directory {path} does not exist (moved, unmounted or deleted?); only `init` creates a bucket directory")]
    MissingDirectory {
        /// The directory.
        path: String,
    },
}

impl StoreError {
    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }

    /// Whether this is [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub(crate) fn local_file(path: &std::path::Path, e: &std::io::Error) -> Self {
        StoreError::LocalFile {
            path: path.display().to_string(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn not_found(key: &str) -> Self {
        StoreError::NotFound {
            key: key.to_owned(),
        }
    }

    pub(crate) fn too_large(key: &str, limit: u64, size: Option<u64>) -> Self {
        StoreError::TooLarge {
            key: key.to_owned(),
            limit,
            size,
        }
    }

    pub(crate) fn transient(detail: impl Into<String>) -> Self {
        StoreError::Transient {
            detail: detail.into(),
        }
    }

    pub(crate) fn backend(detail: impl Into<String>) -> Self {
        StoreError::Backend {
            detail: detail.into(),
        }
    }
}

/// The size part of a [`StoreError::TooLarge`] message.
fn object_size(size: &Option<u64>) -> String {
    size.map_or_else(String::new, |size| format!(" ({size} bytes)"))
}

/// A bucket URL or store configuration that cannot work.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The bucket URL does not parse.
    #[error("invalid bucket URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (never holds credentials: those are rejected).
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A scheme other than `file`, `s3` or `memory`.
    #[error("unsupported bucket URL scheme {0:?} (use a path, file://, s3:// or memory://)")]
    UnsupportedScheme(String),
    /// No credentials in the configuration nor in the environment.
    #[error("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    MissingCredentials,
    /// The S3 client refused the configuration.
    #[error("invalid S3 configuration: {0}")]
    S3(String),
}
