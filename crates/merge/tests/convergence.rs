//! Convergence: devices making random bae-shaped writes and exchanging
//! their batches in random orders, with duplicates, end with identical
//! libraries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_merge::MergeError;
use bae_oplog::fixture::{demo_album, AlbumImport};
use bae_oplog::{Batch, CodecError, Value};
use common::Device;
use proptest::prelude::*;

const SEED: u64 = 7;
const ALBUMS: u64 = 2;

/// Album `k` with up to three tracks. Imports of the same album share ids
/// (track `t` is the same row whatever the count), so concurrent imports
/// with different counts make children another device's delete never knew.
fn album(k: u64, tracks: usize) -> AlbumImport {
    demo_album(SEED, k, tracks)
}

#[derive(Clone, Debug)]
enum Action {
    Import {
        dev: usize,
        album: u64,
        tracks: usize,
    },
    EditAlbum {
        dev: usize,
        album: u64,
        year: bool,
        v: u8,
    },
    EditRelease {
        dev: usize,
        album: u64,
        v: u8,
    },
    EditTrack {
        dev: usize,
        album: u64,
        track: usize,
        v: u8,
    },
    DeleteTrack {
        dev: usize,
        album: u64,
        track: usize,
    },
    DeleteRelease {
        dev: usize,
        album: u64,
    },
    DeleteAlbum {
        dev: usize,
        album: u64,
    },
    /// Replaces a track's audio format with a new row (a new id: a rival
    /// of every other device's format for that track, `UNIQUE track_id`).
    Reformat {
        dev: usize,
        album: u64,
        track: usize,
        n: u32,
    },
    /// Replaces the album's artist credit with a new row (a rival of every
    /// other device's, `UNIQUE (album_id, artist_id)`).
    Recredit {
        dev: usize,
        album: u64,
        n: u32,
    },
    Tick {
        dev: usize,
        ms: i64,
    },
    /// Joins two recorded batches of one device (indices as in `Sync`) into
    /// one more batch, the older's ops first: a batch that writes one row
    /// several times, e.g. inserts it, deletes it and inserts it again.
    Coalesce {
        picks: (usize, usize),
    },
    /// Deliver these batches (indices into everything recorded so far,
    /// modulo its length, repeats allowed) to `to`.
    Sync {
        to: usize,
        picks: Vec<usize>,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let dev = 0usize..5;
    let album = 0..ALBUMS;
    prop_oneof![
        3 => (dev.clone(), album.clone(), 1usize..=3).prop_map(|(dev, album, tracks)| Action::Import { dev, album, tracks }),
        2 => (dev.clone(), album.clone(), any::<bool>(), 0u8..4)
            .prop_map(|(dev, album, year, v)| Action::EditAlbum { dev, album, year, v }),
        1 => (dev.clone(), album.clone(), 0u8..4).prop_map(|(dev, album, v)| Action::EditRelease { dev, album, v }),
        2 => (dev.clone(), album.clone(), 0usize..3, 0u8..4)
            .prop_map(|(dev, album, track, v)| Action::EditTrack { dev, album, track, v }),
        1 => (dev.clone(), album.clone(), 0usize..3).prop_map(|(dev, album, track)| Action::DeleteTrack { dev, album, track }),
        1 => (dev.clone(), album.clone()).prop_map(|(dev, album)| Action::DeleteRelease { dev, album }),
        1 => (dev.clone(), album.clone()).prop_map(|(dev, album)| Action::DeleteAlbum { dev, album }),
        2 => (dev.clone(), album.clone(), 0usize..3, any::<u32>())
            .prop_map(|(dev, album, track, n)| Action::Reformat { dev, album, track, n }),
        1 => (dev.clone(), album.clone(), any::<u32>()).prop_map(|(dev, album, n)| Action::Recredit { dev, album, n }),
        2 => (dev.clone(), -100i64..500).prop_map(|(dev, ms)| Action::Tick { dev, ms }),
        2 => (any::<usize>(), any::<usize>()).prop_map(|picks| Action::Coalesce { picks }),
        3 => (dev, proptest::collection::vec(any::<usize>(), 0..8)).prop_map(|(to, picks)| Action::Sync { to, picks }),
    ]
}

fn id_of<'a>(a: &'a AlbumImport, table: &'a str, n: usize) -> Option<&'a str> {
    a.ids(table).nth(n)
}

/// Performs a local write if it makes sense on this device now; returns
/// its batch.
fn perform(d: &mut Device, action: &Action) -> Option<Batch> {
    let v = |v: &u8| Value::from(format!("v{v}"));
    match action {
        Action::Import {
            album: k, tracks, ..
        } => {
            let a = album(*k, *tracks);
            let exists = d.exists("albums", a.album_id()?);
            (!exists).then(|| d.import(&a))
        }
        Action::EditAlbum {
            album: k,
            year,
            v: x,
            ..
        } => {
            let a = album(*k, 3);
            let id = a.album_id()?;
            let field = if *year {
                ("year", Value::Integer(2000 + *x as i64))
            } else {
                ("title", v(x))
            };
            d.exists("albums", id)
                .then(|| d.edit("albums", id, &[field]))
        }
        Action::EditRelease { album: k, v: x, .. } => {
            let a = album(*k, 3);
            let id = id_of(&a, "releases", 0)?;
            d.exists("releases", id)
                .then(|| d.edit("releases", id, &[("label", v(x))]))
        }
        Action::EditTrack {
            album: k,
            track,
            v: x,
            ..
        } => {
            let a = album(*k, 3);
            let id = id_of(&a, "tracks", *track)?;
            d.exists("tracks", id)
                .then(|| d.edit("tracks", id, &[("title", v(x))]))
        }
        Action::DeleteTrack {
            album: k, track, ..
        } => {
            let a = album(*k, 3);
            let id = id_of(&a, "tracks", *track)?;
            d.exists("tracks", id).then(|| d.delete("tracks", id))
        }
        Action::DeleteRelease { album: k, .. } => {
            let a = album(*k, 3);
            let id = id_of(&a, "releases", 0)?;
            d.exists("releases", id).then(|| d.delete("releases", id))
        }
        Action::DeleteAlbum { album: k, .. } => {
            let a = album(*k, 3);
            let id = a.album_id()?;
            d.exists("albums", id).then(|| d.delete("albums", id))
        }
        Action::Reformat {
            dev,
            album: k,
            track,
            n,
        } => {
            let a = album(*k, 3);
            let track = id_of(&a, "tracks", *track)?;
            let row = a.rows.iter().find(|r| {
                r.table == "audio_formats"
                    && r.fields
                        .iter()
                        .any(|(c, v)| *c == "track_id" && *v == Value::from(track))
            })?;
            let fields: Vec<(&str, Value)> = row
                .fields
                .iter()
                .map(|(c, v)| match *c {
                    "sample_rate" => (*c, Value::Integer(i64::from(*n % 4) * 1000 + 44_000)),
                    _ => (*c, v.clone()),
                })
                .collect();
            d.exists("tracks", track)
                .then(|| {
                    replace_unique(
                        d,
                        "audio_formats",
                        "track_id",
                        track,
                        &format!("af-{dev}-{n}"),
                        &fields,
                    )
                })
                .flatten()
        }
        Action::Recredit { dev, album: k, n } => {
            let a = album(*k, 3);
            let row = a.rows.iter().find(|r| r.table == "album_artists")?;
            let album_id = a.album_id()?;
            let fields: Vec<(&str, Value)> = row
                .fields
                .iter()
                .map(|(c, v)| match *c {
                    "position" => (*c, Value::Integer(i64::from(*n % 3))),
                    _ => (*c, v.clone()),
                })
                .collect();
            let artist = fields.iter().find(|(c, _)| *c == "artist_id")?.1.clone();
            let present = d.exists("albums", album_id)
                && matches!(&artist, Value::Text(id) if d.exists("artists", id));
            present
                .then(|| {
                    replace_unique(
                        d,
                        "album_artists",
                        "album_id",
                        album_id,
                        &format!("aa-{dev}-{n}"),
                        &fields,
                    )
                })
                .flatten()
        }
        Action::Tick { ms, .. } => {
            d.tick(*ms);
            None
        }
        Action::Sync { .. } | Action::Coalesce { .. } => None,
    }
}

/// In one transaction, deletes this device's present rows of `table` whose
/// `column` is `value` and inserts `id` with `fields` (as bae re-analysing
/// a track or re-crediting an album would); skips an id already used.
fn replace_unique(
    d: &mut Device,
    table: &str,
    column: &str,
    value: &str,
    id: &str,
    fields: &[(&str, Value)],
) -> Option<Batch> {
    if d.exists(table, id) {
        return None;
    }
    let holders: Vec<String> = d
        .conn()
        .prepare(&format!("SELECT id FROM {table} WHERE {column} = ?1"))
        .unwrap()
        .query_map([value], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut tx = d.lib.recorder().transaction().unwrap();
    for h in &holders {
        tx.delete(table, h).unwrap();
    }
    match tx.insert(table, id, fields) {
        Ok(()) => {}
        // Another unique group of the row is held (an album_artists link
        // for the same artist): not a write bae would make.
        Err(_) => return None,
    }
    tx.commit().unwrap();
    Some(d.last())
}

fn dev_of(action: &Action) -> usize {
    match action {
        Action::Import { dev, .. }
        | Action::EditAlbum { dev, .. }
        | Action::EditRelease { dev, .. }
        | Action::EditTrack { dev, .. }
        | Action::DeleteTrack { dev, .. }
        | Action::DeleteRelease { dev, .. }
        | Action::DeleteAlbum { dev, .. }
        | Action::Reformat { dev, .. }
        | Action::Recredit { dev, .. }
        | Action::Tick { dev, .. } => *dev,
        Action::Sync { to, .. } => *to,
        Action::Coalesce { .. } => 0,
    }
}

/// A deterministic shuffle with duplicates, from a seed.
fn scrambled(pool: &[Batch], seed: u64) -> Vec<Batch> {
    let mut state = seed | 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out: Vec<Batch> = pool.to_vec();
    for _ in 0..pool.len() / 3 {
        out.push(pool[next() as usize % pool.len()].clone());
    }
    for i in (1..out.len()).rev() {
        out.swap(i, next() as usize % (i + 1));
    }
    out
}

/// Applies batches one at a time in the given order, retrying those whose
/// parents had not arrived until no progress, then as one pull.
fn deliver_everything(d: &mut Device, batches: Vec<Batch>) {
    let mut pending = batches;
    loop {
        let before = pending.len();
        let mut waiting = Vec::new();
        for b in pending {
            match d.apply(&b) {
                Ok(_) => {}
                Err(e) if e.is_retryable() => waiting.push(b),
                Err(e) => panic!("batch failed: {e}"),
            }
        }
        if waiting.is_empty() || waiting.len() == before {
            pending = waiting;
            break;
        }
        pending = waiting;
    }
    let report = d.pull(pending);
    assert!(report.held.is_empty(), "held at the end: {:?}", report.held);
}

/// Batches `x` and `y` of `pool` (modulo its length) joined into one, the
/// older's ops first, when they are two batches of one device. Its seq is
/// past any a device records here, so it is a batch of its own.
fn coalesced(pool: &[Batch], x: usize, y: usize) -> Option<Batch> {
    if pool.is_empty() {
        return None;
    }
    let (lo, hi) = (
        (x % pool.len()).min(y % pool.len()),
        (x % pool.len()).max(y % pool.len()),
    );
    let (a, b) = (&pool[lo], &pool[hi]);
    if lo == hi || a.device != b.device {
        return None;
    }
    let mut joined = a.clone();
    joined.seq = bae_oplog::BatchSeq(1_000_000 + pool.len() as u64);
    joined.ops.extend(b.ops.iter().cloned());
    Some(joined)
}

fn run(devices: usize, actions: Vec<Action>, seed: u64) -> Result<(), TestCaseError> {
    let mut devs: Vec<Device> = (0..devices).map(|_| Device::new()).collect();
    let mut pool: Vec<Batch> = Vec::new();
    for action in &actions {
        if let Action::Coalesce { picks: (x, y) } = action {
            if let Some(joined) = coalesced(&pool, *x, *y) {
                pool.push(joined);
            }
            continue;
        }
        let i = dev_of(action) % devices;
        if let Action::Sync { picks, .. } = action {
            if pool.is_empty() {
                continue;
            }
            // A device never pulls its own batches (that would repair
            // mistakes in folding its own writes and hide them).
            let me = devs[i].id();
            let batches = picks
                .iter()
                .map(|p| pool[p % pool.len()].clone())
                .filter(|b| b.device != me)
                .collect();
            // Held batches stay in the pool and arrive again later.
            devs[i].pull(batches);
        } else if let Some(b) = perform(&mut devs[i], action) {
            pool.push(b);
        }
    }
    if pool.is_empty() {
        return Ok(());
    }
    for (i, d) in devs.iter_mut().enumerate() {
        let me = d.id();
        let others: Vec<Batch> = pool.iter().filter(|b| b.device != me).cloned().collect();
        if !others.is_empty() {
            deliver_everything(d, scrambled(&others, seed.wrapping_add(i as u64)));
        } else {
            d.pull(Vec::new());
        }
    }
    let first = devs[0].dump();
    for d in devs.iter_mut().skip(1) {
        prop_assert_eq!(&first, &d.dump());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn devices_exchanging_batches_in_any_order_converge(
        devices in 2usize..=5,
        actions in proptest::collection::vec(action(), 1..40),
        seed in any::<u64>(),
    ) {
        run(devices, actions, seed)?;
    }
}

/// A value another op with the same stamp writes instead: other text,
/// numbers, text a numeric column stores as a number, a blob (never NULL:
/// most columns are `NOT NULL`).
fn other_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u8..4).prop_map(|v| Value::from(format!("v{v}"))),
        Just(Value::from("w")),
        (1999i64..2003).prop_map(Value::Integer),
        (1999i64..2003).prop_map(|y| Value::from(y.to_string())),
        Just(Value::Real(2000.5)),
        proptest::collection::vec(any::<u8>(), 0..3).prop_map(Value::Blob),
    ]
}

