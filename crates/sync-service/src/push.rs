//! Push: unpushed batches in order -> encode -> encrypt -> `ops/{device}/{seq}`
//! -> `heads/{device}/{seq}` -> mark pushed.
//!
//! Write order (restic's rule: what is referenced before what references it):
//! a batch object is written before the head that names it, and the local
//! batch is marked pushed only after the head. A crash anywhere leaves the
//! batch unpushed and the next push writes the same bytes again (the
//! encoding is deterministic, so the chain hash is the same).

use crate::error::SyncError;
use crate::head::{Head, HEAD_VERSION};
use crate::images::{forget_uploaded, queue_images};
use crate::service::{batch_place, head_place, now_ms, SyncService, MAX_BATCH_OBJECT_BYTES};
use bae_hlc::DeviceId;
use bae_oplog::{batch_ops, encode_batch, Batch, BatchHash, BatchSeq, OpRecorder, SyncSchema};
use bae_storage_s3::{layout, StoreError};
use rusqlite::{params, OptionalExtension};
use tracing::Instrument;

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Batches uploaded.
    pub batches: usize,
    /// The newest batch now in the bucket.
    pub head: Option<u64>,
    /// Images uploaded (before the batches that reference them).
    pub images: usize,
    /// Queued images whose bytes are not on this device yet; still queued.
    pub images_waiting: usize,
}

/// What `push --repair` found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// This device's pushed batches checked in the bucket.
    pub checked: usize,
    /// Batches that were missing or did not verify, re-uploaded.
    pub repaired: Vec<u64>,
    /// Batches gone from the bucket and from the local op log (a checkpoint
    /// covers them); nothing to do.
    pub covered: usize,
    /// Batches that cannot be rebuilt from the local op log, with why.
    pub unrepairable: Vec<(u64, String)>,
    /// The head rewritten, if this device has pushed anything.
    pub head: Option<u64>,
}

/// A local batch ready to upload: its encoding and hash.
struct Encoded {
    seq: BatchSeq,
    bytes: Vec<u8>,
    hash: BatchHash,
}

