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
    /// The store's endpoint could not be reached, or did not answer in
    /// time: which of those ([`Unreachable`]) says what to check.
    #[error("cannot reach {endpoint} (for {key}): {cause}")]
    Unreachable {
        /// The endpoint, `scheme://host:port`.
        endpoint: String,
        /// The key or list prefix asked for.
        key: String,
        /// What happened.
        cause: Unreachable,
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
    ///
    /// A request that timed out is not: it already waited its whole
    /// timeout, and retrying would multiply that wait for a dead endpoint.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Transient { .. } => true,
            StoreError::Unreachable { cause, .. } => cause.is_retryable(),
            _ => false,
        }
    }

    /// Whether the failure may pass by itself later (a server error,
    /// throttling, an unreachable or silent endpoint), even if not worth
    /// retrying at once: what a sync loop backs off on.
    pub fn may_pass_later(&self) -> bool {
        matches!(
            self,
            StoreError::Transient { .. } | StoreError::Unreachable { .. }
        )
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

/// Why a store's endpoint could not be reached.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unreachable {
    /// Nothing listens there (or a firewall refuses): retried briefly, in
    /// case the server is restarting.
    #[error("connection refused")]
    Refused,
    /// The host name does not resolve (mistyped, or no network): retried
    /// briefly.
    #[error("DNS lookup of the host failed")]
    Dns,
    /// The TLS handshake failed (a certificate that does not verify, or
    /// not TLS at all: `https://` to a plain-HTTP port). Not retried.
    #[error("TLS failure: {detail}")]
    Tls {
        /// What the TLS library said.
        detail: String,
    },
    /// No connection within the connect timeout. Not retried.
    #[error("connection timed out after {}", seconds(.after))]
    ConnectTimedOut {
        /// The connect timeout.
        after: std::time::Duration,
    },
    /// Connected, but no complete answer within the request timeout. Not
    /// retried.
    #[error("timed out after {} waiting for an answer", seconds(.after))]
    TimedOut {
        /// The request timeout.
        after: std::time::Duration,
    },
}

impl Unreachable {
    /// Whether trying again soon may help (see each variant).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Unreachable::Refused | Unreachable::Dns)
    }
}

/// `5 s`, `1.5 s`.
fn seconds(d: &std::time::Duration) -> String {
    format!("{} s", d.as_secs_f64())
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
    /// A timeout setting (an environment variable) that is not a duration.
    #[error("{setting}={value:?}: {reason}")]
    InvalidTimeout {
        /// The variable.
        setting: String,
        /// Its value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// No credentials in the configuration nor in the environment.
    #[error("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")]
    MissingCredentials,
    /// The S3 client refused the configuration.
    #[error("invalid S3 configuration: {0}")]
    S3(String),
}