/// A batch of one op with the same stamp (writer and HLC) as an op of
/// `base` and another value in one of its fields: what a device that went
/// back to a backup and wrote again from its copy's clock publishes, or a
/// member signing two ops with one stamp. With `place` the field is a
/// parent or unique column and the value is that column's value in another
/// recorded op (`pool`), so the twin moves the row under another parent or
/// onto another row's key; otherwise parent and unique columns keep their
/// values.
fn same_stamp_twin(
    base: &Batch,
    pool: &[Batch],
    (pick, field, value, place): (usize, usize, Value, bool),
) -> Option<Batch> {
    let writes: Vec<&bae_oplog::Op> = base.ops.iter().filter(|o| !o.fields.is_empty()).collect();
    let op = *writes.get(pick % writes.len().max(1))?;
    let table = bae_oplog::BAE_SCHEMA.table(&op.table)?;
    let free: Vec<usize> = (0..op.fields.len())
        .filter(|i| {
            let c = op.fields[*i].0.as_str();
            let places = table.parents.iter().any(|(p, _)| *p == c)
                || table.unique.iter().any(|g| g.contains(&c));
            places == place
        })
        .collect();
    let at = *free.get(field % free.len().max(1))?;
    let value = if place {
        let column = op.fields[at].0.as_str();
        let others: Vec<&Value> = pool
            .iter()
            .flat_map(|b| &b.ops)
            .filter(|o| o.table == op.table)
            .flat_map(|o| &o.fields)
            .filter(|(c, v)| c == column && *v != op.fields[at].1)
            .map(|(_, v)| v)
            .collect();
        let n = match value {
            Value::Integer(n) => n.unsigned_abs() as usize,
            _ => pick,
        };
        (*others.get(n % others.len().max(1))?).clone()
    } else {
        value
    };
    let mut twin = op.clone();
    twin.fields[at].1 = value;
    Some(Batch {
        seq: bae_oplog::BatchSeq(base.seq.0 + 10_000),
        prev: None,
        ops: vec![twin],
        ..base.clone()
    })
}

