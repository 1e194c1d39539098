//! Pull benchmarks over a local-directory bucket.
//!
//! - `idle_poll_requests`: requests a pull makes when nothing changed,
//!   counted by `CountingStore`; the target is two LISTs (`membership/`,
//!   every entry already cached, and `heads/`).
//! - `pull_10k_batches`: pulling and applying many small batches (one edit
//!   each) from the bucket vs `bae_merge::apply_pull` of the same decoded
//!   batches without the store, on copies of the same starting library.
//!   Ours reads, decrypts, decodes and checks every batch (membership
//!   rights, hash chain) but verifies one Ed25519 signature per device and
//!   pull window (`FORMAT-sync.md`); the baseline verifies none. Per batch,
//!   a signature cost about 50 µs, twice the merge of a one-edit batch:
//!   verifying each made the ratio about 4 (median of 5 runs 3.96,
//!   2.66-4.20), one per window about 2 (1.97, 1.64-2.18), and about 1.6
//!   (3 runs: 1.65, 1.47-1.79) once the bound author's key is not
//!   decompressed per batch, on a busy machine. A profile then showed the
//!   merge itself about even with the baseline's, and over it: one task
//!   and one blocking-thread hop per object read (waking and parking the
//!   pool's threads cost more than reading the small file), decrypting
//!   (a third of it zeroing two 64 KiB buffers), decoding and the checks,
//!   all while nothing merged (a slice was read, then merged). Now the
//!   read-ahead reads runs of objects in one hop (`ObjectStore::get_many`),
//!   decrypting zeroes nothing, and a slice merges on its blocking thread
//!   while the next is read and checked. Medians of 8 entries run before
//!   and after in turn on a busy machine (load 3.4-6.4 on 2 cores): 1.48
//!   (1.30-1.83) before, 1.12 (0.94-1.26) after; 5 entries at load
//!   2.5-2.9, 1.19 (1.09-1.23); a single entry still reached 1.68 under
//!   load. What remains over the baseline is per batch on the reading side
//!   (decrypt, envelope, decode, rights, hash), hidden behind the merge
//!   only when a second core is free.

