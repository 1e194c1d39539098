//! The signed envelope every batch and head travels in.
//!
//! A [`SignedObject`] holds the author's public key, an Ed25519 signature,
//! an [`EnvelopeHeader`] (library, kind, device, seq, HLC, key epoch,
//! previous-batch hash) and the body bytes (an encoded batch or head). The
//! signature covers [`OBJECT_SIGNING_CONTEXT`], every header field and the
//! body, each length-delimited, so nothing membership validation reads sits
//! outside it. [`SignedObject::verify`] checks the signature and that the
//! header names the place the object was read from, and returns a
//! [`VerifiedObject`] that exposes only signed values.
//!
//! A device id belongs to one author: [`DeviceBindings`] remembers the author
//! of the first signed object seen for each device and refuses another.
//! Layout: `docs/FORMAT-membership.md`.

use crate::library::LibraryId;
use bae_crypto::{IdentityPublicKey, IdentitySigningKey, KeyEpoch, Signature};
use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use std::collections::BTreeMap;

/// Domain-separation prefix of every envelope signature.
pub const OBJECT_SIGNING_CONTEXT: &[u8] = b"bae-signed-object-v1";
/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// The largest body accepted: the largest encoded batch.
pub const MAX_BODY_BYTES: usize = bae_oplog::MAX_BATCH_BYTES;
/// Bytes before the body: version, author, signature, library, kind,
/// device, seq, HLC, epoch, prev flag (the 32 prev bytes follow when set).
const FIXED_LEN: usize = 1 + 32 + 64 + 16 + 1 + 16 + 8 + 8 + 4 + 1;

/// Which signed object: the kinds whose authorship membership checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignedKind {
    /// `ops/{device}/{seq}`: a batch.
    Batch,
    /// `heads/{device}`: a head.
    Head,
    /// `checkpoint-signatures/{id}`: the signature of the checkpoint
    /// `checkpoints/{id}` (device: its writer; seq and HLC: its HLC; body:
    /// the BLAKE3 of the sealed checkpoint object).
    Checkpoint,
}

impl SignedKind {
    /// The byte this kind is written as (the sync-object kind byte).
    pub fn to_byte(self) -> u8 {
        match self {
            SignedKind::Batch => bae_crypto::ObjectKind::OpBatch.to_byte(),
            SignedKind::Head => bae_crypto::ObjectKind::Head.to_byte(),
            SignedKind::Checkpoint => bae_crypto::ObjectKind::Checkpoint.to_byte(),
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match bae_crypto::ObjectKind::from_byte(byte)? {
            bae_crypto::ObjectKind::OpBatch => Some(SignedKind::Batch),
            bae_crypto::ObjectKind::Head => Some(SignedKind::Head),
            bae_crypto::ObjectKind::Checkpoint => Some(SignedKind::Checkpoint),
            _ => None,
        }
    }
}

/// The signed fields besides the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The library.
    pub library_id: LibraryId,
    /// Batch or head.
    pub kind: SignedKind,
    /// The writing device.
    pub device: DeviceId,
    /// The batch seq (for a head: the newest seq it names).
    pub seq: u64,
    /// The HLC membership is checked at (a batch's newest op HLC).
    pub hlc: Timestamp,
    /// The key epoch the object is sealed under.
    pub epoch: KeyEpoch,
    /// The previous batch's hash (for a head: the newest batch's hash).
    pub prev: Option<BatchHash>,
}

/// An envelope as read: not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedObject {
    author: IdentityPublicKey,
    signature: Signature,
    header: EnvelopeHeader,
    body: Vec<u8>,
}

/// An envelope whose signature verified and whose header matched where it
/// was read from. Everything it exposes was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedObject {
    author: IdentityPublicKey,
    header: EnvelopeHeader,
    body: Vec<u8>,
}

/// An envelope whose header matched where it was read from, as
/// [`SignedObject::verify`] checks it, but whose signature was not checked:
/// nothing it holds may be trusted until its body is authenticated another
/// way. Pull does so for a run of batches of one device: each body names
/// the hash of the one before it, and the signature of the run's last batch
/// is verified before any of them is applied (`docs/SECURITY.md`, "One
/// signature per pull window").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsignedObject {
    author: IdentityPublicKey,
    header: EnvelopeHeader,
    body: Vec<u8>,
}

