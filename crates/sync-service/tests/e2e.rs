//! End to end through the library API: devices of one user syncing through
//! a local-directory bucket and through a real S3 server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use bae_sync_service::images_dir_for;
use common::*;

async fn two_devices_converge_with_images(bucket: Bucket) {
    let w = World::new(bucket, "two-devices");
    let laptop = w.first_device("laptop", 3).await;
    let desktop = w.join("desktop").await;
    assert_converged(&[&laptop, &desktop]).await;
    for i in 0..3 {
        let image = album_row(i, "images");
        let path = images_dir_for(&w.library("desktop")).join(&image);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            image_bytes(&image),
            "image {i}"
        );
    }

    edit(
        &laptop,
        "albums",
        &album_row(0, "albums"),
        "title",
        "Laptop title",
    )
    .await;
    edit(
        &desktop,
        "albums",
        &album_row(1, "albums"),
        "title",
        "Desktop title",
    )
    .await;
    sync_all(&[&laptop, &desktop]).await;
    assert_converged(&[&laptop, &desktop]).await;
    assert_eq!(
        field(&desktop, "albums", &album_row(0, "albums"), "title").await,
        "Laptop title"
    );
    assert_eq!(
        field(&laptop, "albums", &album_row(1, "albums"), "title").await,
        "Desktop title"
    );
}

#[tokio::test]
async fn two_devices_converge_with_images_on_a_local_bucket() {
    two_devices_converge_with_images(Bucket::Local).await;
}

#[tokio::test]
async fn two_devices_converge_with_images_on_s3() {
    two_devices_converge_with_images(Bucket::S3).await;
}

async fn three_devices_concurrent_edits(bucket: Bucket) {
    let w = World::new(bucket, "three-devices");
    let a = w.first_device("a", 2).await;
    let b = w.join("b").await;
    let c = w.join("c").await;
    let album = album_row(0, "albums");
    // Same field on a and b (b writes later and wins), another field on c.
    edit(&a, "albums", &album, "title", "from a").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    edit(&b, "albums", &album, "title", "from b").await;
    edit(&c, "albums", &album, "bandcamp_album_id", "from c").await;
    sync_all(&[&a, &b, &c]).await;
    assert_converged(&[&a, &b, &c]).await;
    assert_eq!(field(&a, "albums", &album, "title").await, "from b");
    assert_eq!(
        field(&a, "albums", &album, "bandcamp_album_id").await,
        "from c"
    );
}

#[tokio::test]
async fn three_devices_converge_on_concurrent_edits_on_a_local_bucket() {
    three_devices_concurrent_edits(Bucket::Local).await;
}

#[tokio::test]
async fn three_devices_converge_on_concurrent_edits_on_s3() {
    three_devices_concurrent_edits(Bucket::S3).await;
}

#[tokio::test]
async fn later_delete_beats_earlier_edit_on_every_device() {
    let w = World::new(Bucket::Local, "delete-vs-edit");
    let a = w.first_device("a", 2).await;
    let b = w.join("b").await;
    let album = album_row(1, "albums");
    edit(&b, "albums", &album, "title", "edited before the delete").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    delete(&a, "albums", &album).await;
    sync_all(&[&a, &b]).await;
    assert_converged(&[&a, &b]).await;
    assert_eq!(field(&b, "albums", &album, "title").await, "NULL");
    assert_eq!(
        field(&b, "releases", &album_row(1, "releases"), "id").await,
        "NULL"
    );
    assert_ne!(
        field(&b, "albums", &album_row(0, "albums"), "title").await,
        "NULL"
    );
}

#[tokio::test]
async fn status_shows_each_devices_last_sync_and_pending_batches() {
    let w = World::new(Bucket::Local, "status");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    edit(&a, "albums", &album_row(0, "albums"), "title", "one").await;
    edit(&a, "albums", &album_row(0, "albums"), "title", "two").await;
    let status = a.status().await.unwrap();
    assert_eq!(status.pending_batches, 2);
    assert_eq!(status.device, a.device().to_string());

    let pushed = a.push().await.unwrap();
    assert_eq!(pushed.batches, 2);
    assert_eq!(a.status().await.unwrap().pending_batches, 0);

    b.pull().await.unwrap();
    let status = b.status().await.unwrap();
    let seen = status
        .devices
        .iter()
        .find(|d| d.device == a.device().to_string())
        .unwrap();
    assert_eq!(Some(seen.applied_seq), seen.head_seq);
    assert_eq!(seen.applied_seq, last_batch(&a).await);
    assert!(seen.last_synced_ms.unwrap() > 0);
    assert!(status.problems.is_empty() && status.last_error.is_none());
}

