//! Cryptography for bae sync (layer 0, phases 1-3).
//!
//! Owns: bae's chunked XChaCha20-Poly1305 format, the sync-object format,
//! key types and fingerprints, Ed25519 signatures, X25519 sealed boxes,
//! HKDF-SHA256 release keys and BLAKE3 hashing.
//!
//! Architecture invariant: `crypto` knows nothing of SQLite, ops or buckets;
//! it turns bytes into bytes.
#![forbid(unsafe_code)]