impl UnsignedObject {
    /// The author the envelope claims.
    pub fn claimed_author(&self) -> &IdentityPublicKey {
        &self.author
    }

    /// The header, as claimed.
    pub fn claimed_header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The body, as claimed.
    pub fn claimed_body(&self) -> &[u8] {
        &self.body
    }
}

/// Why an envelope is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Shorter than its fixed fields.
    #[error("signed envelope is truncated")]
    Truncated,
    /// A body longer than [`MAX_BODY_BYTES`].
    #[error("signed envelope body is {len} bytes, more than the limit")]
    TooLarge {
        /// Body bytes.
        len: usize,
    },
    /// A version this build does not read.
    #[error(
        "signed envelope version {version} is not supported (this build reads {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A kind byte that is neither batch nor head.
    #[error("signed envelope kind byte {byte} is not a batch or head")]
    UnknownKind {
        /// The byte found.
        byte: u8,
    },
    /// The prev flag is neither 0 nor 1.
    #[error("signed envelope prev flag {byte} is not 0 or 1")]
    BadPrevFlag {
        /// The byte found.
        byte: u8,
    },
    /// The author is not an Ed25519 public key.
    #[error("signed envelope author is not a public key")]
    InvalidAuthor,
    /// An HLC outside the range the engine accepts.
    #[error("signed envelope HLC is out of range")]
    HlcOutOfRange,
    /// The signature does not verify under the author.
    #[error("signed envelope signature does not verify under author {author}")]
    BadSignature {
        /// The claimed author.
        author: Box<IdentityPublicKey>,
    },
    /// Signed for another library.
    #[error("signed envelope is for library {found}, not {expected}")]
    WrongLibrary {
        /// The library being read.
        expected: LibraryId,
        /// The library signed.
        found: LibraryId,
    },
    /// Signed for another kind, device or seq than the place it was read
    /// from (a moved or swapped object).
    #[error("signed envelope is for {found_kind:?} {found_device}/{found_seq}, read at {expected_kind:?} {expected_device}/{expected_seq}")]
    WrongPlace {
        /// Kind of the place read.
        expected_kind: SignedKind,
        /// Device of the place read.
        expected_device: DeviceId,
        /// Seq of the place read.
        expected_seq: u64,
        /// Kind signed.
        found_kind: SignedKind,
        /// Device signed.
        found_device: DeviceId,
        /// Seq signed.
        found_seq: u64,
    },
    /// Signed for another key epoch than the object was sealed under.
    #[error("signed envelope names key epoch {found:?}, sealed under {expected:?}")]
    WrongEpoch {
        /// The epoch the object was sealed under.
        expected: KeyEpoch,
        /// The epoch signed.
        found: KeyEpoch,
    },
    /// A device already bound to another author.
    #[error("device {device} belongs to {bound}, but this object is signed by {claimed}")]
    DeviceOfAnotherAuthor {
        /// The device.
        device: DeviceId,
        /// The author it is bound to.
        bound: Box<IdentityPublicKey>,
        /// The author of this object.
        claimed: Box<IdentityPublicKey>,
    },
}

/// Appends `len (u32 LE) || bytes`.
fn field(message: &mut Vec<u8>, bytes: &[u8]) {
    // Bodies are bounded by MAX_BODY_BYTES (64 MiB), so the length fits.
    message.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    message.extend_from_slice(bytes);
}

/// The signed message: every field length-delimited, context first.
pub(crate) fn signing_message(header: &EnvelopeHeader, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(body.len() + 160);
    field(&mut m, OBJECT_SIGNING_CONTEXT);
    field(&mut m, header.library_id.as_bytes());
    field(&mut m, &[header.kind.to_byte()]);
    field(&mut m, header.device.as_bytes());
    field(&mut m, &header.seq.to_le_bytes());
    field(&mut m, &header.hlc.as_u64().to_le_bytes());
    field(&mut m, &header.epoch.0.to_le_bytes());
    field(&mut m, header.prev.as_ref().map_or(&[][..], |h| &h.0[..]));
    field(&mut m, body);
    m
}

/// Takes `N` bytes from the front of `rest`.
fn take<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], EnvelopeError> {
    let (head, tail) = rest
        .split_first_chunk::<N>()
        .ok_or(EnvelopeError::Truncated)?;
    *rest = tail;
    Ok(*head)
}

