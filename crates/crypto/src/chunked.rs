//! bae's chunked XChaCha20-Poly1305 format (`encrypt_chunked`), byte for
//! byte: release audio files stored in the bucket use it, and existing bae
//! files must stay readable.
//!
//! Layout: `base_nonce (24) || chunk_0 || chunk_1 || ...`, where chunk `i`
//! is the XChaCha20-Poly1305 ciphertext of plaintext bytes
//! `[i * 65536, min((i + 1) * 65536, len))` followed by its 16-byte tag,
//! under nonce `base_nonce` with `i` (u64) XORed little-endian into its first
//! 8 bytes, with no associated data. Empty plaintext is one tag-only chunk.
//! See `docs/FORMAT-crypto.md`.
//!
//! The format has no length field, so truncation at a chunk boundary can only
//! be caught by a caller who knows the plaintext size
//! ([`decrypt_with_len`], [`decrypt_range`], [`decrypt_stream`]).

use crate::error::ChunkedError;
use crate::keys::ContentKey;
use chacha20poly1305::aead::AeadInPlace;
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::rngs::OsRng;
use rand::RngCore;
use std::fmt;
use std::io::{self, Read, Write};
use std::ops::Range;

/// Plaintext bytes per chunk.
pub const CHUNK_SIZE: usize = 64 * 1024;
/// Bytes of Poly1305 tag after each chunk.
pub const TAG_LEN: usize = 16;
/// Bytes of base nonce at the start of a blob.
pub const NONCE_LEN: usize = 24;
/// Bytes of a full ciphertext chunk (plaintext plus tag).
pub const CIPHERTEXT_CHUNK_LEN: usize = CHUNK_SIZE + TAG_LEN;

const CHUNK: u64 = CHUNK_SIZE as u64;
const CT_CHUNK: u64 = CIPHERTEXT_CHUNK_LEN as u64;
const TAG: u64 = TAG_LEN as u64;
const NONCE: u64 = NONCE_LEN as u64;

/// The 24-byte random base nonce written at the start of a blob. Not secret;
/// bae caches it (`files.encryption_nonce`) so range reads can skip it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BaseNonce([u8; NONCE_LEN]);

impl BaseNonce {
    /// A fresh random nonce from the operating system's CSPRNG.
    pub fn random() -> Self {
        let mut bytes = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut bytes);
        BaseNonce(bytes)
    }

    /// Wraps nonce bytes (a cached nonce, or a fixed one in tests).
    pub fn from_bytes(bytes: [u8; NONCE_LEN]) -> Self {
        BaseNonce(bytes)
    }

    /// Reads the nonce from the first 24 bytes of a blob.
    pub fn from_blob_prefix(blob: &[u8]) -> Result<Self, ChunkedError> {
        let head = blob.get(..NONCE_LEN).ok_or(ChunkedError::Truncated)?;
        let mut bytes = [0u8; NONCE_LEN];
        bytes.copy_from_slice(head);
        Ok(BaseNonce(bytes))
    }

    /// The nonce bytes.
    pub fn as_bytes(&self) -> &[u8; NONCE_LEN] {
        &self.0
    }

    /// The nonce of chunk `index`: the chunk index XORed little-endian into
    /// the first 8 bytes.
    pub(crate) fn chunk_nonce(&self, index: u64) -> XNonce {
        let mut n = self.0;
        for (b, i) in n.iter_mut().zip(index.to_le_bytes()) {
            *b ^= i;
        }
        XNonce::from(n)
    }
}

impl fmt::Debug for BaseNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BaseNonce({})", hex::encode(self.0))
    }
}

/// Number of chunks a plaintext of `plaintext_len` bytes is split into
/// (at least one: empty plaintext is one tag-only chunk).
pub fn chunk_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(CHUNK).max(1)
}

/// The longest plaintext the format takes here (64 PiB): every length
/// computed from it fits a `u64`. A plaintext length from outside (a
/// synced `files.file_size`) above it is [`ChunkedError::LengthOutOfRange`].
pub const MAX_PLAINTEXT_LEN: u64 = 1 << 56;

