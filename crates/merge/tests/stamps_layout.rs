//! The compact stamp layout (migrations `0002_compact_stamps`,
//! `0004_table_numbers`, `0005_clustered_row_keys`): a library whose merge
//! state is still at version 1, 2 or 4 opens, converts, and then holds and
//! merges exactly what a library that never had the older layout does; bad
//! stamp records and corrupt stored stamps are typed errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_hlc::{DeviceId, WallClock};
use bae_merge::snapshot::{self, RestoreError, StateRecord};
use bae_merge::{MergeError, MERGE_MIGRATIONS, ROW_COLUMN};
use bae_oplog::fixture::{demo_album, library_on, Library};
use bae_oplog::{canonical_dump, Migrations, OpKind, Value, BAE_SCHEMA};
use common::*;
use rusqlite::{params, Connection};
use std::convert::Infallible;

/// Every record of a device's merge state, after folding its own writes.
fn records(d: &mut Device) -> Vec<StateRecord> {
    bae_merge::fold_local(d.lib.recorder()).unwrap();
    let mut out = Vec::new();
    snapshot::snapshot(d.conn(), &BAE_SCHEMA, |r| {
        out.push(r);
        Ok::<(), Infallible>(())
    })
    .unwrap();
    out
}

/// A device whose merge state is at version 1 (the layout before 0002).
fn version_1_device() -> Device {
    let mut rec = library_on(Connection::open_in_memory().unwrap(), WallClock::Manual(T0)).unwrap();
    let first = Migrations {
        component: MERGE_MIGRATIONS.component,
        steps: &MERGE_MIGRATIONS.steps[..1],
    };
    bae_oplog::migrate(rec.sync_parts().0, &first).unwrap();
    Device {
        lib: Library::new(rec),
        wall: T0,
    }
}

/// Writes `records` into a version-1 state the way version 1 stored them,
/// with every column of every inserted row also stamped at its insert
/// stamp, as version 1 folded a device's own imports.
fn write_version_1(conn: &Connection, records: &[StateRecord]) {
    for r in records {
        match r {
            // Rows and parked values are stored alike in both versions;
            // column lists are not stored, kept ops are version 3's.
            StateRecord::Row { .. }
            | StateRecord::Parked { .. }
            | StateRecord::Columns { .. }
            | StateRecord::Kept { .. } => {
                snapshot::restore_record(conn, &BAE_SCHEMA, r, 0, &mut Default::default()).unwrap();
            }
            StateRecord::Stamp {
                table,
                row_id,
                column,
                hlc,
                device,
            } => {
                conn.execute(
                    r#"INSERT INTO bae_sync_stamps (table_name, row_id, "column", hlc, device) VALUES (?1, ?2, ?3, ?4, ?5)"#,
                    params![table, row_id, column, *hlc as i64, device.as_slice()],
                )
                .unwrap();
            }
            StateRecord::Tombstone {
                table,
                row_id,
                hlc,
                device,
            } => {
                conn.execute(
                    "INSERT INTO bae_sync_tombstones (table_name, row_id, hlc, device) VALUES (?1, ?2, ?3, ?4)",
                    params![table, row_id, *hlc as i64, device.as_slice()],
                )
                .unwrap();
            }
        }
    }
    for r in records {
        if let StateRecord::Stamp {
            table,
            row_id,
            column,
            hlc,
            device,
        } = r
        {
            if column != ROW_COLUMN {
                continue;
            }
            for c in BAE_SCHEMA.table(table).unwrap().columns {
                conn.execute(
                    r#"INSERT OR IGNORE INTO bae_sync_stamps (table_name, row_id, "column", hlc, device) VALUES (?1, ?2, ?3, ?4, ?5)"#,
                    params![table, row_id, c, *hlc as i64, device.as_slice()],
                )
                .unwrap();
            }
        }
    }
}