impl SignedObject {
    /// Signs a header and body as `key`.
    pub fn sign(
        key: &IdentitySigningKey,
        header: EnvelopeHeader,
        body: Vec<u8>,
    ) -> Result<Self, EnvelopeError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(EnvelopeError::TooLarge { len: body.len() });
        }
        if !header.hlc.is_valid() {
            return Err(EnvelopeError::HlcOutOfRange);
        }
        Ok(SignedObject {
            author: key.public_key(),
            signature: key.sign(&signing_message(&header, &body)),
            header,
            body,
        })
    }

    /// The bytes to seal: the fixed fields, prev if present, then the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity(FIXED_LEN + 32 + self.body.len());
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&self.author.to_bytes());
        out.extend_from_slice(&self.signature.to_bytes());
        out.extend_from_slice(h.library_id.as_bytes());
        out.push(h.kind.to_byte());
        out.extend_from_slice(h.device.as_bytes());
        out.extend_from_slice(&h.seq.to_le_bytes());
        out.extend_from_slice(&h.hlc.as_u64().to_le_bytes());
        out.extend_from_slice(&h.epoch.0.to_le_bytes());
        match &h.prev {
            Some(prev) => {
                out.push(1);
                out.extend_from_slice(&prev.0);
            }
            None => out.push(0),
        }
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses envelope bytes. Checks, in order: length, version, author key,
    /// kind, HLC range, prev flag, body size. The signature is checked by
    /// [`SignedObject::verify`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Self::parse(bytes, None)
    }

    /// [`SignedObject::from_bytes`] for an object expected to be signed by
    /// `expected`: an author field of the same bytes takes that key as it
    /// is, instead of decompressing the point again (a pull reads thousands
    /// of one device's batches); any other author is parsed as usual.
    pub fn from_bytes_expecting(
        bytes: &[u8],
        expected: &IdentityPublicKey,
    ) -> Result<Self, EnvelopeError> {
        Self::parse(bytes, Some(expected))
    }

    fn parse(bytes: &[u8], expected: Option<&IdentityPublicKey>) -> Result<Self, EnvelopeError> {
        let mut rest = bytes;
        let [version] = take::<1>(&mut rest)?;
        if version != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedVersion { version });
        }
        if bytes.len() < FIXED_LEN {
            return Err(EnvelopeError::Truncated);
        }
        let author_bytes = take::<32>(&mut rest)?;
        let author = match expected {
            Some(key) if key.to_bytes() == author_bytes => *key,
            _ => IdentityPublicKey::from_bytes(&author_bytes)
                .map_err(|_| EnvelopeError::InvalidAuthor)?,
        };
        let signature = Signature::from_bytes(take::<64>(&mut rest)?);
        let library_id = LibraryId::from_bytes(take::<16>(&mut rest)?);
        let [kind] = take::<1>(&mut rest)?;
        let kind = SignedKind::from_byte(kind).ok_or(EnvelopeError::UnknownKind { byte: kind })?;
        let device = DeviceId::from_bytes(take::<16>(&mut rest)?);
        let seq = u64::from_le_bytes(take::<8>(&mut rest)?);
        let hlc = Timestamp::try_from_u64(u64::from_le_bytes(take::<8>(&mut rest)?))
            .map_err(|_| EnvelopeError::HlcOutOfRange)?;
        let epoch = KeyEpoch(u32::from_le_bytes(take::<4>(&mut rest)?));
        let prev = match take::<1>(&mut rest)? {
            [0] => None,
            [1] => Some(BatchHash(take::<32>(&mut rest)?)),
            [byte] => return Err(EnvelopeError::BadPrevFlag { byte }),
        };
        if rest.len() > MAX_BODY_BYTES {
            return Err(EnvelopeError::TooLarge { len: rest.len() });
        }
        Ok(SignedObject {
            author,
            signature,
            header: EnvelopeHeader {
                library_id,
                kind,
                device,
                seq,
                hlc,
                epoch,
                prev,
            },
            body: rest.to_vec(),
        })
    }

    /// The claimed author (unverified until [`SignedObject::verify`]).
    pub fn author(&self) -> &IdentityPublicKey {
        &self.author
    }

    /// Verifies the signature, then that the envelope was signed for
    /// `library_id`, for the kind, device and seq of the place the object
    /// was read from, and for the epoch it was sealed under (all three known
    /// from the sync-object header, which the AEAD authenticates).
    pub fn verify(
        self,
        library_id: LibraryId,
        place: (SignedKind, DeviceId, u64),
        sealed_epoch: KeyEpoch,
    ) -> Result<VerifiedObject, EnvelopeError> {
        self.author
            .verify(&signing_message(&self.header, &self.body), &self.signature)
            .map_err(|_| EnvelopeError::BadSignature {
                author: Box::new(self.author),
            })?;
        let checked = self.check_unsigned(library_id, place, sealed_epoch)?;
        Ok(VerifiedObject {
            author: checked.author,
            header: checked.header,
            body: checked.body,
        })
    }

    /// Checks what [`SignedObject::verify`] checks except the signature:
    /// the library, the place and the epoch. The result is an
    /// [`UnsignedObject`], trusted only once its body is authenticated
    /// another way.
    pub fn check_unsigned(
        self,
        library_id: LibraryId,
        place: (SignedKind, DeviceId, u64),
        sealed_epoch: KeyEpoch,
    ) -> Result<UnsignedObject, EnvelopeError> {
        let h = &self.header;
        if h.library_id != library_id {
            return Err(EnvelopeError::WrongLibrary {
                expected: library_id,
                found: h.library_id,
            });
        }
        let (kind, device, seq) = place;
        if (h.kind, h.device, h.seq) != (kind, device, seq) {
            return Err(EnvelopeError::WrongPlace {
                expected_kind: kind,
                expected_device: device,
                expected_seq: seq,
                found_kind: h.kind,
                found_device: h.device,
                found_seq: h.seq,
            });
        }
        if h.epoch != sealed_epoch {
            return Err(EnvelopeError::WrongEpoch {
                expected: sealed_epoch,
                found: h.epoch,
            });
        }
        Ok(UnsignedObject {
            author: self.author,
            header: self.header,
            body: self.body,
        })
    }
}

