//! What a device on an older sync schema keeps of a newer writer's batches
//! (`bae_sync_kept`, `bae_sync_newer_writers`; migration `0003_kept`), and
//! how it applies them once the host opens the library with a schema that
//! knows them (docs/SCHEMA-EVOLUTION.md).
//!
//! A batch whose writer ran a newer schema version may name tables and
//! columns this device does not know (`bae_oplog::validate` lets them
//! through, bounded). Merge applies what it knows and keeps the rest with
//! the op's stamp: the whole op when its table is unknown, only the unknown
//! fields otherwise. After an upgrade each kept op applies under the usual
//! rules, as a batch arriving late would: merge's result is a function of
//! the set of ops, not of their order, so the upgraded device converges
//! with devices that knew the names all along. Kept fields of an op whose
//! known part applied already compare with `<=` against the field's
//! stamp: an insert's row stamp is that same op's.
//!
//! Names read from a batch are hostile: here they are only bound values
//! and are looked up in the schema, never spliced into SQL.

use crate::apply::Applier;
use crate::error::MergeError;
use crate::snapshot::StateRecord;
use crate::ties::{self, value_order};
use bae_hlc::{DeviceId, Stamp, Timestamp};
use bae_oplog::{Op, OpKind, OpRecorder, SyncSchema, TableSchema, Value};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::cmp::Ordering;

/// The fields of an op split by whether `schema` knows them.
type Split = (Vec<(String, Value)>, Vec<(String, Value)>);

/// `op`'s fields this schema knows, and those it does not.
pub(crate) fn split_fields(schema: &SyncSchema, op: &Op) -> Split {
    let Some(table) = schema.table(&op.table) else {
        return (Vec::new(), op.fields.clone());
    };
    op.fields.iter().cloned().partition(|(c, _)| table.syncs(c))
}

/// Keeps (part of) an op this device cannot apply yet. Keeping the same op
/// again (a batch applied twice) changes nothing. A kept op is named by its
/// stamp, table and row: a member may sign ops on different rows with one
/// stamp, and devices that know their names apply each of them.
pub(crate) fn keep(
    conn: &Connection,
    op: &Op,
    device: DeviceId,
    schema_version: u32,
    whole: bool,
    fields: &[(String, Value)],
) -> Result<(), MergeError> {
    let existing: Option<Vec<u8>> = conn
        .prepare_cached(
            "SELECT fields FROM bae_sync_kept
             WHERE device = ?1 AND hlc = ?2 AND table_name = ?3 AND row_id = ?4",
        )?
        .query_row(
            params![
                device.as_bytes().as_slice(),
                op.hlc.as_u64() as i64,
                op.table,
                op.row_id
            ],
            |r| r.get(0),
        )
        .optional()?;
    // The same op kept again (a batch applied twice), or another part of
    // it (a checkpoint's kept op and the values its writer knew): one
    // entry with every field. Another op of the same stamp on the same row
    // (its writer reused a stamp) writing one field with another value:
    // the column's type affinity is not known here, so the values a tie
    // may settle on under any affinity stay (`ties::tie_candidates`), and
    // the one for the column's own is taken once it is known.
    let mut all: Vec<(String, Value)> = match &existing {
        Some(bytes) => postcard::from_bytes(bytes).map_err(|e| corrupt(device, op.hlc, &e))?,
        None => Vec::new(),
    };
    let mut changed = false;
    for (c, v) in fields {
        let had: Vec<&Value> = all.iter().filter(|(k, _)| k == c).map(|(_, v)| v).collect();
        let mut with_it = had.clone();
        with_it.push(v);
        let candidates = ties::tie_candidates(conn, &with_it)?;
        let same = candidates.len() == had.len()
            && candidates
                .iter()
                .all(|k| had.iter().any(|h| value_order(h, k) == Ordering::Equal));
        if !same {
            all.retain(|(k, _)| k != c);
            all.extend(candidates.into_iter().map(|k| (c.clone(), k)));
            changed = true;
        }
    }
    let encoded = postcard::to_allocvec(&all).map_err(|e| corrupt(device, op.hlc, &e))?;
    if existing.is_some() {
        if changed {
            conn.prepare_cached(
                "UPDATE bae_sync_kept SET fields = ?5
                 WHERE device = ?1 AND hlc = ?2 AND table_name = ?3 AND row_id = ?4",
            )?
            .execute(params![
                device.as_bytes().as_slice(),
                op.hlc.as_u64() as i64,
                op.table,
                op.row_id,
                encoded
            ])?;
        }
        return Ok(());
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO bae_sync_kept
             (device, hlc, schema_version, table_name, row_id, kind, whole, fields)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        device.as_bytes().as_slice(),
        op.hlc.as_u64() as i64,
        schema_version,
        op.table,
        op.row_id,
        op.kind.code(),
        whole,
        encoded
    ])?;
    Ok(())
}

