//! Restoring a snapshot written under a newer sync schema than this
//! device's (docs/SCHEMA-EVOLUTION.md, "Checkpoints"): what this schema
//! knows restores as usual; rows, values, stamps and tombstones of tables
//! and columns it does not know are held aside while the records stream in
//! (`temp.bae_sync_ck_held`, named by the writer's column lists in
//! `temp.bae_sync_ck_columns`), then [`finish`] turns them into kept ops
//! with their stamps, exactly as if this device had kept them from the
//! writer's batches: a row's values at its insert stamp become an insert,
//! each newer column stamp an update, a tombstone a delete. They apply
//! when the device upgrades ([`crate::apply_kept`]).
//!
//! Names from a snapshot are hostile: here they are bound values only,
//! bounded as a newer writer's batch's are.

use crate::error::MergeError;
use crate::kept;
use crate::snapshot::{RestoreError, StateRecord};
use crate::state::{self, ROW_COLUMN};
use bae_hlc::{DeviceId, Stamp, Timestamp};
use bae_oplog::{Batch, BatchSeq, CodecError, Op, OpKind, SyncSchema, Value};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::BTreeMap;

/// Whether `record` names a table or column `schema` does not know, or
/// carries more values than it has columns.
pub(crate) fn names_unknown(schema: &SyncSchema, record: &StateRecord) -> bool {
    let (table, column) = match record {
        StateRecord::Row { table, values, .. } => {
            return schema
                .table(table)
                .is_none_or(|t| values.len() > t.columns.len())
        }
        StateRecord::Columns { table, columns } => {
            return schema
                .table(table)
                .is_none_or(|t| columns.len() > t.columns.len())
        }
        StateRecord::Stamp { table, column, .. } | StateRecord::Parked { table, column, .. } => {
            (table, Some(column))
        }
        StateRecord::Tombstone { table, .. } => (table, None),
        StateRecord::Kept { .. } => return false,
    };
    match schema.table(table) {
        None => true,
        Some(t) => column.is_some_and(|c| c != ROW_COLUMN && !t.syncs(c)),
    }
}

/// Checks a record naming what this schema does not know, from a newer
/// writer: names are plain identifiers of at most 64 bytes, values at most
/// 1 MiB, HLCs in range, and a known table's column list agrees with this
/// schema's as far as it goes.
pub(crate) fn check(schema: &SyncSchema, record: &StateRecord) -> Result<(), RestoreError> {
    let bad = RestoreError::BadKept;
    match record {
        StateRecord::Row { table, values, .. } => {
            bounded(table, &[], values).map_err(bad)?;
        }
        StateRecord::Columns { table, columns } => {
            let names: Vec<&str> = columns.iter().map(String::as_str).collect();
            bounded(table, &names, &[]).map_err(bad)?;
            if let Some(t) = schema.table(table) {
                let prefix = StateRecord::Columns {
                    table: table.clone(),
                    columns: columns.iter().take(t.columns.len()).cloned().collect(),
                };
                crate::snapshot::check_record(schema, &prefix, 0)?;
            }
        }
        StateRecord::Stamp { table, column, .. } => {
            let names: Vec<&str> = if column == ROW_COLUMN {
                vec![]
            } else {
                vec![column]
            };
            bounded(table, &names, &[]).map_err(bad)?;
        }
        StateRecord::Parked {
            table,
            column,
            value,
            ..
        } => bounded(table, &[column], std::slice::from_ref(value)).map_err(bad)?,
        StateRecord::Tombstone { table, .. } => bounded(table, &[], &[]).map_err(bad)?,
        StateRecord::Kept { .. } => {}
    }
    Ok(())
}

