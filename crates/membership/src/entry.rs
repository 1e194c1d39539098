//! Membership chain entries: what they say, their canonical bytes and their
//! signature.
//!
//! An entry's bytes are `ENTRY_VERSION (1 byte) || postcard(entry)`; decoding
//! refuses anything that does not re-encode to the same bytes, so one entry
//! has exactly one encoding and one [`EntryHash`]. A [`SignedEntry`] is those
//! bytes plus an Ed25519 signature by the entry's author over
//! [`ENTRY_SIGNING_CONTEXT`] followed by the bytes. Layout and vectors:
//! `docs/FORMAT-membership.md`.

use crate::library::LibraryId;
use bae_crypto::{IdentityPublicKey, IdentitySigningKey, Signature};
use bae_hlc::{DeviceId, Timestamp};
use bae_oplog::BatchHash;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The entry format version this build writes and reads.
pub const ENTRY_VERSION: u8 = 1;
/// Domain-separation prefix of every entry signature.
pub const ENTRY_SIGNING_CONTEXT: &[u8] = b"bae-membership-entry-v1";
/// The largest encoded entry accepted (before decoding).
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;
/// The most devices one removal or demotion may cut off.
pub const MAX_CUTOFF_DEVICES: usize = 256;

/// The longest display name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// Bytes of a signature at the start of a [`SignedEntry`].
const SIGNATURE_LEN: usize = 64;

/// A member's role. Owners and admins change membership (admins cannot
/// touch owners); owners, admins and members write; everyone reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Full control, including over other owners.
    Owner,
    /// Adds, removes and changes members and readers (not owners).
    Admin,
    /// Reads and writes the library.
    Member,
    /// Reads only.
    Reader,
}

impl Role {
    /// Whether this role may write batches.
    pub fn can_write(self) -> bool {
        matches!(self, Role::Owner | Role::Admin | Role::Member)
    }

    /// Whether this role may change membership at all.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Rank for "is a demotion": owner 3, admin 2, member 1, reader 0.
    pub(crate) fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::Reader => 0,
        }
    }
}

/// What a removal (or a demotion) cuts off: per device of the subject, the
/// last batch seq the author had applied (later batches of that device are
/// rejected whatever HLC they claim) and that batch's hash, and the
/// subject's last membership entry seq the author had applied (later entries
/// of the subject that claim an HLC before the revocation are refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cutoffs {
    /// The subject's last membership entry seq the author had applied
    /// (`None`: none).
    pub last_entry: Option<u64>,
    /// Per device of the subject, what the author had applied of it; at
    /// most [`MAX_CUTOFF_DEVICES`], each device once.
    pub devices: Vec<DeviceCutoff>,
}

/// One device's cutoff in a removal or demotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceCutoff {
    /// The device.
    pub device: DeviceId,
    /// The last batch seq of the device the author had applied (0: none).
    pub seq: u64,
    /// The hash of that batch, when the author knew it (`None` in entries
    /// written before hashes were recorded, or for seq 0). It pins the
    /// device's stream up to the cutoff: the removed member keeps their
    /// signing key and could write other batches at those seqs, so a
    /// reader that had not applied them takes only the chain that ends in
    /// this hash.
    pub last_hash: Option<BatchHash>,
}

impl DeviceCutoff {
    /// A cutoff at `seq` without a hash (what entries written before
    /// hashes say).
    pub fn unpinned(device: DeviceId, seq: u64) -> Self {
        DeviceCutoff {
            device,
            seq,
            last_hash: None,
        }
    }
}

/// What an entry does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Makes `subject` a member with `role`.
    Add {
        /// Who is added.
        subject: IdentityPublicKey,
        /// Their role.
        role: Role,
    },
    /// Removes `subject`.
    Remove {
        /// Who is removed.
        subject: IdentityPublicKey,
        /// What the removal cuts off.
        cutoffs: Cutoffs,
    },
    /// Gives `subject` a display name in this library (members see it in
    /// `members`; sealed with the entry, never in clear in the bucket).
    /// Counts when the author names themselves, or is an owner or admin
    /// (admins cannot rename owners).
    SetName {
        /// Who is named.
        subject: IdentityPublicKey,
        /// The name: 1 to [`MAX_NAME_BYTES`] bytes of UTF-8, no control
        /// characters.
        name: String,
    },
    /// Gives `subject` another role. The cutoffs apply when the new role is
    /// lower (a demotion, such as to reader).
    ChangeRole {
        /// Whose role changes.
        subject: IdentityPublicKey,
        /// The new role.
        role: Role,
        /// What the demotion cuts off.
        cutoffs: Cutoffs,
    },
}

