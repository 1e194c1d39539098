//! Reading and maintaining the local op log (`bae_sync_op_log`, one row
//! per op, and `bae_sync_op_batches`, one row per batch naming its ops'
//! seq range) and this device's row (`bae_sync_device`): the only SQL on
//! those tables outside the recorder. The sync layers call these functions; none of them names
//! the tables itself.

use crate::compact::{
    read_chunk, row_id_from_sql, ChunkWriter, Stored, StoredOp, StoredRef, CHUNK_BYTES,
};
use crate::error::OplogError;
use crate::op::{BatchSeq, Op, OpKind, Value};
use crate::schema::SyncSchema;
use bae_hlc::{Clock, DeviceId, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// The batch numbers not yet marked pushed, oldest first.
pub fn unpushed_batches(conn: &Connection) -> Result<Vec<BatchSeq>, OplogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT batch_id FROM bae_sync_op_batches WHERE pushed = 0 ORDER BY batch_id",
    )?;
    let seqs = stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|b| BatchSeq(b as u64)))
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// At most `limit` of the batch numbers not yet marked pushed above
/// `after`, oldest first: a push reads its backlog a slice at a time
/// without scanning the whole op log for each.
pub fn unpushed_batches_after(
    conn: &Connection,
    after: BatchSeq,
    limit: usize,
) -> Result<Vec<BatchSeq>, OplogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT batch_id FROM bae_sync_op_batches WHERE batch_id > ?1 AND pushed = 0 ORDER BY batch_id LIMIT ?2",
    )?;
    let after = i64::try_from(after.0).map_err(|_| OplogError::BatchSeqOutOfRange(after.0))?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let seqs = stmt
        .query_map([after, limit], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|b| BatchSeq(b as u64)))
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// The batch numbers the op log holds after `after`, oldest first (pushed
/// or not).
pub fn batches_after(conn: &Connection, after: BatchSeq) -> Result<Vec<BatchSeq>, OplogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT batch_id FROM bae_sync_op_batches WHERE batch_id > ?1 ORDER BY batch_id",
    )?;
    let seqs = stmt
        .query_map([after.0 as i64], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|b| BatchSeq(b as u64)))
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// The ops of one local batch in recording order; empty if the op log no
/// longer holds it (pruned after a checkpoint covered it).
pub fn batch_ops(
    conn: &Connection,
    schema: &SyncSchema,
    batch: BatchSeq,
) -> Result<Vec<Op>, OplogError> {
    let tables = table_names(conn)?;
    let mut stmt = conn.prepare_cached(
        "SELECT o.last_seq, o.ops
         FROM bae_sync_op_batches b CROSS JOIN bae_sync_op_log o
         ON o.last_seq BETWEEN b.first_seq AND b.last_seq
         WHERE b.batch_id = ?1 ORDER BY o.last_seq",
    )?;
    let mut rows = stmt.query([batch.0 as i64])?;
    let mut ops = Vec::new();
    while let Some(r) = rows.next()? {
        for (seq, stored) in chunk_of(r)? {
            ops.push(op_from_stored(schema, &tables, seq, stored)?);
        }
    }
    Ok(ops)
}

/// Calls `f` with the local ops recorded after op seq `after`, in order, at
/// most `limit` of them, and returns the newest seq seen (`after` when
/// none). For the merge crate's fold of local writes into its stamps,
/// which reads a long op log a page at a time.
pub fn for_each_op_after(
    conn: &Connection,
    schema: &SyncSchema,
    after: i64,
    limit: usize,
    mut f: impl FnMut(&Op) -> Result<(), OplogError>,
) -> Result<i64, OplogError> {
    let tables = table_names(conn)?;
    // The rows holding an op past `after`: each row's key is its last op.
    let mut stmt = conn.prepare_cached(
        "SELECT last_seq, ops FROM bae_sync_op_log WHERE last_seq > ?1 ORDER BY last_seq",
    )?;
    let mut rows = stmt.query([after])?;
    let mut last = after;
    let mut read = 0;
    while let Some(r) = rows.next()? {
        for (seq, stored) in chunk_of(r)? {
            if read == limit {
                return Ok(last);
            }
            if seq <= after {
                continue;
            }
            f(&op_from_stored(schema, &tables, seq, stored)?)?;
            last = seq;
            read += 1;
        }
    }
    Ok(last)
}

