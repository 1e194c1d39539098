//! Key epochs (phase 2): which library keys this member holds, how a new
//! epoch reaches it, and the rotation a revocation makes.
//!
//! - Each member's keys sit at `keys/{member}/{epoch}`: a key blob holding
//!   every library key up to that epoch, sealed to the member and signed by
//!   the owner or admin who wrote it (`docs/FORMAT-membership.md` section 4).
//! - A device looks for a newer blob of its own only when something names
//!   an epoch it lacks: a membership entry or an object sealed under it
//!   ([`SyncService::note_unknown_epoch`]). An idle pull costs nothing more.
//! - A blob counts only if it opens (sealed to this identity, for this
//!   library), every key it shares with the ring already held is the same
//!   key, and its author can manage membership in the chain validated with
//!   the entries it opens (so a blob cannot vouch for itself: its keys may
//!   open entries, but those entries count only by the chain's rules).
//! - A new epoch is saved to the key store before anything is sealed with
//!   it, so a crash never leaves objects this device cannot open again.

use crate::error::SyncError;
use crate::keystore::KeyStore;
use crate::service::SyncService;
use bae_crypto::{IdentityPublicKey, KeyEpoch, KeyRing, LibraryKey, ObjectError};
use bae_storage_s3::layout::{self, PublicKeyHex};
use bae_storage_s3::StoreError;
use std::sync::Arc;

/// The largest key blob read: one of `MAX_EPOCHS` keys, sealed.
pub(crate) const MAX_KEY_BLOB_BYTES: u64 = {
    // version, library id, member, epoch count; keys; author, signature;
    // the sealed box's ephemeral key and tag.
    let plain = 1 + 16 + 32 + 4 + 32 * bae_membership::keys::MAX_EPOCHS + 32 + 64;
    (plain + 48) as u64
};

/// How many of this member's newer blobs are tried, newest first: a few
/// damaged or forged ones must not hide the real one, nor may a bucket
/// full of them make a pull read them all.
const MAX_BLOBS_TRIED: usize = 4;

/// A key blob of this member that opened and agrees with the keys held.
pub(crate) struct NewerKeys {
    /// The blob's newest epoch.
    pub(crate) epoch: KeyEpoch,
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
        self
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
        }
        Ok(())
    }

    /// This member's key blobs newer than the ring held, newest first, each
    /// opened and checked against the keys held (not yet against the
    /// chain: the caller checks the author). Blobs that do not open are
    /// skipped with a warning; at most [`MAX_BLOBS_TRIED`] are read.
    pub(crate) async fn newer_key_blobs(&self) -> Result<Vec<NewerKeys>, SyncError> {
        let me = PublicKeyHex::from_bytes(&self.member.public_key().to_bytes());
        let held = self.key_epoch();
        let mut epochs: Vec<u32> = self
            .store
            .list(&layout::key_blobs_prefix(&me))
            .await?
            .iter()
            .filter_map(|k| layout::parse_key_blob_key(k).ok())
            .filter(|(member, epoch)| *member == me && *epoch > held.0)
            .map(|(_, epoch)| epoch)
            .collect();
        epochs.sort_unstable_by(|a, b| b.cmp(a));
        let mut found = Vec::new();
        for epoch in epochs.into_iter().take(MAX_BLOBS_TRIED) {
            let key = layout::key_blob_key(&me, epoch);
            match self.open_key_blob(&key, KeyEpoch(epoch)).await {
                Ok(keys) => found.push(keys),
                Err(SyncError::Store(e))
                    if !e.is_not_found() && !matches!(e, StoreError::TooLarge { .. }) =>
                {
                    return Err(e.into())
                }
                Err(e) => tracing::warn!(%key, error = %e, "key blob refused"),
            }
        }
        Ok(found)
    }

    /// Reads and opens the key blob at `key`, and checks that it agrees
    /// with every key held.
    async fn open_key_blob(&self, key: &str, epoch: KeyEpoch) -> Result<NewerKeys, SyncError> {
        let sealed = self.store.get(key, MAX_KEY_BLOB_BYTES).await?;
        let opened =
            bae_membership::open_key_blob(self.member.identity(), self.library_id, epoch, &sealed)
                .map_err(|e| SyncError::invalid(key, e))?;
        let author = *opened.author();
        let ring = opened.into_ring();
        for (held_epoch, held_key) in self.key_ring().iter() {
            if ring.get(held_epoch) != Some(held_key) {
                return Err(SyncError::invalid(
                    key,
                    crate::error::InvalidObject::KeyBlobDisagrees { epoch: held_epoch },
                ));
            }
        }
        Ok(NewerKeys {
            epoch,
            ring,
            author,
        })
    }

    /// Seals every key held to `member` at `keys/{member}/{newest epoch}`,
    /// signed by this member. An existing blob there is kept: it holds the
    /// same keys (a member's keys of an epoch never change), and another
    /// device may be reading it.
    pub(crate) async fn write_key_blob(&self, member: &IdentityPublicKey) -> Result<(), SyncError> {
        let ring = self.key_ring();
        let (epoch, sealed) =
            bae_membership::seal_key_blob(self.member.identity(), self.library_id, member, &ring)
                .map_err(|e| SyncError::SealKeyBlob(Box::new(e)))?;
        let key = layout::key_blob_key(&PublicKeyHex::from_bytes(&member.to_bytes()), epoch.0);
        if !self.store.exists(&key).await? {
            self.store.put(&key, &sealed).await?;
        }
        Ok(())
    }

    /// Starts a new key epoch: a fresh key, saved locally and adopted, then
    /// sealed to every member in `members` (this member included, so its
    /// other devices find it). Returns the new epoch.
    pub(crate) async fn rotate_keys(
        &self,
        members: &[IdentityPublicKey],
    ) -> Result<KeyEpoch, SyncError> {
        let held = self.key_ring();
        let epoch = held
            .current()
            .and_then(|(e, _)| e.next())
            .ok_or(SyncError::NoCurrentKey)?;
        let mut ring = (*held).clone();
        ring.insert(epoch, LibraryKey::generate());
        self.adopt_keys(ring).await?;
        let me = self.member.public_key();
        self.write_key_blob(&me).await?;
        for member in members.iter().filter(|m| **m != me) {
            self.write_key_blob(member).await?;
        }
        Ok(epoch)
    }
}
