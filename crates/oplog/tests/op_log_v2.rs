//! A library whose op log is in the version 2 layout (a `batch_id` and
//! `pushed` on every op, AUTOINCREMENT seqs, table names and plain
//! payloads) converts when it opens, and then pushes, folds, prunes and
//! renumbers exactly as one recorded in the version 3 layout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use bae_hlc::WallClock;
use bae_oplog::fixture::{demo_album, library_on, Library};
use bae_oplog::*;
use rusqlite::{params, Connection};

const CLOCK: WallClock = WallClock::Manual(1_800_000_000_000);

/// Batches 1 to 5 in `lib`: four imports and an edit.
fn record(lib: &mut Library) {
    for i in 0..4 {
        lib.import_album(&demo_album(3, i, 2)).unwrap();
    }
    let album = demo_album(3, 0, 2).album_id().unwrap().to_owned();
    lib.edit("albums", &album, &[("title", "Edited".into())])
        .unwrap();
}

/// Every op the log holds, by batch.
fn ops_by_batch(conn: &Connection) -> Vec<(BatchSeq, Vec<Op>)> {
    batches_after(conn, BatchSeq(0))
        .unwrap()
        .into_iter()
        .map(|b| (b, batch_ops(conn, &BAE_SCHEMA, b).unwrap()))
        .collect()
}

