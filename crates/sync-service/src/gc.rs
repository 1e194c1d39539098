//! Garbage collection: deleting what this device's newest checkpoint covers.
//!
//! What may drive a deletion: only a checkpoint **this device wrote**
//! (recorded in `bae_sync_checkpoints_written` once it was uploaded), that
//! still opens and verifies, and whose cursors the heads in the bucket
//! confirm (no cursor beyond its device's newest head; this device's own
//! cursor no beyond what it pushed). A checkpoint another key holder wrote,
//! or one the bucket host put back, never deletes anything: a forged empty
//! checkpoint cannot make GC drop the batches it claims to cover.
//!
//! Write order: a batch object is deleted only after such a checkpoint has
//! been in the bucket for the grace period (30 days by this device's wall
//! clock since it wrote it, not by the checkpoint's own HLC; `compact_now`
//! skips the wait for users who know every device is online). A device that
//! was offline longer finds its next batch missing and recovers from the
//! checkpoint (`bootstrap.rs`). A batch is deleted only if the newest
//! checkpoint that verifies (the one readers start from, possibly another
//! device's) covers it too; while a newer one is held (its HLC beyond the
//! drift bound: readers start from it once clocks catch up) nothing is
//! deleted, nor while an older checkpoint holds batches, gone from the
//! bucket, that the one GC relies on lacks (it is their only copy).
//! Checkpoints older than the one GC relies on
//! are deleted with the batches; it and newer ones stay. Locally, op-log
//! rows of pushed batches the checkpoint covers are pruned after their
//! stamps are folded; `bae_sync_batch_hashes` keeps every chain link.

use crate::checkpoint::{CheckpointError, OpenedCheckpoint};
use crate::error::SyncError;
use crate::push::newest_pushed;
use crate::service::SyncService;
use bae_crypto::KeyEpoch;
use bae_oplog::BatchSeq;
use bae_storage_s3::layout;
use std::time::Duration;

/// How long a checkpoint must have existed before what it covers is deleted.
pub const GC_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What a GC did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// The checkpoint GC relied on: this device's newest that verifies.
    pub checkpoint: Option<String>,
    /// When it is still inside the grace period: milliseconds left.
    pub grace_left_ms: Option<i64>,
    /// Batch objects deleted.
    pub ops_deleted: usize,
    /// Older checkpoints deleted.
    pub checkpoints_deleted: usize,
    /// Local op-log rows pruned.
    pub local_ops_pruned: usize,
    /// Checkpoints this device wrote that no longer open or verify (left
    /// in place).
    pub rejected: Vec<String>,
    /// A checkpoint newer than the one GC relies on that it could not
    /// weigh: held because its HLC is beyond this device's drift bound
    /// (readers start from it once clocks catch up), or missing from the
    /// LIST that found the newest. It may cover less of some stream, so
    /// nothing was deleted.
    pub held_by_newer: Option<String>,
    /// An older checkpoint that holds batches of a stream, gone from the
    /// bucket, that the checkpoint GC relied on lacks (its writer had not
    /// seen them: a LIST missed that stream): deleting it would lose them
    /// for good, so nothing was deleted. This device's next `checkpoint`
    /// recovers from it first, and GC goes by that one.
    pub held_by_older: Option<String>,
    /// A membership entry this device cannot open (sealed under a key
    /// epoch it lacks) that may remove this device's member, whose
    /// checkpoints then no longer count for anyone else, so nothing was
    /// deleted: its author can manage membership and has a key blob of the
    /// epoch its header names, as every rotation's author does.
    pub held_by_membership: Option<String>,
    /// Membership objects this device cannot open that cannot be a removal
    /// of its member (see [`NotARemoval`]): they did not hold GC. Planted,
    /// most likely, by someone who can write to the bucket.
    pub ignored_membership: Vec<IgnoredEntry>,
}

/// A membership object this device cannot open and GC did not wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredEntry {
    /// Its bucket key.
    pub key: String,
    /// The key epoch its (unauthenticated) header names.
    pub epoch: KeyEpoch,
    /// Why it cannot be a removal of this member.
    pub reason: NotARemoval,
}

