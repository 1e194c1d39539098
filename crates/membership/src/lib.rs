//! Membership for bae sync (layer 2, phase 2).
//!
//! Owns the pure core of shared libraries:
//!
//! - [`entry`]: membership chain entries (add, remove, change role), their
//!   canonical encoding and Ed25519 signature;
//! - [`chain`]: validating a set of entries into one [`ValidatedChain`] that
//!   every device computes alike, whatever order the entries arrived in;
//! - [`envelope`]: the signed envelope every batch and head travels in, and
//!   the binding of a device id to the author of its first signed object;
//! - [`keys`]: the per-member, per-epoch blob of library keys, sealed to the
//!   member and signed by whoever distributed it;
//! - [`identity`]: the user's global signing identity, in the OS keyring or
//!   in files under a home directory;
//! - [`invite`]: the invite code an inviter hands an invitee out of band,
//!   with S3 credentials sealed to the invitee;
//! - [`grant`]: the share grant a member hands someone outside the library
//!   so they can fetch and decrypt one release (`docs/FORMAT-grant.md`).
//!
//! Formats, signing contexts and validation rules: `docs/FORMAT-membership.md`.
//!
//! Architecture invariant: `membership` never touches the network or SQL; it
//! validates bytes that the sync service fetched and hands back values the
//! sync service stores. Sealing entries under the library key (object kind
//! [`bae_crypto::ObjectKind::Membership`]) is the caller's.
#![forbid(unsafe_code)]

pub mod chain;
pub mod entry;
pub mod envelope;
pub mod grant;
pub mod identity;
pub mod invite;
pub mod keys;
mod library;
#[cfg(test)]
mod vectors;

pub use chain::{Chain, Rejected, Rejection, ValidatedChain};
pub use entry::{
    Action, Cutoffs, DeviceCutoff, Entry, EntryError, EntryHash, Role, SignedEntry,
    ENTRY_SIGNING_CONTEXT,
};
pub use envelope::{
    DeviceBindings, EnvelopeError, EnvelopeHeader, SignedKind, SignedObject, UnsignedObject,
    VerifiedObject,
};
pub use grant::{Grant, GrantBucket, GrantError, GrantFile, GrantPayload, GrantTerms};
pub use identity::{IdentityError, IdentityStore};
pub use invite::{Invite, InviteCredentials, InviteError, SealedCredentials};
pub use keys::{open_key_blob, seal_key_blob, KeyBlobError, OpenedKeyBlob};
pub use library::{LibraryId, LibraryIdError};
