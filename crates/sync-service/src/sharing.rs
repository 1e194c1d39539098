//! Sharing a library (phase 2): inviting a member, naming one, revoking
//! one.
//!
//! - [`SyncService::invite`] seals every library key to the new member
//!   (`keys/{member}/{epoch}`) and then appends the chain entry that adds
//!   them: the key is in place before anything says they may read.
//! - [`SyncService::revoke`] starts a new key epoch sealed to every
//!   remaining member, then appends the removal, which records per device
//!   of the removed member the last batch this device had applied (later
//!   batches of those devices are refused everywhere, whatever HLC they
//!   claim). Retrying a revoke that stopped half way finishes it: a removed
//!   member who still holds the newest epoch's key gets a rotation.
//!
//! - [`SyncService::set_name`] appends a display name (a `SetName` entry,
//!   sealed like every entry).
//!
//! All three check the entry against the chain before writing it, so an entry
//! that would not count (an admin touching an owner, the last owner
//! removed, an author who cannot manage membership) is refused here, by
//! name, and never reaches the bucket. An object no device can have
//! counted at the entry's path (planted there: the path is public) is
//! replaced and reported; an entry of this member there is never replaced
//! ([`SyncError::EntryExists`]).

use crate::error::{InvalidObject, SyncError};
use crate::members::{entry_place, open_entry, MAX_MEMBERSHIP_OBJECT_BYTES};
use crate::service::SyncService;
use bae_crypto::{IdentityPublicKey, KeyEpoch, ObjectError};
use bae_membership::{
    Action, Cutoffs, DeviceCutoff, Entry, EntryError, Role, SignedEntry, ValidatedChain,
};
use bae_storage_s3::layout::{self, PublicKeyHex};
use bae_storage_s3::StoreError;
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeMap;

/// What [`SyncService::invite`] or [`SyncService::set_name`] did besides
/// writing its entry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct EntryReport {
    /// The bucket key of an object at the entry's path that no device can
    /// have counted (it does not open, or is not this member's entry of
    /// that seq): planted by someone who can write to the bucket, and
    /// replaced by the entry.
    pub replaced_plant: Option<String>,
}

/// What [`SyncService::revoke`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RevokeReport {
    /// Whether this call appended the removal (`false`: an earlier call
    /// had).
    pub removed: bool,
    /// The key epoch started for the remaining members, if one was needed.
    pub new_epoch: Option<KeyEpoch>,
    /// The devices of the removed member that were cut off, with the last
    /// seq of each that counts.
    pub cutoffs: Vec<(bae_hlc::DeviceId, u64)>,
    /// The checkpoint written just before the removal (its key), which
    /// holds the removed member's batches up to the cutoffs; `None` when
    /// the member was already removed, or when this device was behind the
    /// bucket (then [`Self::behind`] says where).
    pub checkpoint: Option<String>,
    /// The bucket key of a planted object the removal replaced at its
    /// path (see [`EntryReport::replaced_plant`]).
    pub replaced_plant: Option<String>,
    /// Why no checkpoint was written: this device's next batch of that
    /// device (device, seq) is gone from the bucket (another device's GC
    /// removed it under a checkpoint this device has not restored). A
    /// checkpoint of this device would be the newest without that range,
    /// and GC would then delete the older one that holds it.
    pub behind: Option<(bae_hlc::DeviceId, u64)>,
}

