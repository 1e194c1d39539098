//! A local database that went back in time (a power loss that lost the
//! newest commits, a restored backup): the bucket holds batches of this
//! device beyond its local state, under the numbers its next batches would
//! take. Uploading those would replace objects other devices may have
//! applied, and every later batch would break their hash chain for good.
//!
//! Before a push uploads anything, [`SyncService::settle_rollback`] finds
//! such batches, applies them through merge like any other device's (they
//! were acknowledged: their writes reappear here), records them as this
//! device's pushed ones, and moves the unpushed local batches above them,
//! so the stream continues unbroken and no object is ever replaced.

use crate::error::SyncError;
use crate::head::{Head, MAX_HEAD_OBJECT_BYTES};
use crate::push::{encode_one, newest_pushed};
use crate::service::{batch_place, SyncService, MAX_BATCH_OBJECT_BYTES};
use bae_crypto::ObjectError;
use bae_membership::{SignedKind, VerifiedObject};
use bae_oplog::{Batch, BatchHash, BatchSeq};
use bae_storage_s3::{layout, StoreError};
use rusqlite::{params, OptionalExtension};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

/// How many of this device's own heads above its local state are tried,
/// newest first, before the ones that do not open are taken for garbage.
const MAX_OWN_HEADS_TRIED: usize = 4;

/// How many reads of one own object that came back cut short a push takes
/// before it fails (the bucket keeps cutting them: a delay, never a
/// judgement on the object).
const MAX_CUT_SHORT_READS: usize = 4;

/// What the bucket holds of this device beyond its local state.
struct Ahead {
    /// Its batches that open and chain on from the newest local pushed
    /// batch, in order, with their hashes.
    batches: Vec<(Batch, BatchHash)>,
    /// A head of this device (sealed under the library key) naming a batch
    /// above those: its seq, hash and clock. Its batches in between are
    /// gone (a checkpoint covers them) or damaged; the stream continues
    /// above it so no device that applied them is contradicted.
    head: Option<(u64, BatchHash, bae_hlc::Timestamp)>,
    /// Its batches above that head (beyond a gap), in order: put by a push
    /// that lost its head, applied with the gap's recovery.
    above_head: Vec<(Batch, BatchHash)>,
}