/// Time passes for a device's wanted images: their next try is due.
async fn make_wanted_images_due(s: &bae_sync_service::SyncService) {
    s.with_db(|rec| {
        rec.sync_parts()
            .0
            .execute("UPDATE bae_sync_wanted_images SET next_try_ms = 0", [])?;
        Ok(())
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_image_without_local_bytes_stays_queued_until_they_arrive() {
    use bae_storage_s3::testing::CountingStore;
    let w = World::new(Bucket::Local, "late-image");
    let a = w.first_device("a", 1).await;
    let counting = std::sync::Arc::new(CountingStore::new(w.store()));
    let b = w.device_over("b", counting.clone());
    b.pull().await.unwrap();
    // bae records the image row before it has downloaded the bytes.
    drop(a);
    let lib = w.library("a");
    let image = album_row(5, "images");
    let path = images_dir_for(&lib).join(&image);
    import_albums(&lib, 5, 1);
    std::fs::remove_file(&path).unwrap();
    let a =
        bae_sync_service::library::open(bae_oplog::fixture::open_library(&lib).unwrap(), &w.keys)
            .unwrap();
    let first = a.push().await.unwrap();
    assert_eq!(
        (first.batches, first.images, first.images_waiting),
        (1, 0, 1)
    );
    assert_eq!(a.status().await.unwrap().images_queued, 1);

    // b pulls the row before the bytes reach the bucket: it wants them.
    let on_b = images_dir_for(&w.library("b")).join(&image);
    let pulled = b.pull().await.unwrap();
    assert_eq!((pulled.applied, pulled.images), (1, 0));
    assert!(!on_b.exists());
    assert_eq!(b.status().await.unwrap().images_wanted, 1);

    std::fs::write(&path, image_bytes(&image)).unwrap();
    let second = a.push().await.unwrap();
    assert_eq!(
        (second.batches, second.images, second.images_waiting),
        (0, 1, 0)
    );
    assert_eq!(
        a.push().await.unwrap().images,
        0,
        "uploaded once, then dequeued"
    );
    assert_eq!(a.status().await.unwrap().images_queued, 0);

    // No head moved and the retry is not due: an idle pull, two LISTs
    // (`membership/`, `heads/`).
    counting.reset();
    b.pull().await.unwrap();
    assert_eq!(counting.snapshot().total(), 2);
    assert!(!on_b.exists());
    // Once due, the next pull fetches it (two LISTs and one GET).
    make_wanted_images_due(&b).await;
    counting.reset();
    assert_eq!(b.pull().await.unwrap().images, 1);
    let n = counting.snapshot();
    assert_eq!((n.list, n.get, n.total()), (2, 1, 3), "{n:?}");
    assert_eq!(std::fs::read(&on_b).unwrap(), image_bytes(&image));
    assert_eq!(b.status().await.unwrap().images_wanted, 0);

    // A device joining now gets the bytes with the row.
    let c = w.join("c").await;
    let on_c = images_dir_for(&w.library("c")).join(&image);
    assert_eq!(std::fs::read(on_c).unwrap(), image_bytes(&image));
    assert_converged(&[&a, &b, &c]).await;
}

#[tokio::test]
async fn a_wanted_image_whose_row_is_gone_is_forgotten() {
    let w = World::new(Bucket::Local, "gone-image");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    drop(a);
    let lib = w.library("a");
    let image = album_row(7, "images");
    import_albums(&lib, 7, 1);
    std::fs::remove_file(images_dir_for(&lib).join(&image)).unwrap();
    let a =
        bae_sync_service::library::open(bae_oplog::fixture::open_library(&lib).unwrap(), &w.keys)
            .unwrap();
    a.push().await.unwrap();
    b.pull().await.unwrap();
    assert_eq!(b.status().await.unwrap().images_wanted, 1);
    delete(&a, "albums", &album_row(7, "albums")).await;
    a.push().await.unwrap();
    b.pull().await.unwrap();
    make_wanted_images_due(&b).await;
    b.pull().await.unwrap();
    assert_eq!(b.status().await.unwrap().images_wanted, 0);
    assert_converged(&[&a, &b]).await;
}

/// Three devices each push a backlog; returns them (synced) and the total
/// number of batches in the bucket.
async fn backlog(w: &World) -> (Vec<bae_sync_service::SyncService>, u64) {
    let a = w.first_device("a", 4).await;
    let b = w.join("b").await;
    let c = w.join("c").await;
    for round in 0..4 {
        for (i, d) in [&a, &b, &c].into_iter().enumerate() {
            let album = album_row(round % 4, "albums");
            edit(d, "albums", &album, "title", &format!("{i}-{round}")).await;
            d.push().await.unwrap();
        }
    }
    // b deletes an album a edits afterwards, and c re-imports one.
    delete(&b, "albums", &album_row(3, "albums")).await;
    b.push().await.unwrap();
    edit(&a, "releases", &album_row(2, "releases"), "label", "late").await;
    a.push().await.unwrap();
    sync_all(&[&a, &b, &c]).await;
    let mut total = 0;
    for d in [&a, &b, &c] {
        total += last_batch(d).await;
    }
    (vec![a, b, c], total)
}

#[tokio::test]
async fn a_backlog_is_pulled_in_slices_and_converges() {
    use bae_storage_s3::testing::CountingStore;
    use bae_sync_service::{PullWindow, Stage};
    let w = World::new(Bucket::Local, "slices");
    let (devices, total) = backlog(&w).await;
    let counting = std::sync::Arc::new(CountingStore::new(w.store()));
    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = reports.clone();
    let d = w
        .device_over("d", counting.clone())
        .with_pull_window(PullWindow {
            batches: 3,
            bytes: usize::MAX,
        })
        .with_progress(std::sync::Arc::new(move |stage, done, total| {
            seen.lock().unwrap().push((stage, done, total));
        }));
    let report = d.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.applied as u64, total);
    // Each batch and head fetched once, whatever the slicing; the
    // genesis entry once, after one LIST of `membership/`.
    let n = counting.snapshot();
    assert_eq!(
        (n.list, n.get),
        (2, total + 3 + 4 + 1),
        "{n:?} (batches, heads, images)"
    );
    let reports = reports.lock().unwrap().clone();
    assert!(reports
        .iter()
        .all(|(s, _, t)| *s == Stage::Pull && *t == total));
    assert_eq!(reports.last().map(|r| r.1), Some(total));

    // A byte budget smaller than any batch: slices of one batch each.
    let e = w.device_over("e", w.store()).with_pull_window(PullWindow {
        batches: usize::MAX,
        bytes: 1,
    });
    let report = e.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.applied as u64, total);
    let all: Vec<&bae_sync_service::SyncService> = devices.iter().chain([&d, &e]).collect();
    assert_converged(&all).await;
}

#[tokio::test]
async fn an_interrupted_pull_keeps_the_slices_it_merged() {
    use bae_storage_s3::testing::{CountingStore, Fault, FaultyStore, OpKind, Trigger};
    use bae_storage_s3::StoreError;
    use bae_sync_service::PullWindow;
    let w = World::new(Bucket::Local, "interrupted");
    let (devices, total) = backlog(&w).await;
    let faulty = std::sync::Arc::new(FaultyStore::new(w.store()));
    let counting = std::sync::Arc::new(CountingStore::new(faulty.clone()));
    let d = w
        .device_over("d", counting.clone())
        .with_pull_window(PullWindow {
            batches: 4,
            bytes: usize::MAX,
        });
    // Heads are the first three GETs, then the first slice's four batches
    // and its images; the bucket drops out in the second slice.
    faulty.inject(
        OpKind::Get,
        Trigger::Nth(12),
        Fault::Error(StoreError::Transient {
            detail: "connection reset".into(),
        }),
    );
    let err = d.pull().await.unwrap_err();
    assert!(err.to_string().contains("connection reset"), "{err}");
    let applied: u64 = d
        .status()
        .await
        .unwrap()
        .devices
        .iter()
        .map(|s| s.applied_seq)
        .sum();
    // The first slice holds every device's first batch (the imports and
    // two edits of album 0, which apply) and one more (applied, or held for
    // the next slice when it edits an album whose import is not in it yet).
    assert!(applied >= 3 && applied < total, "{applied} of {total}");
    let images_here = std::fs::read_dir(images_dir_for(&w.library("d")))
        .unwrap()
        .count() as u64;

    counting.reset();
    let report = d.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.applied as u64, total - applied);
    let n = counting.snapshot();
    assert_eq!(
        n.get,
        (total - applied) + 3 + (4 - images_here),
        "only what was not merged is fetched again (batches, heads, images)"
    );
    let all: Vec<&bae_sync_service::SyncService> = devices.iter().chain([&d]).collect();
    assert_converged(&all).await;
}

