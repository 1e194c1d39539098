//! A library whose op log is in the version 3 layout (one row per op:
//! seq, hlc, table number, packed row id, kind, payload) converts when it
//! opens to version 4 (a transaction's ops in one row), and then pushes,
//! folds, prunes and renumbers exactly as one recorded in version 4.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use bae_hlc::WallClock;
use bae_oplog::fixture::{demo_album, library_on, Library};
use bae_oplog::*;
use rusqlite::{params, Connection};
use serde::Serialize;

const CLOCK: WallClock = WallClock::Manual(1_800_000_000_000);

/// Batches 1 to 6 in `lib`: four imports, an edit, and an import large
/// enough that its ops take more than one op-log row.
fn record(lib: &mut Library) {
    for i in 0..4 {
        lib.import_album(&demo_album(3, i, 2)).unwrap();
    }
    let album = demo_album(3, 0, 2).album_id().unwrap().to_owned();
    lib.edit("albums", &album, &[("title", "Edited".into())])
        .unwrap();
    lib.import_album(&demo_album(3, 5, 300)).unwrap();
}

/// Every op the log holds, by batch.
fn ops_by_batch(conn: &Connection) -> Vec<(BatchSeq, Vec<Op>)> {
    batches_after(conn, BatchSeq(0))
        .unwrap()
        .into_iter()
        .map(|b| (b, batch_ops(conn, &BAE_SCHEMA, b).unwrap()))
        .collect()
}

/// Every op after `after` as the merge fold reads them, a page of `page`
/// at a time, with the seq each page ended at.
fn fold(conn: &Connection, after: i64, page: usize) -> (Vec<Op>, Vec<i64>) {
    let (mut ops, mut ends, mut from) = (Vec::new(), Vec::new(), after);
    loop {
        let last = for_each_op_after(conn, &BAE_SCHEMA, from, page, |op| {
            ops.push(op.clone());
            Ok(())
        })
        .unwrap();
        if last == from {
            return (ops, ends);
        }
        ends.push(last);
        from = last;
    }
}

/// The encoded batch `seq` of `conn`'s op log, as push builds it.
fn encoded(conn: &Connection, device: bae_hlc::DeviceId, seq: BatchSeq) -> Vec<u8> {
    encode_batch(&Batch {
        schema_version: BAE_SCHEMA.version(),
        device,
        seq,
        prev: Some(BatchHash([9; 32])),
        ops: batch_ops(conn, &BAE_SCHEMA, seq).unwrap(),
    })
    .unwrap()
}

/// A field value as version 3 stored it: `Value`'s variants, and a text
/// holding a UUID as variant 5 with its packed bytes.
#[derive(Serialize)]
enum V3Value<'a> {
    Null,
    Integer(i64),
    Real(f64),
    Text(&'a str),
    Blob(&'a [u8]),
    PackedText(Vec<u8>),
}

fn v3_value(v: &Value) -> V3Value<'_> {
    match v {
        Value::Null => V3Value::Null,
        Value::Integer(i) => V3Value::Integer(*i),
        Value::Real(f) => V3Value::Real(*f),
        Value::Text(s) => match row_id_to_sql(s) {
            rusqlite::types::Value::Blob(b) => V3Value::PackedText(b),
            _ => V3Value::Text(s),
        },
        Value::Blob(b) => V3Value::Blob(b),
    }
}

/// A library at oplog version 3 holding `ops` (batch, op) in the version 3
/// layout, numbered from seq `first_seq`, batches up to `pushed` marked
/// pushed, as that engine wrote them.
fn version_3_library(
    device: bae_hlc::DeviceId,
    ops: &[(BatchSeq, Op)],
    first_seq: i64,
    pushed: BatchSeq,
) -> Connection {
    version_3_library_in(
        Connection::open_in_memory().unwrap(),
        device,
        ops,
        first_seq,
        pushed,
    )
}

