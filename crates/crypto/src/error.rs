//! Error types, one enum per family of operations, each variant something a
//! caller can act on.

use crate::keys::{KeyEpoch, KeyFingerprint};
use crate::object::ObjectPlace;

/// Failure of the chunked XChaCha20-Poly1305 format (release audio files).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkedError {
    /// A plaintext length above [`crate::chunked::MAX_PLAINTEXT_LEN`] (a
    /// synced file size is untrusted).
    #[error("plaintext length {0} is out of range")]
    LengthOutOfRange(u64),
    /// The ciphertext ends early: shorter than the nonce plus one tag, a
    /// partial tag at the end, or fewer bytes than the known plaintext size
    /// needs.
    #[error("ciphertext is truncated")]
    Truncated,
    /// The ciphertext holds more bytes than the known plaintext size allows.
    #[error("ciphertext has trailing bytes beyond the known plaintext size")]
    TrailingData,
    /// A chunk failed authentication: wrong key, wrong nonce, or modified
    /// bytes. The two cannot be told apart in this format (it has no header).
    #[error("chunk {chunk} failed authentication (wrong key or tampered)")]
    Tampered {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The requested plaintext range does not lie within the plaintext.
    #[error("range {start}..{end} is outside plaintext of {len} bytes")]
    RangeOutOfBounds {
        /// Requested start.
        start: u64,
        /// Requested end (exclusive).
        end: u64,
        /// Known plaintext length.
        len: u64,
    },
    /// The chunk source could not produce a chunk.
    #[error("could not fetch chunk {chunk}: {source}")]
    Fetch {
        /// Index of the chunk that could not be fetched.
        chunk: u64,
        /// What the source reported.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading the input or writing the output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Failure to open (or stream-seal) a sync object. Checked in the order the
/// variants are listed in `docs/FORMAT-crypto.md`: header first, then key,
/// then chunks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectError {
    /// The bytes do not start with the sync-object magic.
    #[error("not a bae sync object (bad magic)")]
    NotAnObject,
    /// The format version is not one this build can read.
    #[error("unsupported sync-object format version {version}")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The header's flags field holds bits this build does not know.
    #[error("unsupported sync-object flags {flags:#06x}")]
    UnsupportedFlags {
        /// The flags found.
        flags: u16,
    },
    /// The header names an object kind this build does not know.
    #[error("unknown sync-object kind byte {byte}")]
    UnknownKind {
        /// The kind byte found.
        byte: u8,
    },
    /// The object was written for another place (moved or swapped object).
    #[error("object belongs to {found:?}, expected {expected:?}")]
    WrongPlace {
        /// Where the caller expected the object to belong.
        expected: ObjectPlace,
        /// Where the header says it belongs.
        found: ObjectPlace,
    },
    /// No key is known for the object's key epoch.
    #[error("no key for key epoch {epoch:?}")]
    UnknownEpoch {
        /// The epoch named in the header.
        epoch: KeyEpoch,
    },
    /// The key for the epoch is not the key the object was sealed with
    /// (detected from the key fingerprint, before decrypting).
    #[error("wrong key for epoch {epoch:?}: object sealed under {found}, have {have}")]
    WrongKey {
        /// The epoch named in the header.
        epoch: KeyEpoch,
        /// Fingerprint recorded in the header.
        found: KeyFingerprint,
        /// Fingerprint of the key we tried.
        have: KeyFingerprint,
    },
    /// The object ends early: inside the header, inside a chunk, or at a
    /// chunk boundary before the final chunk.
    #[error("object is truncated")]
    Truncated,
    /// Bytes follow the final chunk.
    #[error("object has bytes after its final chunk")]
    TrailingData,
    /// A chunk failed authentication: its bytes or the header were modified.
    #[error("object chunk {chunk} failed authentication (tampered)")]
    Tampered {
        /// Index of the chunk that failed.
        chunk: u64,
    },
    /// The plaintext exceeds the caller's size limit.
    #[error("object plaintext exceeds the limit of {max} bytes")]
    TooLarge {
        /// The limit in bytes.
        max: u64,
    },
    /// Reading the input or writing the output failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Failure to parse a key from bytes or from key-file text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The text does not start with the expected prefix.
    #[error("key text must start with {expected:?}")]
    MissingPrefix {
        /// The prefix this key type uses.
        expected: &'static str,
    },
    /// The key material has the wrong length.
    #[error("key must be {expected} bytes of hex-decoded material, found {found} hex digits")]
    WrongLength {
        /// Expected number of bytes.
        expected: usize,
        /// Number of hex digits found.
        found: usize,
    },
    /// The key text is not valid hex.
    #[error("key text is not valid hex")]
    BadHex,
    /// A version 2 library key text without its `:checksum` part (cut off
    /// when copied).
    #[error("key text has no checksum (expected `:` and 8 hex digits after the key)")]
    MissingChecksum,
    /// A version 2 library key text whose checksum does not match its key:
    /// a digit was mistyped, dropped or swapped, and the key is not the one
    /// exported.
    #[error("key text checksum does not match: the key was mistyped or damaged (copy the exported file again)")]
    BadChecksum,
    /// The bytes are not a valid public key (not a point on the curve).
    #[error("bytes are not a valid Ed25519 public key")]
    InvalidPublicKey,
}

/// Failure to verify an Ed25519 signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature does not verify for this key and message.
    #[error("signature does not verify")]
    Invalid,
    /// The signature bytes have the wrong length.
    #[error("signature must be 64 bytes, found {found}")]
    WrongLength {
        /// Number of bytes found.
        found: usize,
    },
}

/// Failure of a sealed box (`crypto_box_seal`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// Too short to be a sealed box (ephemeral key plus tag).
    #[error("sealed box is truncated")]
    Truncated,
    /// The box does not open with this identity: sealed to someone else, or
    /// modified.
    #[error("sealed box does not open with this identity (wrong recipient or tampered)")]
    CannotOpen,
    /// Sealing failed (the underlying cipher refused the input).
    #[error("sealing failed")]
    SealFailed,
    /// The opened payload is not a key wrap this build understands.
    #[error("sealed payload is not a v{expected} library-key wrap")]
    BadKeyWrap {
        /// The key-wrap version this build reads.
        expected: u8,
    },
}

impl ObjectError {
    /// Whether the error means the object is hostile or damaged (as opposed
    /// to an I/O failure, an unknown epoch or a caller limit).
    pub fn is_corrupt(&self) -> bool {
        !matches!(
            self,
            ObjectError::Io(_) | ObjectError::UnknownEpoch { .. } | ObjectError::TooLarge { .. }
        )
    }
}
