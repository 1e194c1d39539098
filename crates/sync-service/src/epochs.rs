//! Key epochs (phase 2): which library keys this member holds, how a new
//! epoch reaches it, and the rotation a revocation makes.
//!
//! - Each member's keys sit at `keys/{member}/{epoch}`: a key blob holding
//!   every library key up to that epoch, sealed to the member and signed by
//!   the owner or admin who wrote it (`docs/FORMAT-membership.md` section 4).
//! - A device looks for a newer blob of its own only when something names
//!   an epoch it lacks: a membership entry or an object sealed under it
//!   ([`SyncService::note_unknown_epoch`]). An idle pull costs nothing more.
//! - Blobs are tried oldest first (a rotation's epoch is the one after the
//!   last, so blobs planted at higher epochs cannot hide the next real one).
//!   A blob counts only if it opens (sealed to this identity, for this
//!   library), every key it shares with the ring already held is the same
//!   key, every membership entry sealed under its epochs whose author can
//!   manage membership opens with its keys (a removed admin's own keys do
//!   not open the real epoch's entries, such as the removal; an object by
//!   anyone else could have been planted by anyone and does not count; a
//!   missing key blob of its author does not excuse one, as a deleted blob
//!   would: `SyncService::why_not_a_removal`), and its author can manage
//!   membership in the
//!   chain validated with the entries it opens (so a blob cannot vouch for
//!   itself: its keys may open entries, but those count only by the
//!   chain's rules).
//! - A new epoch is saved to the key store before anything is sealed with
//!   it, so a crash never leaves objects this device cannot open again,
//!   and only once this member's blob of it is in the bucket, so a
//!   rotation that stopped half way leaves no objects under a key this
//!   member's other devices cannot find.

use crate::error::SyncError;
use crate::keystore::KeyStore;
use crate::service::SyncService;
use bae_crypto::IdentitySigningKey;
use bae_crypto::{IdentityPublicKey, KeyEpoch, KeyRing, LibraryKey, ObjectError};
use bae_membership::{LibraryId, OpenedKeyBlob, Role, ValidatedChain};
use bae_storage_s3::layout::{self, PublicKeyHex};
use bae_storage_s3::{ObjectStore, StoreError};
use std::sync::Arc;

/// The largest key blob read: one of `MAX_EPOCHS` keys, sealed.
pub(crate) const MAX_KEY_BLOB_BYTES: u64 = {
    // version, library id, member, epoch count; keys; author, signature;
    // the sealed box's ephemeral key and tag.
    let plain = 1 + 16 + 32 + 4 + 32 * bae_membership::keys::MAX_EPOCHS + 32 + 64;
    (plain + 48) as u64
};

/// How many of this member's newer blobs one refresh reads, oldest first:
/// a bucket full of them must not make a pull read them all.
pub(crate) const MAX_BLOBS_TRIED: usize = 8;

