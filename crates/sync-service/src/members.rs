//! Phase 2 membership in the sync service: who signs, and whose signed
//! batches and heads a pull accepts.
//!
//! - Every batch and head is sealed as a [`SignedObject`] envelope signed by
//!   this user's identity ([`Member`]), over every field validation reads
//!   (`docs/FORMAT-membership.md` section 3).
//! - `init` writes the genesis entry (the founder adds itself as owner) at
//!   `membership/{founder}/0` before the first batch ([`write_genesis`]).
//! - A pull first LISTs `membership/` once, fetches only entries it has not
//!   cached (`bae_sync_membership`), and validates the chain against the
//!   founder. A batch is accepted only if its envelope verifies, its device
//!   is bound to its author (`bae_sync_device_authors`), the author can
//!   write at the batch's HLC and the batch is within the author's cutoff
//!   for that device; a head only if it verifies, its device is bound to its
//!   author, and the author is a member at its HLC. Anything else is
//!   [`SyncError::Refused`] with a [`Refusal`] and is never applied.
//!
//! Phase-1 objects (unsigned) are refused by name ([`Refusal::Unsigned`]):
//! no bucket of user data predates phase 2's signed format.

use crate::epochs::MAX_BLOBS_TRIED;
use crate::error::{InvalidObject, SyncError};
use crate::gc::NotARemoval;
use crate::head::Head;
use crate::service::SyncService;
use bae_crypto::object::{sealed_len, ObjectHeader, HEADER_LEN};
use bae_crypto::{
    IdentityPublicKey, IdentitySigningKey, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace,
};
use bae_crypto::{KeyRing, ObjectError};
use bae_hlc::{DeviceId, Timestamp};
use bae_membership::entry::MAX_ENTRY_BYTES;
use bae_membership::{
    Action, Chain, DeviceBindings, EnvelopeError, EnvelopeHeader, LibraryId, Role, SignedEntry,
    SignedKind, SignedObject, UnsignedObject, ValidatedChain, VerifiedObject,
};
use bae_oplog::BatchHash;
use bae_storage_s3::layout::{self, PublicKeyHex, MEMBERSHIP_PREFIX};
use bae_storage_s3::{ObjectStore, StoreError};
use rusqlite::params;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Who this device signs as, and whose genesis its chain starts from.
#[derive(Clone)]
pub struct Member {
    identity: IdentitySigningKey,
    founder: IdentityPublicKey,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("identity", &self.identity.public_key())
            .field("founder", &self.founder)
            .finish()
    }
}

impl Member {
    /// Signs as `identity` in the library founded by `founder`.
    pub fn new(identity: IdentitySigningKey, founder: IdentityPublicKey) -> Self {
        Member { identity, founder }
    }

    /// Signs as `identity` in a library it founded.
    pub fn founder_of_library(identity: IdentitySigningKey) -> Self {
        let founder = identity.public_key();
        Member { identity, founder }
    }

    /// This member's public key.
    pub fn public_key(&self) -> IdentityPublicKey {
        self.identity.public_key()
    }

    /// The library founder's public key.
    pub fn founder(&self) -> &IdentityPublicKey {
        &self.founder
    }

    /// The signing identity.
    pub(crate) fn identity(&self) -> &IdentitySigningKey {
        &self.identity
    }
}