/// [`version_3_library`] in `conn`.
fn version_3_library_in(
    mut conn: Connection,
    device: bae_hlc::DeviceId,
    ops: &[(BatchSeq, Op)],
    first_seq: i64,
    pushed: BatchSeq,
) -> Connection {
    fixture::create_bae_library(&conn).unwrap();
    let v3 = Migrations {
        component: OPLOG_MIGRATIONS.component,
        steps: &OPLOG_MIGRATIONS.steps[..3],
    };
    migrate(&mut conn, &v3).unwrap();
    conn.execute(
        "INSERT INTO bae_sync_device (id, device_id, clock, next_batch, next_seq) VALUES (1, ?1, 0, 1, ?2)",
        params![device.to_string(), first_seq],
    )
    .unwrap();
    // Numbered in reverse, so a number is never a table's position.
    for t in BAE_SCHEMA.tables().iter().rev() {
        conn.execute(
            "INSERT INTO bae_sync_op_tables (name) VALUES (?1)",
            [t.name],
        )
        .unwrap();
    }
    let mut batch_rows: Vec<(BatchSeq, i64, i64, u64)> = Vec::new();
    for (seq, (batch, op)) in (first_seq..).zip(ops) {
        let table = BAE_SCHEMA.table(&op.table).unwrap();
        let table_id: i64 = conn
            .query_row(
                "SELECT id FROM bae_sync_op_tables WHERE name = ?1",
                [&op.table],
                |r| r.get(0),
            )
            .unwrap();
        let indexed: Vec<(u8, V3Value<'_>)> = op
            .fields
            .iter()
            .map(|(c, v)| {
                let i = table.columns.iter().position(|s| s == c).unwrap();
                (i as u8, v3_value(v))
            })
            .collect();
        conn.execute(
            "INSERT INTO bae_sync_op_log (seq, hlc, table_id, row_id, kind, payload)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                seq,
                op.hlc.as_u64() as i64,
                table_id,
                row_id_to_sql(&op.row_id),
                op.kind.code(),
                postcard::to_allocvec(&indexed).unwrap(),
            ],
        )
        .unwrap();
        match batch_rows.last_mut() {
            Some(last) if last.0 == *batch => {
                last.2 = seq;
                last.3 = op.hlc.as_u64();
            }
            _ => batch_rows.push((*batch, seq, seq, op.hlc.as_u64())),
        }
    }
    for (batch, first, last, hlc) in batch_rows {
        conn.execute(
            "INSERT INTO bae_sync_op_batches (batch_id, first_seq, last_seq, pushed, last_hlc)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![batch.0 as i64, first, last, batch <= pushed, hlc as i64],
        )
        .unwrap();
    }
    conn
}

/// A library in the current layout with `record`'s batches, its device and
/// every op with its batch.
fn recorded() -> (Library, bae_hlc::DeviceId, Vec<(BatchSeq, Op)>) {
    let mut lib = Library::new(library_on(Connection::open_in_memory().unwrap(), CLOCK).unwrap());
    record(&mut lib);
    let device = lib.recorder().device();
    let all: Vec<(BatchSeq, Op)> = ops_by_batch(lib.recorder().sync_parts().0)
        .into_iter()
        .flat_map(|(b, ops)| ops.into_iter().map(move |op| (b, op)))
        .collect();
    // Read back as recorded: each op's clock reading is newer than the
    // last one's (the op log stores each as a delta from the one before).
    assert!(all.windows(2).all(|w| w[0].1.hlc < w[1].1.hlc));
    let recorded = last_op_seq(lib.recorder().sync_parts().0).unwrap();
    assert_eq!(all.len() as i64, recorded, "every op recorded reads back");
    (lib, device, all)
}

