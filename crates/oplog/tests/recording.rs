//! Phase 0 scenarios: every write path records ops in its own transaction,
//! and the ops alone rebuild the synced tables.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use bae_hlc::WallClock;
use bae_oplog::fixture::{demo_album, library_on, open_library, Library};
use bae_oplog::*;
use rusqlite::Connection;

fn library() -> Library {
    let conn = Connection::open_in_memory().unwrap();
    Library::new(library_on(conn, WallClock::Manual(1_800_000_000_000)).unwrap())
}

fn all_ops(lib: &mut Library) -> Vec<(BatchSeq, Op)> {
    let (conn, _, _) = lib.recorder().sync_parts();
    let last = last_batch(conn).unwrap();
    (1..=last.0)
        .flat_map(|b| {
            batch_ops(conn, &BAE_SCHEMA, BatchSeq(b))
                .unwrap()
                .into_iter()
                .map(move |op| (BatchSeq(b), op))
        })
        .collect()
}

/// Replays ops naively (no merge rules) on a fresh database.
fn replay(ops: &[(BatchSeq, Op)]) -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    fixture::create_bae_library(&conn).unwrap();
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
    canonical_dump(conn, &BAE_SCHEMA).unwrap()
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
    assert_eq!(
        canonical_dump(&replayed, &BAE_SCHEMA).unwrap(),
        dump(&mut lib)
    );
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
        .query_row("SELECT COUNT(*) FROM bae_sync_op_log", [], |r| r.get(0))
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
        .query_row("SELECT COUNT(*) FROM bae_sync_op_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ops, 0);
    assert_eq!(canonical_dump(conn, &BAE_SCHEMA).unwrap(), "");
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
        assert!(BAE_SCHEMA.table(&op.table).is_some(), "{}", op.table);
        for (c, v) in &op.fields {
            assert!(
                BAE_SCHEMA.table(&op.table).unwrap().syncs(c),
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
    let ops = batch_ops(conn, &BAE_SCHEMA, batch).unwrap();
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
        let mut lib = Library::new(open_library(&path).unwrap());
        lib.import_album(&demo_album(7, 0, 2)).unwrap();
        let rec = lib.recorder();
        (rec.device(), rec.clock().last())
    };
    // Restart with a wall clock an hour behind: timestamps still go forward.
    let conn = Connection::open(&path).unwrap();
    let mut lib =
        Library::new(library_on(conn, WallClock::Manual(last.unix_millis() - 3_600_000)).unwrap());
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
fn op_seqs_are_never_reused_after_pruning() {
    let mut lib = library();
    let album = demo_album(9, 0, 1);
    let batch = lib.import_album(&album).unwrap().unwrap();
    let album_id = album.album_id().unwrap().to_owned();
    let (conn, _, _) = lib.recorder().sync_parts();
    let before = last_op_seq(conn).unwrap();
    assert!(before > 0);
    mark_pushed(conn, batch).unwrap();
    assert_eq!(prune_pushed(conn, batch).unwrap() as i64, before);
    assert!(!has_ops(conn).unwrap());
    assert_eq!(
        last_op_seq(conn).unwrap(),
        before,
        "the high-water mark survives"
    );
    lib.edit("albums", &album_id, &[("title", "After pruning".into())])
        .unwrap();
    let (conn, _, _) = lib.recorder().sync_parts();
    let mut seqs = Vec::new();
    let last = for_each_op_after(conn, &BAE_SCHEMA, before, usize::MAX, |op| {
        seqs.push(op.table.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(seqs, ["albums"], "the new op numbers above the pruned ones");
    assert_eq!(last, before + 1);
}

#[test]
fn two_recorders_on_one_file_never_stamp_behind_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.db");
    let album = demo_album(3, 0, 1);
    let album_id = album.album_id().unwrap().to_owned();
    let mut host = Library::new(open_library(&path).unwrap());
    host.import_album(&album).unwrap();
    // The second connection (a sync service) adopts a timestamp an hour
    // ahead of the host's clock (as a remote batch within the drift bound
    // would move it) and persists it.
    let conn = Connection::open(&path).unwrap();
    let wall = host.recorder().clock().wall_millis();
    let mut service = library_on(conn, WallClock::Manual(wall + 3_600_000)).unwrap();
    {
        let mut tx = service.transaction().unwrap();
        tx.update("albums", &album_id, &[("title", "From the service".into())])
            .unwrap();
        tx.commit().unwrap();
    }
    let service_stamp = service.clock().last();
    host.edit("albums", &album_id, &[("title", "From the host".into())])
        .unwrap();
    let ops = all_ops(&mut host);
    let (_, last) = ops.last().unwrap();
    assert!(
        last.hlc > service_stamp,
        "the host's later edit is stamped after the one it could see"
    );
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

/// A write naming one column twice is refused before it reaches SQL or
/// the op log: readers refuse such an op (SQLite keeps the first of an
/// insert's repeated columns and the last of an update's, so devices
/// would settle it differently), so recording one would stop this
/// device's stream for everyone.
#[test]
fn a_write_naming_a_column_twice_is_refused_and_records_nothing() {
    let mut lib = library();
    let album = demo_album(1, 0, 1);
    lib.import_album(&album).unwrap();
    let id = album.album_id().unwrap().to_owned();
    let before = all_ops(&mut lib).len();
    let twice = [("title", "a".into()), ("title", "b".into())];
    let err = lib.edit("albums", &id, &twice).unwrap_err();
    assert!(
        matches!(&err, OplogError::ColumnTwice { table, column } if table == "albums" && column == "title"),
        "{err:?}"
    );
    let mut tx = lib.recorder().transaction().unwrap();
    let err = tx.insert("albums", "new", &twice).unwrap_err();
    assert!(matches!(err, OplogError::ColumnTwice { .. }), "{err:?}");
    drop(tx);
    assert_eq!(all_ops(&mut lib).len(), before);
}

/// A recorded transaction that reads, then writes, while another
/// connection commits in between, succeeds: the write lock is taken when
/// the transaction starts, so the other writer waits (a deferred
/// transaction would fail with "database is locked" at its first write).
#[test]
fn a_read_then_write_transaction_survives_a_concurrent_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.db");
    let album = demo_album(4, 0, 1);
    let album_id = album.album_id().unwrap().to_owned();
    let mut host = Library::new(open_library(&path).unwrap());
    host.import_album(&album).unwrap();
    let mut other = open_library(&path).unwrap();
    let rec = host.recorder();
    let mut tx = rec.transaction().unwrap();
    let title: Option<String> = tx
        .query_row("SELECT title FROM albums WHERE id = ?1", [&album_id], |r| {
            r.get(0)
        })
        .unwrap();
    let id = album_id.clone();
    let writer = std::thread::spawn(move || {
        let mut tx = other.transaction().unwrap();
        tx.update("albums", &id, &[("year", Value::Integer(2001))])
            .unwrap();
        tx.commit().unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    tx.update(
        "albums",
        &album_id,
        &[("title", format!("{} (remastered)", title.unwrap()).into())],
    )
    .unwrap();
    tx.commit().unwrap();
    writer.join().unwrap();
    let db = host.recorder().database();
    let (title, year): (String, i64) = db
        .query_row(
            "SELECT title, year FROM albums WHERE id = ?1",
            [&album_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(title.ends_with("(remastered)"));
    assert_eq!(year, 2001);
}

/// Two connections (the host's and the sync service's) opening a new
/// library at the same moment both succeed and agree on one device id
/// (the migration runner and the device row are read inside the write
/// transaction that changes them).
#[test]
fn two_connections_opening_a_new_library_at_once_both_succeed() {
    for _ in 0..20 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lib.db");
        fixture::create_bae_library(&Connection::open(&path).unwrap()).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let opens: Vec<_> = (0..2)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    OpRecorder::open(&path, &BAE_SCHEMA).map(|r| r.device())
                })
            })
            .collect();
        let ids: Vec<_> = opens
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert_eq!(ids[0], ids[1]);
    }
}

#[test]
fn a_new_stream_is_refused_with_unpushed_batches_then_starts_a_new_device_from_batch_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lib.db");
    let mut lib = Library::new(open_library(&path).unwrap());
    lib.import_album(&demo_album(1, 0, 2)).unwrap();
    let old = lib.recorder().device();
    let conn = lib.recorder().sync_parts().0;
    assert!(matches!(
        start_new_stream(conn),
        Err(OplogError::UnpushedBatches(1))
    ));
    mark_pushed(conn, BatchSeq(1)).unwrap();
    let new = start_new_stream(conn).unwrap();
    assert_ne!(new, old);
    assert!(!has_ops(conn).unwrap());
    assert_eq!(last_batch(conn).unwrap(), BatchSeq(0));
    drop(lib);
    let mut reopened = Library::new(open_library(&path).unwrap());
    assert_eq!(reopened.recorder().device(), new);
    let seq = reopened.edit(
        "albums",
        demo_album(1, 0, 2).album_id().unwrap(),
        &[("title", "x".into())],
    );
    assert_eq!(seq.unwrap(), Some(BatchSeq(1)));
}

/// A library made before `releases.key_epoch` existed (phase 3) gets the
/// column when it is opened, keeps its rows, and records the column.
#[test]
fn a_library_made_before_release_key_epochs_gains_the_column_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = Connection::open(&path).unwrap();
        // The DDL as it was: releases without the comment and the column
        // that follow `updated_at`.
        let sql = fixture::BAE_LIBRARY_SQL;
        let start = sql.find(",\n    -- Synced: the library key epoch").unwrap();
        let column = "    key_epoch INTEGER\n";
        let end = sql.find(column).unwrap() + column.len();
        let old_sql = format!("{}\n{}", &sql[..start], &sql[end..]);
        conn.execute_batch(&old_sql).unwrap();
        let album = demo_album(11, 0, 1);
        let release = album.rows.iter().find(|r| r.table == "releases").unwrap();
        let fields: Vec<_> = release.fields.iter().map(|(c, _)| *c).collect();
        let sql = insert_sql("releases", fields.iter().copied());
        conn.execute(
            "INSERT INTO albums (id, title, created_at, updated_at) VALUES (?1, 't', 'x', 'x')",
            [album.album_id().unwrap()],
        )
        .unwrap();
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&release.id];
        params.extend(
            release
                .fields
                .iter()
                .map(|(_, v)| v as &dyn rusqlite::ToSql),
        );
        conn.execute(&sql, params.as_slice()).unwrap();
        assert!(
            OpRecorder::open(&path, &BAE_SCHEMA).is_err(),
            "the old library lacks a synced column"
        );
    }
    let mut lib = Library::new(open_library(&path).unwrap());
    let release = demo_album(11, 0, 1)
        .ids("releases")
        .next()
        .unwrap()
        .to_owned();
    lib.edit("releases", &release, &[("key_epoch", Value::Integer(3))])
        .unwrap();
    let epoch: i64 = lib
        .recorder()
        .database()
        .query_row(
            "SELECT key_epoch FROM releases WHERE id = ?1",
            [&release],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(epoch, 3);
    let ops = all_ops(&mut lib);
    assert!(ops
        .iter()
        .any(|(_, op)| op.fields.iter().any(|(c, _)| c == "key_epoch")));
}