/// The newest op seq ever recorded here (0 if none), pruned ops included.
pub fn last_op_seq(conn: &Connection) -> Result<i64, OplogError> {
    // The recorder numbers ops from `next_seq`, which never goes back.
    Ok(device_state(conn)?.next_seq - 1)
}

/// This device's next batch number, next op seq and clock (packed u64).
#[derive(Clone, Copy)]
pub(crate) struct DeviceState {
    pub(crate) next_batch: i64,
    pub(crate) next_seq: i64,
    pub(crate) clock: i64,
}

/// The newer of `bae_sync_device`'s values and those the newest batch row
/// implies: a commit writes only its batch's row, so the device row is
/// not a page of every commit.
pub(crate) fn device_state(conn: &Connection) -> Result<DeviceState, OplogError> {
    let state = conn
        .prepare_cached(
            "SELECT MAX(d.next_batch, COALESCE(b.batch_id + 1, 0)),
                    MAX(d.next_seq, COALESCE(b.last_seq + 1, 0)),
                    MAX(d.clock, COALESCE(b.last_hlc, 0))
             FROM bae_sync_device d LEFT JOIN (
                 SELECT batch_id, last_seq, last_hlc FROM bae_sync_op_batches
                 ORDER BY batch_id DESC LIMIT 1
             ) b ON 1
             WHERE d.id = 1",
        )?
        .query_row([], |r| {
            Ok(DeviceState {
                next_batch: r.get(0)?,
                next_seq: r.get(1)?,
                clock: r.get(2)?,
            })
        })
        .optional()?;
    Ok(state.unwrap_or(DeviceState {
        next_batch: 1,
        next_seq: 1,
        clock: 0,
    }))
}

/// Writes [`device_state`] into the device row: before batch rows are
/// deleted or renumbered, so their high-water marks stay.
fn keep_high_water(conn: &Connection) -> Result<(), OplogError> {
    let s = device_state(conn)?;
    conn.prepare_cached(
        "UPDATE bae_sync_device SET next_batch = ?1, next_seq = ?2, clock = ?3 WHERE id = 1",
    )?
    .execute([s.next_batch, s.next_seq, s.clock])?;
    Ok(())
}

/// The oldest batch holding an op recorded after op seq `after`, if any.
pub fn first_batch_after_op(conn: &Connection, after: i64) -> Result<Option<BatchSeq>, OplogError> {
    let b: Option<i64> = conn.query_row(
        "SELECT MIN(batch_id) FROM bae_sync_op_batches WHERE last_seq > ?1",
        [after],
        |r| r.get(0),
    )?;
    Ok(b.and_then(|b| u64::try_from(b).ok()).map(BatchSeq))
}

/// Whether this device has recorded any op the log still holds.
pub fn has_ops(conn: &Connection) -> Result<bool, OplogError> {
    Ok(
        conn.query_row("SELECT EXISTS (SELECT 1 FROM bae_sync_op_log)", [], |r| {
            r.get(0)
        })?,
    )
}

/// Ids of rows of `table` inserted by local batches after `after`, sorted.
pub fn rows_inserted_after(
    conn: &Connection,
    table: &str,
    after: BatchSeq,
) -> Result<Vec<String>, OplogError> {
    let table_id: Option<i64> = conn
        .prepare_cached("SELECT id FROM bae_sync_op_tables WHERE name = ?1")?
        .query_row([table], |r| r.get(0))
        .optional()?;
    let Some(table_id) = table_id else {
        return Ok(Vec::new());
    };
    let mut stmt = conn.prepare_cached(
        "SELECT o.last_seq, o.ops
         FROM bae_sync_op_batches b CROSS JOIN bae_sync_op_log o
         ON o.last_seq BETWEEN b.first_seq AND b.last_seq
         WHERE b.batch_id > ?1",
    )?;
    let mut rows = stmt.query([after.0 as i64])?;
    let insert = OpKind::Insert.code();
    let mut ids = std::collections::BTreeSet::new();
    while let Some(r) = rows.next()? {
        for (seq, op) in chunk_of(r)? {
            if op.table_id == table_id && i64::from(op.kind) == insert {
                ids.insert(op.row_id.into_text().ok_or_else(|| OplogError::CorruptOp {
                    seq,
                    reason: "row id is not text".into(),
                })?);
            }
        }
    }
    Ok(ids.into_iter().collect())
}

