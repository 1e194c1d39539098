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
use crate::progress::Stage;
use crate::service::{batch_place, head_place, now_ms, SyncService, MAX_BATCH_OBJECT_BYTES};
use bae_hlc::{DeviceId, Timestamp};
use bae_membership::SignedKind;
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
    /// Batches of this device found in the bucket above its local state
    /// (its database went back in time) and applied here again; its own
    /// unpushed batches were renumbered to follow them.
    pub retaken: Vec<u64>,
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
    /// Images this device holds whose bucket object was missing or did not
    /// open, re-uploaded.
    pub images_repaired: Vec<String>,
    /// Batches of this device found in the bucket above its local state
    /// (its database went back in time) and applied here again.
    pub retaken: Vec<u64>,
}

/// A local batch ready to upload: its encoding and hash.
pub(crate) struct Encoded {
    seq: BatchSeq,
    bytes: Vec<u8>,
    pub(crate) hash: BatchHash,
    /// The previous batch's hash (signed in the envelope).
    prev: Option<BatchHash>,
    /// The batch's newest op HLC (signed: membership is checked at it).
    hlc: Timestamp,
}

impl SyncService {
    /// Pushes every unpushed batch, then the head.
    pub async fn push(&self) -> Result<PushReport, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        self.push_locked().await
    }

    /// [`Self::push`] for a caller that holds the flight lock.
    pub(crate) async fn push_locked(&self) -> Result<PushReport, SyncError> {
        let span = tracing::info_span!("push", device = %self.device);
        async move {
            let device = self.device;
            self.look_for_keys_once().await?;
            // Before any upload: batches this device pushed before its
            // database went back in time must never be replaced.
            let retaken = self.settle_rollback().await?;
            // Only what is unpushed now: batches recorded while this push
            // runs wait for the next one (a busy writer cannot keep it going).
            let (through, total) = self
                .with_db(|rec| {
                    let conn = rec.sync_parts().0;
                    let unpushed = bae_oplog::unpushed_batches(conn)?.len() as u64;
                    Ok((bae_oplog::last_batch(conn)?, unpushed))
                })
                .await?;
            let mut report = PushReport {
                retaken,
                ..PushReport::default()
            };
            // Slice by slice, so memory holds one slice's encodings however
            // long the backlog: each slice is uploaded, named by a head and
            // marked pushed before the next is read.
            let mut after = BatchSeq(0);
            loop {
                // Images queued at or below the last slice were tried with it.
                let images_after = after.0;
                let slice = self.push_slice;
                let encoded = self
                    .with_db(move |rec| encode_unpushed(rec, device, after, through, slice))
                    .await?;
                after = encoded.last().map_or(after, |b| b.seq);
                if encoded.is_empty() && report.head.is_some() {
                    break;
                }
                if report.head.is_none() && !encoded.is_empty() {
                    self.sync_point().await?;
                }
                if !self
                    .push_slice(encoded, images_after, through, total, &mut report)
                    .await?
                {
                    report.head = self.repair_stale_head().await?;
                    break;
                }
            }
            tracing::info!(
                batches = report.batches,
                head = report.head,
                images = report.images,
                "push done"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Uploads one slice of encoded batches: the images queued above
    /// `images_after` that they reference first, then the batches, then a
    /// head naming the last, then marks them pushed. With no batches,
    /// uploads the images queued through `through` and returns false.
    async fn push_slice(
        &self,
        encoded: Vec<Encoded>,
        images_after: u64,
        through: BatchSeq,
        total: u64,
        report: &mut PushReport,
    ) -> Result<bool, SyncError> {
        let device = self.device;
        // Images first: the ops that reference them must never be in the
        // bucket without them.
        let images_through = encoded.last().map_or(through.0, |b| b.seq.0);
        let images = self
            .upload_queued_images(images_after, images_through)
            .await?;
        report.images += images.uploaded.len();
        report.images_waiting += images.skipped;
        let uploaded = images.uploaded;
        let Some(last) = encoded.last() else {
            if !uploaded.is_empty() {
                self.with_db(move |rec| forget_uploaded(rec.sync_parts().0, &uploaded))
                    .await?;
            }
            return Ok(false);
        };
        let (head_seq, head_hash) = (last.seq.0, last.hash);
        for (i, batch) in encoded.iter().enumerate() {
            self.report(Stage::Push, report.batches as u64 + i as u64, total);
            let key = layout::ops_key(&device, batch.seq.0);
            let sealed = self.seal_batch(batch)?;
            self.store.put(&key, &sealed).await?;
            tracing::debug!(%key, bytes = sealed.len(), "pushed batch");
            // A safe point: batches without their head are invisible,
            // and the next push uploads the same bytes again.
            self.check_cancelled()?;
        }
        let seqs: Vec<(BatchSeq, BatchHash)> = encoded.iter().map(|b| (b.seq, b.hash)).collect();
        drop(encoded);
        report.batches += seqs.len();
        self.report(Stage::Push, report.batches as u64, total);
        self.write_head(head_seq, Some(head_hash)).await?;
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
        report.head = Some(head_seq);
        Ok(true)
    }

    /// `push --repair`: checks every batch this device has pushed against
    /// the bucket (present, opens under the library key at its place, and
    /// hashes to what was pushed), re-uploads the ones that fail from the
    /// local op log (the encoding is deterministic given the schema version
    /// the batch was pushed under, older versions tried after an update, so
    /// the chain is unchanged), then rewrites the head.
    pub async fn repair(&self) -> Result<RepairReport, SyncError> {
        let span = tracing::info_span!("repair", device = %self.device);
        async move {
            let _one_at_a_time = self.flight.lock().await;
            let device = self.device;
            // A rollback is found from this device's heads in the bucket:
            // look now rather than rely on an earlier pull.
            let own = self.list_own_heads().await?;
            self.listed_own_heads(own);
            let retaken = self.settle_rollback().await?;
            let pushed = self
                .with_db(|rec| pushed_hashes(rec.sync_parts().0))
                .await?;
            let mut report = RepairReport {
                retaken,
                ..RepairReport::default()
            };
            for &(seq, hash) in &pushed {
                report.checked += 1;
                let key = layout::ops_key(&device, seq);
                let problem = match self.store.get(&key, MAX_BATCH_OBJECT_BYTES).await {
                    Ok(sealed) => self.verify_own(&key, seq, hash, &sealed).await.err(),
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
                        rebuild_pushed(conn, schema, device, BatchSeq(seq), prev, hash)
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
                        let sealed = self.seal_batch(&b)?;
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
            report.images_repaired = self.repair_images().await?;
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Makes every committed transaction of the library durable before a
    /// push publishes its batches: the library runs `synchronous=NORMAL`
    /// in WAL mode, so a commit is in the `-wal` file but not yet on disk,
    /// and a power loss could take back a batch other devices already
    /// applied (the device would then reuse its number for other ops).
    /// One fsync of the `-wal` file here covers every commit before it,
    /// whichever connection made it (the page cache is the file's); what a
    /// checkpoint moved into the main file was synced by the checkpoint.
    /// The recording path keeps `NORMAL` and pays nothing; a push pays one
    /// fsync, far below its uploads. The main file is never opened here:
    /// closing a second descriptor of it would drop SQLite's POSIX locks.
    async fn sync_point(&self) -> Result<(), SyncError> {
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || {
            let mut wal = path.into_os_string();
            wal.push("-wal");
            let wal = std::path::PathBuf::from(wal);
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&wal)
            {
                Ok(f) => f.sync_all().map_err(|e| SyncError::io(&wal, e)),
                // No WAL: every commit is in the main file, synced.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(SyncError::io(&wal, e)),
            }
        })
        .await?
    }

    /// Seals an encoded batch in an envelope signed by this member.
    fn seal_batch(&self, batch: &Encoded) -> Result<Vec<u8>, SyncError> {
        self.seal_signed(
            &batch_place(self.device, batch.seq.0),
            SignedKind::Batch,
            batch.hlc,
            batch.prev,
            batch.bytes.clone(),
        )
    }

    /// Whether a sealed object is exactly this device's pushed batch `seq`,
    /// signed by this member.
    async fn verify_own(
        &self,
        key: &str,
        seq: u64,
        hash: BatchHash,
        sealed: &[u8],
    ) -> Result<(), String> {
        let plain = self
            .open(key, &batch_place(self.device, seq), sealed)
            .map_err(|e| format!("does not open ({e})"))?;
        let verified = self
            .verify_signed(key, SignedKind::Batch, self.device, seq, sealed, plain)
            .await
            .map_err(|e| format!("does not verify ({e})"))?;
        if *verified.author() != self.member.public_key() {
            return Err("is signed by another member".to_owned());
        }
        if BatchHash::of(verified.body()) == hash {
            Ok(())
        } else {
            Err("does not match the batch pushed".to_owned())
        }
    }

    /// With nothing new to push: if the last LIST of `heads/` (made by
    /// pull, so this costs no request of its own) showed this device's head
    /// older than its newest pushed batch, or missing, rewrites it, so the
    /// newest batch does not stay invisible until the next local write.
    /// Returns the seq of the head written, if any.
    async fn repair_stale_head(&self) -> Result<Option<u64>, SyncError> {
        let Some(seen) = self.own_heads_seen() else {
            return Ok(None);
        };
        let (pushed, recorded) = self
            .with_db(|rec| {
                let conn = rec.sync_parts().0;
                Ok((newest_pushed(conn)?, bae_oplog::last_batch(conn)?.0))
            })
            .await?;
        // A head above every batch this device ever recorded is not its
        // own (garbage put there): it would hide the real one.
        let foreign = seen.iter().any(|s| *s > recorded);
        let newest_real = seen.iter().copied().filter(|s| *s <= recorded).max();
        match pushed {
            Some((seq, hash)) if foreign || newest_real.is_none_or(|s| s < seq) => {
                tracing::warn!(
                    ?seen,
                    seq,
                    "own head stale, missing or shadowed; rewriting it"
                );
                self.write_head(seq, Some(hash)).await?;
                Ok(Some(seq))
            }
            _ => Ok(None),
        }
    }

    /// Writes this device's head for batch `seq` and removes older head
    /// objects (after the new one is in place, so a head always exists;
    /// never a newer one).
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
            schema_version: self.schema.version(),
        };
        let key = layout::heads_key(&device, seq);
        let sealed = self.seal_signed(
            &head_place(device, seq),
            SignedKind::Head,
            head.hlc,
            hash,
            head.encode(),
        )?;
        self.store.put(&key, &sealed).await?;
        // Older heads go, and heads above every batch this device recorded
        // (not its own: garbage that would shadow this one). A newer head
        // an overlapping push (another process on the same library) wrote
        // stays.
        let recorded = self
            .with_db(|rec| Ok(bae_oplog::last_batch(rec.sync_parts().0)?.0))
            .await?;
        let mut deleted = Vec::new();
        for old in self.store.list(&layout::heads_prefix(&device)).await? {
            let Ok((_, s)) = layout::parse_heads_key(&old) else {
                continue;
            };
            if s < seq || s > recorded {
                self.store.delete(&old).await?;
                deleted.push(s);
            }
        }
        self.note_own_head(seq, &deleted);
        Ok(())
    }
}

/// How much of a backlog one push slice encodes and holds: at most this
/// many batches, and no more batches once this many encoded bytes are
/// held (a slice always takes one).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PushSlice {
    pub(crate) batches: usize,
    pub(crate) bytes: usize,
}

impl Default for PushSlice {
    fn default() -> Self {
        // Small enough that the allocator's per-thread arenas, each
        // keeping the largest slice it saw, stay small (8 MiB slices took
        // a 10,000-album push from 28 MB to 59 MB, flat with one arena).
        PushSlice {
            batches: 1024,
            bytes: 2 << 20,
        }
    }
}

/// Encodes the oldest unpushed batches above `after` and up to `through`,
/// one slice of them, in order, chaining each to its predecessor. Queues,
/// in the same transaction, the images those batches insert or update, so
/// their bytes go up before the batches do.
fn encode_unpushed(
    rec: &mut OpRecorder,
    device: DeviceId,
    after: BatchSeq,
    through: BatchSeq,
    slice: PushSlice,
) -> Result<Vec<Encoded>, SyncError> {
    let schema = rec.schema();
    let (conn, _, _) = rec.sync_parts();
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let seqs = bae_oplog::unpushed_batches_after(&tx, after, slice.batches)?;
    let mut out: Vec<Encoded> = Vec::new();
    let mut bytes = 0usize;
    for seq in seqs.into_iter().take_while(|s| *s <= through) {
        if out.len() >= slice.batches || bytes >= slice.bytes {
            break;
        }
        let prev = match out.last() {
            Some(Encoded { hash, .. }) => Some(*hash),
            None => stored_hash(&tx, seq.0.saturating_sub(1))?,
        };
        if let Some((encoded, batch)) = encode_one(&tx, schema, device, seq, prev)? {
            queue_images(&tx, schema, &batch)?;
            bytes += encoded.bytes.len();
            out.push(encoded);
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Encodes one local batch chained to `prev`; `None` if the op log no
/// longer holds it.
pub(crate) fn encode_one(
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
        schema_version: schema.version(),
        device,
        seq,
        prev,
        ops,
    };
    Ok(Some((encode(&batch)?, batch)))
}

/// Rebuilds pushed batch `seq` from the op log as it was pushed (hashing
/// to `pushed`): under the schema version its writer ran then, which may
/// be older than this one (the host updated since; 0 for format 1). When
/// no version matches, the encoding under this one.
fn rebuild_pushed(
    conn: &rusqlite::Connection,
    schema: &SyncSchema,
    device: DeviceId,
    seq: BatchSeq,
    prev: Option<BatchHash>,
    pushed: BatchHash,
) -> Result<Option<Encoded>, SyncError> {
    let Some((current, mut batch)) = encode_one(conn, schema, device, seq, prev)? else {
        return Ok(None);
    };
    for version in (0..schema.version()).rev() {
        if current.hash == pushed {
            break;
        }
        batch.schema_version = version;
        let older = encode(&batch)?;
        if older.hash == pushed {
            return Ok(Some(older));
        }
    }
    Ok(Some(current))
}

fn encode(batch: &Batch) -> Result<Encoded, SyncError> {
    let bytes = encode_batch(batch).map_err(bae_oplog::OplogError::from)?;
    Ok(Encoded {
        seq: batch.seq,
        hash: BatchHash::of(&bytes),
        bytes,
        prev: batch.prev,
        hlc: batch
            .ops
            .iter()
            .map(|op| op.hlc)
            .max()
            .unwrap_or(Timestamp::ZERO),
    })
}

/// This device's newest pushed batch and its hash.
pub(crate) fn newest_pushed(
    conn: &rusqlite::Connection,
) -> Result<Option<(u64, BatchHash)>, SyncError> {
    let row: Option<(i64, Vec<u8>)> = conn
        .query_row(
            "SELECT batch_id, hash FROM bae_sync_batch_hashes ORDER BY batch_id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(row.and_then(|(seq, hash)| {
        let hash = <[u8; 32]>::try_from(hash).ok()?;
        Some((u64::try_from(seq).ok()?, BatchHash(hash)))
    }))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use crate::test_support::{dump, Bucket};

    async fn own_heads(bucket: &Bucket, device: bae_hlc::DeviceId) -> Vec<String> {
        bucket
            .store
            .list(&bae_storage_s3::layout::heads_prefix(&device))
            .await
            .unwrap()
    }

    /// Push reports each batch it uploads, so a host can draw a bar.
    #[tokio::test]
    async fn push_reports_batches_uploaded_of_the_unpushed() {
        use std::sync::{Arc, Mutex};
        let bucket = Bucket::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let a = bucket
            .device("a", 3)
            .with_progress(Arc::new(move |stage, done, total| {
                log.lock().unwrap().push((stage, done, total));
            }));
        let pushed = a.push().await.unwrap().batches as u64;
        let seen = seen.lock().unwrap().clone();
        let push: Vec<_> = seen
            .iter()
            .filter(|(s, _, _)| *s == crate::Stage::Push)
            .map(|(_, d, t)| (*d, *t))
            .collect();
        assert!(pushed > 0);
        assert_eq!(push.first(), Some(&(0, pushed)), "{seen:?}");
        assert_eq!(push.last(), Some(&(pushed, pushed)), "{seen:?}");
    }

    /// A backlog longer than a slice goes up slice by slice, each named by
    /// a head and marked pushed before the next is encoded; the progress
    /// counts across slices, and another device pulls all of it.
    #[tokio::test]
    async fn a_backlog_is_pushed_in_slices() {
        use std::sync::{Arc, Mutex};
        let bucket = Bucket::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mut a = bucket
            .device("a", 7)
            .with_progress(Arc::new(move |stage, done, total| {
                log.lock().unwrap().push((stage, done, total));
            }));
        a.push_slice = super::PushSlice {
            batches: 3,
            bytes: usize::MAX,
        };
        let report = a.push().await.unwrap();
        assert_eq!((report.batches, report.head), (7, Some(7)));
        let done: Vec<u64> = seen.lock().unwrap().iter().map(|(_, d, _)| *d).collect();
        assert_eq!(done, vec![0, 1, 2, 3, 3, 4, 5, 6, 6, 7]);
        assert!(seen.lock().unwrap().iter().all(|(_, _, t)| *t == 7));
        assert_eq!(
            own_heads(&bucket, a.device()).await,
            vec![bae_storage_s3::layout::heads_key(&a.device(), 7)]
        );
        // A byte budget smaller than any batch: one batch a slice.
        let mut c = bucket.device("c", 2);
        c.push_slice = super::PushSlice {
            batches: usize::MAX,
            bytes: 1,
        };
        assert_eq!(c.push().await.unwrap().batches, 2);
        let b = bucket.device("b", 0);
        assert_eq!(b.pull().await.unwrap().applied, 9);
        assert_eq!(dump(&a).await, dump(&b).await);
    }

    /// A push interrupted in its second slice keeps the first: those
    /// batches are marked pushed and named by a head other devices see,
    /// and the next push sends only the rest.
    #[tokio::test]
    async fn an_interrupted_push_keeps_the_slices_it_finished() {
        use bae_storage_s3::testing::{Fault, FaultyStore, OpKind, Trigger};
        use bae_storage_s3::StoreError;
        let bucket = Bucket::new();
        drop(bucket.device("a", 7));
        let faulty = std::sync::Arc::new(FaultyStore::new(bucket.store.clone()));
        let path = bucket.dir.path().join("a.db");
        let mut a = crate::SyncService::new(
            bae_oplog::fixture::open_library(&path).unwrap(),
            faulty.clone(),
            bucket.key.clone(),
            bucket.member(),
        )
        .unwrap();
        a.push_slice = super::PushSlice {
            batches: 3,
            bytes: usize::MAX,
        };
        // Puts: the first slice's three batches and its head, then the
        // second slice's batches; the bucket drops out at its second.
        faulty.inject(
            OpKind::Put,
            Trigger::Nth(6),
            Fault::Error(StoreError::Transient {
                detail: "connection reset".into(),
            }),
        );
        let err = a.push().await.unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        let unpushed = a
            .with_db(|rec| Ok(bae_oplog::unpushed_batches(rec.sync_parts().0)?.len()))
            .await
            .unwrap();
        assert_eq!(unpushed, 4);
        let b = bucket.device("b", 0);
        assert_eq!(b.pull().await.unwrap().applied, 3);
        // Batch 4 went up without its head: the next push's rollback check
        // finds it is the local batch 4 and marks it pushed as it is.
        let report = a.push().await.unwrap();
        assert_eq!((report.batches, report.head), (3, Some(7)));
        assert_eq!(b.pull().await.unwrap().applied, 4);
        assert_eq!(dump(&a).await, dump(&b).await);
    }

    /// A head written late by an overlapping push (another process on the
    /// same library) used to delete every other head, the newer one too.
    #[tokio::test]
    async fn a_late_older_head_never_deletes_a_newer_one() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 2);
        a.push().await.unwrap();
        a.write_head(1, None).await.unwrap();
        let newest = bae_storage_s3::layout::heads_key(&a.device(), 2);
        assert!(own_heads(&bucket, a.device()).await.contains(&newest));
        let b = bucket.device("b", 0);
        assert_eq!(b.pull().await.unwrap().applied, 2);
    }

    /// A head lost after its batches were pushed is rewritten by the next
    /// push even when it has nothing new (it learns of the loss from the
    /// pull's LIST, so an idle push still makes no request of its own).
    #[tokio::test]
    async fn a_push_with_nothing_new_repairs_a_missing_head() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 2);
        a.push().await.unwrap();
        for key in own_heads(&bucket, a.device()).await {
            bucket.store.delete(&key).await.unwrap();
        }
        let b = bucket.device("b", 0);
        assert_eq!(
            b.pull().await.unwrap().applied,
            0,
            "no head, nothing visible"
        );
        a.sync().await.unwrap();
        let report = a.push().await.unwrap();
        assert_eq!((report.batches, report.head), (0, Some(2)));
        assert_eq!(b.pull().await.unwrap().applied, 2);
        assert_eq!(dump(&a).await, dump(&b).await);
    }

    /// Overlapping pushes of one service are serialised: both succeed and
    /// one head, the newest, remains.
    #[tokio::test]
    async fn overlapping_pushes_leave_the_newest_head() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 3);
        let (r1, r2) = tokio::join!(a.push(), a.push());
        assert_eq!(r1.unwrap().batches + r2.unwrap().batches, 3);
        let heads = own_heads(&bucket, a.device()).await;
        assert_eq!(
            heads,
            vec![bae_storage_s3::layout::heads_key(&a.device(), 3)]
        );
    }
}

