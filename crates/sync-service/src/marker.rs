//! `library`: the library marker. `init` writes it before anything else,
//! so a device holding a key can prove that the key opens this bucket's
//! library before it writes anything locally (`join`), and `init` can tell
//! a bucket that already holds a library. Format: `docs/FORMAT-sync.md`.

use crate::error::SyncError;
use crate::service::head_place;
use bae_crypto::object::{ObjectHeader, HEADER_LEN};
use bae_crypto::{
    open_object, seal_object, IdentityPublicKey, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace,
};
use bae_storage_s3::layout::{self, LIBRARY_MARKER_KEY};
use bae_storage_s3::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

/// The marker format version (2: names the founder).
pub const MARKER_VERSION: u8 = 2;

/// The largest marker object read (sealed). Its plaintext is under 80
/// bytes; anything larger is no marker of ours.
pub const MAX_MARKER_OBJECT_BYTES: u64 = 4096;

/// What the marker says: which library the bucket holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryMarker {
    /// Format version ([`MARKER_VERSION`]).
    pub version: u8,
    /// The library id (the key fingerprint in hex).
    pub library_id: String,
    /// The key epoch the library was created under.
    pub key_epoch: u32,
    /// The library key's fingerprint.
    pub fingerprint: [u8; 16],
    /// The founder's Ed25519 public key: the only key whose self-addition
    /// can be the membership chain's genesis.
    pub founder: [u8; 32],
    /// The device that ran `init`: only it may take the marker up again
    /// when its `init` failed after writing it (another library set up
    /// from the same key store, so by the same founder, must not).
    pub founding_device: [u8; 16],
}

impl LibraryMarker {
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, MarkerError> {
        let (marker, rest): (LibraryMarker, _) = postcard::take_from_bytes(bytes)?;
        if marker.version != MARKER_VERSION {
            return Err(MarkerError::UnsupportedVersion(marker.version));
        }
        if !rest.is_empty() {
            return Err(MarkerError::TrailingBytes(rest.len()));
        }
        Ok(marker)
    }
}

/// Why a marker's plaintext is not a valid marker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MarkerError {
    /// It does not decode (truncated or malformed).
    #[error("does not decode: {0}")]
    Malformed(#[from] postcard::Error),
    /// A format version this build does not read.
    #[error("marker version {0} is not supported")]
    UnsupportedVersion(u8),
    /// Bytes after the marker.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// Its contents name another library than the key it is sealed with.
    #[error("names library {0}, not the one its key opens")]
    OtherLibrary(String),
    /// Its founder is not an Ed25519 public key.
    #[error("founder is not a public key")]
    BadFounder,
}

/// The marker's place: kind `LibraryMarker`, device all zero, seq 0.
pub(crate) fn place() -> ObjectPlace {
    ObjectPlace {
        kind: ObjectKind::LibraryMarker,
        device: [0; 16],
        seq: 0,
    }
}

/// The sealed marker of the library `key` opens, founded by `founder` on
/// `founding_device` (epoch 0).
pub(crate) fn seal(
    key: &LibraryKey,
    founder: &IdentityPublicKey,
    founding_device: bae_hlc::DeviceId,
) -> Vec<u8> {
    let marker = LibraryMarker {
        version: MARKER_VERSION,
        library_id: crate::library::library_id(key),
        key_epoch: KeyEpoch::FIRST.0,
        fingerprint: *key.fingerprint().as_bytes(),
        founder: founder.to_bytes(),
        founding_device: *founding_device.as_bytes(),
    };
    let plaintext = postcard::to_allocvec(&marker).unwrap_or_default();
    seal_object(key, KeyEpoch::FIRST, &place(), &plaintext)
}

/// What a bucket holds, as far as setting up a library cares.
pub(crate) enum Found {
    /// A marker: the library id its header names (readable without the key).
    Marker {
        /// The sealed bytes.
        bytes: Vec<u8>,
        /// The fingerprint in its header, in hex (the library id).
        library_id: String,
    },
    /// No marker, but objects (a library made before markers, or something
    /// else): the keys of its heads (possibly none).
    Objects(Vec<String>),
    /// Nothing at all.
    Empty,
}

