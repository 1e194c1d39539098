//! `heads/{device}/{seq}`: what a device has pushed and applied.

use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use serde::{Deserialize, Serialize};

/// The head format version this build writes (it reads 1 and 2; 2 adds
/// the writer's schema version at the end).
pub const HEAD_VERSION: u8 = 2;
/// The head format before schema versions, still read.
const HEAD_V1: u8 = 1;

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
    /// The sync schema version the device runs (format 2; 0 in a head of
    /// format 1).
    pub schema_version: u32,
}

/// A head of format 1: [`Head`] without its schema version.
#[derive(Serialize, Deserialize)]
struct HeadV1 {
    version: u8,
    device: DeviceId,
    seq: u64,
    hash: Option<BatchHash>,
    hlc: Timestamp,
    pushed_at_ms: i64,
    cursors: Vec<(DeviceId, u64)>,
}

impl Head {
    /// Encodes with postcard, in the format its `version` names.
    pub fn encode(&self) -> Vec<u8> {
        if self.version == HEAD_V1 {
            let v1 = HeadV1 {
                version: self.version,
                device: self.device,
                seq: self.seq,
                hash: self.hash,
                hlc: self.hlc,
                pushed_at_ms: self.pushed_at_ms,
                cursors: self.cursors.clone(),
            };
            return postcard::to_allocvec(&v1).unwrap_or_default();
        }
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decodes, checking the version and that nothing trails.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeadError> {
        let (head, rest) = match bytes.first() {
            Some(&HEAD_V1) => {
                let (v1, rest): (HeadV1, _) = postcard::take_from_bytes(bytes)?;
                let head = Head {
                    version: v1.version,
                    device: v1.device,
                    seq: v1.seq,
                    hash: v1.hash,
                    hlc: v1.hlc,
                    pushed_at_ms: v1.pushed_at_ms,
                    cursors: v1.cursors,
                    schema_version: 0,
                };
                (head, rest)
            }
            _ => postcard::take_from_bytes::<Head>(bytes)?,
        };
        if head.version != HEAD_VERSION && head.version != HEAD_V1 {
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
            schema_version: 2,
        }
    }

    const VECTOR_HEX: &str = include_str!("../tests/vectors/head-v2.hex");
    const VECTOR_V1_HEX: &str = include_str!("../tests/vectors/head-v1.hex");

    #[test]
    fn encoding_matches_the_documented_vector() {
        let bytes = vector_head().encode();
        if std::env::var_os("BAE_REGEN_VECTORS").is_some() {
            std::fs::write(
                concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/head-v2.hex"),
                hex::encode(&bytes) + "\n",
            )
            .unwrap();
        }
        assert_eq!(hex::encode(&bytes), VECTOR_HEX.trim());
        assert_eq!(Head::decode(&bytes).unwrap(), vector_head());
    }

    #[test]
    fn a_format_1_head_reads_with_schema_version_0() {
        let bytes = hex::decode(VECTOR_V1_HEX.trim()).unwrap();
        let head = Head::decode(&bytes).unwrap();
        assert_eq!(
            head,
            Head {
                version: HEAD_V1,
                schema_version: 0,
                ..vector_head()
            }
        );
        assert_eq!(head.encode(), bytes);
        // Format 2 is format 1 with the schema version appended.
        let v2 = vector_head().encode();
        assert_eq!((v2[0], &v2[1..v2.len() - 1]), (2, &bytes[1..]));
        assert_eq!(v2[v2.len() - 1], 2);
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
        let mut v3 = good;
        v3[0] = 3;
        assert!(matches!(
            Head::decode(&v3),
            Err(HeadError::UnsupportedVersion(3))
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
