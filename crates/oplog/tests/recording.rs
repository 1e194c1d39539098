//! Phase 0 scenarios: every write path records ops in its own transaction,
//! and the ops alone rebuild the synced tables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use bae_hlc::WallClock;
use bae_oplog::*;
use rusqlite::Connection;

fn library() -> Library {
    let conn = Connection::open_in_memory().unwrap();
    Library::new(OpRecorder::with_connection(conn, WallClock::Manual(1_800_000_000_000)).unwrap())
}

fn all_ops(lib: &mut Library) -> Vec<(BatchSeq, Op)> {
    let (conn, _, _) = lib.recorder().sync_parts();
    let last = last_batch(conn).unwrap();
    (1..=last.0)
        .flat_map(|b| {
            batch_ops(conn, BatchSeq(b))
                .unwrap()
                .into_iter()
                .map(move |op| (BatchSeq(b), op))
        })
        .collect()
}

/// Replays ops naively (no merge rules) on a fresh database.
fn replay(ops: &[(BatchSeq, Op)]) -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    migrate(&mut conn).unwrap();
    for (_, op) in ops {
        match op.kind {
            OpKind::Insert => {
                let sql = insert_sql(&op.table, op.fields.iter().map(|(c, _)| c.as_str()));
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&op.row_id];
                params.extend(op.fields.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
                conn.execute(&sql, params.as_slice()).unwrap();
            }
            OpKind::Update => {
                let sets: Vec<String> = op
                    .fields
                    .iter()
                    .enumerate()
                    .map(|(i, (c, _))| format!("{c} = ?{}", i + 2))
                    .collect();
                let sql = format!("UPDATE {} SET {} WHERE id = ?1", op.table, sets.join(", "));
                let mut params: Vec<&dyn rusqlite::ToSql> = vec![&op.row_id];
                params.extend(op.fields.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
                conn.execute(&sql, params.as_slice()).unwrap();
            }
            OpKind::Delete => {
                conn.execute(
                    &format!("DELETE FROM {} WHERE id = ?1", op.table),
                    [&op.row_id],
                )
                .unwrap();
            }
        }
    }
    conn
}

fn dump(lib: &mut Library) -> String {
    let (conn, _, _) = lib.recorder().sync_parts();
    canonical_dump(conn).unwrap()
}

#[test]
fn every_write_path_replays_to_the_same_synced_tables() {
    let mut lib = library();
    let albums: Vec<_> = (0..6).map(|i| demo_album(1, i, 12)).collect();
    for a in &albums {
        assert!(lib.import_album(a).unwrap().is_some());
    }
    lib.edit(
        "albums",
        albums[0].album_id().unwrap(),
        &[("title", "Renamed".into()), ("year", Value::Integer(1999))],
    )
    .unwrap();
    let track = albums[1].ids("tracks").next().unwrap().to_owned();
    lib.edit("tracks", &track, &[("title", "Better title".into())])
        .unwrap();
    lib.delete_release(albums[2].ids("releases").next().unwrap())
        .unwrap();
    lib.delete_album(albums[3].album_id().unwrap()).unwrap();
    lib.delete("tracks", albums[4].ids("tracks").next().unwrap())
        .unwrap();
    // Re-import of a deleted album brings it back.
    lib.import_album(&albums[3]).unwrap();

    let ops = all_ops(&mut lib);
    let replayed = replay(&ops);
    assert_eq!(canonical_dump(&replayed).unwrap(), dump(&mut lib));
    assert!(dump(&mut lib).contains("Renamed"));
}

#[test]
fn a_dropped_transaction_leaves_neither_data_nor_ops() {
    let mut lib = library();
    let album = demo_album(2, 0, 12);
    {
        let mut tx = lib.recorder().transaction().unwrap();
        for row in &album.artists {
            tx.insert(row.table, &row.id, &row.fields).unwrap();
        }
        for row in &album.rows[..5] {
            tx.insert(row.table, &row.id, &row.fields).unwrap();
        }
        // The process dies here: the transaction is dropped uncommitted.
    }
    let (conn, _, _) = lib.recorder().sync_parts();
    let ops: i64 = conn
        .query_row("SELECT COUNT(*) FROM op_log", [], |r| r.get(0))
        .unwrap();
    let albums: i64 = conn
        .query_row("SELECT COUNT(*) FROM albums", [], |r| r.get(0))
        .unwrap();
    assert_eq!((ops, albums), (0, 0));
    assert_eq!(last_batch(conn).unwrap(), BatchSeq(0));
    // The next transaction takes batch 1: no gap in the device's stream.
    assert_eq!(lib.import_album(&album).unwrap(), Some(BatchSeq(1)));
}

