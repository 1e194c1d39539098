//! Field stamps and tombstones (`bae_sync_stamps`, `bae_sync_tombstones`):
//! the stamps merge compares against. Local writes reach them lazily:
//! [`Applier::fold_local`](crate::apply::Applier) folds every op recorded
//! since the last fold (`bae_sync_merge.folded_seq`) before anything reads
//! stamps.

use crate::error::MergeError;
use bae_hlc::{DeviceId, Stamp, Timestamp};
use rusqlite::{params, Connection, OptionalExtension};

pub(crate) fn stamp_from(
    table: &str,
    row_id: &str,
    hlc: i64,
    device: &[u8],
) -> Result<Stamp, MergeError> {
    let bytes: [u8; 16] = device.try_into().map_err(|_| MergeError::CorruptStamp {
        table: table.into(),
        row_id: row_id.into(),
    })?;
    Ok(Stamp::new(
        Timestamp::from_u64(hlc as u64),
        DeviceId::from_bytes(bytes),
    ))
}

/// The stamp of the last accepted write of a field, if any.
pub(crate) fn field_stamp(
    conn: &Connection,
    table: &str,
    row_id: &str,
    column: &str,
) -> Result<Option<Stamp>, MergeError> {
    let found: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(r#"SELECT hlc, device FROM bae_sync_stamps WHERE table_name = ?1 AND row_id = ?2 AND "column" = ?3"#)?
        .query_row(params![table, row_id, column], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    found
        .map(|(h, d)| stamp_from(table, row_id, h, &d))
        .transpose()
}

/// Sets a field's stamp (the caller decided the write wins).
pub(crate) fn set_field_stamp(
    conn: &Connection,
    table: &str,
    row_id: &str,
    column: &str,
    stamp: Stamp,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        r#"INSERT INTO bae_sync_stamps (table_name, row_id, "column", hlc, device) VALUES (?1, ?2, ?3, ?4, ?5)
           ON CONFLICT (table_name, row_id, "column") DO UPDATE SET hlc = excluded.hlc, device = excluded.device"#,
    )?
    .execute(params![table, row_id, column, stamp.hlc.as_u64() as i64, stamp.device.as_bytes().as_slice()])?;
    Ok(())
}

/// The stamp of the newest delete of a row, if any.
pub(crate) fn tombstone(
    conn: &Connection,
    table: &str,
    row_id: &str,
) -> Result<Option<Stamp>, MergeError> {
    let found: Option<(i64, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT hlc, device FROM bae_sync_tombstones WHERE table_name = ?1 AND row_id = ?2",
        )?
        .query_row(params![table, row_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    found
        .map(|(h, d)| stamp_from(table, row_id, h, &d))
        .transpose()
}

/// Sets a row's tombstone (the caller decided the delete wins).
pub(crate) fn set_tombstone(
    conn: &Connection,
    table: &str,
    row_id: &str,
    stamp: Stamp,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        "INSERT INTO bae_sync_tombstones (table_name, row_id, hlc, device) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (table_name, row_id) DO UPDATE SET hlc = excluded.hlc, device = excluded.device",
    )?
    .execute(params![table, row_id, stamp.hlc.as_u64() as i64, stamp.device.as_bytes().as_slice()])?;
    Ok(())
}

/// The newest local op seq folded into the stamps.
pub(crate) fn folded_seq(conn: &Connection) -> Result<i64, MergeError> {
    Ok(conn
        .prepare_cached("SELECT folded_seq FROM bae_sync_merge WHERE id = 1")?
        .query_row([], |r| r.get(0))?)
}

/// Records how far local ops are folded.
pub(crate) fn set_folded_seq(conn: &Connection, seq: i64) -> Result<(), MergeError> {
    conn.prepare_cached("UPDATE bae_sync_merge SET folded_seq = ?1 WHERE id = 1")?
        .execute([seq])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use bae_hlc::WallClock;
    use bae_oplog::fixture::{demo_album, library_on, Library};

    fn library() -> Library {
        let conn = Connection::open_in_memory().unwrap();
        let mut rec = library_on(conn, WallClock::Manual(1_800_000_000_000)).unwrap();
        crate::migrate(&mut rec).unwrap();
        Library::new(rec)
    }

    #[test]
    fn local_writes_fold_into_stamps_and_tombstones_once() {
        let mut lib = library();
        let album = demo_album(9, 0, 1);
        lib.import_album(&album).unwrap();
        let album_id = album.album_id().unwrap().to_owned();
        let track = album.ids("tracks").next().unwrap().to_owned();
        lib.edit("albums", &album_id, &[("title", "Edited".into())])
            .unwrap();
        lib.delete("tracks", &track).unwrap();
        let device = lib.recorder().device();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        let title = field_stamp(conn, "albums", &album_id, "title")
            .unwrap()
            .unwrap();
        let row = field_stamp(conn, "albums", &album_id, crate::ROW_COLUMN)
            .unwrap()
            .unwrap();
        assert!(title > row, "the edit is newer than the import");
        assert_eq!(title.device, device);
        assert!(tombstone(conn, "tracks", &track).unwrap().is_some());
        let folded = folded_seq(conn).unwrap();
        assert_eq!(folded, bae_oplog::last_op_seq(conn).unwrap());
        crate::fold_local(lib.recorder()).unwrap();
        assert_eq!(folded_seq(lib.recorder().sync_parts().0).unwrap(), folded);
    }

    #[test]
    fn writes_after_the_op_log_was_pruned_are_still_folded() {
        let mut lib = library();
        let album = demo_album(9, 0, 1);
        let batch = lib.import_album(&album).unwrap().unwrap();
        let album_id = album.album_id().unwrap().to_owned();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        bae_oplog::mark_pushed(conn, batch).unwrap();
        bae_oplog::prune_pushed(conn, batch).unwrap();
        let before = field_stamp(conn, "albums", &album_id, "title")
            .unwrap()
            .unwrap();
        lib.edit("albums", &album_id, &[("title", "After pruning".into())])
            .unwrap();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        let after = field_stamp(conn, "albums", &album_id, "title")
            .unwrap()
            .unwrap();
        assert!(after > before, "the edit's stamp was folded");
    }
}
