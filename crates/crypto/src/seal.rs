//! Sealed boxes (libsodium `crypto_box_seal`) to an identity's X25519 key,
//! and the library-key wrap sealed to each member (`keys/{member}`).

use crate::error::SealError;
use crate::keys::{KeyEpoch, LibraryKey, KEY_LEN};
use crate::sign::{IdentityPublicKey, IdentitySigningKey};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

/// Bytes a sealed box adds to its plaintext: ephemeral public key and tag.
pub const SEAL_OVERHEAD: usize = 32 + 16;

/// Version byte of the library-key wrap payload.
pub const KEY_WRAP_VERSION: u8 = 1;

/// Seals `plaintext` to `recipient` (anonymous sender, libsodium
/// `crypto_box_seal` compatible).
pub fn seal_to(recipient: &IdentityPublicKey, plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    crypto_box::PublicKey::from(recipient.to_x25519())
        .seal(&mut OsRng, plaintext)
        .map_err(|_| SealError::SealFailed)
}

/// Opens a sealed box addressed to `identity`.
pub fn open_sealed(
    identity: &IdentitySigningKey,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::Truncated);
    }
    crypto_box::SecretKey::from(*identity.to_x25519_secret())
        .unseal(sealed)
        .map(Zeroizing::new)
        .map_err(|_| SealError::CannotOpen)
}

/// Seals a library key and its epoch to a member. Payload:
/// `version (1) || epoch (u32 LE) || key (32)`.
pub fn wrap_library_key(
    recipient: &IdentityPublicKey,
    epoch: KeyEpoch,
    key: &LibraryKey,
) -> Result<Vec<u8>, SealError> {
    let mut payload = Zeroizing::new(Vec::with_capacity(1 + 4 + KEY_LEN));
    payload.push(KEY_WRAP_VERSION);
    payload.extend_from_slice(&epoch.0.to_le_bytes());
    payload.extend_from_slice(key.expose_secret());
    seal_to(recipient, &payload)
}

/// Opens a library-key wrap sealed to `identity`.
pub fn unwrap_library_key(
    identity: &IdentitySigningKey,
    sealed: &[u8],
) -> Result<(KeyEpoch, LibraryKey), SealError> {
    let payload = open_sealed(identity, sealed)?;
    let bad = SealError::BadKeyWrap {
        expected: KEY_WRAP_VERSION,
    };
    if payload.len() != 1 + 4 + KEY_LEN || payload[0] != KEY_WRAP_VERSION {
        return Err(bad);
    }
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&payload[1..5]);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&payload[5..]);
    Ok((
        KeyEpoch(u32::from_le_bytes(epoch)),
        LibraryKey::from_bytes(*key),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_box_opens_only_for_its_recipient() {
        let alice = IdentitySigningKey::generate();
        let bob = IdentitySigningKey::generate();
        let sealed = seal_to(&alice.public_key(), b"grant payload").unwrap();
        assert_eq!(sealed.len(), 13 + SEAL_OVERHEAD);
        assert_eq!(&open_sealed(&alice, &sealed).unwrap()[..], b"grant payload");
        assert_eq!(open_sealed(&bob, &sealed), Err(SealError::CannotOpen));
        let mut tampered = sealed.clone();
        tampered[40] ^= 1;
        assert_eq!(open_sealed(&alice, &tampered), Err(SealError::CannotOpen));
        assert_eq!(
            open_sealed(&alice, &sealed[..47]),
            Err(SealError::Truncated)
        );
    }

    #[test]
    fn library_key_wrap_round_trips_with_its_epoch() {
        let member = IdentitySigningKey::generate();
        let key = LibraryKey::generate();
        let wrapped = wrap_library_key(&member.public_key(), KeyEpoch(3), &key).unwrap();
        let (epoch, back) = unwrap_library_key(&member, &wrapped).unwrap();
        assert_eq!(epoch, KeyEpoch(3));
        assert_eq!(back, key);
        let not_a_wrap = seal_to(&member.public_key(), b"hello").unwrap();
        assert_eq!(
            unwrap_library_key(&member, &not_a_wrap).err(),
            Some(SealError::BadKeyWrap { expected: 1 })
        );
    }
}