#[tokio::test]
async fn idle_pull_is_two_list_requests() {
    use bae_storage_s3::testing::CountingStore;
    let w = World::new(Bucket::Local, "idle");
    let a = w.first_device("a", 1).await;
    drop(a);
    let counting = std::sync::Arc::new(CountingStore::new(w.store()));
    let b = w.device_over("b", counting.clone());
    b.pull().await.unwrap();
    counting.reset();
    b.sync().await.unwrap();
    // The first push of a service also LISTs its own heads, once: a
    // pull's LIST of `heads/` alone can miss a rollback (seed 11214); and
    // makes one HEAD of its next batch: batches put without their head
    // before the database went back to that head show only there (seed
    // 16172); and LISTs its own batches: those above a gap show when both
    // LISTs of heads miss the head (seed 93256).
    let n = counting.snapshot();
    assert_eq!((n.list, n.head, n.total()), (4, 1, 5), "{n:?}");
    counting.reset();
    b.sync().await.unwrap();
    let n = counting.snapshot();
    // `membership/` (every entry already cached) and `heads/`.
    assert_eq!((n.list, n.total()), (2, 2), "{n:?}");
}

/// Both devices re-analyse the same track (a new audio format row each; the
/// track may have only one): the sync does not stall and the newer wins.
#[tokio::test]
async fn rival_audio_formats_from_two_devices_converge_on_the_newer() {
    let w = World::new(Bucket::Local, "rival-formats");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    let track = album_row(0, "tracks");
    for (device, id) in [(&a, "af-from-a"), (&b, "af-from-b")] {
        let (track, id) = (track.clone(), id.to_owned());
        device
            .with_db(move |rec| {
                let (old, fields): (String, Vec<(String, bae_oplog::Value)>) = {
                    let conn = rec.sync_parts().0;
                    let old: String = conn.query_row(
                        "SELECT id FROM audio_formats WHERE track_id = ?1",
                        [&track],
                        |r| r.get(0),
                    )?;
                    let table = bae_oplog::BAE_SCHEMA.table("audio_formats").unwrap();
                    let fields = conn.query_row(
                        &format!(
                            "SELECT {} FROM audio_formats WHERE id = ?1",
                            table.columns.join(", ")
                        ),
                        [&old],
                        |r| {
                            table
                                .columns
                                .iter()
                                .enumerate()
                                .map(|(i, c)| {
                                    Ok(((*c).to_owned(), bae_oplog::Value::from(r.get_ref(i)?)))
                                })
                                .collect::<Result<Vec<_>, rusqlite::Error>>()
                        },
                    )?;
                    (old, fields)
                };
                let fields: Vec<(&str, bae_oplog::Value)> = fields
                    .iter()
                    .map(|(c, v)| (c.as_str(), v.clone()))
                    .collect();
                let mut tx = rec.transaction()?;
                tx.delete("audio_formats", &old)?;
                tx.insert("audio_formats", &id, &fields)?;
                tx.commit()?;
                Ok(())
            })
            .await
            .unwrap();
        // b's write is the newer one by wall clock, not by a tie-break.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sync_all(&[&a, &b]).await;
    assert_converged(&[&a, &b]).await;
    for d in [&a, &b] {
        assert_eq!(
            field(d, "audio_formats", "af-from-b", "track_id").await,
            track
        );
        assert_eq!(
            field(d, "audio_formats", "af-from-a", "track_id").await,
            "NULL"
        );
        let status = d.status().await.unwrap();
        assert!(status.problems.is_empty(), "{:?}", status.problems);
        assert!(status
            .devices
            .iter()
            .all(|s| Some(s.applied_seq) == s.head_seq));
    }
}

/// One tampered image object used to fail every pull before anything
/// merged. Now the batches merge, the image is reported by name and
/// wanted, and once its device re-uploads it with `push --repair` the next
/// due pull fetches it.
#[tokio::test]
async fn a_damaged_image_is_reported_and_retried_and_batches_still_merge() {
    let w = World::new(Bucket::Local, "damaged-image");
    let laptop = w.first_device("laptop", 2).await;
    let image = album_row(1, "images");
    let key = bae_storage_s3::layout::image_key(
        &bae_storage_s3::layout::ObjectId::parse(&image).unwrap(),
    );
    let store = w.store();
    let mut sealed = store.get(&key, u64::MAX).await.unwrap();
    let i = sealed.len() - 5;
    sealed[i] ^= 0x01;
    store.put(&key, &sealed).await.unwrap();

    let desktop = w.join("desktop").await;
    assert_converged(&[&laptop, &desktop]).await;
    let path = images_dir_for(&w.library("desktop")).join(&image);
    assert!(!path.exists(), "the damaged image was not written");
    let status = desktop.status().await.unwrap();
    assert_eq!(status.images_wanted, 1);

    let repair = laptop.repair().await.unwrap();
    assert_eq!(repair.images_repaired, vec![image.clone()]);
    make_wanted_images_due(&desktop).await;
    desktop.pull().await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), image_bytes(&image));
}

