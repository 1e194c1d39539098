//! A checkpoint's plaintext: the header, every body record (checked against
//! bae's schema by merge's `check_record`) and the end marker.
#![no_main]

use bae_oplog::BAE_SCHEMA;
use bae_sync_service::fuzzing::decode_checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bytes) = decode_checkpoint(data, &BAE_SCHEMA) {
        // Compared as bytes: a REAL may be NaN.
        let again = decode_checkpoint(&bytes, &BAE_SCHEMA).expect("a re-encoded checkpoint reads");
        assert_eq!(again, bytes);
    }
});
