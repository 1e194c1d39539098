//! The key blob at `keys/{member}/{epoch}`, opened by a fixed identity: the
//! input as sealed bytes, and the input as a plaintext sealed to that
//! identity (the fuzzer cannot forge a sealed box, so this is how it
//! reaches the plaintext checks).
#![no_main]

use bae_crypto::{seal_to, IdentitySigningKey, KeyEpoch};
use bae_fuzz::{IDENTITY_SEED, LIBRARY_ID};
use bae_membership::{open_key_blob, LibraryId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let identity = IdentitySigningKey::from_seed(&IDENTITY_SEED);
    let library = LibraryId::from_bytes(LIBRARY_ID);
    let _ = open_key_blob(&identity, library, KeyEpoch(1), data);
    let sealed = seal_to(&identity.public_key(), data).expect("sealing never fails");
    if let Ok(blob) = open_key_blob(&identity, library, KeyEpoch(1), &sealed) {
        assert_eq!(blob.newest(), KeyEpoch(1));
    }
});
