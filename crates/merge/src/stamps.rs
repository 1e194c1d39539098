//! Row and column stamps (`bae_sync_row_stamps`, `bae_sync_column_stamps`,
//! devices numbered in `bae_sync_writers` and tables in
//! `bae_sync_table_ids`; migrations `0002_compact_stamps`,
//! `0004_table_numbers` and `0005_clustered_row_keys`, which keys row
//! stamps by row key first so related rows' stamps share pages, `keys.rs`):
//! the stamps merge compares against. One entry per row holds its newest
//! insert and newest delete; a column has an entry only while it is newer
//! than its row's insert stamp (a column's effective stamp is the newer of
//! the two, so an older column stamp says nothing and is removed whenever
//! the row stamp passes it). Local writes reach the stamps lazily:
//! [`Applier::fold_local`](crate::apply::Applier) folds every op recorded
//! since the last fold (`bae_sync_merge.folded_seq`) before anything reads
//! stamps.

use crate::error::MergeError;
use crate::keys::row_key;
use bae_hlc::{DeviceId, Stamp, Timestamp};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;

/// A stamp from its stored parts: the HLC and the writer's device bytes
/// (NULL when the writer number names no device: a corrupt database).
pub(crate) fn stamp_from(
    table: &str,
    row_id: &str,
    hlc: i64,
    device: ValueRef<'_>,
) -> Result<Stamp, MergeError> {
    let corrupt = || MergeError::CorruptStamp {
        table: table.into(),
        row_id: row_id.into(),
    };
    let ValueRef::Blob(device) = device else {
        return Err(corrupt());
    };
    let bytes: [u8; 16] = device.try_into().map_err(|_| corrupt())?;
    Ok(Stamp::new(
        Timestamp::from_u64(hlc as u64),
        DeviceId::from_bytes(bytes),
    ))
}

/// The local numbers stamps use for their writers (`bae_sync_writers`)
/// and tables (`bae_sync_table_ids`), looked up once per transaction (an
/// `Applier` or a restore lives for one transaction, so a number it
/// created is never rolled back under it).
#[derive(Debug, Default)]
pub(crate) struct StampIds {
    writers: HashMap<DeviceId, i64>,
    tables: HashMap<String, i64>,
    /// The table named last, and its number: a batch's ops come table by
    /// table, so most lookups need no hashing.
    last_table: Option<(String, i64)>,
}

impl StampIds {
    /// The number of `device`, given one if it has none yet.
    pub(crate) fn writer(
        &mut self,
        conn: &Connection,
        device: DeviceId,
    ) -> Result<i64, MergeError> {
        if let Some(id) = self.writers.get(&device) {
            return Ok(*id);
        }
        let id = number(
            conn,
            "bae_sync_writers",
            "device",
            &device.as_bytes().as_slice(),
        )?;
        self.writers.insert(device, id);
        Ok(id)
    }

    /// The number of `table`, given one if it has none yet.
    pub(crate) fn table(&mut self, conn: &Connection, table: &str) -> Result<i64, MergeError> {
        if let Some((name, id)) = &self.last_table {
            if name == table {
                return Ok(*id);
            }
        }
        let id = match self.tables.get(table) {
            Some(id) => *id,
            None => {
                let id = number(conn, "bae_sync_table_ids", "name", &table)?;
                self.tables.insert(table.to_owned(), id);
                id
            }
        };
        match &mut self.last_table {
            // Reuses the buffer: no allocation when ops alternate tables.
            Some((name, last)) => {
                name.clear();
                name.push_str(table);
                *last = id;
            }
            None => self.last_table = Some((table.to_owned(), id)),
        }
        Ok(id)
    }
}

/// The number `registry` gives `value` in its `column`, given one if it
/// has none yet (both names are this crate's constants).
fn number(
    conn: &Connection,
    registry: &str,
    column: &str,
    value: &dyn rusqlite::ToSql,
) -> Result<i64, MergeError> {
    let found: Option<i64> = conn
        .prepare_cached(&format!("SELECT id FROM {registry} WHERE {column} = ?1"))?
        .query_row([value], |r| r.get(0))
        .optional()?;
    if let Some(id) = found {
        return Ok(id);
    }
    conn.prepare_cached(&format!("INSERT INTO {registry} ({column}) VALUES (?1)"))?
        .execute([value])?;
    Ok(conn.last_insert_rowid())
}

