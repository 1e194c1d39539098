//! The key blob at `keys/{member_pubkey_hex}/{epoch}`: every library key
//! epoch 0..=n, sealed (`crypto_box_seal`) to one member and signed by the
//! owner or admin who distributed it.
//!
//! A sealed box has no sender: anyone, the bucket included, can seal bytes
//! to a member. The signature inside says who distributed the keys; the
//! caller accepts the blob only if that author may manage membership in the
//! validated chain (else a hostile bucket could hand a member a key it
//! knows, and read everything sealed under it afterwards).
//!
//! Plaintext layout (`docs/FORMAT-membership.md`):
//! `version (1) || library_id (16) || member (32) || newest epoch n (u32 LE)
//! || key 0 .. key n (32 each) || author (32) || signature (64)`, the
//! signature over [`KEY_BLOB_SIGNING_CONTEXT`] and every byte before it.

use crate::library::LibraryId;
use bae_crypto::{
    open_sealed, seal_to, EpochKeys, IdentityPublicKey, IdentitySigningKey, KeyEpoch, KeyRing,
    LibraryKey, SealError, Signature,
};
use zeroize::Zeroizing;

/// The key blob version this build writes and reads.
pub const KEY_BLOB_VERSION: u8 = 1;
/// Domain-separation prefix of every key blob signature.
pub const KEY_BLOB_SIGNING_CONTEXT: &[u8] = b"bae-key-blob-v1";
/// The most epochs one blob holds (a rotation per member removal).
pub const MAX_EPOCHS: usize = 4096;
/// Bytes before the keys.
const PREFIX_LEN: usize = 1 + 16 + 32 + 4;
/// Bytes after the keys.
const SUFFIX_LEN: usize = 32 + 64;
const KEY_LEN: usize = 32;

/// Why a key blob cannot be made or opened.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyBlobError {
    /// The sealed box did not open (not for this identity, or tampered).
    #[error("key blob: {source}")]
    Seal {
        /// What the sealed box reported.
        #[from]
        source: SealError,
    },
    /// The key ring given has no keys.
    #[error("key ring is empty")]
    EmptyRing,
    /// The key ring given lacks an epoch below its newest.
    #[error("key ring lacks epoch {epoch:?}; a key blob holds every epoch from 0")]
    MissingEpoch {
        /// The first missing epoch.
        epoch: KeyEpoch,
    },
    /// More than [`MAX_EPOCHS`] epochs.
    #[error("key blob holds {count} epochs, more than {MAX_EPOCHS}")]
    TooManyEpochs {
        /// How many it claims.
        count: u64,
    },
    /// A version this build does not read.
    #[error("key blob version {version} is not supported (this build reads {KEY_BLOB_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The length does not match the epoch count.
    #[error("key blob is {len} bytes, which does not match its epoch count")]
    WrongLength {
        /// Plaintext bytes.
        len: usize,
    },
    /// For another library.
    #[error("key blob is for library {found}, not {expected}")]
    WrongLibrary {
        /// The library being read.
        expected: LibraryId,
        /// The library it names.
        found: LibraryId,
    },
    /// Names another member than the one who opened it.
    #[error("key blob names member {found}, not this identity")]
    WrongMember {
        /// The member it names.
        found: Box<IdentityPublicKey>,
    },
    /// Its newest epoch is not the epoch of the path it was read from.
    #[error("key blob's newest epoch is {found:?}, read at epoch {expected:?}")]
    WrongEpoch {
        /// The epoch in the path.
        expected: KeyEpoch,
        /// The newest epoch it holds.
        found: KeyEpoch,
    },
    /// The distributing author's key is not a public key.
    #[error("key blob author is not a public key")]
    InvalidAuthor,
    /// The signature does not verify under the author it names.
    #[error("key blob signature does not verify under author {author}")]
    BadSignature {
        /// The claimed author.
        author: Box<IdentityPublicKey>,
    },
}

/// An opened, verified key blob.
#[derive(Debug)]
pub struct OpenedKeyBlob {
    author: IdentityPublicKey,
    newest: KeyEpoch,
    ring: KeyRing,
}

