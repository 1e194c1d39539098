#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Checkpoints, bootstrap, GC and recovery, through the library API.

mod common;

use bae_crypto::{LibraryKey, ObjectError};
use bae_oplog::fixture::{demo_album, open_library};
use bae_oplog::{canonical_dump, Value, BAE_SCHEMA};
use bae_storage_s3::layout;
use bae_storage_s3::testing::CountingStore;
use bae_storage_s3::{MemoryStore, ObjectStore};
use bae_sync_service::{library, KeyStore, SyncError, SyncService, GC_GRACE};
use std::path::Path;
use std::sync::Arc;
use tempfile::TempDir;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

fn device(dir: &Path, name: &str, store: Arc<dyn ObjectStore>, key: &LibraryKey) -> SyncService {
    let rec = open_library(&dir.join(format!("{name}.db"))).unwrap();
    let member = common::founder_of(&store, key);
    SyncService::new(rec, store, key.clone(), member).unwrap()
}

/// Imports demo albums `first..first + n`, one batch each.
async fn import(s: &SyncService, first: u64, n: u64) {
    s.with_db(move |rec| {
        for i in first..first + n {
            let album = demo_album(7, i, 3);
            let mut tx = rec.transaction()?;
            album.write(&mut tx)?;
            tx.commit()?;
        }
        Ok(())
    })
    .await
    .unwrap();
}

fn album_id(i: u64) -> String {
    demo_album(7, i, 3).album_id().unwrap().to_owned()
}

async fn set_title(s: &SyncService, i: u64, title: &str) {
    let (id, title) = (album_id(i), title.to_owned());
    s.with_db(move |rec| {
        let mut tx = rec.transaction()?;
        tx.update("albums", &id, &[("title", Value::Text(title))])?;
        tx.commit()?;
        Ok(())
    })
    .await
    .unwrap();
}

async fn dump(s: &SyncService) -> String {
    s.with_db(|rec| Ok(canonical_dump(rec.sync_parts().0, &BAE_SCHEMA)?))
        .await
        .unwrap()
}

async fn ops_in_bucket(store: &dyn ObjectStore) -> usize {
    store.list("ops/").await.unwrap().len()
}

#[tokio::test]
async fn new_device_bootstraps_from_checkpoint_and_fetches_only_later_batches() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 6).await;
    set_title(&a, 0, "before the checkpoint").await;
    let report = a.checkpoint().await.unwrap();
    assert_eq!(report.cursors, vec![(a.device(), 7)]);
    import(&a, 6, 2).await;
    a.push().await.unwrap();

    let b = device(dir.path(), "b", store.clone(), &key);
    counting.reset();
    let boot = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(boot.key, report.key);
    assert!(!boot.replaced);
    assert_eq!(
        counting.snapshot().get,
        3,
        "the genesis entry (the chain vouches for the checkpoint's signer), \
         the checkpoint's signature and the checkpoint"
    );
    counting.reset();
    let pulled = b.pull().await.unwrap();
    assert_eq!(pulled.applied, 2);
    // One head and the two batches after the checkpoint; none before it
    // (the genesis entry is cached since the bootstrap).
    assert_eq!(counting.snapshot().get, 3);
    assert_eq!(dump(&a).await, dump(&b).await);

    // B's later edits merge against the restored stamps like any device's.
    set_title(&b, 0, "edited on b").await;
    b.push().await.unwrap();
    a.pull().await.unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
}

#[tokio::test]
async fn checkpoint_after_gc_bootstraps_and_old_checkpoints_go() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 4).await;
    let first = a.checkpoint().await.unwrap();
    let gc = a.gc(common::now_ms(), GC_GRACE, true).await.unwrap();
    assert_eq!(gc.ops_deleted, 4);
    assert_eq!(gc.checkpoints_deleted, 0);
    assert_eq!(ops_in_bucket(store.as_ref()).await, 0);
    // The newest batch stays in the op log; older pushed ones are pruned.
    assert!(gc.local_ops_pruned > 0);

    set_title(&a, 1, "after the first gc").await;
    import(&a, 4, 1).await;
    let second = a.checkpoint().await.unwrap();
    let gc = a.gc(common::now_ms(), GC_GRACE, true).await.unwrap();
    assert_eq!((gc.ops_deleted, gc.checkpoints_deleted), (2, 1));
    let left = store.list("checkpoints/").await.unwrap();
    assert_eq!(left, vec![second.key.clone()]);
    assert_ne!(first.key, second.key);

    let b = device(dir.path(), "b", store.clone(), &key);
    b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(b.pull().await.unwrap().applied, 0);
    assert_eq!(dump(&a).await, dump(&b).await);
    // A keeps working after its op log was pruned.
    set_title(&a, 2, "after pruning").await;
    a.push().await.unwrap();
    b.pull().await.unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
}

