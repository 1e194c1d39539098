//! Share grant files and grant payloads: the first byte picks which. A
//! grant that reads is written back to the same bytes and opened by a fixed
//! identity; a payload is read against fixed grant terms (the fuzzer cannot
//! forge a signature or a sealed box, so the payload decoder is reached
//! directly).
#![no_main]

use bae_crypto::IdentitySigningKey;
use bae_fuzz::{IDENTITY_SEED, LIBRARY_ID};
use bae_membership::grant::{parse_payload, Grant, GrantBucket, GrantTerms};
use bae_membership::LibraryId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let identity = IdentitySigningKey::from_seed(&IDENTITY_SEED);
    if mode % 2 == 0 {
        if let Ok(grant) = Grant::from_bytes(rest) {
            assert_eq!(grant.as_bytes(), rest, "a grant has one encoding");
            let _ = grant.open(&identity, 0);
        }
    } else {
        let terms = GrantTerms {
            library_id: LibraryId::from_bytes(LIBRARY_ID),
            release_id: "release-0001".into(),
            recipient: identity.public_key(),
            expires_at: u64::MAX,
            bucket: GrantBucket::Local {
                path: "/srv/bae".into(),
            },
        };
        let _ = parse_payload(rest, &terms);
    }
});
