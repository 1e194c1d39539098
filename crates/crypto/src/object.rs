//! The sync-object format: what heads, op batches, checkpoints, images,
//! membership entries and key wraps look like in the bucket.
//!
//! An object is a 76-byte header followed by chunks of the chunked
//! construction ([`crate::chunked`]), each sealed with associated data
//! `header || chunk_index (u64 LE) || final_flag (u8)`. The header names the
//! object's kind and place (device, seq), the key epoch and the key's
//! fingerprint, so a moved or swapped object ([`ObjectError::WrongPlace`]), a
//! wrong key ([`ObjectError::WrongKey`], found before decrypting), a
//! truncation at any point ([`ObjectError::Truncated`]), appended bytes
//! ([`ObjectError::TrailingData`]) and modified bytes
//! ([`ObjectError::Tampered`]) are each reported as such. Layout and vectors:
//! `docs/FORMAT-crypto.md`.

use crate::chunked::{
    open_chunk, read_full, seal_chunk, BaseNonce, CHUNK_SIZE, CIPHERTEXT_CHUNK_LEN, NONCE_LEN,
    TAG_LEN,
};
use crate::error::{ChunkedError, ObjectError};
use crate::keys::{ContentKey, EpochKeys, KeyEpoch, KeyFingerprint, LibraryKey, FINGERPRINT_LEN};
use chacha20poly1305::XChaCha20Poly1305;
use std::io::{self, Read, Write};

/// First four bytes of every sync object.
pub const MAGIC: [u8; 4] = *b"BAEO";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 76;
/// Bytes of the device (or other owner) id in a place.
pub const DEVICE_ID_LEN: usize = 16;

/// What an object is; stored as one byte in the header and bound into every
/// chunk's associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ObjectKind {
    /// `heads/{device_id}`: a device's latest seq and cursors.
    Head = 1,
    /// `ops/{device_id}/{seq}`: one batch of ops.
    OpBatch = 2,
    /// `checkpoints/{id}`: a compacted snapshot (may be large; stream it).
    Checkpoint = 3,
    /// `images/...`: image bytes.
    Image = 4,
    /// `membership/{author}/{seq}`: a membership chain entry.
    Membership = 5,
    /// `keys/{member}`: a wrapped library key (phase 2).
    KeyWrap = 6,
    /// `library`: the library marker (which library a bucket holds).
    LibraryMarker = 7,
}

impl ObjectKind {
    /// The header byte of this kind.
    pub fn to_byte(self) -> u8 {
        self as u8
    }

    /// The kind a header byte names, if any.
    pub fn from_byte(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => ObjectKind::Head,
            2 => ObjectKind::OpBatch,
            3 => ObjectKind::Checkpoint,
            4 => ObjectKind::Image,
            5 => ObjectKind::Membership,
            6 => ObjectKind::KeyWrap,
            7 => ObjectKind::LibraryMarker,
            _ => return None,
        })
    }
}

/// Where an object belongs: its kind, the 16-byte id of the device (or other
/// owner) in its path, and its sequence number. Objects whose path has no seq
/// use 0; owners with longer ids (public keys) use [`ObjectPlace::hashed_owner`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ObjectPlace {
    /// What the object is.
    pub kind: ObjectKind,
    /// The device (or owner) id.
    pub device: [u8; DEVICE_ID_LEN],
    /// The sequence number within that device (or owner).
    pub seq: u64,
}

impl ObjectPlace {
    /// A place for an owner whose id is not 16 bytes (for example a 32-byte
    /// public key): the owner id is BLAKE3-derived down to 16 bytes.
    pub fn hashed_owner(kind: ObjectKind, owner: &[u8], seq: u64) -> Self {
        let full = blake3::derive_key("bae 2025 object place owner id v1", owner);
        let mut device = [0u8; DEVICE_ID_LEN];
        device.copy_from_slice(&full[..DEVICE_ID_LEN]);
        ObjectPlace { kind, device, seq }
    }
}