/// Overwrites the newest checkpoint's bytes with `damage` applied.
async fn damage_newest(store: &dyn ObjectStore, damage: impl Fn(&mut Vec<u8>)) -> String {
    let key = store.list("checkpoints/").await.unwrap().pop().unwrap();
    let mut bytes = store
        .get(&key, bae_sync_service::MAX_CHECKPOINT_OBJECT_BYTES)
        .await
        .unwrap();
    damage(&mut bytes);
    store.put(&key, &bytes).await.unwrap();
    key
}

#[tokio::test]
async fn damaged_checkpoints_are_rejected_by_name_and_an_older_one_is_used() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 3).await;
    let good = a.checkpoint().await.unwrap();
    import(&a, 3, 1).await;
    a.checkpoint().await.unwrap();
    let b = device(dir.path(), "b", store.clone(), &key);

    let bad = damage_newest(store.as_ref(), |b| {
        let mid = b.len() / 2;
        b[mid] ^= 1;
    })
    .await;
    // Any change to the object is caught by its writer's signature (over
    // the sealed bytes) before it is decrypted.
    match b.verify_checkpoint(&bad).await {
        Err(e @ SyncError::Refused { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&bad) && text.contains("checkpoint object"),
                "{text}"
            );
        }
        other => panic!("expected refused, got {other:?}"),
    }
    // A newer checkpoint cut short: the same.
    import(&a, 4, 1).await;
    let cut = a.checkpoint().await.unwrap().key;
    damage_newest(store.as_ref(), |b| b.truncate(76)).await;
    let err = b.verify_checkpoint(&cut).await;
    assert!(
        matches!(&err, Err(SyncError::Refused { key, .. }) if *key == cut),
        "{err:?}"
    );
    // Damage with a signature to match (a member re-signing what they
    // damaged) still fails to decrypt, by name.
    let cut_id = layout::parse_checkpoint_key(&cut).unwrap();
    store
        .delete(&layout::checkpoint_signature_key(&cut_id))
        .await
        .unwrap();
    let err = b.verify_checkpoint(&cut).await;
    assert!(
        err.as_ref()
            .is_err_and(|e| e.to_string().contains("has no signature")),
        "{err:?}"
    );

    // A checkpoint sealed under another key is newest now.
    let other = device(dir.path(), "other", store.clone(), &LibraryKey::generate());
    let foreign = other.checkpoint().await.unwrap();
    assert!(matches!(
        b.verify_checkpoint(&foreign.key).await,
        Err(SyncError::Object { ref key, source: ObjectError::WrongKey { .. } }) if *key == foreign.key
    ));

    let boot = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(boot.key, good.key);
    assert_eq!(boot.rejected.len(), 3);
    assert!(boot.rejected[0].contains(&foreign.key));
    assert!(boot.rejected[1].contains(&cut));
    assert!(boot.rejected[2].contains(&bad));
    b.pull().await.unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
}

/// Newer objects under checkpoint keys that are no checkpoint of this
/// library (20 MiB of garbage, anyone can write it; one sealed under
/// another key) are refused from their first 76 bytes, by name, and never
/// downloaded: the bootstrap downloads the good checkpoint only.
#[tokio::test]
async fn checkpoints_whose_header_does_not_check_out_are_refused_before_download() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn ObjectStore> = counting.clone();
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 3).await;
    let good = a.checkpoint().await.unwrap();
    let other = device(dir.path(), "other", store.clone(), &LibraryKey::generate());
    let foreign = other.checkpoint().await.unwrap().key;
    let newest = layout::parse_checkpoint_key(&foreign).unwrap().hlc() + 1;
    let garbage = layout::checkpoint_key(&layout::CheckpointId::new(newest, "ff").unwrap());
    store.put(&garbage, &vec![0x5a; 20 << 20]).await.unwrap();

    let b = device(dir.path(), "b", store.clone(), &key);
    counting.reset();
    let boot = b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(boot.key, good.key);
    assert_eq!(boot.rejected.len(), 2, "{:?}", boot.rejected);
    assert!(boot.rejected[0].contains(&garbage), "{}", boot.rejected[0]);
    assert!(boot.rejected[1].contains(&foreign), "{}", boot.rejected[1]);
    let n = counting.snapshot();
    // Three headers read; one checkpoint downloaded, with its signature
    // and the two genesis entries in the bucket (the other library's does
    // not open).
    assert_eq!((n.get_range, n.get), (3, 4), "{n:?}");
    assert!(n.bytes_out < 1 << 20, "{n:?}");
}

