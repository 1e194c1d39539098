//! A head object's plaintext.
#![no_main]

use bae_sync_service::Head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = Head::decode(data) {
        let bytes = head.encode();
        assert_eq!(Head::decode(&bytes).ok(), Some(head));
    }
});