/// A parsed object header (readable without a key, for example to pick the
/// key epoch or report where an object claims to belong).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectHeader {
    /// Format version (always [`FORMAT_VERSION`] once parsed).
    pub version: u8,
    /// Key epoch the object was sealed under.
    pub epoch: KeyEpoch,
    /// Where the object says it belongs.
    pub place: ObjectPlace,
    /// Fingerprint of the key it was sealed with.
    pub fingerprint: KeyFingerprint,
    /// Base nonce of its chunks.
    pub nonce: BaseNonce,
}

impl ObjectHeader {
    /// The 76 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = self.version;
        h[5] = self.place.kind.to_byte();
        // h[6..8]: flags, all zero in version 1.
        h[8..12].copy_from_slice(&self.epoch.0.to_le_bytes());
        h[12..28].copy_from_slice(&self.place.device);
        h[28..36].copy_from_slice(&self.place.seq.to_le_bytes());
        h[36..52].copy_from_slice(self.fingerprint.as_bytes());
        h[52..76].copy_from_slice(self.nonce.as_bytes());
        h
    }

    /// Parses the start of an object. Checks, in order: length, magic,
    /// version, flags, kind.
    pub fn parse(bytes: &[u8]) -> Result<Self, ObjectError> {
        let prefix = &bytes[..bytes.len().min(MAGIC.len())];
        if prefix != &MAGIC[..prefix.len()] {
            return Err(ObjectError::NotAnObject);
        }
        let h: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(ObjectError::Truncated)?;
        if h[4] != FORMAT_VERSION {
            return Err(ObjectError::UnsupportedVersion { version: h[4] });
        }
        let flags = u16::from_le_bytes([h[6], h[7]]);
        if flags != 0 {
            return Err(ObjectError::UnsupportedFlags { flags });
        }
        let kind = ObjectKind::from_byte(h[5]).ok_or(ObjectError::UnknownKind { byte: h[5] })?;
        Ok(ObjectHeader {
            version: h[4],
            epoch: KeyEpoch(u32::from_le_bytes(array(&h[8..12]))),
            place: ObjectPlace {
                kind,
                device: array(&h[12..28]),
                seq: u64::from_le_bytes(array(&h[28..36])),
            },
            fingerprint: KeyFingerprint::from_bytes(array::<FINGERPRINT_LEN>(&h[36..52])),
            nonce: BaseNonce::from_bytes(array::<NONCE_LEN>(&h[52..76])),
        })
    }
}

/// Bytes of the sync object sealing `plaintext_len` bytes of plaintext:
/// `76 + len + 16·max(1, ceil(len/65536))` (header, plaintext, one tag per
/// chunk); `u64::MAX` when that does not fit a `u64`. A reader that accepts
/// at most `n` bytes of plaintext accepts objects of `sealed_len(n)` bytes.
pub const fn sealed_len(plaintext_len: u64) -> u64 {
    let chunks = plaintext_len.div_ceil(CHUNK_SIZE as u64);
    let chunks = if chunks == 0 { 1 } else { chunks };
    plaintext_len
        .saturating_add(TAG_LEN as u64 * chunks)
        .saturating_add(HEADER_LEN as u64)
}

/// Copies a slice of known length into an array (lengths are fixed by the
/// header layout, so the copy never truncates).
fn array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Associated data of one chunk: header, chunk index, final flag.
fn chunk_aad(header: &[u8; HEADER_LEN], index: u64, last: bool) -> [u8; HEADER_LEN + 9] {
    let mut aad = [0u8; HEADER_LEN + 9];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_le_bytes());
    aad[HEADER_LEN + 8] = u8::from(last);
    aad
}

fn header_for(
    key: &LibraryKey,
    epoch: KeyEpoch,
    place: &ObjectPlace,
    nonce: BaseNonce,
) -> ObjectHeader {
    ObjectHeader {
        version: FORMAT_VERSION,
        epoch,
        place: *place,
        fingerprint: key.fingerprint(),
        nonce,
    }
}

