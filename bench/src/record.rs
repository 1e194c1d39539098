//! `record_overhead`: importing bae-shaped albums through the OpRecorder vs
//! the same writes with plain rusqlite in the same transactions.
//!
//! Where the time goes (`perf`): commits (WAL frames and checkpoints,
//! about 60%), so what an op costs is mostly the pages its row adds to
//! every commit. Op log version 3 (`migrations/oplog/0003_compact_op_log`)
//! made that row smaller and the commit touch fewer engine pages: no
//! per-op batch index or `sqlite_sequence` update, one batch row per
//! commit instead of a device-row update, table numbers and packed UUIDs
//! (the op log of 200 albums: 2.24 MB -> 1.56 MB). On a busy 2-core
//! machine, 13 invocations each interleaved with the version 2 build:
//! 1.325 (1.26-1.50) -> 1.264 (1.22-1.32).
//!
//! Version 3's profile (CPU samples of ours over plain: 1.32) put a third
//! of what recording added in the op rows' own INSERTs: an op was a SQLite
//! row, each statement a VDBE run and a b-tree insert. Op log version 4
//! (`migrations/oplog/0004_op_chunks`) gathers a transaction's ops in
//! memory and writes them as a few rows of about 800 bytes (so they pack
//! the 4 KiB pages; one row per transaction, about 6 KB an album, spilled
//! into overflow pages: 1.64 MB for version 3's 1.45 MB), each op's HLC
//! a delta from the one before: 1.32 -> 1.08-1.13 in CPU samples. Wall
//! time, invocations each interleaved with the version 3 build on the same
//! busy machine: 1.275 (1.217-1.314) -> 1.139 (1.100-1.189) over 6 with
//! one row per transaction; 1.232 (1.101-1.324) -> 1.145 (0.997-1.179)
//! over 10 with rows of 800 bytes. What
//! is left, by samples: the commit's extra WAL bytes (the ops' row and
//! the batch row, about a tenth over the plain commit), encoding the ops
//! (UUID packing and postcard, about 2% of ours), the per-write column
//! checks and statement text (as plain builds it too).
//! Building the statement text per op was about 2% before `insert_sql`
//! stopped allocating per column.

use crate::report::{interleaved, Entry, FreshFiles, Size};
use bae_hlc::WallClock;
use bae_oplog::fixture::{create_bae_library, demo_album, library_on, AlbumImport, Library};
use bae_oplog::{configure, Value};
use rusqlite::Connection;

const TRACKS: usize = 12;

pub fn record_overhead(size: Size) -> Result<Entry, String> {
    let n = size.pick(200, 200);
    let runs = size.pick(3, 7);
    let albums: Vec<AlbumImport> = (0..n).map(|i| demo_album(11, i, TRACKS)).collect();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let files = FreshFiles::new(dir.path());
    let fresh = |label: &str| files.connection(label);
    let timed = interleaved(
        runs,
        || {
            let conn = fresh("ours")?;
            let rec = library_on(conn, WallClock::System).map_err(|e| e.to_string())?;
            let mut lib = Library::new(rec);
            for a in &albums {
                lib.import_album(a).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
        || {
            let mut conn = fresh("plain")?;
            configure(&conn).map_err(|e| e.to_string())?;
            create_bae_library(&conn).map_err(|e| e.to_string())?;
            for a in &albums {
                plain_import(&mut conn, a).map_err(|e| e.to_string())?;
            }
            Ok(())
        },
    )?;
    Ok(timed.entry(
        "record_overhead",
        "plain rusqlite inserts, same transactions",
        "s",
    ))
}

/// The same statements the recorder runs for an import, without recording.
fn plain_import(conn: &mut Connection, album: &AlbumImport) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for artist in &album.artists {
        let exists = tx
            .prepare_cached("SELECT 1 FROM artists WHERE id = ?1")?
            .exists([&artist.id])?;
        if !exists {
            insert(&tx, artist.table, &artist.id, &artist.fields)?;
        }
    }
    for row in &album.rows {
        insert(&tx, row.table, &row.id, &row.fields)?;
    }
    tx.commit()
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    id: &str,
    fields: &[(&str, Value)],
) -> rusqlite::Result<()> {
    let sql = bae_oplog::insert_sql(table, fields.iter().map(|(c, _)| *c));
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&id];
    params.extend(fields.iter().map(|(_, v)| v as &dyn rusqlite::ToSql));
    tx.prepare_cached(&sql)?.execute(params.as_slice())?;
    Ok(())
}
