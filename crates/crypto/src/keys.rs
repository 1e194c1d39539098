//! Symmetric key types: the library key, release keys, their fingerprints
//! and key epochs.
//!
//! Secrets zeroize on drop, print as `<redacted>` in `Debug` and have no
//! `Display`. Export is explicit: [`LibraryKey::to_key_text`] gives
//! `bae-library-key-v2:<64 hex digits>:<8 hex digits of checksum>` in a
//! zeroizing string (version 1 text, without the checksum, is still read).

use crate::error::KeyParseError;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use rand::rngs::OsRng;
use rand::RngCore;
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of every symmetric key in bytes.
pub const KEY_LEN: usize = 32;

/// Length of the checksum in a library key's text form, in bytes.
pub const CHECKSUM_LEN: usize = 4;

/// Length of a [`KeyFingerprint`] in bytes.
pub const FINGERPRINT_LEN: usize = 16;

/// A key epoch: which generation of the library key sealed an object.
/// Epoch 0 is the library's first key; each rotation (member removal) adds one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyEpoch(pub u32);

impl KeyEpoch {
    /// The first epoch of a library.
    pub const FIRST: KeyEpoch = KeyEpoch(0);

    /// The epoch after this one, or `None` at `u32::MAX`.
    pub fn next(self) -> Option<KeyEpoch> {
        self.0.checked_add(1).map(KeyEpoch)
    }
}

/// A 16-byte public fingerprint of a symmetric key, stored in sync-object
/// headers so a wrong key is reported as such before any decryption.
/// Not secret: it is a one-way BLAKE3 derivation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint([u8; FINGERPRINT_LEN]);

impl KeyFingerprint {
    /// Wraps fingerprint bytes read from a header.
    pub fn from_bytes(bytes: [u8; FINGERPRINT_LEN]) -> Self {
        KeyFingerprint(bytes)
    }

    /// The fingerprint bytes.
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }

    fn derive(context: &str, key: &[u8; KEY_LEN]) -> Self {
        let full = blake3::derive_key(context, key);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&full[..FINGERPRINT_LEN]);
        KeyFingerprint(out)
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({})", hex::encode(self.0))
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Keys usable with the chunked format ([`crate::chunked`]): the library key
/// (existing bae files) and release keys (phase 3). Sealed: no other type can
/// implement it.
pub trait ContentKey: sealed::Sealed {
    /// The AEAD instance for this key.
    #[doc(hidden)]
    fn cipher(&self) -> XChaCha20Poly1305;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::LibraryKey {}
    impl Sealed for super::ReleaseKey {}
}

/// Defines a 32-byte zeroizing symmetric key newtype with text export.
macro_rules! symmetric_key {
    ($(#[$doc:meta])* $name:ident, $fp_context:expr) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// A fresh random key from the operating system's CSPRNG.
            pub fn generate() -> Self {
                let mut bytes = [0u8; KEY_LEN];
                OsRng.fill_bytes(&mut bytes);
                $name(bytes)
            }

            /// Wraps raw key bytes (for example unsealed from a key wrap).
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                $name(bytes)
            }

            /// The raw key bytes. Handle with care: copies are not zeroized.
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                &self.0
            }

            /// The key's public fingerprint.
            pub fn fingerprint(&self) -> KeyFingerprint {
                KeyFingerprint::derive($fp_context, &self.0)
            }

        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "(<redacted>, fingerprint {})"), self.fingerprint())
            }
        }

        impl PartialEq for $name {
            /// Constant-time comparison.
            fn eq(&self, other: &Self) -> bool {
                self.0.ct_eq(&other.0).into()
            }
        }

        impl Eq for $name {}

        impl ContentKey for $name {
            fn cipher(&self) -> XChaCha20Poly1305 {
                XChaCha20Poly1305::new((&self.0).into())
            }
        }
    };
}

symmetric_key!(
    /// The library key: encrypts every sync object of one key epoch, and the
    /// library's existing chunked files.
    LibraryKey,
    "bae 2025 library key fingerprint v1"
);

symmetric_key!(
    /// A per-release key derived from the library key
    /// ([`crate::release::derive_release_key`]); encrypts that release's files.
    ReleaseKey,
    "bae 2025 release key fingerprint v1"
);

impl LibraryKey {
    /// Prefix of the text form this build writes (version 2, with a
    /// checksum).
    pub const TEXT_PREFIX: &'static str = "bae-library-key-v2:";
    /// Prefix of the version 1 text form (no checksum), still read so key
    /// files exported by older builds keep working.
    pub const TEXT_PREFIX_V1: &'static str = "bae-library-key-v1:";
    /// BLAKE3 `derive_key` context of the key text checksum.
    const CHECKSUM_CONTEXT: &'static str = "bae 2025 library key text checksum v2";

