//! Devices on different sync schema versions keep syncing: a device on
//! version 1 applies what it knows of a version 2 writer's batches, keeps
//! the rest, and once upgraded converges with the others without any
//! batch sent again (docs/SCHEMA-EVOLUTION.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bae_hlc::{DeviceId, WallClock};
use bae_merge::{
    apply_kept, apply_pull, newer_writers, snapshot, MergeError, NewerWriter, PullReport,
};
use bae_oplog::fixture::{
    create_bae_library, demo_album, upgrade_to_v2, AlbumImport, Library, BAE_SCHEMA_V2,
};
use bae_oplog::{
    batch_ops, canonical_dump, last_batch, Batch, BatchSeq, CodecError, OpRecorder, SyncSchema,
    Value, BAE_SCHEMA,
};
use proptest::prelude::*;
use rusqlite::{Connection, OptionalExtension};
use std::path::PathBuf;

const T0: i64 = 1_800_000_000_000;

/// A device whose library is a file, so the host can close it, migrate it
/// to version 2 and open it again with [`BAE_SCHEMA_V2`].
struct Node {
    _dir: tempfile::TempDir,
    path: PathBuf,
    lib: Option<Library>,
    wall: i64,
}

impl Node {
    fn new(n: u8, v2: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("library.db");
        let conn = Connection::open(&path).unwrap();
        create_bae_library(&conn).unwrap();
        if v2 {
            upgrade_to_v2(&conn).unwrap();
        }
        let schema = if v2 { &BAE_SCHEMA_V2 } else { &BAE_SCHEMA };
        let device = DeviceId::from_bytes([n; 16]);
        let mut node = Node {
            _dir: dir,
            path,
            lib: None,
            wall: T0,
        };
        // The device id is made on first open; pin it for readable failures.
        conn.execute_batch("SELECT 1").unwrap();
        let rec = bae_oplog::fixture::library_as(conn, WallClock::Manual(T0), device);
        let rec = match (rec, v2) {
            (Ok(rec), false) => rec,
            (Ok(rec), true) => {
                drop(rec);
                node.open(schema)
            }
            (Err(e), _) => panic!("{e}"),
        };
        node.lib = Some(Library::new(rec));
        node.migrate();
        node
    }

    fn open(&self, schema: &'static SyncSchema) -> OpRecorder {
        OpRecorder::with_connection(
            Connection::open(&self.path).unwrap(),
            WallClock::Manual(self.wall),
            schema,
        )
        .unwrap()
    }

    fn migrate(&mut self) {
        bae_merge::migrate(self.rec()).unwrap();
    }

    fn lib(&mut self) -> &mut Library {
        self.lib.as_mut().unwrap()
    }

    fn rec(&mut self) -> &mut OpRecorder {
        self.lib().recorder()
    }

