//! Bootstrap and recovery from a checkpoint, and the read-only server's
//! database (bae-server tiers 1 and 2).
//!
//! **Fresh library** (no synced rows, stamps or ops): the checkpoint's
//! records are streamed straight into the library in one transaction
//! (rows parents-first with foreign keys on, then stamps, tombstones and
//! parked values), and the cursors it includes become this device's
//! cursors. A normal pull then replays only later batches.
//!
//! **Library with state** (recovery of a device whose next batch was
//! garbage-collected, or `join` on a library that already holds data): the
//! checkpoint is staged into a temporary database, then in one transaction
//! the library's synced rows and merge state are replaced by the staged
//! ones (rows updated in place, so local-only columns survive; rows the
//! checkpoint lacks are deleted, except rows this device inserted after the
//! checkpoint's cursor for it). Cursors are reset to the checkpoint's. The
//! same transaction records `bae_sync_library.checkpoint_replay_after` = the
//! checkpoint's cursor for this device; this device's own batches after it
//! (pushed or not) are then replayed through merge as writes stamped with
//! this device, exactly as every other device applies them, and the marker
//! is cleared. A crash between the two leaves the marker set and the next
//! pull finishes the replay (replay is idempotent), so no unpushed local
//! write is lost. Unpushed batches stay unpushed and are pushed as usual.

use crate::checkpoint::{cursor_hash, CheckpointHeader, OpenedCheckpoint, RecordReader};
use crate::error::SyncError;
use crate::keystore::read_key_file;
use crate::progress::{Progress, Stage, PROGRESS_EVERY};
use crate::service::SyncService;
use bae_hlc::{Clock, DeviceId, Timestamp};
use bae_merge::snapshot as merge_snapshot;
use bae_oplog::{batch_ops, Batch, BatchSeq, OpRecorder};
use rusqlite::{params, Connection};
use std::io::BufReader;
use std::path::Path;

/// What a bootstrap or recovery did.
#[derive(Debug, Clone)]
pub struct BootstrapReport {
    /// The checkpoint used.
    pub key: String,
    /// Its records restored.
    pub records: u64,
    /// Newer checkpoints that did not open or verify, with why.
    pub rejected: Vec<String>,
    /// Whether the library had state that was replaced (recovery) rather
    /// than being filled fresh.
    pub replaced: bool,
    /// Local batches replayed on top.
    pub replayed: usize,
    /// Images of restored rows fetched (the rest, not in the bucket yet,
    /// are wanted and retried by later pulls).
    pub images: usize,
}

/// What `server-bootstrap` did.
#[derive(Debug)]
pub struct ServerBootstrapReport {
    /// The checkpoint restored (tier 1), if the database was new.
    pub bootstrap: Option<BootstrapReport>,
    /// Batches replayed after it (tier 2, `--refresh`).
    pub refreshed: Option<crate::PullReport>,
}

impl SyncService {
    /// Restores the newest checkpoint that opens and verifies (a newer one
    /// that does not is reported in [`BootstrapReport::rejected`] and the
    /// next older is tried). `None` when the bucket holds no usable
    /// checkpoint. Call [`SyncService::pull`] afterwards for later batches.
    pub async fn bootstrap_from_checkpoint(&self) -> Result<Option<BootstrapReport>, SyncError> {
        let (opened, rejected) = self.newest_checkpoint().await?;
        let Some(opened) = opened else {
            return Ok(None);
        };
        Ok(Some(self.restore(opened, &rejected).await?))
    }

    /// Recovery for a pull that found a device's next batch missing: if the
    /// newest checkpoint covers a missing batch (`gaps`: device, first
    /// missing seq), restores it and replays local batches. Returns whether
    /// it did.
    pub(crate) async fn recover_from_checkpoint(
        &self,
        gaps: &[(DeviceId, u64)],
    ) -> Result<bool, SyncError> {
        let (opened, rejected) = self.newest_checkpoint().await?;
        let Some(opened) = opened else {
            return Ok(false);
        };
        if !gaps
            .iter()
            .any(|(d, missing)| opened.header.cursor_of(*d) >= *missing)
        {
            return Ok(false);
        }
        let report = self.restore(opened, &rejected).await?;
        tracing::warn!(checkpoint = %report.key, replayed = report.replayed, "recovered from a checkpoint after a GC'd range");
        Ok(true)
    }