/// Why a signed batch or head is refused. Nothing of a refused object is
/// applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// An unsigned object in the phase-1 format (a batch starting `BAEB`, a
    /// bare head): this build reads only signed objects.
    #[error("unsigned {0} in the phase-1 format; this build accepts only signed objects (FORMAT-sync.md)")]
    Unsigned(&'static str),
    /// The envelope does not parse or verify (forged signature, another
    /// library, moved object, wrong epoch).
    #[error("{0}")]
    Envelope(#[from] EnvelopeError),
    /// The author is not a member at the object's HLC.
    #[error("signed by {author}, who is not a member of the library at HLC {hlc}")]
    NotAMember {
        /// The author.
        author: Box<IdentityPublicKey>,
        /// The signed HLC.
        hlc: Timestamp,
    },
    /// The author is a member who may not write (a reader) at the HLC.
    #[error("signed by {author}, a {role:?} who may not write at HLC {hlc}")]
    CannotWrite {
        /// The author.
        author: Box<IdentityPublicKey>,
        /// Their role then.
        role: Role,
        /// The signed HLC.
        hlc: Timestamp,
    },
    /// A batch beyond the last seq of its device that counts since its
    /// author was removed or demoted.
    #[error("batch {seq} of device {device} is past cutoff {cutoff}, recorded when its author {author} was removed or demoted")]
    PastCutoff {
        /// The author.
        author: Box<IdentityPublicKey>,
        /// The device.
        device: DeviceId,
        /// The batch.
        seq: u64,
        /// The last seq that counts.
        cutoff: u64,
    },
    /// A batch of a device its author's removal or demotion did not list,
    /// claiming an HLC before it: the remover had seen nothing of that
    /// device, and an HLC can be back-dated.
    #[error("batch {seq} of device {device} claims HLC {hlc}, before its author {author} was removed or demoted, by a device that removal did not list")]
    UnlistedDevice {
        /// The author.
        author: Box<IdentityPublicKey>,
        /// The device.
        device: DeviceId,
        /// The batch.
        seq: u64,
        /// The HLC it claims.
        hlc: Timestamp,
    },
    /// A checkpoint with no signature object (`checkpoint-signatures/{id}`):
    /// written before phase 2 signed checkpoints, or by someone who could
    /// not sign it, or still being written.
    #[error("checkpoint has no signature")]
    UnsignedCheckpoint,
    /// A checkpoint signed by a member who may no longer write (removed or
    /// demoted since): what it holds is not trusted any more.
    #[error("checkpoint signed by {author}, who may no longer write")]
    NoLongerWrites {
        /// The author.
        author: Box<IdentityPublicKey>,
    },
    /// A signed field differs from the object inside the envelope.
    #[error("the signed {0} is not the one in the object it signs")]
    Mismatch(&'static str),
}

/// One current member, as `bae-sync members` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemberInfo {
    /// Their public key.
    pub key: IdentityPublicKey,
    /// Their role.
    pub role: Role,
    /// The device ids bound to them (whose batches they sign).
    pub devices: Vec<DeviceId>,
    /// Their display name in this library, if one was set.
    pub name: Option<String>,
}

/// The validated chain and device bindings a service checks against.
#[derive(Default)]
pub(crate) struct MemberState {
    /// The chain as of the last refresh (`None` before the first).
    chain: Option<Arc<ValidatedChain>>,
    /// Every membership key cached (so a pull fetches only others).
    seen: BTreeSet<String>,
    /// Device bindings (`None` until loaded from the library).
    bindings: Option<DeviceBindings>,
    /// Whether a binding was made since the last save.
    unsaved: bool,
    /// Whether an object named a key epoch newer than any held since the
    /// last look for this member's key blobs.
    pub(crate) keys_stale: bool,
    /// Whether a service without a key store has yet to adopt a newer key
    /// blob: it starts from the keys it was given, and a cached chain that
    /// has a removal names no epoch it would miss, so it looks on every
    /// membership read until it adopts one (a damaged read of the blob, or
    /// a LIST that missed it, must not end the look: seeds 12190, 12032
    /// with removals; see [`SyncService::look_for_keys_once`]).
    pub(crate) keys_unchecked: bool,
    /// The membership entries the last refresh could not open because
    /// their headers name a key epoch this member lacks, even after looking
    /// for its key blobs: a rotation not reached yet, a removal of this
    /// member, or an object planted there ([`SyncService::gc`] tells them
    /// apart).
    pub(crate) unopened: Vec<UnopenedEntry>,
}

/// A membership object whose header names a key epoch this member lacks.
/// Nothing in it is authenticated: its author is where its key puts it,
/// its epoch what its header says.
#[derive(Clone, Debug)]
pub(crate) struct UnopenedEntry {
    /// Its bucket key.
    pub(crate) key: String,
    /// The author its key names.
    pub(crate) author: IdentityPublicKey,
    /// The epoch its header names.
    pub(crate) epoch: KeyEpoch,
}

impl UnopenedEntry {
    /// The entry at `key` whose open failed with `error`, if that failure
    /// was an epoch this member lacks.
    fn from_error(key: &str, error: &SyncError) -> Option<Self> {
        let SyncError::Object {
            source: ObjectError::UnknownEpoch { epoch },
            ..
        } = error
        else {
            return None;
        };
        let (author, _) = layout::parse_membership_key(key).ok()?;
        Some(UnopenedEntry {
            key: key.to_owned(),
            author: IdentityPublicKey::from_hex(author.as_str()).ok()?,
            epoch: *epoch,
        })
    }
}

impl MemberState {
    /// Nothing loaded yet, and no look for newer key blobs made.
    pub(crate) fn keys_unchecked() -> Self {
        MemberState {
            keys_unchecked: true,
            ..MemberState::default()
        }
    }
}

impl SyncService {
    /// Why `entry`, which does not open with the keys held, cannot be a
    /// removal of this member, nor any entry of a rotation to the epoch its
    /// header names (`None`: it may be one). Such an entry is written by
    /// an owner or admin (in `chain`), and its author's own key blob of
    /// that epoch is in the bucket: a rotation puts its author's blob
    /// before it adopts the key (`epochs.rs`), and anyone else holds an
    /// epoch only from a blob of their own at it (a blob at
    /// `keys/{member}/{epoch}` holds exactly the epochs up to it). One
    /// HEAD, not a LIST of `keys/`, which may not show the newest blobs
    /// yet (an eventually consistent bucket) when they are the
    /// rotation's. Both checks are of what anyone who can write to the
    /// bucket can put there; they only make a plant name a real manager
    /// and that manager's blob path.
    pub(crate) async fn why_not_a_removal(
        &self,
        chain: &ValidatedChain,
        entry: &UnopenedEntry,
    ) -> Result<Option<NotARemoval>, SyncError> {
        if !chain
            .current_role(&entry.author)
            .is_some_and(Role::can_manage)
        {
            return Ok(Some(NotARemoval::AuthorCannotManage));
        }
        let there = self.key_blob_there(&entry.author, entry.epoch).await?;
        Ok((!there).then_some(NotARemoval::NoKeyBlob))
    }

    /// Whether `author`'s key blob of `epoch` is at `keys/{author}/{epoch}`
    /// (one HEAD, not a LIST, which may not show the newest blobs yet).
    /// For an entry that does not open: a device of `author` seals under `epoch` only while it
    /// is the newest it holds, which it got from that blob (a rotation puts
    /// its author's blob before it adopts the key; `epochs.rs`), so without
    /// it nothing there is an entry of `author` sealed under `epoch`.
    pub(crate) async fn key_blob_there(
        &self,
        author: &IdentityPublicKey,
        epoch: KeyEpoch,
    ) -> Result<bool, SyncError> {
        let author = PublicKeyHex::from_bytes(&author.to_bytes());
        Ok(self
            .store
            .exists(&layout::key_blob_key(&author, epoch.0))
            .await?)
    }
}

/// The largest membership object read (a sealed entry of the largest size).
pub(crate) const MAX_MEMBERSHIP_OBJECT_BYTES: u64 = sealed_len((MAX_ENTRY_BYTES + 64) as u64);

/// Opens (with `ring`) and decodes the membership entry read at `key`
/// (`sealed`); checks that it is the entry its key names and that its
/// signature verifies.
pub(crate) fn open_entry(key: &str, sealed: &[u8], ring: &KeyRing) -> Result<Vec<u8>, SyncError> {
    let (author, seq) =
        layout::parse_membership_key(key).map_err(|e| SyncError::invalid(key, e))?;
    let not_its_place = || SyncError::invalid(key, InvalidObject::EntryPlace);
    let author_bytes = IdentityPublicKey::from_hex(author.as_str())
        .map_err(|_| not_its_place())?
        .to_bytes();
    let plain = bae_crypto::open_object(ring, &entry_place(&author_bytes, seq), sealed).map_err(
        |source| SyncError::Object {
            key: key.to_owned(),
            source,
        },
    )?;
    let signed = SignedEntry::from_bytes(&plain).map_err(|e| SyncError::invalid(key, e))?;
    let entry = signed.entry();
    if entry.author.to_bytes() != author_bytes || entry.seq != seq {
        return Err(not_its_place());
    }
    signed.verify().map_err(|e| SyncError::invalid(key, e))?;
    Ok(plain)
}

/// The key epoch a sync object at `key` was sealed under (its header,
/// which the AEAD authenticates).
fn sealed_epoch(key: &str, sealed: &[u8]) -> Result<KeyEpoch, SyncError> {
    Ok(ObjectHeader::parse(&sealed[..sealed.len().min(HEADER_LEN)])
        .map_err(|source| SyncError::Object {
            key: key.to_owned(),
            source,
        })?
        .epoch)
}

/// The rights `author` needs to have signed a `kind` object of `device`
/// at `seq` and `hlc`: a member then; for a batch or checkpoint, a writer
/// then; for a checkpoint, still a writer; for a batch, within the
/// author's cutoff for the device and not back-dated from a device the
/// author's removal did not list.
fn rights(
    chain: &ValidatedChain,
    kind: SignedKind,
    device: DeviceId,
    seq: u64,
    author: &IdentityPublicKey,
    hlc: Timestamp,
) -> Result<(), Refusal> {
    let boxed = || Box::new(*author);
    match (kind, chain.role_at(author, hlc)) {
        (_, None) => {
            return Err(Refusal::NotAMember {
                author: boxed(),
                hlc,
            })
        }
        (SignedKind::Batch | SignedKind::Checkpoint, Some(role)) if !role.can_write() => {
            return Err(Refusal::CannotWrite {
                author: boxed(),
                role,
                hlc,
            })
        }
        _ => {}
    }
    if kind == SignedKind::Checkpoint && !chain.can_write_now(author) {
        return Err(Refusal::NoLongerWrites { author: boxed() });
    }
    if kind == SignedKind::Batch {
        if let Some(cutoff) = chain.cutoff_for(device, author).filter(|c| seq > *c) {
            return Err(Refusal::PastCutoff {
                author: boxed(),
                device,
                seq,
                cutoff,
            });
        }
        if chain.unlisted_before_cut_off(device, author, hlc) {
            return Err(Refusal::UnlistedDevice {
                author: boxed(),
                device,
                seq,
                hlc,
            });
        }
    }
    Ok(())
}

/// The sealed place of `membership/{author}/{seq}`.
pub(crate) fn entry_place(author: &[u8; 32], seq: u64) -> ObjectPlace {
    ObjectPlace::hashed_owner(ObjectKind::Membership, author, seq)
}

/// The genesis entry's HLC: the start of time, so the founder's batches
/// recorded before `init` (the library it shares) count as an owner's.
const GENESIS_HLC: Timestamp = Timestamp::ZERO;

/// Writes the genesis entry of the library `key` opens: `founder` adds
/// itself as owner, at `membership/{founder}/0`, sealed under epoch 0.
/// Written by `init` after the marker and before any batch; an existing
/// genesis (a resumed `init`) is kept, never replaced: the same signed
/// bytes at another HLC would fork the founder's chain.
pub async fn write_genesis(
    store: &dyn ObjectStore,
    key: &LibraryKey,
    founder: &IdentitySigningKey,
) -> Result<(), SyncError> {
    let author = founder.public_key();
    let object_key = layout::membership_key(&PublicKeyHex::from_bytes(&author.to_bytes()), 0);
    if store.exists(&object_key).await? {
        return Ok(());
    }
    let entry = bae_membership::Entry {
        library_id: LibraryId::from(key.fingerprint()),
        author,
        seq: 0,
        prev: None,
        hlc: GENESIS_HLC,
        action: Action::Add {
            subject: author,
            role: Role::Owner,
        },
    };
    let signed =
        SignedEntry::sign(founder, entry).map_err(|e| SyncError::SignEntry(Box::new(e)))?;
    let sealed = bae_crypto::seal_object(
        key,
        KeyEpoch::FIRST,
        &entry_place(&author.to_bytes(), 0),
        &signed.to_bytes(),
    );
    store.put(&object_key, &sealed).await?;
    Ok(())
}

impl SyncService {
    /// Seals `body` in an envelope signed by this member, at the place of
    /// `kind` `device`/`seq`, under the current epoch.
    pub(crate) fn seal_signed(
        &self,
        place: &ObjectPlace,
        kind: SignedKind,
        hlc: Timestamp,
        prev: Option<BatchHash>,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, SyncError> {
        let keys = self.key_ring();
        let (epoch, key) = keys.current().ok_or(SyncError::NoCurrentKey)?;
        let header = EnvelopeHeader {
            library_id: self.library_id,
            kind,
            device: DeviceId::from_bytes(place.device),
            seq: place.seq,
            hlc,
            epoch,
            prev,
        };
        let signed = SignedObject::sign(self.member.identity(), header, body)
            .map_err(|e| SyncError::SignEnvelope(Box::new(e)))?;
        Ok(bae_crypto::seal_object(
            key,
            epoch,
            place,
            &signed.to_bytes(),
        ))
    }

    /// Verifies the envelope of an opened batch or head object read at
    /// `key` (`sealed` its bytes, `plain` what they opened to) against
    /// the membership chain and the device bindings.
    pub(crate) async fn verify_signed(
        &self,
        key: &str,
        kind: SignedKind,
        device: DeviceId,
        seq: u64,
        sealed: &[u8],
        plain: Vec<u8>,
    ) -> Result<VerifiedObject, SyncError> {
        let refused = |reason: Refusal| SyncError::Refused {
            key: key.to_owned(),
            reason: Box::new(reason),
        };
        let epoch = sealed_epoch(key, sealed)?;
        let verified = SignedObject::from_bytes(&plain)
            .and_then(|o| o.verify(self.library_id, (kind, device, seq), epoch))
            .map_err(|e| match phase_one(kind, &plain) {
                Some(what) => refused(Refusal::Unsigned(what)),
                None => refused(Refusal::Envelope(e)),
            })?;
        let chain = self.chain().await?;
        let header = verified.header();
        rights(&chain, kind, device, seq, verified.author(), header.hlc).map_err(refused)?;
        self.bind(&verified)
            .map_err(|e| refused(Refusal::Envelope(e)))?;
        Ok(verified)
    }

    /// Checks an opened batch as [`SyncService::verify_signed`] does, but
    /// not its signature: pull's batches before the last of a run in a
    /// window, which that last one's verified signature authenticates
    /// through their hash links (`docs/SECURITY.md`). Its claimed author
    /// must be the one its device is bound to, if bound, and is checked
    /// for the rights a signed batch's author needs.
    pub(crate) async fn check_linked_batch(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
        sealed: &[u8],
        plain: &[u8],
    ) -> Result<UnsignedObject, SyncError> {
        let refused = |reason: Refusal| SyncError::Refused {
            key: key.to_owned(),
            reason: Box::new(reason),
        };
        let epoch = sealed_epoch(key, sealed)?;
        let bound = self.bound_author(device);
        let parsed = match &bound {
            Some(author) => SignedObject::from_bytes_expecting(plain, author),
            None => SignedObject::from_bytes(plain),
        };
        let linked = parsed
            .and_then(|o| {
                o.check_unsigned(self.library_id, (SignedKind::Batch, device, seq), epoch)
            })
            .map_err(|e| match phase_one(SignedKind::Batch, plain) {
                Some(what) => refused(Refusal::Unsigned(what)),
                None => refused(Refusal::Envelope(e)),
            })?;
        let author = linked.claimed_author();
        if let Some(bound) = bound {
            if bound != *author {
                return Err(refused(Refusal::Envelope(
                    EnvelopeError::DeviceOfAnotherAuthor {
                        device,
                        bound: Box::new(bound),
                        claimed: Box::new(*author),
                    },
                )));
            }
        }
        let chain = self.chain().await?;
        let hlc = linked.claimed_header().hlc;
        rights(&chain, SignedKind::Batch, device, seq, author, hlc).map_err(refused)?;
        Ok(linked)
    }

    /// The author `device` is bound to, if any.
    fn bound_author(&self, device: DeviceId) -> Option<IdentityPublicKey> {
        let state = self.members.lock().ok()?;
        state.bindings.as_ref()?.author_of(device).copied()
    }

    /// Binds the object's device to its author, or refuses another author.
    fn bind(&self, verified: &VerifiedObject) -> Result<(), EnvelopeError> {
        let own = self.own_binding();
        let Ok(mut state) = self.members.lock() else {
            return Ok(());
        };
        let bindings = state
            .bindings
            .get_or_insert_with(|| std::iter::once(own).collect());
        let new = bindings.author_of(verified.header().device).is_none();
        bindings.bind(verified)?;
        state.unsaved |= new;
        Ok(())
    }

    /// The member `device` is bound to, if this device has verified one of
    /// its objects.
    pub(crate) fn author_of(&self, device: DeviceId) -> Option<IdentityPublicKey> {
        let state = self.members.lock().ok()?;
        state.bindings.as_ref()?.author_of(device).copied()
    }

    /// The devices bound to `member` (whose signed objects this device has
    /// seen).
    pub(crate) fn devices_of(&self, member: &IdentityPublicKey) -> Vec<DeviceId> {
        self.members
            .lock()
            .ok()
            .and_then(|s| {
                s.bindings.as_ref().map(|b| {
                    b.iter()
                        .filter(|(_, author)| author == member)
                        .map(|(device, _)| device)
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// This device, bound to this member: the first binding, before any
    /// stored or seen. An object in this device's own place signed by
    /// another member is refused before it could bind the device (a member
    /// who wrote one would otherwise make this device refuse its own
    /// batches from then on).
    fn own_binding(&self) -> (DeviceId, IdentityPublicKey) {
        (self.device, self.member.public_key())
    }

    /// Loads the device bindings saved by earlier pulls (once per service),
    /// after this device's own ([`Self::own_binding`]).
    async fn load_bindings(&self) -> Result<(), SyncError> {
        if self.members.lock().is_ok_and(|s| s.bindings.is_some()) {
            return Ok(());
        }
        let stored = self
            .with_db(|rec| load_bindings(rec.sync_parts().0))
            .await?;
        let own = self.own_binding();
        if let Some(other) = stored.author_of(own.0).filter(|a| **a != own.1) {
            // Saved by an earlier build, which bound this device to the
            // first author it saw in its place: the saved binding says so
            // too from now on.
            tracing::warn!(device = %own.0, bound = %other, "this device was saved as bound to another member; bound to its own again");
            let (device, author) = (own.0.to_string(), own.1.to_bytes());
            self.with_db(move |rec| {
                rec.sync_parts().0.execute(
                    "UPDATE bae_sync_device_authors SET author = ?2 WHERE device_id = ?1",
                    params![device, author.as_slice()],
                )?;
                Ok(())
            })
            .await?;
        }
        if let Ok(mut state) = self.members.lock() {
            state
                .bindings
                .get_or_insert_with(|| std::iter::once(own).chain(stored.iter()).collect());
        }
        Ok(())
    }

    /// Saves the device bindings made since the last save.
    pub(crate) async fn save_bindings(&self) -> Result<(), SyncError> {
        let bindings: Vec<(DeviceId, IdentityPublicKey)> = match self.members.lock() {
            Ok(mut state) if state.unsaved => {
                state.unsaved = false;
                state
                    .bindings
                    .as_ref()
                    .map(|b| b.iter().collect())
                    .unwrap_or_default()
            }
            _ => return Ok(()),
        };
        self.with_db(move |rec| {
            let tx = rec.sync_parts().0.transaction()?;
            for (device, author) in &bindings {
                tx.execute(
                    "INSERT OR IGNORE INTO bae_sync_device_authors (device_id, author) VALUES (?1, ?2)",
                    params![device.to_string(), author.to_bytes().as_slice()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The validated chain as of the last refresh (refreshing first if
    /// this service has none yet).
    pub(crate) async fn chain(&self) -> Result<Arc<ValidatedChain>, SyncError> {
        let current = self.members.lock().ok().and_then(|s| s.chain.clone());
        match current {
            Some(chain) => Ok(chain),
            None => self.refresh_members().await,
        }
    }

    /// One LIST of `membership/`; fetches the entries not cached yet, caches
    /// those whose signature verifies, and validates the chain over every
    /// cached entry. A membership object that does not open or decode is
    /// skipped (logged), and read again by the next pull. An entry sealed
    /// under a key epoch this member lacks (a rotation), or an object that
    /// named one since the last refresh, makes it look for its newer key
    /// blob (`epochs.rs`) and adopt it if its author can manage membership
    /// in the chain validated with the entries it opens.
    pub(crate) async fn refresh_members(&self) -> Result<Arc<ValidatedChain>, SyncError> {
        self.load_bindings().await?;
        let listed = self.store.list(MEMBERSHIP_PREFIX).await?;
        let (seen, chain, keys_stale, unchecked, unlisted) = match self.members.lock() {
            Ok(s) => (
                s.seen.clone(),
                s.chain.clone(),
                s.keys_stale,
                s.keys_unchecked,
                s.unopened
                    .iter()
                    .filter(|u| !listed.contains(&u.key))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            Err(_) => (BTreeSet::new(), None, false, false, Vec::new()),
        };
        // An entry that did not open and that this LIST does not show may
        // still be there: an eventually consistent bucket lists the newest
        // writes late, and a removal this member cannot open must hold GC
        // until it opens (review5 finding 2). One HEAD each tells a stale
        // LIST from a deleted object (deleting a plant lifts GC's wait).
        let mut still_there = Vec::new();
        for u in unlisted {
            if self.store.exists(&u.key).await? {
                still_there.push(u);
            }
        }
        let unlisted = still_there;
        let cached: BTreeSet<String> = if chain.is_some() {
            seen
        } else {
            let keys = self.with_db(|rec| cached_keys(rec.sync_parts().0)).await?;
            keys.into_iter().chain(seen).collect()
        };
        let ring = self.key_ring();
        let mut fetched = Vec::new();
        let mut sealed_under_newer_epoch = Vec::new();
        for key in listed.iter().filter(|k| !cached.contains(*k)) {
            let error = match self.fetch_entry(key, &ring).await {
                Ok(bytes) => {
                    fetched.push((key.clone(), bytes));
                    continue;
                }
                Err(e) => e,
            };
            if let Some(unopened) = UnopenedEntry::from_error(key, &error) {
                sealed_under_newer_epoch.push(unopened);
                continue;
            }
            match error {
                SyncError::Store(e)
                    if !e.is_not_found() && !matches!(e, StoreError::TooLarge { .. }) =>
                {
                    return Err(e.into())
                }
                // Not cached, so the next pull reads it again: a read that
                // failed once (a damaged transfer, an object listed before
                // it was readable) must not hide an entry for good.
                e => tracing::warn!(%key, error = %e, "membership entry refused"),
            }
        }
        // A keyless service's first look: only once a removal (and so a
        // rotation) is in the chain.
        let unchecked_after_removal = |chain: &ValidatedChain| unchecked && chain.has_cut_offs();
        let look_for_keys = keys_stale
            || !sealed_under_newer_epoch.is_empty()
            || chain.as_deref().is_some_and(unchecked_after_removal);
        if let (Some(chain), true, false) = (&chain, fetched.is_empty(), look_for_keys) {
            if let Ok(mut s) = self.members.lock() {
                s.unopened = unlisted;
            }
            return Ok(Arc::clone(chain));
        }
        let (mut entries, mut all_keys) = self.cache_entries(fetched).await?;
        let mut chain =
            Chain::new(self.library_id, *self.member.founder()).validate(entries.clone());
        if look_for_keys || unchecked_after_removal(&chain) {
            // Oldest first: rotations number their epochs one after another,
            // so the next real blob is the lowest above the keys held, and
            // blobs planted at higher epochs cannot hide it.
            let mut tried = 0;
            for epoch in self.newer_key_blob_epochs().await? {
                if epoch <= self.key_epoch().0 {
                    continue;
                }
                if tried == MAX_BLOBS_TRIED {
                    break;
                }
                tried += 1;
                let newer = match self.open_key_blob(epoch).await {
                    Ok(newer) => newer,
                    Err(SyncError::Store(e))
                        if !e.is_not_found() && !matches!(e, StoreError::TooLarge { .. }) =>
                    {
                        return Err(e.into())
                    }
                    Err(e) => {
                        tracing::warn!(epoch, error = %e, "key blob refused");
                        continue;
                    }
                };
                // Every entry sealed under the blob's epochs that could be
                // a manager's must open with its keys: a blob of keys of its
                // own (a removed admin's, sealed to someone who has not seen
                // the removal) does not open the entries of the real epoch,
                // such as that removal. An object by an author who cannot
                // manage membership (anyone could have planted it) does not
                // count: one naming the next epoch kept every member from
                // the real blob of it.
                let mut opened = Vec::new();
                let mut foreign = false;
                for entry in &sealed_under_newer_epoch {
                    match self.fetch_entry(&entry.key, &newer.ring).await {
                        Ok(bytes) => opened.push((entry.key.clone(), bytes)),
                        Err(SyncError::Object {
                            source: ObjectError::WrongKey { .. },
                            ..
                        }) => match self.why_not_a_removal(&chain, entry).await? {
                            // Only by its author, never by a missing blob: a
                            // rotation writes a blob of its epoch for every
                            // member, so a manager has one at every real
                            // epoch, and a HEAD that finds none (the blob
                            // deleted) made the remover's own removal look
                            // like a plant and a removed admin's blob count
                            // (review5 finding 4).
                            Some(reason @ NotARemoval::AuthorCannotManage) => {
                                tracing::warn!(entry = %entry.key, %reason, "membership object does not open with a key blob's keys and is no manager's entry: not held against the blob");
                            }
                            _ => foreign = true,
                        },
                        Err(_) => {}
                    }
                }
                if foreign {
                    tracing::warn!(epoch, author = %newer.author, "key blob's keys do not open the entries sealed under its epochs");
                    continue;
                }
                let mut with_them = entries.clone();
                with_them.extend(
                    opened
                        .iter()
                        .filter_map(|(_, b)| SignedEntry::from_bytes(b).ok()),
                );
                let candidate =
                    Chain::new(self.library_id, *self.member.founder()).validate(with_them.clone());
                if !candidate
                    .current_role(&newer.author)
                    .is_some_and(Role::can_manage)
                {
                    tracing::warn!(epoch, author = %newer.author, "key blob signed by someone who cannot manage membership");
                    continue;
                }
                tracing::info!(epoch, "adopting a new library key epoch");
                self.adopt_keys(newer.ring).await?;
                // What still does not open under an epoch now held is not
                // an entry of it (the next refresh refuses it by name).
                let held = self.key_epoch();
                sealed_under_newer_epoch
                    .retain(|u| u.epoch > held && !opened.iter().any(|(o, _)| *o == u.key));
                (_, all_keys) = self.cache_entries(opened).await?;
                entries = with_them;
                chain = candidate;
            }
        }
        let chain = Arc::new(chain);
        if let Some(newest) = chain.newest_change() {
            self.clock_after(newest).await?;
        }
        for r in chain.rejected() {
            tracing::warn!(author = %r.author, seq = r.seq, reason = ?r.reason, "membership entry does not count");
        }
        let held = self.key_epoch();
        if let Ok(mut s) = self.members.lock() {
            s.seen.extend(all_keys);
            s.chain = Some(Arc::clone(&chain));
            s.unopened = sealed_under_newer_epoch;
            s.unopened
                .extend(unlisted.into_iter().filter(|u| u.epoch > held));
        }
        Ok(chain)
    }

    /// Moves this device's clock past `hlc` (when it is within the drift
    /// bound), so what it writes next is dated after it. A new member's
    /// device whose clock lags the manager's would otherwise stamp its
    /// first writes before the entry that added it, and every device would
    /// refuse them, as not a member then, for good.
    async fn clock_after(&self, hlc: bae_hlc::Timestamp) -> Result<(), SyncError> {
        self.with_db(move |rec| {
            let (conn, clock, _) = rec.sync_parts();
            if clock.check_drift(hlc).is_ok() {
                bae_oplog::catch_up_clock(conn, clock)?;
                clock.catch_up(hlc).map_err(bae_oplog::OplogError::from)?;
                bae_oplog::persist_clock(conn, clock)?;
            }
            Ok(())
        })
        .await
    }

    /// Caches `fetched` entries (key, signed bytes) and returns every
    /// cached entry and key.
    async fn cache_entries(
        &self,
        fetched: Vec<(String, Vec<u8>)>,
    ) -> Result<(Vec<SignedEntry>, Vec<String>), SyncError> {
        self.with_db(move |rec| {
            let conn = rec.sync_parts().0;
            let tx = conn.transaction()?;
            for (key, bytes) in &fetched {
                tx.execute(
                    "INSERT OR IGNORE INTO bae_sync_membership (object_key, entry) VALUES (?1, ?2)",
                    params![key, bytes],
                )?;
            }
            tx.commit()?;
            cached_entries(conn)
        })
        .await
    }

    /// Fetches, opens (with `ring`) and decodes one membership entry;
    /// checks that it is the entry its key names and that its signature
    /// verifies.
    async fn fetch_entry(&self, key: &str, ring: &KeyRing) -> Result<Vec<u8>, SyncError> {
        layout::parse_membership_key(key).map_err(|e| SyncError::invalid(key, e))?;
        let sealed = self.store.get(key, MAX_MEMBERSHIP_OBJECT_BYTES).await?;
        open_entry(key, &sealed, ring)
    }

    /// The current members, their roles and the devices bound to each
    /// (this device under this member), after one refresh.
    pub async fn members(&self) -> Result<Vec<MemberInfo>, SyncError> {
        let chain = self.refresh_members().await?;
        let bindings = self
            .members
            .lock()
            .ok()
            .and_then(|s| s.bindings.clone())
            .unwrap_or_default();
        Ok(chain
            .current_members()
            .into_iter()
            .map(|(key, role)| {
                let devices: Vec<DeviceId> = bindings
                    .iter()
                    .filter(|(_, a)| *a == key)
                    .map(|(d, _)| d)
                    .collect();
                let name = chain.name_of(&key).map(str::to_owned);
                MemberInfo {
                    key,
                    role,
                    devices,
                    name,
                }
            })
            .collect())
    }

    /// The library id every signed object names.
    pub fn library_id(&self) -> LibraryId {
        self.library_id
    }

    /// The library founder's public key (the membership chain's root).
    pub fn founder_key(&self) -> IdentityPublicKey {
        *self.member.founder()
    }

    /// This member's public key.
    pub fn member_key(&self) -> IdentityPublicKey {
        self.member.public_key()
    }
}

/// Whether `plain` is an unsigned phase-1 object of `kind`: a batch starts
/// with its magic, a head is a bare postcard head.
fn phase_one(kind: SignedKind, plain: &[u8]) -> Option<&'static str> {
    match kind {
        SignedKind::Batch if plain.starts_with(b"BAEB") => Some("batch"),
        SignedKind::Head if Head::decode(plain).is_ok() => Some("head"),
        _ => None,
    }
}

fn load_bindings(conn: &rusqlite::Connection) -> Result<DeviceBindings, SyncError> {
    let mut stmt = conn.prepare("SELECT device_id, author FROM bae_sync_device_authors")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (device, author) = row?;
        let (Ok(device), Ok(author)) = (device.parse::<DeviceId>(), <[u8; 32]>::try_from(author))
        else {
            continue;
        };
        if let Ok(author) = IdentityPublicKey::from_bytes(&author) {
            out.push((device, author));
        }
    }
    Ok(out.into_iter().collect())
}

/// `me`'s role in the chain of the entries cached in `conn` (no network).
pub(crate) fn cached_role(
    conn: &rusqlite::Connection,
    library_id: LibraryId,
    founder: IdentityPublicKey,
    me: &IdentityPublicKey,
) -> Result<Option<Role>, SyncError> {
    Ok(cached_chain(conn, library_id, founder)?.current_role(me))
}

/// The chain of the entries cached in `conn` (no network).
pub(crate) fn cached_chain(
    conn: &rusqlite::Connection,
    library_id: LibraryId,
    founder: IdentityPublicKey,
) -> Result<ValidatedChain, SyncError> {
    let (entries, _) = cached_entries(conn)?;
    Ok(Chain::new(library_id, founder).validate(entries))
}

fn cached_keys(conn: &rusqlite::Connection) -> Result<Vec<String>, SyncError> {
    let mut stmt = conn.prepare("SELECT object_key FROM bae_sync_membership")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every cached entry (ones that no longer decode are skipped) and every
/// cached key.
fn cached_entries(
    conn: &rusqlite::Connection,
) -> Result<(Vec<SignedEntry>, Vec<String>), SyncError> {
    let mut stmt = conn.prepare("SELECT object_key, entry FROM bae_sync_membership")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let (mut entries, mut keys) = (Vec::new(), Vec::new());
    for row in rows {
        let (key, bytes) = row?;
        if let Ok(entry) = SignedEntry::from_bytes(&bytes) {
            entries.push(entry);
        }
        keys.push(key);
    }
    Ok((entries, keys))
}
