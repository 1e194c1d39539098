//! Test helpers shared by the crate's unit tests.

use crate::chunked::BaseNonce;
use crate::keys::LibraryKey;

/// Key `00 01 .. 1f`.
pub fn fixed_key() -> LibraryKey {
    LibraryKey::from_bytes(core::array::from_fn(|i| i as u8))
}

/// Nonce `40 41 .. 57`.
pub fn fixed_nonce() -> BaseNonce {
    BaseNonce::from_bytes(core::array::from_fn(|i| 0x40 + i as u8))
}

/// `len` bytes that differ between positions (so moved chunks differ).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2])
        .collect()
}
