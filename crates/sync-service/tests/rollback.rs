//! A local database that goes back in time (a power loss that loses the
//! newest commits, a restored backup): the library file is copied aside,
//! the device pushes more, the copy is put back, and the device goes on.
//! Nothing another device read is replaced, every pushed write survives,
//! and the other devices keep syncing without a rejected batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_oplog::fixture::open_library;
use bae_storage_s3::layout;
use bae_sync_service::{images_dir_for, library, SyncError, SyncService};
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A copy of a library file and its WAL, as a backup or a power loss
/// leaves it.
struct Saved {
    dir: tempfile::TempDir,
}

fn wal(lib: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", lib.display()))
}

fn shm(lib: &Path) -> PathBuf {
    PathBuf::from(format!("{}-shm", lib.display()))
}

fn save(lib: &Path) -> Saved {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(lib, dir.path().join("db")).unwrap();
    if wal(lib).exists() {
        std::fs::copy(wal(lib), dir.path().join("wal")).unwrap();
    }
    Saved { dir }
}

/// Puts the copy back (every connection to the library is closed).
fn restore(lib: &Path, saved: &Saved) {
    std::fs::copy(saved.dir.path().join("db"), lib).unwrap();
    let _ = std::fs::remove_file(shm(lib));
    let _ = std::fs::remove_file(wal(lib));
    if saved.dir.path().join("wal").exists() {
        std::fs::copy(saved.dir.path().join("wal"), wal(lib)).unwrap();
    }
}

fn reopen(w: &World, device: &str) -> SyncService {
    let lib = w.library(device);
    library::open(open_library(&lib).unwrap(), &w.keys)
        .unwrap()
        .with_images_dir(images_dir_for(&lib))
}

/// Every batch object of a device, with its bytes.
async fn own_objects(w: &World, s: &SyncService) -> BTreeMap<String, Vec<u8>> {
    let store = w.store();
    let mut out = BTreeMap::new();
    for key in store.list(&layout::ops_prefix(&s.device())).await.unwrap() {
        let bytes = store.get(&key, u64::MAX).await.unwrap();
        out.insert(key, bytes);
    }
    out
}

/// Asserts that every object of `before` is still there with its bytes.
async fn nothing_replaced(w: &World, s: &SyncService, before: &BTreeMap<String, Vec<u8>>) {
    let after = own_objects(w, s).await;
    for (key, bytes) in before {
        assert_eq!(after.get(key), Some(bytes), "{key} was replaced or removed");
    }
}

/// The desktop syncs with no problem, then both sync until they hold the
/// same library.
async fn desktop_syncs_cleanly_then_both_converge(laptop: &SyncService, desktop: &SyncService) {
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    sync_all(&[laptop, desktop]).await;
    assert_converged(&[laptop, desktop]).await;
}

/// Pushed writes before the rollback: albums 2 and 3 and a title on album 0.
async fn write_and_push_before(w: &World, laptop: &SyncService, desktop: &SyncService) {
    import_albums(&w.library("laptop"), 2, 2);
    edit(laptop, "albums", &album_row(0, "albums"), "title", "before").await;
    let (push, _) = laptop.sync().await.unwrap();
    assert!(push.batches >= 3, "{push:?}");
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.applied >= 3 && pull.problems.is_empty(), "{pull:?}");
}

async fn assert_before_writes_on(s: &SyncService) {
    assert_eq!(
        field(s, "albums", &album_row(0, "albums"), "title").await,
        "before"
    );
    for i in [2, 3] {
        assert_ne!(
            field(s, "albums", &album_row(i, "albums"), "id").await,
            "NULL",
            "album {i}"
        );
    }
}

/// A laptop with one album and a desktop; the laptop pushes the "before"
/// writes, then goes back to a copy of its database taken before them.
/// Returns the reopened laptop, the desktop, and the laptop's objects in
/// the bucket as they were before it went back.
async fn gone_back(w: &World) -> (SyncService, SyncService, BTreeMap<String, Vec<u8>>) {
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    write_and_push_before(w, &laptop, &desktop).await;
    let objects = own_objects(w, &laptop).await;
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    (reopen(w, "laptop"), desktop, objects)
}

/// As [`gone_back`], and the laptop's batches above its first are then
/// gone (its GC): only its head shows where its stream stood. Returns
/// the desktop, the laptop's device and that head's seq.
async fn gone_back_below_a_gcd_range(w: &World) -> (SyncService, bae_hlc::DeviceId, u64) {
    let (laptop, desktop, objects) = gone_back(w).await;
    let device = laptop.device();
    drop(laptop);
    let old_head = objects.len() as u64;
    for seq in 2..=old_head {
        w.store()
            .delete(&layout::ops_key(&device, seq))
            .await
            .unwrap();
    }
    (desktop, device, old_head)
}

