//! `merge_apply`: applying remote batches of imported albums to a fresh
//! library through the merge (stamps compared and recorded, one transaction
//! per batch) vs inserting the same rows with plain prepared rusqlite
//! statements, one transaction per album. Both databases are temp files
//! set up as the engine sets up a library (`bae_oplog::configure`: WAL,
//! synchronous NORMAL, foreign keys on) with bae's reference tables.
//!
//! Where the time goes (`perf record -g`, CPU samples; WAL frames counted
//! with autocheckpoint off, 1,000 albums): nearly all of merge's extra time
//! is its row stamps, one per row (53 for a demo album): with them left
//! out merge runs as fast as the plain run. Their cost is pages: committing
//! (WAL frames) and checkpointing (the same pages again, plus fsyncs) are
//! about 60% of either run and grow with the frames a batch writes, and
//! the stamp pages push the host's own out of SQLite's page cache. Merge's
//! own code (validation, the fold of local writes, the clock, statement
//! lookups) is under 3%.
//!
//! Row stamps were keyed by (table number, packed row id) until merge
//! migration `0005_clustered_row_keys`: bae's ids are random UUIDs, so
//! each of a batch's stamps landed on its own leaf, 61 leaf frames per
//! batch with the splits: 191 frames against the plain run's 134 (1.43x).
//! But the ids of join and child rows are made from their row's (a track
//! `{t}`, its credit `{t}:{artist}`, its audio format `af:{t}`), so now a
//! key leads with its id's first UUID and the row stamps are keyed by key
//! first: a track's three stamps share a leaf, 37 leaf frames per batch,
//! 171 frames in all (1.28x); what is left is one random leaf per track
//! and per file (their ids are their own), the splits, and the persisted
//! clock. Before, an insert of a row never stamped (every op here) already
//! read no state: it claims the row stamp with one
//! `INSERT .. ON CONFLICT DO NOTHING`, which is both the lookup and the
//! write.
//!
//! Measured (each invocation the median of five interleaved runs; ten
//! invocations of each binary, alternated, on the busy 2-core machine):
//! before 1.540 (invocations 1.485-1.722), after 1.389 (1.207-1.488).
//! Earlier, on an idle machine, before was 1.565 (1.53-1.62), 1.556 and
//! 1.586. After, in a full `cargo xtask bench` on the idle machine (with
//! a device's batches applied in seq order, too): 1.372 (1.293-1.485).

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