/// Deletes the ops of pushed batches up to `through` (a checkpoint covers
/// them). Returns the ops deleted.
pub fn prune_pushed(conn: &Connection, through: BatchSeq) -> Result<usize, OplogError> {
    let through = through.0 as i64;
    keep_high_water(conn)?;
    // CROSS JOIN keeps the batches the outer loop, so each batch's ops are
    // one range seek on the op log's key: with a plain JOIN SQLite may scan
    // every op and, for each, every batch (GC of 10,000 albums took 194 s).
    let ops: i64 = conn.query_row(
        "SELECT COALESCE(SUM(last_seq - first_seq + 1), 0) FROM bae_sync_op_batches
         WHERE batch_id <= ?1 AND pushed = 1",
        [through],
        |r| r.get(0),
    )?;
    conn.execute(
        "DELETE FROM bae_sync_op_log WHERE last_seq IN (
             SELECT o.last_seq FROM bae_sync_op_batches b
             CROSS JOIN bae_sync_op_log o ON o.last_seq BETWEEN b.first_seq AND b.last_seq
             WHERE b.batch_id <= ?1 AND b.pushed = 1)",
        [through],
    )?;
    conn.execute(
        "DELETE FROM bae_sync_op_batches WHERE batch_id <= ?1 AND pushed = 1",
        [through],
    )?;
    Ok(usize::try_from(ops).unwrap_or(0))
}

/// The name of each table number in the op log.
fn table_names(conn: &Connection) -> Result<HashMap<i64, String>, OplogError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM bae_sync_op_tables")?;
    let names = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    Ok(names)
}

/// The ops of an op-log row (columns last_seq, ops), each with its seq.
fn chunk_of(r: &rusqlite::Row<'_>) -> Result<Vec<(i64, StoredOp)>, OplogError> {
    let last: i64 = r.get(0)?;
    let corrupt = |reason: String| OplogError::CorruptOp { seq: last, reason };
    let bytes = r
        .get_ref(1)?
        .as_blob()
        .map_err(|e| corrupt(e.to_string()))?;
    let ops = read_chunk(bytes).map_err(corrupt)?;
    let first = last - (ops.len() as i64 - 1);
    Ok(ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| (first + i as i64, op))
        .collect())
}

/// Decodes one stored op.
fn op_from_stored(
    schema: &SyncSchema,
    tables: &HashMap<i64, String>,
    seq: i64,
    op: StoredOp,
) -> Result<Op, OplogError> {
    let corrupt = |reason: String| OplogError::CorruptOp { seq, reason };
    let kind = OpKind::from_code(i64::from(op.kind))
        .ok_or_else(|| corrupt(format!("kind {}", op.kind)))?;
    let table = tables
        .get(&op.table_id)
        .ok_or_else(|| corrupt(format!("table number {}", op.table_id)))?;
    let columns = schema
        .table(table)
        .ok_or_else(|| corrupt(format!("table {table:?} does not sync")))?
        .columns;
    let row_id = op
        .row_id
        .into_text()
        .ok_or_else(|| corrupt("row id is not text".into()))?;
    // The fields name columns by their index in the sync schema.
    let fields = op
        .fields
        .into_iter()
        .map(|(i, v)| {
            let column = columns
                .get(i as usize)
                .ok_or_else(|| corrupt(format!("column index {i}")))?;
            let value = v
                .into_value()
                .ok_or_else(|| corrupt(format!("column {column}: not a packed text")))?;
            Ok(((*column).to_owned(), value))
        })
        .collect::<Result<_, OplogError>>()?;
    Ok(Op {
        hlc: Timestamp::from_u64(op.hlc),
        table: table.clone(),
        row_id,
        kind,
        fields,
    })
}