/// The laptop's push (of its "after" title) continues its stream above
/// `old_head`, rewrites none of the seqs below it, and the desktop gets
/// the title with no problem.
async fn pushes_above_the_old_head(
    w: &World,
    laptop: &SyncService,
    desktop: &SyncService,
    old_head: u64,
) {
    let push = laptop.push().await.unwrap();
    assert!(
        push.head.is_some_and(|h| h > old_head),
        "the stream continues above the old head {old_head}: {push:?}"
    );
    for seq in 2..=old_head {
        let key = layout::ops_key(&laptop.device(), seq);
        assert!(
            !w.store().exists(&key).await.unwrap(),
            "{key} written again"
        );
    }
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_eq!(
        field(desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

#[tokio::test]
async fn a_rollback_with_new_writes_loses_nothing_and_replaces_nothing() {
    let w = World::new(Bucket::Local, "rollback");
    let laptop = w.first_device("laptop", 2).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    let pushed_before = last_batch(&laptop).await;
    write_and_push_before(&w, &laptop, &desktop).await;
    let objects = own_objects(&w, &laptop).await;
    let device = laptop.device();
    drop(laptop);

    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    assert_eq!(laptop.device(), device);
    assert_eq!(
        last_batch(&laptop).await,
        pushed_before,
        "went back in time"
    );
    // Different writes under the numbers the lost batches had.
    import_albums(&w.library("laptop"), 10, 1);
    edit(&laptop, "albums", &album_row(1, "albums"), "title", "after").await;

    let (push, pull) = laptop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_eq!(
        push.retaken.len(),
        objects.len() - pushed_before as usize,
        "{push:?}"
    );
    assert_eq!(push.batches, 2, "{push:?}");
    assert_eq!(push.head, Some(objects.len() as u64 + 2));
    nothing_replaced(&w, &laptop, &objects).await;

    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_eq!(pull.applied, 2);
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    for s in [&laptop, &desktop] {
        assert_before_writes_on(s).await;
        assert_eq!(
            field(s, "albums", &album_row(1, "albums"), "title").await,
            "after"
        );
        assert_ne!(
            field(s, "albums", &album_row(10, "albums"), "id").await,
            "NULL"
        );
    }
    // The device goes on from there as usual, and repair finds it whole.
    edit(&laptop, "albums", &album_row(2, "albums"), "title", "later").await;
    laptop.push().await.unwrap();
    let repair = laptop.repair().await.unwrap();
    assert!(
        repair.repaired.is_empty() && repair.unrepairable.is_empty(),
        "{repair:?}"
    );
    assert!(repair.retaken.is_empty());
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
}

#[tokio::test]
async fn a_rollback_without_new_writes_is_found_by_an_idle_push() {
    let w = World::new(Bucket::Local, "rollback-idle");
    let (laptop, desktop, objects) = gone_back(&w).await;

    let (push, _) = laptop.sync().await.unwrap();
    assert_eq!(push.batches, 0);
    assert!(!push.retaken.is_empty(), "{push:?}");
    assert_before_writes_on(&laptop).await;
    nothing_replaced(&w, &laptop, &objects).await;
    // A write after it continues the stream above the bucket's batches.
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(objects.len() as u64 + 1), "{push:?}");
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

#[tokio::test]
async fn push_repair_finds_and_settles_a_rollback() {
    let w = World::new(Bucket::Local, "rollback-repair");
    let (laptop, desktop, objects) = gone_back(&w).await;
    // No pull first: repair looks at the bucket itself.
    let repair = laptop.repair().await.unwrap();
    assert_eq!(repair.retaken.len(), objects.len() - 1, "{repair:?}");
    assert_eq!(repair.head, Some(objects.len() as u64));
    assert_before_writes_on(&laptop).await;
    nothing_replaced(&w, &laptop, &objects).await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
}

#[tokio::test]
async fn a_rollback_to_before_the_first_push_rejoins_and_loses_nothing() {
    let w = World::new(Bucket::Local, "rollback-pre-init");
    let lib = w.library("laptop");
    import_albums(&lib, 0, 2);
    let saved = save(&lib);
    let laptop = w.first_device("laptop", 0).await;
    let desktop = w.join("desktop").await;
    write_and_push_before(&w, &laptop, &desktop).await;
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    restore(&lib, &saved);
    // The copy predates `init`: the device joins its own library again.
    let laptop = library::join(
        open_library(&lib).unwrap(),
        &w.bucket,
        &w.key_file(),
        &w.keys,
        None,
    )
    .await
    .unwrap()
    .with_images_dir(images_dir_for(&lib));
    edit(&laptop, "albums", &album_row(1, "albums"), "title", "after").await;
    let (push, pull) = laptop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert!(!push.retaken.is_empty(), "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    desktop_syncs_cleanly_then_both_converge(&laptop, &desktop).await;
    assert_before_writes_on(&desktop).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(1, "albums"), "title").await,
        "after"
    );
}

#[tokio::test]
async fn a_garbage_own_head_neither_skips_seqs_nor_loses_writes() {
    let w = World::new(Bucket::Local, "rollback-garbage-head");
    let laptop = w.first_device("laptop", 2).await;
    let desktop = w.join("desktop").await;
    let store = w.store();
    let garbage = layout::heads_key(&laptop.device(), 1_000_000);
    store.put(&garbage, b"not a head").await.unwrap();
    // Garbage also where the next batch goes: no device can have read it.
    let next = ops_key(&laptop, 3);
    store.put(&next, b"not a batch").await.unwrap();
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let (push, _) = laptop.sync().await.unwrap();
    assert!(push.retaken.is_empty(), "{push:?}");
    assert_eq!((push.batches, push.head), (1, Some(3)), "no seq skipped");
    assert!(!store.exists(&garbage).await.unwrap());
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
}

/// Back to a copy taken after the batches were recorded but before they
/// were pushed: the local batches are the bucket's, byte for byte. They
/// are marked pushed, nothing is re-taken, renumbered or uploaded.
#[tokio::test]
async fn a_rollback_to_before_a_push_keeps_the_same_batches() {
    let w = World::new(Bucket::Local, "rollback-same");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    import_albums(&w.library("laptop"), 2, 2);
    edit(
        &laptop,
        "albums",
        &album_row(0, "albums"),
        "title",
        "before",
    )
    .await;
    let saved = save(&w.library("laptop"));
    let (push, _) = laptop.sync().await.unwrap();
    let head = push.head;
    desktop.sync().await.unwrap();
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");

    let push = laptop.push().await.unwrap();
    assert!(push.retaken.is_empty(), "{push:?}");
    assert_eq!(push.batches, 0, "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, head.map(|h| h + 1), "{push:?}");
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
}

/// Seed 11156 of the simulation (GC, next to the LIST helper): the
/// laptop's GC found the newest checkpoint with one LIST, which missed the
/// desktop's, newer than the laptop's own and covering less of the
/// laptop's stream. GC deleted the batches only the laptop's covered, and
/// a device that later recovered from the desktop's reported them as a
/// gap for good. A second LIST now shows it, and GC waits.
#[tokio::test]
async fn gc_waits_for_a_newer_checkpoint_its_list_missed() {
    let w = World::new(Bucket::Local, "gc-list-missed-newest");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    write_and_push_before(&w, &laptop, &desktop).await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "later").await;
    laptop.push().await.unwrap();
    laptop.checkpoint().await.unwrap();
    // Newer, and behind on the laptop's stream: the desktop has not
    // pulled the title.
    let newer = desktop.checkpoint().await.unwrap();
    let before = own_objects(&w, &laptop).await;
    drop(laptop);
    let hidden = newer.key.clone();
    // The LIST that finds the newest checkpoint misses it.
    let lists = std::sync::atomic::AtomicUsize::new(0);
    let missing_newest = std::sync::Arc::new(HookedStore::new(w.store()).on_list(
        move |prefix, mut keys| {
            if prefix == layout::CHECKPOINTS_PREFIX
                && lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
            {
                keys.retain(|k| *k != hidden);
            }
            keys
        },
    ));
    let laptop = w.device_over("laptop", missing_newest);
    let gc = laptop
        .gc(i64::MAX / 2, bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert_eq!(
        gc.held_by_newer.as_deref(),
        Some(newer.key.as_str()),
        "{gc:?}"
    );
    assert_eq!(gc.ops_deleted, 0, "{gc:?}");
    nothing_replaced(&w, &laptop, &before).await;
}

/// Seed 5016 of the simulation: the laptop's batches above its copy were
/// removed by GC (a checkpoint covers them) and the LIST of its own heads
/// missed the head. The rollback was invisible, and the push wrote new
/// batches at seqs the desktop had applied, which then rejected the
/// laptop's stream for ever. The head is now also looked for in the LIST
/// of `heads/`, and the stream continues above it.
#[tokio::test]
async fn a_rollback_whose_batches_gc_removed_is_found_though_a_list_misses_the_head() {
    let w = World::new(Bucket::Local, "rollback-gc-unlisted");
    let (desktop, device, old_head) = gone_back_below_a_gcd_range(&w).await;
    let store = w.store();
    // Every LIST of the laptop's own heads misses them.
    let hidden = layout::heads_prefix(&device);
    let hiding = std::sync::Arc::new(
        HookedStore::new(store.clone())
            .on_list(move |prefix, keys| if prefix == hidden { Vec::new() } else { keys }),
    );
    let laptop = w.device_over("laptop", hiding);
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    pushes_above_the_old_head(&w, &laptop, &desktop, old_head).await;
}

/// The laptop went back to a copy, GC removed its batches above it, and
/// the first reads of its head came back cut short (truncated bodies).
/// Two damaged reads in a row made it garbage: the push wrote new batches
/// at seqs the desktop had applied and deleted the head, a fork (the
/// family of seed 51843). A read cut short (fewer bytes than the bucket
/// gives the object) now says nothing about the object; one that the
/// bucket keeps cutting fails the push, which replaces nothing.
#[tokio::test]
async fn own_head_reads_cut_short_never_make_it_garbage() {
    let w = World::new(Bucket::Local, "rollback-head-cut-short");
    let (desktop, device, old_head) = gone_back_below_a_gcd_range(&w).await;
    let store = w.store();
    let heads = layout::heads_prefix(&device);
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    let cutting = cutting_first_reads(&w, move |key| key.starts_with(&heads), cut.clone());
    let laptop = w.device_over("laptop", cutting);
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    // Every read cut: the push fails and writes nothing.
    let before = own_objects(&w, &laptop).await;
    let head_key = layout::heads_key(&device, old_head);
    let head = store.get(&head_key, u64::MAX).await.unwrap();
    match laptop.push().await {
        Err(SyncError::OwnObjectCutShort { key, .. }) => assert_eq!(key, head_key),
        other => panic!("expected OwnObjectCutShort, got {other:?}"),
    }
    nothing_replaced(&w, &laptop, &before).await;
    assert_eq!(store.get(&head_key, u64::MAX).await.unwrap(), head);
    // Two reads cut, then whole: the stream continues above the head.
    cut.store(2, std::sync::atomic::Ordering::SeqCst);
    pushes_above_the_old_head(&w, &laptop, &desktop, old_head).await;
}

/// Seed 93256: the laptop went back to a copy, GC removed its batches
/// just above it, and both LISTs of its first push (its own heads, and
/// `heads/`) missed its head (stale). The push saw no sign of the
/// rollback and wrote new batches at seqs the desktop had applied. Its
/// batches above the gap are listed now, and one that is its own with no
/// head found fails the push, replacing nothing; the next push finds
/// the head and goes on above it.
#[tokio::test]
async fn own_batches_above_a_gap_stop_a_push_whose_lists_miss_the_head() {
    let w = World::new(Bucket::Local, "rollback-heads-unlisted-batches-listed");
    let (laptop, desktop, objects) = gone_back(&w).await;
    let device = laptop.device();
    drop(laptop);
    let store = w.store();
    let old_head = objects.len() as u64;
    assert!(old_head > 2, "{objects:?}");
    for seq in 2..old_head {
        store.delete(&layout::ops_key(&device, seq)).await.unwrap();
    }
    let own = format!("{}{}", layout::HEADS_PREFIX, device);
    let hide = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hiding = {
        let hide = hide.clone();
        std::sync::Arc::new(HookedStore::new(store.clone()).on_list(move |_, mut keys| {
            if hide.load(std::sync::atomic::Ordering::SeqCst) {
                keys.retain(|k| !k.starts_with(&own));
            }
            keys
        }))
    };
    let laptop = w.device_over("laptop", hiding);
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let before = own_objects(&w, &laptop).await;
    match laptop.push().await {
        Err(SyncError::OwnHeadNotFound { seq }) => assert_eq!(seq, old_head),
        other => panic!("expected OwnHeadNotFound, got {other:?}"),
    }
    nothing_replaced(&w, &laptop, &before).await;
    hide.store(false, std::sync::atomic::Ordering::SeqCst);
    let push = laptop.push().await.unwrap();
    assert!(
        push.head.is_some_and(|h| h > old_head),
        "the stream continues above the old head {old_head}: {push:?}"
    );
    nothing_replaced(&w, &laptop, &before).await;
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

/// Seed 11214 of the simulation: the laptop went back to a copy, a pull's
/// LIST of `heads/` missed its newest head (an eventually consistent
/// LIST), and GC had removed its batches above the copy. The push after
/// the pull trusted that one LIST, saw no sign of the rollback, and wrote
/// new batches at seqs the desktop had applied: the desktop refused the
/// laptop's stream for good ("broken at batch"). The first push of a
/// service now LISTs its own heads whatever a pull showed.
#[tokio::test]
async fn a_pulls_list_that_misses_the_own_head_does_not_hide_a_rollback() {
    let w = World::new(Bucket::Local, "rollback-pull-list-stale");
    let (desktop, device, old_head) = gone_back_below_a_gcd_range(&w).await;
    let store = w.store();
    // The first LIST of `heads/` (the pull's) misses the laptop's heads.
    let own = format!("{}{}", layout::HEADS_PREFIX, device);
    let stale_once = std::sync::atomic::AtomicBool::new(true);
    let hiding = std::sync::Arc::new(HookedStore::new(store.clone()).on_list(
        move |prefix, mut keys| {
            if prefix == layout::HEADS_PREFIX
                && stale_once.swap(false, std::sync::atomic::Ordering::SeqCst)
            {
                keys.retain(|k| !k.starts_with(&own));
            }
            keys
        },
    ));
    let laptop = w.device_over("laptop", hiding);
    laptop.pull().await.unwrap();
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    pushes_above_the_old_head(&w, &laptop, &desktop, old_head).await;
}

/// The laptop's batches above its copy were removed by its own GC (its
/// checkpoint covers them); only its head is left. The re-take used to
/// record the head and move on, so the laptop never had those writes
/// again and the desktop's later updates to their rows were held on it
/// for ever (seeds 5016, 6014). It now restores them from the checkpoint.
#[tokio::test]
async fn a_rollback_whose_batches_gc_removed_gets_their_writes_from_the_checkpoint() {
    let w = World::new(Bucket::Local, "rollback-gc-refill");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    write_and_push_before(&w, &laptop, &desktop).await;
    laptop.checkpoint().await.unwrap();
    let objects = own_objects(&w, &laptop).await;
    let device = laptop.device();
    drop(laptop);
    let store = w.store();
    // What GC past the checkpoint leaves: the head, no batch under it.
    for key in objects.keys() {
        store.delete(key).await.unwrap();
    }
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    let (push, _) = laptop.sync().await.unwrap();
    assert_eq!(push.batches, 0, "{push:?}");
    assert_before_writes_on(&laptop).await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(objects.len() as u64 + 1), "{push:?}");
    assert!(!store.exists(&layout::ops_key(&device, 1)).await.unwrap());
    sync_all(&[&laptop, &desktop]).await;
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
}

/// As above, and the laptop's last push put its batch but not its head
/// (the reply lost, then the laptop went back): the batch sits above the
/// newest head, beyond the GC'd range. The re-take read only up to the
/// gap, so the local batches were renumbered over it and its write was
/// lost (seed 7208). It is now kept and applied with the recovery.
#[tokio::test]
async fn a_batch_above_the_head_beyond_a_gc_gap_is_not_overwritten() {
    let w = World::new(Bucket::Local, "rollback-above-head");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    write_and_push_before(&w, &laptop, &desktop).await;
    laptop.checkpoint().await.unwrap();
    let covered = own_objects(&w, &laptop).await;
    let device = laptop.device();
    let store = w.store();
    let head = covered.len() as u64;
    let head_key = layout::heads_key(&device, head);
    let head_bytes = store.get(&head_key, u64::MAX).await.unwrap();
    edit(
        &laptop,
        "albums",
        &album_row(2, "albums"),
        "title",
        "orphan",
    )
    .await;
    assert_eq!(laptop.push().await.unwrap().head, Some(head + 1));
    drop(laptop);
    // The orphan push's head never landed; GC removed what the checkpoint covers.
    store
        .delete(&layout::heads_key(&device, head + 1))
        .await
        .unwrap();
    store.put(&head_key, &head_bytes).await.unwrap();
    for key in covered.keys() {
        store.delete(key).await.unwrap();
    }
    let orphan_key = layout::ops_key(&device, head + 1);
    let orphan = store.get(&orphan_key, u64::MAX).await.unwrap();
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(head + 2), "{push:?}");
    assert_eq!(store.get(&orphan_key, u64::MAX).await.unwrap(), orphan);
    sync_all(&[&laptop, &desktop]).await;
    for s in [&laptop, &desktop] {
        assert_eq!(
            field(s, "albums", &album_row(2, "albums"), "title").await,
            "orphan"
        );
        assert_eq!(
            field(s, "albums", &album_row(0, "albums"), "title").await,
            "after"
        );
        assert_ne!(
            field(s, "albums", &album_row(3, "albums"), "id").await,
            "NULL"
        );
    }
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
}

/// A laptop and a desktop with album 0, and a copy of the laptop's
/// database (returned) taken before both of these: the desktop sets the
/// album's `bandcamp_album_id` to "desk" and checkpoints, the laptop pushes
/// its title "before", and the desktop's GC removes its batches under the
/// checkpoint, so the copy lacks writes it can only get from there.
async fn title_pushed_past_a_gcd_checkpoint(w: &World) -> (SyncService, SyncService, Saved) {
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    laptop.sync().await.unwrap();
    let saved = save(&w.library("laptop"));
    let row = album_row(0, "albums");
    edit(&desktop, "albums", &row, "bandcamp_album_id", "desk").await;
    desktop.checkpoint().await.unwrap();
    edit(&laptop, "albums", &row, "title", "before").await;
    laptop.push().await.unwrap();
    let gc = desktop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert!(gc.ops_deleted > 0, "{gc:?}");
    (laptop, desktop, saved)
}

/// The laptop goes back and re-takes its pushed title from the bucket;
/// then the desktop's batches it lacks are GC'd and it recovers from the
/// desktop's checkpoint, taken before that title. The re-taken batch is
/// not in the laptop's op log, so the restore's replay of local batches
/// did not bring it back: the title reverted on the laptop alone (seed
/// 6014). The recovery now applies the laptop's own batches above the
/// checkpoint again.
#[tokio::test]
async fn a_recovery_after_a_rollback_keeps_the_retaken_writes() {
    let w = World::new(Bucket::Local, "rollback-recover-retaken");
    let (laptop, desktop, saved) = title_pushed_past_a_gcd_checkpoint(&w).await;
    let row = album_row(0, "albums");
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    let (push, _) = laptop.sync().await.unwrap();
    assert!(!push.retaken.is_empty(), "{push:?}");
    assert_eq!(field(&laptop, "albums", &row, "title").await, "before");
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    assert_eq!(
        field(&laptop, "albums", &row, "bandcamp_album_id").await,
        "desk"
    );
}

/// The laptop's pushed title is on an album the desktop imported, which
/// the laptop's copy lacks. The re-take held that batch and stopped
/// before renumbering, so every push failed until a pull brought the
/// album; when the desktop's import had been GC'd, the recovery that
/// brings it could be refused for the laptop's own unrenumbered state: a
/// circular wait, `sync` failing for ever (seeds 5003, 5004, 6002). The
/// re-take now goes on (the push succeeds at once) and the pull applies
/// the held batch once the album is there.
#[tokio::test]
async fn a_held_retaken_batch_neither_stops_the_push_nor_is_lost() {
    let w = World::new(Bucket::Local, "rollback-held");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    import_albums(&w.library("desktop"), 7, 1);
    desktop.sync().await.unwrap();
    laptop.sync().await.unwrap();
    let row = album_row(7, "albums");
    edit(&laptop, "albums", &row, "title", "before").await;
    let head = laptop.push().await.unwrap().head.unwrap();
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    laptop.pull().await.unwrap();
    assert_eq!(field(&laptop, "albums", &row, "title").await, "before");
    desktop_syncs_cleanly_then_both_converge(&laptop, &desktop).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

/// As above, but the re-taken batch inserts an album: the recovery's
/// replace refused the desktop's checkpoint as lacking a row the laptop
/// holds without a tombstone (the re-taken insert is not in the laptop's
/// op log), so the desktop's GC'd range stayed a gap for good (seeds 5004,
/// 5007, 5016, 6002, 6010). The replace now keeps it, like a row another
/// device inserted after the checkpoint.
#[tokio::test]
async fn a_recovery_after_a_rollback_keeps_a_retaken_insert() {
    let w = World::new(Bucket::Local, "rollback-recover-insert");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    laptop.sync().await.unwrap();
    let saved = save(&w.library("laptop"));
    edit(&desktop, "albums", &album_row(0, "albums"), "title", "desk").await;
    desktop.checkpoint().await.unwrap();
    import_albums(&w.library("laptop"), 8, 1);
    laptop.push().await.unwrap();
    let gc = desktop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert!(gc.ops_deleted > 0, "{gc:?}");
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    let (push, pull) = laptop.sync().await.unwrap();
    assert!(!push.retaken.is_empty(), "{push:?}");
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    let album = album_row(8, "albums");
    assert_eq!(field(&laptop, "albums", &album, "id").await, album);
    assert_eq!(
        field(&laptop, "albums", &album_row(0, "albums"), "title").await,
        "desk"
    );
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
}

/// As above, and the read of the laptop's re-taken batch after the
/// restore fails (a transient error of the bucket). The restore had
/// committed and nothing recorded that the laptop's own batches above the
/// checkpoint were still to be applied, so the title stayed reverted on
/// the laptop alone (seed 8015). The restore now leaves the laptop's own
/// cursor at the checkpoint's, and the next pull applies them.
#[tokio::test]
async fn a_failed_read_after_a_recovery_keeps_the_retaken_writes() {
    let w = World::new(Bucket::Local, "rollback-recover-failed-read");
    let (laptop, desktop, saved) = title_pushed_past_a_gcd_checkpoint(&w).await;
    let row = album_row(0, "albums");
    let device = laptop.device();
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    // The next GET of the armed key fails (a transient error), once.
    let armed = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let failing = {
        let armed = armed.clone();
        std::sync::Arc::new(HookedStore::new(w.store()).on_get(move |key| {
            let hit = armed.lock().unwrap().take_if(|k| k == key)?;
            Some(Err(bae_storage_s3::StoreError::Transient {
                detail: format!("failed read of {hit}"),
            }))
        }))
    };
    let laptop = w.device_over("laptop", failing);
    let push = laptop.push().await.unwrap();
    assert_eq!(push.retaken.len(), 1, "{push:?}");
    assert_eq!(field(&laptop, "albums", &row, "title").await, "before");
    *armed.lock().unwrap() = Some(layout::ops_key(&device, push.retaken[0]));
    assert!(
        laptop.pull().await.is_err(),
        "the read after the restore failed"
    );
    assert!(armed.lock().unwrap().is_none(), "the fault was hit");
    laptop.pull().await.unwrap();
    assert_eq!(field(&laptop, "albums", &row, "title").await, "before");
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    assert_eq!(
        field(&laptop, "albums", &row, "bandcamp_album_id").await,
        "desk"
    );
}

/// The laptop's title is in a range its own GC removed under its
/// checkpoint (and pruned from its op log); the desktop's batch the
/// laptop lacks was removed by the desktop's GC. The newest checkpoint,
/// the desktop's, covers the desktop's gap but not the laptop's title (the
/// desktop could not read the laptop's batch, as a device with a gap of
/// its own on the laptop's stream): the recovery restored it, found the laptop's
/// batches above its cursor gone and dropped them, so the title reverted
/// on the laptop alone (seed 8003). A checkpoint is now refused when this
/// device's batches above its cursor are neither in its op log nor in the
/// bucket; the phone's, which covers both, is restored instead.
#[tokio::test]
async fn a_recovery_never_restores_a_checkpoint_behind_this_devices_gone_batches() {
    let w = World::new(Bucket::Local, "rollback-recover-own-gone");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let phone = w.join("phone").await;
    sync_all(&[&laptop, &desktop, &phone]).await;
    let (laptop_id, desktop_id) = (laptop.device(), desktop.device());
    drop((laptop, desktop));
    // The laptop and the desktop cannot read each other's batches for now:
    // every read of them is bytes that do not open (rejected, never a gap).
    let garbling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hide = |device| {
        let (hidden, on) = (layout::ops_prefix(&device), garbling.clone());
        std::sync::Arc::new(HookedStore::new(w.store()).on_get(move |key| {
            (on.load(std::sync::atomic::Ordering::SeqCst) && key.starts_with(&hidden))
                .then(|| Ok(b"not a batch".to_vec()))
        }))
    };
    let laptop = w.device_over("laptop", hide(desktop_id));
    let desktop = w.device_over("desktop", hide(laptop_id));
    let row = album_row(0, "albums");
    let grace = bae_sync_service::GC_GRACE;
    edit(&laptop, "albums", &row, "title", "mine").await;
    laptop.push().await.unwrap();
    edit(&desktop, "albums", &row, "bandcamp_album_id", "desk").await;
    desktop.push().await.unwrap();
    phone.pull().await.unwrap();
    // The desktop's GC removes its batch; the laptop's removes its title's.
    checkpoint_later(&desktop).await;
    let gc = desktop.gc(now_ms(), grace, true).await.unwrap();
    assert!(gc.ops_deleted > 0, "{gc:?}");
    checkpoint_later(&laptop).await;
    let gc = laptop.gc(now_ms(), grace, true).await.unwrap();
    assert!(gc.ops_deleted > 0 && gc.local_ops_pruned > 0, "{gc:?}");
    let title_batch = layout::ops_key(&laptop_id, last_batch(&laptop).await);
    assert!(!w.store().exists(&title_batch).await.unwrap());
    // The phone's checkpoint covers both; the desktop's newer one, not the title.
    checkpoint_later(&phone).await;
    edit(&desktop, "albums", &row, "year", "1999").await;
    desktop.push().await.unwrap();
    checkpoint_later(&desktop).await;
    garbling.store(false, std::sync::atomic::Ordering::SeqCst);
    laptop.sync().await.unwrap();
    assert_eq!(field(&laptop, "albums", &row, "title").await, "mine");
    sync_all(&[&laptop, &desktop, &phone]).await;
    assert_converged(&[&laptop, &desktop, &phone]).await;
    for s in [&laptop, &desktop, &phone] {
        assert_eq!(field(s, "albums", &row, "title").await, "mine");
        assert_eq!(field(s, "albums", &row, "bandcamp_album_id").await, "desk");
        let (_, pull) = s.sync().await.unwrap();
        assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    }
}

/// A checkpoint after the last one by the wall clock: checkpoints sort by
/// HLC, and two in the same millisecond by a random suffix.
async fn checkpoint_later(s: &SyncService) {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    s.checkpoint().await.unwrap();
}

/// A member's phone goes back to a copy of its database taken before it
/// had read the membership, and its first LIST of `membership/` after the
/// restart misses the entry that invited its user (an eventually
/// consistent LIST). Its own batch and head were refused on that chain
/// ("not a member") twice, taken for garbage, and the push wrote new
/// batches under the seqs the laptop had applied, forking the phone's
/// stream for good (seed 9127). The second read now follows a new read of
/// the membership.
#[tokio::test]
async fn a_members_own_batches_are_not_garbage_to_a_stale_membership_list() {
    let w = World::new(Bucket::Local, "rollback-member-stale-list");
    let laptop = w.first_device("laptop", 1).await;
    let file = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let identity = bae_crypto::IdentitySigningKey::generate();
    laptop
        .invite(identity.public_key(), bae_membership::Role::Member)
        .await
        .unwrap();
    let lib = w.library("phone");
    // The next `misses` LISTs of `membership/` show the first entry only.
    let misses = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stale = std::sync::Arc::new(HookedStore::new(w.store()).on_list({
        let misses = misses.clone();
        move |prefix, mut keys| {
            let missed = prefix == layout::MEMBERSHIP_PREFIX && take_one(&misses);
            if missed {
                keys.sort();
                keys.truncate(1);
            }
            keys
        }
    }));
    let phone_over = |store: std::sync::Arc<dyn bae_storage_s3::ObjectStore>| {
        let member = bae_sync_service::Member::new(identity.clone(), file.identity.public_key());
        SyncService::new(open_library(&lib).unwrap(), store, file.key.clone(), member).unwrap()
    };
    drop(phone_over(w.store()));
    let saved = save(&lib);
    let phone = phone_over(w.store());
    phone.bootstrap_from_checkpoint().await.unwrap();
    phone.pull().await.unwrap();
    edit(&phone, "albums", &album_row(0, "albums"), "title", "phone").await;
    let head = phone.push().await.unwrap().head.unwrap();
    laptop.pull().await.unwrap();
    let objects = own_objects(&w, &phone).await;
    drop(phone);
    restore(&lib, &saved);
    misses.store(1, std::sync::atomic::Ordering::SeqCst);
    let phone = phone_over(stale.clone());
    import_albums(&lib, 5, 1);
    let push = phone.push().await.unwrap();
    assert_eq!(misses.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    nothing_replaced(&w, &phone, &objects).await;
    let (_, pull) = laptop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    sync_all(&[&laptop, &phone]).await;
    assert_converged(&[&laptop, &phone]).await;
    assert_eq!(
        field(&laptop, "albums", &album_row(0, "albums"), "title").await,
        "phone"
    );
}

/// The stamps of the ops of this device's newest batch.
async fn newest_batch_stamps(s: &SyncService) -> Vec<u64> {
    s.with_db(|rec| {
        let conn = rec.sync_parts().0;
        let seq = bae_oplog::last_batch(conn)?;
        Ok(bae_oplog::batch_ops(conn, &bae_oplog::BAE_SCHEMA, seq)?
            .iter()
            .map(|op| op.hlc.as_u64())
            .collect())
    })
    .await
    .unwrap()
}

/// Seed 10071 of the simulation: a device whose clock runs ahead of its
/// wall clock (on its logical counter) goes back to a copy and writes the
/// fields it had written and pushed since, with other values: its clock,
/// restored from the copy, gives the new writes the very stamps of the
/// lost ones. The re-take brings the pushed ones back, and each tie goes
/// to the greater value on every device (before, the device kept its new
/// values and the others the pushed ones, for good).
#[tokio::test]
async fn writes_after_going_back_that_reuse_pushed_stamps_converge() {
    let w = World::new(Bucket::Local, "rollback-tie");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let (album, track) = (album_row(0, "albums"), album_row(0, "tracks"));
    // A clock two minutes ahead (within the drift bound): every stamp from
    // here comes from its logical counter, not the wall clock.
    let ahead = bae_hlc::Timestamp::from_unix_millis(now_ms() + 120_000).unwrap();
    laptop
        .with_db(move |rec| Ok(bae_oplog::persist_timestamp(rec.sync_parts().0, ahead)?))
        .await
        .unwrap();
    let saved = save(&w.library("laptop"));
    edit(&laptop, "albums", &album, "title", "d2-231").await;
    let pushed_album = newest_batch_stamps(&laptop).await;
    edit(&laptop, "tracks", &track, "title", "z pushed").await;
    let pushed_track = newest_batch_stamps(&laptop).await;
    let (push, _) = laptop.sync().await.unwrap();
    assert_eq!(push.batches, 2, "{push:?}");
    sync_all(&[&desktop]).await;
    assert_eq!(field(&desktop, "albums", &album, "title").await, "d2-231");
    drop(laptop);

    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    edit(&laptop, "albums", &album, "title", "d2-292").await;
    // The ties this test is about: each new write has the stamp of the
    // pushed write to the same field.
    assert_eq!(newest_batch_stamps(&laptop).await, pushed_album);
    edit(&laptop, "tracks", &track, "title", "a after").await;
    assert_eq!(newest_batch_stamps(&laptop).await, pushed_track);

    sync_all(&[&laptop, &desktop]).await;
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    for s in [&laptop, &desktop] {
        // The greater value of each tie, whichever the device saw first.
        assert_eq!(field(s, "albums", &album, "title").await, "d2-292");
        assert_eq!(field(s, "tracks", &track, "title").await, "z pushed");
    }
}

/// Seed 11075 of the simulation: a device whose re-take left its own
/// cursor before held batches (their rows not here yet) goes back again to
/// a copy taken meanwhile, and the second re-take holds a later batch. The
/// cursor must stay before the first held ones: moved up to the later
/// batch, it skipped them, and their writes were never applied on this
/// device (the others had them).
#[tokio::test]
async fn a_second_retake_keeps_the_own_cursor_of_batches_still_held() {
    let w = World::new(Bucket::Local, "rollback-held-twice");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let before_albums = save(&w.library("laptop"));
    import_albums(&w.library("desktop"), 7, 2);
    desktop.sync().await.unwrap();
    laptop.sync().await.unwrap();
    let (seventh, eighth) = (album_row(7, "albums"), album_row(8, "albums"));
    edit(&laptop, "albums", &seventh, "title", "first held").await;
    laptop.push().await.unwrap();
    drop(laptop);

    // Back before albums 7 and 8: the re-take holds the title's batch.
    restore(&w.library("laptop"), &before_albums);
    let laptop = reopen(&w, "laptop");
    laptop.push().await.unwrap();
    assert_eq!(field(&laptop, "albums", &seventh, "title").await, "NULL");
    let held_once = save(&w.library("laptop"));
    laptop.pull().await.unwrap();
    assert_eq!(
        field(&laptop, "albums", &seventh, "title").await,
        "first held"
    );
    edit(&laptop, "albums", &eighth, "title", "second").await;
    laptop.push().await.unwrap();
    drop(laptop);

    // Back to the copy that still waits for the first title: the second
    // re-take holds the batch after it (album 8 is not there either).
    restore(&w.library("laptop"), &held_once);
    let laptop = reopen(&w, "laptop");
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    for s in [&laptop, &desktop] {
        assert_eq!(field(s, "albums", &seventh, "title").await, "first held");
        assert_eq!(field(s, "albums", &eighth, "title").await, "second");
    }
}

/// A laptop (founder) and a desktop in sync, with bob invited as a
/// member, and a copy of the laptop's library taken then: what the
/// tests of a device going back to before a revoke start from.
async fn saved_before_a_revoke(
    name: &str,
) -> (
    World,
    SyncService,
    SyncService,
    bae_crypto::IdentitySigningKey,
    Saved,
) {
    let w = World::new(Bucket::Local, name);
    drop(w.first_device("laptop", 1).await);
    let laptop = w.device_over("laptop", w.store());
    let desktop = w.join("desktop").await;
    let bob = bae_crypto::IdentitySigningKey::generate();
    laptop
        .invite(bob.public_key(), bae_membership::Role::Member)
        .await
        .unwrap();
    sync_all(&[&laptop, &desktop]).await;
    let saved = save(&w.library("laptop"));
    (w, laptop, desktop, bob, saved)
}

/// The owner's laptop revokes a member (key epoch 1), pushes a write under
/// the new epoch, then goes back to a copy of its database taken before
/// the revoke, without epoch 1's key (a service built without a key store,
/// or a home restored from the same backup). Its own batch and head sealed
/// under epoch 1 did not open, twice, were taken for garbage, and the
/// push wrote new batches under the seqs the desktop had applied and
/// deleted the head: the desktop refused the laptop's stream for good
/// (found by the simulation with removals, seed 4). The second read now
/// follows a look for this member's newer key blob.
#[tokio::test]
async fn own_batches_under_an_epoch_a_restored_device_lacks_are_not_garbage() {
    let (w, laptop, desktop, bob, saved) = saved_before_a_revoke("rollback-before-revoke").await;
    let report = laptop.revoke(bob.public_key()).await.unwrap();
    assert_eq!(report.new_epoch, Some(bae_crypto::KeyEpoch(1)));
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let head = laptop.push().await.unwrap().head.unwrap();
    let pull = desktop.pull().await.unwrap();
    assert!(pull.applied > 0 && pull.problems.is_empty(), "{pull:?}");
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = w.device_over("laptop", w.store());
    import_albums(&w.library("laptop"), 5, 1);
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    desktop_syncs_cleanly_then_both_converge(&laptop, &desktop).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

/// The checkpoints in the bucket.
async fn checkpoints_in(w: &World) -> Vec<String> {
    w.store()
        .list(layout::CHECKPOINTS_PREFIX)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| layout::parse_checkpoint_key(k).is_ok())
        .collect()
}

/// Laptop, desktop and phone: the phone applied the laptop's newest
/// batch, which is then gone before the desktop read it; the desktop's
/// checkpoint (written all the same: no checkpoint holds that gap) holds
/// its own newest batch, which is then gone too. Returns the devices and
/// the desktop's gone batch.
async fn a_gap_only_an_unusable_checkpoint_holds(
    name: &str,
) -> (World, SyncService, SyncService, SyncService, u64) {
    let w = World::new(Bucket::Local, name);
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let phone = w.join("phone").await;
    import_albums(&w.library("laptop"), 10, 1);
    laptop.push().await.unwrap();
    import_albums(&w.library("desktop"), 20, 1);
    desktop.push().await.unwrap();
    phone.pull().await.unwrap();

    import_albums(&w.library("laptop"), 11, 1);
    let laptop_head = laptop.push().await.unwrap().head.unwrap();
    phone.pull().await.unwrap();
    // The laptop's newest batch is gone before the desktop read it.
    w.store()
        .delete(&ops_key(&laptop, laptop_head))
        .await
        .unwrap();
    import_albums(&w.library("desktop"), 21, 1);
    let before = checkpoints_in(&w).await.len();
    let written = desktop.checkpoint().await.unwrap();
    assert_eq!(checkpoints_in(&w).await.len(), before + 1);
    assert_eq!(
        written
            .cursors
            .iter()
            .find(|(d, _)| *d == laptop.device())
            .map(|c| c.1),
        Some(laptop_head - 1),
        "{written:?}"
    );
    let desktop_head = last_batch(&desktop).await;
    w.store()
        .delete(&ops_key(&desktop, desktop_head))
        .await
        .unwrap();
    (w, laptop, desktop, phone, desktop_head)
}

/// The phone's pull reports `gap` (device, first missing seq), held by a
/// checkpoint.
async fn pull_reports_the_gap_held(phone: &SyncService, gap: (bae_hlc::DeviceId, u64)) {
    let pull = phone.pull().await.unwrap();
    assert_eq!(pull.gaps, vec![gap]);
    assert!(pull.gaps_held_by_a_checkpoint, "{pull:?}");
}

/// The phone's checkpoint is refused for `gap`, by name, and none is written.
async fn checkpoint_refused_for_the_gap(
    w: &World,
    phone: &SyncService,
    gap: (bae_hlc::DeviceId, u64),
) {
    let before = checkpoints_in(w).await;
    match phone.checkpoint().await {
        Err(bae_sync_service::SyncError::CheckpointWouldHideGap { device, seq }) => {
            assert_eq!((device, seq), gap);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(checkpoints_in(w).await, before, "a checkpoint was written");
}

/// The desktop's checkpoint holds its batch 2; the phone applied the
/// laptop's batch 2, which the checkpoint lacks and which is then gone, so
/// it cannot recover from it; then the desktop's batch 2 is gone too
/// (its GC). A checkpoint by the phone would be the newest and lack the
/// desktop's batch 2: every device that recovers or bootstraps from it
/// would report that range for good, while the older checkpoint still
/// holds it (seed 11156's second cause, 8003 the same way). The phone's
/// pull reports the gap and that a checkpoint holds it, and its
/// checkpoint is refused, by name. A gap no checkpoint holds (the
/// desktop's own, on the laptop's batch 2) does not stop a checkpoint:
/// nothing is hidden by it, and refusing would stop checkpoints for good.
#[tokio::test]
async fn a_device_with_a_gap_a_checkpoint_holds_writes_no_checkpoint() {
    let (w, _laptop, desktop, phone, desktop_head) =
        a_gap_only_an_unusable_checkpoint_holds("gap-no-checkpoint").await;
    pull_reports_the_gap_held(&phone, (desktop.device(), desktop_head)).await;
    checkpoint_refused_for_the_gap(&w, &phone, (desktop.device(), desktop_head)).await;
}

/// The same, but the LIST of the phone's first pull misses the desktop's
/// checkpoint (an eventually consistent bucket): it saw no checkpoint
/// holding the gap and wrote one without the range, and its GC then
/// deleted the desktop's as older (seed 14159). `checkpoint` now pulls
/// again, with a second LIST, when its pull left a gap no checkpoint
/// holds.
#[tokio::test]
async fn a_list_that_misses_the_checkpoint_holding_a_gap_does_not_let_one_hide_it() {
    let (w, _laptop, desktop, phone, desktop_head) =
        a_gap_only_an_unusable_checkpoint_holds("gap-list-missed").await;
    drop(phone);
    let lists = std::sync::atomic::AtomicUsize::new(0);
    let missing = std::sync::Arc::new(HookedStore::new(w.store()).on_list(move |prefix, keys| {
        if prefix == layout::CHECKPOINTS_PREFIX
            && lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            return Vec::new();
        }
        keys
    }));
    let phone = w.device_over("phone", missing);
    checkpoint_refused_for_the_gap(&w, &phone, (desktop.device(), desktop_head)).await;
}

/// The same, but every read of the desktop's checkpoint comes back cut
/// short: the phone's pulls could not open the checkpoint holding the gap,
/// took that for no checkpoint holding it, and wrote a newer one without
/// the range, which its GC then went by (seed 40816). A checkpoint that
/// does not open may hold the gap: `checkpoint` is refused, by name.
#[tokio::test]
async fn a_checkpoint_that_does_not_open_may_hold_a_gap_and_is_not_hidden() {
    let (w, _laptop, desktop, phone, desktop_head) =
        a_gap_only_an_unusable_checkpoint_holds("gap-checkpoint-cut-short").await;
    drop(phone);
    let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutting = {
        let cut = cut.clone();
        std::sync::Arc::new(HookedStore::new(w.store()).on_body(move |key, mut body| {
            if cut.load(std::sync::atomic::Ordering::SeqCst)
                && key.starts_with(layout::CHECKPOINTS_PREFIX)
            {
                body.truncate(body.len() / 2);
            }
            body
        }))
    };
    let phone = w.device_over("phone", cutting);
    pull_reports_the_gap_held(&phone, (desktop.device(), desktop_head)).await;
    checkpoint_refused_for_the_gap(&w, &phone, (desktop.device(), desktop_head)).await;
    // Read whole, it is the checkpoint that holds the gap (and that the
    // phone cannot recover from, as before).
    cut.store(false, std::sync::atomic::Ordering::SeqCst);
    pull_reports_the_gap_held(&phone, (desktop.device(), desktop_head)).await;
}

/// The desktop's checkpoint holds its batches, which are then gone (its
/// GC). The phone, which never applied them, reads the desktop's head cut
/// short (a truncated body): no stream to read, so it never tried the
/// batches, found no gap, and its `checkpoint` wrote the newest one
/// without the desktop's range; GC by that one deleted the desktop's, the
/// range's only copy, and every device that had not applied it held the
/// desktop's later writes for good (seed 50398). `checkpoint` now looks
/// for the next batch of a stream whose heads do not open; one that is
/// gone is a gap, so the phone recovers from the desktop's checkpoint
/// before it writes its own.
#[tokio::test]
async fn a_head_that_does_not_open_hides_no_gap_from_a_checkpoint() {
    let w = World::new(Bucket::Local, "gap-behind-a-cut-head");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let phone = w.join("phone").await;
    sync_all(&[&laptop, &desktop, &phone]).await;
    drop(phone);
    import_albums(&w.library("desktop"), 20, 2);
    desktop.push().await.unwrap();
    import_albums(&w.library("desktop"), 22, 1);
    let desktop_head = desktop.push().await.unwrap().head.unwrap();
    let theirs = desktop.checkpoint().await.unwrap();
    for seq in 1..=desktop_head {
        w.store().delete(&ops_key(&desktop, seq)).await.unwrap();
    }
    let phone = w.device_over("phone", cutting_heads_of(&w, &desktop));
    assert!(applied_of(&phone, &desktop).await < desktop_head);

    // The pull cannot tell: it read nothing of the desktop's.
    let pull = phone.pull().await.unwrap();
    assert!(pull.gaps.is_empty(), "{pull:?}");
    assert_eq!(pull.unread, vec![(desktop.device(), 1)], "{pull:?}");
    assert!(applied_of(&phone, &desktop).await < desktop_head);

    let own = phone.checkpoint().await.unwrap();
    assert_eq!(
        applied_of(&phone, &desktop).await,
        desktop_head,
        "the phone did not recover from the desktop's checkpoint"
    );
    assert_ne!(own.key, theirs.key);
    assert_eq!(
        own.cursors
            .iter()
            .find(|(d, _)| *d == desktop.device())
            .map(|c| c.1),
        Some(desktop_head),
        "the newest checkpoint lacks the desktop's range: {own:?}"
    );
}

/// As above, but every LIST of `heads/` (the prefix a pull lists) the
/// phone makes misses the desktop's heads (an eventually consistent
/// bucket; a LIST of the desktop's own prefix shows them): its pulls saw no
/// stream of the desktop's at all, so no gap and nothing unread, and its
/// `checkpoint` wrote the newest one without the desktop's range; GC by
/// that one then deleted the desktop's, the range's only copy (seed
/// 101031). `checkpoint` now also looks at the streams the newest
/// checkpoint holds further than this library has applied: the
/// desktop's next batch is gone, so the phone recovers first, and while
/// no LIST confirms the desktop's head (which a recovery needs) it writes
/// no checkpoint.
#[tokio::test]
async fn a_list_that_misses_every_head_of_a_stream_hides_no_gap_from_a_checkpoint() {
    let (w, _laptop, desktop, desktop_head, theirs) =
        the_desktops_range_gone_under_its_checkpoint("gap-behind-unlisted-heads").await;
    let desktop_heads = layout::heads_prefix(&desktop.device());
    let hide = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hiding = {
        let hide = hide.clone();
        std::sync::Arc::new(HookedStore::new(w.store()).on_list(move |prefix, keys| {
            if hide.load(std::sync::atomic::Ordering::SeqCst) && prefix == layout::HEADS_PREFIX {
                return keys
                    .into_iter()
                    .filter(|k| !k.starts_with(&desktop_heads))
                    .collect();
            }
            keys
        }))
    };
    let phone = w.device_over("phone", hiding);

    let pull = phone.pull().await.unwrap();
    assert!(pull.gaps.is_empty() && pull.unread.is_empty(), "{pull:?}");
    assert!(applied_of(&phone, &desktop).await < desktop_head);
    checkpoint_refused_for_the_gap(&w, &phone, (desktop.device(), 1)).await;

    // Listed again, the desktop's head confirms the checkpoint's cursor,
    // and the phone recovers before it writes its own.
    hide.store(false, std::sync::atomic::Ordering::SeqCst);
    let own = phone.checkpoint().await.unwrap();
    assert_eq!(
        applied_of(&phone, &desktop).await,
        desktop_head,
        "the phone did not recover from the desktop's checkpoint"
    );
    assert_ne!(own.key, theirs.key);
    assert!(
        own.cursors.contains(&(desktop.device(), desktop_head)),
        "the newest checkpoint lacks the desktop's range: {own:?}"
    );
}

/// As above, but the desktop's checkpoint is cut short too: it may hold
/// the range the phone cannot see, so the phone writes no checkpoint
/// (and reads it whole the next time).
#[tokio::test]
async fn a_head_that_does_not_open_over_a_gone_range_refuses_a_checkpoint_while_one_may_hold_it() {
    let (w, _laptop, desktop, desktop_head, _) =
        the_desktops_range_gone_under_its_checkpoint("gap-behind-a-cut-head-refused").await;
    let desktop_heads = layout::heads_prefix(&desktop.device());
    let cut_checkpoints = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let cutting = {
        let cut = cut_checkpoints.clone();
        std::sync::Arc::new(HookedStore::new(w.store()).on_body(move |key, mut body| {
            if key.starts_with(&desktop_heads)
                || (cut.load(std::sync::atomic::Ordering::SeqCst)
                    && key.starts_with(layout::CHECKPOINTS_PREFIX))
            {
                body.truncate(body.len() / 2);
            }
            body
        }))
    };
    let phone = w.device_over("phone", cutting);
    checkpoint_refused_for_the_gap(&w, &phone, (desktop.device(), 1)).await;
    // Read whole, the checkpoint is the one that holds the range.
    cut_checkpoints.store(false, std::sync::atomic::Ordering::SeqCst);
    let own = phone.checkpoint().await.unwrap();
    assert_eq!(applied_of(&phone, &desktop).await, desktop_head);
    assert!(
        own.cursors.contains(&(desktop.device(), desktop_head)),
        "{own:?}"
    );
}

/// A head of a made-up device (garbage anyone can write, read whole) is
/// no sign of a stream, so `checkpoint` still writes one; with garbage
/// checkpoints beside it (which do not open, and so might hold a gap),
/// taking it for one refused every checkpoint for good.
#[tokio::test]
async fn a_garbage_head_of_a_made_up_device_stops_no_checkpoint() {
    let w = World::new(Bucket::Local, "garbage-head-checkpoint");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    sync_all(&[&laptop, &desktop]).await;
    desktop.checkpoint().await.unwrap();
    let made_up = bae_hlc::DeviceId::from_bytes([7; 16]);
    let garbage = [
        layout::heads_key(&made_up, 9),
        format!("{}{:020}-deadbeef", layout::CHECKPOINTS_PREFIX, u64::MAX),
        format!("{}{:020}-deadbeef", layout::CHECKPOINTS_PREFIX, 1),
    ];
    for key in &garbage {
        w.store().put(key, b"not an object").await.unwrap();
    }
    let pull = laptop.pull().await.unwrap();
    assert_eq!(pull.unread, vec![(made_up, 1)], "{pull:?}");
    let own = laptop.checkpoint().await.unwrap();
    assert!(own.cursors.iter().all(|(d, _)| *d != made_up), "{own:?}");
}

/// Three devices in sync; the phone then stops, the desktop pushes two
/// albums and checkpoints, and its batches are gone (as by its GC): the
/// world, the laptop, the desktop, its head and its checkpoint.
async fn the_desktops_range_gone_under_its_checkpoint(
    name: &str,
) -> (
    World,
    SyncService,
    SyncService,
    u64,
    bae_sync_service::CheckpointReport,
) {
    let w = World::new(Bucket::Local, name);
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let phone = w.join("phone").await;
    sync_all(&[&laptop, &desktop, &phone]).await;
    drop(phone);
    import_albums(&w.library("desktop"), 20, 2);
    let desktop_head = desktop.push().await.unwrap().head.unwrap();
    let theirs = desktop.checkpoint().await.unwrap();
    for seq in 1..=desktop_head {
        w.store().delete(&ops_key(&desktop, seq)).await.unwrap();
    }
    (w, laptop, desktop, desktop_head, theirs)
}

/// Takes one from `left` if any is left; whether it did.
fn take_one(left: &std::sync::atomic::AtomicUsize) -> bool {
    left.fetch_update(
        std::sync::atomic::Ordering::SeqCst,
        std::sync::atomic::Ordering::SeqCst,
        |n| n.checked_sub(1),
    )
    .is_ok()
}

/// A store over the world's that cuts short (to half) the reads of keys
/// `matching` picks, while `left` (taken one per such read) lasts.
fn cutting_first_reads(
    w: &World,
    matching: impl Fn(&str) -> bool + Send + Sync + 'static,
    left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> std::sync::Arc<HookedStore> {
    std::sync::Arc::new(HookedStore::new(w.store()).on_body(move |key, mut body| {
        if matching(key) && take_one(&left) {
            body.truncate(body.len() / 2);
        }
        body
    }))
}

/// A store over the world's that cuts every head of `of` short.
fn cutting_heads_of(w: &World, of: &SyncService) -> std::sync::Arc<HookedStore> {
    let heads = layout::heads_prefix(&of.device());
    std::sync::Arc::new(HookedStore::new(w.store()).on_body(move |key, mut body| {
        if key.starts_with(&heads) {
            body.truncate(body.len() / 2);
        }
        body
    }))
}

/// A device's applied cursor for a stream, per its status.
async fn applied_of(s: &SyncService, of: &SyncService) -> u64 {
    let of = of.device().to_string();
    s.status()
        .await
        .unwrap()
        .devices
        .iter()
        .find(|d| d.device == of)
        .map_or(0, |d| d.applied_seq)
}

/// The laptop's own checkpoint holds the desktop's batches up to `m` but
/// not the phone's newest batch (a LIST hid the phone). That batch is
/// then gone, and the laptop recovers from the phone's older checkpoint,
/// which sets its desktop cursor back; the read of the desktop's batches
/// after it fails. Its GC went by its own checkpoint and deleted the
/// desktop's batches it no longer held: its own checkpoint was behind it
/// on the phone's gone batch and could not be recovered from, and the
/// phone's lacked them, so the laptop reported them missing for good
/// (seed 40816). GC now deletes no batch of another device this library
/// does not hold.
#[tokio::test]
async fn gc_deletes_no_batch_this_library_does_not_hold_since_a_recovery() {
    let w = World::new(Bucket::Local, "gc-after-recovery");
    let phone = w.first_device("phone", 1).await;
    let desktop = w.join("desktop").await;
    let laptop = w.join("laptop").await;
    sync_all(&[&phone, &desktop, &laptop]).await;
    drop(laptop);
    let phone_id = phone.device().to_string();
    let hide_phone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let fail_desktop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hooked = {
        let (hide, fail) = (hide_phone.clone(), fail_desktop.clone());
        let desktop_ops = layout::ops_prefix(&desktop.device());
        std::sync::Arc::new(
            HookedStore::new(w.store())
                .on_list(move |_, keys| {
                    if !hide.load(std::sync::atomic::Ordering::SeqCst) {
                        return keys;
                    }
                    keys.into_iter()
                        .filter(|k| !k.contains(&phone_id))
                        .collect()
                })
                .on_get(move |key| {
                    (fail.load(std::sync::atomic::Ordering::SeqCst)
                        && key.starts_with(&desktop_ops))
                    .then(|| {
                        Err(bae_storage_s3::StoreError::Transient {
                            detail: format!("failed read of {key}"),
                        })
                    })
                }),
        )
    };
    let laptop = w.device_over("laptop", hooked);

    // The phone's newest batch and its checkpoint, before the desktop's.
    import_albums(&w.library("phone"), 10, 1);
    let phone_head = phone.push().await.unwrap().head.unwrap();
    phone.checkpoint().await.unwrap();
    import_albums(&w.library("desktop"), 20, 2);
    desktop.push().await.unwrap();
    import_albums(&w.library("desktop"), 22, 1);
    let desktop_head = desktop.push().await.unwrap().head.unwrap();
    // The laptop, not seeing the phone, applies the desktop's and writes
    // the newest checkpoint.
    let own = laptop.checkpoint().await.unwrap();
    let cursor = |of: &SyncService| {
        own.cursors
            .iter()
            .find(|(d, _)| *d == of.device())
            .map_or(0, |c| c.1)
    };
    assert_eq!(cursor(&desktop), desktop_head, "{own:?}");
    assert!(cursor(&phone) < phone_head, "{own:?}");

    // The phone's batch is gone; the laptop recovers from the phone's
    // checkpoint, and the desktop's batches fail to read after it.
    w.store()
        .delete(&ops_key(&phone, phone_head))
        .await
        .unwrap();
    hide_phone.store(false, std::sync::atomic::Ordering::SeqCst);
    fail_desktop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        laptop.pull().await.is_err(),
        "the desktop's batches failed to read"
    );
    let held = applied_of(&laptop, &desktop).await;
    assert!(
        held < desktop_head,
        "the recovery set the cursor back: {held}"
    );
    assert_eq!(applied_of(&laptop, &phone).await, phone_head);

    let gc = laptop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert_eq!(gc.checkpoint.as_deref(), Some(own.key.as_str()), "{gc:?}");
    for seq in held + 1..=desktop_head {
        assert!(
            w.store().head(&ops_key(&desktop, seq)).await.is_ok(),
            "GC deleted the desktop's batch {seq}, which the laptop does not hold"
        );
    }
    fail_desktop.store(false, std::sync::atomic::Ordering::SeqCst);
    let pulled = laptop.pull().await.unwrap();
    assert!(pulled.gaps.is_empty(), "{pulled:?}");
    assert!(pulled.problems.is_empty(), "{pulled:?}");
    assert_eq!(applied_of(&laptop, &desktop).await, desktop_head);
    // The desktop never read the phone's batch this test deleted.
    sync_all(&[&phone, &laptop]).await;
    assert_converged(&[&phone, &laptop]).await;
}

/// Review finding 2: `checkpoint` refuses while its pull left a gap an
/// older checkpoint holds, but `revoke` writes its checkpoint without a
/// pull and without that check: the phone, whose pull reports the
/// desktop's batch gone and held only by the desktop's checkpoint, revokes
/// a member and writes the newest checkpoint, which lacks that batch, and
/// its GC then deletes the desktop's, the only copy. Now the revoke sees
/// the batch after its cursor gone and writes no checkpoint (the removal
/// goes ahead: a member cannot block their removal with a gap), and says
/// where (`RevokeReport::behind`).
#[tokio::test]
async fn a_revoke_writes_no_checkpoint_that_hides_a_gap_an_older_checkpoint_holds() {
    let (w, _laptop, desktop, phone, desktop_head) =
        a_gap_only_an_unusable_checkpoint_holds("gap-revoke-checkpoint").await;
    pull_reports_the_gap_held(&phone, (desktop.device(), desktop_head)).await;
    let member = bae_crypto::IdentitySigningKey::generate().public_key();
    phone
        .invite(member, bae_membership::Role::Member)
        .await
        .unwrap();
    let before = checkpoints_in(&w).await;
    let revoked = phone.revoke(member).await;
    let report = revoked.as_ref().unwrap();
    assert!(report.removed, "{report:?}");
    assert_eq!(report.checkpoint, None, "{report:?}");
    assert_eq!(report.behind, Some((desktop.device(), desktop_head)));
    // A checkpoint by the revoke would have been the newest, and the
    // phone's GC would have gone by it and deleted the desktop's, the only
    // copy of that batch.
    let gc = phone.gc(now_ms(), bae_sync_service::GC_GRACE, true).await;
    for key in &before {
        assert!(
            w.store().exists(key).await.unwrap(),
            "{key}, the only holder of the desktop's batch {desktop_head}, is gone: {revoked:?} {gc:?}"
        );
    }
    assert_eq!(
        checkpoints_in(&w).await.len(),
        before.len(),
        "a checkpoint without the desktop's batch {desktop_head} was written: {revoked:?}"
    );
}

/// Review finding 2, the common way in: a device that has not pulled since
/// another device's GC revokes a member. Its checkpoint (no pull first)
/// was behind the bucket, and being the newest it is where readers start;
/// its GC then deletes the laptop's checkpoint, the only copy of the
/// laptop's GC'd batches, and a new device never got the laptop's second
/// album. A pull inside revoke would fix this one but moves the cutoffs
/// (it applies the member's newest batches first), which
/// `sharing::a_batch_past_a_cutoff_that_gc_removed_is_no_gap` rules out;
/// the revoke writes no checkpoint when it finds itself behind a GC.
#[tokio::test]
async fn a_revoke_by_a_device_behind_the_buckets_gc_loses_nothing() {
    let w = World::new(Bucket::Local, "stale-revoke");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    laptop.push().await.unwrap();
    desktop.pull().await.unwrap();
    // The desktop is away while the laptop writes, checkpoints and GCs.
    import_albums(&w.library("laptop"), 10, 1);
    laptop.push().await.unwrap();
    laptop.checkpoint().await.unwrap();
    let gc = laptop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert!(gc.ops_deleted > 0, "{gc:?}");
    let laptops = checkpoints_in(&w).await;
    // Back, the desktop revokes someone before anything else.
    let member = bae_crypto::IdentitySigningKey::generate().public_key();
    desktop
        .invite(member, bae_membership::Role::Member)
        .await
        .unwrap();
    // Refused or done, nothing may be lost.
    let revoked = desktop.revoke(member).await;
    let gc = desktop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    let phone = w.join("phone").await;
    let pull = phone.pull().await.unwrap();
    assert_ne!(
        field(&phone, "albums", &album_row(10, "albums"), "id").await,
        "NULL",
        "the laptop's album is lost: {revoked:?} {gc:?} {:?}; before: {laptops:?}, now: {:?}",
        pull.problems,
        checkpoints_in(&w).await
    );
}

/// Seed 16172: a push put batches but not their head (its last reply was
/// lost), and the device then went back to a copy taken right after its
/// previous push, so its local state ends exactly at the head in the
/// bucket. With no head above and nothing unpushed, nothing looked past
/// it: the orphan batches' acknowledged writes were on no device, for
/// good. The first push after a restart looks for the next batch too.
#[tokio::test]
async fn batches_put_without_their_head_before_going_back_are_found_by_an_idle_push() {
    let w = World::new(Bucket::Local, "rollback-headless");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    write_and_push_before(&w, &laptop, &desktop).await;
    let saved = save(&w.library("laptop"));
    let device = laptop.device();
    let store = w.store();
    let head = own_objects(&w, &laptop).await.len() as u64;
    let head_bytes = store
        .get(&layout::heads_key(&device, head), u64::MAX)
        .await
        .unwrap();
    edit(
        &laptop,
        "albums",
        &album_row(2, "albums"),
        "title",
        "orphan",
    )
    .await;
    assert_eq!(laptop.push().await.unwrap().head, Some(head + 1));
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    // The push's head never landed: the bucket still names batch `head`.
    store
        .delete(&layout::heads_key(&device, head + 1))
        .await
        .unwrap();
    store
        .put(&layout::heads_key(&device, head), &head_bytes)
        .await
        .unwrap();
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");

    let (push, _) = laptop.sync().await.unwrap();
    assert_eq!(push.retaken, vec![head + 1], "{push:?}");
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    for s in [&laptop, &desktop] {
        assert_eq!(
            field(s, "albums", &album_row(2, "albums"), "title").await,
            "orphan"
        );
    }
    assert_converged(&[&laptop, &desktop]).await;
}

/// Seed 17277: after going back, the re-take read the device's first
/// batch above its copy damaged twice (cut transfers) and stopped there,
/// then found its head above. The head was recorded, but the batches up
/// to it were never applied on this device: its own pushed writes were on
/// every other device and not on it. A read that stops below a valid head
/// now leaves the own cursor there, and the pull applies them.
#[tokio::test]
async fn own_batches_below_the_head_that_read_damaged_are_applied_later() {
    let w = World::new(Bucket::Local, "rollback-damaged-below-head");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    let saved = save(&w.library("laptop"));
    let copy_at = last_batch(&laptop).await;
    write_and_push_before(&w, &laptop, &desktop).await;
    let objects = own_objects(&w, &laptop).await;
    let device = laptop.device();
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    // The first two GETs of the batch after the copy return half of it
    // (a cut transfer).
    let cut = layout::ops_key(&device, copy_at + 1);
    let damaged = cutting_first_reads(
        &w,
        move |key| key == cut,
        std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(2)),
    );
    let laptop = w.device_over("laptop", damaged);

    laptop.sync().await.unwrap();
    laptop.sync().await.unwrap();
    nothing_replaced(&w, &laptop, &objects).await;
    assert_before_writes_on(&laptop).await;
    let (_, pull) = desktop.sync().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_converged(&[&laptop, &desktop]).await;
}

/// Seed 18289: the revoke's checkpoint (written without a push) held a
/// title the laptop had recorded but not pushed; the laptop then went back
/// to a copy taken before that title. The write was in a checkpoint and in
/// no batch: a device that started from the checkpoint had it, one that
/// pulled batches never would, and the laptop itself got it back only
/// through a recovery. A checkpoint now publishes the batches whose writes
/// its snapshot holds before it is uploaded.
#[tokio::test]
async fn a_checkpoint_holds_no_write_that_no_batch_carries() {
    let w = World::new(Bucket::Local, "rollback-checkpoint-unpushed");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    laptop.push().await.unwrap();
    desktop.pull().await.unwrap();
    let member = bae_crypto::IdentitySigningKey::generate().public_key();
    laptop
        .invite(member, bae_membership::Role::Member)
        .await
        .unwrap();
    let saved = save(&w.library("laptop"));
    let album = album_row(0, "albums");
    edit(&laptop, "albums", &album, "title", "in the checkpoint").await;
    let report = laptop.revoke(member).await.unwrap();
    assert!(report.checkpoint.is_some(), "{report:?}");
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let laptop = reopen(&w, "laptop");
    let phone = w.join("phone").await;

    for _ in 0..2 {
        for s in [&laptop, &desktop, &phone] {
            let (_, pull) = s.sync().await.unwrap();
            assert!(pull.problems.is_empty(), "{:?}", pull.problems);
        }
    }
    let titles = [
        field(&laptop, "albums", &album, "title").await,
        field(&desktop, "albums", &album, "title").await,
        field(&phone, "albums", &album, "title").await,
    ];
    assert_eq!(
        titles,
        ["in the checkpoint"; 3].map(String::from),
        "laptop, desktop, phone (which started from the revoke's checkpoint)"
    );
    assert_converged(&[&laptop, &desktop, &phone]).await;
}

/// The owner's device and desktop, and bob invited as a member and joined
/// on a device of his own (keys in `bob-home`), the desktop pulled since:
/// what the tests of a revoke by the owner start from.
async fn owner_desktop_and_bob(
    name: &str,
) -> (
    World,
    SyncService,
    SyncService,
    SyncService,
    bae_crypto::IdentitySigningKey,
) {
    let w = World::new(Bucket::Local, name);
    let owner = w.first_device("owner", 1).await;
    let desktop = w.join("desktop").await;
    let founder = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let bob_keys = bae_sync_service::KeyStore::Files(w.dir.path().join("bob-home"));
    let bob_id = bob_keys.identity_store().load_or_create().unwrap();
    owner
        .invite(bob_id.public_key(), bae_membership::Role::Member)
        .await
        .unwrap();
    let bob = library::join_invited(
        open_library(&w.library("bob")).unwrap(),
        &w.bucket,
        bae_membership::LibraryId::from(founder.key.fingerprint()),
        &founder.identity.public_key(),
        &founder.identity.public_key(),
        &bob_keys,
        None,
    )
    .await
    .unwrap();
    desktop.pull().await.unwrap();
    (w, owner, desktop, bob, bob_id)
}

/// Seed 19343: a founder device got the member's writes from a checkpoint
/// (here by joining; in the seed by recovering after going back to a
/// copy), so it never verified a signed object of the member's device and
/// did not know that device was theirs. Its revoke listed no cutoff for
/// it, which refuses every batch of it: a device that had not applied
/// them yet never would, while the revoker and the checkpoint's readers
/// held their writes. The revoke now learns the author of every device it
/// has applied batches of (from their heads) before it takes the cutoffs.
#[tokio::test]
async fn a_revoke_by_a_device_that_read_the_members_writes_in_a_checkpoint_lists_their_devices() {
    let (w, owner, desktop, bob, bob_id) = owner_desktop_and_bob("revoke-after-checkpoint").await;
    import_albums(&w.library("bob"), 30, 1);
    bob.push().await.unwrap();
    owner.pull().await.unwrap();
    owner.checkpoint().await.unwrap();
    // The tablet starts from the owner's checkpoint, bob's album in it.
    let tablet = w.join("tablet").await;
    let bobs_album = album_row(30, "albums");
    assert_ne!(field(&tablet, "albums", &bobs_album, "id").await, "NULL");

    let report = tablet.revoke(bob_id.public_key()).await.unwrap();
    assert_eq!(report.cutoffs, vec![(bob.device(), last_batch(&bob).await)]);
    // The desktop had not applied bob's batch; it reads the removal first.
    let members = desktop.members().await.unwrap();
    assert!(members.iter().all(|m| m.key != bob_id.public_key()));
    let pull = desktop.pull().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_ne!(field(&desktop, "albums", &bobs_album, "id").await, "NULL");
    owner.pull().await.unwrap();
    tablet.pull().await.unwrap();
    assert_converged(&[&owner, &desktop, &tablet]).await;
}

/// Seed 24347: as above, and every LIST of the laptop's key blobs during
/// its first push after going back missed epoch 1's (an eventually
/// consistent bucket): the look found nothing newer, the head sealed under
/// epoch 1 did not open twice and was passed over, and the push rewrote
/// batches the desktop had applied (a fork). An own object naming an
/// epoch whose key blob of this member is in the bucket (looked up by
/// name) now fails the push instead; the next one, whose LIST shows it,
/// goes on.
#[tokio::test]
async fn a_list_that_misses_the_new_epochs_key_blob_does_not_make_own_batches_garbage() {
    let (w, laptop, desktop, bob, saved) =
        saved_before_a_revoke("rollback-before-revoke-stale-keys").await;
    laptop.revoke(bob.public_key()).await.unwrap();
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let head = laptop.push().await.unwrap().head.unwrap();
    desktop.pull().await.unwrap();
    let objects = own_objects(&w, &laptop).await;
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let stale = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let listing = stale.clone();
    let store = HookedStore::new(w.store()).on_list(move |prefix, keys| {
        if prefix.starts_with("keys/") && listing.load(std::sync::atomic::Ordering::SeqCst) {
            keys.into_iter()
                .filter(|k| !k.ends_with("/0000000001"))
                .collect()
        } else {
            keys
        }
    });
    let laptop = w.device_over("laptop", std::sync::Arc::new(store));
    import_albums(&w.library("laptop"), 5, 1);

    let first = laptop.push().await;
    nothing_replaced(&w, &laptop, &objects).await;
    assert!(first.is_err(), "{first:?}");
    stale.store(false, std::sync::atomic::Ordering::SeqCst);
    let push = laptop.push().await.unwrap();
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    nothing_replaced(&w, &laptop, &objects).await;
    desktop_syncs_cleanly_then_both_converge(&laptop, &desktop).await;
}

/// Seed 51843: as above, and the laptop's GC had removed its batches under
/// its checkpoint, so its head (sealed under epoch 1) was all that showed
/// where its stream stood. The first read of the head did not open (the
/// copy lacks epoch 1), the refresh that followed brought the epoch, and
/// the second read came back cut short: two failed reads, so the head was
/// taken for garbage and the push wrote batches under the seqs the desktop
/// had applied. A read that failed only for an epoch the refresh then
/// brought does not count; the third read opens and the push continues
/// above the head.
#[tokio::test]
async fn a_head_cut_short_after_its_epoch_was_fetched_is_not_garbage() {
    let (w, laptop, desktop, bob, saved) =
        saved_before_a_revoke("rollback-before-revoke-cut-head").await;
    laptop.revoke(bob.public_key()).await.unwrap();
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "after").await;
    let head = laptop.push().await.unwrap().head.unwrap();
    desktop.pull().await.unwrap();
    laptop.checkpoint().await.unwrap();
    let gc = laptop
        .gc(now_ms(), bae_sync_service::GC_GRACE, true)
        .await
        .unwrap();
    assert!(gc.ops_deleted > 0, "{gc:?}");
    assert!(!w.store().exists(&ops_key(&laptop, head)).await.unwrap());
    let head_key = layout::heads_key(&laptop.device(), head);
    drop(laptop);
    restore(&w.library("laptop"), &saved);
    let reads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = reads.clone();
    let store = HookedStore::new(w.store()).on_body(move |key, mut body| {
        if key == head_key && counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            body.truncate(body.len() / 2);
        }
        body
    });
    let laptop = w.device_over("laptop", std::sync::Arc::new(store));
    import_albums(&w.library("laptop"), 5, 1);

    let push = laptop.push().await.unwrap();
    assert!(
        reads.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the cut read was made"
    );
    assert_eq!(push.head, Some(head + 1), "{push:?}");
    desktop_syncs_cleanly_then_both_converge(&laptop, &desktop).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "after"
    );
}

/// Seed 30086: the owner's device went back to a copy from before one of
/// its imports, and pulled (no push, so no re-take of its own batches):
/// the member's update of a track of that import waited for the insert,
/// and the member's later batches applied past it. The cursor stayed
/// before the waiting batch, the revoke took its cutoffs from the cursors,
/// and so the revoker held writes of the member that every other device
/// refuses as past the cutoff (in the seed, titles that overtook the
/// member's earlier ones, which then looked lost). A device's batches now
/// apply in seq order: one that waits holds the later ones.
#[tokio::test]
async fn a_revoker_holds_no_write_of_the_member_past_its_cutoffs() {
    let (w, owner, desktop, bob, bob_id) =
        owner_desktop_and_bob("revoke-past-a-waiting-batch").await;
    let saved = save(&w.library("owner"));
    import_albums(&w.library("owner"), 40, 1);
    owner.push().await.unwrap();
    bob.pull().await.unwrap();
    let track = album_row(40, "tracks");
    edit(&bob, "tracks", &track, "title", "bob's track").await;
    bob.push().await.unwrap();
    let album = album_row(0, "albums");
    edit(&bob, "albums", &album, "title", "bob's title").await;
    bob.push().await.unwrap();
    drop(owner);
    restore(&w.library("owner"), &saved);
    let owner = reopen(&w, "owner");
    let pull = owner.pull().await.unwrap();
    assert!(
        pull.problems.iter().any(|p| p.device == bob.device()),
        "bob's track edit waits for the owner's import: {:?}",
        pull.problems
    );

    let report = owner.revoke(bob_id.public_key()).await.unwrap();
    assert!(report.removed, "{report:?}");
    for _ in 0..2 {
        for s in [&owner, &desktop] {
            let (_, pull) = s.sync().await.unwrap();
            assert!(
                pull.problems.iter().all(|p| p.device == bob.device()),
                "{:?}",
                pull.problems
            );
        }
    }
    assert_eq!(
        field(&owner, "albums", &album, "title").await,
        field(&desktop, "albums", &album, "title").await,
        "the owner's title, the desktop's"
    );
    assert_converged(&[&owner, &desktop]).await;
}

/// A LIST that missed the phone's newest head showed an older one the
/// host still kept, below what the desktop had applied: that pull reports
/// the phone's stream as rolled back. Once LISTs show the newest head
/// again there is nothing to read, and the pull returned early without
/// clearing the stored report, so status named a rollback that never
/// happened for good (seed 51796). A pull that finds nothing wrong now
/// clears it.
#[tokio::test]
async fn a_rollback_a_stale_list_showed_is_not_reported_once_lists_show_the_head() {
    let w = World::new(Bucket::Local, "stale-list-rollback");
    let phone = w.first_device("phone", 1).await;
    let desktop = w.join("desktop").await;
    sync_all(&[&phone, &desktop]).await;
    drop(desktop);

    import_albums(&w.library("phone"), 10, 1);
    let older = phone.push().await.unwrap().head.unwrap();
    let older_key = layout::heads_key(&phone.device(), older);
    let older_head = w.store().get(&older_key, u64::MAX).await.unwrap();
    import_albums(&w.library("phone"), 11, 1);
    let newest = phone.push().await.unwrap().head.unwrap();
    // The older head, as a host whose delete had not taken yet keeps it.
    w.store().put(&older_key, &older_head).await.unwrap();

    let hide = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hooked = {
        let hide = hide.clone();
        let newest_key = layout::heads_key(&phone.device(), newest);
        std::sync::Arc::new(HookedStore::new(w.store()).on_list(move |_, keys| {
            if !hide.load(std::sync::atomic::Ordering::SeqCst) {
                return keys;
            }
            keys.into_iter().filter(|k| *k != newest_key).collect()
        }))
    };
    let desktop = w.device_over("desktop", hooked);
    desktop.pull().await.unwrap();
    assert_eq!(applied_of(&desktop, &phone).await, newest);

    hide.store(true, std::sync::atomic::Ordering::SeqCst);
    let pull = desktop.pull().await.unwrap();
    assert!(
        pull.problems
            .iter()
            .any(|p| p.device == phone.device() && p.reason.contains("rolled back")),
        "the stale LIST shows a rollback: {:?}",
        pull.problems
    );
    assert_eq!(desktop.status().await.unwrap().problems.len(), 1);

    hide.store(false, std::sync::atomic::Ordering::SeqCst);
    let pull = desktop.pull().await.unwrap();
    assert!(pull.problems.is_empty(), "{:?}", pull.problems);
    assert_eq!(
        desktop.status().await.unwrap().problems,
        Vec::new(),
        "status still names the rollback"
    );
    assert_eq!(applied_of(&desktop, &phone).await, newest);
}