/// Every stamp a device holds, by writer device and table name rather
/// than their local numbers (which differ between devices).
fn stamps_dump(d: &mut Device) -> Vec<String> {
    let conn = d.conn();
    let mut out = Vec::new();
    let mut rows = conn
        .prepare(
            "SELECT t.name, hex(r.row_key), r.ins_hlc, hex(wi.device), r.del_hlc, hex(wd.device)
             FROM bae_sync_row_stamps r
             JOIN bae_sync_table_ids t ON t.id = r.table_id
             LEFT JOIN bae_sync_writers wi ON wi.id = r.ins_writer
             LEFT JOIN bae_sync_writers wd ON wd.id = r.del_writer
             UNION ALL
             SELECT t.name, hex(c.row_key) || '.' || c.\"column\", c.hlc, hex(w.device), NULL, NULL
             FROM bae_sync_column_stamps c
             JOIN bae_sync_table_ids t ON t.id = c.table_id
             LEFT JOIN bae_sync_writers w ON w.id = c.writer
             ORDER BY 1, 2",
        )
        .unwrap();
    let mut q = rows.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        let cells: Vec<String> = (0..6)
            .map(|i| format!("{:?}", Value::from(r.get_ref(i).unwrap())))
            .collect();
        out.push(cells.join(" "));
    }
    out
}

