//! The `OpRecorder`: the layer between bae's LibraryManager and its database
//! (`LibraryManager -> OpRecorder -> Database`). Every write goes through a
//! [`Recording`] transaction, which records the write's ops in the same SQLite
//! transaction, so a crash leaves both or neither.

use crate::compact::{ChunkWriter, StoredRef, CHUNK_BYTES};
use crate::error::OplogError;
use crate::log::device_state;
use crate::migrate::{configure, migrate, OPLOG_MIGRATIONS};
use crate::op::{BatchSeq, OpKind, Value};
use crate::schema::{is_identifier, SyncSchema};
use bae_hlc::{Clock, DeviceId, Timestamp, WallClock, DEFAULT_MAX_DRIFT_MS};
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

/// Records every library write as ops. Owns one connection to the library;
/// several recorders (the host's, the sync service's) may share a library
/// file: each transaction first catches up with the clock the others
/// persisted, so no write is stamped behind one it could have seen.
pub struct OpRecorder {
    conn: Connection,
    clock: Clock,
    device: DeviceId,
    schema: &'static SyncSchema,
    /// Each schema table's number in `bae_sync_op_tables`, in schema order.
    table_ids: Vec<i64>,
}

impl OpRecorder {
    /// Opens the library at `path`, whose tables the host has created, with
    /// the system clock. `schema` says which of its tables and columns sync;
    /// it is checked against the database ([`SyncSchema::check`]).
    pub fn open(path: &Path, schema: &'static SyncSchema) -> Result<Self, OplogError> {
        Self::with_connection(Connection::open(path)?, WallClock::System, schema)
    }

    /// Wraps a connection: configures it (foreign keys, WAL, busy timeout),
    /// checks `schema` against it, creates or migrates the op log's own
    /// tables, makes the device id on first start and restores the clock
    /// from its persisted value. The host's tables are never changed.
    pub fn with_connection(
        conn: Connection,
        wall: WallClock,
        schema: &'static SyncSchema,
    ) -> Result<Self, OplogError> {
        Self::with_connection_as(conn, wall, schema, DeviceId::random)
    }

    /// [`OpRecorder::with_connection`], taking the device id from
    /// `new_device` if the library has none yet (deterministic
    /// simulations need the same ids on every run).
    pub(crate) fn with_connection_as(
        mut conn: Connection,
        wall: WallClock,
        schema: &'static SyncSchema,
        new_device: impl FnOnce() -> DeviceId,
    ) -> Result<Self, OplogError> {
        configure(&conn)?;
        schema.check(&conn)?;
        migrate(&mut conn, &OPLOG_MIGRATIONS)?;
        // Read or make the device row in one write transaction, so two
        // connections opening a new library at once agree on one device id.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let device: Option<String> = tx
            .query_row(
                "SELECT device_id FROM bae_sync_device WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let (device, clock) = match device {
            Some(device) => {
                let last = device_state(&tx)?.clock;
                let clock =
                    Clock::restore(wall, DEFAULT_MAX_DRIFT_MS, Timestamp::from_u64(last as u64))?;
                (device.parse()?, clock)
            }
            None => {
                let device = new_device();
                let clock = Clock::new(wall, DEFAULT_MAX_DRIFT_MS);
                tx.execute(
                    "INSERT INTO bae_sync_device (id, device_id, clock) VALUES (1, ?1, ?2)",
                    params![device.to_string(), clock.last().as_u64() as i64],
                )?;
                tracing::info!(%device, "new device id");
                (device, clock)
            }
        };
        schema.check_against_last(&tx)?;
        let table_ids = register_tables(&tx, schema)?;
        tx.commit()?;
        Ok(OpRecorder {
            conn,
            clock,
            device,
            schema,
            table_ids,
        })
    }

    /// Which tables and columns sync.
    pub fn schema(&self) -> &'static SyncSchema {
        self.schema
    }

    /// The library file, if the connection is to a file.
    pub fn path(&self) -> Option<&Path> {
        self.conn.path().filter(|p| !p.is_empty()).map(Path::new)
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// This device's clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Read-only access for queries (bae-server, import code).
    pub fn database(&self) -> ReadOnlyDb<'_> {
        ReadOnlyDb(&self.conn)
    }

    /// Starts a recorded transaction: one transaction, one batch. It takes
    /// the write lock at once (`BEGIN IMMEDIATE`), so a write after a read
    /// in it never fails because another connection (the sync service's,
    /// or the host's other one) committed in between: the other writer
    /// waits for the busy timeout instead.
    pub fn transaction(&mut self) -> Result<Recording<'_>, OplogError> {
        Ok(Recording {
            tx: self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            clock: &self.clock,
            schema: self.schema,
            table_ids: &self.table_ids,
            batch: None,
        })
    }

    /// The connection and clock, for the sync layers that apply remote
    /// batches (which must not record them as local ops).
    pub fn sync_parts(&mut self) -> (&mut Connection, &Clock, DeviceId) {
        (&mut self.conn, &self.clock, self.device)
    }
}