/// The epochs of `member`'s key blobs in the bucket, as listed, oldest
/// first.
pub(crate) async fn key_blob_epochs(
    store: &dyn ObjectStore,
    member: &IdentityPublicKey,
) -> Result<Vec<u32>, SyncError> {
    let member = PublicKeyHex::from_bytes(&member.to_bytes());
    let mut epochs: Vec<u32> = store
        .list(&layout::key_blobs_prefix(&member))
        .await?
        .iter()
        .filter_map(|k| layout::parse_key_blob_key(k).ok())
        .filter(|(owner, _)| *owner == member)
        .map(|(_, epoch)| epoch)
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// Reads and opens `identity`'s key blob of `epoch` in library `library`
/// (bounded by [`MAX_KEY_BLOB_BYTES`]); its bucket key and the opened blob.
pub(crate) async fn read_key_blob(
    store: &dyn ObjectStore,
    identity: &IdentitySigningKey,
    library: LibraryId,
    epoch: u32,
) -> Result<(String, OpenedKeyBlob), SyncError> {
    let key = layout::key_blob_key(
        &PublicKeyHex::from_bytes(&identity.public_key().to_bytes()),
        epoch,
    );
    let sealed = store.get(&key, MAX_KEY_BLOB_BYTES).await?;
    let opened = bae_membership::open_key_blob(identity, library, KeyEpoch(epoch), &sealed)
        .map_err(|e| SyncError::invalid(&key, e))?;
    Ok((key, opened))
}

/// A key blob of this member that opened and agrees with the keys held.
pub(crate) struct NewerKeys {
    /// Every key it holds.
    pub(crate) ring: KeyRing,
    /// Who signed it.
    pub(crate) author: IdentityPublicKey,
}

impl SyncService {
    /// The keys held now (a snapshot: a rotation replaces the ring whole).
    pub(crate) fn key_ring(&self) -> Arc<KeyRing> {
        match self.keys.read() {
            Ok(ring) => Arc::clone(&ring),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Saves every new key epoch to `store` under `library_id` before using
    /// it. [`crate::library`]'s commands set this; a service built without
    /// one keeps new epochs in memory only and finds them again in the
    /// bucket next time.
    pub fn with_key_store(mut self, store: KeyStore, library_id: impl Into<String>) -> Self {
        self.key_store = Some((store, library_id.into()));
        if let Ok(mut state) = self.members.lock() {
            state.keys_unchecked = false;
        }
        self
    }

    /// Before this service first seals anything: a service without a key
    /// store whose cached chain has a removal looks once for this member's
    /// newer key blobs. It holds only the keys it was given, and a cache
    /// that already has the removal names no epoch it lacks, so after a
    /// restart it sealed under the epoch its own revoke had just retired,
    /// which the removed member holds (seed 12003 of the simulation with
    /// removals). Without a removal nothing is read.
    pub(crate) async fn look_for_keys_once(&self) -> Result<(), SyncError> {
        if !self.members.lock().is_ok_and(|s| s.keys_unchecked) {
            return Ok(());
        }
        let (library, founder) = (self.library_id, *self.member.founder());
        let removal = self
            .with_db(move |rec| {
                Ok(
                    crate::members::cached_chain(rec.sync_parts().0, library, founder)?
                        .has_cut_offs(),
                )
            })
            .await?;
        if removal {
            self.refresh_members().await?;
        }
        Ok(())
    }

    /// The newest key epoch held (what new objects are sealed under).
    pub fn key_epoch(&self) -> KeyEpoch {
        self.key_ring()
            .current()
            .map_or(KeyEpoch::FIRST, |(epoch, _)| epoch)
    }

    /// Remembers that an object named an epoch newer than any held, so the
    /// next membership refresh looks for this member's newer key blob.
    pub(crate) fn note_unknown_epoch(&self, error: &ObjectError) {
        let ObjectError::UnknownEpoch { epoch } = error else {
            return;
        };
        if *epoch > self.key_epoch() {
            if let Ok(mut state) = self.members.lock() {
                state.keys_stale = true;
            }
        }
    }

    /// Makes the next membership refresh look for this member's newer key
    /// blobs even if nothing named a newer epoch.
    pub(crate) fn look_for_newer_keys(&self) {
        if let Ok(mut state) = self.members.lock() {
            state.keys_stale = true;
        }
    }

    /// Saves `ring` to the key store, then makes it the ring objects are
    /// sealed with and opened by.
    pub(crate) async fn adopt_keys(&self, ring: KeyRing) -> Result<(), SyncError> {
        if let Some((store, id)) = self.key_store.clone() {
            let saved = ring.clone();
            tokio::task::spawn_blocking(move || store.save(&id, &saved)).await??;
        }
        match self.keys.write() {
            Ok(mut held) => *held = Arc::new(ring),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(ring),
        }
        if let Ok(mut state) = self.members.lock() {
            state.keys_stale = false;
            state.keys_unchecked = false;
        }
        Ok(())
    }

    /// The epochs of this member's key blobs newer than the ring held, as
    /// listed, oldest first.
    pub(crate) async fn newer_key_blob_epochs(&self) -> Result<Vec<u32>, SyncError> {
        let held = self.key_epoch();
        let mut epochs = key_blob_epochs(self.store.as_ref(), &self.member.public_key()).await?;
        epochs.retain(|epoch| *epoch > held.0);
        Ok(epochs)
    }

    /// Reads and opens this member's key blob of `epoch`, and checks that it
    /// agrees with every key held (not yet against the chain: the caller
    /// checks its author).
    pub(crate) async fn open_key_blob(&self, epoch: u32) -> Result<NewerKeys, SyncError> {
        let (key, opened) = read_key_blob(
            self.store.as_ref(),
            self.member.identity(),
            self.library_id,
            epoch,
        )
        .await?;
        let author = *opened.author();
        let ring = opened.into_ring();
        for (held_epoch, held_key) in self.key_ring().iter() {
            if ring.get(held_epoch) != Some(held_key) {
                return Err(SyncError::invalid(
                    &key,
                    crate::error::InvalidObject::KeyBlobDisagrees { epoch: held_epoch },
                ));
            }
        }
        Ok(NewerKeys { ring, author })
    }

    /// Seals every key held to `member` at `keys/{member}/{newest epoch}`,
    /// signed by this member. Whatever is there is replaced: the blob of an
    /// epoch holds the same keys whoever wrote it, and anything else there
    /// (garbage planted before a rotation) must not keep the member from
    /// its keys.
    pub(crate) async fn write_key_blob(&self, member: &IdentityPublicKey) -> Result<(), SyncError> {
        self.write_key_blob_of(member, &self.key_ring()).await
    }

    /// [`Self::write_key_blob`] of `ring` rather than the keys held.
    async fn write_key_blob_of(
        &self,
        member: &IdentityPublicKey,
        ring: &KeyRing,
    ) -> Result<(), SyncError> {
        let (epoch, sealed) =
            bae_membership::seal_key_blob(self.member.identity(), self.library_id, member, ring)
                .map_err(|e| SyncError::SealKeyBlob(Box::new(e)))?;
        let key = layout::key_blob_key(&PublicKeyHex::from_bytes(&member.to_bytes()), epoch.0);
        self.store.put(&key, &sealed).await?;
        Ok(())
    }

    /// Starts a new key epoch: a fresh key, sealed to this member (so its
    /// other devices find it), then saved locally and adopted, then sealed
    /// to every other member in `members`. Returns the new epoch. An epoch
    /// another device of this member started already (its blob of ours is
    /// there, signed by someone who can manage membership in `chain`) is
    /// adopted and rotated past, never replaced.
    pub(crate) async fn rotate_keys(
        &self,
        chain: &ValidatedChain,
        members: &[IdentityPublicKey],
    ) -> Result<KeyEpoch, SyncError> {
        let me = self.member.public_key();
        let (epoch, ring) = loop {
            let held = self.key_ring();
            let epoch = held
                .current()
                .and_then(|(e, _)| e.next())
                .ok_or(SyncError::NoCurrentKey)?;
            // The revoke's look for newer blobs goes by a LIST, which can
            // miss the blob a run on another device wrote: replacing it
            // made a second key for the epoch, and that device's objects,
            // sealed under the first, opened nowhere else (seed 14066).
            match self.blob_started_elsewhere(chain, epoch).await? {
                Some(theirs) => self.adopt_keys(theirs).await?,
                None => {
                    let mut ring = (*held).clone();
                    ring.insert(epoch, LibraryKey::generate());
                    break (epoch, ring);
                }
            }
        };
        // This member's blob goes up before the key is adopted: a run that
        // stopped before it (a failed put) must leave nothing sealed under
        // a key no other device can find, or the revoke run again on
        // another device of this member makes a second key for the epoch
        // and this device's objects open nowhere else ("wrong key for
        // epoch", seed 16122). Once it is there, a run again adopts it and
        // rotates past it.
        self.write_key_blob_of(&me, &ring).await?;
        self.adopt_keys(ring).await?;
        for member in members.iter().filter(|m| **m != me) {
            self.write_key_blob(member).await?;
        }
        Ok(epoch)
    }

    /// This member's blob of `epoch`, if one is there (a HEAD, not a LIST),
    /// opens (read twice: one damaged read must not make it look like
    /// garbage), holds that epoch and was signed by someone who can manage
    /// membership in `chain`. Anything else there is garbage the rotation
    /// replaces.
    async fn blob_started_elsewhere(
        &self,
        chain: &ValidatedChain,
        epoch: KeyEpoch,
    ) -> Result<Option<KeyRing>, SyncError> {
        if !self
            .key_blob_there(&self.member.public_key(), epoch)
            .await?
        {
            return Ok(None);
        }
        for _ in 0..2 {
            match self.open_key_blob(epoch.0).await {
                Ok(newer) => {
                    let manages = chain
                        .current_role(&newer.author)
                        .is_some_and(Role::can_manage);
                    let holds = newer.ring.current().is_some_and(|(e, _)| e >= epoch);
                    return Ok((manages && holds).then_some(newer.ring));
                }
                Err(SyncError::Store(e)) if e.is_not_found() => return Ok(None),
                Err(SyncError::Store(e)) if !matches!(e, StoreError::TooLarge { .. }) => {
                    return Err(e.into())
                }
                Err(e) => {
                    tracing::warn!(epoch = epoch.0, error = %e, "own key blob of the next epoch does not open")
                }
            }
        }
        Ok(None)
    }
}
