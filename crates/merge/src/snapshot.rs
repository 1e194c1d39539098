//! The merge state as a stream of records, and back: what a checkpoint
//! carries (the sync service frames, seals and uploads the stream; this
//! module is the only code that reads or writes the state's tables for it).
//!
//! A snapshot is every present row of every synced table (parents first),
//! then the stamps a reader needs, the tombstones and the parked values.
//! Restoring checks every table and column name of every record against the
//! sync schema before anything reaches SQL: a checkpoint is bytes from a
//! bucket, and a name from it is never spliced into a statement.

use crate::error::MergeError;
use crate::keys::{row_id_of, row_key};
use crate::stamps::{folded_seq, set_folded_seq, StampIds};
use crate::state::ROW_COLUMN;
use bae_hlc::DeviceId;
use bae_oplog::{BatchSeq, SyncSchema, Value};
use rusqlite::{params, Connection, OptionalExtension, ToSql};
use std::collections::HashMap;
use std::path::Path;

/// One record of the merge state.
#[derive(Clone, Debug, PartialEq)]
pub enum StateRecord {
    /// A present row: its synced columns in the schema's order.
    Row {
        /// The table.
        table: String,
        /// The row id.
        id: String,
        /// One value per synced column.
        values: Vec<Value>,
    },
    /// A field's stamp, or a row's insert stamp under [`ROW_COLUMN`].
    Stamp {
        /// The table.
        table: String,
        /// The row id.
        row_id: String,
        /// The column, or [`ROW_COLUMN`].
        column: String,
        /// The stamp's HLC (packed).
        hlc: u64,
        /// The stamp's device.
        device: [u8; 16],
    },
    /// A row's newest delete.
    Tombstone {
        /// The table.
        table: String,
        /// The row id.
        row_id: String,
        /// The delete's HLC (packed).
        hlc: u64,
        /// The deleting device.
        device: [u8; 16],
    },
    /// A kept value of a known but absent row.
    Parked {
        /// The table.
        table: String,
        /// The row id.
        row_id: String,
        /// The column.
        column: String,
        /// The kept value.
        value: Value,
    },
    /// A synced table's columns in the writer's schema, in order: the
    /// names of the values of its `Row` records (first in a snapshot, one
    /// per table).
    Columns {
        /// The table.
        table: String,
        /// Its synced columns.
        columns: Vec<String>,
    },
    /// An op (or the part of one) of a newer writer that the snapshot's
    /// writer kept, not knowing its table or columns (`bae_sync_kept`;
    /// last in a snapshot).
    Kept {
        /// The op's device.
        device: [u8; 16],
        /// The op's HLC (packed).
        hlc: u64,
        /// The op's writer's schema version.
        schema_version: u32,
        /// The table, as the op names it.
        table: String,
        /// The row id.
        row_id: String,
        /// The op kind's code (0 insert, 1 update, 2 delete).
        kind: u8,
        /// Whether this is the whole op (its table was unknown) or only its
        /// unknown fields.
        whole: bool,
        /// The kept fields.
        fields: Vec<(String, Value)>,
    },
}

/// Why a record cannot be restored. The record names what was wrong; the
/// caller names the object it came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// A table that does not sync.
    #[error("table {0:?} does not sync")]
    UnknownTable(String),
    /// A column that does not sync in its table.
    #[error("column {table}.{column:?} does not sync")]
    UnknownColumn {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A row with a value count other than its table's synced columns.
    #[error("row {table}/{id}: {found} values for {expected} columns")]
    WrongValueCount {
        /// The table.
        table: String,
        /// The row.
        id: String,
        /// Values in the record.
        found: usize,
        /// Synced columns of the table.
        expected: usize,
    },
    /// A stamp or tombstone whose HLC is outside the accepted range.
    #[error("{table}/{row_id}: HLC outside the accepted range")]
    HlcOutOfRange {
        /// The table.
        table: String,
        /// The row.
        row_id: String,
    },
    /// A second insert stamp or tombstone for one row.
    #[error("{table}/{row_id}: a second {what} for the row")]
    Duplicate {
        /// The table.
        table: String,
        /// The row.
        row_id: String,
        /// `insert stamp` or `tombstone`.
        what: &'static str,
    },
    /// A kept op whose names or values are out of bounds, or whose kind or
    /// HLC is invalid.
    #[error("kept op: {0}")]
    BadKept(bae_oplog::CodecError),
    /// A table's column list that contradicts this device's schema (a
    /// column renamed, moved or dropped).
    #[error("table {table}: the snapshot's column {position} is {found:?}, this schema's is {expected:?}")]
    ColumnMismatch {
        /// The table.
        table: String,
        /// The position.
        position: usize,
        /// The snapshot's column there.
        found: String,
        /// This schema's.
        expected: String,
    },
    /// A record the database refuses (a duplicate, a row whose parent the
    /// snapshot lacks, a value of the wrong type for a constraint).
    #[error("record refused by the database: {0}")]
    Refused(rusqlite::Error),
    /// The merge state could not be read or written.
    #[error(transparent)]
    Merge(#[from] MergeError),
}

impl From<rusqlite::Error> for RestoreError {
    fn from(e: rusqlite::Error) -> Self {
        RestoreError::Merge(MergeError::Db(e))
    }
}

/// Every stamp as a snapshot record's parts (table, row key, column or
/// [`ROW_COLUMN`], hlc, device bytes), by table, row key, then column
/// (`#row` first; readers depend on no order). The stamp
/// tables hold only column stamps newer than their row's insert stamp, the
/// ones a reader needs.
fn stamps_sql() -> String {
    format!(
        r#"SELECT * FROM (
             SELECT t.name, r.row_key, '{ROW_COLUMN}' AS "column", r.ins_hlc, w.device
             FROM bae_sync_row_stamps r JOIN bae_sync_table_ids t ON t.id = r.table_id
             LEFT JOIN bae_sync_writers w ON w.id = r.ins_writer
             WHERE r.ins_hlc IS NOT NULL
             UNION ALL
             SELECT t.name, c.row_key, c."column", c.hlc, w.device
             FROM bae_sync_column_stamps c JOIN bae_sync_table_ids t ON t.id = c.table_id
             LEFT JOIN bae_sync_writers w ON w.id = c.writer)
           ORDER BY 1, 2, 3"#
    )
}