impl SyncService {
    /// Detects that this device's database went back in time and settles
    /// it before anything is uploaded; returns the seqs of this device's
    /// batches re-taken from the bucket (empty when there was nothing).
    ///
    /// Cheap when nothing points at a rollback: the first push of a
    /// service LISTs this device's heads and batches (later ones use what
    /// the last pull's LIST of `heads/` showed: a head above the newest pushed
    /// batch is a sign), and a push with batches to send, or the first of
    /// a service, makes one HEAD of the object the next batch would
    /// replace (a lost head must not hide the batches).
    pub(crate) async fn settle_rollback(&self) -> Result<Vec<u64>, SyncError> {
        let device = self.device;
        let (pushed, unpushed) = self
            .with_db(|rec| {
                let conn = rec.sync_parts().0;
                Ok((
                    newest_pushed(conn)?,
                    !bae_oplog::unpushed_batches(conn)?.is_empty(),
                ))
            })
            .await?;
        let (base, base_hash) = pushed.map_or((0, None), |(s, h)| (s, Some(h)));
        let first_look = !self.own_heads_listed.load(Ordering::Acquire);
        let seen = if !first_look {
            self.own_heads_seen().unwrap_or_default()
        } else {
            // The first push of this service (a restart is when a restored
            // database shows): its own heads, from two LISTs (its own
            // prefix and `heads/`, the latter a pull's if one ran). One
            // LIST that misses the newest head (an eventually consistent
            // bucket) while checkpoint GC removed the batches above the
            // local state hides the rollback, and the push then overwrites
            // batches other devices applied (seed 5016); a pull's stale
            // LIST of `heads/` was all a push after it looked at (seed
            // 11214).
            let mut seen = self.list_own_heads().await?;
            if self.own_heads_seen().is_none() {
                self.list_heads().await?;
            }
            seen.extend(self.own_heads_seen().unwrap_or_default());
            seen.sort_unstable();
            seen.dedup();
            self.listed_own_heads(seen.clone());
            seen
        };
        let head_above = seen.iter().any(|s| *s > base);
        // The next batch is looked for when there is one to send (a lost
        // head must not hide the batches) and on the first push of a
        // service even with none: a push that put batches but lost its
        // head, then a copy taken at that head, leaves no head above the
        // local state, and the batches' acknowledged writes would wait
        // for this device's next write to be found (seed 16172).
        // On the first look, its own batches as a LIST of its prefix shows
        // them too: both LISTs of heads can miss the newest head (stale,
        // each hiding the newest writes under its prefix) while GC removed
        // the batches just above the copy, and the push then wrote new
        // batches under seqs the others had applied (seed 93256). Older
        // batches above the gap are listed even when the newest writes
        // are not.
        let listed_above = if first_look {
            self.own_batches_listed_above(base).await?
        } else {
            Vec::new()
        };
        let suspect = head_above
            || !listed_above.is_empty()
            || ((unpushed || first_look)
                && self
                    .store
                    .exists(&layout::ops_key(&device, base + 1))
                    .await?);
        // Marked only once the look is done: a failed request during it
        // leaves the next push to look again.
        let looked = || self.own_heads_listed.store(true, Ordering::Release);
        if !suspect {
            looked();
            return Ok(Vec::new());
        }
        let ahead = self.read_ahead(base, base_hash, &seen).await?;
        if ahead.batches.is_empty() && ahead.head.is_none() {
            // A batch of this device above a gap, with no head found to go
            // on from: the head is there but not listed yet (or the bucket
            // withholds it). Nothing is pushed until a look finds it. The
            // lowest few are enough: above a gap GC left, the lowest is
            // real; garbage listed there costs a bounded number of reads.
            for &seq in listed_above.iter().take(MAX_OWN_HEADS_TRIED) {
                if self.own_batch(seq).await?.is_some() {
                    return Err(SyncError::OwnHeadNotFound { seq });
                }
            }
            // Garbage (does not open or chain): no device can have applied
            // it, and the push replaces it as before.
            looked();
            return Ok(Vec::new());
        }
        tracing::warn!(
            %device,
            local = base,
            bucket = ahead.batches.len(),
            head = ?ahead.head.map(|h| h.0),
            "this device's database went back in time; re-taking its batches from the bucket"
        );
        // Batches gone below the head: their writes are in a checkpoint
        // (GC removed them under one) and in the ones still above it in the
        // bucket; recording the head alone would leave this device without
        // them for good, and every later batch touching their rows held
        // (seeds 5016, 6014). The own cursor before the gap makes the pull
        // recover them, and retry until it has (seed 7079: a failed request
        // during the first try lost them).
        // The same when the read stopped at a batch that did not open
        // twice (damaged reads): below a valid head it is no garbage, and
        // the batches up to the head were left unapplied for good (seed
        // 17277: a title this device pushed before going back was on every
        // device but this one).
        let gap = ahead.head.map(|_| {
            let before = ahead.batches.last().map_or(base_hash, |(_, h)| Some(*h));
            (base + ahead.batches.len() as u64, before)
        });
        let applied = self
            .with_db(move |rec| {
                let applied = retake(rec, base, base_hash, ahead)?;
                if let Some((seq, hash)) = gap {
                    let conn = rec.sync_parts().0;
                    if own_cursor(conn, device)?.is_none_or(|(s, _)| s > seq) {
                        set_own_cursor(conn, device, seq, hash)?;
                    }
                }
                Ok(applied)
            })
            .await?;
        looked();
        if gap.is_some() {
            self.apply_held_own().await?;
        }
        Ok(applied)
    }