/// Migration 0004's Rust step: each batch's version 3 op rows (one row
/// per op: seq, hlc, table_id, row_id, kind, payload) become rows of
/// gathered ops in `bae_sync_op_log_v4`, which then replaces the old
/// table. Runs in the migration's transaction.
pub(crate) fn convert_v3_ops(conn: &Connection) -> Result<(), OplogError> {
    let batches: Vec<(i64, i64)> = conn
        .prepare("SELECT first_seq, last_seq FROM bae_sync_op_batches ORDER BY first_seq")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut read = conn.prepare(
        "SELECT seq, hlc, table_id, row_id, kind, payload FROM bae_sync_op_log
         WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
    )?;
    let mut write =
        conn.prepare("INSERT INTO bae_sync_op_log_v4 (last_seq, ops) VALUES (?1, ?2)")?;
    let mut chunk = ChunkWriter::new();
    for (first, last) in batches {
        let mut rows = read.query([first, last])?;
        let mut prev = None;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let corrupt = |reason: String| OplogError::CorruptOp { seq, reason };
            // A batch's ops are consecutive seqs (its transaction held the
            // write lock): a hole would shift every seq after it.
            if prev.is_some_and(|p: i64| p + 1 != seq) {
                return Err(corrupt(format!("op {seq} follows {prev:?} in its batch")));
            }
            let row_id = row_id_from_sql(r.get_ref(3)?)
                .ok_or_else(|| corrupt("row id is neither text nor a packed id".into()))?;
            let payload = r
                .get_ref(5)?
                .as_blob()
                .map_err(|e| corrupt(e.to_string()))?;
            let fields: Vec<(u8, Value)> = postcard::from_bytes::<Vec<(u8, Stored)>>(payload)
                .map_err(|e| corrupt(e.to_string()))?
                .into_iter()
                .map(|(i, v)| v.into_value().map(|v| (i, v)))
                .collect::<Option<_>>()
                .ok_or_else(|| corrupt("not a packed text".into()))?;
            let fields: Vec<(u8, StoredRef<'_>)> =
                fields.iter().map(|(i, v)| (*i, v.into())).collect();
            let kind: i64 = r.get(4)?;
            let kind = u8::try_from(kind).map_err(|_| corrupt(format!("kind {kind}")))?;
            chunk
                .push(
                    r.get::<_, i64>(1)? as u64,
                    r.get(2)?,
                    kind,
                    &row_id,
                    &fields,
                )
                .map_err(|e| corrupt(e.to_string()))?;
            prev = Some(seq);
            if chunk.bytes() >= CHUNK_BYTES {
                write_chunk(&mut write, &mut chunk, seq)?;
            }
        }
        if let Some(seq) = prev {
            write_chunk(&mut write, &mut chunk, seq)?;
        }
    }
    conn.execute_batch(
        "DROP TABLE bae_sync_op_log;
         ALTER TABLE bae_sync_op_log_v4 RENAME TO bae_sync_op_log;",
    )?;
    Ok(())
}

/// Writes the ops gathered in `chunk`, the last of them `last_seq`.
fn write_chunk(
    write: &mut rusqlite::Statement<'_>,
    chunk: &mut ChunkWriter,
    last_seq: i64,
) -> Result<(), OplogError> {
    if chunk.len() == 0 {
        return Ok(());
    }
    let ops = chunk.encode().map_err(|e| OplogError::CorruptOp {
        seq: last_seq,
        reason: e.to_string(),
    })?;
    write.execute(params![last_seq, ops])?;
    chunk.clear();
    Ok(())
}

/// Marks a batch pushed: its object is safely in the bucket.
pub fn mark_pushed(conn: &Connection, batch: BatchSeq) -> Result<(), OplogError> {
    conn.prepare_cached("UPDATE bae_sync_op_batches SET pushed = 1 WHERE batch_id = ?1")?
        .execute(params![batch.0 as i64])?;
    Ok(())
}

