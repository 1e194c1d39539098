//! bae's chunked file format with a fixed key: whole blobs, blobs of a
//! claimed length, single chunks and ranges (the length and range come from
//! synced rows, so they are fuzzed too: the first 24 bytes of the input).
#![no_main]

use bae_crypto::chunked::{
    decrypt, decrypt_chunk, decrypt_range_bytes, decrypt_with_len, BaseNonce,
};
use bae_crypto::LibraryKey;
use bae_fuzz::LIBRARY_KEY;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = LibraryKey::from_bytes(LIBRARY_KEY);
    let _ = decrypt(&key, data);
    let Some((params, blob)) = data.split_first_chunk::<24>() else {
        return;
    };
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&params[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let (len, start, end) = (word(0), word(1), word(2));
    let _ = decrypt_with_len(&key, blob, len);
    if let Ok(nonce) = BaseNonce::from_blob_prefix(blob) {
        let _ = decrypt_chunk(&key, &nonce, start, &blob[24..]);
        let _ = decrypt_range_bytes(&key, &nonce, len, start..end, &blob[24..]);
    }
});
