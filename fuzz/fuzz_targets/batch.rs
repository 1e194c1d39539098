//! The batch codec: a batch object's plaintext, checked against bae's schema.
#![no_main]

use bae_oplog::{decode_batch, encode_batch, BAE_SCHEMA};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = decode_batch(data, &BAE_SCHEMA) else {
        return;
    };
    // Compared as bytes, not batches: a REAL may be NaN.
    let Ok(bytes) = encode_batch(&batch) else {
        return;
    };
    let again = decode_batch(&bytes, &BAE_SCHEMA).expect("a re-encoded batch decodes");
    assert_eq!(encode_batch(&again).ok(), Some(bytes));
});
