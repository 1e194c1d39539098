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
//! checkpoint's cursor for it and rows another device inserted, which come
//! from its batches after the checkpoint). Cursors are reset to the
//! checkpoint's, so the next pull applies every later batch again. The
//! same transaction records `bae_sync_library.checkpoint_replay_after` = the
//! checkpoint's cursor for this device; this device's own batches after it
//! (pushed or not) are then replayed through merge as writes stamped with
//! this device, exactly as every other device applies them, and the marker
//! is cleared. A crash between the two leaves the marker set and the next
//! pull finishes the replay (replay is idempotent), so no unpushed local
//! write is lost. Unpushed batches stay unpushed and are pushed as usual.
//! Own batches the op log lacks (re-taken after going back to a backup,
//! or pruned by GC) come from the bucket: the same transaction leaves this
//! device's own cursor at the checkpoint's, and they are applied again
//! from there (`rollback.rs`); a recovery refuses a checkpoint behind own
//! batches that are in neither.

use crate::checkpoint::{
    cursor_hash, CheckpointError, CheckpointHeader, OpenedCheckpoint, RecordReader,
};
use crate::error::SyncError;
use crate::images::want_absent_images;
use crate::keystore::read_key_file;
use crate::progress::{Progress, Stage, PROGRESS_EVERY};
use crate::service::SyncService;
use bae_hlc::{Clock, DeviceId, Timestamp};
use bae_merge::snapshot::{self as merge_snapshot, RestoreError};
use bae_oplog::{batch_ops, Batch, BatchHash, BatchSeq, OpRecorder};
use rusqlite::{params, Connection};
use std::io::BufReader;
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The page cache of a restore's connection, in KiB as `PRAGMA cache_size`
/// takes it when negative: 32 MiB, a bound whatever the library's size.
const RESTORE_CACHE_KIB: i64 = -32 * 1024;

/// How many checkpoints, newest first, a recovery after a GC'd range tries.
const RECOVERY_TRIES: usize = 4;

/// What [`SyncService::recover_from_checkpoint`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// A checkpoint was restored.
    Recovered,
    /// None was. `held`: one of the checkpoints a recovery tries holds a
    /// missing batch (it was refused for another reason, e.g. behind this
    /// device's own gone batches), or did not open and may hold one, so
    /// the range may not be lost: a newer checkpoint that lacks it would
    /// put it out of every recovery's reach.
    NotRecovered { held: bool },
}