/// Read-only access to the library: only statements that do not write.
pub struct ReadOnlyDb<'a>(&'a Connection);

impl ReadOnlyDb<'_> {
    /// Prepares a statement, refusing any that would write.
    pub fn prepare(&self, sql: &str) -> Result<rusqlite::Statement<'_>, OplogError> {
        let stmt = self.0.prepare(sql)?;
        if !stmt.readonly() {
            return Err(OplogError::Db(rusqlite::Error::InvalidQuery));
        }
        Ok(stmt)
    }

    /// Runs a read-only query that returns one row.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<T, OplogError>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        Ok(self.prepare(sql)?.query_row(params, f)?)
    }
}

/// One recorded transaction. Dropping it without [`Recording::commit`] rolls
/// back both the writes and their ops.
pub struct Recording<'a> {
    tx: Transaction<'a>,
    clock: &'a Clock,
    schema: &'static SyncSchema,
    table_ids: &'a [i64],
    batch: Option<OpenBatch>,
}

impl Recording<'_> {
    /// Inserts a row (`id` plus `fields`) and records an insert op of its
    /// synced fields.
    pub fn insert(
        &mut self,
        table: &str,
        row_id: &str,
        fields: &[(&str, Value)],
    ) -> Result<(), OplogError> {
        check_ident(table)?;
        check_columns(table, fields)?;
        let sql = insert_sql(table, fields.iter().map(|(c, _)| *c));
        {
            let mut stmt = self.tx.prepare_cached(&sql)?;
            let values = row_params(&row_id, fields);
            stmt.execute(values.as_slice())?;
        }
        self.record(table, row_id, OpKind::Insert, fields)
    }

    /// Updates fields of a row and records an update op of the synced ones.
    pub fn update(
        &mut self,
        table: &str,
        row_id: &str,
        fields: &[(&str, Value)],
    ) -> Result<(), OplogError> {
        check_ident(table)?;
        if fields.is_empty() {
            return Ok(());
        }
        check_columns(table, fields)?;
        let sql = update_sql(table, fields.iter().map(|(c, _)| *c));
        let changed = {
            let mut stmt = self.tx.prepare_cached(&sql)?;
            let values = row_params(&row_id, fields);
            stmt.execute(values.as_slice())?
        };
        if changed == 0 {
            return Err(OplogError::NoSuchRow {
                table: table.into(),
                row_id: row_id.into(),
            });
        }
        self.record(table, row_id, OpKind::Update, fields)
    }

    /// Deletes a row and everything that depends on it through synced foreign
    /// keys, recording a delete op for each row (dependents first), as the
    /// database's `ON DELETE CASCADE` removes them.
    pub fn delete(&mut self, table: &str, row_id: &str) -> Result<(), OplogError> {
        check_ident(table)?;
        let exists: bool = self
            .tx
            .prepare_cached(&format!(
                "SELECT EXISTS (SELECT 1 FROM {table} WHERE id = ?1)"
            ))?
            .query_row([row_id], |r| r.get(0))?;
        if !exists {
            return Err(OplogError::NoSuchRow {
                table: table.into(),
                row_id: row_id.into(),
            });
        }
        if let Some(synced) = self.schema.table(table) {
            let mut order = Vec::new();
            let mut seen = HashSet::new();
            self.collect_dependents(synced.name, row_id, &mut seen, &mut order)?;
            for (t, id) in &order {
                self.record(t, id, OpKind::Delete, &[])?;
            }
        }
        self.tx
            .prepare_cached(&format!("DELETE FROM {table} WHERE id = ?1"))?
            .execute([row_id])?;
        Ok(())
    }

    /// Post-order walk: a row's dependents, then the row.
    fn collect_dependents(
        &self,
        table: &'static str,
        row_id: &str,
        seen: &mut HashSet<(&'static str, String)>,
        order: &mut Vec<(&'static str, String)>,
    ) -> Result<(), OplogError> {
        if !seen.insert((table, row_id.to_owned())) {
            return Ok(());
        }
        for (child, column) in self.schema.children_of(table) {
            let ids: Vec<String> = self
                .tx
                .prepare_cached(&format!(
                    "SELECT id FROM {} WHERE {column} = ?1 ORDER BY id",
                    child.name
                ))?
                .query_map([row_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in ids {
                self.collect_dependents(child.name, &id, seen, order)?;
            }
        }
        order.push((table, row_id.to_owned()));
        Ok(())
    }

    /// Runs a statement on a local-only table; nothing is recorded.
    pub fn execute_local<P: rusqlite::Params>(
        &mut self,
        sql: &str,
        params: P,
    ) -> Result<usize, OplogError> {
        Ok(self.tx.prepare_cached(sql)?.execute(params)?)
    }

    /// Read access inside the transaction.
    pub fn query_row<T, P, F>(&self, sql: &str, params: P, f: F) -> Result<Option<T>, OplogError>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        Ok(self
            .tx
            .prepare_cached(sql)?
            .query_row(params, f)
            .optional()?)
    }

    fn record(
        &mut self,
        table: &str,
        row_id: &str,
        kind: OpKind,
        fields: &[(&str, Value)],
    ) -> Result<(), OplogError> {
        // Writes to local-only tables and local-only columns are not ops.
        let Some(rank) = self.schema.rank(table) else {
            return Ok(());
        };
        let schema = &self.schema.tables()[rank];
        let table_id = self
            .table_ids
            .get(rank)
            .copied()
            .ok_or_else(|| OplogError::CorruptOp {
                seq: -1,
                reason: format!("table {table:?} has no number"),
            })?;
        // Stored compactly as (index into the schema's columns, value), with
        // UUIDs packed; the wire batch spells column names and values out
        // (see `log::op_from_row`).
        let synced: Vec<(u8, StoredRef<'_>)> = fields
            .iter()
            .filter_map(|(c, v)| {
                schema
                    .columns
                    .iter()
                    .position(|s| s == c)
                    .map(|i| (i as u8, v.into()))
            })
            .collect();
        if kind == OpKind::Update && synced.is_empty() {
            return Ok(());
        }
        let seq = self.next_seq()?;
        let hlc = self.clock.now()?;
        let corrupt = |e: postcard::Error| OplogError::CorruptOp {
            seq,
            reason: e.to_string(),
        };
        let Some(open) = &mut self.batch else {
            return Ok(());
        };
        open.chunk
            .push(hlc.as_u64(), table_id, kind.code() as u8, row_id, &synced)
            .map_err(corrupt)?;
        open.next_seq = seq + 1;
        if open.chunk.bytes() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the ops gathered so far as one op-log row.
    fn flush(&mut self) -> Result<(), OplogError> {
        let Some(open) = &mut self.batch else {
            return Ok(());
        };
        if open.chunk.len() == 0 {
            return Ok(());
        }
        let last_seq = open.next_seq - 1;
        let ops = open.chunk.encode().map_err(|e| OplogError::CorruptOp {
            seq: last_seq,
            reason: e.to_string(),
        })?;
        self.tx
            .prepare_cached("INSERT INTO bae_sync_op_log (last_seq, ops) VALUES (?1, ?2)")?
            .execute(params![last_seq, ops])?;
        open.chunk.clear();
        Ok(())
    }

    /// The seq of the op about to be recorded. On the first op it reads
    /// this transaction's batch number, the next op seq and the clock
    /// another connection may have advanced: one read on the recording
    /// path.
    fn next_seq(&mut self) -> Result<i64, OplogError> {
        if let Some(open) = &self.batch {
            return Ok(open.next_seq);
        }
        let state = device_state(&self.tx)?;
        self.clock
            .catch_up(Timestamp::from_u64(state.clock as u64))?;
        self.batch = Some(OpenBatch {
            id: state.next_batch,
            first_seq: state.next_seq,
            next_seq: state.next_seq,
            chunk: ChunkWriter::new(),
        });
        Ok(state.next_seq)
    }

    /// Commits the writes and their ops together. Returns the batch number if
    /// any op was recorded.
    pub fn commit(mut self) -> Result<Option<BatchSeq>, OplogError> {
        self.flush()?;
        let batch = self.batch.take().filter(|b| b.next_seq > b.first_seq);
        if let Some(b) = &batch {
            // Two writes per transaction, none per op: its ops' row (above)
            // and the batch's row, which also carries the next batch number,
            // next op seq and the clock for the next transaction
            // (`log::device_state`).
            self.tx
                .prepare_cached(
                    "INSERT INTO bae_sync_op_batches (batch_id, first_seq, last_seq, last_hlc) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute([
                    b.id,
                    b.first_seq,
                    b.next_seq - 1,
                    self.clock.last().as_u64() as i64,
                ])?;
        }
        self.tx.commit()?;
        Ok(batch.map(|b| BatchSeq(b.id as u64)))
    }
}

/// The batch a [`Recording`] writes, from its first op on.
struct OpenBatch {
    /// Its batch number.
    id: i64,
    /// The seq of its first op.
    first_seq: i64,
    /// The seq its next op gets: past every op recorded in this library,
    /// pruned ones included, so seqs are never reused.
    next_seq: i64,
    /// Its ops not yet written to the op log (`next_seq - 1` is the last).
    chunk: ChunkWriter,
}

/// Numbers each of `schema`'s tables in `bae_sync_op_tables` (once: a
/// number never changes) and returns the numbers in schema order.
fn register_tables(tx: &Transaction<'_>, schema: &SyncSchema) -> Result<Vec<i64>, OplogError> {
    let mut insert =
        tx.prepare_cached("INSERT OR IGNORE INTO bae_sync_op_tables (name) VALUES (?1)")?;
    let mut select = tx.prepare_cached("SELECT id FROM bae_sync_op_tables WHERE name = ?1")?;
    schema
        .tables()
        .iter()
        .map(|t| {
            insert.execute([t.name])?;
            Ok(select.query_row([t.name], |r| r.get(0))?)
        })
        .collect()
}

/// `INSERT INTO {table} (id, {columns}) VALUES (?1, ?2, ...)`: the row id is
/// `?1`, the columns' values follow in order. Names are spliced in as given:
/// the caller makes sure they are identifiers.
pub fn insert_sql<'a>(table: &str, columns: impl IntoIterator<Item = &'a str>) -> String {
    // Built once per recorded or merged insert: one buffer, no string per
    // column.
    let mut sql = String::with_capacity(128);
    let mut marks = String::with_capacity(64);
    sql.push_str("INSERT INTO ");
    sql.push_str(table);
    sql.push_str(" (id");
    marks.push_str("?1");
    for (i, c) in columns.into_iter().enumerate() {
        sql.push_str(", ");
        sql.push_str(c);
        let _ = write!(marks, ", ?{}", i + 2);
    }
    sql.push_str(") VALUES (");
    sql.push_str(&marks);
    sql.push(')');
    sql
}

/// `UPDATE {table} SET {c1} = ?2, ... WHERE id = ?1`: the row id is `?1`,
/// the columns' values follow in order, as for [`insert_sql`].
pub fn update_sql<'a>(table: &str, columns: impl IntoIterator<Item = &'a str>) -> String {
    let mut sql = String::with_capacity(128);
    sql.push_str("UPDATE ");
    sql.push_str(table);
    sql.push_str(" SET ");
    for (i, c) in columns.into_iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "{c} = ?{}", i + 2);
    }
    sql.push_str(" WHERE id = ?1");
    sql
}