/// How many records [`snapshot`] writes from this database (run both in
/// one read transaction).
pub fn snapshot_len(conn: &Connection, schema: &SyncSchema) -> Result<u64, MergeError> {
    let mut queries: Vec<String> = schema
        .tables()
        .iter()
        .map(|t| format!("SELECT COUNT(*) FROM {}", t.name))
        .collect();
    queries.push("SELECT COUNT(ins_hlc) + COUNT(del_hlc) FROM bae_sync_row_stamps".into());
    queries.push("SELECT COUNT(*) FROM bae_sync_column_stamps".into());
    queries.push("SELECT COUNT(*) FROM bae_sync_parked".into());
    queries.push("SELECT COUNT(*) FROM bae_sync_kept".into());
    // One column list per table.
    let mut total = schema.tables().len() as u64;
    for q in queries {
        let n: i64 = conn.query_row(&q, [], |r| r.get(0))?;
        total = total.saturating_add(u64::try_from(n).unwrap_or(0));
    }
    Ok(total)
}

/// Streams the merge state to `sink`: rows (parents first), stamps,
/// tombstones, parked values, each group in a stable order. Run inside a
/// read transaction after [`crate::fold_local`], so no local write is
/// missing. Returns the records written.
pub fn snapshot<E>(
    conn: &Connection,
    schema: &SyncSchema,
    mut sink: impl FnMut(StateRecord) -> Result<(), E>,
) -> Result<u64, SnapshotError<E>> {
    let mut n = 0u64;
    let mut emit = |record| {
        n += 1;
        sink(record).map_err(SnapshotError::Sink)
    };
    for table in schema.tables() {
        emit(StateRecord::Columns {
            table: table.name.to_owned(),
            columns: table.columns.iter().map(|c| (*c).to_owned()).collect(),
        })?;
    }
    for table in schema.tables() {
        let mut stmt = conn.prepare(&table.select_rows_sql())?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let mut values = Vec::with_capacity(table.columns.len());
            for i in 0..table.columns.len() {
                values.push(Value::from(r.get_ref(i + 1)?));
            }
            emit(StateRecord::Row {
                table: table.name.to_owned(),
                id: r.get(0)?,
                values,
            })?;
        }
    }
    let mut stmt = conn.prepare(&stamps_sql())?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (table, row_id) = table_and_row(r)?;
        let device = device_bytes(r, 4, &table, &row_id)?;
        emit(StateRecord::Stamp {
            table,
            row_id,
            column: r.get(2)?,
            hlc: r.get::<_, i64>(3)? as u64,
            device,
        })?;
    }
    let mut stmt = conn.prepare(
        "SELECT t.name, r.row_key, r.del_hlc, w.device
         FROM bae_sync_row_stamps r JOIN bae_sync_table_ids t ON t.id = r.table_id
         LEFT JOIN bae_sync_writers w ON w.id = r.del_writer
         WHERE r.del_hlc IS NOT NULL ORDER BY 1, 2",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (table, row_id) = table_and_row(r)?;
        let device = device_bytes(r, 3, &table, &row_id)?;
        emit(StateRecord::Tombstone {
            table,
            row_id,
            hlc: r.get::<_, i64>(2)? as u64,
            device,
        })?;
    }
    let mut stmt = conn.prepare(
        r#"SELECT table_name, row_id, "column", value FROM bae_sync_parked ORDER BY 1, 2, 3"#,
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        emit(StateRecord::Parked {
            table: r.get(0)?,
            row_id: r.get(1)?,
            column: r.get(2)?,
            value: Value::from(r.get_ref(3)?),
        })?;
    }
    let mut stmt = conn.prepare(
        "SELECT device, hlc, schema_version, table_name, row_id, kind, whole, fields
         FROM bae_sync_kept ORDER BY device, hlc, table_name, row_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        emit(crate::kept::kept_record(r)?)?;
    }
    Ok(n)
}

