//! `bae-crypto` benchmarks: the chunked format against single-shot
//! XChaCha20-Poly1305 over the same bytes, and how many chunks a range read
//! touches.

use crate::report::{interleaved, Entry, Size};
use bae_crypto::chunked::{self, BaseNonce, CHUNK_SIZE};
use bae_crypto::LibraryKey;
use chacha20poly1305::aead::Aead;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use std::hint::black_box;

const MIB: usize = 1024 * 1024;

fn setup(size: Size) -> (LibraryKey, XChaCha20Poly1305, Vec<u8>) {
    let key = LibraryKey::from_bytes([7; 32]);
    let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
    let len = size.pick(16 * MIB, 64 * MIB);
    let data = (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
        .collect();
    (key, cipher, data)
}

/// Chunked encryption vs one single-shot XChaCha20-Poly1305 seal.
pub fn chunked_encrypt(size: Size) -> Result<Entry, String> {
    let (key, cipher, data) = setup(size);
    let nonce = XNonce::from([1; 24]);
    let timed = interleaved(
        size.pick(3, 5),
        || {
            black_box(chunked::encrypt(&key, &data));
            Ok(())
        },
        || {
            black_box(
                cipher
                    .encrypt(&nonce, &data[..])
                    .map_err(|e| e.to_string())?,
            );
            Ok(())
        },
    )?;
    Ok(timed.entry(
        "chunked_encrypt",
        "xchacha20poly1305 single-shot encrypt",
        "s",
    ))
}

/// Chunked decryption vs one single-shot XChaCha20-Poly1305 open.
pub fn chunked_decrypt(size: Size) -> Result<Entry, String> {
    let (key, cipher, data) = setup(size);
    let nonce = XNonce::from([1; 24]);
    let blob = chunked::encrypt(&key, &data);
    let single = cipher
        .encrypt(&nonce, &data[..])
        .map_err(|e| e.to_string())?;
    let timed = interleaved(
        size.pick(3, 5),
        || {
            black_box(chunked::decrypt(&key, &blob).map_err(|e| e.to_string())?);
            Ok(())
        },
        || {
            black_box(
                cipher
                    .decrypt(&nonce, &single[..])
                    .map_err(|e| e.to_string())?,
            );
            Ok(())
        },
    )?;
    Ok(timed.entry(
        "chunked_decrypt",
        "xchacha20poly1305 single-shot decrypt",
        "s",
    ))
}

/// Chunk `index` of the simulated object's plaintext: every byte is the low
/// byte of the chunk index plus its position, so slices are checkable.
fn sim_chunk(index: u64) -> Vec<u8> {
    (0..CHUNK_SIZE)
        .map(|i| (index as usize).wrapping_add(i) as u8)
        .collect()
}

/// Reading 1 MiB from the middle of a 1 GiB object: chunks fetched, against
/// the most a 1 MiB range can span (17). The object is never materialised:
/// the source encrypts chunk `i` on demand.
pub fn range_decrypt(_size: Size) -> Result<Entry, String> {
    let key = LibraryKey::from_bytes([7; 32]);
    let nonce = BaseNonce::from_bytes([3; 24]);
    let total: u64 = 1 << 30;
    let start = (total - MIB as u64) / 2;
    let range = start..start + MIB as u64;
    let mut touched = 0u64;
    let mut source = |index: u64| {
        touched += 1;
        chunked::encrypt_chunk(&key, &nonce, index, &sim_chunk(index))
    };
    let got = chunked::decrypt_range(&key, &nonce, total, range.clone(), &mut source)
        .map_err(|e| e.to_string())?;
    let chunk = CHUNK_SIZE as u64;
    let ok = got.len() == MIB
        && got
            .iter()
            .zip(range)
            .all(|(b, at)| *b == ((at / chunk) as usize).wrapping_add((at % chunk) as usize) as u8);
    if !ok {
        return Err("range decrypt returned the wrong bytes".into());
    }
    Ok(Entry::new(
        "range_decrypt",
        touched as f64,
        17.0,
        "max chunks a 1 MiB range spans",
        "chunks",
    ))
}