    fn schema(&mut self) -> &'static SyncSchema {
        self.rec().schema()
    }

    fn is_v2(&mut self) -> bool {
        self.schema().version() == 2
    }

    /// The host updates: closes the library, runs its migration, opens it
    /// with the version 2 schema; the engine applies what it kept.
    fn upgrade(&mut self) {
        if self.is_v2() {
            return;
        }
        self.lib = None;
        upgrade_to_v2(&Connection::open(&self.path).unwrap()).unwrap();
        let rec = self.open(&BAE_SCHEMA_V2);
        self.lib = Some(Library::new(rec));
        self.migrate();
    }

    fn tick(&mut self, ms: i64) {
        self.wall += ms;
        let wall = self.wall;
        self.rec().clock().set_wall_millis(wall);
    }

    /// Every batch this device recorded, as it would push them now.
    fn batches(&mut self) -> Vec<Batch> {
        let schema = self.schema();
        let (conn, _, device) = self.rec().sync_parts();
        let last = last_batch(conn).unwrap();
        (1..=last.0)
            .map(|s| Batch {
                schema_version: schema.version(),
                device,
                seq: BatchSeq(s),
                prev: None,
                ops: batch_ops(conn, schema, BatchSeq(s)).unwrap(),
            })
            .collect()
    }

    fn pull(&mut self, batches: Vec<Batch>) -> PullReport {
        apply_pull(self.rec(), batches).unwrap()
    }

    fn pull_all_from(&mut self, other: &mut Node) {
        let report = self.pull(other.batches());
        assert!(report.held.is_empty(), "held: {:?}", report.held);
    }

    fn dump(&mut self, schema: &SyncSchema) -> String {
        canonical_dump(self.rec().sync_parts().0, schema).unwrap()
    }

    fn newer(&mut self) -> (Vec<NewerWriter>, u64) {
        let schema = self.schema();
        newer_writers(self.rec().sync_parts().0, schema).unwrap()
    }

    fn exists(&mut self, table: &str, id: &str) -> bool {
        self.rec()
            .sync_parts()
            .0
            .query_row(
                &format!("SELECT 1 FROM {table} WHERE id = ?1"),
                [id],
                |_| Ok(()),
            )
            .optional()
            .unwrap()
            .is_some()
    }

    fn get(&mut self, table: &str, id: &str, column: &str) -> Option<Value> {
        self.rec()
            .sync_parts()
            .0
            .query_row(
                &format!("SELECT {column} FROM {table} WHERE id = ?1"),
                [id],
                |r| Ok(Value::from(r.get_ref(0)?)),
            )
            .optional()
            .unwrap()
    }

    fn import(&mut self, album: &AlbumImport) {
        self.lib().import_album(album).unwrap();
    }

    fn edit(&mut self, table: &str, id: &str, fields: &[(&str, Value)]) {
        self.lib().edit(table, id, fields).unwrap();
    }

    fn add_note(&mut self, note: &str, album: &str, body: &str) {
        let mut tx = self.rec().transaction().unwrap();
        tx.insert(
            "album_notes",
            note,
            &[("album_id", album.into()), ("body", body.into())],
        )
        .unwrap();
        tx.commit().unwrap();
    }

    /// Inserts a bare album, with a mood on version 2: the insert itself
    /// carries the new column.
    fn insert_album(&mut self, id: &str, title: &str, mood: &str) {
        let mut fields = vec![
            ("title", Value::from(title)),
            ("created_at", Value::from(1i64)),
            ("updated_at", Value::from(1i64)),
        ];
        if self.is_v2() {
            fields.push(("mood", mood.into()));
        }
        let mut tx = self.rec().transaction().unwrap();
        tx.insert("albums", id, &fields).unwrap();
        tx.commit().unwrap();
    }

    fn delete_album(&mut self, album: &str) {
        self.lib().delete_album(album).unwrap();
    }
}

/// Everyone pulls everyone's batches.
fn exchange(nodes: &mut [&mut Node]) {
    let all: Vec<Vec<Batch>> = nodes.iter_mut().map(|n| n.batches()).collect();
    for (i, node) in nodes.iter_mut().enumerate() {
        let mine = node.rec().device();
        let theirs: Vec<Batch> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, b)| b.iter().cloned())
            .filter(|b| b.device != mine)
            .collect();
        let report = node.pull(theirs);
        assert!(report.held.is_empty(), "held: {:?}", report.held);
    }
}

fn album(k: u64) -> AlbumImport {
    demo_album(17, k, 2)
}