/// Seals a plaintext as the sync object at `place`, under the library key
/// of `epoch` and a fresh random nonce.
pub fn seal_object(
    key: &LibraryKey,
    epoch: KeyEpoch,
    place: &ObjectPlace,
    plaintext: &[u8],
) -> Vec<u8> {
    seal_object_with_nonce(key, epoch, place, &BaseNonce::random(), plaintext)
}

/// [`seal_object`] with a given nonce: for test vectors only; never reuse a
/// nonce with the same key.
pub fn seal_object_with_nonce(
    key: &LibraryKey,
    epoch: KeyEpoch,
    place: &ObjectPlace,
    nonce: &BaseNonce,
    plaintext: &[u8],
) -> Vec<u8> {
    let header = header_for(key, epoch, place, *nonce).to_bytes();
    let cipher = key.cipher();
    let count = plaintext.len().div_ceil(CHUNK_SIZE).max(1);
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN * count);
    out.extend_from_slice(&header);
    for index in 0..count {
        let start = index * CHUNK_SIZE;
        let chunk = &plaintext[start..(start + CHUNK_SIZE).min(plaintext.len())];
        let aad = chunk_aad(&header, index as u64, index + 1 == count);
        let at = out.len();
        out.extend_from_slice(chunk);
        let tag = seal_chunk(&cipher, nonce, index as u64, &aad, &mut out[at..]);
        out.extend_from_slice(&tag);
    }
    out
}

/// Seals everything `reader` yields as the sync object at `place`, holding
/// two chunks in memory (one of look-ahead, to know which chunk is final).
/// Returns the plaintext length. Byte-identical to [`seal_object`] for the
/// same nonce.
pub fn seal_object_stream<R: Read, W: Write>(
    key: &LibraryKey,
    epoch: KeyEpoch,
    place: &ObjectPlace,
    mut reader: R,
    mut writer: W,
) -> Result<u64, ObjectError> {
    let nonce = BaseNonce::random();
    let header = header_for(key, epoch, place, nonce).to_bytes();
    let cipher = key.cipher();
    writer.write_all(&header)?;
    let (mut cur, mut next) = (vec![0u8; CHUNK_SIZE], vec![0u8; CHUNK_SIZE]);
    let mut n = read_full(&mut reader, &mut cur)?;
    let (mut index, mut total) = (0u64, 0u64);
    loop {
        let m = if n == CHUNK_SIZE {
            read_full(&mut reader, &mut next)?
        } else {
            0
        };
        let last = m == 0;
        let aad = chunk_aad(&header, index, last);
        let tag = seal_chunk(&cipher, &nonce, index, &aad, &mut cur[..n]);
        writer.write_all(&cur[..n])?;
        writer.write_all(&tag)?;
        total += n as u64;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
        n = m;
        index += 1;
    }
    writer.flush()?;
    Ok(total)
}

/// Opens a sync object expected at `expected`, with the key of the epoch its
/// header names. See [`ObjectError`] for what each failure means.
pub fn open_object<K: EpochKeys + ?Sized>(
    keys: &K,
    expected: &ObjectPlace,
    bytes: &[u8],
) -> Result<Vec<u8>, ObjectError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_sub(HEADER_LEN));
    open_object_stream(keys, expected, bytes, &mut out, u64::MAX)?;
    Ok(out)
}