#[tokio::test]
async fn gc_waits_for_the_grace_period_unless_compacting_now() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    assert_eq!(
        a.gc(common::now_ms(), GC_GRACE, true)
            .await
            .unwrap()
            .checkpoint,
        None
    );
    import(&a, 0, 3).await;
    a.checkpoint().await.unwrap();
    import(&a, 3, 1).await;
    a.checkpoint().await.unwrap();

    let soon = a
        .gc(common::now_ms() + DAY_MS, GC_GRACE, false)
        .await
        .unwrap();
    let left = soon.grace_left_ms.unwrap();
    assert!(left > 28 * DAY_MS && left <= 29 * DAY_MS, "{left}");
    assert_eq!((soon.ops_deleted, soon.checkpoints_deleted), (0, 0));
    assert_eq!(ops_in_bucket(store.as_ref()).await, 4);
    assert_eq!(store.list("checkpoints/").await.unwrap().len(), 2);

    let later = a
        .gc(common::now_ms() + 31 * DAY_MS, GC_GRACE, false)
        .await
        .unwrap();
    assert_eq!(later.grace_left_ms, None);
    assert_eq!((later.ops_deleted, later.checkpoints_deleted), (4, 1));
    assert_eq!(ops_in_bucket(store.as_ref()).await, 0);
    // The newest checkpoint is never deleted.
    assert_eq!(store.list("checkpoints/").await.unwrap().len(), 1);
}

#[tokio::test]
async fn offline_device_recovers_after_gc_keeping_its_unpushed_edits() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 3).await;
    a.push().await.unwrap();
    let b = device(dir.path(), "b", store.clone(), &key);
    let c = device(dir.path(), "c", store.clone(), &key);
    b.pull().await.unwrap();
    c.pull().await.unwrap();
    // C pushes one edit that A sees, then goes offline with more edits.
    set_title(&c, 0, "c, pushed").await;
    c.push().await.unwrap();
    a.pull().await.unwrap();
    set_title(&c, 1, "c, offline").await;
    import(&c, 10, 1).await;

    // Meanwhile A and B edit and sync; one conflict with C's offline edit.
    set_title(&a, 2, "a").await;
    set_title(&b, 1, "b, older than c's offline edit?").await;
    import(&b, 20, 1).await;
    b.sync().await.unwrap();
    a.sync().await.unwrap();
    a.checkpoint().await.unwrap();
    a.gc(common::now_ms(), GC_GRACE, true).await.unwrap();
    set_title(&b, 2, "b, after the checkpoint").await;
    b.sync().await.unwrap();

    // C comes back: its cursor for A and B is behind the deleted range.
    let pulled = c.pull().await.unwrap();
    assert!(pulled.problems.is_empty(), "{:?}", pulled.problems);
    let c_dump = dump(&c).await;
    assert!(
        c_dump.contains(&album_id(10)),
        "C's unpushed import survives"
    );
    assert!(c_dump.contains("b, after the checkpoint"));
    c.push().await.unwrap();
    for _ in 0..2 {
        a.sync().await.unwrap();
        b.sync().await.unwrap();
        c.sync().await.unwrap();
    }
    let (da, db, dc) = (dump(&a).await, dump(&b).await, dump(&c).await);
    assert_eq!(da, db);
    assert_eq!(da, dc);
    assert!(da.contains(&album_id(10)));
    assert!(da.contains("c, pushed"));
}