/// Moves this device's unpushed batches up so the oldest starts at
/// `first`, keeping their order, ops and HLC stamps, and makes the next
/// recorded batch follow them (never moving `next_batch` back). Returns
/// how far they moved (0 when none is below `first`).
///
/// For a device whose database went back in time: the bucket already
/// holds batches under the numbers its unpushed ones carry, and those
/// objects must never be overwritten. Call inside the transaction that
/// records the bucket's batches as this device's pushed ones.
pub fn renumber_unpushed(conn: &Connection, first: BatchSeq) -> Result<u64, OplogError> {
    let oldest: Option<i64> = conn.query_row(
        "SELECT MIN(batch_id) FROM bae_sync_op_batches WHERE pushed = 0",
        [],
        |r| r.get(0),
    )?;
    let first = i64::try_from(first.0).map_err(|_| OplogError::BatchSeqOutOfRange(first.0))?;
    keep_high_water(conn)?;
    let shift = oldest.map_or(0, |oldest| first.saturating_sub(oldest).max(0));
    if shift > 0 {
        // Through negative numbers: moving each row straight up could meet
        // a batch not yet moved (batch_id is the key).
        conn.prepare_cached(
            "UPDATE bae_sync_op_batches SET batch_id = -(batch_id + ?1) WHERE pushed = 0",
        )?
        .execute([shift])?;
        conn.prepare_cached(
            "UPDATE bae_sync_op_batches SET batch_id = -batch_id WHERE batch_id < 0",
        )?
        .execute([])?;
    }
    conn.prepare_cached(
        "UPDATE bae_sync_device SET next_batch = MAX(next_batch + ?1, ?2) WHERE id = 1",
    )?
    .execute([shift, first])?;
    Ok(shift as u64)
}

/// The number of the newest batch this device has recorded (0 if none).
pub fn last_batch(conn: &Connection) -> Result<BatchSeq, OplogError> {
    let next = device_state(conn)?.next_batch;
    Ok(BatchSeq(next.saturating_sub(1) as u64))
}

/// The clock value any connection to this library last persisted.
pub fn persisted_clock(conn: &Connection) -> Result<Timestamp, OplogError> {
    Ok(Timestamp::from_u64(device_state(conn)?.clock as u64))
}

/// Advances `clock` past the value any connection to this library last
/// persisted (the host's recorder and the sync service's each have a
/// clock; this keeps them in step). Call inside the transaction that will
/// use the clock.
pub fn catch_up_clock(conn: &Connection, clock: &Clock) -> Result<(), OplogError> {
    clock.catch_up(persisted_clock(conn)?)?;
    Ok(())
}

/// Persists `clock`'s newest value, never moving the stored one back.
pub fn persist_clock(conn: &Connection, clock: &Clock) -> Result<(), OplogError> {
    persist_timestamp(conn, clock.last())
}

/// Persists a timestamp this device has adopted (checked against the
/// drift bound by the caller), never moving the stored clock back; every
/// connection's clock catches up with it at its next transaction.
pub fn persist_timestamp(conn: &Connection, t: Timestamp) -> Result<(), OplogError> {
    conn.prepare_cached("UPDATE bae_sync_device SET clock = MAX(clock, ?1) WHERE id = 1")?
        .execute([t.as_u64() as i64])?;
    Ok(())
}