/// Refuses a plaintext length above [`MAX_PLAINTEXT_LEN`].
fn check_len(plaintext_len: u64) -> Result<(), ChunkedError> {
    if plaintext_len > MAX_PLAINTEXT_LEN {
        Err(ChunkedError::LengthOutOfRange(plaintext_len))
    } else {
        Ok(())
    }
}

/// Total blob length (nonce, chunks, tags) for a plaintext length; `u64::MAX`
/// for a length above [`MAX_PLAINTEXT_LEN`] (no blob is that long).
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    TAG.checked_mul(chunk_count(plaintext_len))
        .and_then(|tags| tags.checked_add(plaintext_len))
        .and_then(|n| n.checked_add(NONCE))
        .unwrap_or(u64::MAX)
}

/// Plaintext length implied by a blob length, or [`ChunkedError::Truncated`]
/// if no plaintext length produces it.
pub fn plaintext_len(ciphertext_len: u64) -> Result<u64, ChunkedError> {
    let body = ciphertext_len
        .checked_sub(NONCE)
        .filter(|b| *b >= TAG)
        .ok_or(ChunkedError::Truncated)?;
    let (full, rest) = (body / CT_CHUNK, body % CT_CHUNK);
    match rest {
        0 => Ok(full * CHUNK),
        r if r < TAG => Err(ChunkedError::Truncated),
        r => Ok(full * CHUNK + r - TAG),
    }
}

/// Byte range, within the blob, of chunk `index` (nonce offset included) of a
/// plaintext of `plaintext_len` bytes. Empty if the chunk does not exist.
pub fn chunk_ciphertext_range(plaintext_len: u64, index: u64) -> Range<u64> {
    if plaintext_len > MAX_PLAINTEXT_LEN || index >= chunk_count(plaintext_len) {
        return 0..0;
    }
    let start = NONCE + index * CT_CHUNK;
    let pt = plaintext_len.saturating_sub(index * CHUNK).min(CHUNK);
    start..start + pt + TAG
}

/// Seals one chunk in place and returns its tag.
pub(crate) fn seal_chunk(
    cipher: &XChaCha20Poly1305,
    nonce: &BaseNonce,
    index: u64,
    aad: &[u8],
    buf: &mut [u8],
) -> Tag {
    #[allow(clippy::expect_used)]
    // XChaCha20-Poly1305 refuses only inputs over 256 GiB; a chunk is 64 KiB.
    cipher
        .encrypt_in_place_detached(&nonce.chunk_nonce(index), aad, buf)
        .expect("a 64 KiB chunk is within the cipher's limit")
}

/// Opens one chunk in place: `buf` holds ciphertext then the tag; on success
/// it is truncated to the plaintext.
pub(crate) fn open_chunk(
    cipher: &XChaCha20Poly1305,
    nonce: &BaseNonce,
    index: u64,
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), ChunkedError> {
    let ct_len = buf
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(ChunkedError::Truncated)?;
    let (ct, tag) = buf.split_at_mut(ct_len);
    let tag = Tag::clone_from_slice(tag);
    cipher
        .decrypt_in_place_detached(&nonce.chunk_nonce(index), aad, ct, &tag)
        .map_err(|_| ChunkedError::Tampered { chunk: index })?;
    buf.truncate(ct_len);
    Ok(())
}

/// Encrypts a whole plaintext under a fresh random nonce.
pub fn encrypt<K: ContentKey>(key: &K, plaintext: &[u8]) -> Vec<u8> {
    encrypt_with_nonce(key, &BaseNonce::random(), plaintext)
}

/// Encrypts a whole plaintext under the given base nonce. Never reuse a
/// nonce with the same key; this exists for test vectors and for callers
/// that must know the nonce before encrypting.
pub fn encrypt_with_nonce<K: ContentKey>(key: &K, nonce: &BaseNonce, plaintext: &[u8]) -> Vec<u8> {
    let cipher = key.cipher();
    let len = plaintext.len();
    let mut out = Vec::with_capacity(NONCE_LEN + len + TAG_LEN * (len / CHUNK_SIZE + 1));
    out.extend_from_slice(nonce.as_bytes());
    for index in 0..chunk_count(len as u64) as usize {
        let start = index * CHUNK_SIZE;
        let chunk = &plaintext[start..(start + CHUNK_SIZE).min(len)];
        let at = out.len();
        out.extend_from_slice(chunk);
        let tag = seal_chunk(&cipher, nonce, index as u64, &[], &mut out[at..]);
        out.extend_from_slice(&tag);
    }
    out
}