#[test]
fn a_version_1_device_keeps_syncing_with_version_2_devices_and_converges_after_upgrading() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let mut c = Node::new(3, true);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    b.import(&x);
    exchange(&mut [&mut a, &mut b, &mut c]);

    // Concurrent edits of the same album: v2 devices write the new column
    // and the new table, the v1 device what it knows.
    a.tick(10);
    a.edit(
        "albums",
        &x_id,
        &[("mood", "calm".into()), ("title", "A's".into())],
    );
    a.add_note("n1", &x_id, "first pressing");
    b.tick(20);
    b.edit(
        "albums",
        &x_id,
        &[("title", "B's".into()), ("year", 1999.into())],
    );
    c.tick(30);
    c.edit("albums", &x_id, &[("mood", "stormy".into())]);
    c.add_note("n2", &x_id, "remaster");
    let y = album(1);
    a.import(&y);
    a.edit(
        "albums",
        y.album_id().unwrap(),
        &[("mood", "bright".into())],
    );
    c.insert_album("z", "Zed", "dreamy");
    exchange(&mut [&mut a, &mut b, &mut c]);
    c.tick(5);
    c.edit(
        "album_notes",
        "n1",
        &[("body", "first pressing, 1959".into())],
    );
    exchange(&mut [&mut a, &mut b, &mut c]);

    // B applied everything it knows: the same library as the others, read
    // through version 1's eyes.
    let v1_view = a.dump(&BAE_SCHEMA);
    assert_eq!(b.dump(&BAE_SCHEMA), v1_view);
    assert_eq!(c.dump(&BAE_SCHEMA), v1_view);
    assert_eq!(b.get("albums", &x_id, "title"), Some("B's".into()));
    assert!(b.exists("albums", y.album_id().unwrap()));
    // ... and knows who writes what it cannot show.
    let (newer, kept) = b.newer();
    assert_eq!(
        newer,
        [1u8, 3].map(|n| NewerWriter {
            device: DeviceId::from_bytes([n; 16]),
            schema_version: 2
        })
    );
    assert_eq!(
        kept, 7,
        "mood twice, y's and z's moods, two notes, one note edit"
    );
    let v2_view = a.dump(&BAE_SCHEMA_V2);
    assert_eq!(c.dump(&BAE_SCHEMA_V2), v2_view);
    assert!(v2_view.contains("\"stormy\"") && v2_view.contains("first pressing, 1959"));

    // B keeps writing while on version 1; then it updates.
    b.tick(100);
    b.edit(
        "albums",
        y.album_id().unwrap(),
        &[("title", "B again".into())],
    );
    b.upgrade();
    assert_eq!(b.newer(), (vec![], 0), "everything kept applied");
    assert_eq!(
        b.dump(&BAE_SCHEMA_V2).replace("B again", "?"),
        v2_view.replace(&format!("title={:?}", y_title(&mut a, &y)), "title=\"?\"")
    );
    exchange(&mut [&mut a, &mut b, &mut c]);
    let all = a.dump(&BAE_SCHEMA_V2);
    assert_eq!(b.dump(&BAE_SCHEMA_V2), all);
    assert_eq!(c.dump(&BAE_SCHEMA_V2), all);
    // Nothing written under version 2 is missing.
    assert_eq!(b.get("albums", &x_id, "mood"), Some("stormy".into()));
    assert_eq!(
        b.get("albums", y.album_id().unwrap(), "mood"),
        Some("bright".into())
    );
    assert_eq!(
        b.get("album_notes", "n1", "body"),
        Some("first pressing, 1959".into())
    );
    assert_eq!(b.get("album_notes", "n2", "body"), Some("remaster".into()));
    assert_eq!(b.get("albums", "z", "mood"), Some("dreamy".into()));
}

fn y_title(node: &mut Node, y: &AlbumImport) -> String {
    match node.get("albums", y.album_id().unwrap(), "title") {
        Some(Value::Text(t)) => t,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_older_devices_delete_takes_the_new_tables_rows_with_it_everywhere() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    a.add_note("n1", &x_id, "liner notes");
    b.pull_all_from(&mut a);
    b.tick(50);
    b.delete_album(&x_id);
    a.pull_all_from(&mut b);
    assert!(
        !a.exists("album_notes", "n1"),
        "the note went with its album"
    );
    b.upgrade();
    assert!(!b.exists("album_notes", "n1"));
    assert_eq!(b.dump(&BAE_SCHEMA_V2), a.dump(&BAE_SCHEMA_V2));
}

#[test]
fn an_older_writers_update_leaves_the_new_column_alone() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    a.edit("albums", &x_id, &[("mood", "calm".into())]);
    b.pull_all_from(&mut a);
    b.tick(10);
    b.edit("albums", &x_id, &[("title", "Retitled".into())]);
    let y = album(1);
    b.import(&y);
    a.pull_all_from(&mut b);
    assert_eq!(a.get("albums", &x_id, "mood"), Some("calm".into()));
    assert_eq!(a.get("albums", &x_id, "title"), Some("Retitled".into()));
    // A new row of an older writer has the column's default.
    assert_eq!(
        a.get("albums", y.album_id().unwrap(), "mood"),
        Some(Value::Null)
    );
}

