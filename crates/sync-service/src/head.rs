//! `heads/{device}/{seq}`: what a device has pushed and applied.

use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use serde::{Deserialize, Serialize};

/// The head format version.
pub const HEAD_VERSION: u8 = 1;

/// A device's head: its newest pushed batch (with the batch's hash, closing
/// the chain so a dropped tail shows) and the cursors it has applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Format version.
    pub version: u8,
    /// The device.
    pub device: DeviceId,
    /// Its newest pushed batch.
    pub seq: u64,
    /// Hash of that batch.
    pub hash: Option<BatchHash>,
    /// Its clock when it pushed.
    pub hlc: Timestamp,
    /// Wall time of the push (Unix ms), for "last synced".
    pub pushed_at_ms: i64,
    /// How far it has applied each other device's stream.
    pub cursors: Vec<(DeviceId, u64)>,
}

impl Head {
    /// Encodes with postcard.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes, checking the version and that nothing trails.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeadError> {
        let (head, rest): (Head, _) = postcard::take_from_bytes(bytes)?;
        if head.version != HEAD_VERSION {
            return Err(HeadError::UnsupportedVersion(head.version));
        }
        if !rest.is_empty() {
            return Err(HeadError::TrailingBytes(rest.len()));
        }
        Ok(head)
    }
}

/// Why a head's plaintext is not a valid head.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// It does not decode (truncated or malformed).
    #[error("does not decode: {0}")]
    Malformed(#[from] postcard::Error),
    /// A format version this build does not read.
    #[error("head version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Bytes after the head.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}