/// Checks a header against the expected place and the known keys (steps 3
/// and 4 of the reading order in `docs/FORMAT-crypto.md`); returns the key
/// to decrypt with. Public so a reader can refuse a misplaced or wrongly
/// keyed object from its first [`HEADER_LEN`] bytes (a ranged read) before
/// downloading the rest; opening the object checks it again.
pub fn check_header<'k, K: EpochKeys + ?Sized>(
    keys: &'k K,
    expected: &ObjectPlace,
    header: &ObjectHeader,
) -> Result<&'k LibraryKey, ObjectError> {
    if header.place != *expected {
        return Err(ObjectError::WrongPlace {
            expected: *expected,
            found: header.place,
        });
    }
    let key = keys
        .key_for_epoch(header.epoch)
        .ok_or(ObjectError::UnknownEpoch {
            epoch: header.epoch,
        })?;
    let have = key.fingerprint();
    if have != header.fingerprint {
        return Err(ObjectError::WrongKey {
            epoch: header.epoch,
            found: header.fingerprint,
            have,
        });
    }
    Ok(key)
}

/// Opens a sync object from `reader` into `writer`, one chunk at a time,
/// refusing more than `max_plaintext` bytes of plaintext
/// ([`ObjectError::TooLarge`]). Each chunk is authenticated before it is
/// written, but truncation or tampering can surface after earlier chunks were
/// written: discard the output on error. Returns the plaintext length.
pub fn open_object_stream<K: EpochKeys + ?Sized, R: Read, W: Write>(
    keys: &K,
    expected: &ObjectPlace,
    mut reader: R,
    mut writer: W,
    max_plaintext: u64,
) -> Result<u64, ObjectError> {
    let mut head = [0u8; HEADER_LEN];
    let got = read_full(&mut reader, &mut head)?;
    let header = ObjectHeader::parse(&head[..got])?;
    let key = check_header(keys, expected, &header)?;
    let cipher = key.cipher();
    // Buffers filled by reading, not zeroed first: most objects are one
    // small chunk, and zeroing 64 KiB twice cost more than opening them.
    let (mut cur, mut next) = (Vec::with_capacity(CIPHERTEXT_CHUNK_LEN), Vec::new());
    read_chunk(&mut reader, &mut cur)?;
    let (mut index, mut total) = (0u64, 0u64);
    loop {
        if cur.len() == CIPHERTEXT_CHUNK_LEN {
            read_chunk(&mut reader, &mut next)?;
        } else {
            next.clear();
        }
        let last = next.is_empty();
        let pt_len = cur
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(ObjectError::Truncated)? as u64;
        if total.saturating_add(pt_len) > max_plaintext {
            return Err(ObjectError::TooLarge { max: max_plaintext });
        }
        open_object_chunk(&cipher, &header, &head, index, last, &mut cur)?;
        writer.write_all(&cur)?;
        total += pt_len;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
        index += 1;
    }
    writer.flush()?;
    Ok(total)
}

/// Replaces `buf` with the next ciphertext chunk of `reader` (shorter at
/// the end, empty past it).
fn read_chunk<R: Read>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    reader
        .by_ref()
        .take(CIPHERTEXT_CHUNK_LEN as u64)
        .read_to_end(buf)
        .map(drop)
}

