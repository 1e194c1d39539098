//! Library and release key text (a key file or a pasted key; v1, and v2
//! with its checksum).
#![no_main]

use bae_crypto::{LibraryKey, ReleaseKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = LibraryKey::from_key_text(text) {
        assert!(LibraryKey::from_key_text(&key.to_key_text()).ok() == Some(key));
    }
    if let Ok(key) = ReleaseKey::from_key_text(text) {
        assert!(ReleaseKey::from_key_text(&key.to_key_text()).ok() == Some(key));
    }
});