/// The rejection is named in the pull's report.
#[tokio::test]
async fn a_pull_names_the_damaged_image() {
    let w = World::new(Bucket::Local, "damaged-image-report");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "new").await;
    // A new album with an image, pushed, then its image object damaged.
    import_albums(&w.library("laptop"), 5, 1);
    laptop.push().await.unwrap();
    let image = album_row(5, "images");
    let key = bae_storage_s3::layout::image_key(
        &bae_storage_s3::layout::ObjectId::parse(&image).unwrap(),
    );
    let store = w.store();
    store.put(&key, b"not an image object").await.unwrap();
    let report = desktop.pull().await.unwrap();
    assert_eq!(report.applied, 2, "both batches merged");
    assert_eq!(report.images_rejected.len(), 1, "{report:?}");
    assert!(report.images_rejected[0].contains(&key));
}

/// A batch object larger than a read-ahead may hold (1 MiB), between small
/// ones, is read again on its turn and applies like any other: the
/// read-ahead's bound limits memory, never what syncs.
#[tokio::test]
async fn a_batch_too_large_to_read_ahead_still_syncs() {
    let w = World::new(Bucket::Local, "large-batch");
    let a = w.first_device("a", 3).await;
    let b = w.join("b").await;
    let large = "x".repeat(900 * 1024);
    let (first, second) = (album_row(0, "albums"), album_row(1, "albums"));
    edit(&a, "albums", &first, "title", "small before").await;
    a.with_db({
        let (first, second, large) = (first.clone(), second.clone(), large.clone());
        move |rec| {
            // One transaction, one batch of about 1.8 MB.
            let mut tx = rec.transaction()?;
            tx.update(
                "albums",
                &first,
                &[("title", bae_oplog::Value::Text(large.clone()))],
            )?;
            tx.update(
                "albums",
                &second,
                &[("title", bae_oplog::Value::Text(large))],
            )?;
            tx.commit()?;
            Ok(())
        }
    })
    .await
    .unwrap();
    edit(
        &a,
        "albums",
        &album_row(2, "albums"),
        "title",
        "small after",
    )
    .await;
    a.push().await.unwrap();
    let sizes: Vec<u64> = {
        let last = last_batch(&a).await;
        let mut sizes = Vec::new();
        for seq in last - 2..=last {
            let bytes = w.store().get(&ops_key(&a, seq), u64::MAX).await.unwrap();
            sizes.push(bytes.len() as u64);
        }
        sizes
    };
    assert!(sizes[1] > 1 << 20, "the middle batch is {} bytes", sizes[1]);
    let report = b.pull().await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_converged(&[&a, &b]).await;
    assert_eq!(field(&b, "albums", &second, "title").await, large);
    assert_eq!(
        field(&b, "albums", &album_row(2, "albums"), "title").await,
        "small after"
    );
}
