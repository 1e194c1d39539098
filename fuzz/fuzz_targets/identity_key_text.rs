//! Identity keys: the signing key's text, a public key in hex, a signature.
#![no_main]

use bae_crypto::{IdentityPublicKey, IdentitySigningKey, Signature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Signature::from_slice(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(key) = IdentitySigningKey::from_key_text(text) {
        let again = IdentitySigningKey::from_key_text(&key.to_key_text()).expect("re-encoded key");
        assert_eq!(*again.to_seed(), *key.to_seed());
    }
    if let Ok(key) = IdentityPublicKey::from_hex(text) {
        assert_eq!(
            IdentityPublicKey::from_bytes(&key.to_bytes()).ok(),
            Some(key)
        );
    }
});