/// Whether `opened` holds one of the missing batches (`gaps`: device,
/// first missing seq).
fn covers_a_gap(opened: &OpenedCheckpoint, gaps: &[(DeviceId, u64)]) -> bool {
    gaps.iter()
        .any(|(d, missing)| opened.header.cursor_of(*d) >= *missing)
}

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
    /// Restores the newest checkpoint that opens, verifies and restores (a
    /// newer one that does not, whether it fails to open, names something
    /// outside the sync schema, or is refused by the database while it is
    /// restored, is reported in [`BootstrapReport::rejected`] and the next
    /// older is tried; a failed restore leaves nothing behind). `None` when
    /// the bucket holds no usable checkpoint. Call [`SyncService::pull`]
    /// afterwards for later batches.
    pub async fn bootstrap_from_checkpoint(&self) -> Result<Option<BootstrapReport>, SyncError> {
        let _one_at_a_time = self.flight.lock().await;
        let mut rejected = Vec::new();
        let mut below = None;
        loop {
            self.check_cancelled()?;
            let (opened, skipped) = self.newest_checkpoint_below(below.as_ref()).await?;
            rejected.extend(skipped);
            let Some(opened) = opened else {
                if !rejected.is_empty() {
                    tracing::warn!(rejected = rejected.len(), "no usable checkpoint");
                }
                return Ok(None);
            };
            let id = opened.id.clone();
            match self.restore(opened, &rejected).await {
                Err(e @ SyncError::Invalid { .. }) => {
                    tracing::warn!(error = %e, "checkpoint did not restore; trying an older one");
                    rejected.push(e);
                    below = Some(id);
                }
                done => return done.map(Some),
            }
        }
    }

    /// Recovery for a pull that found a device's next batch missing: restores
    /// the newest checkpoint that covers a missing batch (`gaps`: device,
    /// first missing seq) and can be restored without losing anything (see
    /// [`Self::can_recover_from`]), then replays local batches. Older
    /// checkpoints are tried too (at most [`RECOVERY_TRIES`] in all): the
    /// newest may not cover the gap, e.g. one written by a device whose
    /// clock ran ahead, so it sorts last without having seen the batches GC
    /// deleted under an older one. Returns whether it recovered, or whether
    /// one of the checkpoints it opened holds a missing batch all the same.
    pub(crate) async fn recover_from_checkpoint(
        &self,
        gaps: &[(DeviceId, u64)],
    ) -> Result<Recovery, SyncError> {
        let device = self.device;
        // This device's own cursor (kept while re-taken own batches wait) is
        // not a stream the restore resets: the batches above the
        // checkpoint's cursor for it are applied again after the restore.
        let applied = self
            .with_db(move |rec| {
                let mut applied = crate::pull::applied_cursors(rec.sync_parts().0)?;
                applied.remove(&device);
                Ok(applied)
            })
            .await?;
        let mut rejected = Vec::new();
        let mut below = None;
        let mut held = false;
        for _ in 0..RECOVERY_TRIES {
            let (opened, skipped) = self.newest_checkpoint_below(below.as_ref()).await?;
            // One that did not open may hold a missing batch: a body cut
            // short once reads whole the next time. Taking it for one that
            // holds nothing let this device write a newer checkpoint
            // without the range, and its GC then went by that one (seed
            // 40816).
            held |= !skipped.is_empty();
            rejected.extend(skipped);
            let Some(opened) = opened else {
                return Ok(Recovery::NotRecovered { held });
            };
            below = Some(opened.id.clone());
            held |= covers_a_gap(&opened, gaps);
            if !self.can_recover_from(&opened, gaps, &applied).await? {
                continue;
            }
            // A checkpoint claiming batches no head vouches for would make
            // this device skip them for ever.
            match self.confirm_cursors(&opened).await {
                Ok(()) => {}
                Err(e @ SyncError::Invalid { .. }) => {
                    tracing::warn!(error = %e, "not recovering from this checkpoint");
                    rejected.push(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let after = opened.header.cursor_of(self.device);
            match self.restore(opened, &rejected).await {
                Ok(report) => {
                    tracing::warn!(checkpoint = %report.key, replayed = report.replayed, "recovered from a checkpoint after a GC'd range");
                    // This device's own link, not the checkpoint's word
                    // (the restore recorded it where it had none).
                    let link = self.own_link_at(after).await?;
                    self.reapply_own_after(after, link, false).await?;
                    return Ok(Recovery::Recovered);
                }
                // Not recovering from it leaves the library whole.
                Err(e @ SyncError::Invalid { .. }) => {
                    tracing::warn!(error = %e, "not recovering from this checkpoint");
                    rejected.push(e);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Recovery::NotRecovered { held })
    }

    /// Whether `opened` covers one of the `gaps`, and every batch this
    /// library has applied beyond it (`applied`: cursor per device) is still
    /// in the bucket. The checkpoint may be behind this library on some
    /// streams (this device applied batches its writer had not): the
    /// restore resets those cursors to the checkpoint's and the pull after
    /// it applies the batches again, so none may be gone.
    async fn can_recover_from(
        &self,
        opened: &OpenedCheckpoint,
        gaps: &[(DeviceId, u64)],
        applied: &std::collections::BTreeMap<DeviceId, u64>,
    ) -> Result<bool, SyncError> {
        if !covers_a_gap(opened, gaps) {
            return Ok(false);
        }
        if !self
            .own_batches_kept_after(opened.header.cursor_of(self.device))
            .await?
        {
            tracing::warn!(checkpoint = %opened.key, "checkpoint is behind this device's own batches and they are gone; not recovering from it");
            return Ok(false);
        }
        for (&device, &seq) in applied {
            let from = opened.header.cursor_of(device);
            if from < seq && !self.stream_in_bucket(device, from + 1, seq).await? {
                tracing::warn!(checkpoint = %opened.key, %device, applied = seq, "checkpoint is behind this device and the batches between are gone; not recovering from it");
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Whether `device`'s batches `first..=last` are all in the bucket.
    pub(crate) async fn stream_in_bucket(
        &self,
        device: DeviceId,
        first: u64,
        last: u64,
    ) -> Result<bool, SyncError> {
        let listed = self.listed_batch_seqs(device).await?;
        Ok((first..=last).all(|seq| listed.contains(&seq)))
    }

    /// Restores an opened checkpoint: its rows ([`Self::restore_rows`]),
    /// then this device's own batches after its cursor, the kept ops this
    /// schema knows, and the images its rows lack.
    async fn restore(
        &self,
        opened: OpenedCheckpoint,
        rejected: &[SyncError],
    ) -> Result<BootstrapReport, SyncError> {
        let mut report = self.restore_rows(opened).await?;
        report.rejected = rejected.iter().map(ToString::to_string).collect();
        report.replayed = self.finish_local_replay().await?;
        // What the checkpoint's writer kept of newer writers' batches and
        // this device's schema knows applies now, not at the next pull.
        // The images of rows it brings are wanted after (the restore's own
        // transaction wanted those of the checkpoint's rows): a kill in
        // between leaves them unwanted, as a pull's kept ops always do.
        self.with_db(|rec| Ok(bae_merge::apply_kept(rec)?)).await?;
        if let Some(dir) = self.images_dir.clone() {
            self.with_db(move |rec| {
                let schema = rec.schema();
                let tx = rec
                    .sync_parts()
                    .0
                    .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                want_absent_images(&tx, schema, &dir)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        }
        report.images = self.retry_wanted_images().await?;
        Ok(report)
    }

    /// The part of a restore that one transaction commits: the
    /// checkpoint's rows, with this device's cursors, clock, replay marker
    /// and the images its rows lack, wanted. A kill after it leaves the
    /// replay of own batches and the image fetches to the next pull. The
    /// records are loaded on a connection of the restore's own (into the
    /// empty library, or into a staging database for a library with
    /// state), so the service's shared connection is held only for the
    /// final replace of a library with state.
    async fn restore_rows(&self, opened: OpenedCheckpoint) -> Result<BootstrapReport, SyncError> {
        let progress = self.progress.clone();
        let device = self.device;
        let cancel = self.cancel.clone();
        // The drift bound the service's clock applies, for the checkpoint's HLC.
        let bound = self.drift_bound().await?;
        let images = self.images_dir.clone();
        let loaded = self
            .with_own_connection(move |conn, schema| {
                let into = LoadInto {
                    schema,
                    device,
                    progress: progress.as_ref(),
                    cancel: &cancel,
                    bound: &bound,
                    images: images.as_deref(),
                };
                load(conn, &into, opened)
            })
            .await?;
        let report = match loaded {
            Loaded::Fresh(report) => {
                // The restore persisted the clock; the shared clock catches up.
                self.with_db(|rec| {
                    let (conn, clock, _) = rec.sync_parts();
                    Ok(bae_oplog::catch_up_clock(conn, clock)?)
                })
                .await?;
                report
            }
            Loaded::Staged {
                staging,
                header,
                report,
            } => {
                let images = self.images_dir.clone();
                // Until the replay ends, a checkpoint this device writes
                // names its own cursor with the link at it
                // (`snapshot_cursors`); a device that went back to a copy
                // from before that batch had none, and named none: every
                // reader of that checkpoint found the next batch's
                // predecessor mismatched, for good (seed 93289).
                // `own_link_at` records it.
                let own_link = self.own_link_at(header.cursor_of(self.device)).await?;
                self.with_db(move |rec| {
                    let into = ReplaceWith {
                        staging: staging.path(),
                        header: &header,
                        own_link,
                        images: images.as_deref(),
                    };
                    replace_from(rec, &into).map_err(|e| match e {
                        SyncError::Merge(bae_merge::MergeError::SnapshotLacksRows {
                            table,
                            rows,
                        }) => SyncError::invalid(
                            report.key.clone(),
                            CheckpointError::LacksRows { table, rows },
                        ),
                        e => e,
                    })?;
                    Ok(report)
                })
                .await?
            }
        };
        tracing::info!(key = %report.key, records = report.records, replaced = report.replaced, "checkpoint restored");
        Ok(report)
    }

    /// Replays this device's batches after a restored checkpoint's cursor,
    /// if a restore left that pending. Returns the batches replayed.
    pub(crate) async fn finish_local_replay(&self) -> Result<usize, SyncError> {
        self.with_db(replay_local).await
    }
}

/// What loading a checkpoint did.
enum Loaded {
    /// Restored into the empty library, cursors and clock included.
    Fresh(BootstrapReport),
    /// Staged, to replace the library's state on the shared connection.
    Staged {
        staging: tempfile::NamedTempFile,
        header: CheckpointHeader,
        report: BootstrapReport,
    },
}

/// Loads a checkpoint on `conn` (a connection of the restore's own). An
/// empty library (no synced rows, merge state or ops, checked under the
/// write lock) gets the records in one transaction with its cursors and
/// clock; a library with state gets a staging database to replace from.
///
/// The records are written in one transaction: with SQLite's default
/// 2 MiB page cache, index pages spill to the WAL and are written there
/// again and again. [`RESTORE_CACHE_KIB`] keeps them in memory until the
/// commit, and the connection's own cache size comes back after (it is
/// the service's shared connection when the library has no file).
fn load(
    conn: &mut Connection,
    into: &LoadInto<'_>,
    opened: OpenedCheckpoint,
) -> Result<Loaded, SyncError> {
    let before: i64 = conn.pragma_query_value(None, "cache_size", |r| r.get(0))?;
    conn.pragma_update(None, "cache_size", RESTORE_CACHE_KIB)?;
    let loaded = load_with_cache(conn, into, opened);
    conn.pragma_update(None, "cache_size", before)?;
    loaded
}

/// The library a checkpoint loads into, as [`load`] needs it.
struct LoadInto<'a> {
    schema: &'static bae_oplog::SyncSchema,
    /// This device: its cursor in the checkpoint is its replay point.
    device: DeviceId,
    progress: Option<&'a Progress>,
    cancel: &'a CancellationToken,
    /// The drift bound the checkpoint's HLC must pass to be adopted.
    bound: &'a Clock,
    /// Where the library's image files live: the images its new rows lack
    /// are wanted in the same transaction.
    images: Option<&'a Path>,
}

/// [`load`] once the cache is set.
fn load_with_cache(
    conn: &mut Connection,
    into: &LoadInto<'_>,
    opened: OpenedCheckpoint,
) -> Result<Loaded, SyncError> {
    let LoadInto {
        schema,
        device,
        progress,
        cancel,
        bound,
        images,
    } = *into;
    let OpenedCheckpoint {
        key,
        header,
        plaintext,
        ..
    } = opened;
    let report = BootstrapReport {
        key: key.clone(),
        records: header.records,
        rejected: Vec::new(),
        replaced: false,
        replayed: 0,
        images: 0,
    };
    // IMMEDIATE: the write lock from the start, so no write lands between
    // the emptiness check and the restore.
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if merge_snapshot::is_empty(&tx, schema)? && !bae_oplog::has_ops(&tx)? {
        load_records(&tx, schema, plaintext, &key, &header, progress, cancel)?;
        merge_snapshot::mark_local_ops_folded(&tx)?;
        set_cursors(&tx, &header, device)?;
        let hlc = Timestamp::from_u64(header.hlc);
        match bound.check_drift(hlc) {
            Ok(()) => bae_oplog::persist_timestamp(&tx, hlc)?,
            Err(e) => tracing::warn!(error = %e, "checkpoint HLC not adopted"),
        }
        if let Some(dir) = images {
            want_absent_images(&tx, schema, dir)?;
        }
        tx.commit()?;
        return Ok(Loaded::Fresh(report));
    }
    drop(tx);
    let staging =
        tempfile::NamedTempFile::new().map_err(|e| SyncError::io(Path::new("temp db"), e))?;
    {
        let mut sc = merge_snapshot::create_staging(staging.path(), schema)?;
        sc.pragma_update(None, "cache_size", RESTORE_CACHE_KIB)?;
        let tx = sc.transaction()?;
        load_records(&tx, schema, plaintext, &key, &header, progress, cancel)?;
        tx.commit()?;
    }
    Ok(Loaded::Staged {
        staging,
        header,
        report: BootstrapReport {
            replaced: true,
            ..report
        },
    })
}

/// What [`replace_from`] replaces a library's state with.
struct ReplaceWith<'a> {
    /// The staging database the checkpoint's records were loaded into.
    staging: &'a Path,
    header: &'a CheckpointHeader,
    /// This device's own link at its cursor in the checkpoint
    /// ([`SyncService::own_link_at`]), never the checkpoint's word.
    own_link: Option<BatchHash>,
    /// Where the library's image files live.
    images: Option<&'a Path>,
}

/// Replaces the library's state by a staged checkpoint, in one
/// transaction with this service's cursors, the replay marker, the clock,
/// this device's own link and the images its rows lack, wanted.
fn replace_from(rec: &mut OpRecorder, with: &ReplaceWith<'_>) -> Result<(), SyncError> {
    let ReplaceWith {
        staging,
        header,
        own_link,
        images,
    } = *with;
    let device = rec.device();
    let schema = rec.schema();
    let (conn, clock, _) = rec.sync_parts();
    let after = header.cursor_of(device);
    merge_snapshot::replace_from_staged(
        conn,
        schema,
        staging,
        BatchSeq(after),
        device,
        |tx| -> Result<(), SyncError> {
            set_cursors(tx, header, device)?;
            crate::rollback::reapply_own_from_checkpoint(tx, device, after, own_link)?;
            tx.execute(
                "UPDATE bae_sync_library SET checkpoint_replay_after = ?1 WHERE id = 1",
                [after as i64],
            )?;
            tx.execute("DELETE FROM bae_sync_problems", [])?;
            if let Some(dir) = images {
                want_absent_images(tx, schema, dir)?;
            }
            adopt_clock(tx, clock, header.hlc)
        },
    )
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
    cancel: &CancellationToken,
) -> Result<(), SyncError> {
    let invalid = |e: CheckpointError| SyncError::invalid(key, e);
    conn.set_prepared_statement_cache_capacity(64);
    let mut reader = RecordReader::new(BufReader::new(plaintext));
    if reader.header().map_err(invalid)? != *header {
        return Err(invalid(CheckpointError::HeaderChanged));
    }
    let mut cache = merge_snapshot::RestoreCache::default();
    let mut seen = 0u64;
    while let Some(record) = reader.body_record(seen).map_err(invalid)? {
        if let Some(state) = record.into_state() {
            merge_snapshot::restore_record(conn, schema, &state, header.schema_version, &mut cache)
                .map_err(|e| match e {
                    // A local database failure is not the checkpoint's fault.
                    RestoreError::Merge(e) => SyncError::Merge(e),
                    source => invalid(CheckpointError::Record {
                        index: seen,
                        source,
                    }),
                })?;
        }
        seen += 1;
        if seen.is_multiple_of(PROGRESS_EVERY) {
            if let Some(p) = progress {
                p(Stage::Restore, seen, header.records);
            }
            // Safe to stop: the caller's transaction rolls back.
            if cancel.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
        }
    }
    if let Some(p) = progress {
        p(Stage::Restore, seen, header.records);
    }
    // A newer writer's tables and columns this schema does not know: kept.
    merge_snapshot::finish_restore(
        conn,
        schema,
        DeviceId::from_bytes(header.writer),
        header.schema_version,
    )?;
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
            schema_version: schema.version(),
            device,
            seq,
            prev: None,
            ops: batch_ops(conn, schema, seq)?,
        });
    }
    let report = bae_merge::apply_pull(rec, batches)?;
    if !report.held.is_empty() {
        // Local batches are never pulled back: keep the marker so the next
        // pull replays them again (replay is idempotent) once what they
        // wait for has arrived, rather than losing this device's writes.
        for held in &report.held {
            tracing::warn!(seq = %held.batch.seq, reason = %held.reason, "local batch waits to replay after a checkpoint restore");
        }
        return Ok(report.applied.len());
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
    let crate::keystore::KeyFile {
        key,
        identity,
        founder: pinned,
    } = read_key_file(key_file)?;
    let store = bae_storage_s3::open_store(bucket_url).map_err(|source| SyncError::BucketUrl {
        url: bucket_url.to_owned(),
        source,
    })?;
    let founder = crate::marker::prove_key(store.as_ref(), bucket_url, &key).await?;
    crate::library::check_founder(founder, pinned)?;
    let member = crate::members::Member::new(identity, founder);
    let mut service = SyncService::new(open_library(out)?, store, key, member)?;
    if let Some(p) = progress {
        service = service.with_progress(p);
    }
    // The chain first: it vouches for the checkpoint's signer, and its
    // entries lead to this member's newer key epochs.
    service.refresh_members().await?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::checkpoint::Record;
    use crate::test_support::{dump, Bucket};
    use bae_oplog::fixture::demo_album;
    use bae_oplog::{Value, BAE_SCHEMA};
    use std::sync::Arc;

    /// A checkpoint's snapshot and a restore's record loading run on
    /// connections of their own: while they run, the service's shared
    /// connection is free (status, push and the host's sync requests do not
    /// wait for them).
    #[tokio::test]
    async fn snapshot_and_restore_do_not_hold_the_shared_connection() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let bucket = Bucket::new();
        let free_during = Arc::new(AtomicUsize::new(0));
        let probe = |s: SyncService, stage: crate::Stage| {
            let db = Arc::clone(&s.db);
            let free = Arc::clone(&free_during);
            s.with_progress(Arc::new(move |st, _, _| {
                if st == stage && db.try_lock().is_ok() {
                    free.fetch_add(1, Ordering::SeqCst);
                }
            }))
        };
        let a = probe(bucket.device("a", 3), crate::Stage::Snapshot);
        a.checkpoint().await.unwrap();
        assert!(free_during.swap(0, Ordering::SeqCst) > 0, "snapshot");
        let b = probe(bucket.device("b", 0), crate::Stage::Restore);
        b.bootstrap_from_checkpoint().await.unwrap().unwrap();
        assert!(free_during.load(Ordering::SeqCst) > 0, "restore");
        assert_eq!(dump(&b).await, dump(&a).await);
    }

    /// A restore raises its connection's page cache while it loads and
    /// gives the connection its own back after: a library without a file
    /// restores on the service's shared connection, which the host keeps.
    #[tokio::test]
    async fn a_restore_gives_the_shared_connection_its_cache_size_back() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 2);
        a.checkpoint().await.unwrap();
        let in_memory = bae_oplog::fixture::library_on(
            Connection::open_in_memory().unwrap(),
            bae_hlc::WallClock::System,
        )
        .unwrap();
        let b = SyncService::new(
            in_memory,
            bucket.store.clone(),
            bucket.key.clone(),
            bucket.member(),
        )
        .unwrap();
        async fn cache_size(s: &SyncService) -> i64 {
            s.with_db(|rec| {
                Ok(rec
                    .sync_parts()
                    .0
                    .pragma_query_value(None, "cache_size", |r| r.get(0))?)
            })
            .await
            .unwrap()
        }
        let before = cache_size(&b).await;
        assert_ne!(before, RESTORE_CACHE_KIB);
        b.bootstrap_from_checkpoint().await.unwrap().unwrap();
        assert_eq!(cache_size(&b).await, before);
        assert_eq!(dump(&b).await, dump(&a).await);
    }

    /// Seed 93289: a device went back to a copy from before batch 22 of
    /// its own, found that range gone and recovered from a checkpoint
    /// whose cursor for it is 22; it had no link for batch 22, so a
    /// checkpoint it wrote while the restore's replay waited named its
    /// own cursor 22 with no hash, and every device that recovered from
    /// that one found batch 23's predecessor mismatched, for good. The
    /// restore records the link where this device has none, from its own
    /// next batch, never from the checkpoint: a member can sign one naming
    /// another hash, which the device's own cursor and checkpoints would
    /// pass on.
    #[tokio::test]
    async fn a_restore_gives_this_device_the_link_of_its_own_cursor() {
        let bucket = Bucket::new();
        let laptop = bucket.device("laptop", 2);
        assert_eq!(laptop.push().await.unwrap().head, Some(2));
        let key = laptop.write_checkpoint().await.unwrap().key;
        crate::test_support::import(&laptop, 9, 0).await;
        assert_eq!(laptop.push().await.unwrap().head, Some(3));
        async fn own_cursor(s: &SyncService) -> Option<(u64, Option<bae_oplog::BatchHash>)> {
            let device = s.device();
            s.with_db(move |rec| crate::rollback::own_cursor(rec.sync_parts().0, device))
                .await
                .unwrap()
        }
        let real = link_at(&laptop, 2).await.unwrap();
        let id = bae_storage_s3::layout::parse_checkpoint_key(&key).unwrap();

        // A member signed the same checkpoint naming another hash for the
        // laptop's batch 2.
        let mut honest = laptop.open_checkpoint(&id, &key).await.unwrap();
        let mut reader = crate::checkpoint::RecordReader::new(&mut honest.plaintext);
        let mut body = Vec::new();
        while let Some(record) = reader.next_record().unwrap() {
            if !matches!(record, Record::Header(_) | Record::End { .. }) {
                body.push(record);
            }
        }
        let mut cursors = honest.header.cursors.clone();
        for c in &mut cursors {
            if c.device_id() == laptop.device() {
                c.hash = Some([7; 32]);
            }
        }
        let forged = bucket
            .forge_with_cursors(laptop.device(), 1000, cursors, body)
            .await;
        let forged_id = bae_storage_s3::layout::parse_checkpoint_key(&forged).unwrap();
        // With the link kept, and with it lost: the own cursor (which the
        // re-take goes on from) and the link are the real ones.
        for lost in [false, true] {
            if lost {
                forget_links(&laptop, &[2]).await;
            }
            let opened = laptop.open_checkpoint(&forged_id, &forged).await.unwrap();
            laptop.restore(opened, &[]).await.unwrap();
            assert_eq!(link_at(&laptop, 2).await, Some(real), "lost: {lost}");
            assert_eq!(
                own_cursor(&laptop).await,
                Some((2, Some(real))),
                "lost: {lost}"
            );
        }
        bucket.store.delete(&forged).await.unwrap();

        forget_links(&laptop, &[2]).await;
        let opened = laptop.open_checkpoint(&id, &key).await.unwrap();
        laptop.restore(opened, &[]).await.unwrap();
        assert_eq!(link_at(&laptop, 2).await, Some(real));

        // A checkpoint written while the replay after 2 waits names the
        // link.
        crate::test_support::set_replay_after(&laptop, 2).await;
        let written = laptop.write_checkpoint().await.unwrap().key;
        let header = laptop.verify_checkpoint(&written).await.unwrap();
        let own = header
            .cursors
            .iter()
            .find(|c| c.device_id() == laptop.device())
            .unwrap();
        assert_eq!((own.seq, own.hash), (2, Some(real.0)));

        // With batch 3 gone from the bucket, no link is to be had.
        forget_links(&laptop, &[2]).await;
        let next = bae_storage_s3::layout::ops_key(&laptop.device(), 3);
        bucket.store.delete(&next).await.unwrap();
        let opened = laptop.open_checkpoint(&id, &key).await.unwrap();
        laptop.restore(opened, &[]).await.unwrap();
        assert_eq!(link_at(&laptop, 2).await, None);
        assert_eq!(own_cursor(&laptop).await, Some((2, None)));
    }

    /// A laptop that pushed batches 1 to 3 (3 after `invite` joined, if
    /// given), and the hash it recorded for batch 2.
    async fn laptop_with_three_batches(
        bucket: &Bucket,
        invite: Option<&bae_crypto::IdentitySigningKey>,
    ) -> (SyncService, bae_oplog::BatchHash) {
        let laptop = bucket.device("laptop", 2);
        assert_eq!(laptop.push().await.unwrap().head, Some(2));
        if let Some(who) = invite {
            laptop
                .invite(who.public_key(), bae_membership::Role::Member)
                .await
                .unwrap();
        }
        crate::test_support::import(&laptop, 9, 0).await;
        assert_eq!(laptop.push().await.unwrap().head, Some(3));
        let link = link_at(&laptop, 2).await.unwrap();
        (laptop, link)
    }

    /// Writes `s`'s batch 3 again in the bucket, signed by `signer` and
    /// naming `prev` as its predecessor.
    async fn resign_batch_3(
        bucket: &Bucket,
        s: &SyncService,
        signer: &bae_crypto::IdentitySigningKey,
        prev: bae_oplog::BatchHash,
    ) {
        use bae_membership::{SignedKind, SignedObject};
        let device = s.device();
        let key = bae_storage_s3::layout::ops_key(&device, 3);
        let place = crate::service::batch_place(device, 3);
        let sealed = bucket.store.get(&key, 1 << 20).await.unwrap();
        let plain = s.open(&key, &place, &sealed).unwrap();
        let real = s
            .verify_signed(&key, SignedKind::Batch, device, 3, &sealed, plain)
            .await
            .unwrap();
        let mut batch = bae_oplog::decode_batch(real.body(), &BAE_SCHEMA).unwrap();
        batch.prev = Some(prev);
        let mut header = *real.header();
        header.prev = batch.prev;
        let body = bae_oplog::encode_batch(&batch).unwrap();
        let forged = SignedObject::sign(signer, header, body).unwrap();
        let sealed = bae_crypto::seal_object(
            &bucket.key,
            bae_crypto::KeyEpoch(0),
            &place,
            &forged.to_bytes(),
        );
        bucket.store.put(&key, &sealed).await.unwrap();
    }

    /// The hash this device recorded for its batch `seq` (its chain link
    /// there), if any.
    async fn link_at(s: &SyncService, seq: u64) -> Option<bae_oplog::BatchHash> {
        s.with_db(move |rec| crate::push::stored_hash(rec.sync_parts().0, seq))
            .await
            .unwrap()
    }

    /// Forgets the hashes this device recorded for its batches `seqs`.
    async fn forget_links(s: &SyncService, seqs: &'static [i64]) {
        s.with_db(move |rec| {
            let conn = rec.sync_parts().0;
            for seq in seqs {
                conn.execute(
                    "DELETE FROM bae_sync_batch_hashes WHERE batch_id = ?1",
                    [seq],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    }

    /// A member writes this device's batch 3, signed by them and naming a
    /// made-up predecessor, where the device lacks its link at 2. It gives no
    /// link, and does not bind the device to that member (its own batches
    /// would be refused from then on): the device is bound to its own
    /// member before any object is seen.
    #[tokio::test]
    async fn an_own_batch_another_member_signed_gives_no_link_and_binds_nothing() {
        let bucket = Bucket::new();
        let mallory = bae_crypto::IdentitySigningKey::generate();
        // Batch 3 is written after mallory joined: her signature on it
        // counts as a member's.
        let (laptop, _) = laptop_with_three_batches(&bucket, Some(&mallory)).await;
        resign_batch_3(&bucket, &laptop, &mallory, bae_oplog::BatchHash([7; 32])).await;
        // The same library, opened anew (nothing of this service's bound
        // anything), with no binding saved and its link at 2 lost.
        let device = laptop.device();
        drop(laptop);
        let laptop = bucket.device("laptop", 0);
        forget_links(&laptop, &[2]).await;
        laptop
            .with_db(|rec| {
                rec.sync_parts()
                    .0
                    .execute("DELETE FROM bae_sync_device_authors", [])?;
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(laptop.own_link_at(2).await.unwrap(), None);
        assert_eq!(laptop.author_of(device), Some(bucket.identity.public_key()));
    }

    /// Batch 3 re-signed by this device's own member (a thief of another
    /// of its devices) naming another predecessor: the device recorded
    /// pushing batch 3, and that object is not it, so it gives no link.
    #[tokio::test]
    async fn an_own_batch_that_is_not_the_one_pushed_gives_no_link() {
        let bucket = Bucket::new();
        let (laptop, _) = laptop_with_three_batches(&bucket, None).await;
        let own = bucket.identity.clone();
        resign_batch_3(&bucket, &laptop, &own, bae_oplog::BatchHash([7; 32])).await;
        forget_links(&laptop, &[2]).await;
        assert_eq!(laptop.own_link_at(2).await.unwrap(), None);
    }

    /// A read of the next batch cut short says nothing about it: the link
    /// comes from the next whole read, and is recorded.
    #[tokio::test]
    async fn a_read_cut_short_does_not_cost_the_own_link() {
        use bae_storage_s3::testing::{Fault, FaultyStore, OpKind, Trigger};
        let bucket = Bucket::new();
        let (laptop, link) = laptop_with_three_batches(&bucket, None).await;
        forget_links(&laptop, &[2]).await;
        drop(laptop);
        let faulty = Arc::new(FaultyStore::new(bucket.store.clone()));
        faulty.inject(OpKind::Get, Trigger::Nth(1), Fault::Truncate(40));
        let laptop = bucket.device_over("laptop", faulty.clone());
        assert_eq!(laptop.own_link_at(2).await.unwrap(), Some(link));
        assert!(faulty.calls(OpKind::Get) >= 2);
        assert_eq!(link_at(&laptop, 2).await, Some(link));
    }

    /// The transaction that brings a checkpoint's rows also wants the
    /// images they lack: a restore killed right after it commits (before
    /// its replay, kept ops and image fetches) leaves every image to the
    /// next pull, into an empty library or one with state. Before, the
    /// images were wanted in a later transaction, and a kill between the
    /// two left rows whose bytes nothing would fetch (seen once in the
    /// kill loop: one device's images differed from the others').
    #[tokio::test]
    async fn a_restore_killed_after_its_rows_commit_still_gets_their_images() {
        let bucket = Bucket::new();
        let images = |name: &str| bucket.dir.path().join(format!("{name}.images"));
        let laptop = bucket.device("laptop", 3).with_images_dir(images("laptop"));
        std::fs::create_dir_all(images("laptop")).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            for row in demo_album(5, i, 2)
                .rows
                .iter()
                .filter(|r| r.table == "images")
            {
                std::fs::write(images("laptop").join(&row.id), row.id.as_bytes()).unwrap();
                ids.push(row.id.clone());
            }
        }
        assert!(!ids.is_empty());
        assert_eq!(laptop.push().await.unwrap().images, ids.len());
        let key = laptop.write_checkpoint().await.unwrap().key;
        let id = bae_storage_s3::layout::parse_checkpoint_key(&key).unwrap();

        // An empty library (restored in place) and one with state (staged,
        // then replaced).
        for (name, albums) in [("desktop", 0), ("phone", 1)] {
            let device = bucket.device(name, 0).with_images_dir(images(name));
            if albums > 0 {
                crate::test_support::import(&device, 9, 0).await;
            }
            let opened = device.open_checkpoint(&id, &key).await.unwrap();
            let restored = device.restore_rows(opened).await.unwrap();
            assert_eq!(restored.replaced, albums > 0, "{name}");
            // Killed here; the next run (the same library, opened again)
            // pulls.
            drop(device);
            let device = bucket.device(name, 0).with_images_dir(images(name));
            assert_eq!(device.pull().await.unwrap().images, ids.len(), "{name}");
            for image in &ids {
                assert_eq!(
                    std::fs::read(images(name).join(image)).unwrap(),
                    image.as_bytes(),
                    "{name}: {image}"
                );
            }
        }
    }

    fn album_row(values: usize) -> Record {
        Record::Row {
            table: "albums".into(),
            id: "forged".into(),
            values: vec![Value::from("x"); values],
        }
    }

    /// Each forged checkpoint is rejected by name and the device bootstraps
    /// from the older honest one, with nothing of the forgery applied.
    #[tokio::test]
    async fn an_invalid_checkpoint_falls_back_to_an_older_one() {
        let columns = BAE_SCHEMA.table("albums").unwrap().columns.len();
        let minute = 60_000;
        let forgeries: Vec<(&str, &str, i64, Vec<Record>)> = vec![
            (
                "a table outside the sync schema",
                "table \"storage_profiles\" does not sync",
                minute,
                vec![Record::Row {
                    table: "storage_profiles".into(),
                    id: "p".into(),
                    values: vec![],
                }],
            ),
            (
                "a wrong value count",
                "values for",
                minute,
                vec![album_row(columns + 1)],
            ),
            (
                "an SQL fragment as a parked column",
                "does not sync",
                minute,
                vec![Record::Parked {
                    table: "albums".into(),
                    row_id: "a".into(),
                    column: "title) SELECT secret_key FROM storage_profiles --".into(),
                    value: Value::Null,
                }],
            ),
            (
                "a stamp on a column that does not sync",
                "files.\"source_path\" does not sync",
                minute,
                vec![Record::Stamp {
                    table: "files".into(),
                    row_id: "f".into(),
                    column: "source_path".into(),
                    hlc: 1,
                    device: [1; 16],
                }],
            ),
            (
                "a tombstone with an HLC beyond the accepted range",
                "outside the accepted range",
                minute,
                vec![Record::Tombstone {
                    table: "albums".into(),
                    row_id: "a".into(),
                    hlc: u64::MAX,
                    device: [1; 16],
                }],
            ),
            (
                "a stamp newer than the checkpoint",
                "stamped after the checkpoint",
                minute,
                vec![Record::Stamp {
                    table: "albums".into(),
                    row_id: "a".into(),
                    column: "title".into(),
                    hlc: bae_hlc::Timestamp::from_unix_millis(
                        crate::service::now_ms() + 2 * minute,
                    )
                    .unwrap()
                    .as_u64(),
                    device: [1; 16],
                }],
            ),
            (
                "a checkpoint HLC a day ahead of the clock",
                "drift bound",
                24 * 60 * minute,
                vec![],
            ),
            (
                "a row the database refuses (its parent is missing)",
                "refused by the database",
                minute,
                vec![Record::Row {
                    table: "releases".into(),
                    id: "r".into(),
                    values: {
                        let n = BAE_SCHEMA.table("releases").unwrap().columns.len();
                        let mut v = vec![Value::Null; n];
                        v[0] = Value::from("no such album");
                        v
                    },
                }],
            ),
        ];
        for (what, why, ahead_ms, body) in forgeries {
            let bucket = Bucket::new();
            let a = bucket.device("a", 2);
            let honest = a.checkpoint().await.unwrap();
            let forged = bucket.forge(a.device(), ahead_ms, body).await;
            let b = bucket.device("b", 0);
            let report = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
            assert_eq!(report.key, honest.key, "{what}");
            assert_eq!(report.rejected.len(), 1, "{what}: {:?}", report.rejected);
            assert!(
                report.rejected[0].contains(&forged),
                "{what}: {:?}",
                report.rejected
            );
            assert!(
                report.rejected[0].contains(why),
                "{what}: {:?}",
                report.rejected
            );
            assert_eq!(dump(&b).await, dump(&a).await, "{what}");
        }
    }

    /// A host whose synced table has a local-only column referencing a
    /// local-only table (which the schema check allows) can restore into a
    /// library with state: the staging database is built from the sync
    /// schema, not the host's DDL. (Found by review.)
    #[tokio::test]
    async fn a_staged_restore_needs_no_local_only_tables() {
        let bucket = Bucket::new();
        let with_profile = |name: &str, albums: u64| {
            let path = bucket.dir.path().join(format!("{name}.db"));
            drop(bae_oplog::fixture::open_library(&path).unwrap());
            rusqlite::Connection::open(&path)
                .unwrap()
                .execute_batch(
                    "ALTER TABLE albums ADD COLUMN profile_id TEXT REFERENCES storage_profiles(id)",
                )
                .unwrap();
            let mut lib =
                bae_oplog::fixture::Library::new(bae_oplog::fixture::open_library(&path).unwrap());
            for i in 0..albums {
                lib.import_album(&bae_oplog::fixture::demo_album(5, i, 2))
                    .unwrap();
            }
            SyncService::new(
                bae_oplog::fixture::open_library(&path).unwrap(),
                bucket.store.clone(),
                bucket.key.clone(),
                bucket.member(),
            )
            .unwrap()
        };
        let a = with_profile("a", 2);
        a.checkpoint().await.unwrap();
        let b = with_profile("b", 1);
        let report = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
        assert!(report.replaced);
        b.push().await.unwrap();
        a.pull().await.unwrap();
        b.pull().await.unwrap();
        assert_eq!(dump(&a).await, dump(&b).await);
    }

    /// A kept local row holding a unique key the checkpoint gives another
    /// row (a re-analysed track, not yet pushed) no longer makes the
    /// replace fail for good; the local batch replays and the unique rule
    /// settles it. (Found by review.)
    #[tokio::test]
    async fn a_kept_local_unique_rival_does_not_block_a_restore() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        b.pull().await.unwrap();
        let album = bae_oplog::fixture::demo_album(5, 0, 2);
        let track = album.ids("tracks").next().unwrap().to_owned();
        let file = album.ids("files").next().unwrap().to_owned();
        b.with_db(move |rec| {
            let mut tx = rec.transaction()?;
            tx.delete("audio_formats", &format!("af:{track}"))?;
            tx.insert(
                "audio_formats",
                &format!("af2:{track}"),
                &[
                    ("track_id", Value::from(track.as_str())),
                    ("file_id", Value::from(file.as_str())),
                    ("content_type", "audio/flac".into()),
                    ("sample_rate", Value::Integer(48_000)),
                    ("bits_per_sample", Value::Integer(24)),
                    ("created_at", "2026".into()),
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
        a.checkpoint().await.unwrap();
        let report = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
        assert!(report.replaced);
        b.push().await.unwrap();
        a.pull().await.unwrap();
        assert_eq!(dump(&a).await, dump(&b).await);
        assert!(dump(&b).await.contains("af2:"), "b's re-analysis survived");
    }

    /// A forged checkpoint naming a cursor seq above `i64::MAX` (it would
    /// wrap in the stored cursors) is rejected by name.
    #[tokio::test]
    async fn a_checkpoint_cursor_out_of_range_is_rejected() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        let honest = a.checkpoint().await.unwrap();
        let cursor = crate::checkpoint::CheckpointCursor {
            device: [9; 16],
            seq: u64::MAX,
            hash: None,
        };
        let forged = bucket
            .forge_with_cursors(a.device(), 60_000, vec![cursor], vec![])
            .await;
        let b = bucket.device("b", 0);
        let report = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
        assert_eq!(report.key, honest.key);
        assert!(
            report.rejected[0].contains(&forged) && report.rejected[0].contains("out of range")
        );
    }

    /// A key holder uploads an empty checkpoint whose cursors equal the
    /// heads, and deletes one batch the device has not applied. The gap
    /// used to make the device "recover" from the forgery and empty its
    /// library. The forged checkpoint does not explain the rows it lacks
    /// (no tombstones), so the device keeps its library and reports the
    /// gap. (Found by review.)
    #[tokio::test]
    async fn a_forged_checkpoint_cannot_empty_an_existing_library_through_recovery() {
        use crate::checkpoint::CheckpointCursor;
        use crate::head::{Head, MAX_HEAD_OBJECT_BYTES};
        use crate::service::head_place;
        use bae_membership::SignedKind;
        use bae_storage_s3::layout;
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        crate::test_support::import(&b, 9, 0).await;
        b.push().await.unwrap();
        b.pull().await.unwrap();
        crate::test_support::import(&a, 9, 1).await;
        a.push().await.unwrap();
        let before = dump(&b).await;
        let mut cursors = Vec::new();
        for (dev, seq) in [(a.device(), 2u64), (b.device(), 1u64)] {
            let key = layout::heads_key(&dev, seq);
            let sealed = bucket.store.get(&key, MAX_HEAD_OBJECT_BYTES).await.unwrap();
            let plain = b.open(&key, &head_place(dev, seq), &sealed).unwrap();
            let signed = b
                .verify_signed(&key, SignedKind::Head, dev, seq, &sealed, plain)
                .await
                .unwrap();
            let head = Head::decode(signed.body()).unwrap();
            cursors.push(CheckpointCursor {
                device: *dev.as_bytes(),
                seq,
                hash: head.hash.map(|h| h.0),
            });
        }
        bucket
            .forge_with_cursors(a.device(), 60_000, cursors, vec![])
            .await;
        bucket
            .store
            .delete(&layout::ops_key(&a.device(), 2))
            .await
            .unwrap();
        let report = b.pull().await.unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.device == a.device() && p.seq == 2),
            "the gap is reported: {:?}",
            report.problems
        );
        assert_eq!(dump(&b).await, before, "nothing of b's library was lost");
    }

    /// The cursors a device's head vouches for, as a checkpoint would name
    /// them.
    async fn cursor_at_head(
        bucket: &Bucket,
        reader: &SyncService,
        dev: DeviceId,
        seq: u64,
    ) -> crate::checkpoint::CheckpointCursor {
        use crate::head::{Head, MAX_HEAD_OBJECT_BYTES};
        use crate::service::head_place;
        let key = bae_storage_s3::layout::heads_key(&dev, seq);
        let sealed = bucket.store.get(&key, MAX_HEAD_OBJECT_BYTES).await.unwrap();
        let plain = reader.open(&key, &head_place(dev, seq), &sealed).unwrap();
        let signed = reader
            .verify_signed(
                &key,
                bae_membership::SignedKind::Head,
                dev,
                seq,
                &sealed,
                plain,
            )
            .await
            .unwrap();
        let head = Head::decode(signed.body()).unwrap();
        crate::checkpoint::CheckpointCursor {
            device: *dev.as_bytes(),
            seq,
            hash: head.hash.map(|h| h.0),
        }
    }

    /// How many albums a service's library holds.
    async fn album_count(s: &SyncService) -> i64 {
        s.with_db(|rec| {
            Ok(rec
                .sync_parts()
                .0
                .query_row("SELECT COUNT(*) FROM albums", [], |r| r.get::<_, i64>(0))?)
        })
        .await
        .unwrap()
    }

    /// Sets an album's title on a service (a recorded write).
    async fn set_title(s: &SyncService, id: &str, title: &'static str) {
        let id = id.to_owned();
        s.with_db(move |rec| {
            let mut tx = rec.transaction()?;
            tx.update("albums", &id, &[("title", Value::from(title))])?;
            tx.commit()?;
            Ok(())
        })
        .await
        .unwrap();
    }

    /// The title of demo album 0 (seed 5) in a service's library.
    async fn album_title(s: &SyncService) -> String {
        let album = bae_oplog::fixture::demo_album(5, 0, 2);
        let id = album.ids("albums").next().unwrap().to_owned();
        s.with_db(move |rec| {
            Ok(rec.sync_parts().0.query_row(
                "SELECT title FROM albums WHERE id = ?1",
                [id],
                |r| r.get::<_, String>(0),
            )?)
        })
        .await
        .unwrap()
    }

    /// Review finding 1: a key holder uploads an EMPTY checkpoint whose
    /// cursors equal the heads and deletes one batch the device has not
    /// applied. The replace keeps every row another device inserted, so the
    /// forgery is accepted, but the library's stamps and tombstones are
    /// replaced by the checkpoint's (none) and the cursors say those
    /// inserts are included, so they are never applied again: the rows
    /// stay with no stamps for ever. A late write older than what the
    /// library holds then wins on this device only: the devices diverge.
    #[tokio::test]
    async fn a_forged_empty_checkpoint_cannot_strip_the_stamps_of_kept_rows() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let album = bae_oplog::fixture::demo_album(5, 0, 2);
        let id = album.ids("albums").next().unwrap().to_owned();
        // c writes first (an older HLC) but pushes only at the end.
        let c = bucket.device("c", 0);
        c.pull().await.unwrap();
        set_title(&c, &id, "stale").await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        set_title(&a, &id, "fresh").await;
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        b.pull().await.unwrap();
        assert_eq!(album_title(&b).await, "fresh");
        crate::test_support::import(&a, 9, 0).await;
        a.push().await.unwrap();
        let cursor = cursor_at_head(&bucket, &b, a.device(), 3).await;
        bucket
            .forge_with_cursors(a.device(), 60_000, vec![cursor], vec![])
            .await;
        bucket
            .store
            .delete(&bae_storage_s3::layout::ops_key(&a.device(), 3))
            .await
            .unwrap();
        b.pull().await.unwrap();
        c.push().await.unwrap();
        a.pull().await.unwrap();
        b.pull().await.unwrap();
        assert_eq!(album_title(&a).await, "fresh", "a keeps the newer title");
        assert_eq!(
            album_title(&b).await,
            album_title(&a).await,
            "b took c's older title: the devices diverged"
        );
    }

    /// Review finding 2: a forged checkpoint may claim a cursor beyond a
    /// device's newest head (GC refuses such a checkpoint, recovery does
    /// not). With an empty body it is accepted (every row of this library
    /// came from the other device, so all are kept), and the device then
    /// skips that device's batches up to the forged cursor for ever, even
    /// after the gap is repaired.
    #[tokio::test]
    async fn a_forged_checkpoint_cursor_beyond_the_head_cannot_skip_later_batches() {
        let bucket = Bucket::new();
        let a = bucket.device("a", 1);
        a.push().await.unwrap();
        let b = bucket.device("b", 0);
        b.pull().await.unwrap();
        crate::test_support::import(&a, 9, 0).await;
        a.push().await.unwrap();
        let ahead = crate::checkpoint::CheckpointCursor {
            device: *a.device().as_bytes(),
            seq: 5,
            hash: None,
        };
        bucket
            .forge_with_cursors(a.device(), 60_000, vec![ahead], vec![])
            .await;
        bucket
            .store
            .delete(&bae_storage_s3::layout::ops_key(&a.device(), 2))
            .await
            .unwrap();
        b.pull().await.unwrap();
        a.repair().await.unwrap();
        for i in 1..5 {
            crate::test_support::import(&a, 9, i).await;
            a.push().await.unwrap();
        }
        b.pull().await.unwrap();
        assert_eq!(album_count(&a).await, 6);
        assert_eq!(album_count(&b).await, 6, "b skipped a's batches 2..=5");
    }
}