    /// After a checkpoint restore: applies again this device's batches in
    /// the bucket above the checkpoint's cursor for it (`after`, `hash`)
    /// through its newest pushed one. Batches re-taken after going back to
    /// a backup were applied through merge, not recorded in the local op
    /// log, so the restore's replay of local batches does not bring their
    /// writes back (seed 6014: a title this device wrote and pushed reverted
    /// to the checkpoint's on it alone). Applying a batch the replay
    /// already brought changes nothing. Batches held (their rows' inserts
    /// have not arrived) leave this device's own cursor before them, for
    /// the next pull; with none, the own cursor is removed. Returns the
    /// batches applied.
    pub(crate) async fn reapply_own_after(
        &self,
        after: u64,
        hash: Option<BatchHash>,
        recover_gap: bool,
    ) -> Result<usize, SyncError> {
        let device = self.device;
        let pushed = self
            .with_db(|rec| Ok(newest_pushed(rec.sync_parts().0)?.map_or(0, |(s, _)| s)))
            .await?;
        let mut batches = Vec::new();
        let mut hashes = Vec::new();
        let mut damaged = false;
        let mut gone = None;
        let mut prev = hash;
        for seq in after + 1..=pushed {
            let key = layout::ops_key(&device, seq);
            match self.fetch_batch(&key, device, seq, prev).await {
                Ok((batch, hash, _)) => {
                    prev = Some(hash);
                    batches.push(batch);
                    hashes.push((seq, hash));
                }
                Err(SyncError::Store(e))
                    if !matches!(e, StoreError::NotFound { .. } | StoreError::TooLarge { .. }) =>
                {
                    return Err(e.into())
                }
                // Gone: GC removed it under a checkpoint.
                Err(SyncError::Store(StoreError::NotFound { .. })) => {
                    gone = Some(seq);
                    break;
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "own batch not applied again; retried by the next pull");
                    damaged = true;
                    break;
                }
            }
        }
        let start = (after, hash);
        let gap = gone.filter(|_| recover_gap);
        let applied = self
            .with_db(move |rec| {
                let merged = bae_merge::apply_pull(rec, batches)?;
                let held_from = merged.held.iter().map(|h| h.batch.seq.0).min();
                let conn = rec.sync_parts().0;
                match held_from {
                    // Gone without a recovery here: the own cursor stays
                    // for the next pull's (a GC may have run since the
                    // recovery checked the bucket).
                    None if !damaged && gone.is_none() => {
                        conn.execute(
                            "DELETE FROM bae_sync_cursors WHERE device_id = ?1",
                            [device.to_string()],
                        )?;
                    }
                    _ => {
                        let stop = held_from.unwrap_or(u64::MAX);
                        let (seq, hash) = hashes
                            .iter()
                            .take_while(|(s, _)| *s < stop)
                            .last()
                            .map_or(start, |(s, h)| (*s, Some(*h)));
                        set_own_cursor(conn, device, seq, hash)?;
                    }
                }
                Ok(merged.applied.len())
            })
            .await?;
        if let Some(first) = gap {
            // The restore applies this device's batches above the
            // checkpoint again and settles the own cursor.
            // Boxed: the recovery calls this again (without `recover_gap`).
            let recovered = Box::pin(self.recover_from_checkpoint(&[(device, first)])).await?;
            if recovered != crate::bootstrap::Recovery::Recovered {
                // Kept for the next pull: GC removes this device's batches
                // only under a checkpoint of its own, so one covers them,
                // and a refusal may pass (a LIST that missed a head).
                tracing::warn!(
                    first,
                    "this device's batches are gone from the bucket and no checkpoint was restored; retried by the next pull"
                );
            }
        }
        Ok(applied)
    }

    /// Whether restoring a checkpoint whose cursor for this device is
    /// `after` keeps every batch this device pushed above it: each must be
    /// in the local op log (the restore replays it) or in the bucket
    /// ([`Self::reapply_own_after`] applies it again). Batches re-taken
    /// after going back to a backup are not in the op log, and GC prunes
    /// the ones its checkpoint covers; a checkpoint behind them whose
    /// batches GC removed (one written by a device with a gap on this
    /// device's stream) would take their writes away from this device
    /// alone (seed 8003).
    pub(crate) async fn own_batches_kept_after(&self, after: u64) -> Result<bool, SyncError> {
        let (pushed, local) = self
            .with_db(move |rec| {
                let conn = rec.sync_parts().0;
                let pushed = newest_pushed(conn)?.map_or(0, |(seq, _)| seq);
                let local: BTreeSet<u64> = bae_oplog::batches_after(conn, BatchSeq(after))?
                    .into_iter()
                    .map(|s| s.0)
                    .collect();
                Ok((pushed, local))
            })
            .await?;
        let mut missing = (after + 1..=pushed)
            .filter(|s| !local.contains(s))
            .peekable();
        if missing.peek().is_none() {
            return Ok(true);
        }
        let listed = self.listed_batch_seqs(self.device).await?;
        Ok(missing.all(|s| listed.contains(&s)))
    }

    /// Applies this device's own batches that a re-take held (their rows'
    /// inserts had not arrived), from the own cursor it left, once a pull
    /// may have brought what they wait for.
    pub(crate) async fn apply_held_own(&self) -> Result<usize, SyncError> {
        let device = self.device;
        let Some((after, hash)) = self
            .with_db(move |rec| own_cursor(rec.sync_parts().0, device))
            .await?
        else {
            return Ok(0);
        };
        // A restore that found no link there (its read of the next batch
        // failed) left none: looked up again, not read as "no predecessor".
        let hash = match hash {
            Some(hash) => Some(hash),
            None => self.own_link_at(after).await?,
        };
        self.reapply_own_after(after, hash, true).await
    }

    /// The seqs of `device`'s batch objects in the bucket (one LIST).
    pub(crate) async fn listed_batch_seqs(
        &self,
        device: bae_hlc::DeviceId,
    ) -> Result<BTreeSet<u64>, SyncError> {
        Ok(self
            .store
            .list(&layout::ops_prefix(&device))
            .await?
            .iter()
            .filter_map(|k| layout::parse_ops_key(k).ok())
            .filter(|(d, _)| *d == device)
            .map(|(_, seq)| seq)
            .collect())
    }

    /// The seqs of this device's batch objects above `base` in the bucket
    /// (one LIST), lowest first.
    async fn own_batches_listed_above(&self, base: u64) -> Result<Vec<u64>, SyncError> {
        let listed = self.listed_batch_seqs(self.device).await?;
        Ok(listed.range(base.saturating_add(1)..).copied().collect())
    }

    /// This device's batch `seq` in the bucket, opened and verified as
    /// signed by this device's member (its device is bound to it), its
    /// link to the batch before not checked: `None` when it is missing,
    /// or judged garbage as [`FailedReads`] says (only after two whole
    /// reads that do not open or verify).
    async fn own_batch(&self, seq: u64) -> Result<Option<VerifiedObject>, SyncError> {
        let device = self.device;
        let key = layout::ops_key(&device, seq);
        let mut reads = FailedReads::default();
        loop {
            let (read, len) = match self.store.get(&key, MAX_BATCH_OBJECT_BYTES).await {
                Ok(sealed) => {
                    let opened = match self.open(&key, &batch_place(device, seq), &sealed) {
                        Ok(plain) => {
                            self.verify_signed(&key, SignedKind::Batch, device, seq, &sealed, plain)
                                .await
                        }
                        Err(e) => Err(e),
                    };
                    (opened, Some(sealed.len()))
                }
                Err(StoreError::NotFound { .. }) => return Ok(None),
                Err(e @ StoreError::TooLarge { .. }) => (Err(e.into()), None),
                Err(e) => return Err(e.into()),
            };
            match read {
                Ok(verified) => return Ok(Some(verified)),
                Err(SyncError::Store(StoreError::NotFound { .. })) => return Ok(None),
                Err(SyncError::Store(e)) if !matches!(e, StoreError::TooLarge { .. }) => {
                    return Err(e.into())
                }
                Err(e) => {
                    if self.garbage_after(&key, len, e, &mut reads).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// This device's chain link at its own batch `after` (the hash its
    /// next batch names as predecessor): the one it has recorded (pushed,
    /// re-taken or learned here before), or, where it has none (it went
    /// back to a copy from before that batch) though it pushed that far,
    /// the predecessor its own batch `after + 1` in the bucket names, that
    /// batch opened, signed by this member in its place, well formed and,
    /// where this device recorded pushing it, that very batch; a link
    /// learned so is recorded. Never a checkpoint's word: any member can
    /// sign one naming another hash, and this device's own cursor and its
    /// checkpoints (while a restore's replay waits) would pass it on,
    /// every reader finding the chain broken there. `None` when neither is
    /// to be had (that batch gone, or garbage after two whole reads); reads
    /// cut short again and again, an unreachable bucket or a local failure
    /// are errors.
    pub(crate) async fn own_link_at(&self, after: u64) -> Result<Option<BatchHash>, SyncError> {
        let Some(next) = after.checked_add(1).filter(|_| after > 0) else {
            return Ok(None);
        };
        // And the batch this device recorded pushing at `next`, if any:
        // the object there must be that batch, since anyone holding this
        // member's identity could sign another naming any predecessor.
        let (stored, pushed, pushed_there) = self
            .with_db(move |rec| {
                let conn = rec.sync_parts().0;
                let pushed = newest_pushed(conn)?.map_or(0, |(seq, _)| seq);
                let stored = crate::push::stored_hash(conn, after)?;
                Ok((stored, pushed, crate::push::stored_hash(conn, next)?))
            })
            .await?;
        if stored.is_some() || after > pushed {
            return Ok(stored);
        }
        let Some(verified) = self.own_batch(next).await? else {
            tracing::warn!(
                seq = next,
                "no own link at {after}: the batch after it is gone or does not open"
            );
            return Ok(None);
        };
        let key = layout::ops_key(&self.device, next);
        let header = verified.header();
        let prev = header.prev;
        let body = verified.body();
        let well_formed =
            crate::pull::check_batch(self.schema, &key, self.device, next, prev, header, body);
        if let Err(e) = well_formed {
            tracing::warn!(%key, error = %e, "no own link at {after}: the batch after it is not well formed");
            return Ok(None);
        }
        if pushed_there.is_some_and(|h| h != BatchHash::of(body)) {
            tracing::warn!(%key, "no own link at {after}: the batch after it is not the one pushed");
            return Ok(None);
        }
        // Recorded at once (never replacing a link): the restore's own
        // cursor and the checkpoints this device writes while its replay
        // waits name it (seed 93289), and a later pull finds it here.
        if let Some(hash) = prev {
            self.with_db(move |rec| {
                rec.sync_parts().0.execute(
                    "INSERT OR IGNORE INTO bae_sync_batch_hashes (batch_id, hash) VALUES (?1, ?2)",
                    params![after as i64, hash.0.as_slice()],
                )?;
                Ok(())
            })
            .await?;
        }
        Ok(prev)
    }

    /// The seqs of this device's head objects in the bucket (one LIST).
    pub(crate) async fn list_own_heads(&self) -> Result<Vec<u64>, SyncError> {
        self.listed_head_seqs(self.device).await
    }

    /// The seqs of `device`'s head objects in the bucket (one LIST),
    /// newest first.
    pub(crate) async fn listed_head_seqs(
        &self,
        device: bae_hlc::DeviceId,
    ) -> Result<Vec<u64>, SyncError> {
        let mut seqs: Vec<u64> = self
            .store
            .list(&layout::heads_prefix(&device))
            .await?
            .iter()
            .filter_map(|k| layout::parse_heads_key(k).ok())
            .filter(|(d, _)| *d == device)
            .map(|(_, seq)| seq)
            .collect();
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        Ok(seqs)
    }

    /// Whether a read of `len` bytes at `key` had the whole object, as the
    /// bucket's HEAD gives its size; `None` when the object is gone since.
    pub(crate) async fn read_was_whole(
        &self,
        key: &str,
        len: usize,
    ) -> Result<Option<bool>, SyncError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(u64::try_from(len).is_ok_and(|len| len == meta.size))),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads this device's batches above `base` while they open and chain,
    /// and its newest valid head above them (among those listed now and the
    /// ones already `seen`: a LIST may miss the newest).
    async fn read_ahead(
        &self,
        base: u64,
        base_hash: Option<BatchHash>,
        seen: &[u64],
    ) -> Result<Ahead, SyncError> {
        let device = self.device;
        let batches = self.read_chain(base + 1, base_hash).await?;
        let top = base + batches.len() as u64;
        let mut seqs = self.list_own_heads().await?;
        seqs.extend_from_slice(seen);
        seqs.retain(|s| *s > top);
        seqs.sort_unstable_by(|a, b| b.cmp(a));
        seqs.dedup();
        let mut head = None;
        'heads: for s in seqs.into_iter().take(MAX_OWN_HEADS_TRIED) {
            let key = layout::heads_key(&device, s);
            // Judged like a batch: damaged reads of the real head would make
            // the push overwrite the batches it names.
            let mut reads = FailedReads::default();
            loop {
                let (read, len) = match self.store.get(&key, MAX_HEAD_OBJECT_BYTES).await {
                    Ok(sealed) => (
                        self.open_head(&key, device, s, &sealed).await,
                        Some(sealed.len()),
                    ),
                    Err(StoreError::NotFound { .. }) => break,
                    Err(e @ StoreError::TooLarge { .. }) => (Err(e.into()), None),
                    Err(e) => return Err(e.into()),
                };
                match read {
                    Ok(Head {
                        seq,
                        hash: Some(hash),
                        hlc,
                        ..
                    }) => {
                        head = Some((seq, hash, hlc));
                        break 'heads;
                    }
                    Ok(_) => break,
                    Err(SyncError::Store(StoreError::NotFound { .. })) => break,
                    Err(SyncError::Store(e)) if !matches!(e, StoreError::TooLarge { .. }) => {
                        return Err(e.into())
                    }
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "own head does not open");
                        if self.garbage_after(&key, len, e, &mut reads).await? {
                            break;
                        }
                    }
                }
            }
        }
        // Batches above a head beyond a gap: a push that put them but
        // not their head (its reply lost, the device then went back) left
        // them for no device to read yet, but their writes were
        // acknowledged and uploaded; renumbering the local batches over
        // them would lose those writes (seed 7208). They are recorded and
        // applied with the gap's recovery.
        let above_head = match head {
            Some((seq, hash, _)) => self.read_chain(seq + 1, Some(hash)).await?,
            None => Vec::new(),
        };
        Ok(Ahead {
            batches,
            head,
            above_head,
        })
    }

    /// Before a second read of an own head or batch: reads the membership
    /// again if it refused the first, and this member's newer key blobs if
    /// the first was sealed under an epoch this device lacks (`open` noted
    /// it). The chain this service holds may lack the entry that admits
    /// this device's user (a database gone back to a copy taken before it
    /// read the membership, then a LIST that missed the entry), and its
    /// keys the epoch its own revoke started (a copy, or a home, from
    /// before the revoke): judging its own objects garbage then made the
    /// push write new batches under seqs other devices had applied, and
    /// delete the head, forking its stream for good (seed 9127; seed 4 with
    /// removals).
    ///
    /// An own object sealed under an epoch this device still lacks after
    /// that, while this member's key blob of that epoch is in the bucket
    /// (looked up by name), is not garbage: the refresh's LIST of key blobs
    /// missed it (an eventually consistent bucket). The read fails with
    /// `e`'s error and the push with it, to be run again; before, the
    /// second read failed the same way, the head was passed over and the
    /// push rewrote batches every other device had applied (seed 24347:
    /// a device back on a copy from before its library's revoke, a fork).
    ///
    /// Returns whether the failed read does not count as one of the two
    /// (the refresh brought the epoch it was sealed under): it said nothing
    /// about the object, and a second read cut short after it left one
    /// real read of the head, which did not open, and the push replaced the
    /// head other devices had read (seed 51843: a device back on a copy
    /// from before its revoke).
    async fn read_members_again_if_unreadable(&self, e: &SyncError) -> Result<bool, SyncError> {
        let newer_epoch = match e {
            SyncError::Object {
                key,
                source: ObjectError::UnknownEpoch { epoch },
            } => Some((key, *epoch)),
            _ => None,
        };
        if newer_epoch.is_some() || matches!(e, SyncError::Refused { .. }) {
            self.refresh_members().await?;
        }
        let Some((key, epoch)) = newer_epoch else {
            return Ok(false);
        };
        if self.key_ring().get(epoch).is_some() {
            return Ok(true);
        }
        if epoch > self.key_epoch()
            && self
                .key_blob_there(&self.member.public_key(), epoch)
                .await?
        {
            return Err(SyncError::Object {
                key: key.clone(),
                source: ObjectError::UnknownEpoch { epoch },
            });
        }
        Ok(false)
    }

    /// Reads this device's batches from `seq` on while they open and chain
    /// from `prev` (up to one that is gone, or is judged garbage: see
    /// [`FailedReads`]).
    async fn read_chain(
        &self,
        mut seq: u64,
        mut prev: Option<BatchHash>,
    ) -> Result<Vec<(Batch, BatchHash)>, SyncError> {
        let device = self.device;
        let mut batches = Vec::new();
        let mut reads = FailedReads::default();
        loop {
            let key = layout::ops_key(&device, seq);
            let (read, len) = match self.store.get(&key, MAX_BATCH_OBJECT_BYTES).await {
                Ok(sealed) => (
                    self.open_batch(&key, device, seq, prev, &sealed).await,
                    Some(sealed.len()),
                ),
                Err(StoreError::NotFound { .. }) => return Ok(batches),
                Err(e @ StoreError::TooLarge { .. }) => (Err(e.into()), None),
                Err(e) => return Err(e.into()),
            };
            match read {
                Ok((batch, hash, _)) => {
                    reads = FailedReads::default();
                    batches.push((batch, hash));
                    prev = Some(hash);
                    seq += 1;
                }
                Err(SyncError::Store(StoreError::NotFound { .. })) => return Ok(batches),
                Err(SyncError::Store(e)) if !matches!(e, StoreError::TooLarge { .. }) => {
                    return Err(e.into())
                }
                Err(e) => {
                    tracing::warn!(%key, error = %e, "own batch did not open");
                    if self.garbage_after(&key, len, e, &mut reads).await? {
                        // Not this device's next batch: garbage the push
                        // replaces (no device can have applied it).
                        tracing::warn!(%key, "not a batch of this device; will be replaced");
                        return Ok(batches);
                    }
                }
            }
        }
    }

    /// Counts a read of this device's object at `key` that did not open
    /// with `e` (`len`: the bytes read; `None` when the bucket refused it
    /// as larger than such an object may be) and returns whether the
    /// object is now judged garbage. A read cut short (fewer bytes than the
    /// bucket's HEAD gives the object) does not count; after
    /// [`MAX_CUT_SHORT_READS`] of them the push fails
    /// ([`SyncError::OwnObjectCutShort`]), to be run again.
    async fn garbage_after(
        &self,
        key: &str,
        len: Option<usize>,
        e: SyncError,
        reads: &mut FailedReads,
    ) -> Result<bool, SyncError> {
        if self.read_members_again_if_unreadable(&e).await? {
            return Ok(false);
        }
        let whole = match len {
            None => true,
            // Gone since: the next read says so.
            Some(len) => self.read_was_whole(key, len).await?.unwrap_or(false),
        };
        if whole {
            reads.whole += 1;
            return Ok(reads.whole >= 2);
        }
        reads.cut_short += 1;
        if reads.cut_short >= MAX_CUT_SHORT_READS {
            tracing::warn!(%key, error = %e, "own object read cut short again");
            return Err(SyncError::OwnObjectCutShort {
                key: key.to_owned(),
                reads: reads.cut_short,
            });
        }
        Ok(false)
    }
}

