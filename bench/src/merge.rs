//! `merge_apply`: applying remote batches of imported albums to a fresh
//! library through the merge (stamps compared and recorded, one transaction
//! per batch) vs inserting the same rows with plain prepared rusqlite
//! statements, one transaction per album. Both databases are temp files
//! set up as the engine sets up a library (`bae_oplog::configure`: WAL,
//! synchronous NORMAL, foreign keys on) with bae's reference tables.
//!
//! Where the time goes (`perf record --call-graph dwarf`, `--quick`): in
//! merge's run about 60% is committing (WAL frames and the automatic
//! checkpoint) and 40% applying ops; merge's commit alone costs about what
//! the whole plain run does. The extra pages are the row stamps: a batch
//! inserts one per row, keyed by random UUIDs, so each lands on its own
//! b-tree page, about as many pages again as the host's own id indexes.
//! Of applying, reading a row's state is about a third, the row insert a
//! third (as in the plain run), setting its stamp a fifth.

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