    /// Export as text for a key file:
    /// `bae-library-key-v2:<64 hex digits>:<8 hex digits of checksum>`, all
    /// lowercase. The checksum (see `docs/FORMAT-crypto.md`) makes any
    /// typo in the key (a changed, missing or swapped digit) fail to parse
    /// instead of yielding another valid key. The string zeroizes on drop.
    pub fn to_key_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(
            Self::TEXT_PREFIX.len() + 2 * KEY_LEN + 1 + 2 * CHECKSUM_LEN,
        ));
        s.push_str(Self::TEXT_PREFIX);
        s.push_str(&Zeroizing::new(hex::encode(self.0)));
        s.push(':');
        s.push_str(&hex::encode(Self::text_checksum(&self.0)));
        s
    }

    /// Parses the text form written by `to_key_text` (version 2, checksum
    /// checked) or by older builds (version 1, no checksum); surrounding
    /// whitespace (a trailing newline) is ignored. A version 2 text whose
    /// checksum does not match is [`KeyParseError::BadChecksum`].
    pub fn from_key_text(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        if text.starts_with(Self::TEXT_PREFIX_V1) {
            return parse_key_text(text, Self::TEXT_PREFIX_V1).map(|b| LibraryKey(*b));
        }
        let body = text
            .strip_prefix(Self::TEXT_PREFIX)
            .ok_or(KeyParseError::MissingPrefix {
                expected: Self::TEXT_PREFIX,
            })?;
        let (key_hex, checksum_hex) = body.split_once(':').ok_or(KeyParseError::MissingChecksum)?;
        let bytes = parse_key_text(key_hex, "")?;
        let mut checksum = [0u8; CHECKSUM_LEN];
        if checksum_hex.len() != 2 * CHECKSUM_LEN {
            return Err(KeyParseError::BadChecksum);
        }
        hex::decode_to_slice(checksum_hex, &mut checksum).map_err(|_| KeyParseError::BadHex)?;
        if !bool::from(checksum.ct_eq(&Self::text_checksum(&bytes))) {
            return Err(KeyParseError::BadChecksum);
        }
        Ok(LibraryKey(*bytes))
    }

    /// The 4-byte checksum of a key's text form: the first 4 bytes of
    /// `BLAKE3.derive_key("bae 2025 library key text checksum v2", key)`.
    /// Domain-separated from the fingerprint, and 32 bits of a one-way
    /// hash, so it tells nothing useful about the key.
    fn text_checksum(key: &[u8; KEY_LEN]) -> [u8; CHECKSUM_LEN] {
        let full = blake3::derive_key(Self::CHECKSUM_CONTEXT, key);
        let mut out = [0u8; CHECKSUM_LEN];
        out.copy_from_slice(&full[..CHECKSUM_LEN]);
        out
    }
}

impl ReleaseKey {
    /// Prefix of this key's text form.
    pub const TEXT_PREFIX: &'static str = "bae-release-key-v1:";

    /// Export as text: the prefix then 64 lowercase hex digits. The string
    /// zeroizes on drop.
    pub fn to_key_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(Self::TEXT_PREFIX.len() + 2 * KEY_LEN));
        s.push_str(Self::TEXT_PREFIX);
        s.push_str(&Zeroizing::new(hex::encode(self.0)));
        s
    }

    /// Parses the text form written by `to_key_text`; surrounding
    /// whitespace is ignored.
    pub fn from_key_text(text: &str) -> Result<Self, KeyParseError> {
        parse_key_text(text, Self::TEXT_PREFIX).map(|b| ReleaseKey(*b))
    }
}

/// Finds the library key of a key epoch, for opening sync objects.
pub trait EpochKeys {
    /// The key of `epoch`, if known.
    fn key_for_epoch(&self, epoch: KeyEpoch) -> Option<&LibraryKey>;
}

/// A single key known to belong to one epoch.
impl EpochKeys for (KeyEpoch, &LibraryKey) {
    fn key_for_epoch(&self, epoch: KeyEpoch) -> Option<&LibraryKey> {
        (self.0 == epoch).then_some(self.1)
    }
}

/// Every library key epoch a member holds: old epochs stay readable after a
/// rotation, new objects use [`KeyRing::current`].
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    keys: std::collections::BTreeMap<KeyEpoch, LibraryKey>,
}

impl KeyRing {
    /// An empty key ring.
    pub fn new() -> Self {
        KeyRing::default()
    }

    /// Adds (or replaces) the key of an epoch.
    pub fn insert(&mut self, epoch: KeyEpoch, key: LibraryKey) {
        self.keys.insert(epoch, key);
    }

    /// The newest epoch and its key: the one to seal new objects with.
    pub fn current(&self) -> Option<(KeyEpoch, &LibraryKey)> {
        self.keys.iter().next_back().map(|(e, k)| (*e, k))
    }

    /// Every epoch and its key, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = (KeyEpoch, &LibraryKey)> + '_ {
        self.keys.iter().map(|(e, k)| (*e, k))
    }

    /// The key of `epoch`, if held.
    pub fn get(&self, epoch: KeyEpoch) -> Option<&LibraryKey> {
        self.keys.get(&epoch)
    }
}

impl From<LibraryKey> for KeyRing {
    /// A ring of one library's first key (epoch 0).
    fn from(key: LibraryKey) -> Self {
        let mut ring = KeyRing::new();
        ring.insert(KeyEpoch::FIRST, key);
        ring
    }
}

