//! Field timestamps and tombstones: the stamps merge compares against.
//!
//! Local writes reach `field_timestamps` and `tombstones` lazily:
//! [`fold_local_stamps`] folds every op_log row recorded since the last fold,
//! and must run (in the same transaction) before anything reads stamps.

use crate::error::OplogError;
use crate::log::op_from_row;
use crate::op::OpKind;
use bae_hlc::{DeviceId, Stamp, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

fn stamp_from(hlc: i64, device: Vec<u8>) -> Result<Stamp, OplogError> {
    let bytes: [u8; 16] = device.try_into().map_err(|_| OplogError::CorruptOp {
        seq: -1,
        reason: "stamp device is not 16 bytes".into(),
    })?;
    Ok(Stamp::new(
        Timestamp::from_u64(hlc as u64),
        DeviceId::from_bytes(bytes),
    ))
}

/// The stamp of the last accepted write of a field, if any.
pub fn field_stamp(
    conn: &Connection,
    table: &str,
    row_id: &str,
    column: &str,
) -> Result<Option<Stamp>, OplogError> {
    let found: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(r#"SELECT hlc, device FROM field_timestamps WHERE table_name = ?1 AND row_id = ?2 AND "column" = ?3"#)?
        .query_row(params![table, row_id, column], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    found.map(|(h, d)| stamp_from(h, d)).transpose()
}

/// Sets a field's stamp (the caller decided the write wins).
pub fn set_field_stamp(
    conn: &Connection,
    table: &str,
    row_id: &str,
    column: &str,
    stamp: Stamp,
) -> Result<(), OplogError> {
    conn.prepare_cached(
        r#"INSERT INTO field_timestamps (table_name, row_id, "column", hlc, device) VALUES (?1, ?2, ?3, ?4, ?5)
           ON CONFLICT (table_name, row_id, "column") DO UPDATE SET hlc = excluded.hlc, device = excluded.device"#,
    )?
    .execute(params![table, row_id, column, stamp.hlc.as_u64() as i64, stamp.device.as_bytes().as_slice()])?;
    Ok(())
}

/// The stamp of the newest delete of a row, if any.
pub fn tombstone(
    conn: &Connection,
    table: &str,
    row_id: &str,
) -> Result<Option<Stamp>, OplogError> {
    let found: Option<(i64, Vec<u8>)> = conn
        .prepare_cached("SELECT hlc, device FROM tombstones WHERE table_name = ?1 AND row_id = ?2")?
        .query_row(params![table, row_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    found.map(|(h, d)| stamp_from(h, d)).transpose()
}

/// Sets a row's tombstone (the caller decided the delete wins).
pub fn set_tombstone(
    conn: &Connection,
    table: &str,
    row_id: &str,
    stamp: Stamp,
) -> Result<(), OplogError> {
    conn.prepare_cached(
        "INSERT INTO tombstones (table_name, row_id, hlc, device) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (table_name, row_id) DO UPDATE SET hlc = excluded.hlc, device = excluded.device",
    )?
    .execute(params![table, row_id, stamp.hlc.as_u64() as i64, stamp.device.as_bytes().as_slice()])?;
    Ok(())
}

/// Folds local ops recorded since the last fold into the stamps: each field
/// an insert or update wrote gets the op's stamp, each delete a tombstone,
/// whenever newer than what is there. Returns how many ops were folded.
pub fn fold_local_stamps(conn: &Connection, device: DeviceId) -> Result<usize, OplogError> {
    let folded: i64 = conn.query_row(
        "SELECT stamps_folded_seq FROM sync_state WHERE id = 1",
        [],
        |r| r.get(0),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT seq, hlc, table_name, row_id, kind, payload FROM op_log WHERE seq > ?1 ORDER BY seq",
    )?;
    let mut rows = stmt.query([folded])?;
    let (mut count, mut last) = (0usize, folded);
    while let Some(r) = rows.next()? {
        last = r.get(0)?;
        let op = op_from_row(r)?;
        let stamp = Stamp::new(op.hlc, device);
        match op.kind {
            OpKind::Delete => {
                if tombstone(conn, &op.table, &op.row_id)?.is_none_or(|t| t < stamp) {
                    set_tombstone(conn, &op.table, &op.row_id, stamp)?;
                }
            }
            OpKind::Insert | OpKind::Update => {
                for (column, _) in &op.fields {
                    if field_stamp(conn, &op.table, &op.row_id, column)?.is_none_or(|t| t < stamp) {
                        set_field_stamp(conn, &op.table, &op.row_id, column, stamp)?;
                    }
                }
            }
        }
        count += 1;
    }
    if last != folded {
        conn.execute(
            "UPDATE sync_state SET stamps_folded_seq = ?1 WHERE id = 1",
            [last],
        )?;
    }
    Ok(count)
}
