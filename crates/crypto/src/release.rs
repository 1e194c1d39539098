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

    /// HKDF-SHA256 written out from its definition (RFC 5869) with HMAC
    /// alone: extract `PRK = HMAC(salt, ikm)`, expand one block
    /// `T(1) = HMAC(PRK, info || 0x01)`. A second implementation the
    /// documented vectors are checked against.
    fn release_key_by_hand(library: &[u8; 32], release_id: &str) -> ([u8; 32], [u8; 32]) {
        let hmac = |key: &[u8], parts: &[&[u8]]| -> [u8; 32] {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
            for p in parts {
                mac.update(p);
            }
            mac.finalize().into_bytes().into()
        };
        let salt = hmac(library, &[SALT_LABEL]);
        let prk = hmac(&salt, &[library]);
        let okm = hmac(&prk, &[INFO_PREFIX, release_id.as_bytes(), &[1]]);
        (salt, okm)
    }

    /// The vectors of docs/FORMAT-crypto.md section 5: (library key,
    /// release id, salt, release key). The first two library keys stand
    /// for two key epochs of one library: the same release id gives
    /// unrelated release keys, which is why a release records its epoch.
    const DOC_VECTORS: &[([u8; 2], &str, &str, &str)] = &[
        (
            [0x00, 0x1f],
            "release-0001",
            "ba5d9d458eefbb9c0ea45864a1638cbbf8292e3353a0e6f009cff1e07f36d645",
            RELEASE_VECTOR,
        ),
        (
            [0x20, 0x3f],
            "release-0001",
            "99070917b0e1c24ad582ec5a0e6b6cf41fa953582a9cf987506bb54abd943782",
            "87222eeed378e465327ead8daeed5cb6c5c54b4a7536ce6ff28025120f63c31c",
        ),
        (
            [0x00, 0x1f],
            "04ec0436-be4f-31d3-8c0d-8c13373702e9",
            "ba5d9d458eefbb9c0ea45864a1638cbbf8292e3353a0e6f009cff1e07f36d645",
            "00649dff292b33968cbdd2430a7bbcaed0cb0d7f075d71ced17b7158a5ef2c46",
        ),
    ];

    #[test]
    fn documented_vectors_match_the_hkdf_crate_and_hkdf_by_hand() {
        for ([first, last], release, salt_hex, key_hex) in DOC_VECTORS {
            let bytes: [u8; 32] = core::array::from_fn(|i| first + i as u8);
            assert_eq!(bytes[31], *last);
            let (salt_by_hand, key_by_hand) = release_key_by_hand(&bytes, release);
            assert_eq!(hex::encode(salt_by_hand), *salt_hex);
            assert_eq!(hex::encode(key_by_hand), *key_hex);
            let library = LibraryKey::from_bytes(bytes);
            assert_eq!(hex::encode(&salt(&library)[..]), *salt_hex);
            let key = derive_release_key(&library, release);
            assert_eq!(hex::encode(key.expose_secret()), *key_hex, "{release}");
        }
    }
}