#[test]
fn a_kept_note_waits_for_its_album_when_the_album_arrives_later() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    a.add_note("n1", &x_id, "liner notes");
    let batches = a.batches();
    // The note's batch first, alone: on version 1 it is only kept.
    b.pull(vec![batches[1].clone()]);
    b.upgrade();
    assert!(!b.exists("album_notes", "n1"), "its album has not arrived");
    assert_eq!(b.newer().1, 1, "still kept, waiting");
    b.pull(vec![batches[0].clone()]);
    assert_eq!(
        b.get("album_notes", "n1", "body"),
        Some("liner notes".into())
    );
    assert_eq!(b.newer().1, 0);
    assert_eq!(b.dump(&BAE_SCHEMA_V2), a.dump(&BAE_SCHEMA_V2));
}

#[test]
fn unknown_names_from_a_writer_not_newer_are_refused_and_nothing_applies() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    b.pull_all_from(&mut a);
    a.tick(10);
    a.edit(
        "albums",
        &x_id,
        &[("title", "T".into()), ("mood", "calm".into())],
    );
    let mut forged = a.batches().pop().unwrap();
    forged.schema_version = 1;
    let report = b.pull(vec![forged]);
    assert!(matches!(
        &report.held[0].reason,
        MergeError::Invalid(CodecError::UnknownColumn { column, .. }) if column == "mood"
    ));
    assert_ne!(b.get("albums", &x_id, "title"), Some("T".into()));
    assert_eq!(b.newer().1, 0, "nothing kept");
}

#[derive(Clone, Debug)]
enum Action {
    Import {
        dev: usize,
        album: u64,
    },
    Bare {
        dev: usize,
        n: u8,
        v: u8,
    },
    Title {
        dev: usize,
        album: u64,
        v: u8,
    },
    Mood {
        dev: usize,
        album: u64,
        v: u8,
    },
    Note {
        dev: usize,
        album: u64,
        n: u8,
        v: u8,
    },
    DeleteAlbum {
        dev: usize,
        album: u64,
    },
    Upgrade {
        dev: usize,
    },
    Tick {
        dev: usize,
        ms: i64,
    },
    Sync {
        to: usize,
        from: usize,
        picks: Vec<usize>,
    },
    /// A new device joins from `from`'s checkpoint, on version 2 or 1.
    Join {
        from: usize,
        v2: bool,
    },
}

const NODES: usize = 3;

fn action() -> impl Strategy<Value = Action> {
    let dev = 0usize..NODES + 2;
    let album = 0u64..2;
    prop_oneof![
        2 => (dev.clone(), album.clone()).prop_map(|(dev, album)| Action::Import { dev, album }),
        1 => (dev.clone(), 0u8..2, 0u8..4).prop_map(|(dev, n, v)| Action::Bare { dev, n, v }),
        2 => (dev.clone(), album.clone(), 0u8..4).prop_map(|(dev, album, v)| Action::Title { dev, album, v }),
        2 => (dev.clone(), album.clone(), 0u8..4).prop_map(|(dev, album, v)| Action::Mood { dev, album, v }),
        2 => (dev.clone(), album.clone(), 0u8..2, 0u8..4).prop_map(|(dev, album, n, v)| Action::Note { dev, album, n, v }),
        1 => (dev.clone(), album.clone()).prop_map(|(dev, album)| Action::DeleteAlbum { dev, album }),
        1 => dev.clone().prop_map(|dev| Action::Upgrade { dev }),
        2 => (dev.clone(), -50i64..300).prop_map(|(dev, ms)| Action::Tick { dev, ms }),
        4 => (dev.clone(), dev.clone(), proptest::collection::vec(any::<usize>(), 0..6))
            .prop_map(|(to, from, picks)| Action::Sync { to, from, picks }),
        1 => (dev, any::<bool>()).prop_map(|(from, v2)| Action::Join { from, v2 }),
    ]
}