impl EpochKeys for KeyRing {
    fn key_for_epoch(&self, epoch: KeyEpoch) -> Option<&LibraryKey> {
        self.keys.get(&epoch)
    }
}

/// Parses `prefix || hex(32 bytes)`.
pub(crate) fn parse_key_text(
    text: &str,
    prefix: &'static str,
) -> Result<Zeroizing<[u8; KEY_LEN]>, KeyParseError> {
    let hex_part = text
        .trim()
        .strip_prefix(prefix)
        .ok_or(KeyParseError::MissingPrefix { expected: prefix })?;
    if hex_part.len() != 2 * KEY_LEN {
        return Err(KeyParseError::WrongLength {
            expected: KEY_LEN,
            found: hex_part.len(),
        });
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hex::decode_to_slice(hex_part, &mut out[..]).map_err(|_| KeyParseError::BadHex)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_round_trips() {
        let key = LibraryKey::generate();
        let text = key.to_key_text();
        assert!(text.starts_with("bae-library-key-v2:"));
        assert_eq!(text.len(), 19 + 64 + 1 + 8);
        let back = LibraryKey::from_key_text(&format!("{}\n", &*text)).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn key_text_errors_are_typed() {
        let hex64 = "00".repeat(32);
        assert_eq!(
            LibraryKey::from_key_text(&format!("bae-release-key-v1:{hex64}")),
            Err(KeyParseError::MissingPrefix {
                expected: "bae-library-key-v2:"
            })
        );
        assert_eq!(
            LibraryKey::from_key_text("bae-library-key-v1:abcd"),
            Err(KeyParseError::WrongLength {
                expected: 32,
                found: 4
            })
        );
        assert_eq!(
            LibraryKey::from_key_text(&format!("bae-library-key-v1:{}", "zz".repeat(32))),
            Err(KeyParseError::BadHex)
        );
    }

    /// The vector in `docs/FORMAT-crypto.md` section 3.
    const VECTOR_KEY_TEXT: &str = "bae-library-key-v2:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f:d384f43c";

    #[test]
    fn key_text_v2_matches_the_documented_vector() {
        let key = LibraryKey::from_bytes(std::array::from_fn(|i| i as u8));
        assert_eq!(&*key.to_key_text(), VECTOR_KEY_TEXT);
        assert_eq!(LibraryKey::from_key_text(VECTOR_KEY_TEXT).unwrap(), key);
    }

    #[test]
    fn v1_key_text_without_a_checksum_is_still_read() {
        let key = LibraryKey::from_bytes([7; 32]);
        let v1 = format!("bae-library-key-v1:{}\n", "07".repeat(32));
        assert_eq!(LibraryKey::from_key_text(&v1).unwrap(), key);
    }

    #[test]
    fn every_single_digit_typo_fails_the_checksum() {
        let text = LibraryKey::generate().to_key_text();
        let start = LibraryKey::TEXT_PREFIX.len();
        for i in (start..start + 64).chain(start + 65..start + 73) {
            let mut typo = text.as_bytes().to_vec();
            typo[i] = if typo[i] == b'0' { b'1' } else { b'0' };
            let typo = String::from_utf8(typo).unwrap();
            assert_eq!(
                LibraryKey::from_key_text(&typo),
                Err(KeyParseError::BadChecksum),
                "digit {i}"
            );
        }
        let cut = &text[..text.len() - 9];
        assert_eq!(
            LibraryKey::from_key_text(cut),
            Err(KeyParseError::MissingChecksum)
        );
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = LibraryKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"));
        assert!(!shown.contains("abab"));
    }

    #[test]
    fn fingerprints_differ_between_keys_and_key_types() {
        let a = LibraryKey::from_bytes([1; 32]);
        let b = LibraryKey::from_bytes([2; 32]);
        let r = ReleaseKey::from_bytes([1; 32]);
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_ne!(a.fingerprint().as_bytes(), r.fingerprint().as_bytes());
        assert_eq!(
            a.fingerprint(),
            LibraryKey::from_bytes([1; 32]).fingerprint()
        );
    }

    proptest::proptest! {
        /// Any text, and a real key text with any character changed, is a
        /// key or a typed error; a key that parses writes the same key back.
        #[test]
        fn any_text_is_a_key_or_a_typed_error(
            text in "\\PC{0,120}",
            at in proptest::prelude::any::<proptest::sample::Index>(),
            with in proptest::prelude::any::<char>(),
        ) {
            let real = LibraryKey::from_bytes([7; KEY_LEN]).to_key_text();
            let mut mutated: Vec<char> = real.chars().collect();
            let i = at.index(mutated.len());
            mutated[i] = with;
            let mutated: String = mutated.into_iter().collect();
            for input in [text.as_str(), mutated.as_str()] {
                if let Ok(key) = LibraryKey::from_key_text(input) {
                    proptest::prop_assert_eq!(LibraryKey::from_key_text(&key.to_key_text()).unwrap(), key);
                }
                if let Ok(key) = ReleaseKey::from_key_text(input) {
                    proptest::prop_assert_eq!(ReleaseKey::from_key_text(&key.to_key_text()).unwrap(), key);
                }
            }
        }
    }
}
