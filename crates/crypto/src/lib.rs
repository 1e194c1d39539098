//! Cryptography for bae sync (layer 0, phases 1-3).
//!
//! Owns: bae's chunked XChaCha20-Poly1305 format, the sync-object format,
//! key types and fingerprints, Ed25519 signatures, X25519 sealed boxes,
//! HKDF-SHA256 release keys and BLAKE3 hashing. Every byte format is written
//! down in `docs/FORMAT-crypto.md`, with test vectors under `tests/vectors/`.
//!
//! Architecture invariant: `crypto` knows nothing of SQLite, ops or buckets;
//! it turns bytes into bytes.
#![forbid(unsafe_code)]

pub mod chunked;
pub mod error;
pub mod hash;
pub mod keys;
pub mod object;
pub mod release;
pub mod seal;
pub mod sign;
#[cfg(test)]
mod test_support;

pub use error::{ChunkedError, KeyParseError, ObjectError, SealError, SignatureError};
pub use hash::{ContentHash, ContentHasher};
pub use keys::{ContentKey, EpochKeys, KeyEpoch, KeyFingerprint, KeyRing, LibraryKey, ReleaseKey};
pub use object::{
    open_object, open_object_stream, seal_object, seal_object_stream, ObjectKind, ObjectPlace,
};
pub use release::derive_release_key;
pub use seal::{open_sealed, seal_to, unwrap_library_key, wrap_library_key};
pub use sign::{IdentityPublicKey, IdentitySigningKey, Signature};
