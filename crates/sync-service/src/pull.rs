//! Pull: one LIST of `heads/`, then only what is newer than our cursors:
//! fetch, decrypt, verify the chain, merge, and advance cursors only after
//! the merge committed. An idle pull is exactly one LIST request.

use crate::error::SyncError;
use crate::head::Head;
use crate::service::{batch_place, head_place, store_device, SyncService};
use bae_hlc::DeviceId;
use bae_oplog::{decode_batch, Batch, BatchHash, SCHEMA};
use bae_storage_s3::layout;
use rusqlite::params;
use std::collections::{BTreeMap, HashMap};

/// A remote batch that did not apply, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The device whose batch it is.
    pub device: DeviceId,
    /// The batch.
    pub seq: u64,
    /// Held (will be retried) or rejected (its device must repair it).
    pub kind: ProblemKind,
    /// Why, naming the object.
    pub reason: String,
}

/// Whether a problem batch waits or was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// Kept for a later pull (a parent not yet arrived, clock drift).
    Held,
    /// Did not decrypt or verify; nothing from it was applied.
    Rejected,
}

impl ProblemKind {
    fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Held => "held",
            ProblemKind::Rejected => "rejected",
        }
    }
}

/// What a pull did.
#[derive(Debug, Default)]
pub struct PullReport {
    /// Batches applied.
    pub applied: usize,
    /// Batches not applied, with reasons.
    pub problems: Vec<Problem>,
    /// Images fetched (those the pulled batches insert and this device lacked).
    pub images: usize,
}

#[derive(Clone, Copy)]
struct Cursor {
    applied: u64,
    hash: Option<BatchHash>,
}

impl SyncService {
    /// Pulls and merges what other devices pushed since the last pull. A
    /// device whose next batch was garbage-collected recovers from the
    /// newest checkpoint covering it (`bootstrap.rs`), then pulls again.
    pub async fn pull(&self) -> Result<PullReport, SyncError> {
        self.finish_local_replay().await?;
        let mut gaps = Vec::new();
        let report = self.pull_once(&mut gaps).await?;
        if !gaps.is_empty() && self.recover_from_checkpoint(&gaps).await? {
            return self.pull_once(&mut Vec::new()).await;
        }
        Ok(report)
    }

    /// One pull; batch objects found missing are added to `gaps`.
    async fn pull_once(&self, gaps: &mut Vec<(DeviceId, u64)>) -> Result<PullReport, SyncError> {
        let span = tracing::info_span!("pull", device = %self.device);
        let _e = span.enter();
        let heads = self.list_heads().await?;
        let cursors = self.with_db(|rec| load_cursors(rec.sync_parts().0)).await?;
        let mut fetched: Vec<Batch> = Vec::new();
        let mut hashes: HashMap<(DeviceId, u64), BatchHash> = HashMap::new();
        let mut problems = Vec::new();
        let mut seen_heads = Vec::new();
        for (device, head_seq) in heads {
            let cursor = cursors.get(&device).copied().unwrap_or(Cursor {
                applied: 0,
                hash: None,
            });
            if head_seq <= cursor.applied {
                continue;
            }
            match self
                .fetch_stream(device, head_seq, cursor, &mut fetched, &mut hashes)
                .await
            {
                Ok(head) => seen_heads.push(head),
                // An unreachable bucket fails the pull (retried later); a
                // missing object is the device's to repair.
                Err((_, SyncError::Store(e))) if !e.is_not_found() => return Err(e.into()),
                Err((seq, e)) => {
                    if matches!(&e, SyncError::Store(bae_storage_s3::StoreError::NotFound { key }) if key.starts_with(layout::OPS_PREFIX))
                    {
                        gaps.push((device, seq));
                    }
                    tracing::warn!(%device, seq, error = %e, "batch rejected");
                    problems.push(Problem {
                        device,
                        seq,
                        kind: ProblemKind::Rejected,
                        reason: e.to_string(),
                    });
                }
            }
        }
        if fetched.is_empty() && problems.is_empty() && seen_heads.is_empty() {
            return Ok(PullReport::default());
        }
        // Image bytes before the rows that name them.
        let images = self.fetch_missing_images(&fetched).await?;
        let count = fetched.len();
        tracing::info!(batches = count, images, "merging");
        let report = self
            .with_db(move |rec| {
                let (conn, clock, local) = rec.sync_parts();
                let merged = bae_merge::apply_pull(conn, clock, local, fetched)?;
                let mut problems = problems;
                for held in &merged.held {
                    problems.push(Problem {
                        device: held.batch.device,
                        seq: held.batch.seq.0,
                        kind: ProblemKind::Held,
                        reason: held.reason.to_string(),
                    });
                }
                let applied: Vec<(DeviceId, u64)> =
                    merged.applied.iter().map(|(d, s)| (*d, s.0)).collect();
                save_progress(conn, &cursors, &applied, &hashes, &seen_heads, &problems)?;
                Ok(PullReport {
                    applied: applied.len(),
                    problems,
                    images,
                })
            })
            .await?;
        tracing::info!(
            applied = report.applied,
            problems = report.problems.len(),
            "pull done"
        );
        Ok(report)
    }

    /// One LIST: every device's newest head seq (ours excluded).
    async fn list_heads(&self) -> Result<BTreeMap<DeviceId, u64>, SyncError> {
        let mut heads = BTreeMap::new();
        for key in self.store.list(layout::HEADS_PREFIX).await? {
            let Ok((device, seq)) = layout::parse_heads_key(&key) else {
                tracing::warn!(%key, "ignoring object outside the layout");
                continue;
            };
            let Ok(device) = device.as_str().parse::<DeviceId>() else {
                continue;
            };
            if device == self.device {
                continue;
            }
            let newest = heads.entry(device).or_insert(seq);
            *newest = (*newest).max(seq);
        }
        Ok(heads)
    }