fn perform(nodes: &mut Vec<Node>, action: &Action) {
    if let Action::Join { from, v2 } = action {
        // At most two joiners: each is a library on disk.
        if nodes.len() < NODES + 2 {
            let mut fresh = Node::new(20 + nodes.len() as u8, *v2);
            let from = from % nodes.len();
            restore_snapshot(&mut nodes[from], &mut fresh).unwrap();
            nodes.push(fresh);
        }
        return;
    }
    let action = &retarget(action, nodes.len());
    match action {
        Action::Import { dev, album: k } => {
            let a = album(*k);
            let n = &mut nodes[*dev];
            if !n.exists("albums", a.album_id().unwrap()) {
                n.import(&a);
            }
        }
        Action::Bare { dev, n: k, v } => {
            // Bare albums are deleted and inserted again under the same id:
            // a re-insert by an older writer meets a newer one's column.
            let id = format!("bare-{k}");
            let n = &mut nodes[*dev];
            if n.exists("albums", &id) {
                n.delete_album(&id);
            } else {
                n.insert_album(&id, &format!("t{v}"), &format!("m{v}"));
            }
        }
        Action::Title { dev, album: k, v } => {
            let a = album(*k);
            let id = a.album_id().unwrap();
            let n = &mut nodes[*dev];
            if n.exists("albums", id) {
                n.edit("albums", id, &[("title", format!("t{v}").into())]);
            }
        }
        Action::Mood { dev, album: k, v } => {
            let a = album(*k);
            let id = a.album_id().unwrap();
            let n = &mut nodes[*dev];
            if n.is_v2() && n.exists("albums", id) {
                n.edit("albums", id, &[("mood", format!("m{v}").into())]);
            }
        }
        Action::Note {
            dev,
            album: k,
            n: i,
            v,
        } => {
            let a = album(*k);
            let id = a.album_id().unwrap();
            let note = format!("note-{k}-{i}");
            let n = &mut nodes[*dev];
            if !n.is_v2() || !n.exists("albums", id) {
                return;
            }
            if n.exists("album_notes", &note) {
                n.edit("album_notes", &note, &[("body", format!("b{v}").into())]);
            } else {
                // A note another device deleted comes back as a new life
                // of the same id, as a re-import does.
                n.add_note(&note, id, &format!("b{v}"));
            }
        }
        Action::DeleteAlbum { dev, album: k } => {
            let a = album(*k);
            let id = a.album_id().unwrap();
            let n = &mut nodes[*dev];
            if n.exists("albums", id) {
                n.delete_album(id);
            }
        }
        Action::Join { .. } => {}
        Action::Upgrade { dev } => nodes[*dev].upgrade(),
        Action::Tick { dev, ms } => nodes[*dev].tick(*ms),
        Action::Sync { to, from, picks } => {
            if to == from {
                return;
            }
            let batches = nodes[*from].batches();
            if batches.is_empty() {
                return;
            }
            let chosen = picks
                .iter()
                .map(|p| batches[p % batches.len()].clone())
                .collect();
            nodes[*to].pull(chosen);
        }
    }
}

