//! Applying batches: one batch in one transaction, and a whole pull with
//! chronological order and retry of batches whose parents had not arrived.

use crate::apply::{Applier, ApplyStats};
use crate::error::MergeError;
use crate::kept::{self, KeptReport};
use bae_hlc::DeviceId;
use bae_oplog::{validate, Batch, BatchSeq, OpRecorder};
use std::collections::{BTreeSet, HashMap};

/// Enough cached statements for every table's shapes plus the stamp and
/// parking statements, so the merge never re-prepares in a loop.
const STATEMENT_CACHE: usize = 128;

/// Applies one remote batch in one SQLite transaction: all of it or none.
///
/// Validates every op against the recorder's sync schema first, holds the
/// batch back if its newest timestamp is beyond the clock's drift bound,
/// folds this device's own recent writes into the stamps, applies the ops
/// in their recorded order under the merge rules (crate docs), then
/// advances the clock past the batch and persists it in the same
/// transaction. Applying a batch again changes nothing.
pub fn apply_batch(rec: &mut OpRecorder, batch: &Batch) -> Result<ApplyStats, MergeError> {
    let span = tracing::debug_span!("merge_batch", device = %batch.device, seq = %batch.seq, ops = batch.ops.len());
    let _entered = span.enter();
    let schema = rec.schema();
    validate(batch, schema)?;
    let newest = batch.max_hlc();
    let (conn, clock, local_device) = rec.sync_parts();
    if let Some(t) = newest {
        clock.check_drift(t).map_err(MergeError::from_clock)?;
    }
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let stats = {
        let mut applier = Applier::new(&tx, schema)?;
        applier.fold_local(local_device)?;
        if batch.schema_version > schema.version() {
            kept::note_newer_writer(&tx, batch.device, batch.schema_version)?;
        }
        for op in &batch.ops {
            applier.apply_op(op, batch.device, batch.schema_version)?;
        }
        applier.settle()?;
        applier.stats
    };
    if let Some(t) = newest {
        bae_oplog::catch_up_clock(&tx, clock)?;
        clock.receive(t).map_err(MergeError::from_clock)?;
        bae_oplog::persist_clock(&tx, clock)?;
    }
    tx.commit()?;
    tracing::debug!(?stats, "applied");
    Ok(stats)
}

/// Folds this device's own recent writes into the merge state in a
/// transaction of its own (done by every [`apply_batch`] too; [`apply_pull`]
/// does it even when nothing arrived).
pub fn fold_local(rec: &mut OpRecorder) -> Result<(), MergeError> {
    let schema = rec.schema();
    let (conn, _, local_device) = rec.sync_parts();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut applier = Applier::new(&tx, schema)?;
    applier.fold_local(local_device)?;
    applier.settle()?;
    tx.commit()?;
    Ok(())
}

/// A batch that did not apply, kept (not dropped) with the reason.
#[derive(Debug)]
pub struct HeldBatch {
    /// The batch, untouched, to try again in a later pull.
    pub batch: Batch,
    /// Why it did not apply.
    pub reason: MergeError,
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct PullReport {
    /// Batches applied (or found already applied), in the order applied.
    pub applied: Vec<(DeviceId, BatchSeq)>,
    /// Batches not applied: still missing a parent after every retry, too far
    /// ahead of our clock, or invalid.
    pub held: Vec<HeldBatch>,
    /// Totals over the applied batches.
    pub stats: ApplyStats,
    /// What this device kept of newer writers' batches and applied now
    /// (after an upgrade, or once a kept op's parent arrived).
    pub kept: KeptReport,
}

/// Applies the batches of one pull: sorted chronologically (oldest op first,
/// then device, then seq), each in its own transaction; batches that fail on
/// a parent or row that has not arrived are retried after the others, in the
/// same order, until a round makes no progress. A device's batches apply in
/// seq order: one that waits or is held holds every later one of its
/// device ([`MergeError::EarlierBatchWaits`]). Whatever still cannot apply
/// is returned in [`PullReport::held`], never dropped.
///
/// Fails if this device's own writes cannot be folded (a database error
/// before any batch is tried), or a batch fails for a reason of the
/// library's rather than its own ([`MergeError::is_local_failure`]).
pub fn apply_pull(rec: &mut OpRecorder, mut batches: Vec<Batch>) -> Result<PullReport, MergeError> {
    let span = tracing::info_span!("merge_pull", batches = batches.len());
    let _entered = span.enter();
    fold_local(rec)?;
    batches.sort_by_key(|b| (b.ops.iter().map(|o| o.hlc).min(), b.device, b.seq));
    // Per device, the seqs of this pull not applied yet. A batch applies
    // only after every earlier one of its device: before, one that waited
    // (an update whose insert had not arrived) let the later ones apply,
    // so the library held writes past the device's cursor, and a revoke,
    // whose cutoffs are the cursors, refused on every other device writes
    // the revoker kept (seed 30086).
    let mut unapplied: HashMap<DeviceId, BTreeSet<BatchSeq>> = HashMap::new();
    for b in &batches {
        unapplied.entry(b.device).or_default().insert(b.seq);
    }
    let mut report = PullReport::default();
    let mut pending = batches;
    loop {
        let mut waiting = Vec::new();
        let before = report.applied.len();
        for batch in pending {
            let earliest = unapplied
                .get(&batch.device)
                .and_then(|seqs| seqs.first())
                .copied();
            if let Some(earlier) = earliest.filter(|s| *s < batch.seq) {
                waiting.push(HeldBatch {
                    batch,
                    reason: MergeError::EarlierBatchWaits { seq: earlier.0 },
                });
                continue;
            }
            match apply_batch(rec, &batch) {
                Ok(stats) => {
                    if let Some(seqs) = unapplied.get_mut(&batch.device) {
                        seqs.remove(&batch.seq);
                    }
                    report.applied.push((batch.device, batch.seq));
                    add(&mut report.stats, stats);
                }
                Err(reason) if reason.is_retryable() => waiting.push(HeldBatch { batch, reason }),
                // Nothing to do with this batch (a locked or failing
                // database): every later one would fail alike, so stop once
                // instead of holding each. Batches applied before stay
                // applied; applying them again changes nothing.
                Err(reason) if reason.is_local_failure() => return Err(reason),
                Err(reason) => {
                    tracing::warn!(device = %batch.device, seq = %batch.seq, %reason, "batch held");
                    report.held.push(HeldBatch { batch, reason });
                }
            }
        }
        if waiting.is_empty() || report.applied.len() == before {
            for held in &waiting {
                tracing::info!(device = %held.batch.device, seq = %held.batch.seq, reason = %held.reason, "batch waits for a later pull");
            }
            report.held.extend(waiting);
            // Kept ops wait on parents these batches may have brought.
            report.kept = kept::apply_kept(rec)?;
            return Ok(report);
        }
        pending = waiting.into_iter().map(|h| h.batch).collect();
    }
}

fn add(total: &mut ApplyStats, s: ApplyStats) {
    total.ops += s.ops;
    total.fields_won += s.fields_won;
    total.fields_lost += s.fields_lost;
    total.rows_inserted += s.rows_inserted;
    total.rows_deleted += s.rows_deleted;
    total.ops_on_absent_rows += s.ops_on_absent_rows;
    total.ops_kept += s.ops_kept;
}