/// Reads of one of this device's own objects that did not open. It is
/// taken for garbage (no device can have applied it, and the push replaces
/// it) only after two reads of the whole object that do not open: one
/// damaged read of a batch or head other devices applied must never make
/// this device overwrite it, and two reads cut short in a row (truncated
/// bodies) of its head, below which GC had removed the batches, made the
/// push write new batches under seqs other devices had applied and delete
/// that head, forking the stream for good (the family of seed 51843).
#[derive(Default)]
struct FailedReads {
    /// Reads of as many bytes as the bucket gives the object.
    whole: usize,
    /// Reads of fewer: they say nothing about the object.
    cut_short: usize,
}

/// Applies the bucket's batches this device lacks, records every one as
/// pushed, and moves the unpushed local batches above the bucket's.
/// Returns the seqs applied.
fn retake(
    rec: &mut bae_oplog::OpRecorder,
    base: u64,
    base_hash: Option<BatchHash>,
    ahead: Ahead,
) -> Result<Vec<u64>, SyncError> {
    let device = rec.device();
    let schema = rec.schema();
    // The bucket's first batches may be exactly the local unpushed ones (a
    // push whose marks were lost, or another process's push): those stay.
    let same = {
        let conn = rec.sync_parts().0;
        let mut same = 0;
        for (batch, hash) in &ahead.batches {
            match encode_one(conn, schema, device, batch.seq, batch.prev)? {
                Some((local, _)) if local.hash == *hash => same += 1,
                _ => break,
            }
        }
        same
    };
    let foreign: Vec<Batch> = ahead.batches[same..]
        .iter()
        .map(|(b, _)| b.clone())
        .collect();
    let merged = bae_merge::apply_pull(rec, foreign)?;
    let applied: Vec<u64> = merged.applied.iter().map(|(_, s)| s.0).collect();
    // A held batch (it updates a row whose insert, another device's, this
    // device lacks until a pull brings it) does not stop the re-take:
    // waiting for it to renumber left the push failing, and so the
    // recovery that brings the insert refused (it saw the local unpushed
    // batches under the bucket's seqs, seeds 5004, 6002). The held ones
    // and every batch after them are applied by later pulls
    // ([`SyncService::apply_held_own`]) from this cursor.
    let held_from = merged.held.iter().map(|h| h.batch.seq.0).min();
    let own_cursor = held_from.map(|first| {
        let seq = first - 1;
        let hash = ahead
            .batches
            .iter()
            .find(|(b, _)| b.seq.0 == seq)
            .map(|(_, h)| *h)
            .or(base_hash);
        (seq, hash)
    });
    let (conn, clock, _) = rec.sync_parts();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Never past an own cursor already here: it waits for batches an
    // earlier re-take held (a copy taken while they waited), and moving it
    // up to this re-take's first held batch skipped them for good (seed
    // 11075).
    if let Some((seq, hash)) = own_cursor {
        if self::own_cursor(&tx, device)?.is_none_or(|(s, _)| s > seq) {
            set_own_cursor(&tx, device, seq, hash)?;
        }
    }
    let mut top = base;
    for (i, (batch, hash)) in ahead.batches.iter().enumerate() {
        if i < same {
            bae_oplog::mark_pushed(&tx, batch.seq)?;
        }
        record_hash(&tx, batch.seq.0, hash)?;
        top = batch.seq.0;
    }
    if let Some((seq, hash, hlc)) = ahead.head.filter(|h| h.0 > top) {
        record_hash(&tx, seq, &hash)?;
        top = seq;
        let mut newest = hlc;
        for (batch, hash) in &ahead.above_head {
            record_hash(&tx, batch.seq.0, hash)?;
            top = batch.seq.0;
            newest = batch.max_hlc().map_or(newest, |h| h.max(newest));
        }
        // The head (and the batches above it) carry this device's clock
        // when it pushed: stamps after it must not go back (merge already
        // did this for the re-taken batches' own stamps).
        bae_oplog::catch_up_clock(&tx, clock)?;
        if clock.check_drift(newest).is_ok() {
            clock
                .catch_up(newest)
                .map_err(bae_oplog::OplogError::from)?;
            bae_oplog::persist_clock(&tx, clock)?;
        }
    }
    let moved = bae_oplog::renumber_unpushed(&tx, BatchSeq(top + 1))?;
    tx.commit()?;
    tracing::info!(top, moved, "local batches continue above the bucket's");
    Ok(applied)
}