impl Action {
    /// The member this action is about.
    pub fn subject(&self) -> &IdentityPublicKey {
        match self {
            Action::Add { subject, .. }
            | Action::Remove { subject, .. }
            | Action::ChangeRole { subject, .. }
            | Action::SetName { subject, .. } => subject,
        }
    }
}

/// One membership chain entry, stored at `membership/{author_hex}/{seq}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The library it belongs to.
    pub library_id: LibraryId,
    /// Who wrote (and signs) it.
    pub author: IdentityPublicKey,
    /// Its number among the author's entries, from 0.
    pub seq: u64,
    /// Hash of the author's previous entry (`None` for seq 0).
    pub prev: Option<EntryHash>,
    /// When, by the author's HLC.
    pub hlc: Timestamp,
    /// What it does.
    pub action: Action,
}

/// BLAKE3 (derive-key mode, context `bae 2025 membership entry hash v1`) of
/// an entry's encoded bytes: the entry's identity. A replay, or the same
/// entry signed again, has the same hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryHash(pub [u8; 32]);

impl EntryHash {
    /// The hash of encoded entry bytes.
    pub fn of(encoded: &[u8]) -> Self {
        EntryHash(blake3::derive_key(
            "bae 2025 membership entry hash v1",
            encoded,
        ))
    }
}

impl fmt::Debug for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EntryHash({})", hex::encode(&self.0[..8]))
    }
}

impl fmt::Display for EntryHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why bytes are not a valid entry or signed entry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// More bytes than [`MAX_ENTRY_BYTES`] (plus the signature).
    #[error("membership entry is {len} bytes, more than the limit")]
    TooLarge {
        /// Bytes given.
        len: usize,
    },
    /// Too short to hold a signature and a version byte.
    #[error("membership entry is truncated")]
    Truncated,
    /// A version this build does not read.
    #[error(
        "membership entry version {version} is not supported (this build reads {ENTRY_VERSION})"
    )]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The body is not an entry.
    #[error("membership entry is malformed: {source}")]
    Malformed {
        /// What postcard reported.
        #[source]
        source: postcard::Error,
    },
    /// Bytes after the entry.
    #[error("{count} trailing bytes after the membership entry")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// The bytes decode but are not the canonical encoding of what they
    /// decode to (two encodings of one entry would be two entries).
    #[error("membership entry is not canonically encoded")]
    NonCanonical,
    /// A 32-byte field that is not an Ed25519 public key.
    #[error("membership entry field {field} is not a public key")]
    InvalidPublicKey {
        /// `author` or `subject`.
        field: &'static str,
    },
    /// An HLC outside the range the engine accepts.
    #[error("membership entry HLC is out of range")]
    HlcOutOfRange,
    /// More cutoff devices than [`MAX_CUTOFF_DEVICES`].
    #[error("membership entry cuts off {count} devices, more than {MAX_CUTOFF_DEVICES}")]
    TooManyCutoffs {
        /// How many.
        count: usize,
    },
    /// A cutoff at seq 0 (nothing applied) with a batch hash.
    #[error("membership entry pins a batch hash for device {device} at cutoff 0")]
    HashWithoutBatch {
        /// The device.
        device: DeviceId,
    },
    /// One device listed twice among the cutoffs.
    #[error("membership entry lists device {device} twice among its cutoffs")]
    DuplicateCutoff {
        /// The device.
        device: DeviceId,
    },
    /// A display name that is empty, longer than [`MAX_NAME_BYTES`], or
    /// holds a control character.
    #[error("membership entry display name is empty, over {MAX_NAME_BYTES} bytes, or holds a control character")]
    BadName,
    /// Seq 0 with a previous hash, or a later seq without one.
    #[error("membership entry seq {seq} {}", if *.seq == 0 { "names a previous entry" } else { "names no previous entry" })]
    BadPrev {
        /// The entry's seq.
        seq: u64,
    },
    /// Signing an entry whose author is not the signing key.
    #[error("entry author {author} is not the signing key {signer}")]
    AuthorNotSigner {
        /// The entry's author.
        author: Box<IdentityPublicKey>,
        /// The key asked to sign.
        signer: Box<IdentityPublicKey>,
    },
    /// The signature does not verify under the entry's author.
    #[error("membership entry signature does not verify under its author {author}")]
    BadSignature {
        /// The claimed author.
        author: Box<IdentityPublicKey>,
    },
}