/// The ops after `after` as the merge fold reads them, with the seq of the
/// last.
fn fold(conn: &Connection, after: i64) -> (Vec<Op>, i64) {
    let mut ops = Vec::new();
    let last = for_each_op_after(conn, &BAE_SCHEMA, after, 3, |op| {
        ops.push(op.clone());
        Ok(())
    })
    .unwrap();
    (ops, last)
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

/// A library at oplog version 2 holding `ops` (batch, op) in the version 2
/// layout, batches up to `pushed` marked pushed, as that engine wrote them.
fn version_2_library(
    device: bae_hlc::DeviceId,
    ops: &[(BatchSeq, Op)],
    pushed: BatchSeq,
) -> Connection {
    let mut conn = Connection::open_in_memory().unwrap();
    fixture::create_bae_library(&conn).unwrap();
    let v2 = Migrations {
        component: OPLOG_MIGRATIONS.component,
        steps: &OPLOG_MIGRATIONS.steps[..2],
    };
    migrate(&mut conn, &v2).unwrap();
    let next_batch = ops.last().map_or(1, |(b, _)| b.0 + 1);
    conn.execute(
        "INSERT INTO bae_sync_device (id, device_id, clock, next_batch) VALUES (1, ?1, 0, ?2)",
        params![device.to_string(), next_batch as i64],
    )
    .unwrap();
    for (batch, op) in ops {
        let columns = BAE_SCHEMA.table(&op.table).unwrap().columns;
        let indexed: Vec<(u8, Value)> = op
            .fields
            .iter()
            .map(|(c, v)| {
                let i = columns.iter().position(|s| s == c).unwrap();
                (i as u8, v.clone())
            })
            .collect();
        conn.execute(
            "INSERT INTO bae_sync_op_log (batch_id, hlc, table_name, row_id, kind, payload, pushed)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                batch.0 as i64,
                op.hlc.as_u64() as i64,
                op.table,
                op.row_id,
                op.kind.code(),
                postcard::to_allocvec(&indexed).unwrap(),
                batch <= &pushed,
            ],
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
    let all = ops_by_batch(lib.recorder().sync_parts().0)
        .into_iter()
        .flat_map(|(b, ops)| ops.into_iter().map(move |op| (b, op)))
        .collect();
    (lib, device, all)
}

#[test]
fn a_version_2_op_log_converts_and_behaves_as_one_recorded_in_version_3() {
    let (mut lib, device, all) = recorded();
    let (ours, _, _) = lib.recorder().sync_parts();
    for b in 1..=3 {
        mark_pushed(ours, BatchSeq(b)).unwrap();
    }

    // Version 2, batches 1 to 3 pushed, batch 1 pruned there (its seqs
    // only in sqlite_sequence's high-water mark).
    let old = version_2_library(device, &all, BatchSeq(3));
    old.execute("DELETE FROM bae_sync_op_log WHERE batch_id = 1", [])
        .unwrap();
    let first = all.iter().filter(|(b, _)| b.0 == 1).count();
    assert_eq!(prune_pushed(ours, BatchSeq(1)).unwrap(), first);
    let mut converted =
        Library::new(library_on(old, CLOCK).expect("the version 2 op log converts"));
    assert_eq!(converted.recorder().device(), device);
    let (theirs, _, _) = converted.recorder().sync_parts();

    assert_eq!(ops_by_batch(theirs), ops_by_batch(ours));
    assert_eq!(
        unpushed_batches(theirs).unwrap(),
        [BatchSeq(4), BatchSeq(5)]
    );
    assert_eq!(
        unpushed_batches(theirs).unwrap(),
        unpushed_batches(ours).unwrap()
    );
    assert_eq!(last_batch(theirs).unwrap(), BatchSeq(5));
    assert_eq!(last_op_seq(theirs).unwrap(), last_op_seq(ours).unwrap());
    for after in [0, 4, 5, 9] {
        assert_eq!(fold(theirs, after), fold(ours, after), "fold after {after}");
        assert_eq!(
            first_batch_after_op(theirs, after).unwrap(),
            first_batch_after_op(ours, after).unwrap()
        );
    }
    for t in ["albums", "tracks", "artists"] {
        assert_eq!(
            rows_inserted_after(theirs, t, BatchSeq(2)).unwrap(),
            rows_inserted_after(ours, t, BatchSeq(2)).unwrap(),
        );
    }
    // Push: the same bytes, so the same hash chain.
    for b in 2..=5 {
        let (a, c) = (
            encoded(ours, device, BatchSeq(b)),
            encoded(theirs, device, BatchSeq(b)),
        );
        assert_eq!(BatchHash::of(&a), BatchHash::of(&c), "batch {b}");
    }
    mark_pushed(theirs, BatchSeq(4)).unwrap();
    assert_eq!(unpushed_batches(theirs).unwrap(), [BatchSeq(5)]);
    // Prune: the pushed batches' ops only.
    let two_to_four = all.iter().filter(|(b, _)| (2..=4).contains(&b.0)).count();
    let (pruned, kept) = (
        prune_pushed(theirs, BatchSeq(5)).unwrap(),
        ops_by_batch(theirs),
    );
    assert_eq!(pruned, two_to_four, "batches 2 to 4");
    assert_eq!(
        kept.iter().map(|(b, _)| *b).collect::<Vec<_>>(),
        [BatchSeq(5)]
    );
    // Rollback re-take: the unpushed batch moves up with its ops.
    let five = batch_ops(theirs, &BAE_SCHEMA, BatchSeq(5)).unwrap();
    assert_eq!(renumber_unpushed(theirs, BatchSeq(8)).unwrap(), 3);
    assert_eq!(batch_ops(theirs, &BAE_SCHEMA, BatchSeq(8)).unwrap(), five);
    // Recording goes on after the converted seqs and batches.
    let before = last_op_seq(theirs).unwrap();
    converted.import_album(&demo_album(3, 9, 1)).unwrap();
    let (theirs, _, _) = converted.recorder().sync_parts();
    assert_eq!(
        unpushed_batches(theirs).unwrap(),
        [BatchSeq(8), BatchSeq(9)]
    );
    let (new_ops, last) = fold(theirs, before);
    assert!(!new_ops.is_empty() && last > before);
    assert_eq!(
        first_batch_after_op(theirs, before).unwrap(),
        Some(BatchSeq(9))
    );
}

#[test]
fn a_version_2_library_that_pruned_everything_numbers_ops_past_its_high_water_mark() {
    let (mut lib, device, all) = recorded();
    let (ours, _, _) = lib.recorder().sync_parts();
    let high = last_op_seq(ours).unwrap();
    let old = version_2_library(device, &all, BatchSeq(5));
    old.execute("DELETE FROM bae_sync_op_log", []).unwrap();
    let mut converted = Library::new(library_on(old, CLOCK).unwrap());
    let (theirs, _, _) = converted.recorder().sync_parts();
    assert!(!has_ops(theirs).unwrap());
    assert_eq!(last_op_seq(theirs).unwrap(), high);
    converted.import_album(&demo_album(3, 9, 1)).unwrap();
    let (theirs, _, _) = converted.recorder().sync_parts();
    let (ops, last) = fold(theirs, high);
    assert!(!ops.is_empty());
    assert_eq!(last, high + 3, "read a page of 3, numbered from {high} + 1");
}