impl SyncService {
    /// Pushes every unpushed batch, then the head.
    pub async fn push(&self) -> Result<PushReport, SyncError> {
        let span = tracing::info_span!("push", device = %self.device);
        async move {
            let device = self.device;
            let (encoded, newest) = self
                .with_db(move |rec| {
                    let encoded = encode_unpushed(rec, device)?;
                    Ok((encoded, bae_oplog::last_batch(rec.sync_parts().0)?))
                })
                .await?;
            // Images first: the ops that reference them must never be in the
            // bucket without them.
            let through = encoded.last().map_or(newest.0, |b| b.seq.0);
            let images = self.upload_queued_images(through).await?;
            let Some(last) = encoded.last() else {
                if !images.uploaded.is_empty() {
                    let uploaded = images.uploaded.clone();
                    self.with_db(move |rec| forget_uploaded(rec.sync_parts().0, &uploaded))
                        .await?;
                }
                return Ok(PushReport {
                    images: images.uploaded.len(),
                    images_waiting: images.skipped,
                    ..PushReport::default()
                });
            };
            for batch in &encoded {
                let key = layout::ops_key(&device, batch.seq.0);
                let sealed = self.seal(&batch_place(device, batch.seq.0), &batch.bytes)?;
                self.store.put(&key, &sealed).await?;
                tracing::debug!(%key, bytes = sealed.len(), "pushed batch");
                // A safe point: batches without their head are invisible,
                // and the next push uploads the same bytes again.
                self.check_cancelled()?;
            }
            let head_seq = last.seq.0;
            let head_hash = last.hash;
            self.write_head(head_seq, Some(head_hash)).await?;
            let seqs: Vec<(BatchSeq, BatchHash)> = encoded.iter().map(|b| (b.seq, b.hash)).collect();
            let n = seqs.len();
            let uploaded = images.uploaded.clone();
            self.with_db(move |rec| {
                let (conn, _, _) = rec.sync_parts();
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for (seq, hash) in &seqs {
                    bae_oplog::mark_pushed(&tx, *seq)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO bae_sync_batch_hashes (batch_id, hash) VALUES (?1, ?2)",
                        params![seq.0 as i64, hash.0.as_slice()],
                    )?;
                }
                forget_uploaded(&tx, &uploaded)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
            tracing::info!(
                batches = n,
                head = head_seq,
                images = images.uploaded.len(),
                "push done"
            );
            Ok(PushReport {
                batches: n,
                head: Some(head_seq),
                images: images.uploaded.len(),
                images_waiting: images.skipped,
            })
        }
        .instrument(span)
        .await
    }

    /// `push --repair`: checks every batch this device has pushed against
    /// the bucket (present, opens under the library key at its place, and
    /// hashes to what was pushed), re-uploads the ones that fail from the
    /// local op log (the encoding is deterministic, so the chain is
    /// unchanged), then rewrites the head.
    pub async fn repair(&self) -> Result<RepairReport, SyncError> {
        let span = tracing::info_span!("repair", device = %self.device);
        async move {
            let device = self.device;
            let pushed = self
                .with_db(|rec| pushed_hashes(rec.sync_parts().0))
                .await?;
            let mut report = RepairReport::default();
            for &(seq, hash) in &pushed {
                report.checked += 1;
                let key = layout::ops_key(&device, seq);
                let problem = match self.store.get(&key, MAX_BATCH_OBJECT_BYTES).await {
                    Ok(sealed) => self.verify_own(&key, seq, hash, &sealed).err(),
                    Err(e) if e.is_not_found() => Some("missing".to_owned()),
                    // Replaced by something no batch can be: damaged too.
                    Err(StoreError::TooLarge { limit, .. }) => {
                        Some(format!("is larger than the {limit}-byte limit"))
                    }
                    Err(e) => return Err(e.into()),
                };
                let Some(problem) = problem else { continue };
                let rebuilt = self
                    .with_db(move |rec| {
                        let schema = rec.schema();
                        let conn = rec.sync_parts().0;
                        let prev = stored_hash(conn, seq.saturating_sub(1))?;
                        Ok(encode_one(conn, schema, device, BatchSeq(seq), prev)?.map(|(e, _)| e))
                    })
                    .await?;
                match rebuilt {
                    None if problem == "missing" => report.covered += 1,
                    None => report.unrepairable.push((
                        seq,
                        format!("{key} {problem}; its ops are no longer in the local op log"),
                    )),
                    Some(b) if b.hash != hash => report.unrepairable.push((
                        seq,
                        format!(
                            "{key} {problem}; the local op log no longer encodes to the pushed batch"
                        ),
                    )),
                    Some(b) => {
                        let sealed = self.seal(&batch_place(device, seq), &b.bytes)?;
                        self.store.put(&key, &sealed).await?;
                        tracing::info!(%key, %problem, "re-uploaded batch");
                        report.repaired.push(seq);
                    }
                }
            }
            if let Some(&(seq, hash)) = pushed.last() {
                self.write_head(seq, Some(hash)).await?;
                report.head = Some(seq);
            }
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Whether a sealed object is exactly this device's pushed batch `seq`.
    fn verify_own(
        &self,
        key: &str,
        seq: u64,
        hash: BatchHash,
        sealed: &[u8],
    ) -> Result<(), String> {
        let plain = self
            .open(key, &batch_place(self.device, seq), sealed)
            .map_err(|e| format!("does not open ({e})"))?;
        if BatchHash::of(&plain) == hash {
            Ok(())
        } else {
            Err("does not match the batch pushed".to_owned())
        }
    }

    /// Writes this device's head for batch `seq` and removes older head
    /// objects (after the new one is in place, so a head always exists).
    pub(crate) async fn write_head(
        &self,
        seq: u64,
        hash: Option<BatchHash>,
    ) -> Result<(), SyncError> {
        let device = self.device;
        let (hlc, cursors) = self
            .with_db(|rec| {
                let hlc = rec.clock().last();
                let (conn, _, _) = rec.sync_parts();
                let mut stmt = conn.prepare(
                    "SELECT device_id, applied_seq FROM bae_sync_cursors ORDER BY device_id",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut cursors = Vec::new();
                for row in rows {
                    let (d, s) = row?;
                    if let Ok(d) = d.parse::<DeviceId>() {
                        cursors.push((d, s as u64));
                    }
                }
                Ok((hlc, cursors))
            })
            .await?;
        let head = Head {
            version: HEAD_VERSION,
            device,
            seq,
            hash,
            hlc,
            pushed_at_ms: now_ms(),
            cursors,
        };
        let key = layout::heads_key(&device, seq);
        let sealed = self.seal(&head_place(device, seq), &head.encode())?;
        self.store.put(&key, &sealed).await?;
        for old in self.store.list(&layout::heads_prefix(&device)).await? {
            if old != key {
                self.store.delete(&old).await?;
            }
        }
        Ok(())
    }
}

/// Encodes the unpushed batches in order, chaining each to its predecessor.
/// Queues, in the same transaction, the images those batches insert or
/// update, so their bytes go up before the batches do.
fn encode_unpushed(rec: &mut OpRecorder, device: DeviceId) -> Result<Vec<Encoded>, SyncError> {
    let schema = rec.schema();
    let (conn, _, _) = rec.sync_parts();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seqs = bae_oplog::unpushed_batches(&tx)?;
    let mut out: Vec<Encoded> = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let prev = match out.last() {
            Some(Encoded { hash, .. }) => Some(*hash),
            None => stored_hash(&tx, seq.0.saturating_sub(1))?,
        };
        if let Some((encoded, batch)) = encode_one(&tx, schema, device, seq, prev)? {
            queue_images(&tx, schema, &batch)?;
            out.push(encoded);
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Encodes one local batch chained to `prev`; `None` if the op log no
/// longer holds it.
fn encode_one(
    conn: &rusqlite::Connection,
    schema: &SyncSchema,
    device: DeviceId,
    seq: BatchSeq,
    prev: Option<BatchHash>,
) -> Result<Option<(Encoded, Batch)>, SyncError> {
    let ops = batch_ops(conn, schema, seq)?;
    if ops.is_empty() {
        return Ok(None);
    }
    let batch = Batch {
        device,
        seq,
        prev,
        ops,
    };
    let bytes = encode_batch(&batch).map_err(bae_oplog::OplogError::from)?;
    let hash = BatchHash::of(&bytes);
    Ok(Some((Encoded { seq, bytes, hash }, batch)))
}

/// Every batch this device has pushed, with its hash, oldest first.
fn pushed_hashes(conn: &rusqlite::Connection) -> Result<Vec<(u64, BatchHash)>, SyncError> {
    let mut stmt =
        conn.prepare("SELECT batch_id, hash FROM bae_sync_batch_hashes ORDER BY batch_id")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, hash) = row?;
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            out.push((seq as u64, BatchHash(hash)));
        }
    }
    Ok(out)
}

/// The hash recorded for a pushed local batch.
pub(crate) fn stored_hash(
    conn: &rusqlite::Connection,
    seq: u64,
) -> Result<Option<BatchHash>, SyncError> {
    if seq == 0 {
        return Ok(None);
    }
    let bytes: Option<Vec<u8>> = conn
        .query_row(
            "SELECT hash FROM bae_sync_batch_hashes WHERE batch_id = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(BatchHash))
}