/// A library with imports, local edits and deletes, another device's
/// edits and deletes, and rows with ids that are not UUIDs: every kind of
/// stamp, tombstone and parked value.
fn busy_library() -> Device {
    let mut a = Device::new();
    let mut b = Device::at(T0 + 5);
    let first = demo_album(7, 0, 3);
    let second = demo_album(7, 1, 2);
    a.import(&first);
    a.import(&second);
    let first_id = first.album_id().unwrap().to_owned();
    let second_id = second.album_id().unwrap().to_owned();
    let track = first.ids("tracks").next().unwrap().to_owned();
    a.tick(10);
    a.edit("albums", &first_id, &[("title", "Edited here".into())]);
    a.delete("tracks", &track);
    b.pull_all_from(&mut a);
    b.tick(100);
    b.edit("albums", &first_id, &[("year", Value::Integer(1971))]);
    b.delete("albums", &second_id);
    let dx = DeviceId::from_bytes([3; 16]);
    a.pull(b.batches());
    let plain_ids = batch(
        dx,
        1,
        vec![
            op(T0 + 1, "albums", "al", OpKind::Insert, &album_fields("t")),
            op(
                T0 + 1,
                "releases",
                "rl",
                OpKind::Insert,
                &release_fields("al"),
            ),
            op(
                T0 + 2,
                "albums",
                "al",
                OpKind::Update,
                &[("title", "u".into())],
            ),
        ],
    );
    a.apply(&plain_ids).unwrap();
    a
}

#[test]
fn a_version_1_library_converts_and_holds_the_same_state() {
    let mut fresh = busy_library();
    let expected = records(&mut fresh);
    assert!(expected
        .iter()
        .any(|r| matches!(r, StateRecord::Stamp { column, .. } if column != ROW_COLUMN)));
    assert!(expected
        .iter()
        .any(|r| matches!(r, StateRecord::Tombstone { .. })));
    let mut old = version_1_device();
    write_version_1(old.conn(), &expected);
    bae_merge::migrate(old.lib.recorder()).unwrap();
    assert_eq!(records(&mut old), expected);
    assert_eq!(
        snapshot::counts(old.conn()).unwrap(),
        snapshot::counts(fresh.conn()).unwrap(),
        "the column stamps version 1 folded at the insert stamp are gone"
    );
    assert_eq!(old.dump(), fresh.dump());
}

