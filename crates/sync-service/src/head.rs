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
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let (head, rest): (Head, _) =
            postcard::take_from_bytes(bytes).map_err(|e| e.to_string())?;
        if head.version != HEAD_VERSION {
            return Err(format!("head version {} is not supported", head.version));
        }
        if !rest.is_empty() {
            return Err(format!("{} trailing bytes", rest.len()));
        }
        Ok(head)
    }
}
