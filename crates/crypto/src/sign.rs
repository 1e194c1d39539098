//! Ed25519 identities: a user's signing key, its public key, signatures, and
//! the X25519 form of both used for sealed boxes ([`crate::seal`]).

use crate::error::{KeyParseError, SignatureError};
use crate::keys::parse_key_text;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use std::fmt;
use zeroize::Zeroizing;

/// A user's Ed25519 signing key (one per user, global across libraries).
/// Zeroizes on drop; `Debug` shows only the public key.
#[derive(Clone)]
pub struct IdentitySigningKey(SigningKey);

impl IdentitySigningKey {
    /// Prefix of the key's text form.
    pub const TEXT_PREFIX: &'static str = "bae-identity-key-v1:";

    /// A fresh random identity from the operating system's CSPRNG.
    pub fn generate() -> Self {
        IdentitySigningKey(SigningKey::generate(&mut OsRng))
    }

    /// The identity for a 32-byte Ed25519 seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        IdentitySigningKey(SigningKey::from_bytes(seed))
    }

    /// The 32-byte seed, for export.
    pub fn to_seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// Text form for a key file or the OS keyring: prefix then 64 hex digits.
    pub fn to_key_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{}{}",
            Self::TEXT_PREFIX,
            &*Zeroizing::new(hex::encode(*self.to_seed()))
        ))
    }

    /// Parses the text form written by [`IdentitySigningKey::to_key_text`].
    pub fn from_key_text(text: &str) -> Result<Self, KeyParseError> {
        parse_key_text(text, Self::TEXT_PREFIX).map(|seed| Self::from_seed(&seed))
    }

    /// The public key.
    pub fn public_key(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.0.verifying_key())
    }

    /// Signs a message (deterministic Ed25519, RFC 8032).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }

    /// The X25519 secret of this identity, as libsodium's
    /// `crypto_sign_ed25519_sk_to_curve25519`: the first 32 bytes of
    /// SHA-512(seed) (clamped when used).
    pub fn to_x25519_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_scalar_bytes())
    }
}

impl fmt::Debug for IdentitySigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentitySigningKey(<redacted>, public {})",
            self.public_key()
        )
    }
}

/// A user's Ed25519 public key. Not secret: `Display` is lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey(VerifyingKey);

impl IdentityPublicKey {
    /// Parses 32 bytes, refusing bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyParseError> {
        VerifyingKey::from_bytes(bytes)
            .map(IdentityPublicKey)
            .map_err(|_| KeyParseError::InvalidPublicKey)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(KeyParseError::WrongLength {
                expected: 32,
                found: text.len(),
            });
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyParseError::BadHex)?;
        Self::from_bytes(&bytes)
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies a signature (strict: rejects small-order keys and
    /// non-canonical signatures).
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| SignatureError::Invalid)
    }

    /// The X25519 public key of this identity (Edwards to Montgomery), as
    /// libsodium's `crypto_sign_ed25519_pk_to_curve25519`.
    pub fn to_x25519(&self) -> [u8; 32] {
        self.0.to_montgomery().to_bytes()
    }
}

impl fmt::Display for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({self})")
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature([u8; 64]);

impl Signature {
    /// Wraps 64 signature bytes.
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Signature(bytes)
    }

    /// Parses a signature of unchecked length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        bytes
            .try_into()
            .map(Signature)
            .map_err(|_| SignatureError::WrongLength { found: bytes.len() })
    }

    /// The 64 bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, tests 1-3: (secret key, public key, message, signature).
    const RFC8032: [(&str, &str, &str, &str); 3] = [
        (
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
            "",
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
        ),
        (
            "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
            "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
            "72",
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        ),
        (
            "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
            "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
            "af82",
            "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
        ),
    ];

    fn arr<const N: usize>(h: &str) -> [u8; N] {
        hex::decode(h).unwrap().try_into().unwrap()
    }

    #[test]
    fn rfc8032_tests_1_to_3_sign_and_verify() {
        for (sk, pk, msg, sig) in RFC8032 {
            let key = IdentitySigningKey::from_seed(&arr(sk));
            assert_eq!(key.public_key().to_string(), pk);
            let msg = hex::decode(msg).unwrap();
            let signature = key.sign(&msg);
            assert_eq!(hex::encode(signature.to_bytes()), sig);
            let public = IdentityPublicKey::from_hex(pk).unwrap();
            assert_eq!(public.verify(&msg, &signature), Ok(()));
        }
    }

    #[test]
    fn signature_over_other_message_or_key_is_invalid() {
        let key = IdentitySigningKey::generate();
        let other = IdentitySigningKey::generate();
        let sig = key.sign(b"batch 1");
        let public = key.public_key();
        assert_eq!(
            public.verify(b"batch 2", &sig),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            other.public_key().verify(b"batch 1", &sig),
            Err(SignatureError::Invalid)
        );
        let mut bytes = sig.to_bytes();
        bytes[10] ^= 1;
        assert_eq!(
            public.verify(b"batch 1", &Signature::from_bytes(bytes)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            Signature::from_slice(&[0; 63]),
            Err(SignatureError::WrongLength { found: 63 })
        );
    }

    #[test]
    fn x25519_forms_of_an_identity_agree() {
        let key = IdentitySigningKey::generate();
        let secret = x25519_dalek::StaticSecret::from(*key.to_x25519_secret());
        let public = x25519_dalek::PublicKey::from(&secret);
        assert_eq!(public.to_bytes(), key.public_key().to_x25519());
    }

    #[test]
    fn identity_key_text_round_trips_and_debug_is_redacted() {
        let key = IdentitySigningKey::generate();
        let back = IdentitySigningKey::from_key_text(&key.to_key_text()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let seed_hex = hex::encode(*key.to_seed());
        assert!(!format!("{key:?}").contains(&seed_hex));
    }

    proptest::proptest! {
        /// Any text is an identity key, a public key or a typed error; any
        /// bytes are a signature or a typed error.
        #[test]
        fn any_text_or_bytes_parse_or_are_typed_errors(
            text in "\\PC{0,100}",
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            if let Ok(key) = IdentitySigningKey::from_key_text(&text) {
                let again = IdentitySigningKey::from_key_text(&key.to_key_text()).unwrap();
                proptest::prop_assert_eq!(*again.to_seed(), *key.to_seed());
            }
            let _ = IdentityPublicKey::from_hex(&text);
            let _ = Signature::from_slice(&bytes);
        }
    }
}
