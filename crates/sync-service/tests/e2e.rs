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

#[tokio::test]
async fn an_image_without_local_bytes_stays_queued_until_they_arrive() {
    let w = World::new(Bucket::Local, "late-image");
    let a = w.first_device("a", 1).await;
    let b = w.join("b").await;
    // bae records the image row before it has downloaded the bytes.
    drop(a);
    let lib = w.library("a");
    let image = album_row(5, "images");
    let path = images_dir_for(&lib).join(&image);
    import_albums(&lib, 5, 1);
    std::fs::remove_file(&path).unwrap();
    let a = bae_sync_service::library::open(&lib, &w.keys).unwrap();
    let first = a.push().await.unwrap();
    assert_eq!(
        (first.batches, first.images, first.images_waiting),
        (1, 0, 1)
    );

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

    // A device joining now gets the bytes; one that pulled early has the row.
    let c = w.join("c").await;
    let on_c = images_dir_for(&w.library("c")).join(&image);
    assert_eq!(std::fs::read(on_c).unwrap(), image_bytes(&image));
    b.pull().await.unwrap();
    assert_converged(&[&a, &b, &c]).await;
}

#[tokio::test]
async fn idle_pull_is_one_list_request() {
    use bae_storage_s3::testing::CountingStore;
    let w = World::new(Bucket::Local, "idle");
    let a = w.first_device("a", 1).await;
    drop(a);
    let counting = std::sync::Arc::new(CountingStore::new(w.store()));
    let rec = bae_oplog::OpRecorder::open(&w.library("b")).unwrap();
    let key = bae_sync_service::keystore::read_key_file(&w.key_file()).unwrap();
    let b = bae_sync_service::SyncService::new(rec, counting.clone(), key);
    b.pull().await.unwrap();
    counting.reset();
    b.sync().await.unwrap();
    let n = counting.snapshot();
    assert_eq!((n.list, n.total()), (1, 1), "{n:?}");
}