/// In a checkpoint restore's transaction: when this device has pushed
/// batches above the checkpoint's cursor for it (`after`), its own cursor
/// goes there, with its own link at `after` ([`SyncService::own_link_at`]).
/// Batches it re-took after going back to a backup are among them
/// and not in its op log, so the restore's replay of local batches does
/// not bring their writes back; [`SyncService::reapply_own_after`] applies
/// them right after the restore, and if a read fails or the process dies
/// first, the next pull does from this cursor (seed 8015: a failed read
/// left a pushed title reverted on this device alone).
pub(crate) fn reapply_own_from_checkpoint(
    conn: &rusqlite::Connection,
    device: bae_hlc::DeviceId,
    after: u64,
    link: Option<BatchHash>,
) -> Result<(), SyncError> {
    if newest_pushed(conn)?.is_some_and(|(seq, _)| seq > after) {
        set_own_cursor(conn, device, after, link)?;
    }
    Ok(())
}

/// Records how far this device's own stream is applied here, while
/// re-taken batches of it are held.
fn set_own_cursor(
    conn: &rusqlite::Connection,
    device: bae_hlc::DeviceId,
    seq: u64,
    hash: Option<BatchHash>,
) -> Result<(), SyncError> {
    conn.execute(
        "INSERT INTO bae_sync_cursors (device_id, applied_seq, applied_hash) VALUES (?1, ?2, ?3)
         ON CONFLICT (device_id) DO UPDATE SET applied_seq = excluded.applied_seq, applied_hash = excluded.applied_hash",
        params![device.to_string(), seq as i64, hash.map(|h| h.0.to_vec())],
    )?;
    Ok(())
}

/// This device's own cursor, present only while re-taken own batches wait.
pub(crate) fn own_cursor(
    conn: &rusqlite::Connection,
    device: bae_hlc::DeviceId,
) -> Result<Option<(u64, Option<BatchHash>)>, SyncError> {
    let row: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT applied_seq, applied_hash FROM bae_sync_cursors WHERE device_id = ?1",
            [device.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.map(|(seq, hash)| {
        (
            u64::try_from(seq).unwrap_or(0),
            hash.and_then(|h| <[u8; 32]>::try_from(h).ok())
                .map(BatchHash),
        )
    }))
}

fn record_hash(
    tx: &rusqlite::Transaction<'_>,
    seq: u64,
    hash: &BatchHash,
) -> Result<(), SyncError> {
    tx.execute(
        "INSERT OR REPLACE INTO bae_sync_batch_hashes (batch_id, hash) VALUES (?1, ?2)",
        params![seq as i64, hash.0.as_slice()],
    )?;
    Ok(())
}
