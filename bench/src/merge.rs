//! `merge_apply`: applying remote batches of imported albums to a fresh
//! library through the merge (stamps compared and recorded, one transaction
//! per batch) vs inserting the same rows with plain prepared rusqlite
//! statements, one transaction per album. Both databases are temp files
//! set up as the engine sets up a library (`bae_oplog::configure`: WAL,
//! synchronous NORMAL, foreign keys on) with bae's reference tables.
//!
//! Where the time goes (`perf record --call-graph dwarf`, `--quick`, CPU
//! samples; WAL frames counted with autocheckpoint off, 1,000 albums):
//! merge writes 191 WAL frames per batch against the plain run's 134
//! (1.43x). The extra ones are the row stamps: a batch inserts one per
//! row (53 for a demo album), keyed by random UUIDs, so each lands on its
//! own leaf of merge's row stamp table, as each row's id does in the host's
//! own id index; the rest is the stamp tree's splits and the persisted
//! clock. A rowid stamp table would not help (its key index would be just
//! as random, and a second insert per row), nor would smaller stamp rows
//! (half the leaves still take about as many distinct pages per batch).
//! So committing is about two thirds of merge's run and 1.4 times the
//! plain run's commit. Of applying, the host row insert costs what the
//! plain run's does; an insert of a row never stamped (every op here)
//! reads no state: it claims the row stamp with one
//! `INSERT .. ON CONFLICT DO NOTHING`, which is both the lookup and the
//! write (5% of merge's run; before, reading the row's state and then
//! setting its stamp were 17%). Validation, the fold of local writes and
//! the clock are about 5%, per batch. Measured so: 1.47 (median of five
//! invocations' medians, 1.31-1.66, on a busy 2-core machine; 1.60 before),
//! and 1.53 by CPU samples; on the idle machine three invocations gave
//! 1.565 (1.53-1.62), 1.556 (1.49-1.59) and 1.586 (1.48-1.62): the 1.5
//! target is missed. What remains above the plain run is almost all the
//! stamp pages' commit and checkpoint.

use crate::report::{interleaved, Entry, FreshFiles, Size};
use bae_hlc::WallClock;
use bae_oplog::fixture::{create_bae_library, demo_album, library_on, Library};
use bae_oplog::{batch_ops, configure, last_batch, Batch, BatchSeq, BAE_SCHEMA};
use rusqlite::Connection;

const TRACKS: usize = 12;

pub fn merge_apply(size: Size) -> Result<Entry, String> {
    let n = size.pick(200, 1000);
    let runs = size.pick(5, 5);
    let batches = remote_batches(n).map_err(|e| e.to_string())?;
    let fields: usize = batches
        .iter()
        .flat_map(|b| &b.ops)
        .map(|o| o.fields.len())
        .sum();
    eprintln!(
        "bench: merge_apply: {n} albums, {} batches, {fields} field writes",
        batches.len()
    );
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let files = FreshFiles::new(dir.path());
    let fresh = |label: &str| files.connection(label);
    let timed = interleaved(
        runs,
        || {
            let mut rec =
                library_on(fresh("merge")?, WallClock::System).map_err(|e| e.to_string())?;
            bae_merge::migrate(&mut rec).map_err(|e| e.to_string())?;
            for b in &batches {
                bae_merge::apply_batch(&mut rec, b).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        || {
            let mut conn = fresh("plain")?;
            configure(&conn).map_err(|e| e.to_string())?;
            create_bae_library(&conn).map_err(|e| e.to_string())?;
            for b in &batches {
                plain_apply(&mut conn, b).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    )?;
    Ok(timed.entry(
        "merge_apply",
        "plain rusqlite inserts of the same rows, one transaction per album",
        "s",
    ))
}

/// The batches a remote device pushes after importing `n` albums.
fn remote_batches(n: u64) -> Result<Vec<Batch>, bae_oplog::OplogError> {
    let rec = library_on(Connection::open_in_memory()?, WallClock::System)?;
    let mut lib = Library::new(rec);
    for i in 0..n {
        lib.import_album(&demo_album(13, i, TRACKS))?;
    }
    let (conn, _, device) = lib.recorder().sync_parts();
    let last = last_batch(conn)?;
    (1..=last.0)
        .map(|s| {
            Ok(Batch {
                schema_version: BAE_SCHEMA.version(),
                device,
                seq: BatchSeq(s),
                prev: None,
                ops: batch_ops(conn, &BAE_SCHEMA, BatchSeq(s))?,
            })
        })
        .collect()
}

/// The same rows inserted with plain prepared statements.
fn plain_apply(conn: &mut Connection, batch: &Batch) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for op in &batch.ops {
        let sql = bae_oplog::insert_sql(&op.table, op.fields.iter().map(|(c, _)| c.as_str()));
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&op.row_id];
        params.extend(op.fields.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
        tx.prepare_cached(&sql)?.execute(params.as_slice())?;
    }
    tx.commit()
}