impl VerifiedObject {
    /// The author whose signature verified.
    pub fn author(&self) -> &IdentityPublicKey {
        &self.author
    }

    /// The signed header.
    pub fn header(&self) -> &EnvelopeHeader {
        &self.header
    }

    /// The signed body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The signed body, owned.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }
}

/// The author each device id was first seen signed by. The caller keeps it
/// (for example in its sync state) and hands it back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceBindings {
    authors: BTreeMap<DeviceId, IdentityPublicKey>,
}

impl DeviceBindings {
    /// No device bound yet.
    pub fn new() -> Self {
        DeviceBindings::default()
    }

    /// Binds the device of a verified object to its author, or refuses an
    /// object of a device already bound to another author.
    pub fn bind(&mut self, object: &VerifiedObject) -> Result<(), EnvelopeError> {
        let device = object.header.device;
        match self.authors.get(&device) {
            Some(bound) if *bound != object.author => Err(EnvelopeError::DeviceOfAnotherAuthor {
                device,
                bound: Box::new(*bound),
                claimed: Box::new(object.author),
            }),
            Some(_) => Ok(()),
            None => {
                self.authors.insert(device, object.author);
                Ok(())
            }
        }
    }

    /// The author `device` is bound to.
    pub fn author_of(&self, device: DeviceId) -> Option<&IdentityPublicKey> {
        self.authors.get(&device)
    }

    /// Every binding, ordered by device, for the caller to store.
    pub fn iter(&self) -> impl Iterator<Item = (DeviceId, IdentityPublicKey)> + '_ {
        self.authors.iter().map(|(d, a)| (*d, *a))
    }
}

impl FromIterator<(DeviceId, IdentityPublicKey)> for DeviceBindings {
    /// Bindings as stored (a device listed twice keeps its first author).
    fn from_iter<I: IntoIterator<Item = (DeviceId, IdentityPublicKey)>>(iter: I) -> Self {
        let mut authors = BTreeMap::new();
        for (device, author) in iter {
            authors.entry(device).or_insert(author);
        }
        DeviceBindings { authors }
    }
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