#[test]
fn a_failed_write_rolls_back_the_whole_batch() {
    let mut lib = library();
    let mut album = demo_album(3, 0, 3);
    // A track pointing at a release that does not exist: FK failure mid-import.
    let bad = album.rows.iter().position(|r| r.table == "tracks").unwrap();
    album.rows[bad].fields[0].1 = "no-such-release".into();
    assert!(lib.import_album(&album).is_err());
    let (conn, _, _) = lib.recorder().sync_parts();
    let ops: i64 = conn
        .query_row("SELECT COUNT(*) FROM op_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ops, 0);
    assert_eq!(canonical_dump(conn).unwrap(), "");
}

#[test]
fn local_only_columns_and_tables_never_appear_in_ops() {
    let mut lib = library();
    let album = demo_album(4, 0, 4);
    lib.import_album(&album).unwrap();
    let file = album.ids("files").next().unwrap().to_owned();
    // An edit of only a local column records nothing.
    assert_eq!(
        lib.edit("files", &file, &[("source_path", "/elsewhere.flac".into())])
            .unwrap(),
        None
    );
    {
        let mut tx = lib.recorder().transaction().unwrap();
        tx.execute_local(
            "INSERT INTO storage_profiles (id, name, location, secret_key, created_at) VALUES ('p', 'cloud', 's3', 'SECRET', 'now')",
            [],
        )
        .unwrap();
        assert_eq!(tx.commit().unwrap(), None);
    }
    for (_, op) in all_ops(&mut lib) {
        assert!(SCHEMA.table(&op.table).is_some(), "{}", op.table);
        for (c, v) in &op.fields {
            assert!(
                SCHEMA.table(&op.table).unwrap().syncs(c),
                "{}.{c}",
                op.table
            );
            assert_ne!(v, &Value::Text("SECRET".into()));
            if let Value::Text(s) = v {
                assert!(
                    !s.contains("/home/user"),
                    "source path leaked in {}.{c}",
                    op.table
                );
            }
        }
    }
}

#[test]
fn deleting_an_album_records_its_whole_cascade_dependents_first() {
    let mut lib = library();
    let album = demo_album(5, 0, 3);
    lib.import_album(&album).unwrap();
    let batch = lib
        .delete_album(album.album_id().unwrap())
        .unwrap()
        .unwrap();
    let (conn, _, _) = lib.recorder().sync_parts();
    let ops = batch_ops(conn, batch).unwrap();
    assert!(ops.iter().all(|o| o.kind == OpKind::Delete));
    // Every album row (not the shared artist) has a delete op.
    assert_eq!(ops.len(), album.rows.len());
    assert_eq!(ops.last().unwrap().table, "albums");
    let pos = |t: &str| ops.iter().position(|o| o.table == t).unwrap();
    assert!(pos("audio_formats") < pos("tracks") && pos("tracks") < pos("releases"));
    let left: i64 = conn
        .query_row("SELECT COUNT(*) FROM tracks", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn ops_carry_increasing_timestamps_and_batches_are_numbered_from_one() {
    let mut lib = library();
    for i in 0..3 {
        assert_eq!(
            lib.import_album(&demo_album(6, i, 2)).unwrap(),
            Some(BatchSeq(i + 1))
        );
    }
    let ops = all_ops(&mut lib);
    assert!(ops.windows(2).all(|w| w[0].1.hlc < w[1].1.hlc));
    let (conn, _, _) = lib.recorder().sync_parts();
    assert_eq!(
        unpushed_batches(conn).unwrap(),
        vec![BatchSeq(1), BatchSeq(2), BatchSeq(3)]
    );
    mark_pushed(conn, BatchSeq(1)).unwrap();
    assert_eq!(
        unpushed_batches(conn).unwrap(),
        vec![BatchSeq(2), BatchSeq(3)]
    );
}

#[test]
fn the_clock_and_device_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.db");
    let (device, last) = {
        let mut lib = Library::new(OpRecorder::open(&path).unwrap());
        lib.import_album(&demo_album(7, 0, 2)).unwrap();
        let rec = lib.recorder();
        (rec.device(), rec.clock().last())
    };
    // Restart with a wall clock an hour behind: timestamps still go forward.
    let conn = Connection::open(&path).unwrap();
    let mut lib = Library::new(
        OpRecorder::with_connection(conn, WallClock::Manual(last.unix_millis() - 3_600_000))
            .unwrap(),
    );
    assert_eq!(lib.recorder().device(), device);
    lib.import_album(&demo_album(7, 1, 2)).unwrap();
    let ops = all_ops(&mut lib);
    assert!(ops.last().unwrap().1.hlc > last);
}

#[test]
fn read_only_accessor_refuses_writes() {
    let lib = library();
    let mut lib = lib;
    lib.import_album(&demo_album(8, 0, 1)).unwrap();
    let db = lib.recorder().database();
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM albums", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    assert!(db.prepare("DELETE FROM albums").is_err());
}

#[test]
fn local_stamps_fold_into_field_timestamps_and_tombstones() {
    let mut lib = library();
    let album = demo_album(9, 0, 1);
    lib.import_album(&album).unwrap();
    let album_id = album.album_id().unwrap().to_owned();
    lib.edit("albums", &album_id, &[("title", "Edited".into())])
        .unwrap();
    lib.delete("tracks", album.ids("tracks").next().unwrap())
        .unwrap();
    let device = lib.recorder().device();
    let (conn, _, _) = lib.recorder().sync_parts();
    let folded = stamps::fold_local_stamps(conn, device).unwrap();
    assert_eq!(folded, all_ops(&mut lib).len());
    let (conn, _, _) = lib.recorder().sync_parts();
    let title = stamps::field_stamp(conn, "albums", &album_id, "title")
        .unwrap()
        .unwrap();
    let year = stamps::field_stamp(conn, "albums", &album_id, "year")
        .unwrap()
        .unwrap();
    assert!(title > year, "the edit is newer than the import");
    assert_eq!(title.device, device);
    assert!(
        stamps::tombstone(conn, "tracks", album.ids("tracks").next().unwrap())
            .unwrap()
            .is_some()
    );
    // Folding again does nothing.
    assert_eq!(stamps::fold_local_stamps(conn, device).unwrap(), 0);
}

#[test]
fn writes_after_the_op_log_was_emptied_are_still_folded() {
    let mut lib = library();
    let album = demo_album(9, 0, 1);
    lib.import_album(&album).unwrap();
    let album_id = album.album_id().unwrap().to_owned();
    let device = lib.recorder().device();
    let (conn, _, _) = lib.recorder().sync_parts();
    let folded = stamps::fold_local_stamps(conn, device).unwrap();
    assert!(folded > 0);
    // Pruning can leave the op log empty; SQLite would then number the
    // next op 1 again, below what the fold has already passed.
    conn.execute("DELETE FROM op_log", []).unwrap();
    lib.edit("albums", &album_id, &[("title", "After pruning".into())])
        .unwrap();
    let (conn, _, _) = lib.recorder().sync_parts();
    let seq: i64 = conn
        .query_row("SELECT MIN(seq) FROM op_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(seq, folded as i64 + 1);
    let before = stamps::field_stamp(conn, "albums", &album_id, "title")
        .unwrap()
        .unwrap();
    assert_eq!(stamps::fold_local_stamps(conn, device).unwrap(), 1);
    let after = stamps::field_stamp(conn, "albums", &album_id, "title")
        .unwrap()
        .unwrap();
    assert!(after > before, "the edit's stamp was folded");
}

#[test]
fn names_that_are_not_identifiers_are_refused_before_reaching_sql() {
    let mut lib = library();
    let err = lib
        .edit("albums; DROP TABLE albums", "x", &[("title", "t".into())])
        .unwrap_err();
    assert!(matches!(err, OplogError::BadIdentifier(_)));
    let err = lib
        .edit("albums", "x", &[("title = 'x', year", "t".into())])
        .unwrap_err();
    assert!(matches!(err, OplogError::BadIdentifier(_)));
    let err = lib
        .edit("albums", "missing", &[("title", "t".into())])
        .unwrap_err();
    assert!(matches!(err, OplogError::NoSuchRow { .. }));
}