/// Why an entry this device cannot open cannot remove its member. A
/// removal comes from a rotation: its author, who can manage membership,
/// writes the new epoch's key blob of their own first, then everyone
/// else's, and only then the entry sealed under it (`epochs.rs`,
/// `sharing.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotARemoval {
    /// The author its key names is not an owner or admin in this device's
    /// chain.
    #[error("its author cannot manage membership")]
    AuthorCannotManage,
    /// Its author has no key blob of the epoch its header names.
    #[error("its author has no key blob of the epoch it names")]
    NoKeyBlob,
}

/// The key of a checkpoint refused only because its HLC is beyond the
/// drift bound (it verifies later), from the error that refused it.
fn held_for_drift(e: &SyncError) -> Option<String> {
    match e {
        SyncError::Invalid { key, source } => match source.as_ref() {
            crate::error::InvalidObject::Checkpoint(CheckpointError::AheadOfClock(_)) => {
                Some(key.clone())
            }
            _ => None,
        },
        _ => None,
    }
}

/// The key of the checkpoint an error of [`SyncService::newest_checkpoint`]
/// refused.
fn refused_key(e: &SyncError) -> Option<&str> {
    match e {
        SyncError::Object { key, .. }
        | SyncError::Invalid { key, .. }
        | SyncError::Refused { key, .. }
        | SyncError::Store(bae_storage_s3::StoreError::TooLarge { key, .. }) => Some(key),
        _ => None,
    }
}

