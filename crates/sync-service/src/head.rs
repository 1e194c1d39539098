//! `heads/{device}/{seq}`: what a device has pushed and applied.

use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use serde::{Deserialize, Serialize};

/// The head format version.
pub const HEAD_VERSION: u8 = 1;

/// The largest head object a pull reads (sealed; 1 MiB). A head's
/// plaintext is under 100 bytes plus at most 27 per cursor (a device id
/// with its length byte, a varint seq), so this holds the cursors of more
/// than 38,000 devices; anything larger is no head of ours, and reading it
/// whole would let anyone who can write `heads/` (no key needed) make
/// every pull hold it in memory.
pub const MAX_HEAD_OBJECT_BYTES: u64 = 1 << 20;

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
        if !head.hlc.is_valid() {
            return Err(HeadError::HlcOutOfRange);
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
    /// An HLC outside the range the engine accepts.
    #[error("head HLC outside the accepted range")]
    HlcOutOfRange,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The head of `docs/FORMAT-sync.md`'s test vector.
    fn vector_head() -> Head {
        Head {
            version: HEAD_VERSION,
            device: DeviceId::from_bytes(
                *b"\x00\x11\x22\x33\x44\x55\x46\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff",
            ),
            seq: 300,
            hash: Some(BatchHash([0xab; 32])),
            hlc: Timestamp::from_u64(0x0123_4567_89ab_cdef),
            pushed_at_ms: 1_800_000_000_000,
            cursors: vec![(DeviceId::from_bytes([0x11; 16]), 7)],
        }
    }

    const VECTOR_HEX: &str = include_str!("../tests/vectors/head-v1.hex");

    #[test]
    fn encoding_matches_the_documented_vector() {
        let bytes = vector_head().encode();
        if std::env::var_os("BAE_REGEN_VECTORS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/head-v1.hex"),
                hex::encode(&bytes) + "\n",
            )
            .unwrap();
        }
        assert_eq!(hex::encode(&bytes), VECTOR_HEX.trim());
        assert_eq!(Head::decode(&bytes).unwrap(), vector_head());
    }

    #[test]
    fn malformed_heads_are_typed_errors() {
        let good = vector_head().encode();
        for cut in 0..good.len() {
            assert!(
                matches!(Head::decode(&good[..cut]), Err(HeadError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(matches!(
            Head::decode(&trailing),
            Err(HeadError::TrailingBytes(1))
        ));
        let mut far = vector_head();
        far.hlc = Timestamp::from_u64(u64::MAX);
        assert!(matches!(
            Head::decode(&far.encode()),
            Err(HeadError::HlcOutOfRange)
        ));
        let mut v2 = good;
        v2[0] = 2;
        assert!(matches!(
            Head::decode(&v2),
            Err(HeadError::UnsupportedVersion(2))
        ));
    }

    proptest::proptest! {
        /// Any bytes, and the vector with any byte changed, decode to a
        /// head or a typed error; a head that decodes re-encodes to itself.
        #[test]
        fn any_bytes_are_a_head_or_a_typed_error(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            flip in 1u8..,
        ) {
            let mut mutated = vector_head().encode();
            let i = at.index(mutated.len());
            mutated[i] ^= flip;
            for input in [bytes, mutated] {
                if let Ok(head) = Head::decode(&input) {
                    proptest::prop_assert_eq!(Head::decode(&head.encode()).unwrap(), head);
                }
            }
        }
    }
}