    fn header() -> EnvelopeHeader {
        EnvelopeHeader {
            library_id: LIB,
            kind: SignedKind::Batch,
            device: DeviceId::from_bytes([5; 16]),
            seq: 7,
            hlc: Timestamp::from_unix_millis(1_800_000_000_000).unwrap(),
            epoch: KeyEpoch(2),
            prev: Some(BatchHash([8; 32])),
        }
    }

    fn place() -> (SignedKind, DeviceId, u64) {
        (SignedKind::Batch, DeviceId::from_bytes([5; 16]), 7)
    }

    #[test]
    fn parsing_with_an_expected_author_gives_the_same_object() {
        let signed = SignedObject::sign(&key(1), header(), b"body".to_vec()).unwrap();
        let bytes = signed.to_bytes();
        for expected in [key(1).public_key(), key(2).public_key()] {
            assert_eq!(
                SignedObject::from_bytes_expecting(&bytes, &expected).unwrap(),
                SignedObject::from_bytes(&bytes).unwrap()
            );
        }
    }

    #[test]
    fn check_unsigned_checks_the_place_but_not_the_signature() {
        let signed = SignedObject::sign(&key(1), header(), b"body".to_vec()).unwrap();
        let mut bytes = signed.to_bytes();
        // Inside the signature (bytes 33..97).
        bytes[40] ^= 0x01;
        let forged = || SignedObject::from_bytes(&bytes).unwrap();
        assert!(matches!(
            forged().verify(LIB, place(), KeyEpoch(2)),
            Err(EnvelopeError::BadSignature { .. })
        ));
        let unsigned = forged().check_unsigned(LIB, place(), KeyEpoch(2)).unwrap();
        assert_eq!(unsigned.claimed_body(), b"body");
        assert_eq!(*unsigned.claimed_header(), header());
        assert_eq!(*unsigned.claimed_author(), key(1).public_key());
        assert!(matches!(
            forged().check_unsigned(LIB, place(), KeyEpoch(3)),
            Err(EnvelopeError::WrongEpoch { .. })
        ));
        let elsewhere = (SignedKind::Batch, DeviceId::from_bytes([5; 16]), 8);
        assert!(matches!(
            forged().check_unsigned(LIB, elsewhere, KeyEpoch(2)),
            Err(EnvelopeError::WrongPlace { .. })
        ));
    }

    fn signed() -> SignedObject {
        SignedObject::sign(&key(1), header(), b"batch bytes".to_vec()).unwrap()
    }

    #[test]
    fn an_envelope_round_trips_and_verifies_exposing_what_was_signed() {
        let obj = SignedObject::from_bytes(&signed().to_bytes()).unwrap();
        assert_eq!(obj, signed());
        let verified = obj.verify(LIB, place(), KeyEpoch(2)).unwrap();
        assert_eq!(verified.author(), &key(1).public_key());
        assert_eq!(verified.header(), &header());
        assert_eq!(verified.body(), b"batch bytes");
    }