/// Sets a row's insert stamp (the caller decided it is newer) and removes
/// the stamps of `passed` columns, which it now covers. `table` is the
/// table's number ([`StampIds::table`]).
pub(crate) fn set_row_stamp<'a>(
    conn: &Connection,
    table: i64,
    row_id: &str,
    hlc: i64,
    writer: i64,
    passed: impl IntoIterator<Item = &'a str>,
) -> Result<(), MergeError> {
    let key = row_key(row_id);
    conn.prepare_cached(
        "INSERT INTO bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (table_id, row_key) DO UPDATE SET ins_hlc = excluded.ins_hlc, ins_writer = excluded.ins_writer",
    )?
    .execute(params![table, key, hlc, writer])?;
    let mut passed = passed.into_iter().peekable();
    if passed.peek().is_none() {
        return Ok(());
    }
    let mut forget = conn.prepare_cached(
        r#"DELETE FROM bae_sync_column_stamps WHERE table_id = ?1 AND row_key = ?2 AND "column" = ?3"#,
    )?;
    for column in passed {
        forget.execute(params![table, key, column])?;
    }
    Ok(())
}

/// Gives a row that has no row stamp its insert stamp; returns whether it
/// had none (otherwise nothing changes). One seek both asks and answers the
/// common question of an incoming insert: has this row ever been stamped?
pub(crate) fn claim_row_stamp(
    conn: &Connection,
    table: i64,
    key: &rusqlite::types::Value,
    hlc: i64,
    writer: i64,
) -> Result<bool, MergeError> {
    let added = conn
        .prepare_cached(
            "INSERT INTO bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (table_id, row_key) DO NOTHING",
        )?
        .execute(params![table, key, hlc, writer])?;
    Ok(added == 1)
}

/// Takes back a row stamp [`claim_row_stamp`] added in this transaction.
pub(crate) fn unclaim_row_stamp(
    conn: &Connection,
    table: i64,
    key: &rusqlite::types::Value,
) -> Result<(), MergeError> {
    conn.prepare_cached("DELETE FROM bae_sync_row_stamps WHERE table_id = ?1 AND row_key = ?2")?
        .execute(params![table, key])?;
    Ok(())
}

/// Whether any column of a row has a stamp of its own.
pub(crate) fn has_column_stamps(
    conn: &Connection,
    table: i64,
    key: &rusqlite::types::Value,
) -> Result<bool, MergeError> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM bae_sync_column_stamps WHERE table_id = ?1 AND row_key = ?2)",
        )?
        .query_row(params![table, key], |r| r.get(0))?)
}

/// Whether any column of any row has a stamp of its own.
pub(crate) fn any_column_stamps(conn: &Connection) -> Result<bool, MergeError> {
    Ok(conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM bae_sync_column_stamps)")?
        .query_row([], |r| r.get(0))?)
}

/// Sets a column's stamp (the caller decided the write wins, so it is newer
/// than the row's insert stamp).
pub(crate) fn set_column_stamp(
    conn: &Connection,
    table: i64,
    row_id: &str,
    column: &str,
    hlc: i64,
    writer: i64,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        r#"INSERT INTO bae_sync_column_stamps (table_id, row_key, "column", hlc, writer) VALUES (?1, ?2, ?3, ?4, ?5)
           ON CONFLICT (table_id, row_key, "column") DO UPDATE SET hlc = excluded.hlc, writer = excluded.writer"#,
    )?
    .execute(params![table, row_key(row_id), column, hlc, writer])?;
    Ok(())
}