/// `fields` kept with one stamp, one value per column: of a column's tie
/// candidates (`keep`), the one a tie settles on under its affinity.
fn settle_kept(
    conn: &Connection,
    table: &TableSchema,
    fields: Vec<(String, Value)>,
) -> Result<Vec<(String, Value)>, MergeError> {
    let mut out: Vec<(String, Value)> = Vec::with_capacity(fields.len());
    for (c, _) in &fields {
        if out.iter().any(|(k, _)| k == c) {
            continue;
        }
        let values: Vec<&Value> = fields
            .iter()
            .filter(|(k, _)| k == c)
            .map(|(_, v)| v)
            .collect();
        if let Some(v) = ties::settled(conn, table, c, &values)? {
            out.push((c.clone(), v.clone()));
        }
    }
    Ok(out)
}

/// Notes that `device` writes schema `version`, newer than this device's.
pub(crate) fn note_newer_writer(
    conn: &Connection,
    device: DeviceId,
    version: u32,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        "INSERT INTO bae_sync_newer_writers (device, schema_version) VALUES (?1, ?2)
         ON CONFLICT (device) DO UPDATE SET schema_version = max(schema_version, excluded.schema_version)",
    )?
    .execute(params![device.as_bytes().as_slice(), version])?;
    Ok(())
}

/// One kept op as a snapshot record, from a row of
/// `SELECT device, hlc, schema_version, table_name, row_id, kind, whole, fields`.
pub(crate) fn kept_record(r: &rusqlite::Row<'_>) -> Result<StateRecord, MergeError> {
    let table: String = r.get(3)?;
    let row_id: String = r.get(4)?;
    let device: Vec<u8> = r.get(0)?;
    let device = <[u8; 16]>::try_from(device.as_slice()).map_err(|_| MergeError::CorruptStamp {
        table: table.clone(),
        row_id: row_id.clone(),
    })?;
    let hlc = r.get::<_, i64>(1)? as u64;
    let fields: Vec<u8> = r.get(7)?;
    let fields = postcard::from_bytes(&fields)
        .map_err(|e| corrupt(DeviceId::from_bytes(device), Timestamp::from_u64(hlc), &e))?;
    Ok(StateRecord::Kept {
        device,
        hlc,
        schema_version: r.get(2)?,
        table,
        row_id,
        kind: r.get(5)?,
        whole: r.get(6)?,
        fields,
    })
}

/// Checks a snapshot's kept op as a batch from a newer writer is checked:
/// a valid kind and HLC, names that are plain identifiers of at most
/// `bae_oplog::MAX_NAME_BYTES`, values of at most
/// `bae_oplog::MAX_KEPT_VALUE_BYTES` (names this device knows too).
pub(crate) fn check_kept_record(record: &StateRecord) -> Result<(), bae_oplog::CodecError> {
    static NOTHING: SyncSchema = SyncSchema::new(&[], None);
    let StateRecord::Kept {
        device,
        hlc,
        table,
        row_id,
        kind,
        fields,
        ..
    } = record
    else {
        return Ok(());
    };
    let kind = OpKind::from_code(i64::from(*kind)).ok_or(bae_oplog::CodecError::BadOp {
        index: 0,
        reason: "unknown op kind",
    })?;
    // Against an empty schema every name is unknown, so every name and
    // value is held to the bounds of a newer writer's.
    let batch = bae_oplog::Batch {
        schema_version: u32::MAX,
        device: DeviceId::from_bytes(*device),
        seq: bae_oplog::BatchSeq(1),
        prev: None,
        ops: vec![Op {
            hlc: Timestamp::from_u64(*hlc),
            table: table.clone(),
            row_id: row_id.clone(),
            kind,
            fields: Vec::new(),
        }],
    };
    bae_oplog::validate(&batch, &NOTHING)?;
    // A column may be kept with several values (the tie candidates of
    // `keep`): each is checked as a field of an op of its own.
    for field in fields {
        let mut one = batch.clone();
        one.ops[0].fields = vec![field.clone()];
        bae_oplog::validate(&one, &NOTHING)?;
    }
    Ok(())
}

