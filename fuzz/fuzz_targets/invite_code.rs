//! Invite codes as a user pastes them: read, written back to the same text
//! (one code per invite), and their credentials opened by a fixed identity.
#![no_main]

use bae_crypto::IdentitySigningKey;
use bae_fuzz::IDENTITY_SEED;
use bae_membership::Invite;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(invite) = Invite::from_code(text) else {
        return;
    };
    assert_eq!(invite.to_code(), text.trim(), "an invite has one code");
    if let Some(sealed) = &invite.credentials {
        let identity = IdentitySigningKey::from_seed(&IDENTITY_SEED);
        let _ = sealed.open(invite.library_id, &identity);
    }
});