/// Cutoffs without hashes (actions 1 and 2).
#[derive(Serialize, Deserialize)]
struct WireCutoffs {
    last_entry: Option<u64>,
    devices: Vec<([u8; 16], u64)>,
}

/// Cutoffs with the hash of each device's last batch (actions 4 and 5),
/// written when any device has one.
#[derive(Serialize, Deserialize)]
struct WirePinnedCutoffs {
    last_entry: Option<u64>,
    devices: Vec<([u8; 16], u64, Option<[u8; 32]>)>,
}

#[derive(Serialize, Deserialize)]
enum WireAction {
    Add {
        subject: [u8; 32],
        role: Role,
    },
    Remove {
        subject: [u8; 32],
        cutoffs: WireCutoffs,
    },
    ChangeRole {
        subject: [u8; 32],
        role: Role,
        cutoffs: WireCutoffs,
    },
    SetName {
        subject: [u8; 32],
        name: String,
    },
    RemovePinned {
        subject: [u8; 32],
        cutoffs: WirePinnedCutoffs,
    },
    ChangeRolePinned {
        subject: [u8; 32],
        role: Role,
        cutoffs: WirePinnedCutoffs,
    },
}

#[derive(Serialize, Deserialize)]
struct WireEntry {
    library_id: [u8; 16],
    author: [u8; 32],
    seq: u64,
    prev: Option<[u8; 32]>,
    hlc: u64,
    action: WireAction,
}

impl Cutoffs {
    fn check(&self) -> Result<(), EntryError> {
        if self.devices.len() > MAX_CUTOFF_DEVICES {
            return Err(EntryError::TooManyCutoffs {
                count: self.devices.len(),
            });
        }
        let mut seen = std::collections::BTreeSet::new();
        for cutoff in &self.devices {
            if !seen.insert(cutoff.device) {
                return Err(EntryError::DuplicateCutoff {
                    device: cutoff.device,
                });
            }
            if cutoff.seq == 0 && cutoff.last_hash.is_some() {
                return Err(EntryError::HashWithoutBatch {
                    device: cutoff.device,
                });
            }
        }
        Ok(())
    }

    /// Whether any device's cutoff carries a hash (then the entry is
    /// written with the pinned actions).
    fn pinned(&self) -> bool {
        self.devices.iter().any(|c| c.last_hash.is_some())
    }

    fn to_wire(&self) -> WireCutoffs {
        WireCutoffs {
            last_entry: self.last_entry,
            devices: self
                .devices
                .iter()
                .map(|c| (*c.device.as_bytes(), c.seq))
                .collect(),
        }
    }

    fn to_pinned_wire(&self) -> WirePinnedCutoffs {
        WirePinnedCutoffs {
            last_entry: self.last_entry,
            devices: self
                .devices
                .iter()
                .map(|c| (*c.device.as_bytes(), c.seq, c.last_hash.map(|h| h.0)))
                .collect(),
        }
    }

    fn from_wire(w: WireCutoffs) -> Result<Self, EntryError> {
        Self::from_pinned_wire(WirePinnedCutoffs {
            last_entry: w.last_entry,
            devices: w.devices.into_iter().map(|(d, s)| (d, s, None)).collect(),
        })
    }

    fn from_pinned_wire(w: WirePinnedCutoffs) -> Result<Self, EntryError> {
        let cutoffs = Cutoffs {
            last_entry: w.last_entry,
            devices: w
                .devices
                .into_iter()
                .map(|(d, seq, hash)| DeviceCutoff {
                    device: DeviceId::from_bytes(d),
                    seq,
                    last_hash: hash.map(BatchHash),
                })
                .collect(),
        };
        cutoffs.check()?;
        Ok(cutoffs)
    }
}