    /// Fetches and verifies a device's batches after `cursor` up to its head.
    /// On a bad object, returns its seq and error; batches verified before
    /// it stay in `out` (they apply; the stream resumes after a repair).
    async fn fetch_stream(
        &self,
        device: DeviceId,
        head_seq: u64,
        cursor: Cursor,
        out: &mut Vec<Batch>,
        hashes: &mut HashMap<(DeviceId, u64), BatchHash>,
    ) -> Result<Head, (u64, SyncError)> {
        let store_dev = store_device(device).map_err(|e| (head_seq, e))?;
        let head_key = layout::heads_key(&store_dev, head_seq);
        let head = self
            .fetch_head(&head_key, device, head_seq)
            .await
            .map_err(|e| (head_seq, e))?;
        let mut prev = cursor.hash;
        for seq in cursor.applied + 1..=head_seq {
            let key = layout::ops_key(&store_dev, seq);
            let batch = self
                .fetch_batch(&key, device, seq, prev)
                .await
                .map_err(|e| (seq, e))?;
            let hash = batch.1;
            if seq == head_seq && head.hash != Some(hash) {
                let e = SyncError::Chain {
                    device,
                    seq,
                    reason: "batch does not match its head (rolled back or swapped)".into(),
                };
                return Err((seq, e));
            }
            hashes.insert((device, seq), hash);
            out.push(batch.0);
            prev = Some(hash);
        }
        Ok(head)
    }

    async fn fetch_head(&self, key: &str, device: DeviceId, seq: u64) -> Result<Head, SyncError> {
        let sealed = self.store.get(key).await?;
        let plain = self.open(key, &head_place(device, seq), &sealed)?;
        let head = Head::decode(&plain).map_err(|reason| SyncError::Invalid {
            key: key.into(),
            reason,
        })?;
        if head.device != device || head.seq != seq {
            return Err(SyncError::Invalid {
                key: key.into(),
                reason: "head names another device or seq".into(),
            });
        }
        Ok(head)
    }

    async fn fetch_batch(
        &self,
        key: &str,
        device: DeviceId,
        seq: u64,
        prev: Option<BatchHash>,
    ) -> Result<(Batch, BatchHash), SyncError> {
        let sealed = self.store.get(key).await?;
        let plain = self.open(key, &batch_place(device, seq), &sealed)?;
        let batch = decode_batch(&plain, &SCHEMA).map_err(|e| SyncError::Invalid {
            key: key.into(),
            reason: e.to_string(),
        })?;
        if batch.device != device || batch.seq.0 != seq {
            return Err(SyncError::Invalid {
                key: key.into(),
                reason: "batch names another device or seq".into(),
            });
        }
        if batch.prev != prev {
            return Err(SyncError::Chain {
                device,
                seq,
                reason: "previous-batch hash does not match (gap, swap or rollback)".into(),
            });
        }
        Ok((batch, BatchHash::of(&plain)))
    }
}

fn load_cursors(conn: &rusqlite::Connection) -> Result<HashMap<DeviceId, Cursor>, SyncError> {
    let mut stmt = conn.prepare("SELECT device_id, applied_seq, applied_hash FROM sync_cursors")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<Vec<u8>>>(2)?,
        ))
    })?;
    let mut out = HashMap::new();
    for row in rows {
        let (device, applied, hash) = row?;
        let Ok(device) = device.parse() else { continue };
        let hash = hash
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .map(BatchHash);
        out.insert(
            device,
            Cursor {
                applied: applied as u64,
                hash,
            },
        );
    }
    Ok(out)
}

/// Advances each device's cursor over its contiguously applied batches,
/// records what its head said, and replaces the problem list.
fn save_progress(
    conn: &mut rusqlite::Connection,
    cursors: &HashMap<DeviceId, Cursor>,
    applied: &[(DeviceId, u64)],
    hashes: &HashMap<(DeviceId, u64), BatchHash>,
    heads: &[Head],
    problems: &[Problem],
) -> Result<(), SyncError> {
    let mut done: BTreeMap<DeviceId, Vec<u64>> = BTreeMap::new();
    for (d, s) in applied {
        done.entry(*d).or_default().push(*s);
    }
    let tx = conn.transaction()?;
    for (device, mut seqs) in done {
        seqs.sort_unstable();
        let mut at = cursors.get(&device).map_or(0, |c| c.applied);
        for s in seqs {
            if s == at + 1 {
                at = s;
            }
        }
        let hash = hashes.get(&(device, at)).map(|h| h.0.to_vec());
        tx.execute(
            "INSERT INTO sync_cursors (device_id, applied_seq, applied_hash) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET applied_seq = excluded.applied_seq, applied_hash = excluded.applied_hash
             WHERE excluded.applied_seq > sync_cursors.applied_seq",
            params![device.to_string(), at as i64, hash],
        )?;
    }
    for head in heads {
        tx.execute(
            "INSERT INTO sync_cursors (device_id, head_seq, head_hlc, last_synced_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (device_id) DO UPDATE SET head_seq = excluded.head_seq, head_hlc = excluded.head_hlc,
             last_synced_ms = excluded.last_synced_ms",
            params![head.device.to_string(), head.seq as i64, head.hlc.as_u64() as i64, head.pushed_at_ms],
        )?;
    }
    tx.execute("DELETE FROM sync_problems", [])?;
    for p in problems {
        tx.execute(
            "INSERT OR REPLACE INTO sync_problems (device_id, seq, kind, reason) VALUES (?1, ?2, ?3, ?4)",
            params![p.device.to_string(), p.seq as i64, p.kind.as_str(), p.reason],
        )?;
    }
    tx.commit()?;
    Ok(())
}