/// Holds one such record aside (a known table's row restores its known
/// columns first).
pub(crate) fn hold(
    conn: &Connection,
    schema: &SyncSchema,
    record: &StateRecord,
    cache: &mut crate::snapshot::RestoreCache,
) -> Result<(), RestoreError> {
    conn.execute_batch(
        r#"CREATE TEMP TABLE IF NOT EXISTS bae_sync_ck_columns (
               table_name TEXT NOT NULL, position INTEGER NOT NULL, column_name TEXT NOT NULL,
               PRIMARY KEY (table_name, position));
           CREATE TEMP TABLE IF NOT EXISTS bae_sync_ck_held (
               what TEXT NOT NULL, table_name TEXT NOT NULL, row_id TEXT NOT NULL,
               "column" TEXT, value, hlc INTEGER, device BLOB);"#,
    )?;
    let held = |what: &str,
                table: &str,
                row: &str,
                column: Option<&str>,
                value: Option<&Value>,
                stamp: Option<(u64, &[u8; 16])>| {
        conn.prepare_cached(
            r#"INSERT INTO temp.bae_sync_ck_held (what, table_name, row_id, "column", value, hlc, device)
               VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#,
        )?
        .execute(params![
            what,
            table,
            row,
            column,
            value,
            stamp.map(|s| s.0 as i64),
            stamp.map(|s| s.1.as_slice())
        ])
    };
    match record {
        StateRecord::Columns { table, columns } => {
            for (position, name) in columns.iter().enumerate() {
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO temp.bae_sync_ck_columns (table_name, position, column_name)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![table, position, name])?;
            }
        }
        StateRecord::Row { table, id, values } => {
            let known = schema.table(table).map_or(0, |t| t.columns.len());
            if known > 0 {
                let prefix = StateRecord::Row {
                    table: table.clone(),
                    id: id.clone(),
                    values: values[..known.min(values.len())].to_vec(),
                };
                crate::snapshot::restore_record(conn, schema, &prefix, 0, cache)?;
            }
            for (position, value) in values.iter().enumerate().skip(known) {
                let column: Option<String> = conn
                    .prepare_cached(
                        "SELECT column_name FROM temp.bae_sync_ck_columns
                         WHERE table_name = ?1 AND position = ?2",
                    )?
                    .query_row(params![table, position], |r| r.get(0))
                    .optional()?;
                let Some(column) = column else {
                    return Err(RestoreError::UnknownColumn {
                        table: table.clone(),
                        column: format!("#{position}"),
                    });
                };
                held("value", table, id, Some(&column), Some(value), None)?;
            }
        }
        StateRecord::Parked {
            table,
            row_id,
            column,
            value,
        } => {
            held("value", table, row_id, Some(column), Some(value), None)?;
        }
        StateRecord::Stamp {
            table,
            row_id,
            column,
            hlc,
            device,
        } => {
            held(
                "stamp",
                table,
                row_id,
                Some(column),
                None,
                Some((*hlc, device)),
            )?;
        }
        StateRecord::Tombstone {
            table,
            row_id,
            hlc,
            device,
        } => {
            held("tomb", table, row_id, None, None, Some((*hlc, device)))?;
        }
        StateRecord::Kept { .. } => {}
    }
    Ok(())
}

/// Turns what [`hold`] held into kept ops and drops the holding tables;
/// notes the snapshot's `writer` as writing `writer_version`. The kept ops
/// carry schema version 0: which version each op's own device ran is not
/// in a snapshot. A held value without any stamp (a row written before
/// sync began) cannot be ordered against other writes and is dropped.
pub(crate) fn finish(
    conn: &Connection,
    schema: &SyncSchema,
    writer: DeviceId,
    writer_version: u32,
) -> Result<(), MergeError> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM temp.sqlite_master WHERE name = 'bae_sync_ck_held')",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(());
    }
    let rows: Vec<(String, String)> = conn
        .prepare("SELECT DISTINCT table_name, row_id FROM temp.bae_sync_ck_held ORDER BY 1, 2")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (table, row_id) in rows {
        keep_row(conn, schema, &table, &row_id)?;
    }
    kept::note_newer_writer(conn, writer, writer_version)?;
    conn.execute_batch(
        "DROP TABLE temp.bae_sync_ck_held; DROP TABLE IF EXISTS temp.bae_sync_ck_columns;",
    )?;
    Ok(())
}