/// Starts this library on a new device stream, for a device that leaves
/// its library (and may join this or another one later): a new random
/// device id, batch numbers from 1 again, and the op log emptied. The old
/// stream stays in its bucket under the old id, and nothing recorded
/// before this call is ever pushed again. Refused while a batch is
/// unpushed ([`OplogError::UnpushedBatches`]): those edits would be lost.
/// Recorders opened before this call still hold the old device id; reopen
/// them.
pub fn start_new_stream(conn: &mut Connection) -> Result<DeviceId, OplogError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let unpushed = unpushed_batches(&tx)?.len();
    if unpushed > 0 {
        return Err(OplogError::UnpushedBatches(unpushed));
    }
    let device = DeviceId::random();
    // Op seqs go on from where they were (`next_seq` stays): merge's fold
    // of local writes counts them.
    keep_high_water(&tx)?;
    tx.execute("DELETE FROM bae_sync_op_log", [])?;
    tx.execute("DELETE FROM bae_sync_op_batches", [])?;
    tx.execute(
        "UPDATE bae_sync_device SET device_id = ?1, next_batch = 1 WHERE id = 1",
        [device.to_string()],
    )?;
    tx.commit()?;
    Ok(device)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::fixture::{demo_album, library_on, Library};

    /// A slice of the unpushed batches: above `after`, at most `limit`,
    /// pushed ones skipped.
    #[test]
    fn unpushed_batches_after_reads_one_slice() {
        let conn = Connection::open_in_memory().unwrap();
        let mut lib = Library::new(library_on(conn, bae_hlc::WallClock::System).unwrap());
        for i in 0..5 {
            lib.import_album(&demo_album(1, i, 1)).unwrap();
        }
        let (conn, _, _) = lib.recorder().sync_parts();
        mark_pushed(conn, BatchSeq(2)).unwrap();
        let slice = |after, limit| unpushed_batches_after(conn, BatchSeq(after), limit).unwrap();
        assert_eq!(slice(0, 2), vec![BatchSeq(1), BatchSeq(3)]);
        assert_eq!(slice(3, 10), vec![BatchSeq(4), BatchSeq(5)]);
        assert!(slice(5, 10).is_empty());
        assert_eq!(slice(0, usize::MAX).len(), 4);
        assert!(matches!(
            unpushed_batches_after(conn, BatchSeq(u64::MAX), 1),
            Err(OplogError::BatchSeqOutOfRange(_))
        ));
    }

    /// Renumbering moves only unpushed batches, keeps their ops, and the
    /// next recorded batch follows them.
    #[test]
    fn renumber_moves_unpushed_batches_above_the_bucket() {
        let conn = Connection::open_in_memory().unwrap();
        let mut lib = Library::new(library_on(conn, bae_hlc::WallClock::System).unwrap());
        for i in 0..3 {
            lib.import_album(&demo_album(1, i, 1)).unwrap();
        }
        let (conn, _, _) = lib.recorder().sync_parts();
        mark_pushed(conn, BatchSeq(1)).unwrap();
        let schema = &crate::BAE_SCHEMA;
        let before: Vec<_> = [2, 3]
            .iter()
            .map(|b| batch_ops(conn, schema, BatchSeq(*b)).unwrap())
            .collect();
        assert_eq!(renumber_unpushed(conn, BatchSeq(7)).unwrap(), 5);
        assert_eq!(
            unpushed_batches(conn).unwrap(),
            vec![BatchSeq(7), BatchSeq(8)]
        );
        assert_eq!(batch_ops(conn, schema, BatchSeq(7)).unwrap(), before[0]);
        assert_eq!(batch_ops(conn, schema, BatchSeq(8)).unwrap(), before[1]);
        assert!(!batch_ops(conn, schema, BatchSeq(1)).unwrap().is_empty());
        assert_eq!(last_batch(conn).unwrap(), BatchSeq(8));
        // Nothing below `first`: nothing moves; next_batch never goes back.
        assert_eq!(renumber_unpushed(conn, BatchSeq(2)).unwrap(), 0);
        assert_eq!(last_batch(conn).unwrap(), BatchSeq(8));
        // No unpushed batch: the next one still starts at `first`.
        for b in [7, 8] {
            mark_pushed(conn, BatchSeq(b)).unwrap();
        }
        assert_eq!(renumber_unpushed(conn, BatchSeq(20)).unwrap(), 0);
        assert_eq!(last_batch(conn).unwrap(), BatchSeq(19));
        assert!(matches!(
            renumber_unpushed(conn, BatchSeq(u64::MAX)),
            Err(OplogError::BatchSeqOutOfRange(_))
        ));
    }
}