impl OpenedKeyBlob {
    /// Who distributed it; accept the keys only if they could manage
    /// membership (see the module docs).
    pub fn author(&self) -> &IdentityPublicKey {
        &self.author
    }

    /// The newest epoch (the current key).
    pub fn newest(&self) -> KeyEpoch {
        self.newest
    }

    /// Every epoch's key.
    pub fn into_ring(self) -> KeyRing {
        self.ring
    }
}

fn signing_message(signed: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut m = Zeroizing::new(Vec::with_capacity(
        KEY_BLOB_SIGNING_CONTEXT.len() + signed.len(),
    ));
    m.extend_from_slice(KEY_BLOB_SIGNING_CONTEXT);
    m.extend_from_slice(signed);
    m
}

/// The signed plaintext of a blob (before sealing). Split out so the format
/// page's vectors can show it.
pub(crate) fn blob_plaintext(
    author: &IdentitySigningKey,
    library_id: LibraryId,
    member: &IdentityPublicKey,
    ring: &KeyRing,
) -> Result<(KeyEpoch, Zeroizing<Vec<u8>>), KeyBlobError> {
    let (newest, _) = ring.current().ok_or(KeyBlobError::EmptyRing)?;
    let count = newest.0 as usize + 1;
    if count > MAX_EPOCHS {
        return Err(KeyBlobError::TooManyEpochs {
            count: count as u64,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(
        PREFIX_LEN + count * KEY_LEN + SUFFIX_LEN,
    ));
    out.push(KEY_BLOB_VERSION);
    out.extend_from_slice(library_id.as_bytes());
    out.extend_from_slice(&member.to_bytes());
    out.extend_from_slice(&newest.0.to_le_bytes());
    for epoch in 0..=newest.0 {
        let key = ring
            .key_for_epoch(KeyEpoch(epoch))
            .ok_or(KeyBlobError::MissingEpoch {
                epoch: KeyEpoch(epoch),
            })?;
        out.extend_from_slice(key.expose_secret());
    }
    let signature = author.sign(&signing_message(&out));
    out.extend_from_slice(&author.public_key().to_bytes());
    out.extend_from_slice(&signature.to_bytes());
    Ok((newest, out))
}

/// Seals every epoch of `ring` to `member`, signed by `author`. Returns the
/// newest epoch (the `{epoch}` of the blob's path) and the sealed bytes.
pub fn seal_key_blob(
    author: &IdentitySigningKey,
    library_id: LibraryId,
    member: &IdentityPublicKey,
    ring: &KeyRing,
) -> Result<(KeyEpoch, Vec<u8>), KeyBlobError> {
    let (newest, plaintext) = blob_plaintext(author, library_id, member, ring)?;
    Ok((newest, seal_to(member, &plaintext)?))
}

/// Opens the blob read at `keys/{identity}/{epoch}`. Checks, in order: the
/// sealed box, length, version, library, member, epoch count, exact length,
/// author key, signature, newest epoch against `epoch`.
pub fn open_key_blob(
    identity: &IdentitySigningKey,
    library_id: LibraryId,
    epoch: KeyEpoch,
    sealed: &[u8],
) -> Result<OpenedKeyBlob, KeyBlobError> {
    let plain = open_sealed(identity, sealed)?;
    parse_plaintext(identity, library_id, epoch, &plain)
}

fn array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&bytes[..N]);
    a
}

