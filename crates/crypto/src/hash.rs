//! BLAKE3 content hashes (images, files). Not secret, so they display as hex.
//! (The per-device batch chain is part of the batch format: each batch
//! carries the BLAKE3 of its predecessor's encoding; see `bae_oplog::BatchHash`.)

use std::fmt;

macro_rules! hash_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps 32 hash bytes (read back from storage).
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                $name(bytes)
            }

            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parses 64 hex digits.
            pub fn from_hex(text: &str) -> Option<Self> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(text, &mut bytes).ok()?;
                Some($name(bytes))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

hash_type!(
    /// Plain BLAKE3 of some content (an image, a file).
    ContentHash
);

impl ContentHash {
    /// Hashes bytes held in memory.
    pub fn of(bytes: &[u8]) -> Self {
        ContentHash(*blake3::hash(bytes).as_bytes())
    }
}

/// Incremental [`ContentHash`] for content too large to hold in memory.
#[derive(Clone, Debug, Default)]
pub struct ContentHasher(blake3::Hasher);

impl ContentHasher {
    /// A new hasher.
    pub fn new() -> Self {
        ContentHasher(blake3::Hasher::new())
    }

    /// Adds bytes.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// The hash of everything added.
    pub fn finalize(&self) -> ContentHash {
        ContentHash(*self.0.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_is_plain_blake3() {
        // BLAKE3 of the empty input, from the BLAKE3 specification.
        assert_eq!(
            ContentHash::of(b"").to_string(),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
        let mut h = ContentHasher::new();
        h.update(b"ab").update(b"c");
        assert_eq!(h.finalize(), ContentHash::of(b"abc"));
        let shown = ContentHash::of(b"abc").to_string();
        assert_eq!(ContentHash::from_hex(&shown), Some(ContentHash::of(b"abc")));
    }
}