/// The action with its devices taken modulo the devices there are now
/// (joiners get actions too).
fn retarget(action: &Action, n: usize) -> Action {
    let mut a = action.clone();
    match &mut a {
        Action::Import { dev, .. }
        | Action::Bare { dev, .. }
        | Action::Title { dev, .. }
        | Action::Mood { dev, .. }
        | Action::Note { dev, .. }
        | Action::DeleteAlbum { dev, .. }
        | Action::Upgrade { dev }
        | Action::Tick { dev, .. } => *dev %= n,
        Action::Sync { to, from, .. } => {
            *to %= n;
            *from %= n;
        }
        Action::Join { .. } => {}
    }
    a
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Whatever the interleaving of edits, partial syncs, joins from a
    /// checkpoint (on either version, of a device on either) and upgrades,
    /// once every device runs version 2 and has every batch, every
    /// library is the same, and equal to the library of a witness that
    /// ran version 2 from the start and applied every batch.
    #[test]
    fn devices_upgrading_at_random_points_converge(
        actions in proptest::collection::vec(action(), 1..40)
    ) {
        // Node 0 starts on version 2, the others on version 1.
        let mut nodes: Vec<Node> = (0..NODES).map(|i| Node::new(i as u8 + 1, i == 0)).collect();
        for a in &actions {
            perform(&mut nodes, a);
        }
        for n in nodes.iter_mut() {
            n.upgrade();
        }
        let all: Vec<Batch> = nodes.iter_mut().flat_map(|n| n.batches()).collect();
        let mut witness = Node::new(9, true);
        witness.pull(all.clone());
        let expected = witness.dump(&BAE_SCHEMA_V2);
        for n in nodes.iter_mut() {
            let mine = n.rec().device();
            n.pull(all.iter().filter(|b| b.device != mine).cloned().collect());
            prop_assert_eq!(n.dump(&BAE_SCHEMA_V2), expected.clone());
            prop_assert_eq!(n.newer(), (vec![], 0));
        }
    }
}

/// The merge state of `from` as a snapshot, restored into `to` (a fresh
/// library) record by record, as a checkpoint restore does; then what `to`
/// can apply of the kept ops applies.
fn restore_snapshot(from: &mut Node, to: &mut Node) -> Result<(), snapshot::RestoreError> {
    let schema = from.schema();
    // A snapshot holds the stamps of local writes once they are folded.
    bae_merge::fold_local(from.rec()).unwrap();
    let mut records = Vec::new();
    snapshot::snapshot(from.rec().sync_parts().0, schema, |r| {
        records.push(r);
        Ok::<_, ()>(())
    })
    .unwrap();
    let len = snapshot::snapshot_len(from.rec().sync_parts().0, schema).unwrap();
    assert_eq!(len, records.len() as u64);
    let writer = schema.version();
    let from_device = from.rec().device();
    let newest = snapshot::newest_stamp(from.rec().sync_parts().0).unwrap();
    let schema = to.schema();
    for r in &records {
        snapshot::check_record(schema, r, writer)?;
    }
    let conn = to.rec().sync_parts().0;
    let mut cache = snapshot::RestoreCache::default();
    for r in &records {
        snapshot::restore_record(conn, schema, r, writer, &mut cache)?;
    }
    snapshot::finish_restore(conn, schema, from_device, writer).unwrap();
    snapshot::mark_local_ops_folded(conn).unwrap();
    // As a bootstrap does: the clock moves past every restored stamp, so
    // this device's next write is newer than what it restored.
    if let Some(newest) = newest {
        bae_oplog::persist_timestamp(conn, bae_hlc::Timestamp::from_u64(newest)).unwrap();
        let (conn, clock, _) = to.rec().sync_parts();
        bae_oplog::catch_up_clock(conn, clock).unwrap();
    }
    apply_kept(to.rec()).unwrap();
    Ok(())
}

