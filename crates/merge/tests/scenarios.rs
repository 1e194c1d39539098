//! Merge scenarios: one behaviour per test, in both arrival orders where
//! order could matter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_hlc::DeviceId;
use bae_merge::MergeError;
use bae_oplog::fixture::demo_album;
use bae_oplog::{OpKind, Value};
use common::*;

fn title_of(d: &mut Device, album: &str) -> Option<Value> {
    d.get("albums", album, "title")
}

#[test]
fn an_imported_album_replicates_identically() {
    let (mut a, mut b) = (Device::new(), Device::new());
    a.import(&demo_album(1, 0, 3));
    a.import(&demo_album(1, 1, 2));
    b.pull_all_from(&mut a);
    assert_eq!(a.dump(), b.dump());
    assert_eq!(b.count("tracks"), 5);
}

#[test]
fn later_edit_of_the_same_field_wins_in_either_arrival_order() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 1);
    let id = album.album_id().unwrap().to_owned();
    a.import(&album);
    let (mut b, mut c) = (Device::new(), Device::new());
    b.pull_all_from(&mut a);
    c.pull_all_from(&mut a);
    let early = b.edit("albums", &id, &[("title", "early".into())]);
    c.tick(10);
    let late = c.edit("albums", &id, &[("title", "late".into())]);
    let mut x = Device::new();
    let mut y = Device::new();
    x.pull(vec![a.last(), early.clone(), late.clone()]);
    y.pull(vec![a.last()]);
    y.apply(&late).unwrap();
    y.apply(&early).unwrap();
    b.pull(vec![late]);
    c.pull(vec![early]);
    for d in [&mut x, &mut y, &mut b, &mut c] {
        assert_eq!(title_of(d, &id), Some("late".into()));
    }
    assert_eq!(b.dump(), c.dump());
    assert_eq!(x.dump(), y.dump());
    assert_eq!(x.dump(), b.dump());
}

#[test]
fn edits_of_different_fields_both_survive() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 1);
    let id = album.album_id().unwrap().to_owned();
    a.import(&album);
    let mut b = Device::new();
    b.pull_all_from(&mut a);
    let ea = a.edit("albums", &id, &[("title", "from a".into())]);
    let eb = b.edit("albums", &id, &[("year", Value::Integer(2001))]);
    a.apply(&eb).unwrap();
    b.apply(&ea).unwrap();
    assert_eq!(a.dump(), b.dump());
    assert_eq!(a.get("albums", &id, "year"), Some(Value::Integer(2001)));
    assert_eq!(title_of(&mut b, &id), Some("from a".into()));
}

#[test]
fn later_delete_beats_earlier_edit_in_either_order() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 2);
    let id = album.album_id().unwrap().to_owned();
    let import = a.import(&album);
    let mut b = Device::new();
    b.pull_all_from(&mut a);
    let edit = b.edit("albums", &id, &[("title", "edited".into())]);
    a.tick(10);
    let delete = a.delete("albums", &id);
    let (mut x, mut y) = (Device::new(), Device::new());
    x.pull(vec![import.clone()]);
    x.apply(&edit).unwrap();
    x.apply(&delete).unwrap();
    y.pull(vec![import]);
    y.apply(&delete).unwrap();
    y.apply(&edit).unwrap();
    b.apply(&delete).unwrap();
    a.apply(&edit).unwrap();
    for d in [&mut x, &mut y, &mut a, &mut b] {
        assert!(!d.exists("albums", &id));
        assert_eq!(d.count("tracks"), 0);
        assert_eq!(d.count("audio_formats"), 0);
    }
    assert_eq!(x.dump(), y.dump());
    assert_eq!(a.dump(), b.dump());
}

#[test]
fn newer_reimport_beats_older_delete_in_either_order_without_resurrecting_old_fields() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 2);
    let id = album.album_id().unwrap().to_owned();
    let import = a.import(&album);
    let edit = a.edit("albums", &id, &[("title", "before delete".into())]);
    let delete = a.delete("albums", &id);
    let mut c = Device::new();
    c.pull_all_from(&mut a);
    c.tick(10);
    let reimport = c.import(&album);
    let (mut x, mut y) = (Device::new(), Device::new());
    x.pull(vec![import.clone(), edit.clone()]);
    x.apply(&delete).unwrap();
    x.apply(&reimport).unwrap();
    y.pull(vec![import, reimport.clone()]);
    y.apply(&edit).unwrap();
    y.apply(&delete).unwrap();
    a.apply(&reimport).unwrap();
    for d in [&mut x, &mut y, &mut a, &mut c] {
        assert!(d.exists("albums", &id));
        assert_eq!(title_of(d, &id), Some("Album 0".into()));
        assert_eq!(d.count("tracks"), 2);
    }
    assert_eq!(x.dump(), y.dump());
    assert_eq!(a.dump(), c.dump());
    assert_eq!(a.dump(), x.dump());
}

