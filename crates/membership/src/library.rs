//! The library id every signed byte is bound to.

use std::fmt;
use std::str::FromStr;

/// A library's 16-byte id (today the fingerprint of its first library key,
/// shown as 32 hex digits). Every membership entry, signed envelope and key
/// blob names it, so a signed object of one library is refused in another.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LibraryId([u8; 16]);

/// Text that is not a library id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a library id (expected 32 lowercase hex digits): {text:?}")]
pub struct LibraryIdError {
    /// The text given.
    pub text: String,
}

impl LibraryId {
    /// The id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        LibraryId(bytes)
    }

    /// The id's 16 bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl From<bae_crypto::KeyFingerprint> for LibraryId {
    fn from(fingerprint: bae_crypto::KeyFingerprint) -> Self {
        LibraryId(*fingerprint.as_bytes())
    }
}

impl FromStr for LibraryId {
    type Err = LibraryIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 16];
        // One spelling per id: lowercase only, as Display writes it.
        if text.len() != 32 || text.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(LibraryIdError { text: text.into() });
        }
        hex::decode_to_slice(text, &mut bytes).map_err(|_| LibraryIdError { text: text.into() })?;
        Ok(LibraryId(bytes))
    }
}

impl fmt::Display for LibraryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for LibraryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LibraryId({self})")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn library_id_text_round_trips_and_other_spellings_are_refused() {
        let id = LibraryId::from_bytes([0xab; 16]);
        assert_eq!(id.to_string().parse::<LibraryId>().unwrap(), id);
        assert!(id.to_string().to_uppercase().parse::<LibraryId>().is_err());
        assert!("abcd".parse::<LibraryId>().is_err());
        assert!("zz".repeat(16).parse::<LibraryId>().is_err());
    }
}
