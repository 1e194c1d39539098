//! What the fuzz targets and the seed corpus share: the fixed key and
//! place objects are sealed under, and the targets' names.

use bae_crypto::{ObjectKind, ObjectPlace};

/// The library key every target that opens sealed bytes uses (the fuzzer
/// cannot forge a tag, so the seed corpus is sealed under this key for the
/// mutations to reach past the first chunk's authentication).
pub const LIBRARY_KEY: [u8; 32] = [0x5a; 32];

/// The place the `object` target opens objects at.
pub fn object_place() -> ObjectPlace {
    ObjectPlace {
        kind: ObjectKind::OpBatch,
        device: [0x11; 16],
        seq: 7,
    }
}

/// The identity the `key_blob` and `invite_credentials` targets open sealed
/// boxes as (the seed corpus seals to it).
pub const IDENTITY_SEED: [u8; 32] = [0x42; 32];

/// The library the membership targets read for.
pub const LIBRARY_ID: [u8; 16] = [0x11; 16];
