//! A membership chain entry's plaintext: decoded (every check of the
//! format), re-encoded to the same bytes (one encoding per entry), and its
//! signature checked.
#![no_main]

use bae_membership::SignedEntry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = SignedEntry::from_bytes(data) else {
        return;
    };
    assert_eq!(entry.to_bytes(), data, "an entry has one encoding");
    let _ = entry.verify();
});