/// Devices as in [`run`], then ops that reuse stamps of recorded ones with
/// other values (`twins`: which batch, which op, which field, what value),
/// delivered to every device, their writer's too (its own op is already in
/// its table), all in scrambled orders: the tables and the stamps end the
/// same everywhere. Without the tie-break on values each device keeps the
/// value it saw first.
fn run_with_twins(
    devices: usize,
    actions: Vec<Action>,
    twins: Vec<(usize, usize, usize, Value, bool)>,
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut devs: Vec<Device> = (0..devices).map(|_| Device::new()).collect();
    let mut pool: Vec<Batch> = Vec::new();
    for action in &actions {
        if let Action::Coalesce { picks: (x, y) } = action {
            if let Some(joined) = coalesced(&pool, *x, *y) {
                pool.push(joined);
            }
            continue;
        }
        let i = dev_of(action) % devices;
        if !matches!(action, Action::Sync { .. }) {
            if let Some(b) = perform(&mut devs[i], action) {
                pool.push(b);
            }
        }
    }
    if pool.is_empty() {
        return Ok(());
    }
    let twins: Vec<Batch> = twins
        .into_iter()
        .filter_map(|(b, o, f, v, place)| {
            same_stamp_twin(&pool[b % pool.len()], &pool, (o, f, v, place))
        })
        .collect();
    for (i, d) in devs.iter_mut().enumerate() {
        let me = d.id();
        let mut batches: Vec<Batch> = pool.iter().filter(|b| b.device != me).cloned().collect();
        batches.extend(twins.iter().cloned());
        deliver_everything(d, scrambled(&batches, seed.wrapping_add(i as u64)));
    }
    let (first, first_stamps) = (devs[0].dump(), stamps_dump(&mut devs[0]));
    for d in devs.iter_mut().skip(1) {
        prop_assert_eq!(&first, &d.dump());
        prop_assert_eq!(&first_stamps, &stamps_dump(d));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, max_shrink_iters: 2000, ..ProptestConfig::default() })]

    #[test]
    fn ops_sharing_a_stamp_converge_in_any_order(
        devices in 2usize..=4,
        actions in proptest::collection::vec(action(), 1..30),
        twins in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<usize>(), other_value(), any::<bool>()), 1..6),
        seed in any::<u64>(),
    ) {
        run_with_twins(devices, actions, twins, seed)?;
    }
}