#[test]
fn a_checkpoint_of_a_version_1_device_carries_what_it_kept_to_any_version() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    a.tick(10);
    a.edit("albums", &x_id, &[("mood", "calm".into())]);
    a.add_note("n1", &x_id, "liner notes");
    a.insert_album("z", "Zed", "dreamy");
    b.pull_all_from(&mut a);
    b.tick(20);
    b.edit("albums", &x_id, &[("title", "B's".into())]);
    a.pull_all_from(&mut b);
    let kept = b.newer().1;
    assert_eq!(kept, 3);

    // Restored on version 2: every kept value applies.
    let mut fresh_v2 = Node::new(3, true);
    restore_snapshot(&mut b, &mut fresh_v2).unwrap();
    assert_eq!(fresh_v2.dump(&BAE_SCHEMA_V2), a.dump(&BAE_SCHEMA_V2));
    assert_eq!(fresh_v2.newer(), (vec![], 0));

    // Restored on version 1: kept again, the newer writer reported, and
    // applied once that device upgrades.
    let mut fresh_v1 = Node::new(4, false);
    restore_snapshot(&mut b, &mut fresh_v1).unwrap();
    assert_eq!(fresh_v1.dump(&BAE_SCHEMA), b.dump(&BAE_SCHEMA));
    let (newer, kept_there) = fresh_v1.newer();
    assert_eq!((newer.len(), kept_there), (1, kept));
    fresh_v1.upgrade();
    assert_eq!(fresh_v1.dump(&BAE_SCHEMA_V2), a.dump(&BAE_SCHEMA_V2));
}

#[test]
fn a_checkpoint_of_a_version_2_device_restores_on_version_1_keeping_what_it_does_not_know() {
    let mut a = Node::new(1, true);
    let mut c = Node::new(3, true);
    let x = album(0);
    let x_id = x.album_id().unwrap().to_owned();
    a.import(&x);
    a.insert_album("z", "Zed", "dreamy");
    a.add_note("n1", &x_id, "liner notes");
    a.add_note("n2", &x_id, "gone soon");
    c.pull_all_from(&mut a);
    c.tick(10);
    c.edit(
        "albums",
        &x_id,
        &[("mood", "calm".into()), ("title", "C's".into())],
    );
    c.edit("album_notes", "n1", &[("body", "liner notes, 1959".into())]);
    c.lib().delete("album_notes", "n2").unwrap();
    a.pull_all_from(&mut c);

    // A version 1 device restores c's checkpoint: what it knows, as c has
    // it; the rest kept, c reported.
    let mut v1 = Node::new(2, false);
    restore_snapshot(&mut c, &mut v1).unwrap();
    assert_eq!(v1.dump(&BAE_SCHEMA), c.dump(&BAE_SCHEMA));
    let (newer, kept) = v1.newer();
    assert_eq!(
        newer,
        [NewerWriter {
            device: DeviceId::from_bytes([3; 16]),
            schema_version: 2
        }],
        "the checkpoint's writer"
    );
    assert!(kept >= 5, "{kept}");
    // Its host updates: everything is there, as on the others.
    v1.upgrade();
    assert_eq!(v1.dump(&BAE_SCHEMA_V2), c.dump(&BAE_SCHEMA_V2));
    assert_eq!(v1.newer(), (vec![], 0));
    // And it keeps syncing with them.
    v1.tick(50);
    v1.edit("albums", &x_id, &[("mood", "stormy".into())]);
    a.pull_all_from(&mut v1);
    c.pull_all_from(&mut v1);
    assert_eq!(a.dump(&BAE_SCHEMA_V2), v1.dump(&BAE_SCHEMA_V2));
    assert_eq!(c.dump(&BAE_SCHEMA_V2), v1.dump(&BAE_SCHEMA_V2));
}

