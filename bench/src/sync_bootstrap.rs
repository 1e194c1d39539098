//! `bootstrap_checkpoint`: a new device (or read-only server) filling an
//! empty library from the newest checkpoint on a local-directory bucket
//! (LIST, GET, stream-decrypt to a temp file, verify every record, insert
//! in one transaction) vs copying the source database file with
//! `std::fs::copy`: the floor any bootstrap could reach. The issue's
//! target is 3; the ratio shows what decryption, verification and
//! re-insertion cost.
//!
//! The copy is not made durable, and a restore must be (it ends in one
//! committed transaction). The details report the same restore against a
//! copy followed by `fsync` of the file (`durable_copy_s`,
//! `ratio_vs_durable_copy`), so the part of the gap that durability alone
//! costs shows. Timed inside the restore (2,000 albums, idle machine,
//! session 8): opening the checkpoint (LIST, signature, download,
//! decrypt to a temporary file) about 88 ms, decoding and inserting the
//! 212k records 340-370 ms, the commit 126-130 ms; the copy 15-19 ms,
//! the durable copy about 40 ms.
//!
//! The details also report the floor under any bootstrap that opens the
//! checkpoint before writing a row (`open_only_s`, `open_only_ratio`):
//! `verify_checkpoint` alone (signature, download, hash, decrypt, decode
//! every record, nothing written), timed against the copy beside it.

use crate::report::{interleaved, Entry, Size};
use bae_crypto::LibraryKey;
use bae_oplog::fixture::{demo_album, open_library, Library};
use bae_sync_service::SyncService;
use std::cell::Cell;
use std::path::Path;
use std::sync::Arc;

const TRACKS: usize = 12;

pub fn bootstrap_checkpoint(size: Size) -> Result<Entry, String> {
    let albums = size.pick(300, 2000);
    let runs = size.pick(3, 3);
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| err(&e))?;
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    let source = dir.path().join("source.db");
    let DemoBucket { store, key, member } = demo_bucket(&rt, dir.path(), &source, albums)?;
    let writer = SyncService::new(
        open_library(&source).map_err(|e| err(&e))?,
        store.clone(),
        key.clone(),
        member.clone(),
    )
    .map_err(|e| err(&e))?;
    let ck = rt.block_on(writer.checkpoint()).map_err(|e| err(&e))?;
    drop(writer);
    let bytes = std::fs::metadata(&source).map_err(|e| err(&e))?.len();
    eprintln!(
        "bench: bootstrap_checkpoint: {albums} albums, {} records, checkpoint {} bytes, database {bytes} bytes",
        ck.records, ck.sealed_bytes
    );
    let run = Cell::new(0u32);
    let next = |label: &str| {
        run.set(run.get() + 1);
        dir.path().join(format!("{label}-{}.db", run.get()))
    };
    let mut copy = || {
        std::fs::copy(&source, next("copy")).map_err(|e| err(&e))?;
        Ok(())
    };
    let timed = interleaved(
        runs,
        || {
            let rec = open_library(&next("boot")).map_err(|e| err(&e))?;
            let device = SyncService::new(rec, store.clone(), key.clone(), member.clone())
                .map_err(|e| err(&e))?;
            match rt.block_on(device.bootstrap_from_checkpoint()) {
                Ok(Some(r)) if r.records == ck.records => Ok(()),
                Ok(other) => Err(format!("unexpected bootstrap: {other:?}")),
                Err(e) => Err(err(&e)),
            }
        },
        &mut copy,
    )?;
    let mut durable = Vec::with_capacity(runs);
    for _ in 0..runs {
        let to = next("durable");
        let start = std::time::Instant::now();
        std::fs::copy(&source, &to).map_err(|e| err(&e))?;
        std::fs::File::open(&to)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(&e))?;
        durable.push(start.elapsed().as_secs_f64());
    }
    let durable = crate::report::median(&durable);
    // The floor of any design that must open the checkpoint before it
    // writes a row: reading it from the bucket, checking its signature,
    // hashing, decrypting and decoding it (`verify_checkpoint`), with
    // nothing written to a library, against the copy beside it.
    let verifier = SyncService::new(
        open_library(&next("verify")).map_err(|e| err(&e))?,
        store.clone(),
        key.clone(),
        member.clone(),
    )
    .map_err(|e| err(&e))?;
    let opened = interleaved(
        runs,
        || match rt.block_on(verifier.verify_checkpoint(&ck.key)) {
            Ok(_) => Ok(()),
            Err(e) => Err(err(&e)),
        },
        &mut copy,
    )?
    .entry("checkpoint_open_only", "std::fs::copy", "s");
    let mut entry = timed.entry(
        "bootstrap_checkpoint",
        "std::fs::copy of the source database file",
        "s",
    );
    entry.details = Some(serde_json::json!({
        "durable_copy_s": durable,
        "ratio_vs_durable_copy": entry.ours / durable,
        "open_only_s": opened.ours,
        "open_only_ratio": opened.ratio,
        "open_only_spread": opened.spread,
    }));
    eprintln!(
        "bench: bootstrap_checkpoint: against a copy made durable (fsync) {durable:.4} s -> ratio {:.2}",
        entry.ours / durable
    );
    eprintln!(
        "bench: bootstrap_checkpoint: opening and checking the checkpoint alone (no row written) {:.4} s -> ratio {:.2} to the copy",
        opened.ours, opened.ratio
    );
    Ok(entry)
}

/// A demo library's bucket: what every device of it syncs through, as its
/// founder.
pub(crate) struct DemoBucket {
    pub(crate) store: Arc<dyn bae_storage_s3::ObjectStore>,
    pub(crate) key: LibraryKey,
    pub(crate) member: bae_sync_service::Member,
}

/// Imports `albums` demo albums into the library at `library`, and makes an
/// empty local-directory bucket under `dir` holding its founder's genesis
/// entry.
pub(crate) fn demo_bucket(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    library: &Path,
    albums: u64,
) -> Result<DemoBucket, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut lib = Library::new(open_library(library).map_err(|e| err(&e))?);
    for i in 0..albums {
        lib.import_album(&demo_album(1, i, TRACKS))
            .map_err(|e| err(&e))?;
    }
    drop(lib);
    // Only `init` creates a bucket directory; the bench makes its own.
    std::fs::create_dir_all(dir.join("bucket")).map_err(|e| err(&e))?;
    let store: Arc<dyn bae_storage_s3::ObjectStore> =
        Arc::new(bae_storage_s3::LocalDirStore::create(dir.join("bucket")).map_err(|e| err(&e))?);
    let key = LibraryKey::generate();
    let identity = bae_crypto::IdentitySigningKey::generate();
    rt.block_on(bae_sync_service::write_genesis(
        store.as_ref(),
        &key,
        &identity,
    ))
    .map_err(|e| err(&e))?;
    let member = bae_sync_service::Member::founder_of_library(identity);
    Ok(DemoBucket { store, key, member })
}