/// Two ops of one stamp writing a track title, applied in both orders on
/// two devices and after the writer's own op on the writer: every device
/// ends with the greater value, under the same stamp.
#[test]
fn a_tie_between_equal_stamps_goes_to_the_greater_value() {
    let (mut writer, mut a, mut b) = (Device::new(), Device::new(), Device::new());
    let import = writer.import(&album(0, 1));
    let track = album(0, 1).ids("tracks").next().unwrap().to_owned();
    let first = writer.edit("tracks", &track, &[("title", Value::from("d2-231"))]);
    let mut second = first.clone();
    second.seq = bae_oplog::BatchSeq(first.seq.0 + 1);
    second.ops[0].fields[0].1 = Value::from("d2-292");
    for d in [&mut a, &mut b] {
        d.apply(&import).unwrap();
    }
    a.apply(&first).unwrap();
    a.apply(&second).unwrap();
    b.apply(&second).unwrap();
    b.apply(&first).unwrap();
    writer.apply(&second).unwrap();
    for d in [&mut writer, &mut a, &mut b] {
        assert_eq!(
            d.get("tracks", &track, "title"),
            Some(Value::from("d2-292"))
        );
    }
    let stamps = stamps_dump(&mut writer);
    assert_eq!(stamps, stamps_dump(&mut a));
    assert_eq!(stamps, stamps_dump(&mut b));
    assert_eq!(writer.dump(), a.dump());
}