fn public_key(bytes: &[u8; 32], field: &'static str) -> Result<IdentityPublicKey, EntryError> {
    IdentityPublicKey::from_bytes(bytes).map_err(|_| EntryError::InvalidPublicKey { field })
}

impl Entry {
    /// Checks what the type alone does not: prev present exactly when
    /// seq > 0, the HLC in range, the cutoffs bounded and distinct.
    fn check(&self) -> Result<(), EntryError> {
        if (self.seq == 0) != self.prev.is_none() {
            return Err(EntryError::BadPrev { seq: self.seq });
        }
        if !self.hlc.is_valid() {
            return Err(EntryError::HlcOutOfRange);
        }
        match &self.action {
            Action::Add { .. } => Ok(()),
            Action::Remove { cutoffs, .. } | Action::ChangeRole { cutoffs, .. } => cutoffs.check(),
            Action::SetName { name, .. } => {
                if name.is_empty()
                    || name.len() > MAX_NAME_BYTES
                    || name.chars().any(char::is_control)
                {
                    return Err(EntryError::BadName);
                }
                Ok(())
            }
        }
    }

    /// The canonical bytes: `ENTRY_VERSION || postcard(entry)`.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.check()?;
        let action = match &self.action {
            Action::Add { subject, role } => WireAction::Add {
                subject: subject.to_bytes(),
                role: *role,
            },
            Action::Remove { subject, cutoffs } if cutoffs.pinned() => WireAction::RemovePinned {
                subject: subject.to_bytes(),
                cutoffs: cutoffs.to_pinned_wire(),
            },
            Action::Remove { subject, cutoffs } => WireAction::Remove {
                subject: subject.to_bytes(),
                cutoffs: cutoffs.to_wire(),
            },
            Action::ChangeRole {
                subject,
                role,
                cutoffs,
            } if cutoffs.pinned() => WireAction::ChangeRolePinned {
                subject: subject.to_bytes(),
                role: *role,
                cutoffs: cutoffs.to_pinned_wire(),
            },
            Action::ChangeRole {
                subject,
                role,
                cutoffs,
            } => WireAction::ChangeRole {
                subject: subject.to_bytes(),
                role: *role,
                cutoffs: cutoffs.to_wire(),
            },
            Action::SetName { subject, name } => WireAction::SetName {
                subject: subject.to_bytes(),
                name: name.clone(),
            },
        };
        let wire = WireEntry {
            library_id: *self.library_id.as_bytes(),
            author: self.author.to_bytes(),
            seq: self.seq,
            prev: self.prev.map(|h| h.0),
            hlc: self.hlc.as_u64(),
            action,
        };
        let out = postcard::to_extend(&wire, vec![ENTRY_VERSION])
            .map_err(|source| EntryError::Malformed { source })?;
        if out.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge { len: out.len() });
        }
        Ok(out)
    }

    /// Decodes entry bytes. Checks, in order: size, version, structure,
    /// trailing bytes, public keys, HLC range, cutoffs, prev, canonical form.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge { len: bytes.len() });
        }
        let (&version, body) = bytes.split_first().ok_or(EntryError::Truncated)?;
        if version != ENTRY_VERSION {
            return Err(EntryError::UnsupportedVersion { version });
        }
        let (wire, rest) = postcard::take_from_bytes::<WireEntry>(body)
            .map_err(|source| EntryError::Malformed { source })?;
        if !rest.is_empty() {
            return Err(EntryError::TrailingBytes { count: rest.len() });
        }
        let action = match wire.action {
            WireAction::Add { subject, role } => Action::Add {
                subject: public_key(&subject, "subject")?,
                role,
            },
            WireAction::Remove { subject, cutoffs } => Action::Remove {
                subject: public_key(&subject, "subject")?,
                cutoffs: Cutoffs::from_wire(cutoffs)?,
            },
            WireAction::ChangeRole {
                subject,
                role,
                cutoffs,
            } => Action::ChangeRole {
                subject: public_key(&subject, "subject")?,
                role,
                cutoffs: Cutoffs::from_wire(cutoffs)?,
            },
            WireAction::SetName { subject, name } => Action::SetName {
                subject: public_key(&subject, "subject")?,
                name,
            },
            WireAction::RemovePinned { subject, cutoffs } => Action::Remove {
                subject: public_key(&subject, "subject")?,
                cutoffs: Cutoffs::from_pinned_wire(cutoffs)?,
            },
            WireAction::ChangeRolePinned {
                subject,
                role,
                cutoffs,
            } => Action::ChangeRole {
                subject: public_key(&subject, "subject")?,
                role,
                cutoffs: Cutoffs::from_pinned_wire(cutoffs)?,
            },
        };
        let entry = Entry {
            library_id: LibraryId::from_bytes(wire.library_id),
            author: public_key(&wire.author, "author")?,
            seq: wire.seq,
            prev: wire.prev.map(EntryHash),
            hlc: Timestamp::try_from_u64(wire.hlc).map_err(|_| EntryError::HlcOutOfRange)?,
            action,
        };
        if entry.encode()? != bytes {
            return Err(EntryError::NonCanonical);
        }
        Ok(entry)
    }
}