/// Restores a snapshot's kept op, and has the next [`apply_kept`] try
/// every kept op again (this device's schema may know what the
/// snapshot's writer did not).
pub(crate) fn restore_kept(conn: &Connection, record: &StateRecord) -> Result<(), MergeError> {
    let StateRecord::Kept {
        device,
        hlc,
        schema_version,
        table,
        row_id,
        kind,
        whole,
        fields,
    } = record
    else {
        return Ok(());
    };
    let device = DeviceId::from_bytes(*device);
    let hlc = Timestamp::from_u64(*hlc);
    let kind = OpKind::from_code(i64::from(*kind)).ok_or(MergeError::CorruptKept {
        device,
        hlc: hlc.as_u64(),
        reason: "unknown op kind".into(),
    })?;
    let op = Op {
        hlc,
        table: table.clone(),
        row_id: row_id.clone(),
        kind,
        fields: Vec::new(),
    };
    keep(conn, &op, device, *schema_version, *whole, fields)?;
    conn.prepare_cached("UPDATE bae_sync_merge SET kept_replayed_version = 0 WHERE id = 1")?
        .execute([])?;
    Ok(())
}

/// A device whose batches carry a newer schema than this device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NewerWriter {
    /// The device.
    pub device: DeviceId,
    /// The newest schema version its batches carried.
    pub schema_version: u32,
}

/// The devices whose batches carry a schema newer than `schema`, and how
/// many ops (or parts of ops) this device keeps unapplied until it updates.
pub fn newer_writers(
    conn: &Connection,
    schema: &SyncSchema,
) -> Result<(Vec<NewerWriter>, u64), MergeError> {
    // The writers of kept ops count too: a device that restored a
    // checkpoint knows them from its kept ops alone.
    let mut stmt = conn.prepare_cached(
        "SELECT device, max(schema_version) FROM (
             SELECT device, schema_version FROM bae_sync_newer_writers
             UNION ALL SELECT device, schema_version FROM bae_sync_kept)
         GROUP BY device HAVING max(schema_version) > ?1 ORDER BY device",
    )?;
    let mut rows = stmt.query([schema.version()])?;
    let mut writers = Vec::new();
    while let Some(r) = rows.next()? {
        let bytes: Vec<u8> = r.get(0)?;
        let Ok(bytes) = <[u8; 16]>::try_from(bytes.as_slice()) else {
            continue;
        };
        writers.push(NewerWriter {
            device: DeviceId::from_bytes(bytes),
            schema_version: r.get(1)?,
        });
    }
    let kept: i64 = conn
        .prepare_cached("SELECT count(*) FROM bae_sync_kept")?
        .query_row([], |r| r.get(0))?;
    Ok((writers, kept as u64))
}

/// What [`apply_kept`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeptReport {
    /// Kept ops (or parts) applied and removed.
    pub applied: u64,
    /// Kept ops whose table the schema now knows but that wait for a parent
    /// or row that has not arrived (retried after every pull).
    pub waiting: u64,
    /// Kept ops still naming only what this schema does not know.
    pub unknown: u64,
}

