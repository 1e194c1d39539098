//! Sealed invite credentials, opened by a fixed identity: the input as
//! sealed bytes, and the input as a plaintext sealed to that identity (how
//! the fuzzer reaches the plaintext checks); what opens seals again to the
//! same credentials.
#![no_main]

use bae_crypto::{seal_to, IdentitySigningKey};
use bae_fuzz::{IDENTITY_SEED, LIBRARY_ID};
use bae_membership::{LibraryId, SealedCredentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let identity = IdentitySigningKey::from_seed(&IDENTITY_SEED);
    let library = LibraryId::from_bytes(LIBRARY_ID);
    if let Ok(sealed) = SealedCredentials::from_bytes(data) {
        let _ = sealed.open(library, &identity);
    }
    let sealed = seal_to(&identity.public_key(), data).expect("sealing never fails");
    let Ok(sealed) = SealedCredentials::from_bytes(&sealed) else {
        return;
    };
    if let Ok(creds) = sealed.open(library, &identity) {
        let again = SealedCredentials::seal(&creds, library, &identity.public_key())
            .expect("opened credentials seal again");
        assert_eq!(again.open(library, &identity).ok(), Some(creds));
    }
});