    #[test]
    fn changing_any_signed_field_breaks_the_signature() {
        let bytes = signed().to_bytes();
        // Every byte after the signature is signed (library .. body).
        for i in (1 + 32 + 64)..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let Ok(obj) = SignedObject::from_bytes(&b) else {
                continue;
            };
            assert!(
                matches!(
                    obj.verify(LIB, place(), KeyEpoch(2)),
                    Err(EnvelopeError::BadSignature { .. })
                ),
                "byte {i}"
            );
        }
        // Another author's key in place of the signer's.
        let mut b = bytes.clone();
        b[1..33].copy_from_slice(&key(2).public_key().to_bytes());
        assert!(matches!(
            SignedObject::from_bytes(&b)
                .unwrap()
                .verify(LIB, place(), KeyEpoch(2)),
            Err(EnvelopeError::BadSignature { .. })
        ));
    }

    #[test]
    fn a_verified_envelope_read_at_another_place_library_or_epoch_is_refused() {
        let other_lib = LibraryId::from_bytes([4; 16]);
        assert!(matches!(
            signed().verify(other_lib, place(), KeyEpoch(2)),
            Err(EnvelopeError::WrongLibrary { .. })
        ));
        let moved = (SignedKind::Batch, DeviceId::from_bytes([5; 16]), 8);
        assert!(matches!(
            signed().verify(LIB, moved, KeyEpoch(2)),
            Err(EnvelopeError::WrongPlace { found_seq: 7, .. })
        ));
        let as_head = (SignedKind::Head, DeviceId::from_bytes([5; 16]), 7);
        assert!(matches!(
            signed().verify(LIB, as_head, KeyEpoch(2)),
            Err(EnvelopeError::WrongPlace { .. })
        ));
        assert_eq!(
            signed().verify(LIB, place(), KeyEpoch(3)),
            Err(EnvelopeError::WrongEpoch {
                expected: KeyEpoch(3),
                found: KeyEpoch(2)
            })
        );
    }

    #[test]
    fn malformed_envelopes_give_typed_errors() {
        let bytes = signed().to_bytes();
        assert_eq!(
            SignedObject::from_bytes(&bytes[..FIXED_LEN - 1]),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(
            SignedObject::from_bytes(&bytes[..FIXED_LEN + 3]),
            Err(EnvelopeError::Truncated)
        );
        assert_eq!(SignedObject::from_bytes(&[]), Err(EnvelopeError::Truncated));
        let mut b = bytes.clone();
        b[0] = 9;
        assert_eq!(
            SignedObject::from_bytes(&b),
            Err(EnvelopeError::UnsupportedVersion { version: 9 })
        );
        let kind_at = 1 + 32 + 64 + 16;
        // 4 is an image: not a kind anyone signs.
        let mut b = bytes.clone();
        b[kind_at] = 4;
        assert_eq!(
            SignedObject::from_bytes(&b),
            Err(EnvelopeError::UnknownKind { byte: 4 })
        );
        let hlc_at = kind_at + 1 + 16 + 8;
        let mut b = bytes.clone();
        b[hlc_at..hlc_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            SignedObject::from_bytes(&b),
            Err(EnvelopeError::HlcOutOfRange)
        );
        let flag_at = FIXED_LEN - 1;
        let mut b = bytes.clone();
        b[flag_at] = 2;
        assert_eq!(
            SignedObject::from_bytes(&b),
            Err(EnvelopeError::BadPrevFlag { byte: 2 })
        );
        let bad_key = (0u8..=255)
            .map(|x| [x; 32])
            .find(|k| IdentityPublicKey::from_bytes(k).is_err())
            .unwrap();
        let mut b = bytes.clone();
        b[1..33].copy_from_slice(&bad_key);
        assert_eq!(
            SignedObject::from_bytes(&b),
            Err(EnvelopeError::InvalidAuthor)
        );
        assert_eq!(
            SignedObject::sign(&key(1), header(), vec![0; MAX_BODY_BYTES + 1]),
            Err(EnvelopeError::TooLarge {
                len: MAX_BODY_BYTES + 1
            })
        );
    }

    #[test]
    fn a_device_is_bound_to_the_author_of_its_first_object() {
        let mut bindings = DeviceBindings::new();
        let mine = signed().verify(LIB, place(), KeyEpoch(2)).unwrap();
        bindings.bind(&mine).unwrap();
        bindings.bind(&mine).unwrap();
        let theirs = SignedObject::sign(&key(2), header(), b"x".to_vec())
            .unwrap()
            .verify(LIB, place(), KeyEpoch(2))
            .unwrap();
        assert_eq!(
            bindings.bind(&theirs),
            Err(EnvelopeError::DeviceOfAnotherAuthor {
                device: DeviceId::from_bytes([5; 16]),
                bound: Box::new(key(1).public_key()),
                claimed: Box::new(key(2).public_key()),
            })
        );
        let stored: DeviceBindings = bindings.iter().collect();
        assert_eq!(stored, bindings);
        assert_eq!(
            stored.author_of(DeviceId::from_bytes([5; 16])),
            Some(&key(1).public_key())
        );
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_or_mutated_envelopes_never_panics(
            noise in proptest::collection::vec(any::<u8>(), 0..300),
            at in any::<prop::sample::Index>(),
            x in 1u8..=255,
        ) {
            let _ = SignedObject::from_bytes(&noise);
            let mut b = signed().to_bytes();
            let i = at.index(b.len());
            b[i] ^= x;
            if let Ok(obj) = SignedObject::from_bytes(&b) {
                prop_assert!(obj.verify(LIB, place(), KeyEpoch(2)).is_err());
            }
            let _ = SignedObject::from_bytes(&b[..i]);
        }
    }
}