/// Decrypts a whole blob. Without a known plaintext size, a blob cut at a
/// chunk boundary decrypts to a prefix; prefer [`decrypt_with_len`].
pub fn decrypt<K: ContentKey>(key: &K, blob: &[u8]) -> Result<Vec<u8>, ChunkedError> {
    let len = plaintext_len(blob.len() as u64)?;
    decrypt_known(key, blob, len)
}

/// Decrypts a whole blob whose plaintext size is known, so truncation (even at
/// a chunk boundary) and appended bytes are caught.
pub fn decrypt_with_len<K: ContentKey>(
    key: &K,
    blob: &[u8],
    plaintext_len: u64,
) -> Result<Vec<u8>, ChunkedError> {
    check_len(plaintext_len)?;
    let expected = ciphertext_len(plaintext_len);
    let found = blob.len() as u64;
    if found < expected {
        return Err(ChunkedError::Truncated);
    }
    if found > expected {
        return Err(ChunkedError::TrailingData);
    }
    decrypt_known(key, blob, plaintext_len)
}

fn decrypt_known<K: ContentKey>(
    key: &K,
    blob: &[u8],
    plaintext_len: u64,
) -> Result<Vec<u8>, ChunkedError> {
    let nonce = BaseNonce::from_blob_prefix(blob)?;
    let cipher = key.cipher();
    let mut out = Vec::with_capacity(usize::try_from(plaintext_len).unwrap_or(0));
    let body = &blob[NONCE_LEN..];
    for (index, chunk) in body.chunks(CIPHERTEXT_CHUNK_LEN).enumerate() {
        let ct_len = chunk
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(ChunkedError::Truncated)?;
        let (ct, tag) = chunk.split_at(ct_len);
        let at = out.len();
        out.extend_from_slice(ct);
        cipher
            .decrypt_in_place_detached(
                &nonce.chunk_nonce(index as u64),
                &[],
                &mut out[at..],
                Tag::from_slice(tag),
            )
            .map_err(|_| ChunkedError::Tampered {
                chunk: index as u64,
            })?;
    }
    Ok(out)
}

/// Decrypts one chunk (ciphertext and tag, as in the blob) given the cached
/// base nonce and the chunk's index.
pub fn decrypt_chunk<K: ContentKey>(
    key: &K,
    nonce: &BaseNonce,
    index: u64,
    chunk: &[u8],
) -> Result<Vec<u8>, ChunkedError> {
    if chunk.len() > CIPHERTEXT_CHUNK_LEN {
        return Err(ChunkedError::TrailingData);
    }
    let mut buf = chunk.to_vec();
    open_chunk(&key.cipher(), nonce, index, &[], &mut buf)?;
    Ok(buf)
}

/// Encrypts one chunk of plaintext (at most [`CHUNK_SIZE`] bytes, else
/// [`ChunkedError::TrailingData`]) as chunk `index` of a blob with the given
/// base nonce: the blob bytes of that chunk, ciphertext then tag. For
/// producing or repairing single chunks; a whole blob is [`encrypt`].
pub fn encrypt_chunk<K: ContentKey>(
    key: &K,
    nonce: &BaseNonce,
    index: u64,
    chunk: &[u8],
) -> Result<Vec<u8>, ChunkedError> {
    if chunk.len() > CHUNK_SIZE {
        return Err(ChunkedError::TrailingData);
    }
    let mut buf = Vec::with_capacity(chunk.len() + TAG_LEN);
    buf.extend_from_slice(chunk);
    let tag = seal_chunk(&key.cipher(), nonce, index, &[], &mut buf);
    buf.extend_from_slice(&tag);
    Ok(buf)
}

/// Which chunks, and which blob bytes, a plaintext range needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangePlan {
    plaintext_len: u64,
    range: Range<u64>,
    chunks: Range<u64>,
}

