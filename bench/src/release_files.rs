//! Release files through the sync service and a local-directory store:
//! how much a range read fetches, and what encrypting and uploading a file
//! costs against copying it.

use crate::report::{Entry, Size, Timed};
use bae_crypto::LibraryKey;
use bae_oplog::fixture::{demo_album, open_library, Library};
use bae_oplog::Value;
use bae_storage_s3::testing::CountingStore;
use bae_storage_s3::{LocalDirStore, ObjectStore};
use bae_sync_service::{Member, SyncService};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

const MIB: u64 = 1 << 20;

fn err(e: &dyn std::fmt::Display) -> String {
    e.to_string()
}

/// File size: 200 MiB, or 16 MiB with `--quick` (said in the output).
fn file_size(size: Size) -> u64 {
    let bytes = size.pick(16 * MIB, 200 * MIB);
    if size == Size::Quick {
        eprintln!(
            "bench: --quick: a {} MiB file instead of 200 MiB",
            bytes / MIB
        );
    }
    bytes
}

/// A library with one release of one file of `len` bytes (its bytes at
/// `dir/source`), a service over a counting local-directory store.
struct Setup {
    rt: tokio::runtime::Runtime,
    service: SyncService,
    counting: Arc<CountingStore>,
    file: String,
    source: std::path::PathBuf,
}

fn setup(dir: &Path, len: u64) -> Result<Setup, String> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| err(&e))?;
    let source = dir.join("source.flac");
    write_file(&source, len)?;
    let lib = dir.join("lib.db");
    let mut album = demo_album(1, 0, 1);
    let file = album.ids("files").next().unwrap_or_default().to_owned();
    for row in album.rows.iter_mut().filter(|r| r.table == "files") {
        for (column, value) in row.fields.iter_mut() {
            match *column {
                "file_size" => *value = Value::Integer(len as i64),
                "encryption_nonce" | "encryption_scheme" => *value = Value::Null,
                "source_path" => *value = Value::Text(source.display().to_string()),
                _ => {}
            }
        }
    }
    Library::new(open_library(&lib).map_err(|e| err(&e))?)
        .import_album(&album)
        .map_err(|e| err(&e))?;
    let local: Arc<dyn ObjectStore> =
        Arc::new(LocalDirStore::create(dir.join("bucket")).map_err(|e| err(&e))?);
    let counting = Arc::new(CountingStore::new(local));
    let member = Member::founder_of_library(bae_crypto::IdentitySigningKey::generate());
    let service = SyncService::new(
        open_library(&lib).map_err(|e| err(&e))?,
        counting.clone(),
        LibraryKey::generate(),
        member,
    )
    .map_err(|e| err(&e))?;
    Ok(Setup {
        rt,
        service,
        counting,
        file,
        source,
    })
}

/// `len` bytes of a repeating, non-constant pattern, written 1 MiB at a time.
fn write_file(path: &Path, len: u64) -> Result<(), String> {
    use std::io::Write;
    let block: Vec<u8> = (0..MIB).map(|i| (i * 31 % 251) as u8).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).map_err(|e| err(&e))?);
    let mut left = len;
    while left > 0 {
        let n = left.min(MIB) as usize;
        f.write_all(&block[..n]).map_err(|e| err(&e))?;
        left -= n as u64;
    }
    f.flush().map_err(|e| err(&e))
}

/// Forgets the upload (the row's nonce), so the next upload does it again.
fn forget_upload(s: &Setup) -> Result<(), String> {
    let file = s.file.clone();
    s.rt.block_on(s.service.with_db(move |rec| {
        rec.sync_parts().0.execute(
            "UPDATE files SET encryption_nonce = NULL, encryption_scheme = NULL WHERE id = ?1",
            [&file],
        )?;
        Ok(())
    }))
    .map_err(|e| err(&e))
}

/// Bytes fetched from the store ÷ bytes returned, for 1 MiB read from the
/// middle of a 200 MiB release file (not chunk-aligned: 17 chunks).
pub fn range_read(size: Size) -> Result<Entry, String> {
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let len = file_size(size);
    let s = setup(dir.path(), len)?;
    s.rt.block_on(s.service.upload_release_files(None))
        .map_err(|e| err(&e))?;
    let start = (len - MIB) / 2;
    let out = dir.path().join("range.out");
    s.counting.reset();
    let n =
        s.rt.block_on(
            s.service
                .fetch_file(&s.file, &out, Some(start..start + MIB)),
        )
        .map_err(|e| err(&e))?;
    let counts = s.counting.take();
    let source = std::fs::read(&s.source).map_err(|e| err(&e))?;
    let got = std::fs::read(&out).map_err(|e| err(&e))?;
    if n != MIB || got[..] != source[start as usize..(start + MIB) as usize] {
        return Err("range read returned the wrong bytes".into());
    }
    eprintln!(
        "bench: range_read: {} request(s), {} bytes fetched for {} returned",
        counts.total(),
        counts.bytes_out,
        MIB
    );
    Ok(Entry::new(
        "range_read",
        counts.bytes_out as f64 / MIB as f64,
        1.0,
        "bytes returned (target: ratio <= 1.07)",
        "bytes fetched per byte returned",
    ))
}

/// Encrypting and uploading a 200 MiB file to the local-directory store
/// (through a temp file; the store fsyncs) against `std::fs::copy` of it.
/// Median of interleaved runs; every run's time goes to stderr.
pub fn release_upload(size: Size) -> Result<Entry, String> {
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let len = file_size(size);
    let s = setup(dir.path(), len)?;
    let runs = size.pick(3, 5);
    let mut timed = Timed::default();
    for run in 0..runs {
        let copy = dir.path().join(format!("copy-{run}"));
        let t = Instant::now();
        std::fs::copy(&s.source, &copy).map_err(|e| err(&e))?;
        timed.base.push(t.elapsed().as_secs_f64());
        std::fs::remove_file(&copy).map_err(|e| err(&e))?;

        forget_upload(&s)?;
        let t = Instant::now();
        let r =
            s.rt.block_on(s.service.upload_release_files(None))
                .map_err(|e| err(&e))?;
        timed.ours.push(t.elapsed().as_secs_f64());
        if r.uploaded.len() != 1 {
            return Err("the file was not uploaded".into());
        }
    }
    eprintln!(
        "bench: release_upload: upload runs (s) {:.3?}; fs::copy runs (s) {:.3?}",
        timed.ours, timed.base
    );
    Ok(timed.entry(
        "release_upload",
        "std::fs::copy (target: ratio <= 1.5)",
        "s",
    ))
}