fn parse_plaintext(
    identity: &IdentitySigningKey,
    library_id: LibraryId,
    epoch: KeyEpoch,
    plain: &[u8],
) -> Result<OpenedKeyBlob, KeyBlobError> {
    let len = plain.len();
    if len < PREFIX_LEN + KEY_LEN + SUFFIX_LEN {
        return Err(KeyBlobError::WrongLength { len });
    }
    if plain[0] != KEY_BLOB_VERSION {
        return Err(KeyBlobError::UnsupportedVersion { version: plain[0] });
    }
    let found = LibraryId::from_bytes(array(&plain[1..17]));
    if found != library_id {
        return Err(KeyBlobError::WrongLibrary {
            expected: library_id,
            found,
        });
    }
    let member: [u8; 32] = array(&plain[17..49]);
    if member != identity.public_key().to_bytes() {
        return Err(match IdentityPublicKey::from_bytes(&member) {
            Ok(found) => KeyBlobError::WrongMember {
                found: Box::new(found),
            },
            Err(_) => KeyBlobError::WrongLength { len },
        });
    }
    let newest = KeyEpoch(u32::from_le_bytes(array(&plain[49..53])));
    let count = u64::from(newest.0) + 1;
    if count > MAX_EPOCHS as u64 {
        return Err(KeyBlobError::TooManyEpochs { count });
    }
    let keys_end = PREFIX_LEN + count as usize * KEY_LEN;
    if len != keys_end + SUFFIX_LEN {
        return Err(KeyBlobError::WrongLength { len });
    }
    let author = IdentityPublicKey::from_bytes(&array(&plain[keys_end..keys_end + 32]))
        .map_err(|_| KeyBlobError::InvalidAuthor)?;
    let signature = Signature::from_bytes(array(&plain[keys_end + 32..]));
    author
        .verify(&signing_message(&plain[..keys_end]), &signature)
        .map_err(|_| KeyBlobError::BadSignature {
            author: Box::new(author),
        })?;
    if newest != epoch {
        return Err(KeyBlobError::WrongEpoch {
            expected: epoch,
            found: newest,
        });
    }
    let mut ring = KeyRing::new();
    for (i, key) in plain[PREFIX_LEN..keys_end]
        .chunks_exact(KEY_LEN)
        .enumerate()
    {
        let bytes = Zeroizing::new(array::<KEY_LEN>(key));
        ring.insert(KeyEpoch(i as u32), LibraryKey::from_bytes(*bytes));
    }
    Ok(OpenedKeyBlob {
        author,
        newest,
        ring,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    const LIB: LibraryId = LibraryId::from_bytes([3; 16]);

    fn key(n: u8) -> IdentitySigningKey {
        IdentitySigningKey::from_seed(&[n; 32])
    }

    fn ring(epochs: u32) -> KeyRing {
        let mut ring = KeyRing::new();
        for e in 0..epochs {
            ring.insert(KeyEpoch(e), LibraryKey::from_bytes([e as u8 + 1; 32]));
        }
        ring
    }

    #[test]
    fn a_key_blob_opens_for_its_member_with_every_epoch() {
        let (owner, member) = (key(1), key(2));
        let (epoch, sealed) = seal_key_blob(&owner, LIB, &member.public_key(), &ring(3)).unwrap();
        assert_eq!(epoch, KeyEpoch(2));
        let opened = open_key_blob(&member, LIB, KeyEpoch(2), &sealed).unwrap();
        assert_eq!(opened.author(), &owner.public_key());
        assert_eq!(opened.newest(), KeyEpoch(2));
        let ring = opened.into_ring();
        for e in 0..3u8 {
            assert_eq!(
                ring.key_for_epoch(KeyEpoch(e.into())),
                Some(&LibraryKey::from_bytes([e + 1; 32]))
            );
        }
        assert_eq!(
            open_key_blob(&key(3), LIB, KeyEpoch(2), &sealed).unwrap_err(),
            KeyBlobError::Seal {
                source: SealError::CannotOpen
            }
        );
    }

    #[test]
    fn a_blob_read_at_another_epoch_library_or_member_is_refused() {
        let (owner, member) = (key(1), key(2));
        let (_, sealed) = seal_key_blob(&owner, LIB, &member.public_key(), &ring(2)).unwrap();
        assert_eq!(
            open_key_blob(&member, LIB, KeyEpoch(3), &sealed).unwrap_err(),
            KeyBlobError::WrongEpoch {
                expected: KeyEpoch(3),
                found: KeyEpoch(1)
            }
        );
        assert!(matches!(
            open_key_blob(
                &member,
                LibraryId::from_bytes([9; 16]),
                KeyEpoch(1),
                &sealed
            ),
            Err(KeyBlobError::WrongLibrary { .. })
        ));
        // Sealed to member 2 but naming member 3 inside (a blob re-sealed by
        // someone who opened another member's).
        let (_, plain) = blob_plaintext(&owner, LIB, &key(3).public_key(), &ring(2)).unwrap();
        let resealed = seal_to(&member.public_key(), &plain).unwrap();
        assert_eq!(
            open_key_blob(&member, LIB, KeyEpoch(1), &resealed).unwrap_err(),
            KeyBlobError::WrongMember {
                found: Box::new(key(3).public_key())
            }
        );
    }

    #[test]
    fn a_blob_the_bucket_made_up_is_refused() {
        let member = key(2);
        let (_, plain) = blob_plaintext(&key(1), LIB, &member.public_key(), &ring(1)).unwrap();
        let check = |bytes: &[u8]| {
            let sealed = seal_to(&member.public_key(), bytes).unwrap();
            open_key_blob(&member, LIB, KeyEpoch(0), &sealed).unwrap_err()
        };
        // A key swapped for one the attacker knows.
        let mut swapped = plain.to_vec();
        swapped[PREFIX_LEN] ^= 1;
        assert_eq!(
            check(&swapped),
            KeyBlobError::BadSignature {
                author: Box::new(key(1).public_key())
            }
        );
        let mut v2 = plain.to_vec();
        v2[0] = 2;
        assert_eq!(check(&v2), KeyBlobError::UnsupportedVersion { version: 2 });
        assert_eq!(
            check(&plain[..plain.len() - 1]),
            KeyBlobError::WrongLength {
                len: plain.len() - 1
            }
        );
        let mut huge = plain.to_vec();
        huge[49..53].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            check(&huge),
            KeyBlobError::TooManyEpochs {
                count: u64::from(u32::MAX) + 1
            }
        );
        let bad_key = (0u8..=255)
            .map(|x| [x; 32])
            .find(|k| IdentityPublicKey::from_bytes(k).is_err())
            .unwrap();
        let mut bad_author = plain.to_vec();
        let at = plain.len() - SUFFIX_LEN;
        bad_author[at..at + 32].copy_from_slice(&bad_key);
        assert_eq!(check(&bad_author), KeyBlobError::InvalidAuthor);
        assert_eq!(
            open_key_blob(&member, LIB, KeyEpoch(0), &[0; 10]).unwrap_err(),
            KeyBlobError::Seal {
                source: SealError::Truncated
            }
        );
    }

    #[test]
    fn a_ring_with_a_gap_or_no_keys_is_refused_when_sealing() {
        let mut gap = ring(1);
        gap.insert(KeyEpoch(2), LibraryKey::generate());
        let member = key(2).public_key();
        assert_eq!(
            seal_key_blob(&key(1), LIB, &member, &gap).unwrap_err(),
            KeyBlobError::MissingEpoch { epoch: KeyEpoch(1) }
        );
        assert_eq!(
            seal_key_blob(&key(1), LIB, &member, &KeyRing::new()).unwrap_err(),
            KeyBlobError::EmptyRing
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_or_mutated_plaintexts_never_panics(
            noise in proptest::collection::vec(any::<u8>(), 0..400),
            at in any::<prop::sample::Index>(),
            x in 1u8..=255,
        ) {
            let member = key(2);
            let _ = parse_plaintext(&member, LIB, KeyEpoch(0), &noise);
            let (_, plain) = blob_plaintext(&key(1), LIB, &member.public_key(), &ring(2)).unwrap();
            let mut bytes = plain.to_vec();
            let i = at.index(bytes.len());
            bytes[i] ^= x;
            prop_assert!(parse_plaintext(&member, LIB, KeyEpoch(1), &bytes).is_err());
            let _ = parse_plaintext(&member, LIB, KeyEpoch(1), &bytes[..i]);
        }
    }
}
