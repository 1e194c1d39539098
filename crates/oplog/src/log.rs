//! Reading the local op log: this device's batches, for push and repair.

use crate::error::OplogError;
use crate::op::{BatchSeq, Op, OpKind, Value};
use crate::schema::SCHEMA;
use bae_hlc::Timestamp;
use rusqlite::{params, Connection};

/// The batch numbers not yet marked pushed, oldest first.
pub fn unpushed_batches(conn: &Connection) -> Result<Vec<BatchSeq>, OplogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT batch_id FROM op_log WHERE pushed = 0 ORDER BY batch_id",
    )?;
    let seqs = stmt
        .query_map([], |r| r.get::<_, i64>(0))?
        .map(|r| r.map(|b| BatchSeq(b as u64)))
        .collect::<Result<_, _>>()?;
    Ok(seqs)
}

/// The ops of one local batch in recording order; empty if the op log no
/// longer holds it (pruned after a checkpoint covered it).
pub fn batch_ops(conn: &Connection, batch: BatchSeq) -> Result<Vec<Op>, OplogError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, hlc, table_name, row_id, kind, payload FROM op_log WHERE batch_id = ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([batch.0 as i64])?;
    let mut ops = Vec::new();
    while let Some(r) = rows.next()? {
        ops.push(op_from_row(r)?);
    }
    Ok(ops)
}

/// Decodes one `op_log` row (columns seq, hlc, table_name, row_id, kind, payload).
pub(crate) fn op_from_row(r: &rusqlite::Row<'_>) -> Result<Op, OplogError> {
    let seq: i64 = r.get(0)?;
    let kind: i64 = r.get(4)?;
    let kind = OpKind::from_code(kind).ok_or_else(|| OplogError::CorruptOp {
        seq,
        reason: format!("kind {kind}"),
    })?;
    let payload: Vec<u8> = r.get(5)?;
    let table: String = r.get(2)?;
    let corrupt = |reason: String| OplogError::CorruptOp { seq, reason };
    let columns = SCHEMA
        .table(&table)
        .ok_or_else(|| corrupt(format!("table {table:?} does not sync")))?
        .columns;
    // The payload names columns by their index in the sync schema.
    let indexed: Vec<(u8, Value)> =
        postcard::from_bytes(&payload).map_err(|e| corrupt(e.to_string()))?;
    let fields = indexed
        .into_iter()
        .map(|(i, v)| {
            let column = columns
                .get(i as usize)
                .ok_or_else(|| corrupt(format!("column index {i}")))?;
            Ok(((*column).to_owned(), v))
        })
        .collect::<Result<_, OplogError>>()?;
    Ok(Op {
        hlc: Timestamp::from_u64(r.get::<_, i64>(1)? as u64),
        table,
        row_id: r.get(3)?,
        kind,
        fields,
    })
}

/// Marks a batch pushed: its object is safely in the bucket.
pub fn mark_pushed(conn: &Connection, batch: BatchSeq) -> Result<(), OplogError> {
    conn.prepare_cached("UPDATE op_log SET pushed = 1 WHERE batch_id = ?1")?
        .execute(params![batch.0 as i64])?;
    Ok(())
}

/// The number of the newest batch this device has recorded (0 if none).
pub fn last_batch(conn: &Connection) -> Result<BatchSeq, OplogError> {
    let next: i64 = conn.query_row("SELECT next_batch FROM sync_state WHERE id = 1", [], |r| {
        r.get(0)
    })?;
    Ok(BatchSeq(next.saturating_sub(1) as u64))
}