/// An entry with its canonical bytes and its author's signature over them.
/// Decoding checks the form; [`SignedEntry::verify`] checks the signature
/// (the chain does both, and reports a bad signature instead of counting).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedEntry {
    entry: Entry,
    bytes: Vec<u8>,
    signature: Signature,
    hash: EntryHash,
}

fn signing_message(entry_bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(ENTRY_SIGNING_CONTEXT.len() + entry_bytes.len());
    message.extend_from_slice(ENTRY_SIGNING_CONTEXT);
    message.extend_from_slice(entry_bytes);
    message
}

impl SignedEntry {
    /// Encodes and signs an entry; `key` must be the entry's author.
    pub fn sign(key: &IdentitySigningKey, entry: Entry) -> Result<Self, EntryError> {
        if key.public_key() != entry.author {
            return Err(EntryError::AuthorNotSigner {
                author: Box::new(entry.author),
                signer: Box::new(key.public_key()),
            });
        }
        let bytes = entry.encode()?;
        let signature = key.sign(&signing_message(&bytes));
        Ok(SignedEntry {
            hash: EntryHash::of(&bytes),
            entry,
            bytes,
            signature,
        })
    }

    /// The object plaintext: `signature (64) || entry bytes`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SIGNATURE_LEN + self.bytes.len());
        out.extend_from_slice(&self.signature.to_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Parses an object plaintext written by [`SignedEntry::to_bytes`]. The
    /// signature is not checked here.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > SIGNATURE_LEN + MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge { len: bytes.len() });
        }
        if bytes.len() <= SIGNATURE_LEN {
            return Err(EntryError::Truncated);
        }
        let (signature, entry_bytes) = bytes.split_at(SIGNATURE_LEN);
        let signature = Signature::from_slice(signature).map_err(|_| EntryError::Truncated)?;
        let entry = Entry::decode(entry_bytes)?;
        Ok(SignedEntry {
            hash: EntryHash::of(entry_bytes),
            entry,
            bytes: entry_bytes.to_vec(),
            signature,
        })
    }

    /// Checks the signature against the entry's author.
    pub fn verify(&self) -> Result<(), EntryError> {
        self.entry
            .author
            .verify(&signing_message(&self.bytes), &self.signature)
            .map_err(|_| EntryError::BadSignature {
                author: Box::new(self.entry.author),
            })
    }

    /// The entry (trust it only once [`SignedEntry::verify`] passed).
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The entry's canonical bytes (what is signed, after the context).
    pub fn entry_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The entry's hash.
    pub fn hash(&self) -> EntryHash {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use proptest::prelude::*;

    fn key(n: u8) -> IdentitySigningKey {
        IdentitySigningKey::from_seed(&[n; 32])
    }

    fn hlc(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(1_800_000_000_000 + ms).unwrap()
    }

    fn removal(author: &IdentitySigningKey) -> Entry {
        Entry {
            library_id: LibraryId::from_bytes([7; 16]),
            author: author.public_key(),
            seq: 1,
            prev: Some(EntryHash([9; 32])),
            hlc: hlc(5),
            action: Action::Remove {
                subject: key(2).public_key(),
                cutoffs: Cutoffs {
                    last_entry: Some(3),
                    devices: vec![DeviceCutoff::unpinned(DeviceId::from_bytes([1; 16]), 40)],
                },
            },
        }
    }

    #[test]
    fn signed_entry_round_trips_and_verifies() {
        let author = key(1);
        let signed = SignedEntry::sign(&author, removal(&author)).unwrap();
        let back = SignedEntry::from_bytes(&signed.to_bytes()).unwrap();
        assert_eq!(back, signed);
        back.verify().unwrap();
        assert_eq!(back.hash(), EntryHash::of(back.entry_bytes()));
    }

    #[test]
    fn a_signature_over_other_bytes_or_by_another_key_is_refused() {
        let author = key(1);
        let signed = SignedEntry::sign(&author, removal(&author)).unwrap();
        let mut bytes = signed.to_bytes();
        bytes[3] ^= 1;
        let forged = SignedEntry::from_bytes(&bytes).unwrap();
        assert!(matches!(
            forged.verify(),
            Err(EntryError::BadSignature { .. })
        ));
        assert!(matches!(
            SignedEntry::sign(&key(3), removal(&author)),
            Err(EntryError::AuthorNotSigner { .. })
        ));
    }

    #[test]
    fn every_decode_failure_is_typed() {
        let author = key(1);
        let bytes = removal(&author).encode().unwrap();
        assert!(matches!(Entry::decode(&[]), Err(EntryError::Truncated)));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert!(matches!(
            Entry::decode(&v2),
            Err(EntryError::UnsupportedVersion { version: 2 })
        ));
        assert!(matches!(
            Entry::decode(&bytes[..bytes.len() - 1]),
            Err(EntryError::Malformed { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Entry::decode(&long),
            Err(EntryError::TrailingBytes { count: 1 })
        ));
        assert!(matches!(
            Entry::decode(&vec![1; MAX_ENTRY_BYTES + 1]),
            Err(EntryError::TooLarge { .. })
        ));
        assert!(matches!(
            SignedEntry::from_bytes(&[0; 64]),
            Err(EntryError::Truncated)
        ));
        // seq (a varint at a known offset: version, library id, author)
        // written with an overlong encoding: 0x81 0x00 for 1.
        let seq_at = 1 + 16 + 32;
        assert_eq!(bytes[seq_at], 1);
        let mut overlong = bytes[..seq_at].to_vec();
        overlong.extend_from_slice(&[0x81, 0x00]);
        overlong.extend_from_slice(&bytes[seq_at + 1..]);
        assert!(matches!(
            Entry::decode(&overlong),
            Err(EntryError::NonCanonical) | Err(EntryError::Malformed { .. })
        ));
    }

    fn pin(entry: &mut Entry, hash: Option<BatchHash>) {
        if let Action::Remove { cutoffs, .. } = &mut entry.action {
            cutoffs.devices[0].last_hash = hash;
        }
    }

    #[test]
    fn a_pinned_cutoff_round_trips_and_an_unpinned_one_keeps_the_old_encoding() {
        let author = key(1);
        let old = removal(&author);
        let old_bytes = old.encode().unwrap();
        let mut pinned = removal(&author);
        pin(&mut pinned, Some(BatchHash([5; 32])));
        let bytes = pinned.encode().unwrap();
        assert_eq!(Entry::decode(&bytes).unwrap(), pinned);
        assert_eq!(Entry::decode(&old_bytes).unwrap(), old);
        // The action index follows version, library id, author, seq, prev
        // tag, prev and the HLC varint: 1 Remove without hashes, 4 with.
        let hlc_at = 1 + 16 + 32 + 1 + 1 + 32;
        let hlc_len = old_bytes[hlc_at..]
            .iter()
            .position(|b| b & 0x80 == 0)
            .unwrap()
            + 1;
        let action_at = hlc_at + hlc_len;
        assert_eq!(old_bytes[action_at], 1);
        assert_eq!(bytes[action_at], 4);
        // The pinned action whose devices carry no hash is the unpinned
        // one written another way: refused, so an entry has one hash. (The
        // one device is last: its hash option, absent, is one 0 byte.)
        let mut other_way = old_bytes.clone();
        other_way[action_at] = 4;
        other_way.push(0);
        assert!(matches!(
            Entry::decode(&other_way),
            Err(EntryError::NonCanonical)
        ));
    }

    #[test]
    fn a_hash_pinned_at_cutoff_zero_is_refused() {
        let author = key(1);
        let mut entry = removal(&author);
        if let Action::Remove { cutoffs, .. } = &mut entry.action {
            cutoffs.devices[0] = DeviceCutoff {
                device: DeviceId::from_bytes([1; 16]),
                seq: 0,
                last_hash: Some(BatchHash([5; 32])),
            };
        }
        assert!(matches!(
            entry.encode(),
            Err(EntryError::HashWithoutBatch { .. })
        ));
    }

    #[test]
    fn entries_that_break_the_form_are_refused_on_encode_and_decode() {
        let author = key(1);
        let mut no_prev = removal(&author);
        no_prev.prev = None;
        assert!(matches!(
            no_prev.encode(),
            Err(EntryError::BadPrev { seq: 1 })
        ));
        let mut twice = removal(&author);
        let device = DeviceId::from_bytes([1; 16]);
        if let Action::Remove { cutoffs, .. } = &mut twice.action {
            cutoffs.devices.push(DeviceCutoff::unpinned(device, 1));
        }
        assert!(matches!(
            twice.encode(),
            Err(EntryError::DuplicateCutoff { .. })
        ));
        let mut many = removal(&author);
        if let Action::Remove { cutoffs, .. } = &mut many.action {
            cutoffs.devices = (0..=MAX_CUTOFF_DEVICES as u32)
                .map(|i| {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&i.to_le_bytes());
                    DeviceCutoff::unpinned(DeviceId::from_bytes(b), 1)
                })
                .collect();
        }
        assert!(matches!(
            many.encode(),
            Err(EntryError::TooManyCutoffs { count: 257 })
        ));
        // An out-of-range HLC, written past the encoder's check.
        let good = removal(&author).encode().unwrap();
        let mut bad_hlc = good.clone();
        // hlc follows seq (1 byte), prev tag (1) and prev (32): a varint;
        // replace it by u64::MAX's 10-byte varint.
        let hlc_at = 1 + 16 + 32 + 1 + 1 + 32;
        let hlc_len = good[hlc_at..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        bad_hlc.splice(
            hlc_at..hlc_at + hlc_len,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        );
        assert!(matches!(
            Entry::decode(&bad_hlc),
            Err(EntryError::HlcOutOfRange)
        ));
    }

    #[test]
    fn a_key_that_is_not_a_curve_point_is_refused() {
        let author = key(1);
        let mut bytes = removal(&author).encode().unwrap();
        // Author at 17..49; find a y-coordinate with no point.
        let bad = (0u8..=255)
            .map(|b| {
                let mut k = [b; 32];
                k[31] &= 0x7f;
                k
            })
            .find(|k| IdentityPublicKey::from_bytes(k).is_err())
            .unwrap();
        bytes[17..49].copy_from_slice(&bad);
        assert!(matches!(
            Entry::decode(&bytes),
            Err(EntryError::InvalidPublicKey { field: "author" })
        ));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedEntry::from_bytes(&bytes);
            let _ = Entry::decode(&bytes);
        }

        #[test]
        fn decoding_mutated_entries_never_panics_and_changes_are_never_silent(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
            cut in any::<prop::sample::Index>(),
        ) {
            let author = key(1);
            let signed = SignedEntry::sign(&author, removal(&author)).unwrap();
            let original = signed.to_bytes();
            let mut bytes = original.clone();
            for (at, x) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            if let (Ok(back), true) = (SignedEntry::from_bytes(&bytes), bytes != original) {
                // Whatever still decodes is a different entry or signature, and
                // fails verification.
                prop_assert!(back.verify().is_err());
            }
            let _ = SignedEntry::from_bytes(&bytes[..cut.index(bytes.len())]);
        }
    }
}
