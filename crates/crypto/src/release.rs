//! Per-release keys (phase 3): `release_key = HKDF-SHA256(ikm = library key,
//! salt = HMAC-SHA256(library key, "bae-hkdf-salt-v1"), info =
//! "bae-release-v1:" || release_id)`, 32 bytes. The salt is derived, so
//! nothing extra is distributed (review point N1, option 3).

use crate::keys::{LibraryKey, ReleaseKey, KEY_LEN};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

/// HMAC message that derives the HKDF salt from the library key.
pub const SALT_LABEL: &[u8] = b"bae-hkdf-salt-v1";
/// Prefix of the HKDF info; the release id follows.
pub const INFO_PREFIX: &[u8] = b"bae-release-v1:";

/// The HKDF salt: HMAC-SHA256 keyed with the library key over
/// [`SALT_LABEL`].
fn salt(library: &LibraryKey) -> Zeroizing<[u8; 32]> {
    // HKDF-Extract(salt = K, ikm = M) is by definition HMAC-SHA256(K, M), so
    // this is exactly HMAC-SHA256(library key, SALT_LABEL), without a
    // fallible HMAC constructor.
    let (prk, _) = Hkdf::<Sha256>::extract(Some(library.expose_secret()), SALT_LABEL);
    Zeroizing::new(prk.into())
}

/// Derives the key of one release from the library key.
pub fn derive_release_key(library: &LibraryKey, release_id: &str) -> ReleaseKey {
    let salt = salt(library);
    let hk = Hkdf::<Sha256>::new(Some(&salt[..]), library.expose_secret());
    let mut info = Vec::with_capacity(INFO_PREFIX.len() + release_id.len());
    info.extend_from_slice(INFO_PREFIX);
    info.extend_from_slice(release_id.as_bytes());
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    #[allow(clippy::expect_used)]
    // HKDF-SHA256 refuses only outputs over 255 * 32 bytes; this is 32.
    hk.expand(&info, &mut okm[..])
        .expect("32 bytes is within HKDF-SHA256's output limit");
    ReleaseKey::from_bytes(*okm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    #[test]
    fn rfc5869_test_case_1_with_the_hkdf_crate() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(
            hex::encode(prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn salt_is_hmac_sha256_of_the_label() {
        let key = LibraryKey::from_bytes([7; 32]);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[7; 32]).unwrap();
        mac.update(SALT_LABEL);
        assert_eq!(&salt(&key)[..], &mac.finalize().into_bytes()[..]);
    }

    /// Our fixed vector, computed independently with Python's `hmac` and
    /// `hashlib` (see docs/FORMAT-crypto.md).
    #[test]
    fn release_key_matches_fixed_vector() {
        let library = LibraryKey::from_bytes(core::array::from_fn(|i| i as u8));
        let key = derive_release_key(&library, "release-0001");
        assert_eq!(hex::encode(key.expose_secret()), RELEASE_VECTOR);
    }

    #[test]
    fn release_keys_differ_per_release_and_library() {
        let a = LibraryKey::from_bytes([1; 32]);
        let b = LibraryKey::from_bytes([2; 32]);
        assert_ne!(derive_release_key(&a, "r1"), derive_release_key(&a, "r2"));
        assert_ne!(derive_release_key(&a, "r1"), derive_release_key(&b, "r1"));
        assert_eq!(derive_release_key(&a, "r1"), derive_release_key(&a, "r1"));
    }

    const RELEASE_VECTOR: &str = "1c71c8e95e4a0cab3e569b6e34528f3c273de6d13fd1579693c270f5273ca6f0";
}