#[test]
fn an_older_insert_does_not_undo_a_newer_delete() {
    let (dx, dy) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let insert = batch(
        dx,
        1,
        vec![op(T0, "albums", "al", OpKind::Insert, &album_fields("t"))],
    );
    let delete = batch(dy, 1, vec![op(T0 + 5, "albums", "al", OpKind::Delete, &[])]);
    let reinsert = batch(
        dx,
        2,
        vec![op(
            T0 + 3,
            "albums",
            "al",
            OpKind::Insert,
            &album_fields("again"),
        )],
    );
    let mut orders = vec![
        vec![&insert, &delete, &reinsert],
        vec![&delete, &reinsert, &insert],
        vec![&reinsert, &insert, &delete],
    ];
    let mut dumps = Vec::new();
    for order in orders.drain(..) {
        let mut d = Device::new();
        for b in order {
            d.apply(b).unwrap();
        }
        assert!(!d.exists("albums", "al"));
        dumps.push(d.dump());
    }
    assert!(dumps.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn an_edit_newer_than_a_delete_survives_into_a_later_revival() {
    // Delete at +5, an edit at +9 (its device never saw the delete), a
    // re-insert at +7: the edit is the newest write of the title, in every
    // arrival order, though the row was absent when the edit arrived.
    let (dx, dy, dz) = (
        DeviceId::from_bytes([1; 16]),
        DeviceId::from_bytes([2; 16]),
        DeviceId::from_bytes([3; 16]),
    );
    let insert = batch(
        dx,
        1,
        vec![op(T0, "albums", "al", OpKind::Insert, &album_fields("t"))],
    );
    let delete = batch(dx, 2, vec![op(T0 + 5, "albums", "al", OpKind::Delete, &[])]);
    let edit = batch(
        dy,
        1,
        vec![op(
            T0 + 9,
            "albums",
            "al",
            OpKind::Update,
            &[("title", "edit".into())],
        )],
    );
    let reinsert = batch(
        dz,
        1,
        vec![op(
            T0 + 7,
            "albums",
            "al",
            OpKind::Insert,
            &album_fields("re"),
        )],
    );
    let all = [&insert, &delete, &edit, &reinsert];
    let mut dumps = Vec::new();
    for perm in [
        [0, 1, 2, 3],
        [0, 1, 3, 2],
        [0, 3, 2, 1],
        [3, 0, 2, 1],
        [0, 2, 1, 3],
    ] {
        let mut d = Device::new();
        for i in perm {
            d.apply(all[i]).unwrap();
        }
        assert_eq!(
            d.get("albums", "al", "title"),
            Some("edit".into()),
            "{perm:?}"
        );
        dumps.push(d.dump());
    }
    assert!(dumps.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn a_child_under_a_deleted_parent_is_dead_not_held_and_returns_with_the_parent() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 1);
    let release = album.ids("releases").next().unwrap().to_owned();
    a.import(&album);
    let mut b = Device::new();
    b.pull_all_from(&mut a);
    // B adds a track A never knew of; A deletes the release meanwhile.
    let add = {
        let mut tx = b.lib.recorder().transaction().unwrap();
        tx.insert("tracks", "extra", &track_fields(&release, "extra"))
            .unwrap();
        tx.commit().unwrap();
        b.last()
    };
    let delete = a.delete("releases", &release);
    let report = a.pull(vec![add.clone()]);
    assert!(report.held.is_empty(), "{:?}", report.held);
    b.apply(&delete).unwrap();
    assert!(!a.exists("tracks", "extra"));
    assert!(!b.exists("tracks", "extra"));
    assert_eq!(a.dump(), b.dump());
    // A later re-import brings the release back, and with it the child its
    // deleter never knew.
    let mut c = Device::new();
    c.pull(vec![a.batches()[0].clone(), delete.clone()]);
    c.tick(50);
    c.delete("albums", album.album_id().unwrap());
    let reimport = c.import(&album);
    a.pull(vec![reimport.clone()]);
    b.pull(c.batches());
    c.pull(vec![add]);
    assert!(a.exists("tracks", "extra"));
    assert_eq!(a.dump(), b.dump());
    assert_eq!(a.dump(), c.dump());
}

#[test]
fn a_batch_missing_its_parent_is_retried_after_the_rest_of_the_pull() {
    let (dx, dy) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    // The child batch is chronologically first (its device's clock lags),
    // so it fails on its first try and applies on the retry.
    let parents = batch(
        dx,
        1,
        vec![
            op(T0 + 10, "albums", "al", OpKind::Insert, &album_fields("t")),
            op(
                T0 + 10,
                "releases",
                "re",
                OpKind::Insert,
                &release_fields("al"),
            ),
            op(T0 + 10, "files", "fi", OpKind::Insert, &file_fields("re")),
        ],
    );
    let track = batch(
        dy,
        1,
        vec![op(
            T0,
            "tracks",
            "tr",
            OpKind::Insert,
            &track_fields("re", "t"),
        )],
    );
    let format = batch(
        dy,
        2,
        vec![op(
            T0 + 1,
            "audio_formats",
            "af",
            OpKind::Insert,
            &audio_format_fields("tr", "fi"),
        )],
    );
    let mut d = Device::new();
    let report = d.pull(vec![format, track, parents]);
    assert!(report.held.is_empty(), "{:?}", report.held);
    assert_eq!(report.applied.len(), 3);
    assert_eq!(report.applied[0], (dx, bae_oplog::BatchSeq(1)));
    assert!(d.exists("audio_formats", "af"));
}

#[test]
fn a_batch_whose_parent_never_arrives_is_kept_and_reported() {
    let dy = DeviceId::from_bytes([2; 16]);
    let track = batch(
        dy,
        1,
        vec![op(
            T0,
            "tracks",
            "tr",
            OpKind::Insert,
            &track_fields("re", "t"),
        )],
    );
    let mut d = Device::new();
    let report = d.pull(vec![track.clone()]);
    assert!(report.applied.is_empty());
    assert_eq!(report.held.len(), 1);
    assert_eq!(report.held[0].batch, track);
    assert!(matches!(
        &report.held[0].reason,
        MergeError::MissingParent { parent_table: "releases", parent_id, .. } if parent_id == "re"
    ));
    assert_eq!(d.count("tracks"), 0);
}

#[test]
fn an_update_of_a_row_not_yet_inserted_waits() {
    let (dx, dy) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let edit = batch(
        dy,
        1,
        vec![op(
            T0 + 5,
            "albums",
            "al",
            OpKind::Update,
            &[("title", "e".into())],
        )],
    );
    let insert = batch(
        dx,
        1,
        vec![op(T0, "albums", "al", OpKind::Insert, &album_fields("t"))],
    );
    let mut d = Device::new();
    let err = d.apply(&edit).unwrap_err();
    assert!(matches!(err, MergeError::MissingRow { .. }));
    let report = d.pull(vec![edit, insert]);
    assert!(report.held.is_empty());
    assert_eq!(d.get("albums", "al", "title"), Some("e".into()));
}

/// A device's batches apply in seq order: its batch 2, which could apply
/// on its own, waits while its batch 1 does (the caller's cursor, and a
/// revoke's cutoffs, name exactly what the library holds; seed 30086),
/// and both apply once the insert arrives.
#[test]
fn a_waiting_batch_holds_the_later_ones_of_its_device() {
    let (dx, dy) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let edit = batch(
        dy,
        1,
        vec![op(
            T0 + 5,
            "albums",
            "al",
            OpKind::Update,
            &[("title", "e".into())],
        )],
    );
    let later = batch(
        dy,
        2,
        vec![op(
            T0 + 6,
            "albums",
            "other",
            OpKind::Insert,
            &album_fields("o"),
        )],
    );
    let insert = batch(
        dx,
        1,
        vec![op(T0, "albums", "al", OpKind::Insert, &album_fields("t"))],
    );
    let mut d = Device::new();
    let report = d.pull(vec![later.clone(), edit.clone()]);
    assert!(report.applied.is_empty(), "{:?}", report.applied);
    assert_eq!(report.held.len(), 2);
    let waits = report.held.iter().find(|h| h.batch == later).unwrap();
    assert!(
        matches!(waits.reason, MergeError::EarlierBatchWaits { seq: 1 }),
        "{:?}",
        waits.reason
    );
    assert!(!d.exists("albums", "other"));
    let report = d.pull(vec![later, edit, insert]);
    assert!(report.held.is_empty(), "{:?}", report.held);
    assert_eq!(d.get("albums", "al", "title"), Some("e".into()));
    assert!(d.exists("albums", "other"));
}

#[test]
fn a_failing_batch_applies_nothing() {
    let dx = DeviceId::from_bytes([1; 16]);
    let b = batch(
        dx,
        1,
        vec![
            op(T0, "albums", "al", OpKind::Insert, &album_fields("t")),
            op(
                T0,
                "tracks",
                "tr",
                OpKind::Insert,
                &track_fields("nope", "t"),
            ),
        ],
    );
    let mut d = Device::new();
    let before = d.dump();
    assert!(d.apply(&b).unwrap_err().is_retryable());
    assert_eq!(d.dump(), before);
    let state = bae_merge::snapshot::counts(d.conn()).unwrap();
    assert_eq!(state, bae_merge::snapshot::StateCounts::default());
}

#[test]
fn an_unknown_column_is_rejected_and_nothing_applies() {
    let dx = DeviceId::from_bytes([1; 16]);
    let mut bad = op(T0, "files", "fi", OpKind::Update, &[]);
    bad.fields
        .push(("source_path".into(), "/etc/passwd".into()));
    let b = batch(
        dx,
        1,
        vec![
            op(T0, "albums", "al", OpKind::Insert, &album_fields("t")),
            bad,
        ],
    );
    let mut d = Device::new();
    let err = d.apply(&b).unwrap_err();
    assert!(matches!(err, MergeError::Invalid(_)));
    assert!(!d.exists("albums", "al"));
    let report = d.pull(vec![b]);
    assert_eq!(report.held.len(), 1);
}

#[test]
fn a_batch_too_far_ahead_is_held_then_applies_once_time_catches_up() {
    let dx = DeviceId::from_bytes([1; 16]);
    let ahead = T0 + 3_600_000;
    let b = batch(
        dx,
        1,
        vec![op(
            ahead,
            "albums",
            "al",
            OpKind::Insert,
            &album_fields("t"),
        )],
    );
    let mut d = Device::new();
    let clock_before = d.lib.recorder().clock().last();
    assert!(matches!(d.apply(&b).unwrap_err(), MergeError::Drift(_)));
    let report = d.pull(vec![b.clone()]);
    assert!(matches!(report.held[0].reason, MergeError::Drift(_)));
    assert!(!d.exists("albums", "al"));
    assert_eq!(d.lib.recorder().clock().last(), clock_before);
    d.tick(3_600_000);
    d.apply(&b).unwrap();
    assert!(d.exists("albums", "al"));
}

#[test]
fn applying_advances_and_persists_the_clock() {
    let dx = DeviceId::from_bytes([1; 16]);
    let b = batch(
        dx,
        1,
        vec![op(
            T0 + 60_000,
            "albums",
            "al",
            OpKind::Insert,
            &album_fields("t"),
        )],
    );
    let mut d = Device::new();
    d.apply(&b).unwrap();
    let persisted = bae_oplog::persisted_clock(d.conn()).unwrap();
    assert!(persisted >= b.max_hlc().unwrap());
    let local = d.edit("albums", "al", &[("title", "mine".into())]);
    assert!(local.ops[0].hlc > b.ops[0].hlc);
}

#[test]
fn applying_the_same_batch_twice_changes_nothing() {
    let mut a = Device::new();
    let import = a.import(&demo_album(1, 0, 3));
    let mut b = Device::new();
    b.apply(&import).unwrap();
    let once = b.dump();
    let again = b.apply(&import).unwrap();
    assert_eq!(again.fields_won, 0);
    assert_eq!(again.rows_inserted, 0);
    assert_eq!(b.dump(), once);
    // Its own batches coming back change nothing either.
    let mine = a.dump();
    a.pull(vec![import]);
    assert_eq!(a.dump(), mine);
}

#[test]
fn merge_keeps_local_only_columns_and_records_no_local_ops() {
    let mut a = Device::new();
    let album = demo_album(1, 0, 1);
    let file = album.ids("files").next().unwrap().to_owned();
    a.import(&album);
    let mut b = Device::new();
    b.pull_all_from(&mut a);
    assert_eq!(b.get("files", &file, "source_path"), Some(Value::Null));
    b.conn()
        .execute(
            "UPDATE files SET source_path = '/mine' WHERE id = ?1",
            [&file],
        )
        .unwrap();
    let ops_before = bae_oplog::last_op_seq(b.conn()).unwrap();
    let edit = a.edit(
        "files",
        &file,
        &[("original_filename", "renamed.flac".into())],
    );
    b.apply(&edit).unwrap();
    assert_eq!(
        b.get("files", &file, "original_filename"),
        Some("renamed.flac".into())
    );
    assert_eq!(b.get("files", &file, "source_path"), Some("/mine".into()));
    let ops_after = bae_oplog::last_op_seq(b.conn()).unwrap();
    assert_eq!(ops_before, ops_after);
    assert_eq!(ops_after, 0);
}

#[test]
fn concurrent_imports_of_the_same_album_merge_field_by_field() {
    let album = demo_album(1, 0, 2);
    let id = album.album_id().unwrap().to_owned();
    let (mut a, mut b) = (Device::new(), Device::new());
    a.import(&album);
    b.tick(5);
    b.import(&album);
    b.edit("albums", &id, &[("title", "b's".into())]);
    a.pull(b.batches());
    b.pull(a.batches());
    assert_eq!(a.dump(), b.dump());
    assert_eq!(title_of(&mut a, &id), Some("b's".into()));
}

#[test]
fn an_insert_omitting_columns_writes_their_defaults_in_either_order() {
    let (dx, dy) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
    let mut full = album_fields("old");
    full[3].1 = "old cover".into();
    full[4].1 = Value::Integer(1);
    let first = batch(dx, 1, vec![op(T0, "albums", "al", OpKind::Insert, &full)]);
    let partial: Vec<(&str, Value)> = vec![
        ("title", "new".into()),
        ("created_at", "c".into()),
        ("updated_at", "u".into()),
    ];
    let second = batch(
        dy,
        1,
        vec![op(T0 + 5, "albums", "al", OpKind::Insert, &partial)],
    );
    let delete = batch(dx, 2, vec![op(T0 + 2, "albums", "al", OpKind::Delete, &[])]);
    let mut dumps = Vec::new();
    for order in [
        vec![&first, &second],
        vec![&second, &first],
        vec![&first, &delete, &second],
        vec![&second, &delete, &first],
    ] {
        let mut d = Device::new();
        for b in order {
            d.apply(b).unwrap();
        }
        assert_eq!(d.get("albums", "al", "cover_image_id"), Some(Value::Null));
        assert_eq!(
            d.get("albums", "al", "is_compilation"),
            Some(Value::Integer(0))
        );
        dumps.push(d.dump());
    }
    assert!(dumps.windows(2).all(|w| w[0] == w[1]));
}

/// album, release, track and two files, as one batch at `T0`.
fn track_with_two_files(device: DeviceId) -> bae_oplog::Batch {
    batch(
        device,
        1,
        vec![
            op(T0, "albums", "al", OpKind::Insert, &album_fields("A")),
            op(T0, "releases", "re", OpKind::Insert, &release_fields("al")),
            op(T0, "tracks", "tr", OpKind::Insert, &track_fields("re", "T")),
            op(T0, "files", "f1", OpKind::Insert, &file_fields("re")),
            op(T0, "files", "f2", OpKind::Insert, &file_fields("re")),
        ],
    )
}

/// Two devices each give the same track an audio format (a UNIQUE track_id)
/// under different row ids; `b`'s is newer.
fn rival_audio_formats() -> [bae_oplog::Batch; 3] {
    let base = track_with_two_files(DeviceId::from_bytes([9; 16]));
    let older = batch(
        DeviceId::from_bytes([1; 16]),
        1,
        vec![op(
            T0 + 10,
            "audio_formats",
            "af-a",
            OpKind::Insert,
            &audio_format_fields("tr", "f1"),
        )],
    );
    let newer = batch(
        DeviceId::from_bytes([2; 16]),
        1,
        vec![op(
            T0 + 20,
            "audio_formats",
            "af-b",
            OpKind::Insert,
            &audio_format_fields("tr", "f2"),
        )],
    );
    [base, older, newer]
}

#[test]
fn rival_rows_with_the_same_unique_values_keep_the_newer_in_either_order() {
    let [base, older, newer] = rival_audio_formats();
    let (mut x, mut y) = (Device::new(), Device::new());
    for (d, order) in [(&mut x, [&older, &newer]), (&mut y, [&newer, &older])] {
        d.apply(&base).unwrap();
        for b in order {
            d.apply(b).unwrap();
        }
        assert!(d.exists("audio_formats", "af-b"), "the newer is present");
        assert!(!d.exists("audio_formats", "af-a"), "the older is absent");
    }
    assert_eq!(x.dump(), y.dump());
}

#[test]
fn when_the_unique_holder_goes_the_rival_comes_back() {
    let [base, older, newer] = rival_audio_formats();
    let delete_newer = batch(
        DeviceId::from_bytes([3; 16]),
        1,
        vec![op(T0 + 30, "audio_formats", "af-b", OpKind::Delete, &[])],
    );
    let delete_its_file = batch(
        DeviceId::from_bytes([4; 16]),
        1,
        vec![op(T0 + 30, "files", "f2", OpKind::Delete, &[])],
    );
    for removal in [delete_newer, delete_its_file] {
        let (mut x, mut y) = (Device::new(), Device::new());
        x.pull(vec![
            base.clone(),
            older.clone(),
            newer.clone(),
            removal.clone(),
        ]);
        y.apply(&base).unwrap();
        y.apply(&removal).unwrap();
        y.apply(&newer).unwrap();
        y.apply(&older).unwrap();
        for d in [&mut x, &mut y] {
            assert!(d.exists("audio_formats", "af-a"), "the rival is back");
            assert!(!d.exists("audio_formats", "af-b"));
            assert_eq!(d.get("audio_formats", "af-a", "file_id"), Some("f1".into()));
        }
        assert_eq!(x.dump(), y.dump());
    }
}

#[test]
fn an_update_onto_held_unique_values_keeps_the_newer_row() {
    let base = track_with_two_files(DeviceId::from_bytes([9; 16]));
    let second_track = batch(
        DeviceId::from_bytes([9; 16]),
        2,
        vec![
            op(
                T0 + 1,
                "tracks",
                "tr2",
                OpKind::Insert,
                &track_fields("re", "U"),
            ),
            op(
                T0 + 2,
                "audio_formats",
                "af-1",
                OpKind::Insert,
                &audio_format_fields("tr", "f1"),
            ),
            op(
                T0 + 3,
                "audio_formats",
                "af-2",
                OpKind::Insert,
                &audio_format_fields("tr2", "f2"),
            ),
        ],
    );
    // af-1 is moved onto tr2, which af-2 (inserted later) holds.
    let moved = batch(
        DeviceId::from_bytes([5; 16]),
        1,
        vec![op(
            T0 + 40,
            "audio_formats",
            "af-1",
            OpKind::Update,
            &[("track_id", "tr2".into())],
        )],
    );
    let (mut x, mut y) = (Device::new(), Device::new());
    x.pull(vec![base.clone(), second_track.clone(), moved.clone()]);
    y.apply(&base).unwrap();
    y.apply(&moved).unwrap_err();
    y.pull(vec![second_track, moved]);
    for d in [&mut x, &mut y] {
        assert!(d.exists("audio_formats", "af-2"), "newer row stamp wins");
        assert!(!d.exists("audio_formats", "af-1"));
        assert_eq!(d.count("audio_formats"), 1);
    }
    assert_eq!(x.dump(), y.dump());
}

#[test]
fn a_local_row_outbid_by_a_newer_remote_rival_gives_way() {
    let base = track_with_two_files(DeviceId::from_bytes([9; 16]));
    let mut a = Device::new();
    a.apply(&base).unwrap();
    // The local device credits an artist to the album...
    let artist = batch(
        DeviceId::from_bytes([9; 16]),
        2,
        vec![op(
            T0 + 1,
            "artists",
            "ar",
            OpKind::Insert,
            &[
                ("name", "N".into()),
                ("created_at", "c".into()),
                ("updated_at", "u".into()),
            ],
        )],
    );
    a.apply(&artist).unwrap();
    a.tick(5);
    a.lib
        .recorder()
        .transaction()
        .and_then(|mut tx| {
            tx.insert(
                "album_artists",
                "link-local",
                &[
                    ("album_id", "al".into()),
                    ("artist_id", "ar".into()),
                    ("position", Value::Integer(0)),
                ],
            )?;
            tx.commit()
        })
        .unwrap();
    // ...and another device did the same, later.
    let remote = batch(
        DeviceId::from_bytes([6; 16]),
        1,
        vec![op(
            T0 + 60_000,
            "album_artists",
            "link-remote",
            OpKind::Insert,
            &[
                ("album_id", "al".into()),
                ("artist_id", "ar".into()),
                ("position", Value::Integer(1)),
            ],
        )],
    );
    a.tick(60_000);
    a.apply(&remote).unwrap();
    assert!(a.exists("album_artists", "link-remote"));
    assert!(!a.exists("album_artists", "link-local"));
    // A device that gets both batches agrees.
    let local = a.last();
    let mut b = Device::at(T0 + 60_000);
    b.pull(vec![base, artist, remote, local]);
    assert_eq!(a.dump(), b.dump());
}

/// An HLC beyond the accepted range used to read as 2024 in the drift check
/// while sorting above every real stamp: the batch applied, the clock took
/// a default, and devices diverged for good. It is now refused, and the
/// clock is untouched.
#[test]
fn a_batch_with_an_hlc_beyond_the_range_is_rejected_and_the_clock_is_untouched() {
    let dx = DeviceId::from_bytes([1; 16]);
    for raw in [u64::MAX, bae_hlc::Timestamp::MAX.as_u64() + 1] {
        let mut forged = op(T0, "albums", "al", OpKind::Insert, &album_fields("t"));
        forged.hlc = bae_hlc::Timestamp::from_u64(raw);
        let b = batch(dx, 1, vec![forged]);
        let mut d = Device::new();
        let clock_before = d.lib.recorder().clock().last();
        let err = d.apply(&b).unwrap_err();
        assert!(
            matches!(
                err,
                MergeError::Invalid(bae_oplog::CodecError::HlcOutOfRange { index: 0 })
            ),
            "{err}"
        );
        assert!(!d.exists("albums", "al"));
        assert_eq!(d.lib.recorder().clock().last(), clock_before);
        let report = d.pull(vec![b]);
        assert_eq!(report.held.len(), 1);
    }
}

#[test]
fn a_database_that_cannot_take_writes_fails_the_pull_once_instead_of_holding_every_batch() {
    let dx = DeviceId::from_bytes([1; 16]);
    let batches: Vec<_> = (1..=50)
        .map(|i| {
            let id = format!("al{i}");
            // Too large to fit in the free space of the pages there are.
            let title = format!("{i}").repeat(3000);
            batch(
                dx,
                i,
                vec![op(
                    T0 + i as i64,
                    "albums",
                    &id,
                    OpKind::Insert,
                    &album_fields(&title),
                )],
            )
        })
        .collect();
    let mut d = Device::new();
    // No room for a new page: the batches' inserts fail with SQLITE_FULL,
    // a failure of this library's, not of any batch.
    let pages: i64 = d
        .conn()
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    d.conn()
        .pragma_update(None, "max_page_count", pages)
        .unwrap();
    let err = bae_merge::apply_pull(d.lib.recorder(), batches).unwrap_err();
    assert!(err.is_local_failure(), "{err}");
    assert!(!err.is_retryable());
    // What applied before the failure stays (applying it again is a no-op).
    assert!(d.count("albums") < 50);
}

/// The convergence property's seed `e3df457e…`, by name. Device B re-imports
/// an album that a remote delete took away (its track parked under the
/// deleted album), then deletes the track, and only then merges again. Its
/// fold of its own writes must judge the parked track by every local op:
/// reviving it under the re-imported release as soon as the re-import was
/// folded, before the later delete was, brought it back on B alone.
#[test]
fn a_local_reimport_then_track_delete_keeps_the_track_deleted_after_the_next_merge() {
    let album = demo_album(7, 0, 1);
    let album_id = album.album_id().unwrap().to_owned();
    let release = album.ids("releases").next().unwrap().to_owned();
    let track = album.ids("tracks").next().unwrap().to_owned();
    let (mut a, mut b, mut c) = (Device::new(), Device::new(), Device::new());
    // A and B import the same album (same ids) concurrently; A deletes
    // its release; C hears of A's writes only.
    let a_import = a.import(&album);
    let b_import = b.import(&album);
    let a_delete_release = a.delete("releases", &release);
    c.pull(vec![a_import.clone(), a_delete_release.clone()]);
    // B renames the album; C deletes the album.
    let b_edit = b.edit("albums", &album_id, &[("title", "v0".into())]);
    let c_delete_album = c.delete("albums", &album_id);
    // B merges C's delete: album, release and track go absent, parked.
    b.pull(vec![c_delete_album.clone()]);
    assert!(!b.exists("albums", &album_id));
    // B imports the album again (newer than every delete), then deletes
    // the track, and merges nothing in between.
    let b_reimport = b.import(&album);
    let b_delete_track = b.delete("tracks", &track);
    let all = vec![
        a_import,
        b_import,
        a_delete_release,
        b_edit,
        c_delete_album,
        b_reimport,
        b_delete_track,
    ];
    let (mut x, mut y) = (Device::new(), Device::new());
    x.pull(all.clone());
    y.pull(all.iter().rev().cloned().collect());
    for d in [&mut a, &mut b, &mut c] {
        let report = d.pull(all.clone());
        assert!(report.held.is_empty(), "held: {:?}", report.held);
    }
    for d in [&mut a, &mut b, &mut c, &mut x, &mut y] {
        assert!(d.exists("releases", &release), "the re-import is newest");
        assert!(!d.exists("tracks", &track), "the track delete is newest");
        assert_eq!(d.count("audio_formats"), 0, "gone with their track");
        assert_eq!(d.count("track_artists"), 0, "gone with their track");
    }
    let reference = x.dump();
    for d in [&mut a, &mut b, &mut c, &mut y] {
        assert_eq!(d.dump(), reference);
    }
}

/// A row written before sync began is in its table with no stamps: an
/// incoming insert of it is no new row (merge's shortcut for those claims
/// the row stamp first and must give it back), it updates the row.
#[test]
fn an_insert_of_a_row_present_from_before_sync_began_updates_it() {
    let mut b = Device::new();
    b.conn()
        .execute(
            "INSERT INTO albums (id, title, created_at, updated_at) VALUES ('al', 'before sync', 'c', 'u')",
            [],
        )
        .unwrap();
    let a = DeviceId::from_bytes([7; 16]);
    let stats = b
        .apply(&batch(
            a,
            1,
            vec![op(
                T0 + 5,
                "albums",
                "al",
                OpKind::Insert,
                &album_fields("remote"),
            )],
        ))
        .unwrap();
    assert_eq!(stats.rows_inserted, 0, "the row was there already");
    assert_eq!(title_of(&mut b, "al"), Some("remote".into()));
    assert_eq!(b.count("albums"), 1);
    let row_stamps: i64 = b
        .conn()
        .query_row("SELECT COUNT(*) FROM bae_sync_row_stamps", [], |r| r.get(0))
        .unwrap();
    assert_eq!(row_stamps, 1);
}

/// A column stamp with no row stamp (a row written before sync began,
/// edited here, then gone from its table without a recorded delete) still
/// outranks an older incoming insert of the row: the insert takes the
/// general way, never the shortcut for rows never seen.
#[test]
fn an_older_insert_of_a_row_known_only_by_a_column_stamp_keeps_the_newer_column() {
    let mut b = Device::new();
    b.conn()
        .execute(
            "INSERT INTO albums (id, title, year, created_at, updated_at) VALUES ('al', 'before sync', 1990, 'c', 'u')",
            [],
        )
        .unwrap();
    b.tick(100);
    b.edit("albums", "al", &[("year", Value::Integer(2024))]);
    bae_merge::fold_local(b.lib.recorder()).unwrap();
    b.conn()
        .execute("DELETE FROM albums WHERE id = 'al'", [])
        .unwrap();
    let a = DeviceId::from_bytes([7; 16]);
    b.apply(&batch(
        a,
        1,
        vec![op(
            T0 + 5,
            "albums",
            "al",
            OpKind::Insert,
            &album_fields("remote"),
        )],
    ))
    .unwrap();
    assert_ne!(
        b.get("albums", "al", "year"),
        Some(Value::Integer(1999)),
        "the older insert's year lost to the newer edit"
    );
}