/// Why a snapshot stopped.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError<E> {
    /// Reading the state failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The sink refused a record.
    #[error("writing the snapshot: {0}")]
    Sink(E),
}

impl<E> From<rusqlite::Error> for SnapshotError<E> {
    fn from(e: rusqlite::Error) -> Self {
        SnapshotError::Merge(MergeError::Db(e))
    }
}

/// The table (column 0) and row id (the key in column 1) of a stamp row.
fn table_and_row(r: &rusqlite::Row<'_>) -> Result<(String, String), MergeError> {
    let table: String = r.get(0)?;
    let row_id = row_id_of(&table, r.get_ref(1)?)?;
    Ok((table, row_id))
}

/// A stamp's device bytes (NULL when its writer number names no device).
fn device_bytes(
    r: &rusqlite::Row<'_>,
    i: usize,
    table: &str,
    row_id: &str,
) -> Result<[u8; 16], MergeError> {
    match r.get_ref(i)? {
        rusqlite::types::ValueRef::Blob(b) => <[u8; 16]>::try_from(b).ok(),
        _ => None,
    }
    .ok_or_else(|| MergeError::CorruptStamp {
        table: table.to_owned(),
        row_id: row_id.to_owned(),
    })
}

/// The newest HLC of any stamp, tombstone or kept op (packed), if any: a
/// snapshot's HLC must be at least this, since it is newer than every write
/// it holds.
pub fn newest_stamp(conn: &Connection) -> Result<Option<u64>, MergeError> {
    let n: Option<i64> = conn.query_row(
        // One aggregate per column: SQLite's two-argument MAX is NULL when
        // either argument is (no tombstone at all made it miss every insert).
        "SELECT MAX(h) FROM (SELECT MAX(ins_hlc) AS h FROM bae_sync_row_stamps
                             UNION ALL SELECT MAX(del_hlc) FROM bae_sync_row_stamps
                             UNION ALL SELECT MAX(hlc) FROM bae_sync_column_stamps
                             UNION ALL SELECT MAX(hlc) FROM bae_sync_kept)",
        [],
        |r| r.get(0),
    )?;
    Ok(n.and_then(|n| u64::try_from(n).ok()))
}

/// The newest local op seq whose stamps the merge state holds: a local
/// batch is in a snapshot only if all its ops are at or below it.
pub fn folded_through(conn: &Connection) -> Result<i64, MergeError> {
    folded_seq(conn)
}

/// How many entries each part of the merge state holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Row (insert) stamps and column stamps newer than their row's.
    pub stamps: u64,
    /// Tombstones.
    pub tombstones: u64,
    /// Parked values.
    pub parked: u64,
}

/// Counts the merge state's entries (status, tests, size benchmarks).
pub fn counts(conn: &Connection) -> Result<StateCounts, MergeError> {
    let count = |sql: &str| -> Result<u64, MergeError> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok(StateCounts {
        stamps: count(
            "SELECT (SELECT COUNT(ins_hlc) FROM bae_sync_row_stamps)
                  + (SELECT COUNT(*) FROM bae_sync_column_stamps)",
        )?,
        tombstones: count("SELECT COUNT(del_hlc) FROM bae_sync_row_stamps")?,
        parked: count("SELECT COUNT(*) FROM bae_sync_parked")?,
    })
}

