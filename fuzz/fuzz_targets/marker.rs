//! The library marker's plaintext.
#![no_main]

use bae_sync_service::fuzzing::{decode_marker, encode_marker};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(marker) = decode_marker(data) {
        let bytes = encode_marker(&marker);
        assert_eq!(decode_marker(&bytes).ok(), Some(marker));
    }
});
