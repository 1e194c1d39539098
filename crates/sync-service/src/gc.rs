//! Garbage collection: deleting what the newest checkpoint covers.
//!
//! Write order: a batch object is deleted only after a checkpoint whose
//! cursor for its device includes it is in the bucket, verified, and older
//! than the grace period (30 days; `compact_now` skips the wait for users
//! who know every device is online). A device that was offline longer finds
//! its next batch missing and recovers from the checkpoint (`bootstrap.rs`).
//! The newest checkpoint is never deleted; older ones go once a newer one
//! is past the grace period. Locally, op-log rows of pushed batches the
//! checkpoint covers are pruned after their stamps are folded;
//! `bae_sync_batch_hashes` keeps every chain link.

use crate::error::SyncError;
use crate::service::SyncService;
use bae_hlc::Timestamp;
use bae_oplog::BatchSeq;
use bae_storage_s3::layout;
use std::time::Duration;

/// How long a checkpoint must have existed before what it covers is deleted.
pub const GC_GRACE: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// What a GC did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// The newest verified checkpoint, if any.
    pub checkpoint: Option<String>,
    /// When it is still inside the grace period: milliseconds left.
    pub grace_left_ms: Option<i64>,
    /// Batch objects deleted.
    pub ops_deleted: usize,
    /// Older checkpoints deleted.
    pub checkpoints_deleted: usize,
    /// Local op-log rows pruned.
    pub local_ops_pruned: usize,
    /// Newer checkpoints that did not open or verify (left in place).
    pub rejected: Vec<String>,
}

impl SyncService {
    /// Deletes batch objects and older checkpoints covered by the newest
    /// verified checkpoint once it is older than `grace` at `now_ms` (Unix
    /// ms; injectable for tests), or at once with `compact_now`.
    pub async fn gc(
        &self,
        now_ms: i64,
        grace: Duration,
        compact_now: bool,
    ) -> Result<GcReport, SyncError> {
        let (opened, rejected) = self.newest_checkpoint().await?;
        let mut report = GcReport {
            rejected: rejected.iter().map(ToString::to_string).collect(),
            ..GcReport::default()
        };
        let Some(ck) = opened else {
            return Ok(report);
        };
        report.checkpoint = Some(ck.key.clone());
        let age = now_ms.saturating_sub(Timestamp::from_u64(ck.header.hlc).unix_millis());
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        if !compact_now && age < grace_ms {
            report.grace_left_ms = Some(grace_ms - age);
            return Ok(report);
        }
        for c in &ck.header.cursors {
            for key in self.store.list(&layout::ops_prefix(&c.device_id())).await? {
                if layout::parse_ops_key(&key).is_ok_and(|(_, seq)| seq <= c.seq) {
                    self.store.delete(&key).await?;
                    report.ops_deleted += 1;
                    self.check_cancelled()?;
                }
            }
        }
        let newest = layout::parse_checkpoint_key(&ck.key)
            .map_err(|e| SyncError::invalid(ck.key.clone(), e))?;
        for key in self.store.list(layout::CHECKPOINTS_PREFIX).await? {
            if layout::parse_checkpoint_key(&key).is_ok_and(|id| id < newest) {
                self.store.delete(&key).await?;
                report.checkpoints_deleted += 1;
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
}