    async fn restore(
        &self,
        opened: OpenedCheckpoint,
        rejected: &[SyncError],
    ) -> Result<BootstrapReport, SyncError> {
        let progress = self.progress.clone();
        let rejected: Vec<String> = rejected.iter().map(ToString::to_string).collect();
        let mut report = self
            .with_db(move |rec| restore_blocking(rec, opened, progress.as_ref()))
            .await?;
        report.rejected = rejected;
        report.replayed = self.finish_local_replay().await?;
        self.want_absent_images().await?;
        report.images = self.retry_wanted_images().await?;
        Ok(report)
    }

    /// Replays this device's batches after a restored checkpoint's cursor,
    /// if a restore left that pending. Returns the batches replayed.
    pub(crate) async fn finish_local_replay(&self) -> Result<usize, SyncError> {
        self.with_db(replay_local).await
    }
}

fn restore_blocking(
    rec: &mut OpRecorder,
    opened: OpenedCheckpoint,
    progress: Option<&Progress>,
) -> Result<BootstrapReport, SyncError> {
    let device = rec.device();
    let schema = rec.schema();
    let OpenedCheckpoint {
        key,
        header,
        plaintext,
    } = opened;
    let (conn, clock, _) = rec.sync_parts();
    let fresh = merge_snapshot::is_empty(conn, schema)? && !bae_oplog::has_ops(conn)?;
    if fresh {
        let tx = conn.transaction()?;
        load_records(&tx, schema, plaintext, &key, &header, progress)?;
        merge_snapshot::mark_local_ops_folded(&tx)?;
        set_cursors(&tx, &header, device)?;
        adopt_clock(&tx, clock, header.hlc)?;
        tx.commit()?;
    } else {
        let staging =
            tempfile::NamedTempFile::new().map_err(|e| SyncError::io(Path::new("temp db"), e))?;
        {
            let mut sc = merge_snapshot::create_staging(staging.path(), conn, schema)?;
            let tx = sc.transaction()?;
            load_records(&tx, schema, plaintext, &key, &header, progress)?;
            tx.commit()?;
        }
        let after = header.cursor_of(device);
        merge_snapshot::replace_from_staged(
            conn,
            schema,
            staging.path(),
            BatchSeq(after),
            |tx| -> Result<(), SyncError> {
                set_cursors(tx, &header, device)?;
                tx.execute(
                    "UPDATE bae_sync_library SET checkpoint_replay_after = ?1 WHERE id = 1",
                    [after as i64],
                )?;
                tx.execute("DELETE FROM bae_sync_problems", [])?;
                adopt_clock(tx, clock, header.hlc)
            },
        )?;
    }
    tracing::info!(%key, records = header.records, fresh, "checkpoint restored");
    Ok(BootstrapReport {
        key,
        records: header.records,
        rejected: Vec::new(),
        replaced: !fresh,
        replayed: 0,
        images: 0,
    })
}

/// Streams the body records into `conn`'s (empty) tables, each checked
/// against the sync schema by merge before it reaches SQL.
fn load_records(
    conn: &Connection,
    schema: &bae_oplog::SyncSchema,
    plaintext: std::fs::File,
    key: &str,
    header: &CheckpointHeader,
    progress: Option<&Progress>,
) -> Result<(), SyncError> {
    let invalid = |reason: String| SyncError::Invalid {
        key: key.to_owned(),
        reason,
    };
    conn.set_prepared_statement_cache_capacity(64);
    let mut reader = RecordReader::new(BufReader::new(plaintext));
    if reader.header().map_err(invalid)? != *header {
        return Err(invalid("header changed between reads".into()));
    }
    let mut seen = 0u64;
    while let Some(record) = reader.body_record(seen).map_err(invalid)? {
        if let Some(state) = record.into_state() {
            merge_snapshot::restore_record(conn, schema, &state)
                .map_err(|e| invalid(format!("record {seen}: {e}")))?;
        }
        seen += 1;
        if let Some(p) = progress.filter(|_| seen.is_multiple_of(PROGRESS_EVERY)) {
            p(Stage::Restore, seen, header.records);
        }
    }
    if let Some(p) = progress {
        p(Stage::Restore, seen, header.records);
    }
    Ok(())
}