impl SyncService {
    /// Deletes batch objects and older checkpoints covered by this device's
    /// newest checkpoint (see the module docs for which checkpoints count)
    /// once it has been in the bucket for `grace` at `now_ms` (Unix ms;
    /// injectable for tests), or at once with `compact_now`.
    pub async fn gc(
        &self,
        now_ms: i64,
        grace: Duration,
        compact_now: bool,
    ) -> Result<GcReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        let mut report = GcReport::default();
        let Some((ck, written_ms)) = self.newest_own_checkpoint(&mut report).await? else {
            return Ok(report);
        };
        report.checkpoint = Some(ck.key.clone());
        let age = now_ms.saturating_sub(written_ms);
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        if !compact_now && age < grace_ms {
            report.grace_left_ms = Some(grace_ms - age);
            return Ok(report);
        }
        // A removed member's device cannot open the removal (sealed under
        // the new epoch) and goes on as before; its checkpoints no longer
        // count for the others, so its GC deleted batches and the newest
        // checkpoints they relied on, such as the one the revoke wrote
        // (seed 14014). Nothing is deleted while an entry that may be such
        // a removal does not open.
        // Only an entry that can be a removal holds: an object anyone with
        // write access planted there, naming an epoch no one holds, held
        // every device's GC for as long as it stayed (review finding 1).
        if let Some(key) = self.unopened_removal(&mut report).await? {
            tracing::info!(checkpoint = %ck.key, entry = %key, "gc waits: a membership entry does not open with this member's keys");
            report.held_by_membership = Some(key);
            return Ok(report);
        }
        self.confirm_cursors(&ck).await?;
        // A reader bootstraps and recovers from the newest checkpoint that
        // verifies, which may be another device's and include less of
        // some stream than this one: never delete a batch it does not
        // cover either, or a device starting from it could never get it.
        let (newest, rejected) = self.newest_checkpoint().await?;
        // One newer still is only held (its writer's clock ran ahead of
        // this device's): it verifies once clocks catch up and is then
        // where readers start, so it must count like the newest. GC
        // deleted a batch only `ck` covered, and a device that then
        // recovered from the held one never got it (seed 12251). Wait.
        // Every rejected one is newer than `ck`: `ck` itself verifies.
        if let Some(held) = rejected.iter().find_map(held_for_drift) {
            tracing::info!(checkpoint = %ck.key, newer = %held, "gc waits: a newer checkpoint is beyond the drift bound");
            report.held_by_newer = Some(held);
            return Ok(report);
        }
        // The newest comes from one LIST, and one that missed it (an
        // eventually consistent bucket) let GC delete what only `ck`
        // covered: a device that later recovered from the newest reported
        // it as a gap for good (seed 11156). A second LIST must show no
        // newer checkpoint the first pass did not weigh.
        let weighed: Vec<&str> = rejected
            .iter()
            .filter_map(refused_key)
            .chain(newest.as_ref().map(|n| n.key.as_str()))
            .collect();
        let floor = newest.as_ref().map_or(&ck.id, |n| &n.id).max(&ck.id);
        for key in self.store.list(layout::CHECKPOINTS_PREFIX).await? {
            let unseen = layout::parse_checkpoint_key(&key).is_ok_and(|id| id > *floor)
                && !weighed.contains(&key.as_str());
            if unseen {
                tracing::info!(checkpoint = %ck.key, newer = %key, "gc waits: a newer checkpoint was not listed before");
                report.held_by_newer = Some(key);
                return Ok(report);
            }
        }
        // Nor when `ck` lacks a range only an older checkpoint holds: the
        // older one goes below, and with it the range. A LIST of `heads/`
        // that missed a device's every head let its writer pass that
        // stream over, and its GC then deleted the older one, the range's
        // only copy (seed 101031; `checkpoint` looks for such a stream
        // too, but its LISTs can be stale as well).
        if let Some(key) = self.older_holding_what_it_lacks(&ck).await? {
            tracing::warn!(checkpoint = %ck.key, older = %key, "gc waits: an older checkpoint holds gone batches this one lacks");
            report.held_by_older = Some(key);
            return Ok(report);
        }
        let newer = newest.filter(|n| n.id > ck.id);
        // Nor a batch of another device this library does not hold now: a
        // restore since `ck` (a recovery from an older checkpoint) set its
        // cursor back, and the device then needs the batch again. `ck`
        // still held it, but could not be recovered from where it was
        // behind the restored one on a stream whose batches were gone, so
        // the range was out of this device's reach for good (seed 40816).
        let applied = self
            .with_db(|rec| crate::pull::applied_cursors(rec.sync_parts().0))
            .await?;
        for c in &ck.header.cursors {
            let mut limit = match &newer {
                Some(n) => c.seq.min(n.header.cursor_of(c.device_id())),
                None => c.seq,
            };
            if c.device_id() != self.device {
                limit = limit.min(applied.get(&c.device_id()).copied().unwrap_or(0));
            }
            for key in self.store.list(&layout::ops_prefix(&c.device_id())).await? {
                if layout::parse_ops_key(&key).is_ok_and(|(_, seq)| seq <= limit) {
                    self.store.delete(&key).await?;
                    report.ops_deleted += 1;
                    self.check_cancelled()?;
                }
            }
        }
        for key in self.store.list(layout::CHECKPOINTS_PREFIX).await? {
            if layout::parse_checkpoint_key(&key).is_ok_and(|id| id < ck.id) {
                self.store.delete(&key).await?;
                report.checkpoints_deleted += 1;
            }
        }
        // Signatures after what they sign, and only of older checkpoints.
        for key in self
            .store
            .list(layout::CHECKPOINT_SIGNATURES_PREFIX)
            .await?
        {
            if layout::parse_checkpoint_signature_key(&key).is_ok_and(|id| id < ck.id) {
                self.store.delete(&key).await?;
            }
        }
        let own = ck.header.cursor_of(self.device);
        report.local_ops_pruned = self
            .with_db(move |rec| {
                // No stamp may be lost: fold first.
                bae_merge::fold_local(rec)?;
                Ok(bae_oplog::prune_pushed(rec.sync_parts().0, BatchSeq(own))?)
            })
            .await?;
        tracing::info!(?report, "gc done");
        Ok(report)
    }

    /// The first checkpoint older than `ck` that opens and holds, of a
    /// device with a head listed, batches up to that head which `ck` lacks
    /// and which are not all in the bucket.
    async fn older_holding_what_it_lacks(
        &self,
        ck: &OpenedCheckpoint,
    ) -> Result<Option<String>, SyncError> {
        let heads = self.list_heads().await?;
        let chain = self.chain().await?;
        for (id, key) in self.listed_checkpoints(Some(&ck.id)).await? {
            let older = match self.open_checkpoint(&id, &key).await {
                Ok(older) => older,
                // Readers pass it over too.
                Err(e) if crate::checkpoint::passed_over(&e) => continue,
                Err(e) => return Err(e),
            };
            for c in &older.header.cursors {
                let device = c.device_id();
                let Some(&head) = heads.get(&device) else {
                    continue;
                };
                let held = self.counted_cursor(&chain, c).min(head);
                let from = ck.header.cursor_of(device);
                if from < held && !self.stream_in_bucket(device, from + 1, held).await? {
                    return Ok(Some(key));
                }
            }
        }
        Ok(None)
    }

    /// After a membership refresh: the first entry that does not open with
    /// this member's keys and may be a removal of it
    /// ([`SyncService::why_not_a_removal`]). The others are logged and
    /// reported in `report.ignored_membership`.
    async fn unopened_removal(&self, report: &mut GcReport) -> Result<Option<String>, SyncError> {
        let chain = self.refresh_members().await?;
        let unopened = self
            .members
            .lock()
            .map(|s| s.unopened.clone())
            .unwrap_or_default();
        for entry in unopened {
            let Some(reason) = self.why_not_a_removal(&chain, &entry).await? else {
                return Ok(Some(entry.key));
            };
            tracing::warn!(entry = %entry.key, epoch = entry.epoch.0, %reason, "membership object does not open and cannot be a removal of this member: gc goes on");
            report.ignored_membership.push(IgnoredEntry {
                key: entry.key,
                epoch: entry.epoch,
                reason,
            });
        }
        Ok(None)
    }

    /// The newest checkpoint this device wrote that is still in the bucket
    /// and verifies, with when it was written. Ones that no longer verify
    /// are reported in `report.rejected`.
    async fn newest_own_checkpoint(
        &self,
        report: &mut GcReport,
    ) -> Result<Option<(OpenedCheckpoint, i64)>, SyncError> {
        let written: Vec<(String, i64)> = self
            .with_db(|rec| {
                let conn = rec.sync_parts().0;
                let mut stmt = conn.prepare(
                    "SELECT key, written_ms FROM bae_sync_checkpoints_written ORDER BY key DESC",
                )?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        for (key, written_ms) in written {
            let id = match layout::parse_checkpoint_key(&key) {
                Ok(id) => id,
                Err(e) => {
                    report.rejected.push(SyncError::invalid(key, e).to_string());
                    continue;
                }
            };
            match self.open_checkpoint(&id, &key).await {
                Ok(opened) => return Ok(Some((opened, written_ms))),
                Err(SyncError::Store(e)) if e.is_not_found() => {}
                Err(
                    e @ (SyncError::Object { .. }
                    | SyncError::Invalid { .. }
                    | SyncError::Refused { .. }),
                ) => {
                    tracing::warn!(%key, error = %e, "own checkpoint no longer verifies");
                    report.rejected.push(e.to_string());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Refuses a checkpoint whose cursors the bucket does not confirm: a
    /// cursor beyond its device's newest head (or, for this device, beyond
    /// what it pushed) would delete batches no head vouches for.
    pub(crate) async fn confirm_cursors(&self, ck: &OpenedCheckpoint) -> Result<(), SyncError> {
        let heads = self.list_heads().await?;
        let pushed = self
            .with_db(|rec| Ok(newest_pushed(rec.sync_parts().0)?.map_or(0, |(seq, _)| seq)))
            .await?;
        for c in &ck.header.cursors {
            let device = c.device_id();
            let confirmed = if device == self.device {
                pushed
            } else {
                heads.get(&device).copied().unwrap_or(0)
            };
            if c.seq > confirmed {
                return Err(SyncError::invalid(
                    ck.key.clone(),
                    CheckpointError::CursorBeyondHead {
                        device,
                        cursor: c.seq,
                        head: confirmed,
                    },
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::test_support::{dump, import, Bucket};
    use bae_storage_s3::ObjectStore;

    const DAY_MS: i64 = 24 * 60 * 60 * 1000;

    async fn batches_in(store: &dyn ObjectStore) -> usize {
        store.list(layout::OPS_PREFIX).await.unwrap().len()
    }

    /// A key holder uploads an empty checkpoint, newer than every honest
    /// one, whose cursors match the heads. It used to make GC delete every
    /// batch and the honest checkpoint, so a new device joined with nothing.
    /// Now GC relies only on checkpoints the device wrote itself.
    #[tokio::test]
    async fn a_forged_checkpoint_never_drives_gc() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 3);
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        b.pull().await.unwrap();
        // b wrote no checkpoint: nothing is deleted, whatever the bucket holds.
        let forged = bucket.forge(a.device(), 60_000, vec![]).await;
        let report = b
            .gc(crate::service::now_ms(), GC_GRACE, true)
            .await
            .unwrap();
        assert_eq!(report.checkpoint, None);
        assert_eq!((report.ops_deleted, report.checkpoints_deleted), (0, 0));
        assert_eq!(batches_in(bucket.store.as_ref()).await, 3);
        // a's own checkpoint drives a's GC; the forged one, newer and
        // covering nothing, can only hold GC back: nothing is deleted.
        let honest = a.checkpoint().await.unwrap();
        let report = a
            .gc(crate::service::now_ms(), GC_GRACE, true)
            .await
            .unwrap();
        assert_eq!(report.checkpoint.as_deref(), Some(honest.key.as_str()));
        assert_eq!(report.ops_deleted, 0);
        assert_eq!(batches_in(bucket.store.as_ref()).await, 3);
        let left = bucket.store.list(layout::CHECKPOINTS_PREFIX).await.unwrap();
        assert!(left.contains(&honest.key) && left.contains(&forged));
        assert_eq!(dump(&a).await, dump(&b).await);
    }

    /// The laptop's checkpoint lacks the desktop's stream (written without
    /// a pull, as by a `checkpoint` whose every LIST missed the desktop's
    /// heads), whose batches the desktop's GC removed under its own
    /// older checkpoint. GC by the laptop's deleted that older one, the
    /// range's only copy (seed 101031); now it deletes nothing, and once
    /// the laptop's `checkpoint` has recovered the range, GC goes on.
    #[tokio::test]
    async fn gc_keeps_an_older_checkpoint_holding_gone_batches_its_own_lacks() {
        let bucket = Bucket::new();
        let desktop = bucket.device("desktop", 2);
        let laptop = bucket.device("laptop", 1);
        let desktop_head = desktop.push().await.unwrap().head.unwrap();
        laptop.push().await.unwrap();
        let theirs = desktop.checkpoint().await.unwrap().key;
        let now = crate::service::now_ms();
        assert!(desktop.gc(now, GC_GRACE, true).await.unwrap().ops_deleted > 0);
        let lacking = {
            let _one_at_a_time = laptop.flight.lock().await;
            laptop.write_checkpoint().await.unwrap()
        };
        assert!(lacking.cursors.iter().all(|(d, _)| *d != desktop.device()));

        let report = laptop.gc(now, GC_GRACE, true).await.unwrap();
        assert_eq!(report.held_by_older.as_deref(), Some(theirs.as_str()));
        assert_eq!((report.ops_deleted, report.checkpoints_deleted), (0, 0));
        let left = bucket.store.list(layout::CHECKPOINTS_PREFIX).await.unwrap();
        assert!(left.contains(&theirs), "{left:?}");

        let own = laptop.checkpoint().await.unwrap();
        assert!(
            own.cursors.contains(&(desktop.device(), desktop_head)),
            "{own:?}"
        );
        let report = laptop.gc(now, GC_GRACE, true).await.unwrap();
        assert_eq!(report.held_by_older, None);
        assert!(report.checkpoints_deleted > 0, "{report:?}");
        assert_eq!(dump(&laptop).await, dump(&desktop).await);
    }

    /// A newer checkpoint written by a device whose clock ran beyond the
    /// drift bound does not verify here yet, but readers start from it
    /// once clocks catch up, and it may cover less than this device's own:
    /// GC deleted what only its own covered, and a device that recovered
    /// from the newer one reported the gap for good (seed 12251). GC now
    /// waits until it verifies.
    #[tokio::test]
    async fn gc_waits_for_a_newer_checkpoint_beyond_the_drift_bound() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 3);
        a.push().await.unwrap();
        let own = a.checkpoint().await.unwrap();
        let drift = i64::try_from(bae_hlc::DEFAULT_MAX_DRIFT_MS).unwrap();
        let held = bucket.forge(a.device(), drift + 60_000, vec![]).await;
        let report = a
            .gc(crate::service::now_ms(), GC_GRACE, true)
            .await
            .unwrap();
        assert_eq!(report.checkpoint.as_deref(), Some(own.key.as_str()));
        assert_eq!(report.held_by_newer.as_deref(), Some(held.as_str()));
        assert_eq!((report.ops_deleted, report.checkpoints_deleted), (0, 0));
        assert_eq!(batches_in(bucket.store.as_ref()).await, 3);
    }

    /// Z's own checkpoint covers Y up to 3, but W's newer one (which a new
    /// device starts from) only up to 2: Z's GC must not delete Y's batch
    /// 3, or a device starting from W's checkpoint never gets it.
    /// (Found by review: GC on the device's own older checkpoint.)
    #[tokio::test]
    async fn gc_never_deletes_what_the_newest_checkpoint_lacks() {
        let bucket = Bucket::new();
        let y = bucket.device("y", 2);
        y.push().await.unwrap();
        let w = bucket.device("w", 0);
        let z = bucket.device("z", 0);
        w.pull().await.unwrap();
        let head2_key = layout::heads_key(&y.device(), 2);
        let head2 = bucket.store.get(&head2_key, u64::MAX).await.unwrap();
        import(&y, 9, 0).await;
        y.push().await.unwrap();
        z.pull().await.unwrap();
        let cz = z.checkpoint().await.unwrap();
        // W writes its checkpoint while the LIST still shows Y's head 2.
        let head3_key = layout::heads_key(&y.device(), 3);
        let head3 = bucket.store.get(&head3_key, u64::MAX).await.unwrap();
        bucket.store.delete(&head3_key).await.unwrap();
        bucket.store.put(&head2_key, &head2).await.unwrap();
        let cw = w.checkpoint().await.unwrap();
        bucket.store.delete(&head2_key).await.unwrap();
        bucket.store.put(&head3_key, &head3).await.unwrap();
        assert!(cw.key > cz.key);
        let gc = z
            .gc(crate::service::now_ms(), GC_GRACE, true)
            .await
            .unwrap();
        assert_eq!(gc.checkpoint.as_deref(), Some(cz.key.as_str()));
        assert!(bucket
            .store
            .exists(&layout::ops_key(&y.device(), 3))
            .await
            .unwrap());
        let n = bucket.device("n", 0);
        assert_eq!(
            n.bootstrap_from_checkpoint().await.unwrap().unwrap().key,
            cw.key
        );
        let r = n.pull().await.unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(dump(&n).await, dump(&y).await);
    }

    /// The grace period runs from when this device wrote the checkpoint, by
    /// its own wall clock: a day later nothing goes, a month later it does.
    #[tokio::test]
    async fn the_grace_period_runs_from_when_the_device_wrote_the_checkpoint() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 2);
        a.checkpoint().await.unwrap();
        let now = crate::service::now_ms();
        let soon = a.gc(now + DAY_MS, GC_GRACE, false).await.unwrap();
        assert!(soon.grace_left_ms.is_some_and(|l| l > 28 * DAY_MS));
        assert_eq!(batches_in(bucket.store.as_ref()).await, 2);
        let later = a.gc(now + 31 * DAY_MS, GC_GRACE, false).await.unwrap();
        assert_eq!((later.grace_left_ms, later.ops_deleted), (None, 2));
    }

    /// The bucket host rolls b's head back after a's checkpoint covered b's
    /// newest batch: a's GC refuses to delete batches no head vouches for.
    #[tokio::test]
    async fn gc_refuses_a_checkpoint_whose_cursors_exceed_the_heads() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let b = bucket.device("b", 2);
        b.push().await.unwrap();
        a.pull().await.unwrap();
        a.checkpoint().await.unwrap();
        let store = &bucket.store;
        let newest = layout::heads_key(&b.device(), 2);
        let head = store.get(&newest, u64::MAX).await.unwrap();
        store.delete(&newest).await.unwrap();
        // An older head of b, as the host could have kept it.
        store
            .put(&layout::heads_key(&b.device(), 1), &head)
            .await
            .unwrap();
        let err = a
            .gc(crate::service::now_ms(), GC_GRACE, true)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("cursor for device {}", b.device())),
            "{err}"
        );
        assert_eq!(batches_in(store.as_ref()).await, 3, "nothing was deleted");
    }
}