#[cfg(test)]
mod garbage_head_tests {
    #![allow(clippy::unwrap_used)]
    use crate::test_support::{dump, import, Bucket};
    use bae_storage_s3::layout;

    /// The bucket host puts garbage at a head seq above a device's real
    /// one. Readers fall back to the real head (reporting the garbage by
    /// name), and the device's next push removes it. (Found by review: a
    /// head write that deletes only older heads left it there for good.)
    #[tokio::test]
    async fn a_garbage_head_above_the_real_one_neither_hides_nor_stays() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        assert_eq!(b.pull().await.unwrap().applied, 1);
        let garbage = layout::heads_key(&a.device(), 999_999);
        bucket.store.put(&garbage, b"garbage").await.unwrap();
        import(&a, 9, 0).await;
        a.push().await.unwrap();
        // The push saw no LIST yet; it wrote head 2 and removed the
        // garbage above every batch a recorded.
        assert!(!bucket.store.exists(&garbage).await.unwrap());
        bucket.store.put(&garbage, b"garbage").await.unwrap();
        let report = b.pull().await.unwrap();
        assert_eq!(report.applied, 1, "the real head 2 was used");
        assert!(
            report.problems.iter().any(|p| p.reason.contains(&garbage)),
            "{:?}",
            report.problems
        );
        assert_eq!(dump(&a).await, dump(&b).await);
        // a learns of the garbage from its pull's LIST and removes it with
        // its next push, even with nothing new.
        a.sync().await.unwrap();
        a.push().await.unwrap();
        assert!(!bucket.store.exists(&garbage).await.unwrap());
        assert!(b.pull().await.unwrap().problems.is_empty());
    }
}
