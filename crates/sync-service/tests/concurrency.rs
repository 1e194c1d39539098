//! One service, several callers at once: push, pull, checkpoint and GC of
//! one `SyncService` run one at a time, so nothing is fetched or applied
//! twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[tokio::test]
async fn two_concurrent_pulls_of_one_service_apply_each_batch_once() {
    let w = World::new(Bucket::Local, "two-pulls");
    let laptop = w.first_device("laptop", 1).await;
    let desktop = w.join("desktop").await;
    for i in 0..6 {
        edit(
            &laptop,
            "albums",
            &album_row(0, "albums"),
            "title",
            &format!("title {i}"),
        )
        .await;
    }
    let pushed = laptop.push().await.unwrap().batches;
    assert_eq!(pushed, 6);

    let (a, b) = tokio::join!(desktop.pull(), desktop.pull());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.applied + b.applied, pushed, "{a:?} {b:?}");
    assert!(a.problems.is_empty() && b.problems.is_empty());
    assert_converged(&[&laptop, &desktop]).await;
}

#[tokio::test]
async fn push_pull_checkpoint_and_gc_at_once_all_finish() {
    let w = World::new(Bucket::Local, "all-at-once");
    let laptop = w.first_device("laptop", 2).await;
    let desktop = w.join("desktop").await;
    edit(&desktop, "albums", &album_row(1, "albums"), "title", "d").await;
    edit(&laptop, "albums", &album_row(0, "albums"), "title", "l").await;
    laptop.push().await.unwrap();
    // Checkpoint pushes and pulls itself: it must not wait for itself.
    let (push, pull, checkpoint, sync) = tokio::join!(
        desktop.push(),
        desktop.pull(),
        desktop.checkpoint(),
        desktop.sync()
    );
    push.unwrap();
    pull.unwrap();
    checkpoint.unwrap();
    sync.unwrap();
    let now = i64::MAX / 2;
    let (gc, pull) = tokio::join!(
        desktop.gc(now, std::time::Duration::ZERO, true),
        desktop.pull()
    );
    gc.unwrap();
    pull.unwrap();
    laptop.pull().await.unwrap();
    assert_converged(&[&laptop, &desktop]).await;
}