#[test]
fn a_version_3_op_log_converts_and_behaves_as_one_recorded_in_version_4() {
    let (mut lib, device, all) = recorded();
    let (ours, _, _) = lib.recorder().sync_parts();
    for b in 1..=3 {
        mark_pushed(ours, BatchSeq(b)).unwrap();
    }
    let old = version_3_library(device, &all, 1, BatchSeq(3));
    let mut converted =
        Library::new(library_on(old, CLOCK).expect("the version 3 op log converts"));
    assert_eq!(converted.recorder().device(), device);
    let (theirs, _, _) = converted.recorder().sync_parts();
    assert_eq!(version(theirs, &OPLOG_MIGRATIONS).unwrap(), 4);

    assert_eq!(ops_by_batch(theirs), ops_by_batch(ours));
    // Batch 6 is more than one row in both: the big import's ops were
    // written (and converted) a chunk at a time.
    let rows = |c: &Connection| -> i64 {
        c.query_row("SELECT COUNT(*) FROM bae_sync_op_log", [], |r| r.get(0))
            .unwrap()
    };
    assert!(
        rows(ours) > 6 && rows(theirs) > 6,
        "{} {}",
        rows(ours),
        rows(theirs)
    );
    assert_eq!(
        unpushed_batches(theirs).unwrap(),
        [BatchSeq(4), BatchSeq(5), BatchSeq(6)]
    );
    assert_eq!(last_batch(theirs).unwrap(), BatchSeq(6));
    assert_eq!(last_op_seq(theirs).unwrap(), last_op_seq(ours).unwrap());
    assert_eq!(last_op_seq(theirs).unwrap(), all.len() as i64);
    for after in [0, 4, 5, 9, all.len() as i64 - 2] {
        for page in [3, 1000] {
            assert_eq!(
                fold(theirs, after, page),
                fold(ours, after, page),
                "fold after {after} by {page}"
            );
        }
        assert_eq!(
            first_batch_after_op(theirs, after).unwrap(),
            first_batch_after_op(ours, after).unwrap()
        );
    }
    let (every, _) = fold(theirs, 0, 7);
    assert_eq!(every.len(), all.len(), "a fold reads every op once");
    for t in ["albums", "tracks", "artists"] {
        assert_eq!(
            rows_inserted_after(theirs, t, BatchSeq(2)).unwrap(),
            rows_inserted_after(ours, t, BatchSeq(2)).unwrap(),
        );
    }
    // Push: the same bytes, so the same hash chain.
    for b in 1..=6 {
        let (a, c) = (
            encoded(ours, device, BatchSeq(b)),
            encoded(theirs, device, BatchSeq(b)),
        );
        assert_eq!(BatchHash::of(&a), BatchHash::of(&c), "batch {b}");
    }
    // Prune: the pushed batches' ops only, counted.
    mark_pushed(theirs, BatchSeq(4)).unwrap();
    mark_pushed(ours, BatchSeq(4)).unwrap();
    let one_to_four = all.iter().filter(|(b, _)| b.0 <= 4).count();
    assert_eq!(prune_pushed(theirs, BatchSeq(6)).unwrap(), one_to_four);
    assert_eq!(prune_pushed(ours, BatchSeq(6)).unwrap(), one_to_four);
    assert_eq!(ops_by_batch(theirs), ops_by_batch(ours));
    assert_eq!(
        ops_by_batch(theirs)
            .iter()
            .map(|(b, _)| *b)
            .collect::<Vec<_>>(),
        [BatchSeq(5), BatchSeq(6)]
    );
    // Rollback re-take: the unpushed batches move up with their ops.
    let six = batch_ops(theirs, &BAE_SCHEMA, BatchSeq(6)).unwrap();
    assert_eq!(renumber_unpushed(theirs, BatchSeq(9)).unwrap(), 4);
    assert_eq!(batch_ops(theirs, &BAE_SCHEMA, BatchSeq(10)).unwrap(), six);
    // Recording goes on after the converted seqs and batches.
    let before = last_op_seq(theirs).unwrap();
    converted.import_album(&demo_album(3, 9, 1)).unwrap();
    let (theirs, _, _) = converted.recorder().sync_parts();
    assert_eq!(
        unpushed_batches(theirs).unwrap(),
        [BatchSeq(9), BatchSeq(10), BatchSeq(11)]
    );
    let (new_ops, ends) = fold(theirs, before, 1000);
    assert!(!new_ops.is_empty());
    assert_eq!(ends, [before + new_ops.len() as i64]);
    assert_eq!(
        first_batch_after_op(theirs, before).unwrap(),
        Some(BatchSeq(11))
    );
}

/// Seqs that do not start at 1 (a log pruned before) keep their numbers.
#[test]
fn a_version_3_op_log_keeps_its_seqs() {
    let (mut lib, device, all) = recorded();
    let later: Vec<_> = all.iter().filter(|(b, _)| b.0 >= 5).cloned().collect();
    let old = version_3_library(device, &later, 100, BatchSeq(0));
    let mut converted = Library::new(library_on(old, CLOCK).unwrap());
    let (theirs, _, _) = converted.recorder().sync_parts();
    let (ops, ends) = fold(theirs, 99, 10_000);
    assert_eq!(ops, later.into_iter().map(|(_, op)| op).collect::<Vec<_>>());
    assert_eq!(ends, [99 + ops.len() as i64]);
    assert_eq!(fold(theirs, 100, 1).0.first(), ops.get(1));
    let (ours, _, _) = lib.recorder().sync_parts();
    assert_eq!(
        batch_ops(theirs, &BAE_SCHEMA, BatchSeq(6)).unwrap(),
        batch_ops(ours, &BAE_SCHEMA, BatchSeq(6)).unwrap()
    );
}

/// A version 3 op row whose payload does not decode fails the migration
/// with the row named, and leaves the library at version 3 with every op.
#[test]
fn a_corrupt_version_3_op_fails_the_migration_and_changes_nothing() {
    let (_, device, all) = recorded();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("library.db");
    let old = version_3_library_in(
        Connection::open(&path).unwrap(),
        device,
        &all,
        1,
        BatchSeq(0),
    );
    old.execute(
        "UPDATE bae_sync_op_log SET payload = x'05ff' WHERE seq = 4",
        [],
    )
    .unwrap();
    drop(old);
    let err = library_on(Connection::open(&path).unwrap(), CLOCK)
        .err()
        .expect("refused");
    assert!(
        matches!(err, OplogError::CorruptOp { seq: 4, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("op_log row 4"), "{err}");
    let conn = Connection::open(&path).unwrap();
    assert_eq!(version(&conn, &OPLOG_MIGRATIONS).unwrap(), 3);
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM bae_sync_op_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, all.len() as i64, "the version 3 rows are all there");
}