/// Whether the library holds no synced row and no merge state (nothing
/// to merge a snapshot with: it can be restored record by record).
pub fn is_empty(conn: &Connection, schema: &SyncSchema) -> Result<bool, MergeError> {
    let mut tables: Vec<&str> = schema.tables().iter().map(|t| t.name).collect();
    tables.extend([
        "bae_sync_row_stamps",
        "bae_sync_column_stamps",
        "bae_sync_parked",
        "bae_sync_kept",
    ]);
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

/// Checks a record's table and column names and value count against
/// `schema`, without touching a database: a checkpoint is checked whole
/// before any of it is restored. A snapshot whose writer ran a newer
/// schema (`writer_version`) may name tables and columns `schema` does not
/// know, within a newer writer's bounds; [`restore_record`] keeps them.
pub fn check_record(
    schema: &SyncSchema,
    record: &StateRecord,
    writer_version: u32,
) -> Result<(), RestoreError> {
    if writer_version > schema.version() && crate::newer_snapshot::names_unknown(schema, record) {
        return crate::newer_snapshot::check(schema, record);
    }
    let table_of = |t: &str| {
        schema
            .table(t)
            .ok_or_else(|| RestoreError::UnknownTable(t.to_owned()))
    };
    let column_of = |t: &bae_oplog::TableSchema, c: &str, row_stamp_ok: bool| {
        if t.syncs(c) || (row_stamp_ok && c == ROW_COLUMN) {
            Ok(())
        } else {
            Err(RestoreError::UnknownColumn {
                table: t.name.to_owned(),
                column: c.to_owned(),
            })
        }
    };
    match record {
        StateRecord::Row { table, id, values } => {
            let t = table_of(table)?;
            // Fewer values: a writer on an older schema (columns are only
            // ever appended), whose row lacks the newer columns.
            if values.len() > t.columns.len() {
                return Err(RestoreError::WrongValueCount {
                    table: t.name.to_owned(),
                    id: id.clone(),
                    found: values.len(),
                    expected: t.columns.len(),
                });
            }
        }
        StateRecord::Stamp {
            table,
            row_id,
            column,
            hlc,
            ..
        } => {
            column_of(table_of(table)?, column, true)?;
            hlc_in_range(table, row_id, *hlc)?;
        }
        StateRecord::Tombstone {
            table, row_id, hlc, ..
        } => {
            table_of(table)?;
            hlc_in_range(table, row_id, *hlc)?;
        }
        StateRecord::Parked { table, column, .. } => column_of(table_of(table)?, column, false)?,
        StateRecord::Columns { table, columns } => {
            let t = table_of(table)?;
            for (position, found) in columns.iter().enumerate() {
                let Some(expected) = t.columns.get(position) else {
                    return Err(RestoreError::UnknownColumn {
                        table: t.name.to_owned(),
                        column: found.clone(),
                    });
                };
                if found != expected {
                    return Err(RestoreError::ColumnMismatch {
                        table: t.name.to_owned(),
                        position,
                        found: found.clone(),
                        expected: (*expected).to_owned(),
                    });
                }
            }
        }
        StateRecord::Kept { .. } => {
            crate::kept::check_kept_record(record).map_err(RestoreError::BadKept)?;
        }
    }
    Ok(())
}

fn hlc_in_range(table: &str, row_id: &str, hlc: u64) -> Result<(), RestoreError> {
    if bae_hlc::Timestamp::from_u64(hlc).is_valid() {
        Ok(())
    } else {
        Err(RestoreError::HlcOutOfRange {
            table: table.to_owned(),
            row_id: row_id.to_owned(),
        })
    }
}

impl StateRecord {
    /// The HLC of a stamp or tombstone.
    pub fn hlc(&self) -> Option<u64> {
        match self {
            StateRecord::Stamp { hlc, .. }
            | StateRecord::Tombstone { hlc, .. }
            | StateRecord::Kept { hlc, .. } => Some(*hlc),
            StateRecord::Row { .. } | StateRecord::Parked { .. } | StateRecord::Columns { .. } => {
                None
            }
        }
    }
}

/// What a restore looks up once instead of once per record: each table's
/// insert statement and the numbers of each device and table stamps name.
/// Those numbers are per database and become real only when the restore
/// commits, so a cache serves one restore transaction and is dropped with
/// it.
#[derive(Debug, Default)]
pub struct RestoreCache {
    /// By table and how many of its columns the record carries (an older
    /// writer's rows carry the first ones only).
    insert_sql: HashMap<(&'static str, usize), String>,
    ids: StampIds,
}

/// Writes one record into `conn` (a library with no merge state yet, or a
/// staging database from [`create_staging`]), after checking every name it
/// carries against `schema`. Records may arrive in snapshot order only:
/// rows parents first. What a snapshot of a newer writer (`writer_version`)
/// names that `schema` does not know is held until [`finish_restore`]
/// keeps it. `cache` belongs to the transaction the records are restored
/// in (a new one for each).
pub fn restore_record(
    conn: &Connection,
    schema: &SyncSchema,
    record: &StateRecord,
    writer_version: u32,
    cache: &mut RestoreCache,
) -> Result<(), RestoreError> {
    check_record(schema, record, writer_version)?;
    if writer_version > schema.version() && crate::newer_snapshot::names_unknown(schema, record) {
        return crate::newer_snapshot::hold(conn, schema, record, cache);
    }
    let refused = RestoreError::Refused;
    match record {
        StateRecord::Row { table, id, values } => {
            let Some(t) = schema.table(table) else {
                return Err(RestoreError::UnknownTable(table.clone()));
            };
            // Names spliced into SQL are the schema's, never the record's.
            // An older writer's row has the first columns only; the others
            // take their defaults, as an older writer's insert gives them.
            let sql = cache
                .insert_sql
                .entry((t.name, values.len()))
                .or_insert_with(|| {
                    bae_oplog::insert_sql(t.name, t.columns.iter().take(values.len()).copied())
                });
            let mut args: Vec<&dyn ToSql> = Vec::with_capacity(values.len() + 1);
            args.push(id);
            args.extend(values.iter().map(|v| v as &dyn ToSql));
            conn.prepare_cached(sql)?
                .execute(args.as_slice())
                .map_err(refused)?;
        }
        StateRecord::Stamp {
            table,
            row_id,
            column,
            hlc,
            device,
        } if column == ROW_COLUMN => {
            let (table_id, writer) = cache.ids(conn, table, device)?;
            let set = conn
                .prepare_cached(
                    "INSERT INTO bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (table_id, row_key) DO UPDATE SET ins_hlc = excluded.ins_hlc, ins_writer = excluded.ins_writer
                     WHERE ins_hlc IS NULL",
                )?
                .execute(params![table_id, row_key(row_id), *hlc as i64, writer])
                .map_err(refused)?;
            if set == 0 {
                return Err(duplicate(table, row_id, "insert stamp"));
            }
        }
        StateRecord::Stamp {
            table,
            row_id,
            column,
            hlc,
            device,
        } => {
            let (table_id, writer) = cache.ids(conn, table, device)?;
            conn.prepare_cached(
                r#"INSERT INTO bae_sync_column_stamps (table_id, row_key, "column", hlc, writer) VALUES (?1, ?2, ?3, ?4, ?5)"#,
            )?
            .execute(params![table_id, row_key(row_id), column, *hlc as i64, writer])
            .map_err(refused)?;
        }
        StateRecord::Tombstone {
            table,
            row_id,
            hlc,
            device,
        } => {
            let (table_id, writer) = cache.ids(conn, table, device)?;
            let set = conn
                .prepare_cached(
                    "INSERT INTO bae_sync_row_stamps (table_id, row_key, del_hlc, del_writer) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (table_id, row_key) DO UPDATE SET del_hlc = excluded.del_hlc, del_writer = excluded.del_writer
                     WHERE del_hlc IS NULL",
                )?
                .execute(params![table_id, row_key(row_id), *hlc as i64, writer])
                .map_err(refused)?;
            if set == 0 {
                return Err(duplicate(table, row_id, "tombstone"));
            }
        }
        StateRecord::Parked {
            table,
            row_id,
            column,
            value,
        } => {
            conn.prepare_cached(
                r#"INSERT INTO bae_sync_parked (table_name, row_id, "column", value) VALUES (?1, ?2, ?3, ?4)"#,
            )?
            .execute(params![table, row_id, column, value])
            .map_err(refused)?;
        }
        StateRecord::Columns { .. } => {}
        StateRecord::Kept { .. } => crate::kept::restore_kept(conn, record)?,
    }
    Ok(())
}

fn duplicate(table: &str, row_id: &str, what: &'static str) -> RestoreError {
    RestoreError::Duplicate {
        table: table.to_owned(),
        row_id: row_id.to_owned(),
        what,
    }
}

impl RestoreCache {
    /// The local numbers of a restored stamp's table and device, given
    /// them if they are new here. A snapshot names a handful of devices
    /// and tables across every stamp it holds: looking each one up per
    /// stamp cost a tenth of a restore.
    fn ids(
        &mut self,
        conn: &Connection,
        table: &str,
        device: &[u8; 16],
    ) -> Result<(i64, i64), MergeError> {
        Ok((
            self.ids.table(conn, table)?,
            self.ids.writer(conn, DeviceId::from_bytes(*device))?,
        ))
    }
}

/// After the last record of a snapshot is restored into `conn`: what a
/// newer writer's snapshot held that `schema` does not know becomes kept
/// ops (docs/SCHEMA-EVOLUTION.md), applied once this device's schema knows
/// them, and the snapshot's `writer` is noted as writing a newer schema.
/// Nothing to do for a snapshot of this schema or an older one.
pub fn finish_restore(
    conn: &Connection,
    schema: &SyncSchema,
    writer: DeviceId,
    writer_version: u32,
) -> Result<(), MergeError> {
    crate::newer_snapshot::finish(conn, schema, writer, writer_version)
}

/// After a restore into an empty library: every local op recorded so far
/// is covered by the restored state, so none is left to fold.
pub fn mark_local_ops_folded(conn: &Connection) -> Result<(), MergeError> {
    let last = bae_oplog::last_op_seq(conn)?;
    if last > folded_seq(conn)? {
        set_folded_seq(conn, last)?;
    }
    Ok(())
}

/// Creates a staging database at `path` for a snapshot to be merged into a
/// library with state: the synced tables as the sync schema describes them
/// (the id, the synced columns without type affinity so values stay as
/// written, the declared parents as foreign keys, enforced, and the unique
/// groups), and the merge state's tables. Built from the schema, not the
/// host's DDL, so host columns referencing local-only tables do not need
/// those tables here.
pub fn create_staging(path: &Path, schema: &SyncSchema) -> Result<Connection, MergeError> {
    let mut staging = Connection::open(path)?;
    staging.pragma_update(None, "foreign_keys", true)?;
    for t in schema.tables() {
        staging.execute_batch(&staging_ddl(t))?;
    }
    crate::migrate_conn(&mut staging)?;
    Ok(staging)
}

/// `CREATE TABLE` of one synced table in a staging database; every name
/// comes from the schema.
fn staging_ddl(t: &bae_oplog::TableSchema) -> String {
    let mut parts = vec!["id TEXT PRIMARY KEY NOT NULL".to_owned()];
    parts.extend(t.columns.iter().map(|c| (*c).to_owned()));
    for (column, parent) in t.parents {
        parts.push(format!(
            "FOREIGN KEY ({column}) REFERENCES {parent}(id) ON DELETE CASCADE"
        ));
    }
    for group in t.unique {
        parts.push(format!("UNIQUE ({})", group.join(", ")));
    }
    format!("CREATE TABLE {} ({});", t.name, parts.join(", "))
}

/// Replaces the library's synced rows and merge state by the snapshot
/// staged at `staged` (see [`create_staging`]) in one transaction, which
/// `also` joins (the caller's own tables change with it, or nothing does):
/// rows are updated in place (local-only columns survive), rows the
/// snapshot lacks are deleted except rows this device inserted after
/// `keep_local_after` (its cursor in the snapshot) that the snapshot has
/// not tombstoned: the caller replays those batches next. Every local op
/// is then either in the snapshot or about to be replayed, so none is left
/// to fold.
///
/// Rows the snapshot lacks whose newest insert is another device's (and
/// that it has not tombstoned) are kept too: they come from that device's
/// batches after the snapshot's cursor for it (an honest snapshot holds
/// everything before), which the caller applies again after the replace,
/// bringing back their values and stamps. So a snapshot cannot delete a
/// row by leaving it out. Rows this device inserted that its op log does
/// not hold count as another device's: they come from its own batches it
/// re-took from the bucket after its database went back in time (applied
/// through merge), which the caller applies again too. Rows its op log
/// inserted up to its cursor must be in an honest snapshot.
pub fn replace_from_staged<E: From<MergeError>>(
    conn: &mut Connection,
    schema: &SyncSchema,
    staged: &Path,
    keep_local_after: BatchSeq,
    this_device: DeviceId,
    also: impl FnOnce(&Connection) -> Result<(), E>,
) -> Result<(), E> {
    let db = |e: rusqlite::Error| E::from(MergeError::Db(e));
    conn.execute(
        "ATTACH DATABASE ?1 AS ck",
        [staged.to_string_lossy().as_ref()],
    )
    .map_err(db)?;
    let replaced = (|| {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        replace_in(&tx, schema, keep_local_after, this_device)?;
        also(&tx)?;
        tx.commit().map_err(db)
    })();
    let detached = conn.execute("DETACH DATABASE ck", []).map_err(db);
    replaced?;
    detached.map(|_| ())
}

/// Every row of `t` the replace would delete must be explained by the
/// snapshot: tombstoned or parked there, or under a parent the snapshot
/// does not hold. An honest snapshot that covers this library's cursors
/// explains every such row (tombstones are kept); a forged one that simply
/// leaves rows out is refused, so it can delete no more than forged
/// batches could (each delete needs a tombstone, compared as merge does).
/// A row an older writer's snapshot holds only as a kept insert (its
/// table was unknown to the writer) is explained too: the replace removes
/// it and `apply_kept` inserts it again right after.
fn check_explained(tx: &Connection, t: &bae_oplog::TableSchema) -> Result<(), MergeError> {
    let mut parents = String::new();
    for (column, parent) in t.parents {
        parents.push_str(&format!(
            " AND NOT (m.{column} IS NOT NULL AND m.{column} NOT IN (SELECT id FROM ck.{parent}))"
        ));
    }
    let candidates: Vec<String> = tx
        .prepare(&format!(
            "SELECT m.id FROM main.{n} m WHERE m.id NOT IN (SELECT id FROM ck.{n})
               AND m.id NOT IN (SELECT id FROM temp.bae_sync_keep)
               AND NOT EXISTS (SELECT 1 FROM ck.bae_sync_parked p WHERE p.table_name = ?1 AND p.row_id = m.id)
               AND NOT EXISTS (SELECT 1 FROM ck.bae_sync_kept k
                               WHERE k.table_name = ?1 AND k.row_id = m.id AND k.kind = 0 AND k.whole = 1){parents}",
            n = t.name,
        ))?
        .query_map([t.name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    // Row keys are computed here, not in SQL: few rows get this far.
    let mut tombstoned = tx.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM ck.bae_sync_row_stamps
                        WHERE table_id = (SELECT id FROM ck.bae_sync_table_ids WHERE name = ?1)
                          AND row_key = ?2 AND del_hlc IS NOT NULL)",
    )?;
    let mut unexplained = 0u64;
    for id in candidates {
        if !tombstoned.query_row(params![t.name, row_key(&id)], |r| r.get::<_, bool>(0))? {
            unexplained += 1;
        }
    }
    if unexplained > 0 {
        return Err(MergeError::SnapshotLacksRows {
            table: t.name,
            rows: unexplained,
        });
    }
    Ok(())
}

/// The number this library gives `table` (none: no stamp names it).
fn main_table_id(tx: &Connection, table: &str) -> Result<Option<i64>, MergeError> {
    Ok(tx
        .prepare_cached("SELECT id FROM main.bae_sync_table_ids WHERE name = ?1")?
        .query_row([table], |r| r.get(0))
        .optional()?)
}

/// Clears the insert and column stamps of the rows of `table` that the
/// snapshot holds or that are not present here (the snapshot's stamps
/// replace them); rows kept although the snapshot lacks them keep theirs.
fn forget_stamps_the_snapshot_replaces(tx: &Connection, table: &str) -> Result<(), MergeError> {
    let Some(table_id) = main_table_id(tx, table)? else {
        return Ok(());
    };
    let keys: Vec<rusqlite::types::Value> = tx
        .prepare_cached(
            "SELECT row_key FROM main.bae_sync_row_stamps WHERE table_id = ?1 AND ins_hlc IS NOT NULL
             UNION SELECT row_key FROM main.bae_sync_column_stamps WHERE table_id = ?1",
        )?
        .query_map([table_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let in_snapshot = format!(
        "SELECT EXISTS (SELECT 1 FROM ck.{table} WHERE id = ?1) OR NOT EXISTS (SELECT 1 FROM main.{table} WHERE id = ?1)"
    );
    let mut replaced = tx.prepare_cached(&in_snapshot)?;
    let mut clear_ins = tx.prepare_cached(
        "UPDATE main.bae_sync_row_stamps SET ins_hlc = NULL, ins_writer = NULL
         WHERE table_id = ?1 AND row_key = ?2",
    )?;
    let mut clear_columns = tx.prepare_cached(
        "DELETE FROM main.bae_sync_column_stamps WHERE table_id = ?1 AND row_key = ?2",
    )?;
    for key in keys {
        let id = row_id_of(table, (&key).into())?;
        if replaced.query_row([&id], |r| r.get::<_, bool>(0))? {
            clear_ins.execute(params![table_id, key])?;
            clear_columns.execute(params![table_id, key])?;
        }
    }
    Ok(())
}

fn replace_in(
    tx: &Connection,
    schema: &SyncSchema,
    keep_local_after: BatchSeq,
    this_device: DeviceId,
) -> Result<(), MergeError> {
    tx.execute_batch("CREATE TEMP TABLE IF NOT EXISTS bae_sync_keep (id TEXT PRIMARY KEY)")?;
    for t in schema.tables().iter().rev() {
        tx.execute("DELETE FROM temp.bae_sync_keep", [])?;
        {
            let mut keep = tx.prepare_cached(
                "INSERT OR IGNORE INTO temp.bae_sync_keep (id) SELECT ?1
                 WHERE NOT EXISTS (SELECT 1 FROM ck.bae_sync_row_stamps k
                                   WHERE k.table_id = (SELECT id FROM ck.bae_sync_table_ids WHERE name = ?2)
                                     AND k.row_key = ?3 AND k.del_hlc IS NOT NULL)",
            )?;
            for id in bae_oplog::rows_inserted_after(tx, t.name, keep_local_after)? {
                keep.execute(params![id, t.name, row_key(&id)])?;
            }
            // Rows this device inserted that its op log does not hold came
            // from its own batches re-taken from the bucket: kept like
            // another device's.
            let logged: std::collections::BTreeSet<String> =
                bae_oplog::rows_inserted_after(tx, t.name, BatchSeq(0))?
                    .into_iter()
                    .collect();
            let mut inserted = tx.prepare_cached(
                "SELECT r.row_key, w.device = ?2 FROM main.bae_sync_row_stamps r
                 JOIN main.bae_sync_writers w ON w.id = r.ins_writer
                 WHERE r.table_id = (SELECT id FROM main.bae_sync_table_ids WHERE name = ?1)
                   AND r.ins_hlc IS NOT NULL",
            )?;
            let mut ids = Vec::new();
            let mut rows = inserted.query(params![t.name, this_device.as_bytes().as_slice()])?;
            while let Some(r) = rows.next()? {
                let id = row_id_of(t.name, r.get_ref(0)?)?;
                let here: bool = r.get(1)?;
                if !here || !logged.contains(&id) {
                    ids.push(id);
                }
            }
            drop(rows);
            for id in ids {
                keep.execute(params![id, t.name, row_key(&id)])?;
            }
        }
        check_explained(tx, t)?;
        tx.execute(
            &format!(
                "DELETE FROM main.{t} WHERE id NOT IN (SELECT id FROM ck.{t})
                 AND id NOT IN (SELECT id FROM temp.bae_sync_keep)",
                t = t.name
            ),
            [],
        )?;
    }
    tx.execute_batch("DROP TABLE temp.bae_sync_keep")?;
    for t in schema.tables() {
        // A kept local row holding a unique key the snapshot gives another
        // row (a re-analysed track under a new id, not yet pushed) goes
        // now; its batch is replayed after and the unique rule settles it.
        for group in t.unique {
            let cols = group.join(", ");
            tx.execute(
                &format!(
                    "DELETE FROM main.{n} WHERE id NOT IN (SELECT id FROM ck.{n})
                     AND ({cols}) IN (SELECT {cols} FROM ck.{n})",
                    n = t.name
                ),
                [],
            )?;
        }
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
    // Rows kept although the snapshot lacks them keep their stamps: the
    // snapshot has none for them, and a snapshot whose cursors claim their
    // batches (forged, or written by a device that had them) means those
    // batches are never applied again, so without their stamps the rows
    // would take any older write from then on. Every other insert and
    // column stamp, and every tombstone, is the snapshot's.
    for t in schema.tables() {
        forget_stamps_the_snapshot_replaces(tx, t.name)?;
    }
    // Writer and table numbers are per database: the snapshot's map to
    // this one's through the device bytes and the table names.
    let here = |column: &str| {
        format!(
            "(SELECT m.id FROM main.bae_sync_writers m JOIN ck.bae_sync_writers c ON c.device = m.device
              WHERE c.id = k.{column})"
        )
    };
    let table_here = "(SELECT m.id FROM main.bae_sync_table_ids m
                       JOIN ck.bae_sync_table_ids c ON c.name = m.name WHERE c.id = k.table_id)";
    tx.execute_batch(&format!(
        r#"INSERT OR IGNORE INTO main.bae_sync_writers (device) SELECT device FROM ck.bae_sync_writers;
           INSERT OR IGNORE INTO main.bae_sync_table_ids (name) SELECT name FROM ck.bae_sync_table_ids ORDER BY name;
           UPDATE main.bae_sync_row_stamps SET del_hlc = NULL, del_writer = NULL;
           INSERT INTO main.bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
               SELECT {table_here}, k.row_key, k.ins_hlc, {ins}, k.del_hlc, {del} FROM ck.bae_sync_row_stamps k WHERE true
               ON CONFLICT (table_id, row_key) DO UPDATE SET
                   ins_hlc = COALESCE(ins_hlc, excluded.ins_hlc),
                   ins_writer = CASE WHEN ins_hlc IS NULL THEN excluded.ins_writer ELSE ins_writer END,
                   del_hlc = excluded.del_hlc, del_writer = excluded.del_writer;
           DELETE FROM main.bae_sync_row_stamps WHERE ins_hlc IS NULL AND del_hlc IS NULL;
           INSERT OR IGNORE INTO main.bae_sync_column_stamps (table_id, row_key, "column", hlc, writer)
               SELECT {table_here}, k.row_key, k."column", k.hlc, {col} FROM ck.bae_sync_column_stamps k;
           DELETE FROM main.bae_sync_parked;
           INSERT INTO main.bae_sync_parked SELECT table_name, row_id, "column", value FROM ck.bae_sync_parked;
           INSERT OR IGNORE INTO main.bae_sync_kept SELECT * FROM ck.bae_sync_kept;
           INSERT INTO main.bae_sync_newer_writers (device, schema_version)
               SELECT device, schema_version FROM ck.bae_sync_newer_writers WHERE true
               ON CONFLICT (device) DO UPDATE SET
                   schema_version = max(schema_version, excluded.schema_version);
           UPDATE main.bae_sync_merge SET kept_replayed_version = 0;"#,
        ins = here("ins_writer"),
        del = here("del_writer"),
        col = here("writer"),
    ))?;
    mark_local_ops_folded(tx)?;
    Ok(())
}