impl RangePlan {
    /// Plans reading plaintext bytes `range` of a plaintext of
    /// `plaintext_len` bytes.
    pub fn new(plaintext_len: u64, range: Range<u64>) -> Result<Self, ChunkedError> {
        check_len(plaintext_len)?;
        if range.start > range.end || range.end > plaintext_len {
            return Err(ChunkedError::RangeOutOfBounds {
                start: range.start,
                end: range.end,
                len: plaintext_len,
            });
        }
        let chunks = if range.is_empty() {
            0..0
        } else {
            range.start / CHUNK..(range.end - 1) / CHUNK + 1
        };
        Ok(RangePlan {
            plaintext_len,
            range,
            chunks,
        })
    }

    /// The chunk indices to fetch (empty for an empty range).
    pub fn chunks(&self) -> Range<u64> {
        self.chunks.clone()
    }

    /// The contiguous blob byte range holding those chunks (for one ranged
    /// GET); empty for an empty range.
    pub fn ciphertext_range(&self) -> Range<u64> {
        if self.chunks.is_empty() {
            return 0..0;
        }
        let first = chunk_ciphertext_range(self.plaintext_len, self.chunks.start);
        let last = chunk_ciphertext_range(self.plaintext_len, self.chunks.end - 1);
        first.start..last.end
    }

    /// Blob byte range of one chunk.
    pub fn chunk_range(&self, index: u64) -> Range<u64> {
        chunk_ciphertext_range(self.plaintext_len, index)
    }

    /// The plaintext range requested.
    pub fn plaintext_range(&self) -> Range<u64> {
        self.range.clone()
    }
}

/// Produces ciphertext chunks on demand: an object store doing ranged GETs,
/// a file, or a closure `FnMut(u64) -> Result<Vec<u8>, E>` given the index.
pub trait ChunkSource {
    /// Returns chunk `index` (ciphertext and tag): the blob bytes in
    /// `blob_range`.
    fn fetch_chunk(
        &mut self,
        index: u64,
        blob_range: Range<u64>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>>;
}

impl<F, E> ChunkSource for F
where
    F: FnMut(u64) -> Result<Vec<u8>, E>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn fetch_chunk(
        &mut self,
        index: u64,
        _blob_range: Range<u64>,
    ) -> Result<Vec<u8>, Box<dyn std::error::Error + Send + Sync>> {
        self(index).map_err(Into::into)
    }
}

/// Decrypts plaintext bytes `range` of a blob whose plaintext is
/// `plaintext_len` bytes, fetching only the chunks the range covers. A chunk
/// of the wrong length is reported as [`ChunkedError::Truncated`] or
/// [`ChunkedError::TrailingData`].
pub fn decrypt_range<K: ContentKey, S: ChunkSource + ?Sized>(
    key: &K,
    nonce: &BaseNonce,
    plaintext_len: u64,
    range: Range<u64>,
    source: &mut S,
) -> Result<Vec<u8>, ChunkedError> {
    let plan = RangePlan::new(plaintext_len, range.clone())?;
    let cipher = key.cipher();
    // The range comes from outside (a synced file size): reserve at most a
    // chunk up front and grow with what decrypts, so a huge range over a
    // short or missing blob fails as truncated instead of aborting on a
    // failed allocation.
    let mut out = Vec::with_capacity((range.end - range.start).min(CHUNK) as usize);
    for index in plan.chunks() {
        let want = plan.chunk_range(index);
        let mut buf =
            source
                .fetch_chunk(index, want.clone())
                .map_err(|source| ChunkedError::Fetch {
                    chunk: index,
                    source,
                })?;
        let found = buf.len() as u64;
        if found < want.end - want.start {
            return Err(ChunkedError::Truncated);
        }
        if found > want.end - want.start {
            return Err(ChunkedError::TrailingData);
        }
        open_chunk(&cipher, nonce, index, &[], &mut buf)?;
        let chunk_start = index * CHUNK;
        let from = range.start.saturating_sub(chunk_start) as usize;
        let to = ((range.end - chunk_start).min(CHUNK) as usize).min(buf.len());
        out.extend_from_slice(buf.get(from..to).ok_or(ChunkedError::Truncated)?);
    }
    Ok(out)
}