/// One row's held entries as kept ops.
fn keep_row(
    conn: &Connection,
    schema: &SyncSchema,
    table: &str,
    row_id: &str,
) -> Result<(), MergeError> {
    let mut stamps: BTreeMap<String, Stamp> = BTreeMap::new();
    let mut values: Vec<(String, Value)> = Vec::new();
    let mut tomb = None;
    {
        let mut stmt = conn.prepare_cached(
            r#"SELECT what, "column", value, hlc, device FROM temp.bae_sync_ck_held
               WHERE table_name = ?1 AND row_id = ?2"#,
        )?;
        let mut rows = stmt.query(params![table, row_id])?;
        while let Some(r) = rows.next()? {
            let what: String = r.get(0)?;
            let stamp = match r.get::<_, Option<i64>>(3)? {
                Some(hlc) => Some(crate::stamps::stamp_from(
                    table,
                    row_id,
                    hlc,
                    r.get_ref(4)?,
                )?),
                None => None,
            };
            match (what.as_str(), stamp) {
                ("value", _) => values.push((r.get(1)?, Value::from(r.get_ref(2)?))),
                ("stamp", Some(s)) => {
                    stamps.insert(r.get(1)?, s);
                }
                ("tomb", Some(s)) => tomb = Some(s),
                _ => {}
            }
        }
    }
    let known = schema.table(table);
    let whole = known.is_none();
    // The row's insert stamp: held for an unknown table, restored for a
    // known one.
    let ins = match known {
        None => stamps.get(ROW_COLUMN).copied(),
        Some(t) => state::load_row(conn, t, row_id)?.ins,
    };
    let mut ops: BTreeMap<Stamp, Vec<(String, Value)>> = BTreeMap::new();
    // A row of an unknown table that lives by its own stamps is an insert
    // of every value it has (an insert writes every column; the newer
    // updates below write theirs again). One its tombstone killed is its
    // delete and the updates after it: its older values are gone, as
    // merge's tombstone rule has it.
    let lives = ins.is_some() && ins > tomb;
    if let (true, true, Some(s)) = (whole, lives, ins) {
        ops.insert(s, values.clone());
    }
    for (column, value) in values {
        let Some(s) = stamps.get(&column).copied().max(ins) else {
            continue;
        };
        if whole && Some(s) == ins {
            continue;
        }
        let entry = ops.entry(s).or_default();
        if !entry.iter().any(|(c, _)| *c == column) {
            entry.push((column, value));
        }
    }
    for (stamp, fields) in ops {
        let kind = if Some(stamp) == ins {
            OpKind::Insert
        } else {
            OpKind::Update
        };
        let op = Op {
            hlc: stamp.hlc,
            table: table.to_owned(),
            row_id: row_id.to_owned(),
            kind,
            fields: Vec::new(),
        };
        kept::keep(conn, &op, stamp.device, 0, whole, &fields)?;
    }
    if let (true, Some(t)) = (whole, tomb) {
        let op = Op {
            hlc: t.hlc,
            table: table.to_owned(),
            row_id: row_id.to_owned(),
            kind: OpKind::Delete,
            fields: Vec::new(),
        };
        kept::keep(conn, &op, t.device, 0, true, &[])?;
    }
    conn.prepare_cached("UPDATE bae_sync_merge SET kept_replayed_version = 0 WHERE id = 1")?
        .execute([])?;
    Ok(())
}

/// Names and values held to a newer writer's bounds, checked as ops of
/// such a writer against an empty schema: the table by an op without
/// fields, each name and value by an op of its own (values under a
/// placeholder name; an op may name a column only once).
fn bounded(table: &str, columns: &[&str], values: &[Value]) -> Result<(), CodecError> {
    static NOTHING: SyncSchema = SyncSchema::new(&[], None);
    let fields = columns
        .iter()
        .map(|c| ((*c).to_owned(), Value::Null))
        .chain(values.iter().map(|v| ("v".to_owned(), v.clone())));
    for fields in std::iter::once(Vec::new()).chain(fields.map(|f| vec![f])) {
        let batch = Batch {
            schema_version: u32::MAX,
            device: DeviceId::from_bytes([0; 16]),
            seq: BatchSeq(1),
            prev: None,
            ops: vec![Op {
                hlc: Timestamp::from_u64(1),
                table: table.to_owned(),
                row_id: "-".to_owned(),
                kind: OpKind::Update,
                fields,
            }],
        };
        bae_oplog::validate(&batch, &NOTHING)?;
    }
    Ok(())
}