#[test]
fn a_checkpoint_naming_unknown_columns_from_a_writer_not_newer_is_refused() {
    let mut a = Node::new(1, true);
    a.import(&album(0));
    let mut records = Vec::new();
    snapshot::snapshot(a.rec().sync_parts().0, &BAE_SCHEMA_V2, |r| {
        records.push(r);
        Ok::<_, ()>(())
    })
    .unwrap();
    let refused = records
        .iter()
        .find_map(|r| snapshot::check_record(&BAE_SCHEMA, r, 1).err())
        .expect("a version 1 writer cannot know albums.mood");
    assert!(
        matches!(&refused, snapshot::RestoreError::UnknownColumn { table, column } if table == "albums" && column == "mood"),
        "{refused}"
    );
    // From a newer writer, a name that is no identifier is refused too.
    let hostile = snapshot::StateRecord::Columns {
        table: "notes; DROP TABLE albums".into(),
        columns: vec![],
    };
    assert!(matches!(
        snapshot::check_record(&BAE_SCHEMA, &hostile, 2),
        Err(snapshot::RestoreError::BadKept(CodecError::BadName { .. }))
    ));
}

/// Review finding 1: a member signs two ops with the same stamp (its own
/// device and one HLC) on different rows. Devices that know the column
/// apply both; a version 1 device kept them under one key (device, HLC),
/// so the second op's value was dropped (or written to the first op's
/// row) and the device diverged once upgraded.
#[test]
fn review_ops_forged_with_one_stamp_on_different_rows_are_each_kept_and_applied() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let mut c = Node::new(3, true);
    let (x, y) = (album(0), album(1));
    let (x_id, y_id) = (x.album_id().unwrap(), y.album_id().unwrap());
    a.import(&x);
    a.import(&y);
    a.tick(10);
    a.edit("albums", x_id, &[("mood", "calm".into())]);
    a.tick(10);
    a.edit("albums", y_id, &[("mood", "bright".into())]);
    let mut batches = a.batches();
    let n = batches.len();
    let stamp = batches[n - 2].ops[0].hlc;
    for op in &mut batches[n - 1].ops {
        op.hlc = stamp;
    }
    assert!(b.pull(batches.clone()).held.is_empty());
    assert!(c.pull(batches).held.is_empty());
    assert_eq!(c.get("albums", y_id, "mood"), Some("bright".into()));
    b.upgrade();
    assert_eq!(b.get("albums", x_id, "mood"), Some("calm".into()));
    assert_eq!(b.get("albums", y_id, "mood"), Some("bright".into()));
    assert_eq!(b.dump(&BAE_SCHEMA_V2), c.dump(&BAE_SCHEMA_V2));
}

/// Review finding 2: two ops of one stamp (a member signing both, or a
/// device back from a backup) write a column a version 1 device does not
/// know, one the text `'5'`, one the integer 7. A device that knows the
/// column (`TEXT`) compares them as it stores them, `'5'` and `'7'`: 7
/// wins. The version 1 device kept one value per field, the greater as
/// written (text ranks above integers), `'5'`, dropping 7; once upgraded
/// it had `'5'` for good while the others had `'7'`. It now keeps, for
/// each type affinity, the value a tie would settle on, and settles on
/// the column's own once it knows it.
#[test]
fn review_a_tie_kept_by_an_older_device_settles_as_the_column_stores_it() {
    let mut a = Node::new(1, true);
    let mut b = Node::new(2, false);
    let mut c = Node::new(3, true);
    let x = album(0);
    let x_id = x.album_id().unwrap();
    a.import(&x);
    a.tick(10);
    a.edit("albums", x_id, &[("mood", "5".into())]);
    let mut batches = a.batches();
    let mut twin = batches.last().unwrap().clone();
    twin.seq = BatchSeq(twin.seq.0 + 1);
    twin.ops[0].fields = vec![("mood".to_owned(), Value::Integer(7))];
    batches.push(twin);
    assert!(c.pull(batches.clone()).held.is_empty());
    assert_eq!(c.get("albums", x_id, "mood"), Some("7".into()));
    assert!(b.pull(batches).held.is_empty());
    b.upgrade();
    assert_eq!(b.get("albums", x_id, "mood"), Some("7".into()));
    assert_eq!(b.dump(&BAE_SCHEMA_V2), c.dump(&BAE_SCHEMA_V2));
}