/// An insert and a delete of one row with one stamp: the row is deleted
/// (it lives only if its insert is newer than its tombstone) whichever
/// arrives first, with the same stamps everywhere.
#[test]
fn an_insert_and_a_delete_with_one_stamp_leave_the_row_deleted_in_any_order() {
    let (mut writer, mut a, mut b) = (Device::new(), Device::new(), Device::new());
    let import = writer.import(&album(0, 1));
    let track = album(0, 1).ids("tracks").next().unwrap().to_owned();
    let insert = import
        .ops
        .iter()
        .find(|o| o.table == "tracks" && o.row_id == track)
        .unwrap();
    let mut delete = import.clone();
    delete.seq = bae_oplog::BatchSeq(import.seq.0 + 1);
    delete.ops = vec![bae_oplog::Op {
        kind: bae_oplog::OpKind::Delete,
        fields: Vec::new(),
        ..insert.clone()
    }];
    a.apply(&import).unwrap();
    a.apply(&delete).unwrap();
    b.apply(&delete).unwrap();
    b.apply(&import).unwrap();
    b.apply(&delete).unwrap();
    writer.apply(&delete).unwrap();
    for d in [&mut writer, &mut a, &mut b] {
        assert!(!d.exists("tracks", &track));
    }
    let stamps = stamps_dump(&mut writer);
    assert_eq!(stamps, stamps_dump(&mut a));
    assert_eq!(stamps, stamps_dump(&mut b));
    assert_eq!(writer.dump(), a.dump());
    assert_eq!(writer.dump(), b.dump());
}

