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
//! same transaction records `sync_state.checkpoint_replay_after` = the
//! checkpoint's cursor for this device; this device's own batches after it
//! (pushed or not) are then replayed through merge as writes stamped with
//! this device, exactly as every other device applies them, and the marker
//! is cleared. A crash between the two leaves the marker set and the next
//! pull finishes the replay (replay is idempotent), so no unpushed local
//! write is lost. Unpushed batches stay unpushed and are pushed as usual.

use crate::checkpoint::{cursor_hash, CheckpointHeader, OpenedCheckpoint, Record, RecordReader};
use crate::error::SyncError;
use crate::keystore::read_key_file;
use crate::progress::{Progress, Stage, PROGRESS_EVERY};
use crate::service::SyncService;
use bae_hlc::{Clock, DeviceId, Timestamp};
use bae_oplog::{batch_ops, Batch, BatchSeq, OpRecorder, SCHEMA};
use rusqlite::{params, Connection, ToSql};
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
    let OpenedCheckpoint {
        key,
        header,
        plaintext,
    } = opened;
    let (conn, clock, _) = rec.sync_parts();
    let fresh = is_fresh(conn)?;
    if fresh {
        let tx = conn.transaction()?;
        load_records(&tx, plaintext, &key, &header, progress)?;
        set_cursors(&tx, &header, device)?;
        adopt_clock(&tx, clock, header.hlc)?;
        tx.commit()?;
    } else {
        let staging =
            tempfile::NamedTempFile::new().map_err(|e| SyncError::io(Path::new("temp db"), e))?;
        {
            let mut sc = Connection::open(staging.path())?;
            bae_oplog::migrate(&mut sc)?;
            let tx = sc.transaction()?;
            load_records(&tx, plaintext, &key, &header, progress)?;
            tx.commit()?;
        }
        let path = staging.path().to_string_lossy().into_owned();
        conn.execute("ATTACH DATABASE ?1 AS ck", [path])?;
        let merged = replace_from_staged(conn, &header, device, clock);
        let detached = conn.execute("DETACH DATABASE ck", []);
        merged?;
        detached?;
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

/// A library with no synced rows, no merge state and no recorded ops.
fn is_fresh(conn: &Connection) -> Result<bool, SyncError> {
    let mut tables: Vec<&str> = SCHEMA.tables().iter().map(|t| t.name).collect();
    tables.extend(["field_timestamps", "tombstones", "op_log"]);
    for t in tables {
        let any: bool = conn.query_row(&format!("SELECT EXISTS (SELECT 1 FROM {t})"), [], |r| {
            r.get(0)
        })?;
        if any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Streams the body records into `conn`'s (empty) tables.
fn load_records(
    conn: &Connection,
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
        load_record(conn, &record).map_err(|e| match e {
            SyncError::Db(e) => invalid(format!("record {seen}: {e}")),
            e => e,
        })?;
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

fn load_record(conn: &Connection, record: &Record) -> Result<(), SyncError> {
    let unknown = |t: &str| SyncError::Task(format!("unknown table {t:?}"));
    match record {
        Record::Row { table, id, values } => {
            let schema = SCHEMA.table(table).ok_or_else(|| unknown(table))?;
            if values.len() != schema.columns.len() {
                return Err(SyncError::Task(format!(
                    "row {table}/{id}: {} values for {} columns",
                    values.len(),
                    schema.columns.len()
                )));
            }
            let marks: Vec<String> = (2..=values.len() + 1).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {} (id, {}) VALUES (?1, {})",
                schema.name,
                schema.columns.join(", "),
                marks.join(", ")
            );
            let mut args: Vec<&dyn ToSql> = Vec::with_capacity(values.len() + 1);
            args.push(id);
            args.extend(values.iter().map(|v| v as &dyn ToSql));
            conn.prepare_cached(&sql)?.execute(args.as_slice())?;
        }
        Record::Stamp {
            table,
            row_id,
            column,
            hlc,
            device,
        } => {
            SCHEMA.table(table).ok_or_else(|| unknown(table))?;
            conn.prepare_cached(
                r#"INSERT INTO field_timestamps (table_name, row_id, "column", hlc, device) VALUES (?1, ?2, ?3, ?4, ?5)"#,
            )?
            .execute(params![table, row_id, column, *hlc as i64, device.as_slice()])?;
        }
        Record::Tombstone {
            table,
            row_id,
            hlc,
            device,
        } => {
            SCHEMA.table(table).ok_or_else(|| unknown(table))?;
            conn.prepare_cached(
                "INSERT INTO tombstones (table_name, row_id, hlc, device) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![table, row_id, *hlc as i64, device.as_slice()])?;
        }
        Record::Parked {
            table,
            row_id,
            column,
            value,
        } => {
            SCHEMA.table(table).ok_or_else(|| unknown(table))?;
            conn.prepare_cached(
                r#"INSERT INTO merge_parked (table_name, row_id, "column", value) VALUES (?1, ?2, ?3, ?4)"#,
            )?
            .execute(params![table, row_id, column, value])?;
        }
        Record::Header(_) | Record::End { .. } => {}
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
        "UPDATE sync_cursors SET applied_seq = 0, applied_hash = NULL",
        [],
    )?;
    for c in &header.cursors {
        let d = c.device_id();
        if d == device {
            continue;
        }
        conn.execute(
            "INSERT INTO sync_cursors (device_id, applied_seq, applied_hash) VALUES (?1, ?2, ?3)
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
    if let Err(e) = clock.receive(Timestamp::from_u64(hlc)) {
        tracing::warn!(error = %e, "checkpoint HLC not adopted");
    }
    conn.execute(
        "UPDATE sync_state SET clock = MAX(clock, ?1) WHERE id = 1",
        [clock.last().as_u64() as i64],
    )?;
    Ok(())
}

/// Replaces the library's synced rows and merge state by the staged
/// checkpoint (attached as `ck`), in one transaction.
fn replace_from_staged(
    conn: &mut Connection,
    header: &CheckpointHeader,
    device: DeviceId,
    clock: &Clock,
) -> Result<(), SyncError> {
    let after = header.cursor_of(device) as i64;
    let tx = conn.transaction()?;
    for t in SCHEMA.tables().iter().rev() {
        // Rows this device inserted after the checkpoint's cursor for it are
        // kept (their local-only columns too); the replay re-applies them.
        tx.execute(
            &format!(
                "DELETE FROM main.{t} WHERE id NOT IN (SELECT id FROM ck.{t})
                 AND NOT (id IN (SELECT row_id FROM main.op_log WHERE table_name = ?1 AND kind = 0 AND batch_id > ?2)
                          AND NOT EXISTS (SELECT 1 FROM ck.tombstones k WHERE k.table_name = ?1 AND k.row_id = id))",
                t = t.name
            ),
            params![t.name, after],
        )?;
    }
    for t in SCHEMA.tables() {
        let cols = t.columns.join(", ");
        let set: Vec<String> = t
            .columns
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        tx.execute(
            &format!(
                "INSERT INTO main.{n} (id, {cols}) SELECT id, {cols} FROM ck.{n} WHERE true
                 ON CONFLICT (id) DO UPDATE SET {set}",
                n = t.name,
                set = set.join(", ")
            ),
            [],
        )?;
    }
    tx.execute_batch(
        r#"DELETE FROM main.field_timestamps;
           INSERT INTO main.field_timestamps SELECT table_name, row_id, "column", hlc, device FROM ck.field_timestamps;
           DELETE FROM main.tombstones;
           INSERT INTO main.tombstones SELECT table_name, row_id, hlc, device FROM ck.tombstones;
           DELETE FROM main.merge_parked;
           INSERT INTO main.merge_parked SELECT table_name, row_id, "column", value FROM ck.merge_parked;"#,
    )?;
    set_cursors(&tx, header, device)?;
    // Every local op is either in the checkpoint (batches up to `after`)
    // or replayed after this transaction: none is left to fold.
    tx.execute(
        "UPDATE sync_state SET checkpoint_replay_after = ?1,
         stamps_folded_seq = (SELECT COALESCE(MAX(seq), 0) FROM op_log) WHERE id = 1",
        [after],
    )?;
    tx.execute("DELETE FROM sync_problems", [])?;
    adopt_clock(&tx, clock, header.hlc)?;
    tx.commit()?;
    Ok(())
}

/// Replays this device's batches after `sync_state.checkpoint_replay_after`
/// through merge, then clears the marker.
fn replay_local(rec: &mut OpRecorder) -> Result<usize, SyncError> {
    let (conn, clock, device) = rec.sync_parts();
    let after: Option<i64> = conn.query_row(
        "SELECT checkpoint_replay_after FROM sync_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let Some(after) = after else {
        return Ok(0);
    };
    let seqs: Vec<i64> = conn
        .prepare("SELECT DISTINCT batch_id FROM op_log WHERE batch_id > ?1 ORDER BY batch_id")?
        .query_map([after], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut batches = Vec::with_capacity(seqs.len());
    for s in seqs {
        let seq = BatchSeq(s as u64);
        batches.push(Batch {
            device,
            seq,
            prev: None,
            ops: batch_ops(conn, seq)?,
        });
    }
    let report = bae_merge::apply_pull(conn, clock, device, batches)?;
    for held in &report.held {
        tracing::warn!(seq = %held.batch.seq, reason = %held.reason, "local batch did not replay after a checkpoint restore");
    }
    conn.execute(
        "UPDATE sync_state SET checkpoint_replay_after = NULL WHERE id = 1",
        [],
    )?;
    Ok(report.applied.len())
}

/// `server-bootstrap`: the read-only server's database. A new database at
/// `out` is filled from the newest checkpoint (tier 1); with `refresh`,
/// batches newer than it are replayed too (tier 2; an existing database is
/// then refreshed in place). The database is opened read-write only here.
pub async fn server_bootstrap(
    bucket_url: &str,
    key_file: &Path,
    out: &Path,
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
    let mut service = SyncService::new(OpRecorder::open(out)?, store, key);
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