/// A restore looks each device's writer number and each table's number up
/// once (its cache) yet files every stamp and tombstone under the device
/// that wrote it and the table it belongs to: a snapshot of three devices'
/// writes restores into an empty library (whose own numbers differ) as
/// the same records.
#[test]
fn a_snapshot_restores_every_stamp_under_the_device_that_wrote_it() {
    let mut source = busy_library();
    let expected = records(&mut source);
    let devices: std::collections::BTreeSet<[u8; 16]> = expected
        .iter()
        .filter_map(|r| match r {
            StateRecord::Stamp { device, .. } | StateRecord::Tombstone { device, .. } => {
                Some(*device)
            }
            _ => None,
        })
        .collect();
    assert!(devices.len() >= 3, "{} devices", devices.len());
    let mut restored = Device::new();
    let conn = restored.conn();
    conn.execute(
        "INSERT INTO bae_sync_writers (device) VALUES (?1)",
        [[9u8; 16].as_slice()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO bae_sync_table_ids (name) VALUES ('tracks')",
        [],
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    let mut cache = snapshot::RestoreCache::default();
    for r in &expected {
        snapshot::restore_record(&tx, &BAE_SCHEMA, r, 0, &mut cache).unwrap();
    }
    tx.commit().unwrap();
    assert_eq!(records(&mut restored), expected);
    assert_eq!(restored.dump(), source.dump());
}

#[test]
fn a_converted_library_merges_like_one_that_never_had_version_1() {
    let mut fresh = busy_library();
    let mut old = version_1_device();
    write_version_1(old.conn(), &records(&mut fresh));
    bae_merge::migrate(old.lib.recorder()).unwrap();
    let album = demo_album(7, 0, 3);
    let album_id = album.album_id().unwrap();
    let dy = DeviceId::from_bytes([9; 16]);
    let later = [
        // Older than both edits and the import: loses everywhere.
        batch(
            dy,
            1,
            vec![op(
                T0 - 50,
                "albums",
                album_id,
                OpKind::Update,
                &[("title", "old".into()), ("year", Value::Integer(1))],
            )],
        ),
        // Newer: wins the title, and a newer insert of the plain-id album
        // covers its column stamp.
        batch(
            dy,
            2,
            vec![
                op(
                    T0 + 500,
                    "albums",
                    album_id,
                    OpKind::Update,
                    &[("title", "newest".into())],
                ),
                op(
                    T0 + 500,
                    "albums",
                    "al",
                    OpKind::Insert,
                    &album_fields("again"),
                ),
            ],
        ),
        // Deletes, then revives a deleted album with a newer insert.
        batch(
            dy,
            3,
            vec![
                op(T0 + 600, "releases", "rl", OpKind::Delete, &[]),
                op(
                    T0 + 600,
                    "albums",
                    demo_album(7, 1, 2).album_id().unwrap(),
                    OpKind::Insert,
                    &album_fields("back"),
                ),
            ],
        ),
    ];
    for b in &later {
        let want = fresh.apply(b).unwrap();
        let got = old.apply(b).unwrap();
        assert_eq!(got, want, "batch {}", b.seq);
        assert_eq!(old.dump(), fresh.dump(), "batch {}", b.seq);
        assert_eq!(records(&mut old), records(&mut fresh), "batch {}", b.seq);
    }
    assert_eq!(old.get("albums", album_id, "title"), Some("newest".into()));
}

#[test]
fn an_empty_version_1_state_converts_to_an_empty_state() {
    let mut old = version_1_device();
    bae_merge::migrate(old.lib.recorder()).unwrap();
    assert!(snapshot::is_empty(old.conn(), &BAE_SCHEMA).unwrap());
    assert_eq!(
        canonical_dump(old.conn(), &BAE_SCHEMA).unwrap(),
        Device::new().dump()
    );
}

#[test]
fn a_version_1_stamp_with_a_bad_device_is_a_corrupt_stamp_after_conversion() {
    let mut old = version_1_device();
    old.conn()
        .execute(
            r#"INSERT INTO bae_sync_stamps (table_name, row_id, "column", hlc, device) VALUES ('albums', 'al', '#row', 1, x'0102')"#,
            [],
        )
        .unwrap();
    bae_merge::migrate(old.lib.recorder()).unwrap();
    let err =
        snapshot::snapshot(old.conn(), &BAE_SCHEMA, |_| Ok::<(), Infallible>(())).unwrap_err();
    assert!(
        matches!(err, snapshot::SnapshotError::Merge(MergeError::CorruptStamp { ref table, ref row_id }) if table == "albums" && row_id == "al"),
        "{err:?}"
    );
    let dx = DeviceId::from_bytes([1; 16]);
    let update = batch(
        dx,
        1,
        vec![op(
            T0,
            "albums",
            "al",
            OpKind::Update,
            &[("title", "t".into())],
        )],
    );
    assert!(matches!(
        old.apply(&update),
        Err(MergeError::CorruptStamp { .. })
    ));
}

#[test]
fn a_second_insert_stamp_or_tombstone_for_a_row_is_refused() {
    let mut d = Device::new();
    let conn = d.conn();
    let stamp = |column: &str| StateRecord::Stamp {
        table: "albums".into(),
        row_id: "0a1b2c3d-4e5f-6789-abcd-ef0123456789".into(),
        column: column.into(),
        hlc: bae_hlc::Timestamp::from_unix_millis(T0).unwrap().as_u64(),
        device: [1; 16],
    };
    let tomb = StateRecord::Tombstone {
        table: "albums".into(),
        row_id: "0a1b2c3d-4e5f-6789-abcd-ef0123456789".into(),
        hlc: bae_hlc::Timestamp::from_unix_millis(T0).unwrap().as_u64(),
        device: [2; 16],
    };
    let mut cache = snapshot::RestoreCache::default();
    for r in [stamp(ROW_COLUMN), tomb.clone(), stamp("title")] {
        snapshot::restore_record(conn, &BAE_SCHEMA, &r, 0, &mut cache).unwrap();
    }
    assert!(matches!(
        snapshot::restore_record(conn, &BAE_SCHEMA, &stamp(ROW_COLUMN), 0, &mut cache),
        Err(RestoreError::Duplicate {
            what: "insert stamp",
            ..
        })
    ));
    assert!(matches!(
        snapshot::restore_record(conn, &BAE_SCHEMA, &tomb, 0, &mut cache),
        Err(RestoreError::Duplicate {
            what: "tombstone",
            ..
        })
    ));
    assert!(matches!(
        snapshot::restore_record(conn, &BAE_SCHEMA, &stamp("title"), 0, &mut cache),
        Err(RestoreError::Refused(_))
    ));
}

#[test]
fn the_newest_stamp_is_found_in_a_library_without_tombstones() {
    let mut d = Device::new();
    d.import(&demo_album(3, 0, 2));
    bae_merge::fold_local(d.lib.recorder()).unwrap();
    let newest = snapshot::newest_stamp(d.conn()).unwrap();
    let last_op: i64 = d
        .conn()
        .query_row("SELECT MAX(ins_hlc) FROM bae_sync_row_stamps", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(newest, Some(last_op as u64));
}

/// SQL turning a row key of today's layout in `column` back into the
/// one before `0005_clustered_row_keys` (the op log's packed id): the
/// leading 16 bytes go back after the first zero byte that follows them.
fn key_before_0005(column: &str) -> String {
    format!(
        "CASE WHEN typeof({column}) = 'blob' THEN
             unhex(substr(hex({column}), 33, 2 * instr(substr({column}, 17), x'00'))
                   || substr(hex({column}), 1, 32)
                   || substr(hex({column}), 33 + 2 * instr(substr({column}, 17), x'00')))
         ELSE {column} END"
    )
}

/// A device whose merge state is at version 4's layout (every migration
/// up to `0004_table_numbers` run, not `0005_clustered_row_keys`: row keys
/// are the op log's packed ids, row stamps keyed by table number first)
/// holding `source`'s state: its rows, parked values and kept ops restored
/// as records, its stamps copied over from a copy of its database with
/// each key turned back into the old form.
fn version_4_device_holding(source: &mut Device, dir: &tempfile::TempDir) -> Device {
    let expected = records(source);
    let copy = dir.path().join("source.db");
    source
        .conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let mut rec = library_on(Connection::open_in_memory().unwrap(), WallClock::Manual(T0)).unwrap();
    let through_0004 = Migrations {
        component: MERGE_MIGRATIONS.component,
        steps: &MERGE_MIGRATIONS.steps[..4],
    };
    bae_oplog::migrate(rec.sync_parts().0, &through_0004).unwrap();
    let mut old = Device {
        lib: Library::new(rec),
        wall: T0,
    };
    let conn = old.conn();
    for r in &expected {
        if !matches!(r, StateRecord::Stamp { .. } | StateRecord::Tombstone { .. }) {
            snapshot::restore_record(conn, &BAE_SCHEMA, r, 0, &mut Default::default()).unwrap();
        }
    }
    conn.execute("ATTACH DATABASE ?1 AS src", [copy.to_str().unwrap()])
        .unwrap();
    conn.execute_batch(&format!(
        r#"INSERT INTO bae_sync_writers (id, device) SELECT id, device FROM src.bae_sync_writers;
           INSERT INTO bae_sync_table_ids (id, name) SELECT id, name FROM src.bae_sync_table_ids;
           INSERT INTO bae_sync_row_stamps (table_id, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
               SELECT table_id, {row}, ins_hlc, ins_writer, del_hlc, del_writer FROM src.bae_sync_row_stamps;
           INSERT INTO bae_sync_column_stamps (table_id, row_key, "column", hlc, writer)
               SELECT table_id, {column}, "column", hlc, writer FROM src.bae_sync_column_stamps;
           DETACH DATABASE src;"#,
        row = key_before_0005("row_key"),
        column = key_before_0005("row_key"),
    ))
    .unwrap();
    old
}

/// A device whose merge state is at version 2's layout (`0002_compact_stamps`
/// and `0003_kept` run, not `0004_table_numbers`): every table named by its
/// TEXT name in every stamp) holding `source`'s state: its rows, parked
/// values and kept ops restored as records, its stamps copied over from a
/// copy of its database with each table number turned back into the name.
fn version_2_device_holding(source: &mut Device, dir: &tempfile::TempDir) -> Device {
    let expected = records(source);
    let copy = dir.path().join("source.db");
    source
        .conn()
        .execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
        .unwrap();
    let mut rec = library_on(Connection::open_in_memory().unwrap(), WallClock::Manual(T0)).unwrap();
    let through_0003 = Migrations {
        component: MERGE_MIGRATIONS.component,
        steps: &MERGE_MIGRATIONS.steps[..3],
    };
    bae_oplog::migrate(rec.sync_parts().0, &through_0003).unwrap();
    let mut old = Device {
        lib: Library::new(rec),
        wall: T0,
    };
    let conn = old.conn();
    for r in &expected {
        if !matches!(r, StateRecord::Stamp { .. } | StateRecord::Tombstone { .. }) {
            snapshot::restore_record(conn, &BAE_SCHEMA, r, 0, &mut Default::default()).unwrap();
        }
    }
    conn.execute("ATTACH DATABASE ?1 AS src", [copy.to_str().unwrap()])
        .unwrap();
    conn.execute_batch(&format!(
        r#"INSERT INTO bae_sync_writers (id, device) SELECT id, device FROM src.bae_sync_writers;
           INSERT INTO bae_sync_row_stamps (table_name, row_key, ins_hlc, ins_writer, del_hlc, del_writer)
               SELECT t.name, {row}, r.ins_hlc, r.ins_writer, r.del_hlc, r.del_writer
               FROM src.bae_sync_row_stamps r JOIN src.bae_sync_table_ids t ON t.id = r.table_id;
           INSERT INTO bae_sync_column_stamps (table_name, row_key, "column", hlc, writer)
               SELECT t.name, {column}, c."column", c.hlc, c.writer
               FROM src.bae_sync_column_stamps c JOIN src.bae_sync_table_ids t ON t.id = c.table_id;
           DETACH DATABASE src;"#,
        row = key_before_0005("r.row_key"),
        column = key_before_0005("c.row_key"),
    ))
    .unwrap();
    old
}

#[test]
fn a_version_2_library_converts_to_table_numbers_and_holds_the_same_state() {
    let mut fresh = busy_library();
    let expected = records(&mut fresh);
    let dir = tempfile::tempdir().unwrap();
    let mut old = version_2_device_holding(&mut fresh, &dir);
    assert_eq!(
        bae_oplog::version(old.conn(), &MERGE_MIGRATIONS).unwrap(),
        3
    );
    let stamped: i64 = old
        .conn()
        .query_row(
            "SELECT COUNT(DISTINCT table_name) FROM bae_sync_row_stamps",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(stamped >= 3, "{stamped} tables stamped");
    bae_merge::migrate(old.lib.recorder()).unwrap();
    assert_eq!(
        bae_oplog::version(old.conn(), &MERGE_MIGRATIONS).unwrap(),
        MERGE_MIGRATIONS.version()
    );
    let numbered: i64 = old
        .conn()
        .query_row("SELECT COUNT(*) FROM bae_sync_table_ids", [], |r| r.get(0))
        .unwrap();
    assert_eq!(numbered, stamped, "one number per table the stamps name");
    assert_eq!(records(&mut old), expected);
    assert_eq!(
        snapshot::counts(old.conn()).unwrap(),
        snapshot::counts(fresh.conn()).unwrap()
    );
    assert_eq!(old.dump(), fresh.dump());
}

#[test]
fn a_converted_version_2_library_merges_like_one_that_never_had_it() {
    let mut fresh = busy_library();
    let dir = tempfile::tempdir().unwrap();
    let mut old = version_2_device_holding(&mut fresh, &dir);
    bae_merge::migrate(old.lib.recorder()).unwrap();
    let album = demo_album(7, 0, 3);
    let album_id = album.album_id().unwrap();
    let track = album.ids("tracks").nth(1).unwrap();
    let dy = DeviceId::from_bytes([9; 16]);
    let later = [
        batch(
            dy,
            1,
            vec![
                // Older than the edit: loses; newer: wins and stamps.
                op(
                    T0 - 50,
                    "albums",
                    album_id,
                    OpKind::Update,
                    &[("title", "old".into())],
                ),
                op(
                    T0 + 500,
                    "albums",
                    "al",
                    OpKind::Update,
                    &[("title", "newest".into())],
                ),
                op(T0 + 500, "tracks", track, OpKind::Delete, &[]),
            ],
        ),
        // A tombstone on a row whose insert stamp was converted.
        batch(
            dy,
            2,
            vec![op(T0 + 600, "releases", "rl", OpKind::Delete, &[])],
        ),
    ];
    for b in &later {
        let want = fresh.apply(b).unwrap();
        let got = old.apply(b).unwrap();
        assert_eq!(got, want, "batch {}", b.seq);
        assert_eq!(old.dump(), fresh.dump(), "batch {}", b.seq);
        assert_eq!(records(&mut old), records(&mut fresh), "batch {}", b.seq);
    }
    assert_eq!(old.get("albums", "al", "title"), Some("newest".into()));
}

#[test]
fn a_version_4_library_converts_to_clustered_keys_and_holds_the_same_state() {
    let mut fresh = busy_library();
    let expected = records(&mut fresh);
    let dir = tempfile::tempdir().unwrap();
    let mut old = version_4_device_holding(&mut fresh, &dir);
    assert_eq!(
        bae_oplog::version(old.conn(), &MERGE_MIGRATIONS).unwrap(),
        4
    );
    let count =
        |d: &mut Device, sql: &str| -> i64 { d.conn().query_row(sql, [], |r| r.get(0)).unwrap() };
    // The old keys are the op log's packed ids: a zero byte leads a pure
    // UUID's key, and some ids are not UUIDs at all (TEXT keys).
    let zero_led = "SELECT COUNT(*) FROM bae_sync_row_stamps WHERE substr(row_key, 1, 1) = x'00'";
    assert!(count(&mut old, zero_led) > 10);
    assert!(
        count(
            &mut old,
            "SELECT COUNT(*) FROM bae_sync_row_stamps WHERE typeof(row_key) = 'text'"
        ) > 0
    );
    assert!(count(&mut old, "SELECT COUNT(*) FROM bae_sync_column_stamps") > 0);
    bae_merge::migrate(old.lib.recorder()).unwrap();
    assert_eq!(
        bae_oplog::version(old.conn(), &MERGE_MIGRATIONS).unwrap(),
        MERGE_MIGRATIONS.version()
    );
    assert_eq!(
        count(&mut old, zero_led),
        0,
        "every UUID key leads with its UUID"
    );
    assert_eq!(records(&mut old), expected);
    assert_eq!(
        snapshot::counts(old.conn()).unwrap(),
        snapshot::counts(fresh.conn()).unwrap()
    );
    assert_eq!(old.dump(), fresh.dump());
    // The stored stamps themselves are what a library that never had the
    // old layout stores, byte for byte.
    /// A row stamp as stored: key bytes, table number, insert and delete HLCs.
    type Stored = (Vec<u8>, i64, Option<i64>, Option<i64>);
    let stored = |d: &mut Device| -> Vec<Stored> {
        d.conn()
            .prepare("SELECT CAST(row_key AS BLOB), table_id, ins_hlc, del_hlc FROM bae_sync_row_stamps ORDER BY row_key, table_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(stored(&mut old), stored(&mut fresh));
}

#[test]
fn a_converted_version_4_library_merges_like_one_that_never_had_it() {
    let mut fresh = busy_library();
    let dir = tempfile::tempdir().unwrap();
    let mut old = version_4_device_holding(&mut fresh, &dir);
    bae_merge::migrate(old.lib.recorder()).unwrap();
    let album = demo_album(7, 0, 3);
    let album_id = album.album_id().unwrap();
    let track = album.ids("tracks").nth(1).unwrap();
    let credit = album.ids("track_artists").nth(2).unwrap();
    let dy = DeviceId::from_bytes([9; 16]);
    let later = [
        batch(
            dy,
            1,
            vec![
                // Older than the import: loses; newer: wins and stamps.
                op(
                    T0 - 50,
                    "albums",
                    album_id,
                    OpKind::Update,
                    &[("title", "old".into())],
                ),
                op(
                    T0 + 500,
                    "albums",
                    "al",
                    OpKind::Update,
                    &[("title", "newest".into())],
                ),
                op(T0 + 500, "tracks", track, OpKind::Delete, &[]),
                op(
                    T0 + 510,
                    "track_artists",
                    credit,
                    OpKind::Update,
                    &[("role", "guest".into())],
                ),
            ],
        ),
        // A tombstone on a row whose insert stamp was converted, and an
        // insert older than a converted tombstone (it stays absent).
        batch(
            dy,
            2,
            vec![op(T0 + 600, "releases", "rl", OpKind::Delete, &[])],
        ),
    ];
    for b in &later {
        let want = fresh.apply(b).unwrap();
        let got = old.apply(b).unwrap();
        assert_eq!(got, want, "batch {}", b.seq);
        assert_eq!(old.dump(), fresh.dump(), "batch {}", b.seq);
        assert_eq!(records(&mut old), records(&mut fresh), "batch {}", b.seq);
    }
    assert_eq!(old.get("albums", "al", "title"), Some("newest".into()));
}