/// Why folding a local write never meets a tie (`fold_op` in `apply.rs`):
/// a stamp of this device's that merge applied (an own batch re-taken
/// after going back to a backup, stamped ahead of the clock the copy
/// kept) moves the clock past it, so the next local write to the field is
/// stamped after it and wins, on this device and everywhere else.
#[test]
fn a_local_write_after_an_applied_own_batch_is_stamped_after_it() {
    let mut writer = Device::new();
    let mut other = Device::new();
    let import = writer.import(&album(0, 1));
    other.apply(&import).unwrap();
    let track = album(0, 1).ids("tracks").next().unwrap().to_owned();
    let me = writer.id();
    let ahead = common::T0 + 60_000;
    let retaken = common::batch(
        me,
        7,
        vec![common::op(
            ahead,
            "tracks",
            &track,
            bae_oplog::OpKind::Update,
            &[("title", Value::from("published before going back"))],
        )],
    );
    writer.apply(&retaken).unwrap();
    let local = writer.edit("tracks", &track, &[("title", Value::from("after"))]);
    assert!(local.ops[0].hlc > retaken.ops[0].hlc);
    writer.pull(Vec::new());
    other.apply(&retaken).unwrap();
    other.apply(&local).unwrap();
    for d in [&mut writer, &mut other] {
        assert_eq!(d.get("tracks", &track, "title"), Some(Value::from("after")));
    }
    assert_eq!(stamps_dump(&mut writer), stamps_dump(&mut other));
}

/// The generator's rival writes really make rival rows (or the property
/// above would not cover the unique rule).
#[test]
fn reformat_and_recredit_make_rival_rows() {
    let (mut a, mut b) = (Device::new(), Device::new());
    let import = perform(
        &mut a,
        &Action::Import {
            dev: 0,
            album: 0,
            tracks: 3,
        },
    )
    .unwrap();
    b.pull(vec![import]);
    let mut rivals = Vec::new();
    for (d, dev) in [(&mut a, 0), (&mut b, 1)] {
        for action in [
            Action::Reformat {
                dev,
                album: 0,
                track: 1,
                n: 7,
            },
            Action::Recredit {
                dev,
                album: 0,
                n: 7,
            },
        ] {
            rivals.push(perform(d, &action).expect("a rival row"));
        }
    }
    let (mut x, mut y) = (Device::new(), Device::new());
    let base = a.batches()[0].clone();
    x.pull(
        std::iter::once(base.clone())
            .chain(rivals.clone())
            .collect(),
    );
    rivals.reverse();
    y.pull(std::iter::once(base).chain(rivals).collect());
    assert_eq!(x.dump(), y.dump());
    assert!(x.exists("audio_formats", "af-1-7"), "b's later format wins");
    assert!(!x.exists("audio_formats", "af-0-7"));
    assert!(x.exists("album_artists", "aa-1-7"));
}

/// Review finding 3: an op naming one column twice (nothing refused it).
/// SQLite keeps the first of an INSERT's repeated columns and the last of
/// an UPDATE's, and merge weighed each against the field's stamp on its
/// own: with another op of the same stamp writing `"m"`, a device that got
/// `"m"` first took `"z"` (the only one of the two above it), one that got
/// the doubled op first wrote `"a"` (the last) and then `"m"` won the tie.
/// Such an op is refused as invalid, everywhere alike.
#[test]
fn review_an_op_writing_one_column_twice_is_refused() {
    let (mut writer, mut a, mut b) = (Device::new(), Device::new(), Device::new());
    let import = writer.import(&album(0, 1));
    let track = album(0, 1).ids("tracks").next().unwrap().to_owned();
    let single = writer.edit("tracks", &track, &[("title", Value::from("m"))]);
    let mut doubled = single.clone();
    doubled.seq = bae_oplog::BatchSeq(single.seq.0 + 1);
    doubled.ops[0].fields = vec![
        ("title".to_owned(), Value::from("z")),
        ("title".to_owned(), Value::from("a")),
    ];
    for d in [&mut a, &mut b] {
        d.apply(&import).unwrap();
    }
    a.apply(&single).unwrap();
    for d in [&mut a, &mut b] {
        let refused = d.apply(&doubled).unwrap_err();
        assert!(
            matches!(
                refused,
                MergeError::Invalid(CodecError::BadOp {
                    reason: "a column written twice",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    b.apply(&single).unwrap();
    assert_eq!(a.get("tracks", &track, "title"), Some(Value::from("m")));
    assert_eq!(
        a.get("tracks", &track, "title"),
        b.get("tracks", &track, "title")
    );
    assert_eq!(a.dump(), b.dump());
}