/// Opens one chunk; on failure, tells truncation (the chunk we took as final
/// was sealed as non-final) and appended bytes (the chunk we took as
/// non-final was sealed as final) apart from tampering.
fn open_object_chunk(
    cipher: &XChaCha20Poly1305,
    header: &ObjectHeader,
    head: &[u8; HEADER_LEN],
    index: u64,
    last: bool,
    buf: &mut Vec<u8>,
) -> Result<(), ObjectError> {
    let aad = chunk_aad(head, index, last);
    match open_chunk(cipher, &header.nonce, index, &aad, buf) {
        Ok(()) => return Ok(()),
        Err(ChunkedError::Truncated) => return Err(ObjectError::Truncated),
        Err(_) => {}
    }
    let flipped = chunk_aad(head, index, !last);
    match open_chunk(cipher, &header.nonce, index, &flipped, buf) {
        Ok(()) if last => Err(ObjectError::Truncated),
        Ok(()) => Err(ObjectError::TrailingData),
        Err(_) => Err(ObjectError::Tampered { chunk: index }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyRing;
    use crate::test_support::{fixed_key, fixed_nonce, pattern};
    use proptest::prelude::*;

    const EPOCH: KeyEpoch = KeyEpoch(2);

    fn place(seq: u64) -> ObjectPlace {
        ObjectPlace {
            kind: ObjectKind::OpBatch,
            device: [0xd0; 16],
            seq,
        }
    }

    fn open(bytes: &[u8]) -> Result<Vec<u8>, ObjectError> {
        let key = fixed_key();
        open_object(&(EPOCH, &key), &place(7), bytes)
    }

    fn sealed(len: usize) -> Vec<u8> {
        seal_object(&fixed_key(), EPOCH, &place(7), &pattern(len))
    }

    #[test]
    fn sealed_len_is_the_length_of_the_sealed_object() {
        for len in [0, 1, 15, 16, 17, 65535, 65536, 65537, 131072, 200000] {
            assert_eq!(sealed(len).len() as u64, sealed_len(len as u64), "{len}");
        }
        assert_eq!(sealed_len(0), (HEADER_LEN + TAG_LEN) as u64);
        assert_eq!(sealed_len(u64::MAX), u64::MAX);
    }

    #[test]
    fn check_header_refuses_a_misplaced_or_wrongly_keyed_header_alone() {
        let obj = sealed(100_000);
        let header = ObjectHeader::parse(&obj[..HEADER_LEN]).unwrap();
        let key = fixed_key();
        assert!(check_header(&(EPOCH, &key), &place(7), &header).is_ok());
        assert!(matches!(
            check_header(&(EPOCH, &key), &place(8), &header),
            Err(ObjectError::WrongPlace { .. })
        ));
        let other = LibraryKey::generate();
        assert!(matches!(
            check_header(&(EPOCH, &other), &place(7), &header),
            Err(ObjectError::WrongKey { .. })
        ));
        assert!(matches!(
            check_header(&(KeyEpoch(3), &key), &place(7), &header),
            Err(ObjectError::UnknownEpoch { .. })
        ));
    }

    #[test]
    fn header_layout_is_76_bytes_in_documented_order() {
        let obj = seal_object_with_nonce(&fixed_key(), EPOCH, &place(7), &fixed_nonce(), b"");
        assert_eq!(obj.len(), HEADER_LEN + TAG_LEN);
        assert_eq!(&obj[0..4], b"BAEO");
        assert_eq!(obj[4], 1);
        assert_eq!(obj[5], ObjectKind::OpBatch.to_byte());
        assert_eq!(&obj[6..8], &[0, 0]);
        assert_eq!(&obj[8..12], &2u32.to_le_bytes());
        assert_eq!(&obj[12..28], &[0xd0; 16]);
        assert_eq!(&obj[28..36], &7u64.to_le_bytes());
        assert_eq!(&obj[36..52], fixed_key().fingerprint().as_bytes());
        assert_eq!(&obj[52..76], fixed_nonce().as_bytes());
        assert_eq!(open(&obj).unwrap(), b"");
    }

    #[test]
    fn moved_or_swapped_object_is_wrong_place() {
        let obj = sealed(10);
        let key = fixed_key();
        for elsewhere in [
            place(8),
            ObjectPlace {
                device: [1; 16],
                ..place(7)
            },
            ObjectPlace {
                kind: ObjectKind::Head,
                ..place(7)
            },
        ] {
            let err = open_object(&(EPOCH, &key), &elsewhere, &obj).unwrap_err();
            assert!(matches!(err, ObjectError::WrongPlace { found, .. } if found == place(7)));
        }
    }

    #[test]
    fn header_edited_to_the_new_place_is_tampered() {
        let mut obj = sealed(10);
        obj[28] = 8; // seq 7 -> 8
        let key = fixed_key();
        let err = open_object(&(EPOCH, &key), &place(8), &obj).unwrap_err();
        assert!(matches!(err, ObjectError::Tampered { chunk: 0 }));
    }

    #[test]
    fn wrong_key_and_unknown_epoch_are_told_apart() {
        let obj = sealed(10);
        let other = LibraryKey::from_bytes([9; 32]);
        let err = open_object(&(EPOCH, &other), &place(7), &obj).unwrap_err();
        assert!(matches!(err, ObjectError::WrongKey { epoch: EPOCH, .. }));
        let key = fixed_key();
        let err = open_object(&(KeyEpoch(1), &key), &place(7), &obj).unwrap_err();
        assert!(matches!(err, ObjectError::UnknownEpoch { epoch: EPOCH }));
        // An attacker relabelling the epoch meets the fingerprint check.
        let mut ring = KeyRing::new();
        ring.insert(KeyEpoch(1), other.clone());
        ring.insert(EPOCH, key.clone());
        assert_eq!(ring.current().map(|(e, _)| e), Some(EPOCH));
        let mut relabelled = obj.clone();
        relabelled[8] = 1;
        let err = open_object(&ring, &place(7), &relabelled).unwrap_err();
        assert!(matches!(
            err,
            ObjectError::WrongKey {
                epoch: KeyEpoch(1),
                ..
            }
        ));
        assert_eq!(open_object(&ring, &place(7), &obj).unwrap(), pattern(10));
    }

    #[test]
    fn bad_header_fields_have_their_own_errors() {
        let obj = sealed(10);
        let edit = |at: usize, v: u8| {
            let mut o = obj.clone();
            o[at] = v;
            open(&o).unwrap_err()
        };
        assert!(matches!(edit(0, b'X'), ObjectError::NotAnObject));
        assert!(matches!(
            edit(4, 2),
            ObjectError::UnsupportedVersion { version: 2 }
        ));
        assert!(matches!(edit(5, 99), ObjectError::UnknownKind { byte: 99 }));
        assert!(matches!(
            edit(6, 1),
            ObjectError::UnsupportedFlags { flags: 1 }
        ));
        assert!(matches!(edit(40, 0), ObjectError::WrongKey { .. }));
        assert!(matches!(open(b"BA"), Err(ObjectError::Truncated)));
        assert!(matches!(open(b"{\"json\"}"), Err(ObjectError::NotAnObject)));
        assert!(matches!(open(b""), Err(ObjectError::Truncated)));
    }

    #[test]
    fn truncation_at_every_chunk_boundary_is_truncated() {
        let obj = sealed(3 * CHUNK_SIZE + 5);
        for chunks in 0..4 {
            let cut = &obj[..HEADER_LEN + chunks * CIPHERTEXT_CHUNK_LEN];
            assert!(
                matches!(open(cut), Err(ObjectError::Truncated)),
                "cut after {chunks} chunks"
            );
        }
        // A full-size final chunk too: cut before it.
        let obj = sealed(2 * CHUNK_SIZE);
        assert!(matches!(
            open(&obj[..HEADER_LEN + CIPHERTEXT_CHUNK_LEN]),
            Err(ObjectError::Truncated)
        ));
        // Inside the header.
        for at in [1, 4, 40, HEADER_LEN - 1] {
            assert!(matches!(open(&obj[..at]), Err(ObjectError::Truncated)));
        }
    }

    #[test]
    fn appended_bytes_after_a_full_final_chunk_are_trailing_data() {
        for len in [CHUNK_SIZE, 2 * CHUNK_SIZE] {
            let mut obj = sealed(len);
            obj.push(0);
            assert!(matches!(open(&obj), Err(ObjectError::TrailingData)));
            obj.extend_from_slice(&[0; 100]);
            assert!(matches!(open(&obj), Err(ObjectError::TrailingData)));
        }
        // Bytes merged into a short final chunk cannot be told from tampering.
        let mut obj = sealed(10);
        obj.push(0);
        assert!(matches!(
            open(&obj),
            Err(ObjectError::Tampered { chunk: 0 })
        ));
    }

    #[test]
    fn reordered_chunks_are_tampered() {
        let obj = sealed(3 * CHUNK_SIZE);
        let c = |i: usize| {
            &obj[HEADER_LEN + i * CIPHERTEXT_CHUNK_LEN..HEADER_LEN + (i + 1) * CIPHERTEXT_CHUNK_LEN]
        };
        let swapped = [&obj[..HEADER_LEN], c(1), c(0), c(2)].concat();
        assert!(matches!(
            open(&swapped),
            Err(ObjectError::Tampered { chunk: 0 })
        ));
    }

    #[test]
    fn streaming_open_enforces_the_size_limit() {
        let obj = sealed(2 * CHUNK_SIZE + 1);
        let key = fixed_key();
        let keys = (EPOCH, &key);
        let limit = 2 * CHUNK_SIZE as u64;
        let err = open_object_stream(&keys, &place(7), &obj[..], Vec::new(), limit).unwrap_err();
        assert!(matches!(err, ObjectError::TooLarge { max } if max == limit));
        let mut out = Vec::new();
        assert_eq!(
            open_object_stream(&keys, &place(7), &obj[..], &mut out, limit + 1).unwrap(),
            limit + 1
        );
        assert_eq!(out, pattern(2 * CHUNK_SIZE + 1));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20))]

        #[test]
        fn seal_and_open_round_trip_whole_and_streaming(
            len in prop_oneof![Just(0usize), Just(CHUNK_SIZE), Just(CHUNK_SIZE + 1), 0..200_000usize]
        ) {
            let data = pattern(len);
            let key = fixed_key();
            let obj = seal_object(&key, EPOCH, &place(7), &data);
            prop_assert_eq!(&open(&obj).unwrap(), &data);
            let mut streamed = Vec::new();
            prop_assert_eq!(seal_object_stream(&key, EPOCH, &place(7), &data[..], &mut streamed).unwrap(), len as u64);
            // Same bytes as the in-memory form once the nonce is the same.
            let header = ObjectHeader::parse(&streamed).unwrap();
            prop_assert_eq!(&streamed, &seal_object_with_nonce(&key, EPOCH, &place(7), &header.nonce, &data));
            let mut back = Vec::new();
            open_object_stream(&(EPOCH, &key), &place(7), &streamed[..], &mut back, u64::MAX).unwrap();
            prop_assert_eq!(&back, &data);
        }

        #[test]
        fn any_flipped_bit_is_rejected(len in 0..140_000usize, pos in any::<usize>(), bit in 0..8u8) {
            let mut obj = sealed(len);
            let at = pos % obj.len();
            obj[at] ^= 1 << bit;
            let result = open(&obj);
            let rejected = result.as_ref().is_err_and(ObjectError::is_corrupt)
                || matches!(result, Err(ObjectError::UnknownEpoch { .. }));
            prop_assert!(rejected, "flip at {} gave {:?}", at, result);
        }

        #[test]
        fn any_truncation_is_rejected(len in 0..140_000usize, cut in any::<usize>()) {
            let obj = sealed(len);
            let at = cut % obj.len();
            let err = open(&obj[..at]).unwrap_err();
            prop_assert!(matches!(err, ObjectError::Truncated | ObjectError::Tampered { .. }), "{:?}", err);
        }
    }

    proptest! {
        /// Any bytes after the magic are refused with a typed error, whole
        /// and streamed, never a panic.
        #[test]
        fn arbitrary_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&bytes);
            for input in [&bytes, &framed] {
                let _ = ObjectHeader::parse(input);
                prop_assert!(open(input).is_err());
                let mut out = Vec::new();
                let key = fixed_key();
                prop_assert!(open_object_stream(&(EPOCH, &key), &place(7), &input[..], &mut out, 1 << 20).is_err());
            }
        }
    }
}