/// Like [`decrypt_range`], given the bytes of [`RangePlan::ciphertext_range`]
/// fetched in one request.
pub fn decrypt_range_bytes<K: ContentKey>(
    key: &K,
    nonce: &BaseNonce,
    plaintext_len: u64,
    range: Range<u64>,
    fetched: &[u8],
) -> Result<Vec<u8>, ChunkedError> {
    let plan = RangePlan::new(plaintext_len, range.clone())?;
    let base = plan.ciphertext_range().start;
    if fetched.len() as u64 > plan.ciphertext_range().end - base {
        return Err(ChunkedError::TrailingData);
    }
    let mut source = |index: u64| -> Result<Vec<u8>, ChunkedError> {
        let r = plan.chunk_range(index);
        let (s, e) = ((r.start - base) as usize, (r.end - base) as usize);
        match fetched.get(s..e) {
            Some(bytes) => Ok(bytes.to_vec()),
            None => Ok(fetched.get(s..).unwrap_or_default().to_vec()),
        }
    };
    decrypt_range(key, nonce, plaintext_len, range, &mut source)
}

/// What a streaming encryption wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncryptSummary {
    /// The base nonce (cache it for range reads).
    pub nonce: BaseNonce,
    /// Plaintext bytes read.
    pub plaintext_len: u64,
    /// Blob bytes written.
    pub ciphertext_len: u64,
}

/// Encrypts everything `reader` yields into `writer` under a fresh random
/// nonce, holding one chunk in memory.
pub fn encrypt_stream<K: ContentKey, R: Read, W: Write>(
    key: &K,
    reader: R,
    writer: W,
) -> Result<EncryptSummary, ChunkedError> {
    encrypt_stream_with_nonce(key, &BaseNonce::random(), reader, writer)
}

/// [`encrypt_stream`] under a given base nonce (never reuse one per key).
pub fn encrypt_stream_with_nonce<K: ContentKey, R: Read, W: Write>(
    key: &K,
    nonce: &BaseNonce,
    mut reader: R,
    mut writer: W,
) -> Result<EncryptSummary, ChunkedError> {
    let cipher = key.cipher();
    writer.write_all(nonce.as_bytes())?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    let mut total = 0u64;
    let mut index = 0u64;
    loop {
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 && index > 0 {
            break;
        }
        let tag = seal_chunk(&cipher, nonce, index, &[], &mut buf[..n]);
        writer.write_all(&buf[..n])?;
        writer.write_all(&tag)?;
        total += n as u64;
        index += 1;
        if n < CHUNK_SIZE {
            break;
        }
    }
    writer.flush()?;
    Ok(EncryptSummary {
        nonce: *nonce,
        plaintext_len: total,
        ciphertext_len: ciphertext_len(total),
    })
}

/// Decrypts a blob from `reader` into `writer`, one chunk at a time. Each
/// chunk is authenticated before it is written, but a failure can come after
/// earlier chunks were written: discard the output on error. With
/// `expected_plaintext_len`, truncation at a chunk boundary and appended
/// bytes are caught. Returns the plaintext length.
pub fn decrypt_stream<K: ContentKey, R: Read, W: Write>(
    key: &K,
    mut reader: R,
    mut writer: W,
    expected_plaintext_len: Option<u64>,
) -> Result<u64, ChunkedError> {
    let mut nonce = [0u8; NONCE_LEN];
    if read_full(&mut reader, &mut nonce)? < NONCE_LEN {
        return Err(ChunkedError::Truncated);
    }
    let nonce = BaseNonce::from_bytes(nonce);
    let cipher = key.cipher();
    let mut buf = Vec::with_capacity(CIPHERTEXT_CHUNK_LEN);
    let mut total = 0u64;
    let mut index = 0u64;
    loop {
        buf.resize(CIPHERTEXT_CHUNK_LEN, 0);
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 && index > 0 {
            break;
        }
        buf.truncate(n);
        open_chunk(&cipher, &nonce, index, &[], &mut buf)?;
        total += buf.len() as u64;
        if expected_plaintext_len.is_some_and(|e| total > e) {
            return Err(ChunkedError::TrailingData);
        }
        writer.write_all(&buf)?;
        index += 1;
        if n < CIPHERTEXT_CHUNK_LEN {
            break;
        }
    }
    if expected_plaintext_len.is_some_and(|e| total < e) {
        return Err(ChunkedError::Truncated);
    }
    writer.flush()?;
    Ok(total)
}