/// Reads the marker (bounded), or lists what the bucket holds without one.
pub(crate) async fn probe(store: &dyn ObjectStore) -> Result<Found, SyncError> {
    match store.get(LIBRARY_MARKER_KEY, MAX_MARKER_OBJECT_BYTES).await {
        Ok(bytes) => {
            let header =
                ObjectHeader::parse(&bytes[..bytes.len().min(HEADER_LEN)]).map_err(object_error)?;
            Ok(Found::Marker {
                bytes,
                library_id: header.fingerprint.to_string(),
            })
        }
        Err(StoreError::NotFound { .. }) => {
            let heads = store.list(layout::HEADS_PREFIX).await?;
            if !heads.is_empty() {
                return Ok(Found::Objects(heads));
            }
            let any = store.list("").await?;
            Ok(if any.is_empty() {
                Found::Empty
            } else {
                Found::Objects(Vec::new())
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn object_error(source: bae_crypto::ObjectError) -> SyncError {
    SyncError::Object {
        key: LIBRARY_MARKER_KEY.to_owned(),
        source,
    }
}

/// Opens a marker (`bytes`) with `key` and checks it names that key's
/// library.
pub(crate) fn open(bytes: &[u8], key: &LibraryKey) -> Result<LibraryMarker, SyncError> {
    let plaintext = open_object(&(KeyEpoch::FIRST, key), &place(), bytes).map_err(object_error)?;
    let marker =
        LibraryMarker::decode(&plaintext).map_err(|e| SyncError::invalid(LIBRARY_MARKER_KEY, e))?;
    if marker.library_id != crate::library::library_id(key)
        || marker.fingerprint != *key.fingerprint().as_bytes()
    {
        return Err(SyncError::invalid(
            LIBRARY_MARKER_KEY,
            MarkerError::OtherLibrary(marker.library_id),
        ));
    }
    Ok(marker)
}

/// Proves that `key` opens the library in the bucket at `bucket` (named in
/// errors) before anything is written locally, and returns the founder its
/// marker names. The marker must open and name the key's library. A wrong
/// key is [`SyncError::KeyDoesNotOpenLibrary`], a bucket with nothing to
/// prove against [`SyncError::NotALibrary`], a bucket made before phase 2
/// (a head that opens, no marker) [`SyncError::PhaseOneLibrary`].
pub(crate) async fn prove_key(
    store: &dyn ObjectStore,
    bucket: &str,
    key: &LibraryKey,
) -> Result<IdentityPublicKey, SyncError> {
    let wrong_key = |library_id: String| SyncError::KeyDoesNotOpenLibrary {
        bucket: bucket.to_owned(),
        library_id,
    };
    match probe(store).await? {
        Found::Marker { bytes, library_id } => {
            if library_id != crate::library::library_id(key) {
                return Err(wrong_key(library_id));
            }
            let marker = open(&bytes, key)?;
            IdentityPublicKey::from_bytes(&marker.founder)
                .map_err(|_| SyncError::invalid(LIBRARY_MARKER_KEY, MarkerError::BadFounder))
        }
        Found::Objects(heads) => {
            let Some(head_key) = heads.first() else {
                return Err(SyncError::NotALibrary(bucket.to_owned()));
            };
            let (device, seq) = layout::parse_heads_key(head_key)
                .map_err(|e| SyncError::invalid(head_key.clone(), e))?;
            let bytes = store
                .get(head_key, crate::head::MAX_HEAD_OBJECT_BYTES)
                .await?;
            match open_object(&(KeyEpoch::FIRST, key), &head_place(device, seq), &bytes) {
                Ok(_) => Err(SyncError::PhaseOneLibrary(bucket.to_owned())),
                Err(bae_crypto::ObjectError::WrongKey { found, .. }) => {
                    Err(wrong_key(found.to_string()))
                }
                Err(source) => Err(SyncError::Object {
                    key: head_key.clone(),
                    source,
                }),
            }
        }
        Found::Empty => Err(SyncError::NotALibrary(bucket.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn plaintext() -> Vec<u8> {
        let key = LibraryKey::from_bytes([3; 32]);
        let founder = bae_crypto::IdentitySigningKey::from_seed(&[5; 32]).public_key();
        let sealed = seal(&key, &founder, bae_hlc::DeviceId::from_bytes([5; 16]));
        open_object(&(KeyEpoch::FIRST, &key), &place(), &sealed).unwrap()
    }

    proptest! {
        /// Any bytes, and the real marker with any byte changed, decode to
        /// a marker or a typed error; a marker that decodes re-encodes to
        /// itself.
        #[test]
        fn any_bytes_are_a_marker_or_a_typed_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            at in any::<prop::sample::Index>(),
            flip in 1u8..,
        ) {
            let mut mutated = plaintext();
            let i = at.index(mutated.len());
            mutated[i] ^= flip;
            for input in [bytes, mutated] {
                if let Ok(marker) = LibraryMarker::decode(&input) {
                    let again = postcard::to_allocvec(&marker).unwrap();
                    prop_assert_eq!(LibraryMarker::decode(&again).unwrap(), marker);
                }
            }
        }
    }

    #[test]
    fn the_sealed_marker_decodes() {
        let marker = LibraryMarker::decode(&plaintext()).unwrap();
        assert_eq!(marker.version, MARKER_VERSION);
        assert!(matches!(
            LibraryMarker::decode(&[2]),
            Err(MarkerError::Malformed(_))
        ));
    }
}