impl SyncService {
    /// Adds `member` with `role`: seals every key epoch to them, then
    /// appends the entry. Inviting a current member again with the same
    /// role only writes their key blob again (a lost invite code); with
    /// another role it is refused ([`SyncError::AlreadyMember`]).
    pub async fn invite(
        &self,
        member: IdentityPublicKey,
        role: Role,
    ) -> Result<EntryReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        let chain = self.refresh_members().await?;
        self.may_manage(&chain)?;
        if let Some(current) = chain.current_role(&member) {
            if current != role {
                return Err(SyncError::AlreadyMember {
                    member: Box::new(member),
                    role: current,
                });
            }
            self.write_key_blob(&member).await?;
            return Ok(EntryReport::default());
        }
        let entry = self
            .next_entry(
                &chain,
                Action::Add {
                    subject: member,
                    role,
                },
            )
            .await?;
        self.check_counts(&chain, &entry)?;
        self.write_key_blob(&member).await?;
        let replaced_plant = self.write_entry(&entry).await?;
        self.refresh_members().await?;
        Ok(EntryReport { replaced_plant })
    }

    /// Gives `member` a display name in this library (a signed entry,
    /// sealed like every entry): this member names itself, or an owner or
    /// admin names another member.
    pub async fn set_name(
        &self,
        member: IdentityPublicKey,
        name: &str,
    ) -> Result<EntryReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        let chain = self.refresh_members().await?;
        let entry = self
            .next_entry(
                &chain,
                Action::SetName {
                    subject: member,
                    name: name.to_owned(),
                },
            )
            .await?;
        self.check_counts(&chain, &entry)?;
        let replaced_plant = self.write_entry(&entry).await?;
        self.refresh_members().await?;
        Ok(EntryReport { replaced_plant })
    }

    /// Removes `member` and starts a new key epoch sealed to everyone who
    /// stays (see the module docs). A member who is neither current nor
    /// holding the newest key is [`SyncError::NotAMember`].
    ///
    /// Before the removal it writes a checkpoint of the library as this
    /// device holds it (no pull first: the cutoffs are what it applied, and
    /// the checkpoint's cursors are the same). The removed member's own
    /// checkpoints stop counting with the removal, and one of them may be
    /// the only copy of a range their GC removed (their batches, or
    /// another device's that they checkpointed); this one holds every
    /// batch of theirs that still counts. Written first, so no removal
    /// lands without it (a run that fails after it, or whose reply is
    /// lost, has one all the same). The cutoffs name every device of the
    /// member this device applied batches of, also those whose writes it
    /// got from a checkpoint (their heads tell it whose they are).
    pub async fn revoke(&self, member: IdentityPublicKey) -> Result<RevokeReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        if member == self.member.public_key() {
            return Err(SyncError::RevokeSelf);
        }
        // A run of this revoke that stopped on another device of this member
        // may have started an epoch no entry names yet: its blob of ours is
        // adopted first, so this run rotates past it rather than beside it.
        self.look_for_newer_keys();
        let chain = self.refresh_members().await?;
        self.may_manage(&chain)?;
        let is_member = chain.current_role(&member).is_some();
        // A blob at that path counts only for someone who was a member: anyone
        // can write one, and it would then start a rotation at will.
        let holds_newest = !is_member
            && chain.ever_member(&member)
            && self.key_blob_there(&member, self.key_epoch()).await?;
        if !is_member && !holds_newest {
            return Err(SyncError::NotAMember {
                member: Box::new(member),
            });
        }
        let mut report = RevokeReport {
            removed: false,
            new_epoch: None,
            cutoffs: Vec::new(),
            checkpoint: None,
            behind: None,
            replaced_plant: None,
        };
        let entry = if is_member {
            // Under the same lock as the cutoffs below: no pull between (it
            // would move them), so this device may be behind the bucket.
            let heads = self.list_all_heads().await?;
            self.bind_applied_devices(&heads).await?;
            report.behind = self.next_batch_gone(&member, &heads).await?;
            match report.behind {
                None => report.checkpoint = Some(self.write_checkpoint().await?.key),
                Some((device, seq)) => {
                    tracing::warn!(%device, seq, "behind the bucket's GC: the revoke writes no checkpoint");
                }
            }
            // The checkpoint's push may have recovered from another one.
            self.bind_applied_devices(&heads).await?;
            let cutoffs = self.cutoffs_for(&chain, &member).await?;
            report.cutoffs = cutoffs.devices.iter().map(|c| (c.device, c.seq)).collect();
            let entry = self
                .next_entry(
                    &chain,
                    Action::Remove {
                        subject: member,
                        cutoffs,
                    },
                )
                .await?;
            self.check_counts(&chain, &entry)?;
            Some(entry)
        } else {
            None
        };
        if is_member || holds_newest {
            let staying: Vec<IdentityPublicKey> = chain
                .current_members()
                .into_iter()
                .map(|(m, _)| m)
                .filter(|m| *m != member)
                .collect();
            report.new_epoch = Some(self.rotate_keys(&chain, &staying).await?);
        }
        if let Some(entry) = entry {
            // Sealed under the new epoch: the removed member cannot read who
            // remains.
            report.replaced_plant = self.write_entry(&entry).await?;
            report.removed = true;
        }
        self.refresh_members().await?;
        Ok(report)
    }

    /// The first device (other than `member`'s, whose batches past the
    /// cutoffs stop counting) whose head is past this device's cursor while
    /// the batch after the cursor is gone from the bucket, with that seq:
    /// this device is behind a GC. One LIST of heads and one HEAD request
    /// per stream this device is behind on.
    async fn next_batch_gone(
        &self,
        member: &IdentityPublicKey,
        heads: &BTreeMap<bae_hlc::DeviceId, Vec<u64>>,
    ) -> Result<Option<(bae_hlc::DeviceId, u64)>, SyncError> {
        let cursors = self
            .with_db(|rec| crate::pull::applied_cursors(rec.sync_parts().0))
            .await?;
        let members = self.devices_of(member);
        for (&device, seqs) in heads {
            let applied = cursors.get(&device).copied().unwrap_or(0);
            let behind = seqs.first().is_some_and(|newest| *newest > applied);
            if !behind || members.contains(&device) {
                continue;
            }
            let next = applied + 1;
            if !self.store.exists(&layout::ops_key(&device, next)).await? {
                return Ok(Some((device, next)));
            }
        }
        Ok(None)
    }

    /// Learns the author of every device this one has applied batches of
    /// without having verified a signed object of it (their writes came in
    /// a checkpoint: a join, or a recovery), from its newest head that
    /// verifies (`heads`, newest first). The cutoffs name only devices
    /// bound to the member; one left out has a cutoff of 0, so a device
    /// that had not applied its batches yet would refuse them while this
    /// one and the checkpoint's readers hold their writes (seed 19343). A
    /// failed request fails the revoke (run it again); a device none of
    /// whose heads verifies in two reads stays unbound (garbage must not
    /// stop a removal).
    async fn bind_applied_devices(
        &self,
        heads: &BTreeMap<bae_hlc::DeviceId, Vec<u64>>,
    ) -> Result<(), SyncError> {
        let cursors = self
            .with_db(|rec| crate::pull::applied_cursors(rec.sync_parts().0))
            .await?;
        let unbound = cursors
            .into_iter()
            .filter(|&(device, applied)| {
                applied > 0 && device != self.device && self.author_of(device).is_none()
            })
            .map(|(device, _)| device);
        'device: for device in unbound {
            for &seq in heads.get(&device).into_iter().flatten() {
                let key = layout::heads_key(&device, seq);
                // Read twice before passing a head over: one cut transfer
                // must not leave the device out of the cutoffs.
                for _ in 0..2 {
                    match self.fetch_head(&key, device, seq).await {
                        Ok(_) => continue 'device,
                        Err(SyncError::Store(e)) if !e.is_not_found() => return Err(e.into()),
                        Err(e) => tracing::warn!(%key, error = %e, "head does not bind its device"),
                    }
                }
            }
        }
        self.save_bindings().await
    }

    /// Refuses unless this member can manage membership now.
    fn may_manage(&self, chain: &ValidatedChain) -> Result<(), SyncError> {
        match chain.current_role(&self.member.public_key()) {
            Some(role) if role.can_manage() => Ok(()),
            role => Err(SyncError::CannotManage { role }),
        }
    }

    /// This member's next entry doing `action`, at an HLC after everything
    /// this device has written or seen.
    async fn next_entry(
        &self,
        chain: &ValidatedChain,
        action: Action,
    ) -> Result<SignedEntry, SyncError> {
        let author = self.member.public_key();
        let (seq, prev) = chain.next_for(&author);
        let hlc = self.with_db(crate::service::next_hlc).await?;
        let entry = Entry {
            library_id: self.library_id,
            author,
            seq,
            prev,
            hlc,
            action,
        };
        SignedEntry::sign(self.member.identity(), entry)
            .map_err(|e| SyncError::SignEntry(Box::new(e)))
    }

    /// Refuses an entry that would not count in `chain`, naming why.
    fn check_counts(&self, chain: &ValidatedChain, entry: &SignedEntry) -> Result<(), SyncError> {
        let mut with_it = chain.clone();
        with_it.extend([entry.clone()]);
        if with_it.counted().contains(&entry.hash()) {
            return Ok(());
        }
        let reason = with_it
            .rejected()
            .iter()
            .find(|r| r.entry == entry.hash())
            .map(|r| r.reason);
        Err(SyncError::EntryWouldNotCount { reason })
    }

    /// Writes a signed entry at `membership/{author}/{seq}`, sealed under
    /// the current epoch. An entry of this member already there is never
    /// replaced ([`SyncError::EntryExists`]); an object no device can have
    /// counted is (see [`Self::occupant`]), and its key returned.
    async fn write_entry(&self, entry: &SignedEntry) -> Result<Option<String>, SyncError> {
        let e = entry.entry();
        let author = e.author.to_bytes();
        let key = layout::membership_key(&PublicKeyHex::from_bytes(&author), e.seq);
        let replaced = match self.occupant(&key, &e.author).await? {
            Occupant::Nothing => None,
            // Kept rather than written at the seq after it: the entry was
            // checked against a chain without that one (another device of
            // this member's invite, rename or revoke, which may make this
            // one redundant or not count, and a revoke's cutoffs and
            // rotation were made without it). Running the command again
            // reads it and decides afresh.
            Occupant::Entry => return Err(SyncError::EntryExists { key }),
            Occupant::Plant(why) => {
                tracing::warn!(%key, error = %why, "replacing a planted object at this member's next membership entry");
                Some(key.clone())
            }
        };
        let sealed = self.seal(&entry_place(&author, e.seq), &entry.to_bytes())?;
        self.store.put(&key, &sealed).await?;
        Ok(replaced)
    }

    /// What is at `key`, the path of `author`'s next entry. A plant only
    /// if no device can have counted it, and so none reads anything but
    /// the entry that replaces it:
    /// - what opens with the keys held and passes every check a pull
    ///   makes (its place, `author`'s signature over this seq) is an
    ///   entry of this member: a pull caches it by key and never reads the
    ///   key again, so a replacement would never reach a device that
    ///   cached it;
    /// - what names a key epoch this device lacks is a plant only when
    ///   `author` has no key blob of that epoch: a device of theirs seals
    ///   under an epoch only from its blob, which a rotation puts first
    ///   (the check GC makes, [`Self::why_not_a_removal`]);
    /// - what opens but does not decode may be a newer build's entry of
    ///   this member, which the devices running it count: never replaced;
    /// - what is sealed under another key of an epoch this device holds
    ///   may be an entry of a concurrent rotation by another device of
    ///   this member (two revokes at once give an epoch two keys): never
    ///   replaced either, although a plant sealed under a key of the
    ///   planter's own looks the same (review5 finding 3);
    /// - anything else does not open (damaged, not an object, cut short,
    ///   too large), or decodes and fails its place or signature, the same
    ///   on every device holding the epoch its header names (the header
    ///   binds the key's fingerprint), so no pull ever counts or caches it.
    ///
    /// A plant must fail twice with the same bytes, of the size the
    /// bucket gives the object: a damaged read (a truncated body) of a real
    /// entry, even two in a row, must not make this device overwrite it
    /// (review5 finding 1); reads that differ leave it in place
    /// ([`Occupant::Entry`]: the command fails and reads it afresh when run
    /// again).
    async fn occupant(&self, key: &str, author: &IdentityPublicKey) -> Result<Occupant, SyncError> {
        let size = match self.store.head(key).await {
            Ok(meta) => meta.size,
            Err(e) if e.is_not_found() => return Ok(Occupant::Nothing),
            Err(e) => return Err(e.into()),
        };
        let ring = self.key_ring();
        let mut reads = Vec::new();
        let mut why = None;
        for _ in 0..2 {
            let sealed = match self.store.get(key, MAX_MEMBERSHIP_OBJECT_BYTES).await {
                Ok(sealed) => Some(sealed),
                // Deleted since the HEAD: nothing there to count.
                Err(e) if e.is_not_found() => return Ok(Occupant::Nothing),
                // No entry is that large.
                Err(e @ StoreError::TooLarge { .. }) => {
                    why = Some(e.into());
                    None
                }
                Err(e) => return Err(e.into()),
            };
            if let Some(sealed) = &sealed {
                let error = match open_entry(key, sealed, &ring) {
                    Ok(_) => return Ok(Occupant::Entry),
                    Err(e) => e,
                };
                match &error {
                    SyncError::Object {
                        source: ObjectError::UnknownEpoch { epoch },
                        ..
                    } if self.key_blob_there(author, *epoch).await? => {
                        return Ok(Occupant::Entry);
                    }
                    // Opened, so a key holder sealed it, but does not
                    // decode: a newer build's entry of this member (a new
                    // version or action) looks just like this, and the
                    // devices that read it count it (review5 finding 5).
                    SyncError::Invalid { source, .. } if !decoded(source) => {
                        return Ok(Occupant::Entry);
                    }
                    // Sealed under another key of an epoch this device
                    // holds: two revokes at once by two devices of this
                    // member give an epoch two keys, and the other device
                    // counted and cached its entry, sealed so; replacing
                    // it forked the chain for good (review5 finding 3).
                    // A plant sealed under a key of the planter's own
                    // looks the same, and deleting it by hand ends the
                    // wait it causes: a fork cannot be undone.
                    SyncError::Object {
                        source: ObjectError::WrongKey { .. },
                        ..
                    } => return Ok(Occupant::Entry),
                    _ => {}
                }
                tracing::warn!(%key, %error, "object at this member's next membership entry does not open");
                why = Some(error);
            }
            reads.push(sealed);
        }
        let the_object = reads[0] == reads[1]
            && reads[0]
                .as_ref()
                .is_none_or(|sealed| sealed.len() as u64 == size);
        if !the_object {
            tracing::warn!(%key, "object at this member's next membership entry read differently twice: kept");
            return Ok(Occupant::Entry);
        }
        Ok(why.map_or(Occupant::Nothing, Occupant::Plant))
    }

    /// The cutoffs of removing `member`: per device bound to them, the last
    /// seq this device applied and that batch's hash (which pins the
    /// device's stream up to it for readers that had not applied it); and
    /// their last entry in the chain.
    async fn cutoffs_for(
        &self,
        chain: &ValidatedChain,
        member: &IdentityPublicKey,
    ) -> Result<Cutoffs, SyncError> {
        let devices = self.devices_of(member);
        let devices = self
            .with_db(move |rec| {
                let conn = rec.sync_parts().0;
                let mut out = Vec::new();
                for device in devices {
                    let applied: Option<(i64, Option<Vec<u8>>)> = conn
                        .query_row(
                            "SELECT applied_seq, applied_hash FROM bae_sync_cursors WHERE device_id = ?1",
                            params![device.to_string()],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()?;
                    let (seq, hash) = applied.unwrap_or((0, None));
                    let seq = u64::try_from(seq).unwrap_or(0);
                    let last_hash = hash
                        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
                        .filter(|_| seq > 0)
                        .map(bae_oplog::BatchHash);
                    out.push(DeviceCutoff {
                        device,
                        seq,
                        last_hash,
                    });
                }
                Ok(out)
            })
            .await?;
        let devices = devices
            .into_iter()
            .take(bae_membership::entry::MAX_CUTOFF_DEVICES)
            .collect();
        let last_entry = chain.next_for(member).0.checked_sub(1);
        Ok(Cutoffs {
            last_entry,
            devices,
        })
    }
}

/// Whether an entry refused with `source` decoded (and then failed its
/// signature or its place), which only a plant does.
fn decoded(source: &InvalidObject) -> bool {
    matches!(
        source,
        InvalidObject::EntryPlace
            | InvalidObject::Entry(
                EntryError::BadSignature { .. } | EntryError::AuthorNotSigner { .. }
            )
    )
}

/// What is at the path of a member's next entry.
enum Occupant {
    /// Nothing.
    Nothing,
    /// An entry of this member, or what may be one: never replaced.
    Entry,
    /// What no device can have counted, with why it is no entry.
    Plant(SyncError),
}
