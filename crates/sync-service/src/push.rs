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
use crate::service::{batch_place, head_place, now_ms, store_device, SyncService};
use bae_hlc::DeviceId;
use bae_oplog::{batch_ops, encode_batch, Batch, BatchHash, BatchSeq, OpRecorder};
use bae_storage_s3::layout;
use rusqlite::{params, OptionalExtension};

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Batches uploaded.
    pub batches: usize,
    /// The newest batch now in the bucket.
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
        let _e = span.enter();
        let device = self.device;
        let encoded = self
            .with_db(move |rec| encode_unpushed(rec, device))
            .await?;
        let Some(last) = encoded.last() else {
            return Ok(PushReport::default());
        };
        let store_dev = store_device(device)?;
        for batch in &encoded {
            let key = layout::ops_key(&store_dev, batch.seq.0);
            let sealed = self.seal(&batch_place(device, batch.seq.0), &batch.bytes)?;
            self.store.put(&key, &sealed).await?;
            tracing::debug!(%key, bytes = sealed.len(), "pushed batch");
        }
        let head_seq = last.seq.0;
        let head_hash = last.hash;
        self.write_head(head_seq, Some(head_hash)).await?;
        let seqs: Vec<(BatchSeq, BatchHash)> = encoded.iter().map(|b| (b.seq, b.hash)).collect();
        let n = seqs.len();
        self.with_db(move |rec| {
            let (conn, _, _) = rec.sync_parts();
            let tx = conn.transaction()?;
            for (seq, hash) in &seqs {
                bae_oplog::mark_pushed(&tx, *seq)?;
                tx.execute(
                    "INSERT OR REPLACE INTO batch_hashes (batch_id, hash) VALUES (?1, ?2)",
                    params![seq.0 as i64, hash.0.as_slice()],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
        tracing::info!(batches = n, head = head_seq, "push done");
        Ok(PushReport {
            batches: n,
            head: Some(head_seq),
        })
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
                    "SELECT device_id, applied_seq FROM sync_cursors ORDER BY device_id",
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
        let store_dev = store_device(device)?;
        let key = layout::heads_key(&store_dev, seq);
        let sealed = self.seal(&head_place(device, seq), &head.encode())?;
        self.store.put(&key, &sealed).await?;
        for old in self.store.list(&layout::heads_prefix(&store_dev)).await? {
            if old != key {
                self.store.delete(&old).await?;
            }
        }
        Ok(())
    }
}

/// Encodes the unpushed batches in order, chaining each to its predecessor.
fn encode_unpushed(rec: &mut OpRecorder, device: DeviceId) -> Result<Vec<Encoded>, SyncError> {
    let (conn, _, _) = rec.sync_parts();
    let seqs = bae_oplog::unpushed_batches(conn)?;
    let mut out = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let prev = match out.last() {
            Some(Encoded { hash, .. }) => Some(*hash),
            None => stored_hash(conn, seq.0.saturating_sub(1))?,
        };
        let batch = Batch {
            device,
            seq,
            prev,
            ops: batch_ops(conn, seq)?,
        };
        let bytes = encode_batch(&batch).map_err(bae_oplog::OplogError::from)?;
        let hash = BatchHash::of(&bytes);
        out.push(Encoded { seq, bytes, hash });
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
            "SELECT hash FROM batch_hashes WHERE batch_id = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .optional()?;
    Ok(bytes
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .map(BatchHash))
}