/// Reads until `buf` is full or the reader is exhausted; returns bytes read.
pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plaintext length is a synced column (`files.file_size`): a huge one
    /// from a forged batch is a typed error, never an overflow.
    #[test]
    fn huge_lengths_are_out_of_range_not_overflows() {
        let key = LibraryKey::from_bytes([9; 32]);
        let blob = encrypt(&key, b"short");
        for len in [u64::MAX, MAX_PLAINTEXT_LEN + 1] {
            assert!(matches!(
                decrypt_with_len(&key, &blob, len),
                Err(ChunkedError::LengthOutOfRange(l)) if l == len
            ));
            assert!(matches!(
                RangePlan::new(len, 0..10),
                Err(ChunkedError::LengthOutOfRange(_))
            ));
            let nonce = BaseNonce::from_blob_prefix(&blob).unwrap();
            assert!(matches!(
                decrypt_range_bytes(&key, &nonce, len, 0..10, &blob),
                Err(ChunkedError::LengthOutOfRange(_))
            ));
            assert_eq!(chunk_ciphertext_range(len, u64::MAX / 2), 0..0);
        }
        assert_eq!(ciphertext_len(u64::MAX), u64::MAX);
    }
    use crate::keys::LibraryKey;
    use crate::test_support::{fixed_key, fixed_nonce, pattern};
    use proptest::prelude::*;

    /// Lengths around the chunk boundaries plus arbitrary ones up to ~200 KiB.
    fn any_len() -> impl Strategy<Value = usize> {
        prop_oneof![
            Just(0usize),
            Just(1),
            Just(CHUNK_SIZE - 1),
            Just(CHUNK_SIZE),
            Just(CHUNK_SIZE + 1),
            Just(2 * CHUNK_SIZE),
            0..300usize,
            0..200_000usize,
        ]
    }

    /// draft-irtf-cfrg-xchacha-03 section A.3.1: our chunk sealing with chunk
    /// index 0 (nonce unchanged) is plain XChaCha20-Poly1305.
    #[test]
    fn xchacha_draft_a_3_1_vector() {
        let key = LibraryKey::from_bytes(core::array::from_fn(|i| 0x80 + i as u8));
        let nonce = BaseNonce::from_bytes(core::array::from_fn(|i| 0x40 + i as u8));
        let aad = hex::decode("50515253c0c1c2c3c4c5c6c7").unwrap();
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let tag = seal_chunk(&key.cipher(), &nonce, 0, &aad, &mut buf);
        assert_eq!(
            hex::encode(&buf),
            "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e"
        );
        assert_eq!(hex::encode(tag), "c0875924c1c7987947deafd8780acf49");
    }

    #[test]
    fn chunk_nonce_xors_index_little_endian_into_first_bytes() {
        let nonce = BaseNonce::from_bytes([0; 24]);
        let n = nonce.chunk_nonce(0x0102);
        assert_eq!(&n[..3], &[0x02, 0x01, 0x00]);
        assert_eq!(&n[8..], &[0; 16]);
    }

    #[test]
    fn lengths_follow_the_layout() {
        assert_eq!(ciphertext_len(0), 40);
        assert_eq!(ciphertext_len(65536), 24 + 65536 + 16);
        assert_eq!(ciphertext_len(65537), 24 + 65537 + 32);
        for len in [0, 1, 65535, 65536, 65537, 200_000] {
            assert_eq!(plaintext_len(ciphertext_len(len)).unwrap(), len);
        }
        assert!(matches!(plaintext_len(39), Err(ChunkedError::Truncated)));
        assert!(matches!(
            plaintext_len(24 + CT_CHUNK + 5),
            Err(ChunkedError::Truncated)
        ));
    }

    #[test]
    fn empty_plaintext_is_one_tag_only_chunk() {
        let blob = encrypt_with_nonce(&fixed_key(), &fixed_nonce(), b"");
        assert_eq!(blob.len(), NONCE_LEN + TAG_LEN);
        assert_eq!(decrypt(&fixed_key(), &blob).unwrap(), b"");
        assert!(matches!(
            decrypt(&fixed_key(), &blob[..NONCE_LEN]),
            Err(ChunkedError::Truncated)
        ));
    }

    #[test]
    fn known_size_catches_truncation_at_a_chunk_boundary() {
        let data = pattern(3 * CHUNK_SIZE);
        let blob = encrypt(&fixed_key(), &data);
        let cut = &blob[..NONCE_LEN + 2 * CIPHERTEXT_CHUNK_LEN];
        // Without the size, the cut blob is a valid shorter blob.
        assert_eq!(decrypt(&fixed_key(), cut).unwrap(), &data[..2 * CHUNK_SIZE]);
        let len = data.len() as u64;
        assert!(matches!(
            decrypt_with_len(&fixed_key(), cut, len),
            Err(ChunkedError::Truncated)
        ));
        assert!(matches!(
            decrypt_stream(&fixed_key(), cut, Vec::new(), Some(len)),
            Err(ChunkedError::Truncated)
        ));
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            decrypt_with_len(&fixed_key(), &longer, len),
            Err(ChunkedError::TrailingData)
        ));
        let mut source = |i: u64| -> Result<Vec<u8>, ChunkedError> {
            let r = chunk_ciphertext_range(len, i);
            Ok(cut
                .get(r.start as usize..(r.end as usize).min(cut.len()))
                .unwrap_or_default()
                .to_vec())
        };
        assert!(matches!(
            decrypt_range(
                &fixed_key(),
                &fixed_nonce(),
                len,
                len - 10..len,
                &mut source
            ),
            Err(ChunkedError::Truncated)
        ));
    }

    #[test]
    fn wrong_key_is_reported_as_tampered_chunk_zero() {
        let blob = encrypt(&fixed_key(), b"hello");
        let other = LibraryKey::from_bytes([9; 32]);
        assert!(matches!(
            decrypt(&other, &blob),
            Err(ChunkedError::Tampered { chunk: 0 })
        ));
    }

    /// Found reviewing the decoders for the fuzz targets: the output buffer
    /// was reserved for the whole requested range before any chunk arrived,
    /// so a forged 64 PiB file size aborted on a failed allocation.
    #[test]
    fn a_huge_range_over_a_missing_blob_is_truncated_not_an_abort() {
        let key = LibraryKey::from_bytes([1; 32]);
        let nonce = BaseNonce::from_bytes([2; NONCE_LEN]);
        let err = decrypt_range_bytes(&key, &nonce, MAX_PLAINTEXT_LEN, 0..MAX_PLAINTEXT_LEN, &[])
            .unwrap_err();
        assert!(matches!(err, ChunkedError::Truncated), "{err:?}");
    }

    #[test]
    fn range_plan_names_the_chunks_and_bytes_to_fetch() {
        let len = 10 * CHUNK;
        let plan = RangePlan::new(len, CHUNK - 1..CHUNK + 1).unwrap();
        assert_eq!(plan.chunks(), 0..2);
        assert_eq!(plan.ciphertext_range(), NONCE..NONCE + 2 * CT_CHUNK);
        assert_eq!(RangePlan::new(len, 5..5).unwrap().chunks(), 0..0);
        assert!(matches!(
            RangePlan::new(len, 0..len + 1),
            Err(ChunkedError::RangeOutOfBounds { .. })
        ));
        let mid = RangePlan::new(1 << 30, (1 << 29) - (1 << 19)..(1 << 29) + (1 << 19)).unwrap();
        assert_eq!(mid.chunks().end - mid.chunks().start, 16);
    }

    #[test]
    fn fetch_errors_name_the_chunk() {
        let mut failing =
            |_i: u64| -> Result<Vec<u8>, std::io::Error> { Err(std::io::Error::other("503")) };
        let err = decrypt_range(
            &fixed_key(),
            &fixed_nonce(),
            3 * CHUNK,
            CHUNK..CHUNK + 1,
            &mut failing,
        );
        assert!(matches!(err, Err(ChunkedError::Fetch { chunk: 1, .. })));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn whole_and_streaming_round_trip_for_any_length(len in any_len()) {
            let data = pattern(len);
            let (key, nonce) = (fixed_key(), BaseNonce::random());
            let blob = encrypt_with_nonce(&key, &nonce, &data);
            prop_assert_eq!(blob.len() as u64, ciphertext_len(len as u64));
            prop_assert_eq!(&decrypt(&key, &blob).unwrap(), &data);
            prop_assert_eq!(&decrypt_with_len(&key, &blob, len as u64).unwrap(), &data);
            let mut streamed = Vec::new();
            let summary = encrypt_stream_with_nonce(&key, &nonce, &data[..], &mut streamed).unwrap();
            prop_assert_eq!(&streamed, &blob);
            prop_assert_eq!(summary.plaintext_len, len as u64);
            let mut back = Vec::new();
            prop_assert_eq!(decrypt_stream(&key, &blob[..], &mut back, Some(len as u64)).unwrap(), len as u64);
            prop_assert_eq!(&back, &data);
        }

        #[test]
        fn any_flipped_bit_is_rejected(len in 0..140_000usize, pos in any::<usize>(), bit in 0..8u8) {
            let key = fixed_key();
            let mut blob = encrypt(&key, &pattern(len));
            let at = pos % blob.len();
            blob[at] ^= 1 << bit;
            let tampered = matches!(decrypt(&key, &blob), Err(ChunkedError::Tampered { .. }));
            prop_assert!(tampered, "flip at {} not rejected as tampering", at);
        }

        #[test]
        fn range_decrypt_equals_slice_of_full_decrypt(
            len in any_len(), a in any::<u64>(), b in any::<u64>()
        ) {
            let data = pattern(len);
            let (key, nonce) = (fixed_key(), BaseNonce::random());
            let blob = encrypt_with_nonce(&key, &nonce, &data);
            let n = len as u64 + 1;
            let (start, end) = (a % n, b % n);
            let range = start.min(end)..start.max(end);
            let mut touched = Vec::new();
            let mut source = |i: u64| -> Result<Vec<u8>, ChunkedError> {
                touched.push(i);
                let r = chunk_ciphertext_range(len as u64, i);
                Ok(blob[r.start as usize..r.end as usize].to_vec())
            };
            let got = decrypt_range(&key, &nonce, len as u64, range.clone(), &mut source).unwrap();
            let want = &data[range.start as usize..range.end as usize];
            prop_assert_eq!(&got[..], want);
            let plan = RangePlan::new(len as u64, range.clone()).unwrap();
            prop_assert_eq!(touched, plan.chunks().collect::<Vec<_>>());
            let r = plan.ciphertext_range();
            let fetched = &blob[r.start as usize..r.end as usize];
            let got = decrypt_range_bytes(&key, &nonce, len as u64, range, fetched).unwrap();
            prop_assert_eq!(&got[..], want);
        }

        #[test]
        fn single_chunk_decrypt_matches(len in any_len(), pick in any::<u64>()) {
            let data = pattern(len);
            let (key, nonce) = (fixed_key(), BaseNonce::random());
            let blob = encrypt_with_nonce(&key, &nonce, &data);
            let index = pick % chunk_count(len as u64);
            let r = chunk_ciphertext_range(len as u64, index);
            let bytes = &blob[r.start as usize..r.end as usize];
            let got = decrypt_chunk(&key, &nonce, index, bytes).unwrap();
            let s = index as usize * CHUNK_SIZE;
            prop_assert_eq!(&got[..], &data[s..(s + CHUNK_SIZE).min(len)]);
            prop_assert_eq!(&encrypt_chunk(&key, &nonce, index, &got).unwrap()[..], bytes);
        }
    }

    proptest! {
        /// Any blob, claimed length and range (the length comes from a
        /// synced row) is refused with a typed error, never a panic or a
        /// huge allocation.
        #[test]
        fn arbitrary_blobs_lengths_and_ranges_are_refused(
            blob in proptest::collection::vec(any::<u8>(), 0..300),
            len in prop_oneof![any::<u64>(), Just(MAX_PLAINTEXT_LEN), 0..1000u64],
            start in prop_oneof![any::<u64>(), 0..1000u64],
            end in prop_oneof![any::<u64>(), Just(MAX_PLAINTEXT_LEN), 0..1000u64],
        ) {
            let key = LibraryKey::from_bytes([9; 32]);
            prop_assert!(decrypt(&key, &blob).is_err());
            prop_assert!(decrypt_with_len(&key, &blob, len).is_err());
            let nonce = BaseNonce::from_bytes([1; NONCE_LEN]);
            let result = decrypt_range_bytes(&key, &nonce, len, start..end, &blob);
            prop_assert!(result.is_err() || start >= end);
            let _ = decrypt_chunk(&key, &nonce, start, &blob);
        }
    }
}