/// Sets a row's tombstone (the caller decided the delete wins).
pub(crate) fn set_tombstone(
    conn: &Connection,
    table: i64,
    row_id: &str,
    hlc: i64,
    writer: i64,
) -> Result<(), MergeError> {
    conn.prepare_cached(
        "INSERT INTO bae_sync_row_stamps (table_id, row_key, del_hlc, del_writer) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (table_id, row_key) DO UPDATE SET del_hlc = excluded.del_hlc, del_writer = excluded.del_writer",
    )?
    .execute(params![table, row_key(row_id), hlc, writer])?;
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
    use crate::state::load_row;
    use bae_hlc::WallClock;
    use bae_oplog::fixture::{demo_album, library_on, Library};

    fn library() -> Library {
        let conn = Connection::open_in_memory().unwrap();
        let mut rec = library_on(conn, WallClock::Manual(1_800_000_000_000)).unwrap();
        crate::migrate(&mut rec).unwrap();
        Library::new(rec)
    }

    fn table(name: &str) -> &'static bae_oplog::TableSchema {
        bae_oplog::BAE_SCHEMA.table(name).unwrap()
    }

    fn column_stamps(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM bae_sync_column_stamps", [], |r| {
            r.get(0)
        })
        .unwrap()
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
        let st = load_row(conn, table("albums"), &album_id).unwrap();
        let title = st.field("title").unwrap();
        let row = st.ins.unwrap();
        assert!(title > row, "the edit is newer than the import");
        assert_eq!(title.device, device);
        assert_eq!(st.fields.len(), 1, "only the edited column has a stamp");
        assert!(load_row(conn, table("tracks"), &track)
            .unwrap()
            .tomb
            .is_some());
        let folded = folded_seq(conn).unwrap();
        assert_eq!(folded, bae_oplog::last_op_seq(conn).unwrap());
        crate::fold_local(lib.recorder()).unwrap();
        assert_eq!(folded_seq(lib.recorder().sync_parts().0).unwrap(), folded);
    }

    #[test]
    fn a_local_import_folds_one_stamp_per_row_and_no_column_stamps() {
        let mut lib = library();
        let album = demo_album(9, 0, 3);
        lib.import_album(&album).unwrap();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        assert_eq!(column_stamps(conn), 0);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM bae_sync_row_stamps", [], |r| r.get(0))
            .unwrap();
        let synced: usize = bae_oplog::BAE_SCHEMA
            .tables()
            .iter()
            .map(|t| {
                conn.query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| {
                    r.get::<_, i64>(0)
                })
                .unwrap() as usize
            })
            .sum();
        assert_eq!(rows as usize, synced);
        let writers: i64 = conn
            .query_row("SELECT COUNT(*) FROM bae_sync_writers", [], |r| r.get(0))
            .unwrap();
        assert_eq!(writers, 1);
    }

    #[test]
    fn a_newer_insert_removes_the_column_stamps_it_passes() {
        let mut lib = library();
        let album = demo_album(9, 0, 1);
        lib.import_album(&album).unwrap();
        let album_id = album.album_id().unwrap().to_owned();
        lib.edit("albums", &album_id, &[("title", "Edited".into())])
            .unwrap();
        crate::fold_local(lib.recorder()).unwrap();
        assert_eq!(column_stamps(lib.recorder().sync_parts().0), 1);
        lib.delete("albums", &album_id).unwrap();
        lib.import_album(&album).unwrap();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        assert_eq!(column_stamps(conn), 0, "the re-import covers the edit");
        let st = load_row(conn, table("albums"), &album_id).unwrap();
        assert!(st.ins > st.tomb && st.tomb.is_some());
    }

    #[test]
    fn a_stamp_whose_writer_is_unknown_is_a_corrupt_stamp() {
        let mut lib = library();
        let album = demo_album(9, 0, 1);
        lib.import_album(&album).unwrap();
        let album_id = album.album_id().unwrap().to_owned();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        conn.execute("UPDATE bae_sync_row_stamps SET ins_writer = 99", [])
            .unwrap();
        assert!(matches!(
            load_row(conn, table("albums"), &album_id),
            Err(MergeError::CorruptStamp { .. })
        ));
        conn.execute("UPDATE bae_sync_row_stamps SET ins_writer = 1", [])
            .unwrap();
        conn.execute("UPDATE bae_sync_writers SET device = x'0102'", [])
            .unwrap();
        assert!(matches!(
            load_row(conn, table("albums"), &album_id),
            Err(MergeError::CorruptStamp { .. })
        ));
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
        let before = load_row(conn, table("albums"), &album_id)
            .unwrap()
            .field("title")
            .unwrap();
        lib.edit("albums", &album_id, &[("title", "After pruning".into())])
            .unwrap();
        crate::fold_local(lib.recorder()).unwrap();
        let conn = lib.recorder().sync_parts().0;
        let after = load_row(conn, table("albums"), &album_id)
            .unwrap()
            .field("title")
            .unwrap();
        assert!(after > before, "the edit's stamp was folded");
    }
}