use crate::report::{interleaved, Entry, FreshFiles, Size};
use bae_crypto::{open_object, IdentitySigningKey, KeyEpoch, LibraryKey, ObjectKind, ObjectPlace};
use bae_membership::{LibraryId, SignedKind, SignedObject};
use bae_oplog::fixture::{demo_album, open_library, Library};
use bae_oplog::{decode_batch, Batch, Value, BAE_SCHEMA};
use bae_storage_s3::layout;
use bae_storage_s3::testing::CountingStore;
use bae_storage_s3::{LocalDirStore, ObjectStore};
use bae_sync_service::{write_genesis, Member, SyncService};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A bucket holding one device's import and `edits` one-edit batches, and
/// a second library that has applied the import only.
struct Setup {
    dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    key: LibraryKey,
    /// The founder every device signs as.
    member: Member,
    template: PathBuf,
    writer: bae_hlc::DeviceId,
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

fn setup(rt: &tokio::runtime::Runtime, edits: u64) -> Result<Setup, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let dir = tempfile::tempdir().map_err(|e| err(&e))?;
    // Only `init` creates a bucket directory; the bench makes its own.
    std::fs::create_dir_all(dir.path().join("bucket")).map_err(|e| err(&e))?;
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalDirStore::create(dir.path().join("bucket")).map_err(|e| err(&e))?);
    let key = LibraryKey::generate();
    let identity = IdentitySigningKey::generate();
    rt.block_on(write_genesis(store.as_ref(), &key, &identity))
        .map_err(|e| err(&e))?;
    let member = Member::founder_of_library(identity);
    let writer = dir.path().join("writer.db");
    let album = demo_album(1, 0, 12);
    let album_id = album.album_id().unwrap_or_default().to_owned();
    let mut lib = Library::new(open_library(&writer).map_err(|e| err(&e))?);
    lib.import_album(&album).map_err(|e| err(&e))?;
    drop(lib);
    let template = dir.path().join("template.db");
    let writer = rt.block_on(async {
        let w = service(&writer, &store, &key, &member)?;
        w.push().await.map_err(|e| err(&e))?;
        let r = service(&template, &store, &key, &member)?;
        r.pull().await.map_err(|e| err(&e))?;
        w.with_db(move |rec| {
            for i in 0..edits {
                let mut tx = rec.transaction()?;
                tx.update(
                    "albums",
                    &album_id,
                    &[("title", Value::Text(format!("edit {i}")))],
                )?;
                tx.commit()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| err(&e))?;
        w.push().await.map_err(|e| err(&e))?;
        Ok::<_, String>(w.device())
    })?;
    Ok(Setup {
        dir,
        store,
        key,
        member,
        template,
        writer,
    })
}

fn service(
    path: &Path,
    store: &Arc<dyn ObjectStore>,
    key: &LibraryKey,
    member: &Member,
) -> Result<SyncService, String> {
    let rec = open_library(path).map_err(|e| e.to_string())?;
    SyncService::new(rec, store.clone(), key.clone(), member.clone()).map_err(|e| e.to_string())
}

pub fn idle_poll_requests(_size: Size) -> Result<Entry, String> {
    let rt = runtime()?;
    let s = setup(&rt, 10)?;
    let counting = Arc::new(CountingStore::new(s.store.clone()));
    let counted: Arc<dyn ObjectStore> = counting.clone();
    let requests = rt.block_on(async {
        let r = service(&s.template, &counted, &s.key, &s.member)?;
        r.pull().await.map_err(|e| e.to_string())?;
        counting.reset();
        r.pull().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(counting.snapshot().total())
    })?;
    Ok(Entry::new(
        "idle_poll_requests",
        requests as f64,
        2.0,
        "two LISTs: membership/ and heads/ (the target)",
        "requests",
    ))
}

pub fn pull_10k_batches(size: Size) -> Result<Entry, String> {
    let n = size.pick(2_000, 10_000);
    let runs = size.pick(3, 3);
    let rt = runtime()?;
    let s = setup(&rt, n)?;
    let batches = decoded_batches(&rt, &s)?;
    if batches.len() as u64 != n {
        return Err(format!("expected {n} batches, decoded {}", batches.len()));
    }
    eprintln!("bench: pull_10k_batches: {n} one-edit batches");
    let files = FreshFiles::new(s.dir.path());
    let fresh = |label: &str| -> Result<PathBuf, String> {
        let path = files.path(label);
        std::fs::copy(&s.template, &path).map_err(|e| e.to_string())?;
        Ok(path)
    };
    let timed = interleaved(
        runs,
        || {
            let path = fresh("pull")?;
            let r = service(&path, &s.store, &s.key, &s.member)?;
            let report = rt.block_on(r.pull()).map_err(|e| e.to_string())?;
            if report.applied as u64 != n {
                return Err(format!("pull applied {} of {n}", report.applied));
            }
            Ok(())
        },
        || {
            let path = fresh("merge")?;
            let mut rec = open_library(&path).map_err(|e| e.to_string())?;
            bae_merge::migrate(&mut rec).map_err(|e| e.to_string())?;
            let batches = batches.clone();
            let report = bae_merge::apply_pull(&mut rec, batches).map_err(|e| e.to_string())?;
            if report.applied.len() as u64 != n {
                return Err(format!("merge applied {} of {n}", report.applied.len()));
            }
            Ok(())
        },
    )?;
    Ok(timed.entry(
        "pull_10k_batches",
        "bae_merge::apply_pull of the same decoded batches, no store",
        "s",
    ))
}

/// The edit batches (seq 2 on; seq 1 is the import), fetched, opened and
/// decoded as pull does, outside the timed runs.
fn decoded_batches(rt: &tokio::runtime::Runtime, s: &Setup) -> Result<Vec<Batch>, String> {
    let dev = s.writer;
    let keys = (KeyEpoch(0), &s.key);
    let mut out = Vec::new();
    for key in rt
        .block_on(s.store.list(&layout::ops_prefix(&dev)))
        .map_err(|e| e.to_string())?
    {
        let (_, seq) = layout::parse_ops_key(&key).map_err(|e| e.to_string())?;
        if seq == 1 {
            continue;
        }
        let sealed = rt
            .block_on(s.store.get(&key, bae_sync_service::MAX_BATCH_OBJECT_BYTES))
            .map_err(|e| e.to_string())?;
        let place = ObjectPlace {
            kind: ObjectKind::OpBatch,
            device: *s.writer.as_bytes(),
            seq,
        };
        let plain = open_object(&keys, &place, &sealed).map_err(|e| e.to_string())?;
        let signed = SignedObject::from_bytes(&plain)
            .and_then(|o| {
                o.verify(
                    LibraryId::from(s.key.fingerprint()),
                    (SignedKind::Batch, dev, seq),
                    KeyEpoch(0),
                )
            })
            .map_err(|e| e.to_string())?;
        out.push(decode_batch(signed.body(), &BAE_SCHEMA).map_err(|e| e.to_string())?);
    }
    Ok(out)
}