/// Applies what this device kept of newer writers' batches and its schema
/// now knows: after an upgrade every kept op, otherwise only those that
/// were waiting for a parent. Each op in its own transaction, oldest stamp
/// first, retrying those whose parent had not arrived until a round makes
/// no progress.
pub fn apply_kept(rec: &mut OpRecorder) -> Result<KeptReport, MergeError> {
    let schema = rec.schema();
    let (conn, _, local) = rec.sync_parts();
    let replayed: u32 = conn.query_row(
        "SELECT kept_replayed_version FROM bae_sync_merge WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let upgraded = replayed < schema.version();
    let sql = if upgraded {
        "SELECT device, hlc, table_name, row_id FROM bae_sync_kept
         ORDER BY hlc, device, table_name, row_id"
    } else {
        "SELECT device, hlc, table_name, row_id FROM bae_sync_kept WHERE ready = 1
         ORDER BY hlc, device, table_name, row_id"
    };
    let mut pending: Vec<KeptKey> = conn
        .prepare(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut report = KeptReport::default();
    loop {
        let before = report.applied;
        let mut waiting = Vec::new();
        for key in pending {
            match replay_one(conn, schema, local, &key)? {
                Replay::Applied => report.applied += 1,
                Replay::Waiting => waiting.push(key),
                Replay::Unknown => report.unknown += 1,
            }
        }
        if waiting.is_empty() || report.applied == before {
            report.waiting = waiting.len() as u64;
            break;
        }
        pending = waiting;
    }
    if upgraded {
        conn.execute(
            "UPDATE bae_sync_merge SET kept_replayed_version = ?1 WHERE id = 1",
            [schema.version()],
        )?;
        conn.execute(
            "DELETE FROM bae_sync_newer_writers WHERE schema_version <= ?1",
            [schema.version()],
        )?;
    }
    if report != KeptReport::default() {
        tracing::info!(?report, "kept ops of newer writers");
    }
    Ok(report)
}

/// A kept op's primary key: its writer, HLC, table and row.
type KeptKey = (Vec<u8>, i64, String, String);

enum Replay {
    Applied,
    Waiting,
    Unknown,
}

/// One kept op in one transaction: applies what the schema knows of it,
/// keeps the rest. A missing parent or row rolls it back and marks it ready.
fn replay_one(
    conn: &mut Connection,
    schema: &'static SyncSchema,
    local: DeviceId,
    key: &KeptKey,
) -> Result<Replay, MergeError> {
    let (device_bytes, hlc, table, row_id) = key;
    let (table, row_id) = (table.clone(), row_id.clone());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let row: Option<(u32, i64, bool, Vec<u8>)> = tx
        .query_row(
            "SELECT schema_version, kind, whole, fields FROM bae_sync_kept
             WHERE device = ?1 AND hlc = ?2 AND table_name = ?3 AND row_id = ?4",
            params![device_bytes, hlc, table, row_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((version, kind, whole, fields)) = row else {
        return Ok(Replay::Applied);
    };
    let stamp_hlc = Timestamp::from_u64(*hlc as u64);
    let device = <[u8; 16]>::try_from(device_bytes.as_slice())
        .map(DeviceId::from_bytes)
        .map_err(|_| MergeError::CorruptStamp {
            table: table.clone(),
            row_id: row_id.clone(),
        })?;
    let fields: Vec<(String, Value)> =
        postcard::from_bytes(&fields).map_err(|e| corrupt(device, stamp_hlc, &e))?;
    let kind = OpKind::from_code(kind).ok_or(MergeError::CorruptStamp {
        table: table.clone(),
        row_id: row_id.clone(),
    })?;
    let op = Op {
        hlc: stamp_hlc,
        table,
        row_id,
        kind,
        fields,
    };
    let Some(known_table) = schema.table(&op.table) else {
        return Ok(Replay::Unknown);
    };
    let (known, unknown) = split_fields(schema, &op);
    if !whole && known.is_empty() {
        return Ok(Replay::Unknown);
    }
    let result = {
        let mut applier = Applier::new(&tx, schema)?;
        applier.fold_local(local)?;
        let stamp = Stamp::new(op.hlc, device);
        let known_op = Op {
            fields: settle_kept(&tx, known_table, known)?,
            ..op.clone()
        };
        let applied = if whole {
            applier.apply_known(&known_op, known_table, stamp)
        } else {
            applier.write_late(known_table, &known_op, stamp)
        };
        applied.and_then(|()| applier.settle())
    };
    match result {
        Ok(()) => {}
        // A parent or row that has not arrived: retried after every pull.
        // Anything else the op itself causes (a constraint the host's
        // table adds) is retried too rather than blocking the library's
        // open: it stays kept, and in status.
        Err(e) if e.is_retryable() || !e.is_local_failure() => {
            if !e.is_retryable() {
                tracing::warn!(table = %op.table, row = %op.row_id, error = %e, "kept op does not apply");
            }
            drop(tx);
            conn.execute(
                "UPDATE bae_sync_kept SET ready = 1
                 WHERE device = ?1 AND hlc = ?2 AND table_name = ?3 AND row_id = ?4",
                params![device_bytes, hlc, op.table, op.row_id],
            )?;
            return Ok(Replay::Waiting);
        }
        Err(e) => return Err(e),
    }
    tx.execute(
        "DELETE FROM bae_sync_kept
         WHERE device = ?1 AND hlc = ?2 AND table_name = ?3 AND row_id = ?4",
        params![device_bytes, hlc, op.table, op.row_id],
    )?;
    if !unknown.is_empty() {
        // Known now: the op's table and some fields; still unknown: the rest.
        keep(&tx, &op, device, version, false, &unknown)?;
    }
    tx.commit()?;
    Ok(Replay::Applied)
}

fn corrupt(device: DeviceId, hlc: Timestamp, e: &postcard::Error) -> MergeError {
    MergeError::CorruptKept {
        device,
        hlc: hlc.as_u64(),
        reason: e.to_string(),
    }
}