/// The parameters of [`insert_sql`] and [`update_sql`]: the row id, then the values.
fn row_params<'a>(
    row_id: &'a &'a str,
    fields: &'a [(&'a str, Value)],
) -> Vec<&'a dyn rusqlite::ToSql> {
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(fields.len() + 1);
    values.push(row_id);
    values.extend(fields.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
    values
}

/// Table and column names are spliced into SQL: allow only plain identifiers.
/// Every column a write names is a plain identifier, named once.
fn check_columns(table: &str, fields: &[(&str, Value)]) -> Result<(), OplogError> {
    // A write names a row's columns, a handful: comparing each with those
    // before it costs less than building a set on every recorded write.
    for (i, (c, _)) in fields.iter().enumerate() {
        check_ident(c)?;
        if fields[..i].iter().any(|(d, _)| d == c) {
            return Err(OplogError::ColumnTwice {
                table: table.into(),
                column: (*c).into(),
            });
        }
    }
    Ok(())
}

fn check_ident(name: &str) -> Result<(), OplogError> {
    if is_identifier(name) {
        Ok(())
    } else {
        Err(OplogError::BadIdentifier(name.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_update_sql_number_the_id_first_then_each_column() {
        assert_eq!(
            insert_sql("albums", ["title", "year"]),
            "INSERT INTO albums (id, title, year) VALUES (?1, ?2, ?3)"
        );
        assert_eq!(
            insert_sql("albums", []),
            "INSERT INTO albums (id) VALUES (?1)"
        );
        assert_eq!(
            update_sql("albums", ["title", "year"]),
            "UPDATE albums SET title = ?2, year = ?3 WHERE id = ?1"
        );
    }
}