/// Sets every other device's cursor to what the checkpoint includes (and
/// streams it does not include back to the start).
fn set_cursors(
    conn: &Connection,
    header: &CheckpointHeader,
    device: DeviceId,
) -> Result<(), SyncError> {
    conn.execute(
        "UPDATE bae_sync_cursors SET applied_seq = 0, applied_hash = NULL",
        [],
    )?;
    for c in &header.cursors {
        let d = c.device_id();
        if d == device {
            continue;
        }
        conn.execute(
            "INSERT INTO bae_sync_cursors (device_id, applied_seq, applied_hash) VALUES (?1, ?2, ?3)
             ON CONFLICT (device_id) DO UPDATE SET applied_seq = excluded.applied_seq, applied_hash = excluded.applied_hash",
            params![
                d.to_string(),
                c.seq as i64,
                cursor_hash(c).map(|h| h.0.to_vec())
            ],
        )?;
    }
    Ok(())
}

/// Advances the clock past the checkpoint (so later local writes win over
/// what it holds) and persists it. A checkpoint from a clock too far ahead
/// is not adopted (merge holds such batches back the same way).
fn adopt_clock(conn: &Connection, clock: &Clock, hlc: u64) -> Result<(), SyncError> {
    bae_oplog::catch_up_clock(conn, clock)?;
    if let Err(e) = clock.receive(Timestamp::from_u64(hlc)) {
        tracing::warn!(error = %e, "checkpoint HLC not adopted");
    }
    bae_oplog::persist_clock(conn, clock)?;
    Ok(())
}

/// Replays this device's batches after `checkpoint_replay_after` through
/// merge, then clears the marker.
fn replay_local(rec: &mut OpRecorder) -> Result<usize, SyncError> {
    let schema = rec.schema();
    let (conn, _, device) = rec.sync_parts();
    let after: Option<i64> = conn.query_row(
        "SELECT checkpoint_replay_after FROM bae_sync_library WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let Some(after) = after else {
        return Ok(0);
    };
    let mut batches = Vec::new();
    for seq in bae_oplog::batches_after(conn, BatchSeq(after as u64))? {
        batches.push(Batch {
            device,
            seq,
            prev: None,
            ops: batch_ops(conn, schema, seq)?,
        });
    }
    let report = bae_merge::apply_pull(rec, batches)?;
    for held in &report.held {
        tracing::warn!(seq = %held.batch.seq, reason = %held.reason, "local batch did not replay after a checkpoint restore");
    }
    rec.sync_parts().0.execute(
        "UPDATE bae_sync_library SET checkpoint_replay_after = NULL WHERE id = 1",
        [],
    )?;
    Ok(report.applied.len())
}

/// `server-bootstrap`: the read-only server's database. A new database at
/// `out` is filled from the newest checkpoint (tier 1); with `refresh`,
/// batches newer than it are replayed too (tier 2; an existing database is
/// then refreshed in place). The database is opened read-write only here.
///
/// `open_library` opens (and, for a new file, creates) the database the way
/// the host does: its own tables by its own migrations, then
/// [`OpRecorder::open`] with its sync schema.
pub async fn server_bootstrap(
    bucket_url: &str,
    key_file: &Path,
    out: &Path,
    open_library: impl FnOnce(&Path) -> Result<OpRecorder, bae_oplog::OplogError>,
    refresh: bool,
    progress: Option<Progress>,
) -> Result<ServerBootstrapReport, SyncError> {
    let existed = out.exists();
    if existed && !refresh {
        return Err(SyncError::AlreadyInitialized(format!(
            "{} exists (use --refresh to replay newer batches into it)",
            out.display()
        )));
    }
    let key = read_key_file(key_file)?;
    let store = bae_storage_s3::open_store(bucket_url)
        .map_err(|e| SyncError::BucketUrl(format!("{bucket_url}: {e}")))?;
    let mut service = SyncService::new(open_library(out)?, store, key)?;
    if let Some(p) = progress {
        service = service.with_progress(p);
    }
    let bootstrap = if existed {
        None
    } else {
        match service.bootstrap_from_checkpoint().await? {
            Some(r) => Some(r),
            None => {
                drop(service);
                let _ = std::fs::remove_file(out);
                return Err(SyncError::NoCheckpoint(bucket_url.to_owned()));
            }
        }
    };
    let refreshed = if refresh {
        Some(service.pull().await?)
    } else {
        None
    };
    Ok(ServerBootstrapReport {
        bootstrap,
        refreshed,
    })
}