#[tokio::test]
async fn server_bootstrap_restores_the_checkpoint_and_refresh_replays_newer_batches() {
    let dir = TempDir::new().unwrap();
    let bucket = dir.path().join("bucket");
    let url = bucket.to_string_lossy().into_owned();
    let keys = KeyStore::Files(dir.path().join("home"));
    let a_path = dir.path().join("a.db");
    let a = library::init(open_library(&a_path).unwrap(), &url, &keys)
        .await
        .unwrap();
    let key_file = dir.path().join("library.key");
    library::export_key(open_library(&a_path).unwrap(), &keys, &key_file, false).unwrap();
    import(&a, 0, 3).await;
    a.push().await.unwrap();

    let out = dir.path().join("server.db");
    assert!(matches!(
        bae_sync_service::server_bootstrap(&url, &key_file, &out, open_library, false, None).await,
        Err(SyncError::NoCheckpoint(_))
    ));
    assert!(!out.exists());

    a.checkpoint().await.unwrap();
    let checkpointed = dump(&a).await;
    set_title(&a, 1, "after the checkpoint").await;
    a.push().await.unwrap();

    // Tier 1: the checkpoint only.
    let r = bae_sync_service::server_bootstrap(&url, &key_file, &out, open_library, false, None)
        .await
        .unwrap();
    assert!(r.bootstrap.is_some() && r.refreshed.is_none());
    let served = canonical_dump(open_library(&out).unwrap().sync_parts().0, &BAE_SCHEMA).unwrap();
    assert_eq!(served, checkpointed);
    assert!(matches!(
        bae_sync_service::server_bootstrap(&url, &key_file, &out, open_library, false, None).await,
        Err(SyncError::AlreadyInitialized(_))
    ));

    // Tier 2: replay what came after.
    let r = bae_sync_service::server_bootstrap(&url, &key_file, &out, open_library, true, None)
        .await
        .unwrap();
    assert_eq!(r.refreshed.unwrap().applied, 1);
    let served = canonical_dump(open_library(&out).unwrap().sync_parts().0, &BAE_SCHEMA).unwrap();
    assert_eq!(served, dump(&a).await);

    // Tier 2 on a new database: checkpoint, then the batches after it.
    let fresh = dir.path().join("fresh.db");
    let seen = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = seen.clone();
    let progress: bae_sync_service::Progress = Arc::new(move |stage, done, _| {
        if stage == bae_sync_service::Stage::Restore {
            counter.store(done, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let r = bae_sync_service::server_bootstrap(
        &url,
        &key_file,
        &fresh,
        open_library,
        true,
        Some(progress),
    )
    .await
    .unwrap();
    assert_eq!(
        seen.load(std::sync::atomic::Ordering::SeqCst),
        r.bootstrap.unwrap().records
    );
    let served = canonical_dump(open_library(&fresh).unwrap().sync_parts().0, &BAE_SCHEMA).unwrap();
    assert_eq!(served, dump(&a).await);
}

#[tokio::test]
async fn join_restores_the_newest_checkpoint_then_pulls() {
    let dir = TempDir::new().unwrap();
    let bucket = dir.path().join("bucket");
    let url = bucket.to_string_lossy().into_owned();
    let keys = KeyStore::Files(dir.path().join("home"));
    let a_path = dir.path().join("a.db");
    let a = library::init(open_library(&a_path).unwrap(), &url, &keys)
        .await
        .unwrap();
    import(&a, 0, 3).await;
    a.checkpoint().await.unwrap();
    a.gc(common::now_ms(), GC_GRACE, true).await.unwrap();
    set_title(&a, 0, "after gc").await;
    a.push().await.unwrap();
    let key_file = dir.path().join("library.key");
    library::export_key(open_library(&a_path).unwrap(), &keys, &key_file, false).unwrap();
    let b = library::join(
        open_library(&dir.path().join("b.db")).unwrap(),
        &url,
        &key_file,
        &keys,
        None,
    )
    .await
    .unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
}

#[tokio::test]
async fn a_checkpoint_leaves_out_column_stamps_the_row_stamp_covers() {
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 3).await;
    set_title(&a, 1, "edited after its import").await;
    let stamps: u64 = a
        .with_db(|rec| {
            bae_merge::fold_local(rec)?;
            Ok(bae_merge::snapshot::counts(rec.sync_parts().0)?.stamps)
        })
        .await
        .unwrap();
    let report = a.checkpoint().await.unwrap();
    let rows = dump(&a).await.lines().count() as u64;
    // Every row: itself and its insert stamp; plus the one column written
    // after its insert; plus each table's column list. The per-column
    // stamps of the inserts are implied.
    let tables = bae_oplog::BAE_SCHEMA.tables().len() as u64;
    assert_eq!(report.records, 2 * rows + 1 + tables);
    // The merge state keeps no covered column stamps either (merge
    // migration 0002): the checkpoint carries every stamp it holds.
    assert_eq!(stamps, rows + 1, "{stamps} stamps for {rows} rows");

    let b = device(dir.path(), "b", store.clone(), &key);
    b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(dump(&a).await, dump(&b).await);
    // A later edit on either side still wins over the restored state.
    set_title(&b, 1, "edited on b").await;
    set_title(&a, 2, "edited on a").await;
    for _ in 0..2 {
        a.sync().await.unwrap();
        b.sync().await.unwrap();
    }
    assert_eq!(dump(&a).await, dump(&b).await);
    assert!(dump(&a).await.contains("edited on b"));
}

#[tokio::test]
async fn checkpoint_and_bootstrap_report_progress_to_the_end() {
    use bae_sync_service::Stage;
    use std::sync::Mutex;
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let seen: Arc<Mutex<Vec<(Stage, u64, u64)>>> = Arc::default();
    let sink = seen.clone();
    let progress: bae_sync_service::Progress =
        Arc::new(move |stage, done, total| sink.lock().unwrap().push((stage, done, total)));
    let last = |stage: Stage| {
        seen.lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(s, _, _)| *s == stage)
            .map(|(_, done, total)| (*done, *total))
    };
    let a = device(dir.path(), "a", store.clone(), &key).with_progress(progress.clone());
    import(&a, 0, 150).await;
    let written = a.checkpoint().await.unwrap();
    assert_eq!(
        last(Stage::Snapshot),
        Some((written.records, written.records))
    );
    assert!(
        written.records > 2048,
        "enough records for an intermediate report"
    );
    assert!(seen
        .lock()
        .unwrap()
        .iter()
        .any(|(s, done, total)| *s == Stage::Snapshot && done < total));
    assert_eq!(
        last(Stage::Upload),
        Some((written.sealed_bytes, written.sealed_bytes))
    );

    let b = device(dir.path(), "b", store.clone(), &key).with_progress(progress);
    b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(
        last(Stage::Download),
        Some((written.sealed_bytes, written.sealed_bytes))
    );
    assert_eq!(
        last(Stage::Restore),
        Some((written.records, written.records))
    );
}

/// Cancels `token` once `stage` reports `at` or more done.
fn cancel_at(
    token: &bae_sync_service::CancellationToken,
    stage: bae_sync_service::Stage,
    at: u64,
) -> bae_sync_service::Progress {
    let token = token.clone();
    Arc::new(move |s, done, _| {
        if s == stage && done >= at {
            token.cancel();
        }
    })
}

#[tokio::test]
async fn a_cancelled_restore_leaves_nothing_and_a_later_one_completes() {
    use bae_sync_service::{CancellationToken, Stage};
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    // Enough records that the restore reaches a safe point (every 2,048).
    import(&a, 0, 80).await;
    a.checkpoint().await.unwrap();
    let token = CancellationToken::new();
    let b = device(dir.path(), "b", store.clone(), &key)
        .with_progress(cancel_at(&token, Stage::Restore, 1))
        .with_cancellation(token);
    let err = b.bootstrap_from_checkpoint().await.unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    assert_eq!(dump(&b).await, "", "nothing of the cancelled restore stays");
    drop(b);
    let b = device(dir.path(), "b", store, &key);
    b.bootstrap_from_checkpoint().await.unwrap().unwrap();
    assert_eq!(dump(&b).await, dump(&a).await);
}

#[tokio::test]
async fn a_cancelled_pull_keeps_its_merged_slices_and_the_next_pull_resumes() {
    use bae_sync_service::{CancellationToken, PullWindow, Stage};
    let dir = TempDir::new().unwrap();
    let key = LibraryKey::generate();
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let a = device(dir.path(), "a", store.clone(), &key);
    import(&a, 0, 10).await;
    a.push().await.unwrap();
    let token = CancellationToken::new();
    let b = device(dir.path(), "b", store.clone(), &key)
        .with_pull_window(PullWindow {
            batches: 2,
            bytes: usize::MAX,
        })
        .with_progress(cancel_at(&token, Stage::Pull, 3))
        .with_cancellation(token);
    let err = b.pull().await.unwrap_err();
    assert!(matches!(err, SyncError::Cancelled), "{err}");
    let status = b.status().await.unwrap();
    assert_eq!(
        status.devices[0].applied_seq, 4,
        "the slice in progress when cancelled finished; no later one started"
    );
    drop(b);
    let b = device(dir.path(), "b", store, &key);
    assert_eq!(b.pull().await.unwrap().applied, 6, "the next pull resumes");
    assert_eq!(dump(&b).await, dump(&a).await);
}
